"""The base of the stochastic estimators (issue 27): hypergradients at a fixed λ from minibatch
products of a finite-sum problem (hgbench.problems.finite_sum, hgbench.core.stochastic).

A stochastic estimator runs in mode=stochastic (hgbench.running.stochastic_mode), which repeats
it with seeded minibatches to measure its bias and variance against the certified reference;
``stochastic(sampled, pairs)`` yields one hgbench.core.stochastic.StochasticEstimate per grid
point (per distinct t for estimators without k). Its steps are options, as multiples of the
problem's deterministic step α(λ) = 2/(L + μ): with the full batch and every step multiple 1,
each computes its deterministic counterpart (named in its docstring) up to round-off.
Batch sizes are not estimator options but the mode's axis (``stochastic.batches``): one run
compares batch sizes at the same λ draws and references.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from hgbench.core.stochastic import Sampled, StochasticEstimate
from hgbench.estimators.base import Estimator, GridShape
from hgbench.options import EstimatorOptions, Number, option

STEP = Number(0, low_open=True)


@dataclass
class StochasticOptions(EstimatorOptions):
    inner_step: float = option(
        STEP, "inner minibatch SGD step, as a multiple of the problem's α(λ) = 2/(L + μ) (1: the deterministic Φ's step)"
    )


@dataclass
class DecreasingOptions(StochasticOptions):
    step_halflife: float | None = option(
        Number(0, low_open=True, null="constant steps"),
        "h: the inner SGD's step i is inner_step·α·h/(h + i), halved at i = h (vanishing steps, hgbench.core.stochastic.step_at)",
    )


@dataclass
class SolverOptions(StochasticOptions):
    solver_step: float = option(STEP, "the linear solver's step η, as a multiple of α(λ) (1: the deterministic counterpart's)")


@dataclass
class DecreasingSolverOptions(SolverOptions, DecreasingOptions):
    """A linear solver's step and the inner SGD's vanishing steps (stocbio, linear_sgd)."""


class StochasticEstimator(Estimator):
    """Base class: subclasses implement ``stochastic``. ``estimate`` (mode=error's entry) refuses:
    a stochastic estimator needs minibatches of a finite-sum problem."""

    batchable = False
    minibatch = True
    has_k = False  # whether its estimates have a k (a linear solver's steps); else k is None, one estimate per t
    Options = StochasticOptions

    def __init__(self, name: str, inner_step: float = 1.0):
        super().__init__(name)
        self.inner_step = inner_step

    def estimate(self, bound, pairs):
        raise ValueError(f"estimator {self.name!r} is stochastic: it runs in mode=stochastic (minibatches of a finite-sum problem)")

    def stochastic(self, sampled: Sampled, pairs: list[tuple[int, int]]) -> Iterator[StochasticEstimate]:
        raise NotImplementedError

    def planned_cost(self, d, p, pairs, step_bytes, itemsize):
        """A few vectors; T steps and, per t, 2·(max k at t) + 2 units (one repetition)."""
        grid = GridShape.of(pairs)
        return 8 * d * itemsize, grid.big_t + sum(2 * grid.k_at[t] + 2 for t in grid.ts), f"a few vectors of {d}"


class SGDEstimator(StochasticEstimator):
    """Base of the estimators that start with t steps of minibatch SGD on ℓ from w₀ (one trajectory
    for every t of the grid): ``inner_sgd`` takes them at inner_step·α, constant or vanishing
    (``step_halflife``, hgbench.core.stochastic.step_at)."""

    Options = DecreasingOptions

    def __init__(self, name: str, inner_step: float = 1.0, step_halflife: float | None = None):
        super().__init__(name, inner_step)
        self.step_halflife = step_halflife

    def inner_sgd(self, sampled: Sampled, ts, lam=None):
        """``sampled.sgd`` at this estimator's steps (``lam``: a leaf to differentiate through, ITD)."""
        return sampled.sgd(ts, self.inner_step * sampled.alpha, lam=lam, halflife=self.step_halflife)


def ks_by_t(pairs: list[tuple[int, int]]) -> dict[int, list[int]]:
    """The grid's k values at each t, ascending."""
    found: dict[int, set] = {}
    for t, k in pairs:
        found.setdefault(t, set()).add(k)
    return {t: sorted(ks) for t, ks in found.items()}
