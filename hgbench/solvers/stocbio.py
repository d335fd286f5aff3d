"""StocBiO: Ji, Yang, Liang, "Bilevel optimization: convergence analysis and enhanced design",
ICML 2021, Algorithm 2 (stocBiO) with its Neumann-series hypergradient (Algorithm 3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from hgbench.options import option
from hgbench.solvers.base import POSITIVE, STEPS, Moving, Solver, SolverOptions


@dataclass
class StocbioOptions(SolverOptions):
    solver_step: float = option(POSITIVE, "η: the Neumann series' step (η ≤ 1/L in the paper)")
    inner_steps: int = option(STEPS, "D: warm-started SGD steps on z per iteration (benchmark_bilevel: 10)")
    solver_steps: int = option(STEPS, "Q: Hessian–vector products of the Neumann series (benchmark_bilevel: 10)")


class Stocbio(Solver):
    """StocBiO: warm-started SGD on z, a minibatch Neumann series, a step of x.

    Algorithm 2 of the paper, each iteration at x:

        z ← D steps of SGD on g(·, x) from the previous z (step ``inner_step``, a fresh batch each)
        (∇₁f_B', ∇₂f_B') on a fresh outer batch at (z, x)
        p₀ = η ∇₁f_B',  p_q = (I − η ∇₁²g_{B_q}(z, x)) p_{q−1} (q = 1 … Q, a fresh batch each),
        u = Σ_{q=0..Q} p_q   (≈ [∇₁²g]⁻¹ ∇₁f: the truncated Neumann series, Solver.neumann; u = −v of SOBA)
        x ← x − β (∇₂f_B' − ∂²g_B''/∂x∂z (z, x) u)   (B'' a fresh inner batch, β = ``outer_step``)

    Constant steps under either ``step_rule``, as in benchmark_bilevel's solvers/stocbio.py (its
    `shia`); that the paper's convergence theorem for stocBiO (§4) takes constant steps (β of order
    1/L_Φ, η ≤ 1/L) is this project's reading, NOT VERIFIED against its text (the search tool
    stores the paper's opening only). At the full batch this is the deterministic AID with warm
    inner starts and a truncated Neumann series (hgbench's neumann estimator at each step); its
    fixed point differs from a stationary point of f by the truncation, O((1 − ημ)^{Q+1})."""

    Options = StocbioOptions
    paper = "Ji, Yang, Liang ICML 2021, Algorithms 2–3"

    def run(self, oracle: Moving, lam: torch.Tensor) -> Iterator[torch.Tensor]:
        z = oracle.w0
        while True:
            oracle.at(lam)
            z = self.sgd(oracle, z, self.inner_step, self.inner_steps)
            outer_z, outer_x = oracle.outer_grads(z, oracle.outer_batch())
            (u,) = self.neumann(oracle, [(z, lam)], [outer_z], self.solver_step, self.solver_steps)
            lam = lam - self.outer_step * (outer_x - oracle.cross(z, u, oracle.inner_batch()))
            yield lam
