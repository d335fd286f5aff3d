"""The estimator interface, and the pieces every estimator shares.

An estimator takes (problem, λ, pairs) — pairs being the (t, k) grid points — and yields one
``Estimate`` per grid point: the approximate hypergradient ĝ(t, k), the inner iterate w_t it
used, and the cost (hgbench.core.cost.Cost: time, Φ evaluations, VJPs, JVPs, memory) that a
from-scratch computation of that point would have. Estimators compute whole curves in one pass
wherever the math allows; each says in its docstring which passes it needs. Estimators without
a solver (ITD) ignore k and yield k = None, once per distinct t.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Iterator, Optional

import torch

from hgbench.core.cost import Cost, Meter
from hgbench.problems.base import BoundProblem, Problem


@dataclass
class Estimate:
    t: int
    k: Optional[int]
    grad: torch.Tensor
    w: torch.Tensor
    cost: Cost


def inner_iterates(bound: BoundProblem, ts: Iterable[int]) -> Iterator[tuple[int, torch.Tensor, Cost]]:
    """Yield (t, w_t, cost of the t steps) for each t in ts, ascending, from ONE trajectory
    w_i = Φ(w_{i−1}, λ), w_0 = ``bound.w0``. The meter pauses while the caller works."""
    meter = Meter(bound.w0.device)
    w, done = bound.w0, 0
    for t in sorted(set(ts)):
        with meter:
            while done < t:
                w = bound.phi(w, bound.lam)
                done += 1
        yield t, w, replace(meter.cost)


class Estimator:
    """Base class. Subclasses implement ``estimate`` and may refuse a problem in ``check``."""

    batchable: bool = True  # composes with torch.func.vmap over λ draws (hgbench.core.batch)
    # The method of the papers this estimator computes (itd, fp, cg, ...; None: none of theirs).
    # Claims and predicted rates select rows by it (the CSV's ``role`` column), never by name.
    role: str | None = None

    def __init__(self, name: str):
        self.name = name

    def check(self, problem: Problem) -> None:
        """Raise ValueError, naming the problem and the alternatives, if this estimator does not
        apply to ``problem``. Called before any heavy work."""

    def estimate(self, problem: Problem, lam: torch.Tensor, pairs: list[tuple[int, int]]) -> Iterator[Estimate]:
        raise NotImplementedError
