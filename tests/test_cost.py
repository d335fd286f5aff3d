"""Operation counts and memory come from the code that performs the operations: check them
against the values the algorithms imply, on small cases."""

import pytest
import torch
from conftest import draws

from hgbench.core.bound import estimate
from hgbench.estimators.cg import ConjugateGradient
from hgbench.estimators.cg_normal import NormalCG
from hgbench.estimators.fp import FixedPoint
from hgbench.estimators.implicit import Exact
from hgbench.estimators.itd import ITDForward, ITDReverse
from hgbench.problems.ridge import Ridge

PAIRS = [(0, 0), (20, 3), (40, 3), (40, 9), (60, 9)]


@pytest.mark.parametrize("estimator", [FixedPoint("fp"), ConjugateGradient("cg")])
def test_aid_counts(ridge, estimator):
    """t Φ steps + one Φ evaluation to build the VJP graph at w_t; k solver VJPs + one for ∂₂Φᵀv."""
    lam = draws(ridge, 1)[0]
    estimates = list(estimate(estimator, ridge, lam, PAIRS))
    for e in estimates:
        assert (e.cost.n_phi, e.cost.n_vjp, e.cost.n_jvp) == (e.t + 1, e.k + 1, 0)
    saved = {e.cost.saved_bytes for e in estimates}
    assert len(saved) == 1 and saved.pop() > 0  # one VJP graph at w_t: independent of t and k


def test_itd_reverse_counts_and_memory_linear_in_t(ridge):
    lam = draws(ridge, 1)[0]
    estimates = {e.t: e.cost for e in estimate(ITDReverse("itd"), ridge, lam, PAIRS)}
    for t, cost in estimates.items():
        assert (cost.n_phi, cost.n_vjp, cost.n_jvp) == (t, t, 0)
    per_step = estimates[40].saved_bytes - estimates[20].saved_bytes
    assert per_step > 0 and estimates[60].saved_bytes - estimates[40].saved_bytes == per_step


def test_itd_forward_counts(ridge):
    lam = draws(ridge, 1)[0]
    for e in estimate(ITDForward("itd_forward"), ridge, lam, PAIRS):
        assert (e.cost.n_phi, e.cost.n_vjp, e.cost.n_jvp, e.cost.saved_bytes) == (e.t, 0, e.t * lam.numel(), 0)


@pytest.mark.parametrize("estimator", [FixedPoint("fp"), ConjugateGradient("cg"), ITDReverse("itd"), ITDForward("itd_forward")])
def test_one_pass_costs_are_from_scratch_costs(ridge, estimator):
    """The counts reported for a point of a one-pass curve are those of computing it alone."""
    lam = draws(ridge, 1)[0]
    counts = lambda c: (c.n_phi, c.n_vjp, c.n_jvp, c.saved_bytes)
    together = {(e.t, e.k): counts(e.cost) for e in estimate(estimator, ridge, lam, PAIRS)}
    for (t, k), count in together.items():
        (alone,) = estimate(estimator, ridge, lam, [(t, k if k is not None else 0)])
        assert counts(alone.cost) == count


@pytest.mark.parametrize("estimator, rtol", [("fp", 1e-12), ("itd_forward", 1e-12), ("itd", 1e-12), ("cg", 1e-8)])
def test_batched_lambdas_give_the_loop_numbers(tmp_path, monkeypatch, estimator, rtol):
    """batch_lambdas=true (torch.func.vmap over the draws) gives the loop's rows. Batched and
    unbatched matrix products round differently in the last bit; CG amplifies that by up to
    κ, hence its looser tolerance. Counts must be identical, except that batched AID builds its
    ∂₂Φᵀ graph apart from its Jᵀ graph (torch.func cannot restrict a pullback to one argument):
    one more Φ evaluation per point, counted (itd's batched path has no linearization)."""
    import pandas as pd
    from conftest import run_cli

    frames = {}
    for batch in ("false", "true"):
        out = tmp_path / batch
        args = [
            "run",
            f"estimator={estimator}",
            "problem=ridge",
            "problem.n_features=8",
            "problem.n_train=40",
            "n_lambdas=4",
            "grid.t=[0,7,60]",
            f"batch_lambdas={batch}",
            "plot=false",
            f"hydra.run.dir={out}",
        ]
        assert run_cli(monkeypatch, *args) == 0
        frames[batch] = pd.read_csv(out / "metrics.csv")
    loop, batched = frames["false"], frames["true"]
    assert len(loop) == len(batched) == 12
    for column in ("lam_id", "t", "k", "n_vjp", "n_jvp", "q"):
        assert loop[column].equals(batched[column]), column
    assert (batched["n_phi"] - loop["n_phi"] == (0 if estimator in ("itd_forward", "itd") else 1)).all()
    assert ((batched["err_abs"] - loop["err_abs"]).abs() <= rtol * loop["err_abs"].abs().max()).all()
    assert batched["saved_bytes"].isna().all() and loop["saved_bytes"].notna().all()


