"""MRBO: Yang, Ji, Liang, "Provably faster algorithms for bilevel optimization", NeurIPS 2021,
Algorithm 1 (MRBO: momentum-based recursive bilevel optimizer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from hgbench.options import Number, option
from hgbench.solvers.base import POSITIVE, STEPS, Moving, Solver, SolverOptions, recursive


@dataclass
class MrboOptions(SolverOptions):
    solver_step: float = option(POSITIVE, "η: the Neumann series' step (η ≤ 1/L)")
    solver_steps: int = option(STEPS, "Q: Hessian–vector products of the Neumann series per point (benchmark_bilevel: 10)")
    momentum: float = option(
        Number(0, 1, low_open=True), "η₀ ∈ (0, 1]: the recursive momentum's weight at the first iteration (1: no momentum)"
    )


class Mrbo(Solver):
    """MRBO: z and x step together along recursive-momentum (STORM) estimates, x's of StocBiO's hypergradient.

    Each iteration s from (z, x) and the previous (z⁻, x⁻), on fresh minibatches B (inner), B'
    (outer) and B_1 … B_Q (the Neumann series), the SAME at both points:

        (Solver.estimates:)
        g  = ∇₁g_B(z, x),                         g⁻ = ∇₁g_B(z⁻, x⁻)
        h  = ∇₂f_B'(z, x) − ∂²g_B/∂x∂z (z, x) u,  h⁻ the same at (z⁻, x⁻) with u⁻
        u  = η Σ_{q=0..Q} ∏_{i≤q} (I − η∇₁²g_{B_i}(z, x)) ∇₁f_B'(z, x)   (Solver.neumann; u⁻ at (z⁻, x⁻))
        d_z = g + (1 − η_s)(d_z − g⁻),  d_x = h + (1 − η_s)(d_x − h⁻)   (base.recursive; d = g, h at s = 1)
        (z⁻, x⁻) ← (z, x);  z ← z − ρ_s d_z,  x ← x − γ_s d_x

    ρ_s = ρ₀ s^{−a}, γ_s = γ₀ s^{−c}, η_s = η₀ s^{−b}. ``step_rule=paper``: a = c = 1/3, b = 2/3,
    benchmark_bilevel's defaults (its solvers/mrbo.py, read, not copied); that they are the
    paper's (steps ∝ (m + k)^{−1/3}, momentum weights ∝ their square) is this project's
    recollection of Algorithm 1, NOT checked against the paper's theorem (the search tool does
    not store it). ``step_rule=constant``: a = b = c = 0.

    At the full batch g⁻, h⁻ recompute the previous g, h on the same inputs, so d = (g, h) at every
    s (round-off aside): MRBO is then the deterministic simultaneous method z ← z − ρ∇₁g,
    x ← x − γ(∇₂f − ∂²g/∂x∂z u), whose fixed point is z*(x̂) and the x̂ where ∇₂f =
    ∂²g/∂x∂z H⁻¹(I − (I − ηH)^{Q+1}) ∇₁f — x* up to StocBiO's truncation
    (tests/test_bilevel_solvers.py).
    Oracle calls per iteration: 2b sample gradients, 2Qb HVPs, 2b cross products, 2b' outer
    gradients (half of each at s = 1: no previous point)."""

    Options = MrboOptions
    paper = "Yang, Ji, Liang NeurIPS 2021, Algorithm 1"
    PAPER_EXPONENTS = {"inner": 1 / 3, "outer": 1 / 3, "momentum": 2 / 3}  # benchmark_bilevel's (class docstring: not checked)

    def run(self, oracle: Moving, lam: torch.Tensor) -> Iterator[torch.Tensor]:
        z, s = oracle.w0, 0
        previous = None
        while True:
            s += 1
            if previous is None:
                (d_z,), (d_x,) = self.estimates(oracle, [(z, lam)], self.solver_step, self.solver_steps)
            else:
                (g, g_old), (h, h_old) = self.estimates(oracle, [(z, lam), previous], self.solver_step, self.solver_steps)
                momentum = self.step("momentum", self.momentum, s)
                d_z, d_x = recursive(g, g_old, d_z, momentum), recursive(h, h_old, d_x, momentum)
            previous = (z, lam)
            z, lam = z - self.step("inner", self.inner_step, s) * d_z, lam - self.step("outer", self.outer_step, s) * d_x
            yield lam
