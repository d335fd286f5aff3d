"""F2SA's first-order, Hessian-free hypergradient at a fixed λ: the gradient of the penalty
(Lagrangian) surrogate (Kwon, Kwon, Wright, Nowak, "A Fully First-Order Method for Stochastic
Bilevel Optimization", ICML 2023)."""

from __future__ import annotations

from dataclasses import dataclass

from hgbench.core.stochastic import StochasticEstimate, total
from hgbench.estimators.stochastic import STEP, StochasticEstimator, StochasticOptions
from hgbench.options import Number, option


@dataclass
class F2SAOptions(StochasticOptions):
    penalty: float = option(Number(0, low_open=True), "ν: the penalty multiplier of ℓ in the surrogate (the bias is O(1/ν))")
    penalty_step: float = option(STEP, "the step on y as a multiple of α(λ)/ν (1: the deterministic Φ's step on ℓ + E/ν)")


class F2SA(StochasticEstimator):
    """F2SA: the penalty surrogate's gradient from minibatch gradients only, no Hessian (Kwon et al. ICML 2023); mode=stochastic.

    Kwon et al.'s Lagrangian L_ν(λ, y, z) = E(y, λ) + ν (ℓ(y, λ) − ℓ(z, λ)) at the frozen λ: z
    tracks w* = argmin ℓ and y tracks y_ν = argmin (ℓ + E/ν), each by t minibatch SGD steps from w₀,

        z ← z − γ ∇₁ℓ_B(z),   y ← y − γ_y (∇₁ℓ_B'(y) + ∇₁E_D(y)/ν),    fresh B, B', D per step
        ĝ(t) = ∇₂E_D(y_t) + ν (∇₂ℓ_B(y_t) − ∇₂ℓ_B(z_t)),              one fresh B and D per t

    (γ = inner_step·α, γ_y = penalty_step·α; the y-step is that on ν ℓ + E scaled by 1/ν). As t → ∞
    at the full batch, ĝ → ∇ψ_ν(λ), ψ_ν(λ) = min_y [E + νℓ] − ν min_z ℓ (the envelope theorem),
    whose distance to ∇f(λ) shrinks as 1/ν (measured and tested here: ×10 in ν divides it by about
    10; Kwon et al. analyse this gap): a bias that no batch size or t removes, the price of needing
    no Hessian–vector product. No deterministic
    counterpart in hgbench. Oracle calls of t: 2t·b + 2b sample gradients (each of ∇₁ℓᵢ and
    (∇₁ℓᵢ, ∇₂ℓᵢ) counts once), (t + 1)·b' outer gradients, no Hessian or cross product. k is not
    used (None); the penalty ν is an option, swept as an axis (``estimator.penalty=10,100,1000``).
    """

    role = "f2sa"
    Options = F2SAOptions

    def __init__(self, name, inner_step=1.0, penalty=100.0, penalty_step=1.0):
        super().__init__(name, inner_step)
        self.penalty, self.penalty_step = penalty, penalty_step

    def stochastic(self, sampled, pairs):
        nu = self.penalty
        gamma, gamma_y = self.inner_step * sampled.alpha, self.penalty_step * sampled.alpha
        steps, z, y, done = sampled.segment(), sampled.w0, sampled.w0, 0
        for t in sorted({t for t, _ in pairs}):
            with steps:
                while done < t:
                    grad_e, _ = sampled.outer_grads(y, sampled.outer_batch())
                    y = y - gamma_y * (sampled.grad(y, sampled.inner_batch()) + grad_e / nu)
                    z = z - gamma * sampled.grad(z, sampled.inner_batch())
                    done += 1
            final = sampled.segment()
            with final:
                batch = sampled.inner_batch()
                _, e_lam = sampled.outer_grads(y, sampled.outer_batch())
                (_, at_y), (_, at_z) = sampled.inner_grads(y, batch), sampled.inner_grads(z, batch)
                grad = e_lam + nu * (at_y - at_z)
            yield StochasticEstimate(t, None, grad, z, *total(steps, final))
