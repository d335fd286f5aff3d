"""FSLA: Li, Gu, Huang, "A fully single loop algorithm for bilevel optimization without Hessian
inverse", AAAI 2022 (arXiv 2112.04660), its fully single loop algorithm (FSLA) with the
recursive momentum on the outer direction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from hgbench.options import Number, option
from hgbench.solvers.base import Moving, Solver, SolverOptions, recursive


@dataclass
class FslaOptions(SolverOptions):
    momentum: float = option(
        Number(0, 1, low_open=True), "η₀ ∈ (0, 1]: the recursive momentum's weight at the first iteration (1: no momentum)"
    )


def hypergradient(oracle: Moving, lam: torch.Tensor, z: torch.Tensor, v: torch.Tensor, outer: torch.Tensor, inner: torch.Tensor):
    """h = ∇₂f_B'(z, x) + ∂²g_B/∂x∂z (z, x) v at x = ``lam`` (the oracle moved there), on the
    given batches: b' outer gradients, b cross products."""
    oracle.at(lam)
    return oracle.outer_grads(z, outer)[1] + oracle.cross(z, v, inner)


class Fsla(Solver):
    """FSLA: z, then v, then x, one minibatch step each, x along a recursive-momentum direction.

    Each iteration s from (z, v, x) (and the previous x⁻), on fresh minibatches B₁, B₂, B₃ (inner),
    B'₁, B'₂ (outer):

        z⁺ = z − ρ_s ∇₁g_B₁(z, x)
        v⁺ = v − ρ_s (∇₁²g_B₂(z⁺, x) v + ∇₁f_B'₁(z⁺, x))
        h  = ∇₂f_B'₂(z⁺, x)  + ∂²g_B₃/∂x∂z (z⁺, x) v⁺      (the estimate at this iteration's point)
        h⁻ = ∇₂f_B'₂(z, x⁻)  + ∂²g_B₃/∂x∂z (z, x⁻) v       (the same batches at the previous one)
        d  = h + (1 − η_s)(d⁻ − h⁻)   (hgbench.solvers.base.recursive; d = h at s = 1)
        x⁺ = x − γ_s d

    (v ≈ −[∇₁²g]⁻¹∇₁f: SOBA's sign). ρ_s = ρ₀ s^{−a}, η_s = η₀ s^{−b}, γ_s = γ₀ s^{−c}.
    ``step_rule=paper``: a = b = c = 1/2, benchmark_bilevel's defaults (its solvers/fsla.py, read,
    not copied), NOT checked against the paper's theorem (the search tool stores the abstract only,
    which states the rate "O(ε^{-2})" but not the steps). ``step_rule=constant``: a = b = c = 0.
    benchmark_bilevel starts its memory of x⁻ and d at zero; here d = h at s = 1.

    At the full batch h⁻ recomputes the previous iteration's h on the same inputs, so d = h at
    every s whatever η (round-off aside): FSLA is then the deterministic sequential single-loop
    method above without momentum, whose fixed point is z = z*(x*), v = v*(x*), x = x*
    (tests/test_bilevel_solvers.py).
    Oracle calls per iteration: b sample gradients, b HVPs, 2b cross products and 3b' outer
    gradients (b cross products and 2b' outer gradients at s = 1)."""

    Options = FslaOptions
    paper = "Li, Gu, Huang AAAI 2022, FSLA"
    PAPER_EXPONENTS = {"inner": 0.5, "momentum": 0.5, "outer": 0.5}  # benchmark_bilevel's (class docstring: not checked)

    def run(self, oracle: Moving, lam: torch.Tensor) -> Iterator[torch.Tensor]:
        z, v = oracle.w0, torch.zeros_like(oracle.w0)
        previous = direction = None
        s = 0
        while True:
            s += 1
            oracle.at(lam)
            rho = self.step("inner", self.inner_step, s)
            z_new = z - rho * oracle.grad(z, oracle.inner_batch())
            v_new = v - rho * (oracle.hvp(z_new, v, oracle.inner_batch()) + oracle.outer_grads(z_new, oracle.outer_batch())[0])
            outer, inner = oracle.outer_batch(), oracle.inner_batch()
            h = hypergradient(oracle, lam, z_new, v_new, outer, inner)
            if direction is None:
                direction = h
            else:
                old = hypergradient(oracle, previous, z, v, outer, inner)
                direction = recursive(h, old, direction, self.step("momentum", self.momentum, s))
            previous, z, v = lam, z_new, v_new
            lam = lam - self.step("outer", self.outer_step, s) * direction
            yield lam
