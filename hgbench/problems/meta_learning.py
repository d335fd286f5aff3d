"""Meta-learning by biased regularization (iMAML-like): the hyperparameter is a shared bias."""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Any

import torch

from hgbench.options import SIZE, Flag, Number, UniformOptions, option
from hgbench.problems.base import GradientStepProblem, Planned


@dataclass
class MetaLearningOptions(UniformOptions):
    n_tasks: int = option(SIZE, "tasks T; dim(w) = n_tasks · n_features")
    n_features: int = option(SIZE, "d = dim(h) = dim(λ) (+1 with learn_gamma)")
    n_train: int = option(SIZE, "training examples per task (inner loss)")
    n_val: int = option(SIZE, "validation examples per task (E)")
    task_spread: float = option(Number(0), "task weights = common mean + task_spread · N(0, I)")
    noise: float = option(Number(0), "label noise standard deviation")
    gamma: float = option(Number(0, low_open=True), "strength γ of the bias ½γ‖wᵢ − h‖²")
    learn_gamma: Any = option(Flag(), "λ = (h, log γ), log γ ~ U[log gamma − 1, log gamma + 1]")


class MetaLearning(GradientStepProblem):
    """Biased regularization (iMAML-like) over T few-shot regression tasks; λ = the shared bias.

    Grazzi et al. 2020, §5; Denevi et al. 2019; Rajeswaran et al. 2019 (iMAML).

    Task i has training data X_i ∈ ℝ^{n×d}, y_i ∈ ℝ^n and validation data X_{v,i} ∈ ℝ^{n_v×d},
    y_{v,i}. λ = h ∈ ℝ^d (the shared bias), or λ = (h, log γ) ∈ ℝ^{d+1} with ``learn_gamma``.
    w = (w_1, …, w_T) stacked, dim w = T·d.

        ℓ(w, λ) = Σ_i [ 1/(2n) ‖X_i w_i − y_i‖² + (γ/2) ‖w_i − h‖² ]
        ∇_{w_i}ℓ = (G_i + γI) w_i − X_iᵀy_i/n − γh,   G_i = X_iᵀX_i/n
        Φ(w, λ) = w − α(λ) ∇₁ℓ(w, λ)   (the stacked gradient step)
        E(w, λ) = (1/T) Σ_i 1/(2n_v) ‖X_{v,i} w_i − y_{v,i}‖²   (mean validation loss)

    The Hessian is block-diagonal with blocks G_i + γI, so its spectrum lies in
    [μ, L] = [min_i λ_min(G_i) + γ, max_i λ_max(G_i) + γ] (exact, by eigvalsh per draw; μ = γ when
    n < d). α = 2/(L + μ) makes Φ a contraction with q = (κ − 1)/(κ + 1), κ = L/μ, independent of
    w since Φ is affine in w. Closed form w_i* = (G_i + γI)⁻¹(X_iᵀy_i/n + γh).

    Tasks: a common mean m ~ N(0, I_d); task weights w̄_i = m + task_spread·N(0, I_d);
    x ~ N(0, I_d), y = x·w̄_i + noise·ε. λ draws: each h_j ~ U[lam_low, lam_high]; with
    ``learn_gamma``, log γ ~ U[log gamma − 1, log gamma + 1] (otherwise γ = ``gamma``).
    """

    Options = MetaLearningOptions

    def __init__(
        self,
        name,
        seed,
        n_tasks,
        n_features,
        n_train,
        n_val,
        task_spread,
        noise,
        gamma,
        lam_low,
        lam_high,
        learn_gamma=False,
    ):
        super().__init__(name, seed, lam_low, lam_high)
        self.learn_gamma = bool(learn_gamma)
        self.log_gamma = math.log(gamma)
        gen = torch.Generator().manual_seed(self.seed)
        d = n_features
        mean = torch.randn(d, generator=gen, dtype=torch.float64)
        weights = mean + task_spread * torch.randn(n_tasks, d, generator=gen, dtype=torch.float64)

        def sample(n):
            x = torch.randn(n_tasks, n, d, generator=gen, dtype=torch.float64)
            y = torch.einsum("tnd,td->tn", x, weights) + noise * torch.randn(n_tasks, n, generator=gen, dtype=torch.float64)
            return x, y

        self.x_train, self.y_train = sample(n_train)
        self.x_val, self.y_val = sample(n_val)
        self.grams = self.x_train.transpose(1, 2) @ self.x_train / n_train  # (T, d, d)
        self.xty = torch.einsum("tnd,tn->td", self.x_train, self.y_train) / n_train  # (T, d)
        self.gram_eigs = torch.linalg.eigvalsh(self.grams)  # (T, d): λ does not change G_i

    @classmethod
    def planned(cls, settings: dict) -> Planned:
        """T tasks of (n_train + n_val) × d inputs, T Gram matrices d × d and their eigenvalues."""
        t, d, n = settings["n_tasks"], settings["n_features"], settings["n_train"] + settings["n_val"]
        return Planned(t * d, d + bool(settings.get("learn_gamma")), 8.0 * t * (n * d + 3 * d * d), t * (2.0 * n * d * d + 10.0 * d**3))

    @property
    def n_tasks(self) -> int:
        return self.x_train.shape[0]

    @property
    def lam_dim(self) -> int:
        return self.x_train.shape[2] + self.learn_gamma

    @property
    def w_dim(self) -> int:
        return self.n_tasks * self.x_train.shape[2]

    def sample_lambdas(self, n, generator):
        lams = super().sample_lambdas(n, generator)
        if self.learn_gamma:
            u = torch.rand(n, generator=generator, dtype=torch.float64)
            lams[:, -1] = self.log_gamma - 1 + 2 * u
        return lams

    def box(self):
        """h in [lam_low, lam_high]^d, and log γ in [log gamma − 1, log gamma + 1] with ``learn_gamma``."""
        low = torch.full((self.lam_dim,), self.lam_low, dtype=torch.float64)
        high = torch.full((self.lam_dim,), self.lam_high, dtype=torch.float64)
        if self.learn_gamma:
            low[-1], high[-1] = self.log_gamma - 1, self.log_gamma + 1
        return low, high

    def split(self, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, γ) from λ."""
        d = self.x_train.shape[2]
        if self.learn_gamma:
            return lam[:d], torch.exp(lam[d])
        return lam, torch.exp(torch.full((), self.log_gamma, dtype=lam.dtype, device=lam.device))

    def inner_loss(self, w, lam):
        h, gamma = self.split(lam)
        w = w.reshape(self.n_tasks, -1)
        resid = torch.einsum("tnd,td->tn", self.x_train, w) - self.y_train
        return 0.5 * resid.square().mean(dim=1).sum() + 0.5 * gamma * (w - h).square().sum()

    def inner_grad(self, w, lam):
        h, gamma = self.split(lam)
        w = w.reshape(self.n_tasks, -1)
        return (torch.einsum("tde,te->td", self.grams, w) - self.xty + gamma * (w - h)).reshape(-1)

    def curvature_bounds(self, lam):
        _, gamma = self.split(lam)
        return self.gram_eigs.max() + gamma, self.gram_eigs.min() + gamma

    def outer(self, w, lam):
        w = w.reshape(self.n_tasks, -1)
        resid = torch.einsum("tnd,td->tn", self.x_val, w) - self.y_val
        return 0.5 * resid.square().mean()

    def solve_inner(self, lam):
        h, gamma = self.split(lam)
        eye = torch.eye(self.grams.shape[1], dtype=lam.dtype, device=lam.device)
        return torch.linalg.solve(self.grams + gamma * eye, self.xty + gamma * h).reshape(-1)
