"""A problem defined outside hgbench: robust (pseudo-Huber) regression with one penalty weight
per feature, written from the math as a subclass of hgbench.problems.base.Problem."""

import torch

from hgbench.problems.base import Problem


class RobustRegression(Problem):
    """Pseudo-Huber regression, one L2 penalty weight per feature.

    Data X ∈ ℝ^{n×d}, y ∈ ℝ^n (training), X_v, y_v (validation); λ ∈ ℝ^d; residuals r = Xw − y.

        ℓ(w, λ) = (1/n) Σᵢ ρ(rᵢ) + ½ Σⱼ exp(λⱼ) wⱼ²,   ρ(r) = δ² (√(1 + (r/δ)²) − 1)
        E(w, λ) = 1/(2n_v) ‖X_v w − y_v‖²
        Φ(w, λ) = w − α(λ) ∇₁ℓ(w, λ),   ∇₁ℓ = Xᵀρ'(r)/n + exp(λ) ⊙ w,   ρ'(r) = r / √(1 + (r/δ)²)

    ρ is the pseudo-Huber loss (Hartley & Zisserman, "Multiple View Geometry", 2nd ed. 2003,
    A6.8): quadratic near 0, linear in the tails, with 0 < ρ'' ≤ 1. Hence
    μ(λ) = min exp(λ) ≤ ∇₁²ℓ ≤ ‖X‖₂²/n + max exp(λ) = L(λ), and the step α = 2/(L + μ) makes Φ
    a contraction, q ≤ (L − μ)/(L + μ) (Nesterov, "Introductory Lectures on Convex
    Optimization", 2004, Thm 2.1.15). ∂₁Φ = I − α∇₁²ℓ is symmetric, so AID-CG applies.

    Synthetic data: x ~ N(0, I), y = x·w₀ + noise·ε with w₀ ~ N(0, I/d) and ε Student-t with
    3 degrees of freedom (heavy tails: the case for a robust loss). The reference solves the
    inner problem by hgbench's damped Newton on ``inner_loss``.
    """

    symmetric_jacobian = True

    def __init__(self, name, seed, lam_low, lam_high, n_train, n_val, n_features, noise, delta):
        super().__init__(name, seed, lam_low, lam_high)
        if not delta > 0:
            raise ValueError(f"problem.delta={delta} must be > 0")
        gen = torch.Generator().manual_seed(self.seed)
        w_true = torch.randn(n_features, generator=gen, dtype=torch.float64) / n_features**0.5

        def sample(n):
            x = torch.randn(n, n_features, generator=gen, dtype=torch.float64)
            chi2 = torch.randn(n, 3, generator=gen, dtype=torch.float64).square().sum(1)
            eps = torch.randn(n, generator=gen, dtype=torch.float64) / (chi2 / 3).sqrt()
            return x, x @ w_true + noise * eps

        self.x_train, self.y_train = sample(n_train)
        self.x_val, self.y_val = sample(n_val)
        self.delta = float(delta)
        self.smooth = torch.linalg.matrix_norm(self.x_train, ord=2).square() / n_train  # ‖X‖₂²/n

    @property
    def lam_dim(self):
        return self.x_train.shape[1]

    @property
    def w_dim(self):
        return self.x_train.shape[1]

    def inner_loss(self, w, lam):
        r = self.x_train @ w - self.y_train
        rho = self.delta**2 * (torch.sqrt(1 + (r / self.delta).square()) - 1)
        return rho.mean() + 0.5 * (torch.exp(lam) * w.square()).sum()

    def inner_grad(self, w, lam):
        r = self.x_train @ w - self.y_train
        return self.x_train.T @ (r / torch.sqrt(1 + (r / self.delta).square())) / r.shape[0] + torch.exp(lam) * w

    def consts(self, lam):
        penalty = torch.exp(lam)
        return {"alpha": 2.0 / (self.smooth + penalty.max() + penalty.min())}

    def phi(self, w, lam, consts):
        return w - consts["alpha"] * self.inner_grad(w, lam)

    def outer(self, w, lam):
        return 0.5 * (self.x_val @ w - self.y_val).square().mean()
