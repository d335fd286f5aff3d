"""Operation counts and memory come from the code that performs the operations: check them
against the values the algorithms imply, on small cases."""

import pytest
from conftest import draws

from hgbench.estimators.cg import ConjugateGradient
from hgbench.estimators.fp import FixedPoint
from hgbench.estimators.itd import ITDForward, ITDReverse

PAIRS = [(0, 0), (20, 3), (40, 3), (40, 9), (60, 9)]


@pytest.mark.parametrize("estimator", [FixedPoint("fp"), ConjugateGradient("cg")])
def test_aid_counts(ridge, estimator):
    """t Φ steps + one Φ evaluation to build the VJP graph at w_t; k solver VJPs + one for ∂₂Φᵀv."""
    lam = draws(ridge, 1)[0]
    estimates = list(estimator.estimate(ridge, lam, PAIRS))
    for e in estimates:
        assert (e.cost.n_phi, e.cost.n_vjp, e.cost.n_jvp) == (e.t + 1, e.k + 1, 0)
    saved = {e.cost.saved_bytes for e in estimates}
    assert len(saved) == 1 and saved.pop() > 0  # one VJP graph at w_t: independent of t and k


def test_itd_reverse_counts_and_memory_linear_in_t(ridge):
    lam = draws(ridge, 1)[0]
    estimates = {e.t: e.cost for e in ITDReverse("itd").estimate(ridge, lam, PAIRS)}
    for t, cost in estimates.items():
        assert (cost.n_phi, cost.n_vjp, cost.n_jvp) == (t, t, 0)
    per_step = estimates[40].saved_bytes - estimates[20].saved_bytes
    assert per_step > 0 and estimates[60].saved_bytes - estimates[40].saved_bytes == per_step


def test_itd_forward_counts(ridge):
    lam = draws(ridge, 1)[0]
    for e in ITDForward("itd_forward").estimate(ridge, lam, PAIRS):
        assert (e.cost.n_phi, e.cost.n_vjp, e.cost.n_jvp, e.cost.saved_bytes) == (e.t, 0, e.t * lam.numel(), 0)


@pytest.mark.parametrize("estimator", [FixedPoint("fp"), ConjugateGradient("cg"), ITDReverse("itd"), ITDForward("itd_forward")])
def test_one_pass_costs_are_from_scratch_costs(ridge, estimator):
    """The counts reported for a point of a one-pass curve are those of computing it alone."""
    lam = draws(ridge, 1)[0]
    counts = lambda c: (c.n_phi, c.n_vjp, c.n_jvp, c.saved_bytes)  # noqa: E731
    together = {(e.t, e.k): counts(e.cost) for e in estimator.estimate(ridge, lam, PAIRS)}
    for (t, k), count in together.items():
        (alone,) = estimator.estimate(ridge, lam, [(t, k if k is not None else 0)])
        assert counts(alone.cost) == count
