"""RBF kernel ridge regression, hyperparameters the log ridge weight and the log bandwidth(s)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hgbench.data import datasets
from hgbench.options import SHARE, SIZE, Choice, Flag, Integer, Number, UniformOptions, option
from hgbench.problems.base import GradientStepProblem, Planned


@dataclass
class KernelRidgeOptions(UniformOptions):
    log_bandwidth_low: float = option(Number(), "log σ ~ U[low, high], σ in units of √(n_features)")
    log_bandwidth_high: float = option(Number(), "upper end of the log σ draws (>= log_bandwidth_low)")
    per_feature_bandwidth: Any = option(Flag(), "one log σ per feature: dim(λ) = 1 + n_features")
    data: str = option(Choice(("diabetes", "synthetic")), "scikit-learn's diabetes set, or synthetic")
    val_fraction: float = option(SHARE, "share held out for validation")
    n_samples: int = option(Integer(4), "rows (synthetic data)")
    n_features: int = option(SIZE, "features (synthetic data)")
    noise: float = option(Number(0), "label noise standard deviation (synthetic data)")

    @classmethod
    def relations(cls, values, key):
        low, high = values.get("log_bandwidth_low"), values.get("log_bandwidth_high")
        if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low > high:
            return f"{key('log_bandwidth_low')}={low} must be <= {key('log_bandwidth_high')}={high}"
        return super().relations(values, key)


class KernelRidge(GradientStepProblem):
    """RBF kernel ridge regression in the dual; λ = (log ridge weight, log bandwidth(s)).

    Grazzi et al. 2020, §5; log-parameterized as in Pedregosa 2016's HOAG experiments.

    Data X ∈ ℝ^{n×d}, y ∈ ℝ^n (train) and X_v, y_v (validation). λ = (log ρ, log σ) ∈ ℝ², or
    λ = (log ρ, log σ₁, …, log σ_d) ∈ ℝ^{1+d} with ``per_feature_bandwidth``. RBF kernel

        k_σ(x, x') = exp(−½ Σ_f (x_f − x'_f)²/σ_f²),   K = k_σ(X, X) (n×n),  K_v = k_σ(X_v, X) (n_v×n)

    Inner variable the dual coefficients c ∈ ℝ^n, with the dual objective and its gradient step

        ℓ(c, λ) = ½ cᵀ(K + ρI)c − yᵀc,   ∇₁ℓ = (K + ρI)c − y
        Φ(c, λ) = c − α(λ)((K + ρI)c − y)
        E(c, λ) = 1/(2n_v) ‖K_v c − y_v‖²     (validation squared error of the predictions)

    w* = (K + ρI)⁻¹y in closed form. K is positive semidefinite, so the eigenvalues of the
    Hessian K + ρI lie in [λ_min(K) + ρ, λ_max(K) + ρ] (computed exactly by eigvalsh per draw);
    α = 2/(L + μ) with these makes Φ a contraction with q = (κ − 1)/(κ + 1), κ = L/μ ≤ 1 + n/ρ.
    The lower end of the ρ range sets how close q comes to 1.

    Data: ``diabetes`` (scikit-learn's, standardized, seeded split) or ``synthetic``:
    x ~ N(0, I_d), y = sin(x·w₀) + noise·ε, w₀ ~ N(0, I/d), ``n_samples`` rows split like the real
    data. λ draws: log ρ ~ U[lam_low, lam_high]; each log σ ~ U[log_bandwidth_low,
    log_bandwidth_high] (shared by all features unless ``per_feature_bandwidth``), with the
    bandwidth measured in units of √d so that the typical squared distance 2d of standardized
    rows maps to the same kernel values whatever d is.
    """

    Options = KernelRidgeOptions

    def __init__(
        self,
        name,
        seed,
        lam_low,
        lam_high,
        log_bandwidth_low,
        log_bandwidth_high,
        per_feature_bandwidth=False,
        data="diabetes",
        val_fraction=0.5,
        n_samples=200,
        n_features=5,
        noise=0.1,
    ):
        super().__init__(name, seed, lam_low, lam_high)
        self.bandwidth_range = (float(log_bandwidth_low), float(log_bandwidth_high))
        self.per_feature = bool(per_feature_bandwidth)
        if data == "diabetes":
            self.x_train, self.y_train, self.x_val, self.y_val = datasets.split(data, self.seed, val_fraction)
        else:
            gen = torch.Generator().manual_seed(self.seed)
            x = torch.randn(n_samples, n_features, generator=gen, dtype=torch.float64)
            w_true = torch.randn(n_features, generator=gen, dtype=torch.float64) / n_features**0.5
            y = torch.sin(x @ w_true) + noise * torch.randn(n_samples, generator=gen, dtype=torch.float64)
            n_val = max(2, min(n_samples - 2, round(val_fraction * n_samples)))
            self.x_train, self.y_train, self.x_val, self.y_val = x[n_val:], y[n_val:], x[:n_val], y[:n_val]
        # squared coordinate differences, (n, n, d) and (n_v, n, d): the kernels are then a
        # weighted sum over the last axis, differentiable in every bandwidth. With one shared
        # bandwidth they are summed over features once here: Φ, evaluated at every step, then
        # costs O(n²) instead of O(n²d).
        self.n_features = self.x_train.shape[1]
        self.sq_train = (self.x_train[:, None, :] - self.x_train[None, :, :]).square()
        self.sq_val = (self.x_val[:, None, :] - self.x_train[None, :, :]).square()
        if not self.per_feature:
            self.sq_train = self.sq_train.sum(-1, keepdim=True)
            self.sq_val = self.sq_val.sum(-1, keepdim=True)

    @classmethod
    def planned(cls, settings: dict) -> Planned | None:
        """Synthetic data: the squared differences of every pair of rows, n × n × d before they
        are summed (per-feature bandwidths keep them), for the train and validation rows."""
        if settings.get("data", "diabetes") != "synthetic":
            return None
        n, d = settings["n_samples"], settings["n_features"]
        n_val = max(2, min(n - 2, round(settings.get("val_fraction", 0.5) * n)))  # as the constructor splits
        p = 1 + (d if settings.get("per_feature_bandwidth") else 1)
        return Planned(n - n_val, p, 8.0 * 2 * n * n * d, 6.0 * n * n * d)

    @property
    def lam_dim(self) -> int:
        return 1 + (self.x_train.shape[1] if self.per_feature else 1)

    @property
    def w_dim(self) -> int:
        return self.x_train.shape[0]

    def sample_lambdas(self, n, generator):
        lams = super().sample_lambdas(n, generator)  # column 0 (log ρ) on [lam_low, lam_high]
        low, high = self.bandwidth_range
        u = torch.rand(n, self.lam_dim - 1, generator=generator, dtype=torch.float64)
        lams[:, 1:] = low + (high - low) * u
        return lams

    def box(self):
        """log ρ in [lam_low, lam_high], each log σ in [log_bandwidth_low, log_bandwidth_high]."""
        low = torch.full((self.lam_dim,), self.bandwidth_range[0], dtype=torch.float64)
        high = torch.full((self.lam_dim,), self.bandwidth_range[1], dtype=torch.float64)
        low[0], high[0] = self.lam_low, self.lam_high
        return low, high

    def kernel(self, sq: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """k_σ from squared differences sq (…, d), or (…, 1) summed over features when the
        bandwidth is shared; σ_f = √d · exp(λ_{1+f}) (or the shared λ₁)."""
        return torch.exp(-0.5 * sq @ (torch.exp(-2 * lam[1:]) / self.n_features))

    def hessian(self, lam: torch.Tensor) -> torch.Tensor:
        k = self.kernel(self.sq_train, lam)
        return k + torch.exp(lam[0]) * torch.eye(k.shape[0], dtype=k.dtype, device=k.device)

    def inner_loss(self, w, lam):
        return 0.5 * w @ (self.hessian(lam) @ w) - self.y_train @ w

    def inner_grad(self, w, lam):
        return self.kernel(self.sq_train, lam) @ w + torch.exp(lam[0]) * w - self.y_train

    def curvature_bounds(self, lam):
        eig = torch.linalg.eigvalsh(self.hessian(lam))
        return eig[-1], eig[0]

    def outer(self, w, lam):
        return 0.5 * (self.kernel(self.sq_val, lam) @ w - self.y_val).square().mean()

    def solve_inner(self, lam):
        return torch.linalg.solve(self.hessian(lam), self.y_train)
