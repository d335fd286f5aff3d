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
from hgbench.core.cost import Cost


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
    # start, and a solver warm start does not apply (hgbench.running.outer).
    solver_start: bool = False

    def __init__(self, name: str):
        self.name = name

    def check_ready(self) -> None:
        """Raise ValueError (one line, with how to install it) when something the estimator needs
        outside hgbench is missing, e.g. the library an adapter drives; nothing by default."""

    def estimate(self, bound: BoundProblem, pairs: list[tuple[int, int]]) -> Iterator[Estimate]:
        raise NotImplementedError
