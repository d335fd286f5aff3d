"""SRBA: Dagréou, Moreau, Vaiter, Ablin, "A lower bound and a near-optimal algorithm for bilevel
empirical risk minimization", AISTATS 2024 (arXiv 2302.08766), SRBA (stochastic recursive
bilevel algorithm): SOBA's directions with SARAH's recursive estimates (Nguyen, Liu, Scheinberg,
Takáč, ICML 2017)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from hgbench.options import option
from hgbench.solvers.base import STEPS, Moving, Solver, SolverOptions, recursive
from hgbench.solvers.soba import directions


@dataclass
class SrbaOptions(SolverOptions):
    period: int = option(STEPS, "q: the directions are recomputed on every sample at iterations 1, q + 1, 2q + 1, … (about (n + m)/b)")


class Srba(Solver):
    """SRBA: SOBA's iteration along SARAH's recursive estimates of its three directions.

    D = (D_z, D_v, D_x) of hgbench.solvers.soba (∇₁g, ∇₁²g v + ∇₁f, ∂²g/∂x∂z v + ∇₂f). Each
    iteration s from (z, v, x) and the previous (z⁻, v⁻, x⁻):

        if s ≡ 1 (mod q): d = D(z, v, x) on every sample (n inner, m outer)
        else:             d ← d + D_{B,B'}(z, v, x) − D_{B,B'}(z⁻, v⁻, x⁻)   (fresh B, B' shared by both points;
                          base.recursive with momentum 0)
        z ← z − ρ d_z,  v ← v − ρ d_v,  x ← x − γ d_x

    Steps: constant under either ``step_rule`` (ρ = ``inner_step``, γ = ``outer_step``), as
    benchmark_bilevel's solvers/srba.py (read, not copied) runs it, with its period
    (n + m)·period_frac / b there and q an option here; that the paper's analysis takes constant
    steps and a period of order (n + m)/b is this project's recollection, NOT checked against the
    paper's theorem (the search tool does not store it), nor is any projection step the paper may
    add. At the full batch every difference is exact, so d = D: SRBA is then SOBA's deterministic
    method with constant steps (tests/test_bilevel_solvers.py).
    Oracle calls: a restart n sample gradients, HVPs and cross products and m outer gradients;
    any other iteration 2b of each and 2b'."""

    Options = SrbaOptions
    paper = "Dagréou, Moreau, Vaiter, Ablin AISTATS 2024, SRBA"

    def run(self, oracle: Moving, lam: torch.Tensor) -> Iterator[torch.Tensor]:
        z, v, s = oracle.w0, torch.zeros_like(oracle.w0), 0
        previous = d = None  # set at s = 1, a restart
        every = (torch.arange(oracle.problem.n_inner, device=z.device), torch.arange(oracle.problem.n_outer, device=z.device))
        while True:
            s += 1
            oracle.at(lam)
            if (s - 1) % self.period == 0:
                d = directions(oracle, z, v, *every)
            else:
                batches = oracle.inner_batch(), oracle.outer_batch()
                new = directions(oracle, z, v, *batches)
                oracle.at(previous[2])
                old = directions(oracle, previous[0], previous[1], *batches)
                d = tuple(recursive(a, b, c, 0.0) for a, b, c in zip(new, old, d))
            previous = (z, v, lam)
            z, v, lam = z - self.inner_step * d[0], v - self.inner_step * d[1], lam - self.outer_step * d[2]
            yield lam
