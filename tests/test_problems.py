"""The paper's other problems (kernel ridge, biased regularization, hyper-representation) and the
real-data variants of ridge and logistic: reference against finite differences, the claimed
gradient-step structure and contraction, convergence of every estimator, and the data loaders."""

import math

import pandas as pd
import pytest
import torch
from conftest import draws, refusal, run_cli
from test_numerics import finite_difference_grad, rel

from hgbench.core.bound import bind, estimate
from hgbench.data import datasets
from hgbench.running.batch import estimate_batched
from hgbench.estimators.cg import ConjugateGradient
from hgbench.estimators.fp import FixedPoint
from hgbench.estimators.itd import ITDForward, ITDReverse
from hgbench.problems.hyper_rep import HyperRep
from hgbench.problems.kernel_ridge import KernelRidge
from hgbench.problems.logistic import Logistic
from hgbench.problems.meta_learning import MetaLearning
from hgbench.problems.ridge import Ridge
from hgbench.core.reference import reference

SMALL = {
    "kernel_ridge": lambda: KernelRidge("kernel_ridge", 0, 0.0, 1.0, -0.5, 0.5, data="synthetic", n_samples=40, n_features=3),
    "kernel_ridge_per_feature": lambda: KernelRidge(
        "kernel_ridge", 1, 0.0, 1.0, -0.5, 0.5, per_feature_bandwidth=True, data="synthetic", n_samples=30, n_features=3
    ),
    "meta_learning": lambda: MetaLearning("meta_learning", 0, 4, 3, 2, 4, 0.5, 0.1, 0.5, -1.0, 1.0),
    "meta_learning_gamma": lambda: MetaLearning("meta_learning", 1, 3, 3, 2, 4, 0.5, 0.1, 0.5, -1.0, 1.0, learn_gamma=True),
    "hyper_rep": lambda: HyperRep("hyper_rep", 0, 3, 3, 2, 2, 2, 4, 0.2, 0.5, 1.5),
    "hyper_rep_ridge_tanh": lambda: HyperRep("hyper_rep", 1, 2, 3, 3, 2, 2, 4, 0.2, 0.5, 1.5, head="ridge", representation="tanh"),
    "ridge_diabetes": lambda: Ridge("ridge", 0, 1, 1, 1, 1.0, 0.0, -3.0, 0.0, data="diabetes"),
    "logistic_breast_cancer": lambda: Logistic("logistic", 0, 2, 1, 0.1, -1.0, 0.0, data="breast_cancer"),
}
NAMES = list(SMALL)
_BUILT = {}


def build(name):
    if name not in _BUILT:
        _BUILT[name] = SMALL[name]()
    return _BUILT[name]


def directional_finite_difference(problem, lam, direction, h=1e-5):
    """Central difference of f(λ) = E(w*(λ), λ) along ``direction``: ∇f(λ)·direction."""
    f = lambda l: problem.outer(problem.solve_inner(l), l).item()
    return (f(lam + h * direction) - f(lam - h * direction)) / (2 * h)


@pytest.mark.parametrize("name", NAMES)
def test_reference_matches_finite_differences(name):
    """The whole gradient by central differences where dim λ ≤ 4; otherwise (2·dim λ inner
    solves would be slow) the derivatives along three random directions."""
    problem = build(name)
    gen = torch.Generator().manual_seed(5)
    for lam in draws(problem, 2 if problem.lam_dim <= 4 else 1):
        ref = reference(problem, lam)
        if problem.lam_dim <= 4:
            assert rel(ref.grad, finite_difference_grad(problem, lam)) < 1e-6
        else:
            for _ in range(3):
                u = torch.randn(problem.lam_dim, dtype=torch.float64, generator=gen)
                exact = (ref.grad @ u).item()
                assert directional_finite_difference(problem, lam, u) == pytest.approx(exact, rel=1e-6)
        assert ref.fixed_point_residual < 1e-12 and ref.linear_residual < 1e-12
        assert 0 < ref.q < 1


