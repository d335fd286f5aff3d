"""The estimator interface, and the pieces every estimator shares.

An estimator takes (problem, λ, pairs) — pairs being the (t, k) grid points — and yields one
``Estimate`` per grid point: the approximate hypergradient ĝ(t, k), the inner iterate w_t it
used, and the wall time a from-scratch computation of that point costs. Estimators compute
whole curves in one pass wherever the math allows; each says in its docstring which passes it
needs. Estimators that ignore k (``uses_k = False``) yield k = None, once per distinct t.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

import torch

from hgbench.problems.base import BoundProblem, Problem


@dataclass
class Estimate:
    t: int
    k: Optional[int]
    grad: torch.Tensor
    w: torch.Tensor
    time_s: float


class Stopwatch:
    """Sums the wall time spent inside ``with watch:`` blocks (synchronizing CUDA at both ends,
    so that asynchronous kernels are counted where they run)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.total = 0.0
        self._cuda = torch.device(device).type == "cuda"

    def _sync(self):
        if self._cuda:
            torch.cuda.synchronize()

    def __enter__(self):
        self._sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self._sync()
        self.total += time.perf_counter() - self._start


def inner_iterates(bound: BoundProblem, ts: Iterable[int]) -> Iterator[tuple[int, torch.Tensor, float]]:
    """Yield (t, w_t, seconds spent on the t steps) for each t in ts, ascending, from ONE
    trajectory w_i = Φ(w_{i−1}, λ), w_0 = ``bound.w0``. The clock pauses while the caller works."""
    watch = Stopwatch(bound.w0.device)
    w, done = bound.w0, 0
    for t in sorted(set(ts)):
        with watch:
            while done < t:
                w = bound.phi(w, bound.lam)
                done += 1
        yield t, w, watch.total


class Estimator:
    """Base class. Subclasses implement ``estimate`` and may refuse a problem in ``check``."""

    uses_k: bool = True

    def __init__(self, name: str):
        self.name = name

    def check(self, problem: Problem) -> None:
        """Raise ValueError, naming the problem and the alternatives, if this estimator does not
        apply to ``problem``. Called before any heavy work."""

    def estimate(self, problem: Problem, lam: torch.Tensor, pairs: list[tuple[int, int]]) -> Iterator[Estimate]:
        raise NotImplementedError

    def describe(self) -> str:
        doc = (type(self).__doc__ or "").strip().splitlines()
        return f"{self.name}: {doc[0] if doc else type(self).__name__}"
