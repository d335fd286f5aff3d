"""``grid=levels``: estimates at fixed ABSOLUTE inner errors, the protocol of Ye, Peyré, Cremers,
Ablin (AISTATS 2024, arXiv 2402.16748).

    levels e_j = 10^(high − (high − low)·j/(n − 1)), j = 0..n−1   (theirs: 10^1.5 → 10^−3.5, n = 150)

Per λ draw, knowing w* (the reference's): run the inner trajectory w_0, w_1, … (the bound
problem's ``iterates``: Φ, or the problem's own step rule) until ‖w_t − w*‖ < e_{n−1} or t = the
grid's t (a cap), and for every level find the bracket: the first t with d_t = ‖w_t − w*‖ < e_j
(so d_{t−1} ≥ e_j). The estimator — unchanged, seeing nothing of w* — then computes its
estimates ĝ(t) at the bracket iterates, in one pass (grid points (t, k) for the bracket t's,
k = the grid's k for estimators with a solver), and the level's estimate is their linear
interpolation in the distance,

    ĝ_j = (1 − a) ĝ(t) + a ĝ(t − 1),   a = (e_j − d_t)/(d_{t−1} − d_t) ∈ (0, 1],

whose error against the reference, ‖ĝ_j − ∇h(y)‖, is the row's ``err_abs``. Rows are identified
by ``level`` = e_j (the CSV column; empty for other grids); their ``t`` is the bracket's t (the
inner steps that reached the level; two levels in one bracket share it), ``inner_err`` =
e_j/‖w*‖. A level the trajectory does not reach within the cap, or that the start is already
below, gets an ``error`` row saying so.

The authors' code appends one value per bracket (with the last level's weight) rather than one
per level, so where a step crosses several levels its curves are shorter and shifted to the
left; here every level gets its own interpolated estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from hgbench.core.bound import bind, estimate


@dataclass(frozen=True)
class Levels:
    high: float  # log10 of the largest level
    low: float
    n: int
    t_max: int  # cap on inner steps
    k: int | None  # solver steps of estimators that have a solver

    def values(self) -> np.ndarray:
        return np.logspace(self.high, self.low, self.n)

    def check(self) -> None:
        if not self.high > self.low:
            raise ValueError(
                f"grid.high={self.high} must be > grid.low={self.low} (log10 of the inner-error levels, from high down to low)"
            )


@dataclass
class Bracket:
    level: float
    t: int | None  # the first t with d_t < level; None: not reached
    weight: float  # a, the weight of ĝ(t − 1)
    reason: str = ""


def brackets(problem, lam: torch.Tensor, w_star: torch.Tensor, levels: Levels) -> list[Bracket]:
    """The bracket of every level on the draw's inner trajectory (module docstring)."""
    values = levels.values()
    out, j, previous = [], 0, None
    bound = bind(problem, lam)
    w_star = w_star.to(bound.w0)
    for t, w, _ in bound.iterates(range(levels.t_max + 1)):
        dist = torch.linalg.vector_norm(w - w_star).item()
        while j < len(values) and dist < values[j]:
            if previous is None:
                out.append(Bracket(values[j], None, np.nan, f"the start is already within {values[j]:.3g} of w* (‖w₀ − w*‖ = {dist:.3g})"))
            else:
                out.append(Bracket(values[j], t, (values[j] - dist) / (previous - dist)))
            j += 1
        if j == len(values) or not np.isfinite(dist):
            break
        previous = dist
    reason = f"not reached within t = {levels.t_max} inner steps (last ‖w_t − w*‖ = {dist:.3g})"
    return out + [Bracket(v, None, np.nan, reason) for v in values[j:]]


def estimates(estimator, problem, lam: torch.Tensor, found: list[Bracket], levels: Levels):
    """(bracket, Estimate or None) per level: the estimator's estimates at t − 1 and t of every
    reached bracket (one pass; k = the grid's k), interpolated; None for a level not reached. The
    estimate's w is the interpolated iterate and its cost that of ĝ(t)."""
    ts = sorted({s for b in found if b.t is not None for s in (b.t - 1, b.t)})
    at = {est.t: est for est in estimate(estimator, problem, lam, [(t, levels.k) for t in ts])} if ts else {}
    for b in found:
        if b.t is None:
            yield b, None
            continue
        far, near = at[b.t - 1], at[b.t]
        mix = lambda u, v: (1 - b.weight) * v + b.weight * u
        yield b, replace(near, grad=mix(far.grad, near.grad), w=mix(far.w, near.w))