@pytest.mark.parametrize("name", NAMES)
def test_gradient_step_structure_and_contraction(name):
    """inner_grad is ∇ℓ; ∂₁Φ is symmetric with ‖∂₁Φ‖₂ ≤ (L − μ)/(L + μ) < 1 at an arbitrary w
    (the claimed contraction, not only at w*); solve_inner is a stationary point of ℓ."""
    problem = build(name)
    lam = draws(problem, 1, seed=3)[0]
    w = torch.randn(problem.w_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert rel(problem.inner_grad(w, lam), torch.func.grad(problem.inner_loss)(w, lam)) < 1e-12
    bound = bind(problem, lam)
    jac = torch.func.jacrev(lambda u: bound.phi(u, lam))(w)
    assert problem.symmetric_jacobian and torch.allclose(jac, jac.T, atol=1e-14)
    big, small = problem.curvature_bounds(lam)
    claimed = ((big - small) / (big + small)).item()
    assert torch.linalg.matrix_norm(jac, ord=2).item() <= claimed + 1e-12 < 1
    w_star = problem.solve_inner(lam)
    assert torch.linalg.vector_norm(torch.func.grad(problem.inner_loss)(w_star, lam)) < 1e-12


@pytest.mark.parametrize("name", ["hyper_rep", "hyper_rep_ridge_tanh"])
def test_hyper_rep_block_newton_direction_is_the_dense_one(name):
    problem = build(name)
    lam = draws(problem, 1)[0]
    gen = torch.Generator().manual_seed(2)
    w, g = (torch.randn(problem.w_dim, dtype=torch.float64, generator=gen) for _ in range(2))
    dense = torch.linalg.solve(torch.func.hessian(problem.inner_loss)(w, lam), g)
    assert rel(problem.newton_direction(w, g, lam), dense) < 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_estimators_converge_and_itd_modes_agree(name):
    """fp and cg reach round-off once q^t, q^k ≤ 1e-13 (cg's k: 3·dim w at most, past which
    exact CG has terminated; far longer runs drive its recursive residual through denormals);
    itd equals itd_forward at every t."""
    problem = build(name)
    lam = draws(problem, 1)[0]
    ref = reference(problem, lam)
    t = math.ceil(math.log(1e-13) / math.log(ref.q))
    for estimator, k in ((FixedPoint("fp"), t), (ConjugateGradient("cg"), min(t, 3 * problem.w_dim))):
        (last,) = estimate(estimator, problem, lam, [(t, k)])
        assert rel(last.grad, ref.grad) < 1e-8, estimator.name
    pairs = [(t, None) for t in (0, 1, 4, 25)]
    reverse = list(estimate(ITDReverse("itd"), problem, lam, pairs))
    forward = list(estimate(ITDForward("itd_forward"), problem, lam, pairs))
    for a, b in zip(reverse, forward):
        assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-14), a.t


@pytest.mark.parametrize("name", ["kernel_ridge_per_feature", "meta_learning_gamma", "hyper_rep"])
def test_problems_vectorize_over_lambda_draws(name):
    """batch_lambdas=true: the vmapped curves equal the looped ones."""
    problem = build(name)
    lams = draws(problem, 3)
    pairs = [(0, 0), (3, 3), (20, 20)]
    for estimator in (ConjugateGradient("cg"), ITDForward("itd_forward")):
        batched = estimate_batched(estimator, problem, lams, pairs)
        for lam, curve in zip(lams, batched):
            for a, b in zip(estimate(estimator, problem, lam, pairs), curve):
                assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-13)


def test_sample_lambdas_follow_their_ranges():
    kr = build("kernel_ridge_per_feature")
    lams = kr.sample_lambdas(200, torch.Generator().manual_seed(0))
    assert lams.shape == (200, 4)
    assert lams[:, 0].min() >= 0.0 and lams[:, 0].max() <= 1.0
    assert lams[:, 1:].min() >= -0.5 and lams[:, 1:].max() <= 0.5 and lams[:, 1:].std() > 0.2
    ml = build("meta_learning_gamma")
    lams = ml.sample_lambdas(200, torch.Generator().manual_seed(0))
    log_gamma = torch.log(torch.tensor(0.5, dtype=torch.float64))
    assert lams.shape == (200, 4) and (lams[:, :3].abs() <= 1).all()
    assert ((lams[:, 3] - log_gamma).abs() <= 1).all() and lams[:, 3].std() > 0.3
    hr = build("hyper_rep")
    lams = hr.sample_lambdas(500, torch.Generator().manual_seed(0))
    p = hr.x_train.shape[2]
    assert lams.shape == (500, hr.rep_dim * p)
    # P = s·G/√p: E‖P‖²_F = E[s²]·r, s² averaged over U[0.5, 1.5]
    mean_sq = (0.5**2 + 0.5 * 1.5 + 1.5**2) / 3 * hr.rep_dim
    assert lams.square().sum(1).mean().item() == pytest.approx(mean_sq, rel=0.1)


