"""SOBA: Dagréou, Ablin, Vaiter, Moreau, "A framework for bilevel optimization that enables
stochastic and global variance reduction algorithms", NeurIPS 2022, Algorithm 1 (SOBA)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from hgbench.solvers.base import Moving, Solver, SolverOptions


@dataclass
class SobaOptions(SolverOptions):
    pass


def directions(oracle: Moving, z: torch.Tensor, v: torch.Tensor, inner: torch.Tensor, outer: torch.Tensor):
    """SOBA's (D_z, D_v, D_x) at (z, v, the oracle's x) on the inner batch ``inner`` and the outer
    batch ``outer`` (``Soba``'s docstring; SRBA's too): b sample gradients, HVPs and cross
    products, b' outer gradients."""
    grad, hvp, cross = oracle.oracles_at(z, v, inner)
    outer_z, outer_x = oracle.outer_grads(z, outer)
    return grad, hvp + outer_z, cross + outer_x


class Soba(Solver):
    """SOBA: z, v and x each take one minibatch step per iteration.

    Along the directions, on an inner minibatch B and an outer minibatch B' drawn afresh,

        D_z = ∇₁g_B(z, x)
        D_v = ∇₁²g_B(z, x) v + ∇₁f_B'(z, x)
        D_x = ∂²g_B/∂x∂z (z, x) v + ∇₂f_B'(z, x)

        z ← z − ρ_s D_z,   v ← v − ρ_s D_v,   x ← x − γ_s D_x   (all from the same (z, v, x))

    with ρ_s = ρ₀ s^{−a}, γ_s = γ₀ s^{−c}. ``step_rule=paper``: a = 2/5, c = 3/5, the decreasing
    steps of the paper's convergence theorem for SOBA (§3, its theorem on SOBA: ρ_t ∝ t^{−2/5},
    γ_t ∝ t^{−3/5}, ‖∇h‖² in O(log T / T^{2/5}) on average). NOT VERIFIED: the theorem's text
    could not be read with the search tool (only the paper's abstract is stored there), so these
    exponents are this project's recollection of it, not a checked quotation.
    ``step_rule=constant``: a = c = 0, as benchmark_bilevel's solvers/soba.py runs it (with
    γ₀ = ρ₀ / outer_ratio).
    At the full batch and a = c = 0 this is the deterministic single-loop method (gradient steps
    on the three variables at once)."""

    Options = SobaOptions
    paper = "Dagréou, Ablin, Vaiter, Moreau NeurIPS 2022, Algorithm 1"
    PAPER_EXPONENTS = {"inner": 0.4, "outer": 0.6}  # ρ_s ∝ s^{-2/5}, γ_s ∝ s^{-3/5} (class docstring: not verified)

    def run(self, oracle: Moving, lam: torch.Tensor) -> Iterator[torch.Tensor]:
        z, v, s = oracle.w0, torch.zeros_like(oracle.w0), 0
        while True:
            s += 1
            oracle.at(lam)
            d_z, d_v, d_x = directions(oracle, z, v, oracle.inner_batch(), oracle.outer_batch())
            rho = self.step("inner", self.inner_step, s)
            z, v, lam = z - rho * d_z, v - rho * d_v, lam - self.step("outer", self.outer_step, s) * d_x
            yield lam
