"""Problems at scale (issue 16): structured parameters (dicts of tensors, an nn.Module through
functional_call), the matrix-free certified reference, and data hyper-cleaning."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import draws
from test_problems import NAMES, build

from hgbench.core.bound import check_applies, estimate
from hgbench.core.reference import certify, choose, error_bound, matrix_free_reference, reference
from hgbench.estimators.cg import ConjugateGradient
from hgbench.estimators.fp import FixedPoint
from hgbench.estimators.gmres import GMRES
from hgbench.estimators.implicit import Exact
from hgbench.estimators.itd import ITDForward, ITDReverse
from hgbench.problems.base import Problem
from hgbench.problems.equilibrium import EquilibriumMNIST
from hgbench.problems.hyper_cleaning import HyperCleaning
from hgbench.problems.structured import Ravel


def small_equilibrium():
    return EquilibriumMNIST("equilibrium_mnist", seed=0, state_dim=4, n_train=6, n_val=5, n_test=5, init_scale=0.3, init_a_norm=0.9)


@pytest.fixture(scope="module")
def cleaning():
    return HyperCleaning("hyper_cleaning", seed=0, n_train=60, n_val=40, flip=0.5, reg=0.5)


class HandFlattened(Problem):
    """The hyper-cleaning problem written by hand on flat vectors: w = (weight row-major, bias)."""

    symmetric_jacobian = True

    def __init__(self, other: HyperCleaning):
        super().__init__("flat", other.seed, other.lam_low, other.lam_high)
        self.x, self.y, self.x_val, self.y_val = other.x, other.y, other.x_val, other.y_val
        self.alpha, self.reg = other.alpha, other.reg

    @property
    def lam_dim(self):
        return self.x.shape[0]

    @property
    def w_dim(self):
        return 10 * 784 + 10

    def split(self, w):
        return w[: 10 * 784].reshape(10, 784), w[10 * 784 :]

    def phi(self, w, lam, consts):
        weight, bias = self.split(w)
        logits = F.linear(self.x, weight, bias)
        scale = torch.sigmoid(lam) / self.x.shape[0]
        residual = scale[:, None] * (torch.softmax(logits, dim=1) - F.one_hot(self.y, 10).to(logits.dtype))
        new_weight = weight - self.alpha * (residual.T @ self.x + self.reg * weight)
        new_bias = bias - self.alpha * (residual.sum(0) + self.reg * bias)
        return torch.cat([new_weight.reshape(-1), new_bias])

    def outer(self, w, lam):
        return F.cross_entropy(F.linear(self.x_val, *self.split(w)), self.y_val)


def test_ravel_round_trip_and_refusal():
    ravel = Ravel({"a": (2, 3), "b": (4,)})
    tree = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.arange(6.0, 10.0)}
    flat = ravel.flat(tree)
    assert flat.tolist() == list(range(10)) and ravel.size == 10
    assert all(torch.equal(ravel.tree(flat)[k], tree[k]) for k in tree)
    with pytest.raises(ValueError, match=r"keys \['a'\], its layout expects \['a', 'b'\]"):
        ravel.flat({"a": tree["a"]})


def test_closed_form_gradient_is_the_autodiff_gradient(cleaning):
    """Φ's hand-written ∇₁ℓ against torch.func.grad of the structured ℓ (functional_call)."""
    lam = draws(cleaning, 1)[0]
    w = 0.01 * torch.randn(cleaning.w_dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    auto = torch.func.grad(cleaning.inner_loss)(w, lam)
    step = (w - cleaning.phi(w, lam, {})) / cleaning.alpha
    assert torch.linalg.vector_norm(step - auto) <= 1e-13 * torch.linalg.vector_norm(auto)


@pytest.mark.parametrize("make", [ITDReverse, FixedPoint, ConjugateGradient], ids=["itd", "fp", "cg"])
def test_structured_problem_equals_its_hand_flattened_twin(cleaning, make):
    """The adapter adds nothing: same estimates (to 1e-14) and the same counts, Φ for Φ."""
    twin, lam = HandFlattened(cleaning), draws(cleaning, 1)[0]
    pairs = [(3, 3), (8, 8)]
    ours, theirs = list(estimate(make("e"), cleaning, lam, pairs)), list(estimate(make("e"), twin, lam, pairs))
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs):
        assert torch.linalg.vector_norm(a.grad - b.grad) <= 1e-14 * torch.linalg.vector_norm(b.grad)
        assert torch.linalg.vector_norm(a.w - b.w) <= 1e-14 * torch.linalg.vector_norm(b.w)
        assert (a.cost.n_phi, a.cost.n_vjp, a.cost.n_jvp, a.cost.saved_bytes) == (
            b.cost.n_phi,
            b.cost.n_vjp,
            b.cost.n_jvp,
            b.cost.saved_bytes,
        )