def test_batching_falls_back_to_the_loop_for_taped_itd_trunc(tmp_path, monkeypatch, capsys):
    from conftest import run_cli

    args = [
        "run",
        "estimator=itd_trunc",
        "problem=ridge",
        "problem.n_features=6",
        "n_lambdas=2",
        "grid.t=[0,5]",
        "batch_lambdas=true",
        "plot=false",
        f"hydra.run.dir={tmp_path}",
    ]
    assert run_cli(monkeypatch, *args) == 0
    assert "does not vectorize; looping over λ draws" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::FutureWarning")  # isinstance() touches torch.distributed's deprecated names
def test_a_tape_is_freed_with_its_estimate(logistic):
    """No tensor of ITD's tape outlives the estimate (a pack hook that returned the saved tensor
    itself leaked every tape through a reference cycle that even gc.collect() cannot free)."""
    import gc

    import torch

    lam = draws(logistic, 1)[0]
    count = lambda: sum(isinstance(o, torch.Tensor) for o in gc.get_objects())
    list(estimate(ITDReverse("itd"), logistic, lam, [(3, 0)]))  # one-time setup
    gc.collect()
    before = count()
    estimates = list(estimate(ITDReverse("itd"), logistic, lam, [(100, 0)]))
    del estimates
    gc.collect()
    assert count() - before < 10  # a leaked tape holds several tensors per step: hundreds here


# --- counts against a counter the test wraps around Φ itself -------------------------------------
class Probe(torch.autograd.Function):
    """Identity on Φ's output that counts, independently of hgbench's tally, how often autograd
    differentiates through Φ: ``backward`` once per VJP, ``jvp`` once per forward-mode push (a
    push of m tangents vectorized by vmap is one call)."""

    calls = {"phi": 0, "vjp": 0, "jvp": 0}
    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        Probe.calls["vjp"] += 1
        return grad

    @staticmethod
    def jvp(ctx, tangent):
        Probe.calls["jvp"] += 1
        return tangent


class ProbedRidge(Ridge):
    """Ridge whose Φ counts its own evaluations and passes its output through ``Probe``."""

    def phi(self, w, lam, consts):
        Probe.calls["phi"] += 1
        return Probe.apply(super().phi(w, lam, consts))


@pytest.fixture(scope="module")
def probed():
    return ProbedRidge("ridge", seed=0, n_train=60, n_val=40, n_features=8, cond=30.0, noise=0.1, lam_low=-3.0, lam_high=0.0)


@pytest.mark.parametrize(
    "estimator",
    [FixedPoint("fp"), ConjugateGradient("cg"), NormalCG("cg_normal"), ITDReverse("itd"), ITDForward("itd_forward"), Exact("exact")],
)
@pytest.mark.parametrize("point", [(0, 0), (5, 3), (12, 7)])
def test_counts_equal_what_a_probe_around_phi_sees(probed, estimator, point):
    """Each point computed alone: n_phi = Φ calls, n_vjp = backward passes through Φ, n_jvp = the
    forward-mode passes through Φ times the tangents each carried (dim λ for itd_forward's
    vectorized push, 1 otherwise)."""
    lam = draws(probed, 1)[0]
    Probe.calls.update(phi=0, vjp=0, jvp=0)
    (e,) = estimate(estimator, probed, lam, [point])
    tangents = lam.numel() if estimator.name == "itd_forward" else 1
    seen = (Probe.calls["phi"], Probe.calls["vjp"], Probe.calls["jvp"] * tangents)
    assert (e.cost.n_phi, e.cost.n_vjp, e.cost.n_jvp) == seen
    assert seen[0] > 0 or point[0] == 0
