"""The direction of SOBA at a fixed λ (Dagréou, Ablin, Vaiter, Moreau, "A framework for bilevel
optimization that enables stochastic and global variance reduction algorithms", NeurIPS 2022)."""

from __future__ import annotations

import torch

from hgbench.core.stochastic import StochasticEstimate, total
from hgbench.estimators.stochastic import StochasticEstimator


class SOBA(StochasticEstimator):
    """SOBA's direction at a frozen λ after t joint minibatch steps of z and v (Dagréou et al. NeurIPS 2022); mode=stochastic.

    SOBA's inner variable z, linear-system variable v and direction D_λ after t joint steps from
    z₀ = w₀ and v₀ = 0 (in SOBA z, v and the outer variable move at the same time; here the
    outer variable stays at λ):

        D_z = ∇₁ℓ_B(z, λ),  D_v = ∇₁²ℓ_B(z, λ) v + ∇₁E_D(z, λ),  z ← z − ρ D_z,  v ← v − ρ D_v
        ĝ(t) = D_λ = ∂²ℓ_B/∂λ∂w (z_t, λ) v_t + ∇₂E_D(z_t, λ)

    one inner minibatch B for both ℓ-products of a step and one outer minibatch D for E (fresh
    each step, and fresh for the direction at every t of the grid); both steps ρ = inner_step·α.
    v tracks −H⁻¹∇₁E (SOBA's sign): D_v is the gradient of ½vᵀHv + ∇₁Eᵀv, so at a fixed z the
    v-update is minibatch SGD on the linear system (hgbench.estimators.linear_sgd, with z = −v).
    Full batch: as t → ∞ (ρ below 2/L), z_t → w* and v_t → −H⁻¹∇₁E(w*), so ĝ → ∇f(λ); at finite t
    it has no deterministic counterpart in hgbench (v is updated along the moving z).
    Oracle calls of t: t·b sample gradients, t·b Hessian–vector, b cross products, (t + 1)·b' outer.
    k is not used (None).
    """

    role = "soba"

    def stochastic(self, sampled, pairs):
        rho = self.inner_step * sampled.alpha
        steps = sampled.segment()
        z, v, done = sampled.w0, torch.zeros_like(sampled.w0), 0
        for t in sorted({t for t, _ in pairs}):
            with steps:
                while done < t:
                    batch = sampled.inner_batch()
                    grad_w, _ = sampled.outer_grads(z, sampled.outer_batch())
                    d_v = sampled.hvp(z, v, batch) + grad_w
                    z, v = z - rho * sampled.grad(z, batch), v - rho * d_v
                    done += 1
            final = sampled.segment()
            with final:
                _, grad_lam = sampled.outer_grads(z, sampled.outer_batch())
                grad = sampled.cross(z, v, sampled.inner_batch()) + grad_lam
            yield StochasticEstimate(t, None, grad, z, *total(steps, final))
