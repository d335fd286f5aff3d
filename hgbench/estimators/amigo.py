"""AmIGO's hypergradient at a fixed λ: warm-started minibatch SGD on the inner problem and on
the linear system (Arbel & Mairal, "Amortized Implicit Differentiation for Stochastic Bilevel
Optimization", ICLR 2022, Algorithm 1 with SGD as the inner and the linear solver)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hgbench.core.stochastic import StochasticEstimate, total
from hgbench.estimators.stochastic import SolverOptions, StochasticEstimator
from hgbench.options import Integer, option


@dataclass
class AmIGOOptions(SolverOptions):
    inner_steps: int = option(Integer(1), "T: minibatch SGD steps on the inner problem per round, warm-started")
    solver_steps: int = option(Integer(1), "N: minibatch SGD steps on the linear system per round, warm-started")


class AmIGO(StochasticEstimator):
    """AmIGO: warm-started inner SGD and linear-system SGD, t rounds at a frozen λ (Arbel & Mairal ICLR 2022); mode=stochastic.

    AmIGO's outer iteration with the outer variable frozen at λ, so that its amortization (each
    round warm-starts both solvers from the previous round's w and z) is all that improves the
    estimate. From w = w₀, z = 0, round r = 1 … t:

        T steps  w ← w − γ ∇₁ℓ_B(w),                    a fresh B per step
        N steps  z ← z − η (∇₁²ℓ_B(w) z − ∇₁E_D(w)),     a fresh B per step, D drawn once per round
        ĝ(r) = ∇₂E_D(w) − ∂²ℓ_{B'}/∂λ∂w (w) z,           B' fresh

    (γ = inner_step·α, η = solver_step·α, T = inner_steps, N = solver_steps; the right-hand side
    ∇₁E_D is computed once per round and held through the N steps, as in Algorithm 1.) The grid's t
    counts rounds; k is not used (None). Full batch, one round: ĝ(1) is hgbench's fp(T, N) (AID-FP,
    T inner steps then N fixed-point steps from 0) up to round-off (tested); → ∇f(λ) as t → ∞.
    Oracle calls of t rounds: t·T·b sample gradients, t·N·b Hessian–vector, b cross products,
    t·b' outer gradients.
    """

    role = "amigo"
    Options = AmIGOOptions

    def __init__(self, name, inner_step=1.0, solver_step=1.0, inner_steps=10, solver_steps=10):
        super().__init__(name, inner_step)
        self.solver_step, self.inner_steps, self.solver_steps = solver_step, inner_steps, solver_steps

    def planned_cost(self, d, p, pairs, step_bytes, itemsize):
        """A few vectors; (T + N + 1) units per round of the largest t."""
        big_t = max(t for t, _ in pairs)
        return 8 * d * itemsize, big_t * (self.inner_steps + self.solver_steps + 1), f"a few vectors of {d}"

    def stochastic(self, sampled, pairs):
        gamma, eta = self.inner_step * sampled.alpha, self.solver_step * sampled.alpha
        rounds, w, z, done = sampled.segment(), sampled.w0, torch.zeros_like(sampled.w0), 0
        grad_lam = None
        for t in sorted({t for t, _ in pairs}):
            with rounds:
                while done < t:
                    for _ in range(self.inner_steps):
                        w = w - gamma * sampled.grad(w, sampled.inner_batch())
                    grad_w, grad_lam = sampled.outer_grads(w, sampled.outer_batch())
                    for _ in range(self.solver_steps):
                        z = z - eta * (sampled.hvp(w, z, sampled.inner_batch()) - grad_w)
                    done += 1
            final = sampled.segment()
            with final:
                if grad_lam is None:  # t = 0: no round yet, ĝ = ∇₂E_D(w₀) (z = 0)
                    _, grad_lam = sampled.outer_grads(w, sampled.outer_batch())
                grad = grad_lam - sampled.cross(w, z, sampled.inner_batch())
            yield StochasticEstimate(t, None, grad, w, *total(rounds, final))
