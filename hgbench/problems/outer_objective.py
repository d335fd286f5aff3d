"""The choice of outer objective E for problems whose Φ is a gradient step on an inner loss ℓ.

    validation   the problem's own held-out loss (its default; e.g. validation MSE / cross-entropy)
    linear       E(w, λ) = cᵀw + ‖λ‖²                     (Ye et al. 2024, linear outer objective)
    quadratic    E(w, λ) = ½‖A w − c‖²,  A ∈ ℝ^{d×d}       (Ye et al. 2024, quadratic outer objective)
    inner        E(w, λ) = ℓ(w, λ)                         (the min–min case: ∇₁E(w*, λ) = 0)

c ~ N(0, I_d) and A with i.i.d. N(0, 1/d) entries are drawn from the problem's seed (with a
stream of their own, so the training data do not change). In the min–min case the exact
hypergradient is ∇₂ℓ(w*, λ), and vanilla implicit differentiation at an inexact w is already
quadratic in ‖w − w*‖ (Ye, Peyré, Cremers, Ablin, AISTATS 2024, arXiv 2402.16748).
"""

from __future__ import annotations

import torch

OUTERS = ("validation", "linear", "quadratic", "inner")
_STREAM = 7_919  # offset of the seed for the outer objective's random terms


class OuterChoice:
    """Mixin for a GradientStepProblem: ``outer`` dispatches on ``outer_kind``; the subclass
    gives its held-out loss as ``validation_loss(w, lam)`` and calls ``choose_outer(kind)`` once
    its data (hence ``w_dim``) exist."""

    def choose_outer(self, kind: str) -> None:
        self.outer_kind = kind
        self.min_min = kind == "inner"
        d = self.w_dim
        gen = torch.Generator().manual_seed(self.seed + _STREAM)
        self.outer_c = torch.randn(d, generator=gen, dtype=torch.float64)
        # A only where E uses it: d² numbers (800 MB at d = 10⁴), drawn after c from its own stream
        self.outer_a = torch.randn(d, d, generator=gen, dtype=torch.float64) / d**0.5 if kind == "quadratic" else None

    def outer(self, w, lam):
        kind = self.outer_kind
        if kind == "validation":
            return self.validation_loss(w, lam)
        if kind == "linear":
            return self.outer_c @ w + lam.square().sum()
        if kind == "quadratic":
            return 0.5 * (self.outer_a @ w - self.outer_c).square().sum()
        return self.inner_loss(w, lam)
