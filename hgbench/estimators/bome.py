"""BOME's direction at a fixed λ: the λ-part of its step after t of its w-updates at the frozen λ
(Liu, Ye, Wright, Stone, Liu, "BOME! Bilevel Optimization Made Easy: A Simple First-Order
Approach", NeurIPS 2022, Algorithm 1; the solver: hgbench.solvers.bome)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hgbench.core.stochastic import StochasticEstimate, total
from hgbench.estimators.stochastic import STEP, StochasticEstimator, StochasticOptions
from hgbench.options import Integer, option


@dataclass
class BOMEOptions(StochasticOptions):
    bome_step: float = option(STEP, "ξ: the step of BOME's w-update, as a multiple of α(λ)")
    eta: float = option(STEP, "η in the control φ = η‖∇q̂‖² (the bias at the fixed point shrinks as η grows)")
    inner_steps: int = option(Integer(1), "T: SGD steps on ℓ from w that give w_T in q̂ (step: inner_step·α)")


def bome_multiplier(grad_f: torch.Tensor, grad_q: torch.Tensor, eta: float) -> torch.Tensor:
    """BOME's multiplier μ = max((φ − ⟨∇f, ∇q̂⟩)/‖∇q̂‖², 0) with φ = η‖∇q̂‖² (both gradients
    flattened over (z, x) jointly; a 0-dim tensor).

    d = ∇f + μ∇q̂ is then the exact solution of min_d ½‖d − ∇f‖² s.t. ⟨∇q̂, d⟩ ≥ φ (a
    "dynamic barrier" step: the closest direction to ∇f along which q̂ decreases at rate ≥ φ).
    Where ∇q̂ = 0 the constraint reads 0 ≥ 0, every d is feasible and the solution is d = ∇f:
    μ = 0 there (the formula's 0/0 is not evaluated)."""
    norm2 = grad_q.square().sum()
    if norm2 == 0:
        return torch.zeros((), dtype=grad_f.dtype, device=grad_f.device)
    return torch.clamp((eta * norm2 - (grad_f * grad_q).sum()) / norm2, min=0)


class BOME(StochasticEstimator):
    """BOME's λ-direction at a frozen λ after t of its w-updates (Liu et al. NeurIPS 2022); mode=stochastic.

    From w₀, t times (fresh minibatches each; T SGD steps on ℓ from w give w_T, ``inner_step``·α):

        ∇q̂ = (∇₁ℓ_B(w), ∇₂ℓ_B(w) − ∇₂ℓ_B(w_T)),   ∇E = (∇₁E_D(w), ∇₂E_D(w))   (jointly in (w, λ))
        μ = max((η‖∇q̂‖² − ⟨∇E, ∇q̂⟩)/‖∇q̂‖², 0),   w ← w − ξ (∇₁E_D(w) + μ ∇₁ℓ_B(w))

    (ξ = ``bome_step``·α; λ frozen), then ĝ(t) = ∇₂E_D(w_t) + μ_t (∇₂ℓ_B(w_t) − ∇₂ℓ_B(w_{t,T})) on
    one fresh B and D: the λ-part of the solver's next step direction.

    What it is compared with: ∇f(λ), as every estimator, but it is a surrogate, not a consistent
    estimate. At a fixed point w̄ of the frozen-λ update (d_w = 0: μ̄ (w̄ − w*) = −H⁻¹∇₁E(w̄) for a
    quadratic ℓ, H = ∇₁²ℓ, B = ∂²ℓ/∂λ∂w), the full-batch direction is exactly

        ĝ = ∇₂E(w̄) − B α_T Σ_{j<T} (I − α_T H)^j ∇₁E(w̄)          (α_T = inner_step·α)

    i.e. T-term Neumann AID (hgbench's ``neumann``) evaluated at w̄ instead of w*: ∇₁ℓ(w̄) ≠ 0. Its
    bias has two parts, the Neumann truncation ((1 − α_T μ_H)^T) and the offset w̄ − w* =
    −H⁻¹∇₁E(w̄)/μ̄, where μ̄ = η(‖Hu‖² + ‖B'u‖²)/(‖B'u‖² + ⟨∇₂E, B'u⟩) (u = −H⁻¹∇₁E(w̄),
    B' = B(I − (I − α_T H)^T), all at w̄) grows in proportion to η as η → ∞ (w̄ → w*, the rest
    tends to its value at w*; where the denominator is ≤ 0 there is no such fixed point): the
    offset, and this part of the bias, shrink as about 1/η and do not vanish for a fixed η,
    whatever t or the batch (as F2SA's O(1/ν)). The identity and the shrinking offset are tested
    at the full batch on a small bilevel_quadratic, whose ∇₂ℓ is affine in w (tests/test_bome.py);
    on ridge or logistic ∇₂ℓ is not affine in w and the identity holds only to first order in
    w̄ − w_T. No deterministic counterpart in hgbench. The frozen-λ update is stable only for small ξ (μ grows with η and near w*: ξ = α
    diverges on bilevel_quadratic; 0.05α converges at η = 0.5). Oracle calls of t: (t + 1)(T + 2)·b
    sample gradients (∇₁ℓ at the T points of w_T, both partials at w and at w_T count once each;
    the final direction takes its own w_T), (t + 1)·b' outer gradients, no Hessian or cross product."""

    role = "bome"
    Options = BOMEOptions

    def __init__(self, name, inner_step=1.0, bome_step=0.05, eta=0.5, inner_steps=10):
        super().__init__(name, inner_step)
        self.bome_step, self.eta, self.inner_steps = bome_step, eta, inner_steps

    def parts(self, sampled, w):
        """(∇₁E_D, ∇₂E_D, ∇₁ℓ_B, ∇₂ℓ_B(w) − ∇₂ℓ_B(w_T), μ) at w on fresh minibatches."""
        w_t = w
        for _ in range(self.inner_steps):
            w_t = w_t - self.inner_step * sampled.alpha * sampled.grad(w_t, sampled.inner_batch())
        batch = sampled.inner_batch()
        q_w, q_lam = sampled.inner_grads(w, batch)
        q_lam = q_lam - sampled.inner_grads(w_t, batch)[1]
        e_w, e_lam = sampled.outer_grads(w, sampled.outer_batch())
        mu = bome_multiplier(torch.cat([e_w.ravel(), e_lam.ravel()]), torch.cat([q_w.ravel(), q_lam.ravel()]), self.eta)
        return e_w, e_lam, q_w, q_lam, mu

    def stochastic(self, sampled, pairs):
        xi = self.bome_step * sampled.alpha
        steps, w, done = sampled.segment(), sampled.w0, 0
        for t in sorted({t for t, _ in pairs}):
            with steps:
                while done < t:
                    e_w, _, q_w, _, mu = self.parts(sampled, w)
                    w = w - xi * (e_w + mu * q_w)
                    done += 1
            final = sampled.segment()
            with final:
                _, e_lam, _, q_lam, mu = self.parts(sampled, w)
                grad = e_lam + mu * q_lam
            yield StochasticEstimate(t, None, grad, w, *total(steps, final))
