"""The estimator interface, and what every estimator shares.

An estimator takes a bound problem — what a real estimator sees of a problem at one λ draw: Φ,
E, w₀, λ and possibly the inner loss ℓ (hgbench.core.bound.BoundProblem), never the reference
solvers — and the (t, k) grid points, and yields one ``Estimate`` per grid point: the approximate
hypergradient ĝ(t, k), the inner iterate w_t it used, and the cost (hgbench.core.cost.Cost:
time, Φ evaluations, VJPs, JVPs, memory) that a from-scratch computation of that point would
have. The inner trajectory comes from the bound problem (``iterates``), the products with ∂Φ
from its linearization (``linearize``), both counted where they are performed. Estimators
compute whole curves in one pass wherever the math allows; each says in its docstring which
passes it needs. Estimators without a solver (ITD) ignore k and yield k = None, once per
distinct t.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from hgbench.core.bound import BoundProblem
from hgbench.core.cost import Cost, bytes_text
from hgbench.options import EstimatorOptions


@dataclass
class Estimate:
    t: int
    k: Optional[int]
    grad: torch.Tensor
    w: torch.Tensor
    cost: Cost
    v: Optional[torch.Tensor] = None  # AID: the solver's final iterate v_k (a warm start's next v₀); None elsewhere


class Estimator:
    """Base class. Subclasses implement ``estimate`` and declare what they need of a problem."""

    batchable: bool = True  # composes with torch.func.vmap over λ draws (hgbench.running.batch)
    # The method of the papers this estimator computes (itd, fp, cg, ...; None: none of theirs).
    # Claims and predicted rates select rows by it (the CSV's ``role`` column), never by name.
    role: str | None = None
    # What it needs of a problem (keys of hgbench.core.bound.NEEDS: "symmetric", "inner_loss", "dense"),
    # each with the advice printed when a problem lacks it; checked once, before any work.
    needs: dict[str, str] = {}
    # Starts its linear solver from the bound problem's ``v0`` (AID); False: it has no solver
    # start, and a solver warm start does not apply (hgbench.running.outer_loop).
    solver_start: bool = False
    # Estimates from minibatches (hgbench.estimators.stochastic): they run in mode=stochastic only (``minibatch``).
    minibatch: bool = False
    Options = EstimatorOptions  # the options a subclass's constructor takes (hgbench.options), declared in its file

    def __init__(self, name: str):
        self.name = name

    def check_ready(self) -> None:
        """Raise ValueError (one line, with how to install it) when something the estimator needs
        outside hgbench is missing, e.g. the library an adapter drives; nothing by default."""

    def estimate(self, bound: BoundProblem, pairs: list[tuple[int, int]]) -> Iterator[Estimate]:
        raise NotImplementedError

    def planned_cost(self, d: int, p: int, pairs: list[tuple[int, int]], step_bytes: int, itemsize: int) -> tuple[float, float, str]:
        """What the cost guard (hgbench.running.guard) asks before a run: (bytes, Φ-step units
        per λ draw, what dominates the bytes, in words) of computing every grid point of
        ``pairs`` for dim w = d, dim λ = p, given the bytes one taped Φ step saves (S =
        ``step_bytes``) and the dtype's ``itemsize`` (B). Rough by design (a factor of a few);
        a VJP or JVP counts 2 units. This default is a Krylov-free AID (or any estimator of a
        few vectors and one VJP graph): 4·d·B + S bytes; T Φ steps and, per t, 2·(max k at t) + 2
        units (the solver's VJPs and the final ∂₂Φᵀv)."""
        grid = GridShape.of(pairs)
        units = grid.big_t + sum(2 * grid.k_at[t] + 2 for t in grid.ts)
        return 4 * d * itemsize + step_bytes, units, f"4 vectors of {d} and one VJP graph"


@dataclass(frozen=True)
class GridShape:
    """What a cost estimate reads of the (t, k) pairs: the distinct t (sorted), the largest t
    and k, and the largest k at each t (k = None, no solver, counts 0)."""

    ts: list[int]
    big_t: int
    big_k: int
    k_at: dict[int, int]

    @classmethod
    def of(cls, pairs: list[tuple[int, int]]) -> "GridShape":
        ts = sorted({t for t, _ in pairs})
        k_at = {t: max((k for tt, k in pairs if tt == t and k is not None), default=0) for t in ts}
        return cls(ts, max(ts), max((k for _, k in pairs if k is not None), default=0), k_at)


def dense_cost(units_per_d: float, d: int, pairs: list[tuple[int, int]], itemsize: int) -> tuple[float, float, str]:
    """``planned_cost`` of an estimator that forms dense d × d matrices once per t: 4·d²·B bytes;
    T Φ steps and ``units_per_d``·d units per point (measured: exact 2, precond 4, reparam 25 on
    hyper_rep)."""
    grid = GridShape.of(pairs)
    return 4 * d * d * itemsize, grid.big_t + len(grid.ts) * units_per_d * d, f"dense {d} × {d} matrices"


def tape_text(steps: int, step_bytes: int) -> str:
    return f"{steps} steps × {bytes_text(step_bytes)}"