def _agree(problem, lam):
    dense, free = reference(problem, lam), reference(problem, lam, "matrix_free")
    assert certify(free)["certified"]
    for a, b in ((free.w_star, dense.w_star), (free.grad, dense.grad)):
        assert torch.linalg.vector_norm(a - b) <= 1e-10 * max(torch.linalg.vector_norm(b), 1e-300)
    return dense, free


@pytest.mark.parametrize("name", NAMES)
def test_matrix_free_reference_agrees_with_dense(name):
    problem = build(name)
    _agree(problem, draws(problem, 1)[0])


def test_matrix_free_reference_agrees_with_dense_on_ridge_logistic_equilibrium(ridge, logistic):
    for problem in (ridge, logistic, small_equilibrium()):
        dense, free = _agree(problem, draws(problem, 1)[0])
        assert abs(free.q - dense.q) <= 1e-3 * dense.q  # the power-iteration estimate of ‖J‖₂


def test_matrix_free_reference_on_hyper_cleaning(cleaning):
    """Residuals at the target, bounds with q from the contraction bound, and the
    hypergradient against central differences of f(λ) = E(w*(λ), λ) along a random direction."""
    lam = draws(cleaning, 1)[0]
    ref = matrix_free_reference(cleaning, lam)
    facts = ref.summary()["matrix_free"]
    assert ref.fixed_point_residual <= 1e-13 * torch.linalg.vector_norm(ref.w_star)
    assert ref.linear_residual <= 1e-13 * ref.rhs_norm
    assert facts["q_used"] == cleaning.contraction_bound(lam) and facts["q_source"].startswith("contraction_bound")
    assert ref.q <= facts["q_used"] < 1
    assert facts["w_error_bound"] == error_bound(ref)["w_error"] > ref.fixed_point_residual / (1 - facts["q_used"])  # + round-off allowance
    assert certify(ref)["certified"]
    direction = torch.randn(cleaning.lam_dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    f = lambda l: cleaning.outer(matrix_free_reference(cleaning, l).w_star, l).item()
    h = 1e-4
    fd = (f(lam + h * direction) - f(lam - h * direction)) / (2 * h)
    assert ref.grad.dot(direction).item() == pytest.approx(fd, rel=1e-6)


def test_reference_choice(ridge, cleaning):
    assert choose(cleaning) == "matrix_free" and choose(ridge) == "dense" and choose(small_equilibrium()) == "dense"
    assert choose(ridge, "matrix_free") == "matrix_free"
    with pytest.raises(ValueError, match="reference='lu' is not one of auto, dense, matrix_free"):
        choose(ridge, "lu")


def test_dense_estimators_are_refused_on_hyper_cleaning(cleaning):
    for estimator in (ITDForward("itd_forward"), Exact("exact")):
        with pytest.raises(ValueError, match="needs dense dim w × dim w"):
            check_applies(estimator, cleaning)
    for estimator in (ITDReverse("itd"), FixedPoint("fp"), ConjugateGradient("cg"), GMRES("gmres")):
        check_applies(estimator, cleaning)
    assert math.isfinite(cleaning.contraction_bound(None))


def test_structured_problem_batches_over_lambda_draws(cleaning):
    """vmap goes through the ravel and functional_call: batched estimates equal the loop's."""
    from hgbench.running.batch import estimate_batched

    lams = draws(cleaning, 2)
    batched = estimate_batched(ConjugateGradient("cg"), cleaning, lams, [(5, 5)])
    for curve, lam in zip(batched, lams):
        (alone,) = estimate(ConjugateGradient("cg"), cleaning, lam, [(5, 5)])
        assert torch.linalg.vector_norm(curve[0].grad - alone.grad) <= 1e-12 * torch.linalg.vector_norm(alone.grad)


def test_reference_auto_keeps_run_ids():
    """reference=auto (the default) is what every run did before the option: left out of the id."""
    from hgbench.running.identity import run_id

    config = {"seed": 0, "problem": {"name": "ridge"}, "estimator": {"name": "cg"}}
    assert run_id({**config, "reference": "auto"}) == run_id(config)
    assert run_id({**config, "reference": "matrix_free"}) != run_id(config) != run_id({**config, "reference": "dense"})
