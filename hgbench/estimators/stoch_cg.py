"""Stochastic AID with minibatch conjugate gradient on the linear system (Grazzi, Pontil, Salzo,
"Convergence Properties of Stochastic Hypergradients", AISTATS 2021: stochastic AID, with the
linear system on a minibatch Hessian; CG itself: Hestenes & Stiefel 1952)."""

from __future__ import annotations

import torch

from hgbench.core.krylov import conjugate_gradient, iterates
from hgbench.core.stochastic import StochasticEstimate, total
from hgbench.estimators.stochastic import SGDEstimator, ks_by_t


class StochasticCG(SGDEstimator):
    """Stochastic AID-CG: k CG steps on one minibatch's linear system (Grazzi, Pontil, Salzo AISTATS 2021); mode=stochastic.

        w_t:  t steps of minibatch SGD on ℓ from w₀ (step γ = inner_step·α, a fresh batch per step;
              vanishing with ``step_halflife``)
        z_k:  k steps of CG (hgbench.core.krylov.conjugate_gradient, from z₀ = 0) on
              ∇₁²ℓ_B(w_t) z = ∇₁E_D(w_t), B and D drawn once per t (CG needs one fixed SPD operator)
        ĝ(t, k) = ∇₂E_D(w_t) − ∂²ℓ_{B'}/∂λ∂w (w_t) z_k,   B' a fresh inner minibatch for every k

    The minibatch system's solution H_B⁻¹∇₁E_D is biased for H⁻¹∇₁E (E H_B⁻¹ ≠ (E H_B)⁻¹), the
    bias Grazzi et al. 2021 bound for stochastic AID; CG converges to it in at most d steps.
    Full batch, γ = α: CG's iterates on Hz = ∇₁E are α times those on (I − Jᵀ)v = ∇₁E (J = I − αH;
    CG is invariant to scaling the system), so ĝ is hgbench's cg(t, k) (AID-CG) up to round-off
    (tested). Oracle calls of (t, k): t·b sample gradients, k·b Hessian–vector, b cross products,
    b' outer gradients. No step option for the solver: CG chooses its own.
    """

    role = "stoch_cg"
    has_k = True

    def stochastic(self, sampled, pairs):
        ks_at = ks_by_t(pairs)
        for t, w, inner in self.inner_sgd(sampled, ks_at):
            solve = sampled.segment()
            with solve:
                batch = sampled.inner_batch()
                grad_w, grad_lam = sampled.outer_grads(w, sampled.outer_batch())
                solver = iterates(conjugate_gradient(lambda u, w=w, batch=batch: sampled.hvp(w, u, batch), grad_w))
                z, done = torch.zeros_like(grad_w), 0
            for k in ks_at[t]:
                with solve:
                    while done < k:
                        z = next(solver)
                        done += 1
                final = sampled.segment()
                with final:
                    grad = grad_lam - sampled.cross(w, z, sampled.inner_batch())
                yield StochasticEstimate(t, k, grad, w, *total(inner, solve, final))