def test_hyper_rep_tasks_are_few_shot_digits():
    problem = HyperRep("hyper_rep", 0, 4, 5, 3, 2, 8, 2, 0.1, 0.5, 2.0)
    assert problem.x_train.shape == (4, 15, 16) and problem.x_val.shape == (4, 10, 16)
    assert problem.w_dim == 4 * 5 * 8 and problem.lam_dim == 8 * 16
    assert torch.equal(problem.y_train.sum(1), torch.full((4, 5), 3.0, dtype=torch.float64))
    x, labels = datasets.digits(2)
    # every task image is one of the digits, and a task's training and validation images differ
    flat = {tuple(row.tolist()) for row in x}
    assert all(tuple(row.tolist()) in flat for row in problem.x_train.reshape(-1, 16))
    for task in range(4):
        assert torch.cdist(problem.x_train[task], problem.x_val[task]).min() > 0


@pytest.mark.parametrize("name, n_rows, n_features", [("diabetes", 442, 10), ("breast_cancer", 569, 30)])
def test_split_is_seeded_and_standardized_on_train(name, n_rows, n_features):
    x_train, y_train, x_val, y_val = datasets.split(name, seed=0, val_fraction=0.25)
    assert x_val.shape == (round(0.25 * n_rows), n_features) and x_train.shape[0] + x_val.shape[0] == n_rows
    assert torch.allclose(x_train.mean(0), torch.zeros(n_features, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(x_train.std(0), torch.ones(n_features, dtype=torch.float64), atol=1e-12)
    assert x_val.mean(0).abs().max() > 1e-6  # validation standardized with the training statistics
    if name == "breast_cancer":
        assert set(torch.cat([y_train, y_val]).tolist()) == {-1.0, 1.0}
    else:
        assert y_train.mean().abs() < 1e-12 and (y_train.std() - 1).abs() < 1e-12
    again, other = datasets.split(name, 0, 0.25), datasets.split(name, 1, 0.25)
    assert torch.equal(again[0], x_train) and not torch.equal(other[0], x_train)


@pytest.mark.parametrize("pool, d", [(1, 784), (2, 196)])
def test_logistic_mnist_binary_split_is_seeded_standardized_and_labelled_by_parity(pool, d):
    """n = 500 shipped images, 20 % validation and 20 % test: shapes, labels ±1 with both classes in
    every split, standardized with the training statistics (pixels constant there are 0), seeded."""
    x_tr, b_tr, x_va, b_va, x_te, b_te = datasets.mnist_binary(3, 500, 0.2, pool)
    assert x_tr.shape == (300, d) and x_va.shape == (100, d) and x_te.shape == (100, d)
    for b in (b_tr, b_va, b_te):
        assert set(b.tolist()) == {-1.0, 1.0}
    varying = x_tr.std(0) > 0
    assert torch.allclose(x_tr.mean(0), torch.zeros(d, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(x_tr.std(0)[varying], torch.ones(int(varying.sum()), dtype=torch.float64), atol=1e-12)
    assert (x_tr[:, ~varying] == 0).all() and (~varying).any()  # the border pixels: blank on every training image
    assert torch.equal(datasets.mnist_binary(3, 500, 0.2, pool)[0], x_tr) and not torch.equal(
        datasets.mnist_binary(4, 500, 0.2, pool)[0], x_tr
    )


def test_logistic_mnist_binary_labels_follow_the_digits_parity():
    """All 5,000 images: 500 per digit in the shipped file, so exactly 2,500 even (+1); and each
    label agrees with the digit load_mnist gives for the same seeded rows."""
    from hgbench.data.mnist import load_mnist

    parts = datasets.mnist_binary(0, 5000, 0.2)
    labels = torch.cat([parts[1], parts[3], parts[5]])
    assert (labels == 1).sum() == 2500
    digits = load_mnist(3000, 1000, 1000, 0)["test"].labels
    assert torch.equal(parts[5] == 1, torch.tensor([int(k) in (0, 2, 4, 6, 8) for k in digits]))


def test_logistic_mnist_binary_refuses_a_damaged_file_and_bad_sizes(monkeypatch):
    from hgbench.data import mnist, shipped

    monkeypatch.setitem(shipped.SHA256, "mnist_files/mnist_5k.csv.gz", "0" * 64)
    mnist._load_subset.cache_clear()
    try:
        with pytest.raises(ValueError, match="mnist_5k.csv.gz has sha256 846f6cad.*it is damaged"):
            datasets.mnist_binary(0, 500, 0.2)
    finally:
        mnist._load_subset.cache_clear()
    with pytest.raises(ValueError, match="n_samples=6000"):
        datasets.mnist_binary(0, 6000, 0.2)
    with pytest.raises(ValueError, match="val_fraction=0.6"):
        datasets.mnist_binary(0, 500, 0.6)


def test_logistic_mnist_metrics_are_those_of_the_exact_inner_solution():
    """evaluate at λ scores w*(λ): its validation loss is the problem's E(w*, λ), its training loss
    plus the penalty is ℓ(w*, λ) (each computed by the problem's own objectives), ∇₁ℓ(w*) ≈ 0, and
    the accuracies are shares of 100 test rows; without a test split there are no metrics."""
    problem = Logistic("logistic", 0, 500, 1, 0.1, -1.0, 0.0, data="mnist_binary_14", val_fraction=0.2)
    lam = draws(problem, 1)[0]
    scores = problem.evaluate(lam, 0)
    w = reference(problem, lam).w_star
    assert problem.trainable and not Logistic("logistic", 0, 20, 2, 0.1, -1.0, 0.0).trainable
    assert problem.inner_grad(w, lam).norm() < 1e-12
    assert scores["val_loss"] == pytest.approx(problem.outer(w, lam).item(), rel=1e-12)
    penalty = 0.5 * (torch.exp(lam) * w.square()).sum().item()
    assert scores["train_loss"] + penalty == pytest.approx(problem.inner_loss(w, lam).item(), rel=1e-12)
    assert (
        all(0 <= scores[f"{s}_acc"] <= 1 for s in ("train", "val", "test"))
        and abs(scores["test_acc"] * 100 - round(scores["test_acc"] * 100)) < 1e-9
    )
    assert scores["test_acc"] > 0.7  # even against odd digits is learnable from 300 images


def test_bad_data_options_are_refused():
    assert refusal("problem.data=mnist") == "problem.data='mnist' is not one of synthetic, diabetes"
    assert refusal("problem=logistic", "problem.data=diabetes") == (
        "problem.data='diabetes' is not one of synthetic, breast_cancer, mnist_binary, mnist_binary_14"
    )
    with pytest.raises(ValueError, match=r"val_fraction=1.5"):
        datasets.split("diabetes", 0, 1.5)
    with pytest.raises(ValueError, match=r"pool=3"):
        datasets.digits(3)
    assert refusal("problem=hyper_rep", "problem.head=svm") == "problem.head='svm' is not one of logistic, ridge"
    with pytest.raises(ValueError, match=r"shots \+ val_shots = 400"):
        HyperRep("hyper_rep", 0, 2, 3, 200, 200, 2, 4, 0.1, 0.5, 1.5)
    assert refusal("problem=kernel_ridge", "problem.log_bandwidth_low=1", "problem.log_bandwidth_high=0") == (
        "problem.log_bandwidth_low=1.0 must be <= problem.log_bandwidth_high=0.0"
    )
    assert refusal("problem.lam_low=1", "problem.lam_high=0") == "problem.lam_low=1.0 must be <= problem.lam_high=0.0"


@pytest.mark.parametrize(
    "problem, sizes",
    [
        ("kernel_ridge", ["problem.data=synthetic", "problem.n_samples=30", "problem.n_features=2"]),
        ("meta_learning", ["problem.n_tasks=3", "problem.n_features=3", "problem.learn_gamma=true"]),
        ("hyper_rep", ["problem.n_tasks=2", "problem.ways=3", "problem.rep_dim=2", "problem.pool=4"]),
        ("ridge", ["problem.data=diabetes"]),
        ("logistic", ["problem.data=breast_cancer", "problem.lam_low=-1", "problem.lam_high=0"]),
    ],
)
def test_new_problems_run_from_the_command_line(problem, sizes, tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    args = [
        "run",
        "-m",
        f"problem={problem}",
        "estimator=cg,itd",
        *sizes,
        "n_lambdas=1",
        "grid.t=[0,5,200]",
        "batch_lambdas=true",
        "plot=false",
        f"hydra.sweep.dir={out}",
    ]
    assert run_cli(monkeypatch, *args) == 0
    df = pd.read_csv(out / "metrics.csv")
    assert set(df["estimator"]) == {"cg", "itd"} and len(df) == 2 * 3 and (df["status"] == "ok").all()
    assert df["q"].between(0, 1, inclusive="neither").all()
    err = df.groupby(["estimator", "lam_id", "t"])["err_rel"].first().unstack("t")
    assert (err[200] < 0.1 * err[0]).all()  # every curve converges (q < 1)


def test_bad_data_option_is_one_line_from_the_command_line(tmp_path, monkeypatch, capsys):
    code = run_cli(monkeypatch, "run", "problem=ridge", "problem.data=mnist", f"hydra.run.dir={tmp_path}")
    err = capsys.readouterr().err
    assert code == 2 and "data='mnist' is not one of synthetic, diabetes" in err and "Traceback" not in err
