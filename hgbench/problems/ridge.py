"""Ridge regression with one penalty weight per feature."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hgbench.data import datasets
from hgbench.options import SHARE, SIZE, Choice, Number, UniformOptions, option
from hgbench.problems.base import PerFeatureProblem, Planned
from hgbench.problems.finite_sum import FiniteSum
from hgbench.problems.outer_objective import OUTERS, OuterChoice


@dataclass
class RidgeOptions(UniformOptions):
    n_train: int = option(SIZE, "training rows (synthetic data)")
    n_val: int = option(SIZE, "validation rows (synthetic data)")
    n_features: int = option(SIZE, "features = dim(w) = dim(λ) (synthetic data)")
    cond: float = option(Number(1), "condition number of the feature covariance (synthetic data)")
    noise: float = option(Number(0), "label noise standard deviation (synthetic data)")
    data: str = option(Choice(("synthetic", "diabetes")), "synthetic, or scikit-learn's diabetes set")
    val_fraction: float = option(SHARE, "share of a real data set held out for validation")
    outer: str = option(Choice(OUTERS), "the outer objective E (inner: E = ℓ, the min–min case)")


class Ridge(FiniteSum, OuterChoice, PerFeatureProblem):
    """Ridge regression, one hyperparameter per feature (Grazzi et al. 2020; Ye et al. 2024).

    Data X ∈ ℝ^{n×d}, y ∈ ℝ^n (train) and X_v, y_v (validation); λ ∈ ℝ^d.

        ℓ(w, λ) = 1/(2n) ‖X w − y‖² + ½ Σⱼ exp(λⱼ) wⱼ²
        E(w, λ) = 1/(2n_v) ‖X_v w − y_v‖²   (``outer=validation``; others: hgbench.problems.outer_objective)
        Φ(w, λ) = w − α(λ) ∇₁ℓ(w, λ),  ∇₁ℓ = H(λ) w − Xᵀy/n,  H(λ) = XᵀX/n + diag(exp λ)

    α(λ) = 2/(L + μ) with L, μ the extreme eigenvalues of H(λ) (exact, by eigvalsh), so
    q = ‖∂₁Φ‖₂ = (κ − 1)/(κ + 1), κ = L/μ. Closed-form solution w* = H(λ)⁻¹ Xᵀy/n.

    Synthetic data: rows x ~ N(0, Σ), Σ with eigenvalues spaced geometrically from 1 down to
    1/cond in a random basis; y = x·w₀ + noise·ε with w₀ ~ N(0, I/d). ``cond`` and the λ range
    set the conditioning of H, hence q.

    ``data=diabetes``: scikit-learn's diabetes set (442 × 10) instead, split by ``val_fraction``
    and standardized (hgbench.data.datasets.split); the synthetic-data arguments are then unused.

    A finite sum (hgbench.problems.finite_sum): ℓᵢ = ½(xᵢᵀw − yᵢ)² + ½ Σⱼ exp(λⱼ) wⱼ² over the n
    training rows, Eⱼ = ½(x_{v,j}ᵀw − y_{v,j})² over the validation rows.
    """

    Options = RidgeOptions

    def __init__(
        self, name, seed, n_train, n_val, n_features, cond, noise, lam_low, lam_high, data="synthetic", val_fraction=0.5, outer="validation"
    ):
        super().__init__(name, seed, lam_low, lam_high)
        if data == "synthetic":
            self.x_train, self.y_train, self.x_val, self.y_val = self._synthetic(n_train, n_val, n_features, cond, noise)
        else:
            self.x_train, self.y_train, self.x_val, self.y_val = datasets.split(data, self.seed, val_fraction)
        n_train = self.x_train.shape[0]
        self.gram = self.x_train.T @ self.x_train / n_train
        self.xty = self.x_train.T @ self.y_train / n_train
        self.choose_outer(outer)

    @classmethod
    def planned(cls, settings: dict) -> Planned | None:
        """Synthetic data: the d × d basis (a QR), its scaled copy and the Gram matrix; the two
        samples (n × d) and their products with the d × d mixing matrix."""
        if settings.get("data", "synthetic") != "synthetic":
            return None
        n, d = settings["n_train"] + settings["n_val"], settings["n_features"]
        return Planned(d, d, 8.0 * (4 * d * d + 2 * n * d), 3.0 * d**3 + 2.0 * n * d * d)

    def _synthetic(self, n_train, n_val, n_features, cond, noise):
        gen = torch.Generator().manual_seed(self.seed)
        d = n_features
        basis, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
        scales = torch.logspace(0, -0.5 * torch.log10(torch.tensor(float(cond))).item(), d, dtype=torch.float64)
        mix = basis * scales  # x = z·diag(scales)·basisᵀ has covariance with eigenvalues scales²
        w_true = torch.randn(d, generator=gen, dtype=torch.float64) / d**0.5

        def sample(n):
            x = torch.randn(n, d, generator=gen, dtype=torch.float64) @ mix.T
            return x, x @ w_true + noise * torch.randn(n, generator=gen, dtype=torch.float64)

        return (*sample(n_train), *sample(n_val))

    def hessian(self, lam: torch.Tensor) -> torch.Tensor:
        return self.gram + torch.diag(torch.exp(lam))

    def inner_loss(self, w, lam):
        resid = self.x_train @ w - self.y_train
        return 0.5 * resid.square().mean() + 0.5 * (torch.exp(lam) * w.square()).sum()

    def inner_grad(self, w, lam):
        return self.gram @ w - self.xty + torch.exp(lam) * w

    def curvature_bounds(self, lam):
        eig = torch.linalg.eigvalsh(self.hessian(lam))
        return eig[-1], eig[0]

    def validation_loss(self, w, lam):
        return 0.5 * (self.x_val @ w - self.y_val).square().mean()

    def inner_loss_on(self, w, lam, idx):
        resid = self.x_train[idx] @ w - self.y_train[idx]
        return 0.5 * resid.square().mean() + 0.5 * (torch.exp(lam) * w.square()).sum()

    def validation_loss_on(self, w, lam, idx):
        return 0.5 * (self.x_val[idx] @ w - self.y_val[idx]).square().mean()

    def solve_inner(self, lam):
        return torch.linalg.solve(self.hessian(lam), self.xty)
