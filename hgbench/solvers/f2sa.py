"""F2SA: Kwon, Kwon, Wright, Nowak, "A fully first-order method for stochastic bilevel
optimization", ICML 2023, Algorithm 1 (F²SA)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from hgbench.options import option
from hgbench.solvers.base import POSITIVE, STEPS, Moving, Solver, SolverOptions


@dataclass
class F2saOptions(SolverOptions):
    penalty_step: float = option(POSITIVE, "α₀: the step of y, the minimizer of f + ν g (α_s ν_s L_g < 2 keeps it stable)")
    penalty0: float = option(POSITIVE, "ν₀: the penalty at the first iteration (step_rule=constant: at every iteration)")
    inner_steps: int = option(STEPS, "T: steps of z and y per iteration (benchmark_bilevel: 10)")


class F2sa(Solver):
    """F²SA: first-order only, a penalty surrogate of f with a growing penalty.

    No Hessian–vector product. With
    the penalty ν_s (the paper's λ_k), y tracks argmin_y f(y, x) + ν g(y, x) and z tracks
    z*(x) = argmin_z g(z, x); the x step follows the gradient of the penalty surrogate
    L_ν(x) = f(y, x) + ν (g(y, x) − g(z, x)), which tends to ∇f(x) as ν → ∞ (bias O(1/ν)).
    Each iteration s, T times (fresh batches each):

        z ← z − γ_s ∇₁g_B(z, x)
        y ← y − α_s (∇₁f_B'(y, x) + ν_s ∇₁g_B''(y, x))

    then  x ← x − ξα_s (∇₂f_B'(y, x) + ν_s (∇₂g_B(y, x) − ∇₂g_B''(z, x))), with ξα₀ = ``outer_step``.
    Steps α_s = α₀ s^{−a}, γ_s = γ₀ s^{−c}, ν_s = ν₀ s^{b}. ``step_rule=paper``: a = 5/7,
    c = 4/7, b = 2/7, the paper's step-size design for stochastic noise in both levels (its
    convergence theorem for F²SA, §3). NOT VERIFIED against the theorem's text (the search tool
    stores the abstract only); checked only for consistency with the abstract's "ε^{−7/2}"
    iterations ("when stochastic noises are in both level objectives", verified there): at
    s = ε^{−7/2}, ν_s = ε^{−1} makes the surrogate's O(1/ν) bias ε — arithmetic on the exponents,
    not evidence that they are the theorem's. ``step_rule=constant``: a = c = b = 0, a constant
    penalty ν₀ (the penalty surrogate's fixed point, O(1/ν₀) from x*). benchmark_bilevel's
    solvers/f2sa.py instead decays every step as s^{−1/2}, grows ν by a constant increment, and
    takes ∇₂f at z rather than y. Oracle calls per iteration: T(2b + b') sample gradients and
    outer gradients in the loop, then b' outer and 2b inner gradients (both partials each)."""

    Options = F2saOptions
    paper = "Kwon, Kwon, Wright, Nowak ICML 2023, Algorithm 1"
    # α_s, ξα_s ∝ s^{-5/7}, γ_s ∝ s^{-4/7}, ν_s ∝ s^{+2/7} (class docstring: not verified)
    PAPER_EXPONENTS = {"outer": 5 / 7, "inner": 4 / 7, "penalty": -2 / 7}

    def run(self, oracle: Moving, lam: torch.Tensor) -> Iterator[torch.Tensor]:
        z = y = oracle.w0
        s = 0
        while True:
            s += 1
            oracle.at(lam)
            alpha, gamma = self.step("outer", self.penalty_step, s), self.step("inner", self.inner_step, s)
            nu = self.step("penalty", self.penalty0, s)
            for _ in range(self.inner_steps):
                z = z - gamma * oracle.grad(z, oracle.inner_batch())
                outer_y, _ = oracle.outer_grads(y, oracle.outer_batch())
                y = y - alpha * (outer_y + nu * oracle.grad(y, oracle.inner_batch()))
            _, outer_x = oracle.outer_grads(y, oracle.outer_batch())
            _, inner_y = oracle.inner_grads(y, oracle.inner_batch())
            _, inner_z = oracle.inner_grads(z, oracle.inner_batch())
            lam = lam - self.step("outer", self.outer_step, s) * (outer_x + nu * (inner_y - inner_z))
            yield lam
