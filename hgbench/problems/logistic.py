"""L2-regularized logistic regression with one penalty weight per feature."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hgbench.data import datasets
from hgbench.options import SHARE, SIZE, Choice, Integer, Number, UniformOptions, option
from hgbench.problems.base import PerFeatureProblem, Planned
from hgbench.problems.finite_sum import FiniteSum
from hgbench.problems.outer_objective import OUTERS, OuterChoice


@dataclass
class LogisticOptions(UniformOptions):
    n_samples: int = option(
        Integer(2), "rows, split half/half into train and validation (synthetic data; data=mnist_binary: images used of the 5,000 shipped)"
    )
    n_features: int = option(SIZE, "features = dim(w) = dim(λ) (synthetic data)")
    label_noise: float = option(Number(0), "standard deviation of the noise added to the logit before the sign")
    data: str = option(
        Choice(("synthetic", "breast_cancer", "mnist_binary", "mnist_binary_14")),
        "synthetic, scikit-learn's breast-cancer set, or the shipped MNIST subset as even against odd digits (_14: pooled to 14×14)",
    )
    val_fraction: float = option(SHARE, "share of a real data set held out for validation (mnist_binary: and as much again for test)")
    outer: str = option(Choice(OUTERS), "the outer objective E (inner: E = ℓ, the min–min case)")


class Logistic(FiniteSum, OuterChoice, PerFeatureProblem):
    """Binary logistic regression, one hyperparameter per feature (Grazzi et al. 2020, §5).

    Data X ∈ ℝ^{n×d}, labels b ∈ {−1, +1}^n (train) and X_v, b_v (validation); λ ∈ ℝ^d.

        ℓ(w, λ) = (1/n) Σᵢ log(1 + exp(−bᵢ xᵢᵀw)) + ½ Σⱼ exp(λⱼ) wⱼ²
        E(w, λ) = (1/n_v) Σᵢ log(1 + exp(−b_{v,i} x_{v,i}ᵀw))     (validation cross-entropy; ``outer=validation``,
                                                                   others: hgbench.problems.outer_objective)
        Φ(w, λ) = w − α(λ) ∇₁ℓ(w, λ),  ∇₁ℓ = −(1/n) Xᵀ(b ⊙ σ(−b ⊙ Xw)) + exp(λ) ⊙ w

    The Hessian XᵀDX/n + diag(exp λ), D = diag(σ(1 − σ)) ≤ 1/4, has eigenvalues in
    [μ, L] with μ = min exp λ and L = ‖X‖₂²/(4n) + max exp λ; α(λ) = 2/(L + μ) makes Φ a
    contraction with q ≤ (L − μ)/(L + μ) (the measured q at w* is smaller). No closed form:
    the reference w* comes from Newton's method to round-off.

    Synthetic data as in the reference code of Grazzi et al.: x ~ N(0, I),
    b = sign(x·w₀ + 0.1·ε), w₀ ~ N(0, I); ``n_samples`` split half/half into train/validation.
    ``data=breast_cancer``: scikit-learn's breast-cancer set (569 × 30) instead, split by
    ``val_fraction`` and standardized (hgbench.data.datasets.split); the synthetic-data arguments are
    then unused. ``data=mnist_binary``: ``n_samples`` of the 5,000 MNIST images shipped with hgbench
    (sha256-checked), even (+1) against odd (−1) digits, d = 784 standardized pixels
    (``mnist_binary_14``: 2×2 blocks averaged, d = 196, where the dense float64 reference is ~20 times
    cheaper); a
    ``val_fraction`` share for validation, as much again for a held-out test split, the rest for
    training (hgbench.data.datasets.mnist_binary). With a test split the problem has metrics
    (``trainable``, ``evaluate``): the losses and accuracies of w*(λ) on the three splits.

    A finite sum (hgbench.problems.finite_sum): ℓᵢ = log(1 + exp(−bᵢxᵢᵀw)) + ½ Σⱼ exp(λⱼ) wⱼ² over
    the training rows, Eⱼ = log(1 + exp(−b_{v,j}x_{v,j}ᵀw)) over the validation rows.
    """

    Options = LogisticOptions

    def __init__(
        self, name, seed, n_samples, n_features, label_noise, lam_low, lam_high, data="synthetic", val_fraction=0.5, outer="validation"
    ):
        super().__init__(name, seed, lam_low, lam_high)
        self.x_test = self.b_test = None
        if data == "synthetic":
            self.x_train, self.b_train, self.x_val, self.b_val = self._synthetic(n_samples, n_features, label_noise)
        elif data.startswith("mnist_binary"):
            pool = 2 if data == "mnist_binary_14" else 1
            self.x_train, self.b_train, self.x_val, self.b_val, self.x_test, self.b_test = datasets.mnist_binary(
                self.seed, n_samples, val_fraction, pool
            )
        else:
            self.x_train, self.b_train, self.x_val, self.b_val = datasets.split(data, self.seed, val_fraction)
        self.trainable = self.x_test is not None  # metrics need the held-out test split
        self.smooth_data = torch.linalg.matrix_norm(self.x_train, ord=2) ** 2 / (4 * self.x_train.shape[0])
        self.choose_outer(outer)

    @classmethod
    def planned(cls, settings: dict) -> Planned | None:
        """Synthetic data: n × d inputs; the spectral norm of the training half (an SVD)."""
        if settings.get("data", "synthetic") != "synthetic":
            return None
        n, d = settings["n_samples"], settings["n_features"]
        return Planned(d, d, 8.0 * 3 * n * d, 4.0 * n * d * min(n, d))

    def _synthetic(self, n_samples, n_features, label_noise):
        gen = torch.Generator().manual_seed(self.seed)
        x = torch.randn(n_samples, n_features, generator=gen, dtype=torch.float64)
        w_true = torch.randn(n_features, generator=gen, dtype=torch.float64)
        noise = torch.randn(n_samples, generator=gen, dtype=torch.float64)
        b = torch.where(x @ w_true + label_noise * noise > 0, 1.0, -1.0).to(torch.float64)
        half = n_samples // 2
        return x[:half], b[:half], x[half:], b[half:]

    def inner_loss(self, w, lam):
        margins = self.b_train * (self.x_train @ w)
        return F.softplus(-margins).mean() + 0.5 * (torch.exp(lam) * w.square()).sum()

    def inner_grad(self, w, lam):
        margins = self.b_train * (self.x_train @ w)
        coef = -self.b_train * torch.sigmoid(-margins) / self.x_train.shape[0]
        return self.x_train.T @ coef + torch.exp(lam) * w

    def inner_hessian(self, w, lam):
        """∇₁²ℓ(w, λ) = Xᵀ diag(σ(mᵢ)σ(−mᵢ)) X / n + diag(exp λ), m = b ⊙ Xw (bᵢ² = 1), in closed form."""
        margins = self.b_train * (self.x_train @ w)
        weights = torch.sigmoid(margins) * torch.sigmoid(-margins) / self.x_train.shape[0]
        return self.x_train.T @ (weights[:, None] * self.x_train) + torch.diag(torch.exp(lam))

    def curvature_bounds(self, lam):
        penalty = torch.exp(lam)
        return self.smooth_data + penalty.max(), penalty.min()

    def validation_loss(self, w, lam):
        return F.softplus(-self.b_val * (self.x_val @ w)).mean()

    def inner_loss_on(self, w, lam, idx):
        margins = self.b_train[idx] * (self.x_train[idx] @ w)
        return F.softplus(-margins).mean() + 0.5 * (torch.exp(lam) * w.square()).sum()

    def validation_loss_on(self, w, lam, idx):
        return F.softplus(-self.b_val[idx] * (self.x_val[idx] @ w)).mean()

    def evaluate(self, lam: torch.Tensor, t: int) -> dict[str, float]:
        """With a test split (data=mnist_binary*): the mean logistic loss log(1 + exp(−b xᵀw)) (no
        penalty) and the accuracy of sign(xᵀw) (a tie, xᵀw = 0, counts as wrong) of w = w*(λ), the
        exact inner solution (Newton's method to round-off, hgbench.problems.base.solve_inner), on
        the train, validation and test splits. ``t`` (Φ steps, for problems evaluated on truncated
        states) does not apply: the strongly convex inner problem is solved exactly."""
        w = self.solve_inner(lam)
        out = {}
        for split, x, b in (("train", self.x_train, self.b_train), ("val", self.x_val, self.b_val), ("test", self.x_test, self.b_test)):
            margins = b * (x @ w)
            out[f"{split}_loss"] = F.softplus(-margins).mean().item()
            out[f"{split}_acc"] = (margins > 0).double().mean().item()
        return out
