"""VRBO: Yang, Ji, Liang, "Provably faster algorithms for bilevel optimization", NeurIPS 2021,
Algorithm 2 (VRBO: variance-reduced bilevel optimizer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from hgbench.options import option
from hgbench.solvers.base import POSITIVE, STEPS, Moving, Solver, SolverOptions, recursive


@dataclass
class VrboOptions(SolverOptions):
    solver_step: float = option(POSITIVE, "η: the Neumann series' step (η ≤ 1/L)")
    solver_steps: int = option(STEPS, "Q: Hessian–vector products of the Neumann series per point (benchmark_bilevel: 10)")
    inner_steps: int = option(STEPS, "m: z steps per iteration, each with a recursive update of both directions")
    period: int = option(STEPS, "q: the directions are recomputed on every sample at iterations 1, q + 1, 2q + 1, …")


class Vrbo(Solver):
    """VRBO: SPIDER-type recursive estimates of ∇₁g and StocBiO's hypergradient, restarted on all samples.

    The restart comes every q iterations. The directions (d_z, d_x) estimate (∇₁g, h) at the
    current (z, x), h = ∇₂f − ∂²g/∂x∂z u, u ≈ [∇₁²g]⁻¹∇₁f the truncated Neumann series
    (Solver.estimates). Each iteration s:

        if s ≡ 1 (mod q): (d_z, d_x) = (g, h)(z, x) on every sample  (n, m samples; Q·n HVPs)
        x⁺ = x − γ d_x
        m times (z⁻, x⁻) = (z, x); z ← z − ρ d_z; x ← x⁺ (at the first only) and, on fresh
            batches shared by both points,
            d_z ← d_z + g_B(z, x) − g_B(z⁻, x⁻),   d_x ← d_x + h_B(z, x) − h_B(z⁻, x⁻)
            (base.recursive with momentum 0)

    so that each difference carries the estimates from the previous point to the new one: at the
    first z step the point moves in x too. benchmark_bilevel's solvers/vrbo.py (read, not copied)
    takes the first difference at x⁺ on both sides (not carrying the x step), and its restart
    period is (n + m)·period_frac / b iterations; here q is an option. Steps: constant under
    either ``step_rule``, as benchmark_bilevel runs it; that the paper's Algorithm 2 takes
    constant steps is this project's recollection, NOT checked against the paper's theorem (the
    search tool does not store it). At the full batch every difference is exact, so d = (g, h)
    exactly (round-off aside): x steps along the Neumann hypergradient, then m gradient steps on z;
    the fixed point is MRBO's and StocBiO's (tests/test_bilevel_solvers.py).
    Oracle calls: a restart n sample gradients, Q·n HVPs, n cross products, m outer gradients; each
    z step 2b, 2Q·b, 2b, 2b'."""

    Options = VrboOptions
    paper = "Yang, Ji, Liang NeurIPS 2021, Algorithm 2"

    def run(self, oracle: Moving, lam: torch.Tensor) -> Iterator[torch.Tensor]:
        z, s = oracle.w0, 0
        while True:
            s += 1
            if (s - 1) % self.period == 0:
                (d_z,), (d_x,) = self.estimates(oracle, [(z, lam)], self.solver_step, self.solver_steps, full=True)
            previous, lam = (z, lam), lam - self.outer_step * d_x
            for _ in range(self.inner_steps):
                z = z - self.inner_step * d_z
                (g, g_old), (h, h_old) = self.estimates(oracle, [(z, lam), previous], self.solver_step, self.solver_steps)
                d_z, d_x = recursive(g, g_old, d_z, 0.0), recursive(h, h_old, d_x, 0.0)
                previous = (z, lam)
            yield lam
