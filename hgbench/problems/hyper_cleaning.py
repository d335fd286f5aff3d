"""Data hyper-cleaning on MNIST (Franceschi, Donini, Frasconi, Pontil, ICML 2017, §5.1): one
weight per training example, learned so that the examples whose labels were corrupted stop
counting.

Training labels ỹ: a seeded share ``flip`` of the n training labels replaced by another class,
drawn uniformly; validation labels y_v are clean. A linear classifier f(x; w) = W x + b, written
as an ``nn.Module`` (``torch.nn.Linear``) whose parameters w = {weight (10×784), bias (10)} enter
by ``torch.func.functional_call``; λ = {weights (n)}, one logit per training example:

    ℓ(w, λ) = (1/n) Σᵢ σ(λᵢ) CE(f(xᵢ; w), ỹᵢ) + (μ/2)‖w‖²
    E(w, λ) = (1/n_v) Σⱼ CE(f(x_{v,j}; w), y_{v,j})                 (validation cross-entropy)
    Φ(w, λ) = w − α ∇₁ℓ(w, λ),   α = 2/(L + μ)

Franceschi et al. weight the examples by σ(λᵢ) too ("we consider … a weight … passed through a
sigmoid"); their outer problem is the same validation loss; the L2 term μ here (not theirs)
makes ℓ(·, λ) μ-strongly convex, so that Φ is a contraction and w(λ) unique, as the
fixed-point theory needs. Curvature bound: the Hessian of the cross-entropy in the logits,
diag(p) − ppᵀ, is ≼ ½ I (Böhning 1992, "Multinomial logistic regression algorithm"), and σ ≤ 1,
so ∇₁²ℓ ≼ (½ λ_max(X̃ᵀX̃)/n + μ) I = L I with X̃ = [X, 1]; hence α = 2/(L + μ) and
q ≤ (L − μ)/(L + μ) for every λ (``contraction_bound``). Φ is a gradient step, so ∂₁Φ is
symmetric (AID-CG applies).

A finite sum (hgbench.problems.finite_sum): ℓᵢ = σ(λᵢ) CE(f(xᵢ; w), ỹᵢ) + (μ/2)‖w‖² over the n
training images, Eⱼ = CE(f(x_{v,j}; w), y_{v,j}) over the n_v validation images. Metrics
(``evaluate``, ``metrics``): cross-entropy and accuracy of the classifier on the training images
(their labels ỹ, corrupted ones included), the validation images and ``n_test`` clean test
images (drawn after the validation images from the same seeded permutation, so that they change
neither the training nor the validation images; with ``data_root``, MNIST's test set).

Sizes (defaults): dim w = 7,850, dim λ = n_train = 2,500 — too large for the dense reference
(a 7,850² Jacobian), so the reference is the matrix-free one (hgbench.core.reference), and
estimators that form dense d × d or d × p matrices are refused (``dense_jacobian = False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from hgbench.data.mnist import load_mnist
from hgbench.options import SIZE, Number, Path, UniformOptions, option
from hgbench.problems.finite_sum import FiniteSum
from hgbench.problems.structured import StructuredProblem

N_CLASSES = 10


@dataclass
class HyperCleaningOptions(UniformOptions):
    n_train: int = option(SIZE, "training images = dim(λ), one weight σ(λᵢ) each; dim(w) = 7,850")
    n_val: int = option(SIZE, "validation images (clean labels; E)")
    flip: float = option(Number(0, 1), "share of training labels replaced by another class (seeded)")
    reg: float = option(Number(0, low_open=True), "L2 weight μ of the classifier (makes Φ a contraction)")
    n_test: int = option(SIZE, "clean test images (metrics only: test loss and accuracy)")
    data_root: Optional[str] = option(Path("the 5k MNIST subset"), "folder of the MNIST IDX files")


class HyperCleaning(FiniteSum, StructuredProblem):
    """Per-example weights σ(λᵢ) of a linear softmax classifier on noisy MNIST labels."""

    Options = HyperCleaningOptions

    symmetric_jacobian = True
    dense_jacobian = False
    trainable = True

    def __init__(self, name, seed, n_train=2500, n_val=1000, flip=0.5, reg=0.1, lam_low=-1.0, lam_high=1.0, data_root=None, n_test=1000):
        super().__init__(name, seed, lam_low, lam_high)
        splits = load_mnist(n_train, n_val, n_test, self.seed, data_root)
        self.x, clean = splits["train"].images, splits["train"].labels
        self.x_val, self.y_val = splits["val"].images, splits["val"].labels
        self.x_test, self.y_test = splits["test"].images, splits["test"].labels
        gen = torch.Generator().manual_seed(self.seed)
        self.corrupted = torch.randperm(n_train, generator=gen)[: round(flip * n_train)]
        shift = torch.randint(1, N_CLASSES, (len(self.corrupted),), generator=gen)
        self.y = clean.clone()
        self.y[self.corrupted] = (clean[self.corrupted] + shift) % N_CLASSES  # always a wrong class
        self.model = torch.nn.Linear(self.x.shape[1], N_CLASSES, dtype=torch.float64)
        self.reg = float(reg)
        augmented = torch.cat([self.x, torch.ones(n_train, 1, dtype=torch.float64)], 1)  # X̃ = [X, 1]
        self.smooth = 0.5 * torch.linalg.eigvalsh(augmented.T @ augmented)[-1].item() / n_train + self.reg  # L
        self.alpha = 2.0 / (self.smooth + self.reg)

    @property
    def w_shapes(self):
        return {name: tuple(p.shape) for name, p in self.model.named_parameters()}

    @property
    def lam_shapes(self):
        return {"weights": (self.x.shape[0],)}

    def logits(self, w: dict, x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self.model, w, (x,))

    def inner_loss_tree(self, w, lam, idx=None):
        """ℓ, or with ``idx`` (training indices) the mean of ℓᵢ over them."""
        x, y, weights = (self.x, self.y, lam["weights"]) if idx is None else (self.x[idx], self.y[idx], lam["weights"][idx])
        losses = F.cross_entropy(self.logits(w, x), y, reduction="none")
        penalty = sum(p.square().sum() for p in w.values())
        return (torch.sigmoid(weights) * losses).mean() + 0.5 * self.reg * penalty

    def inner_grad_tree(self, w: dict, lam: dict) -> dict:
        """∇₁ℓ in closed form, the backward pass of the linear layer: with R = σ(λ) ⊙ (softmax(Z)
        − onehot(ỹ)) / n row-wise (Z the logits), ∇_weight = RᵀX + μ·weight, ∇_bias = Rᵀ1 + μ·bias.
        (torch.func.grad inside Φ would be shorter, but torch.func refuses the saved-tensor hooks
        by which hgbench's tapes count their bytes, hgbench.core.cost.taped.)"""
        logits = self.logits(w, self.x)
        scale = torch.sigmoid(lam["weights"]) / self.x.shape[0]
        residual = scale[:, None] * (torch.softmax(logits, dim=1) - F.one_hot(self.y, N_CLASSES).to(logits.dtype))
        return {"weight": residual.T @ self.x + self.reg * w["weight"], "bias": residual.sum(0) + self.reg * w["bias"]}

    def phi_tree(self, w, lam, consts):
        grad = self.inner_grad_tree(w, lam)
        return {name: w[name] - self.alpha * grad[name] for name in w}

    def outer_tree(self, w, lam):
        return F.cross_entropy(self.logits(w, self.x_val), self.y_val)

    def consts(self, lam):
        """α = 2/(L + μ), the same for every λ (what Φ steps with; the unit of the stochastic estimators' steps)."""
        return {"alpha": torch.as_tensor(self.alpha, dtype=lam.dtype, device=lam.device)}

    # --- the finite sum (hgbench.problems.finite_sum) -------------------------------------------------
    @property
    def n_inner(self) -> int:
        return self.x.shape[0]

    def inner_loss_on(self, w, lam, idx):
        return self.inner_loss_tree(self.w_tree(w), self.lam_tree(lam), idx)

    def validation_loss_on(self, w, lam, idx):
        """The mean of Eⱼ = CE(f(x_{v,j}; w), y_{v,j}) over validation images idx."""
        return F.cross_entropy(self.logits(self.w_tree(w), self.x_val[idx]), self.y_val[idx])

    # --- metrics (mode=outer, mode=bilevel) -------------------------------------------------------------
    def metrics(self, w: torch.Tensor, lam: torch.Tensor) -> dict[str, float]:
        """Cross-entropy and accuracy of the classifier w (flat) on the train (labels ỹ), val and
        test images: ``{split}_loss``, ``{split}_acc``; val_loss is E(w, λ)."""
        tree, out = self.w_tree(w), {}
        for split, x, y in (("train", self.x, self.y), ("val", self.x_val, self.y_val), ("test", self.x_test, self.y_test)):
            logits = self.logits(tree, x)
            out[f"{split}_loss"] = F.cross_entropy(logits, y).item()
            out[f"{split}_acc"] = (logits.argmax(1) == y).double().mean().item()
        return out

    def evaluate(self, lam, t):
        """``metrics`` of the classifier after t steps of Φ from w₀ = 0 (``outer.test_t``)."""
        phi, w = self.bound_phi(lam), self.w0(lam)
        for _ in range(t):
            w = phi(w, lam)
        return self.metrics(w.detach(), lam)

    def contraction_bound(self, lam):
        """(L − μ)/(L + μ), the contraction constant of a gradient step α = 2/(L + μ) on a
        μ-strongly convex, L-smooth ℓ (valid at every w and λ)."""
        return (self.smooth - self.reg) / (self.smooth + self.reg)
