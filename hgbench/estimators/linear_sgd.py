"""Stochastic AID with minibatch SGD on the linear system (Grazzi, Pontil, Salzo, "Convergence
Properties of Stochastic Hypergradients", AISTATS 2021: stochastic fixed-point iterations on the
linear system, with constant or vanishing steps)."""

from __future__ import annotations

import torch

from hgbench.core.stochastic import StochasticEstimate, step_at, total
from hgbench.estimators.stochastic import DecreasingSolverOptions, SGDEstimator, ks_by_t


class LinearSGD(SGDEstimator):
    """Stochastic AID: minibatch SGD on the linear system (Grazzi, Pontil, Salzo AISTATS 2021); mode=stochastic.

    H z = ∇₁E (H = ∇₁²ℓ(w_t, λ)) solved by minibatch SGD on ½ zᵀHz − ∇₁Eᵀz from z₀ = 0:

        w_t:  t steps of minibatch SGD on ℓ from w₀ (step γ = inner_step·α)
        z_{j+1} = z_j − η (∇₁²ℓ_{B_j}(w_t) z_j − ∇₁E_{D_j}(w_t)),   fresh B_j, D_j each step
        ĝ(t, k) = ∇₂E_D(w_t) − ∂²ℓ_{B'}/∂λ∂w (w_t) z_k,            fresh D, B' for every k

    a stochastic fixed-point iteration z ← z + η(∇₁E − Hz) (Grazzi, Pontil, Salzo AISTATS 2021
    analyse it with decreasing steps): η = solver_step·α constant, or with ``step_halflife`` = h
    both SGDs vanish, γᵢ = γ·h/(h + i) and η_j = η·h/(h + j) (hgbench.core.stochastic.step_at). Full batch,
    η = γ = α: z_k = α Σ_{i<k} (Jᵀ)ⁱ∇₁E, J = I − αH, so ĝ is hgbench's fp(t, k) (AID-FP) up to
    round-off. Oracle calls of (t, k): t·b sample gradients, k·b Hessian–vector, b cross
    products, (k + 1)·b' outer gradients.
    """

    role = "linear_sgd"
    Options = DecreasingSolverOptions
    has_k = True

    def __init__(self, name, inner_step=1.0, solver_step=1.0, step_halflife=None):
        super().__init__(name, inner_step, step_halflife)
        self.solver_step = solver_step

    def stochastic(self, sampled, pairs):
        eta = self.solver_step * sampled.alpha
        ks_at = ks_by_t(pairs)
        for t, w, inner in self.inner_sgd(sampled, ks_at):
            solve = sampled.segment()
            z, done = torch.zeros_like(w), 0
            for k in ks_at[t]:
                with solve:
                    while done < k:
                        grad_w, _ = sampled.outer_grads(w, sampled.outer_batch())
                        z = z - step_at(eta, done, self.step_halflife) * (sampled.hvp(w, z, sampled.inner_batch()) - grad_w)
                        done += 1
                final = sampled.segment()
                with final:
                    _, grad_lam = sampled.outer_grads(w, sampled.outer_batch())
                    grad = grad_lam - sampled.cross(w, z, sampled.inner_batch())
                yield StochasticEstimate(t, k, grad, w, *total(inner, solve, final))
