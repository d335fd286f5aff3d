"""Ye, Peyré, Cremers, Ablin (AISTATS 2024, arXiv 2402.16748): ridge and logistic regression on
the LIBSVM sets of their experiments, with their energies, draws, start and inner solver.

One hyperparameter yⱼ per feature (λ = y, not shifted: their normalizations are kept):

    ridge     G(x, y) = 1/(2n) ‖Ax − b‖² + 1/(2d) Σⱼ exp(yⱼ) xⱼ²          (data=mpg, d = 7)
    logistic  G(x, y) = (1/n) Σᵢ log(1 + exp(−bᵢ aᵢᵀx)) + ½ (1/d) Σⱼ exp(yⱼ) xⱼ²   (data=liver, d = 5)

Outer objectives (``outer``): ``linear`` f = b_outᵀx + ‖y‖²; ``quadratic`` f = ½‖A_out x − b_out‖²
(A_out d × d and b_out standard normal); ``logistic`` (logistic only) f = the mean logistic loss
on the held-out file; ``inner`` f = G (the min–min case; not among their figures).

Draws, as in the authors' code: draw i uses numpy's legacy generator seeded with
10000·seed + i (seed = 0: their numpy seed i) and draws, in this order, A_out and b_out (linear
and quadratic outers only), x_init = 2·N(0, I_d) and y ~ U[lam_low, lam_high]^d (U[3, 6]
"strong", U[−1, 1] "weak"). Every draw thus redraws the outer objective, the start and y
(``Problem.draw``); ``sample_lambdas`` returns the y's and ignores the torch generator.

Start far away: w₀ = x_init + far·(x_init − x*(y)), far = 10^1.5. Inner solver, gradient descent:
ridge with the fixed step 1.8/λ_max(H), H = AᵀA/n + diag(exp y)/d, so Φ(x) = x − (1.8/λ_max)∇G
is their iteration exactly; logistic with step 1.0, halved whenever the energy goes up and kept
halved afterwards (``inner_step``; Φ, with α = 2/(L + μ), is only what the estimators linearize:
their formulas do not depend on α). x* by closed form (ridge) or Newton's method from x_init
to round-off (logistic; they use BFGS to gradient norm 1e-13).

Finite sums (hgbench.problems.finite_sum): G = (1/n) Σᵢ Gᵢ with Gᵢ the i-th training row's loss
plus the whole penalty; the ``logistic`` outer is the mean over the held-out file's rows and
``inner`` is G itself. ``linear`` and ``quadratic`` are functions of x and y alone, not sums
over samples: refused in one line by mode=stochastic and mode=bilevel.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from hgbench.data import libsvm
from hgbench.options import Choice, Number, Path, Text, UniformOptions, option
from hgbench.problems.base import PerFeatureProblem
from hgbench.problems.finite_sum import FiniteSum

_DRAWS = 10_000  # draws per seed before two seeds' streams would meet
RIDGE_STEP = 1.8  # their ridge step, in units of 1/λ_max(H)
LOGISTIC_STEP = 1.0  # their first logistic step, halved while the energy rises


@dataclass
class YeRidgeOptions(UniformOptions):
    data: str = option(Text(), "mpg (Auto MPG, shipped) or the path of a LIBSVM file (regression)")
    test: Optional[str] = option(Path("none (a shipped set brings its own)"), "a held-out LIBSVM file")
    outer: str = option(Choice(("linear", "quadratic", "inner")), "linear bᵀx + ‖y‖², quadratic ½‖Ax − b‖², or inner (E = G)")
    far: float = option(Number(0), "start w₀ = x_init + far·(x_init − x*)")

    @classmethod
    def relations(cls, values, key):
        test, outer, data = values.get("test"), values.get("outer"), values.get("data")
        if test is not None and (outer != "logistic" or data in libsvm.SHIPPED):  # refused, never ignored
            why = (
                f"{key('data')}={data!r} brings its own"
                if outer == "logistic"
                else f"only {key('outer')}=logistic reads it, not {key('outer')}={outer!r}"
            )
            return f"{key('test')}={test!r} would be ignored: {why}; drop {key('test')}"
        return super().relations(values, key)


@dataclass
class YeLogisticOptions(YeRidgeOptions):
    data: str = option(Text(), "liver (BUPA Liver Disorders, shipped, with its test file) or the path of a LIBSVM file (labels 0/1 or ±1)")
    outer: str = option(
        Choice(("logistic", "linear", "quadratic", "inner")), "logistic (test-file loss), linear, quadratic, or inner (E = G)"
    )


class YeProblem(FiniteSum, PerFeatureProblem):
    """What both of Ye et al.'s problems share: LIBSVM data, outers, draws, far start. Subclasses
    give the energy (``inner_loss``, ``inner_grad``, ``curvature_bounds``, and ``inner_loss_on``
    on a minibatch of training rows) and their outers (their ``Options``' choices)."""

    BINARY = False
    sum_outers = ("inner",)
    batchable = False  # each draw has its own outer terms and start (``draw``)

    def __init__(self, name, seed, data, outer, lam_low, lam_high, test=None, far=10**1.5):
        super().__init__(name, seed, lam_low, lam_high)
        self.x_train, self.b_train, self.x_test, self.b_test = libsvm.load(data, test, binary=self.BINARY)
        if outer == "logistic" and self.x_test is None:
            raise ValueError(f"problem.outer=logistic needs a held-out file: data={data!r} brings none; give problem.test=PATH")
        self.outer_kind, self.min_min, self.far = outer, outer == "inner", float(far)
        self.draw_id = 0
        self._set_draw(0)

    def _terms(self, i: int) -> dict[str, np.ndarray]:
        """Draw i's random terms, drawn in the authors' order (module docstring)."""
        gen = np.random.RandomState(_DRAWS * self.seed + i)
        d, out = self.w_dim, {}
        if self.outer_kind in ("linear", "quadratic"):
            out["outer_a"] = gen.randn(d, d)
            out["outer_b"] = gen.randn(d)
        out["x_init"] = gen.randn(d) * 2.0
        out["y"] = self.lam_low + (self.lam_high - self.lam_low) * gen.rand(d)
        return out

    def _set_draw(self, i: int) -> None:
        like = self.x_train
        for key, value in self._terms(i).items():
            if key != "y":
                setattr(self, key, torch.as_tensor(value, dtype=like.dtype, device=like.device))
        self.draw_id = i

    def draw(self, i: int) -> "YeProblem":
        if not 0 <= i < _DRAWS:
            raise ValueError(f"draw {i} is out of range: at most {_DRAWS} draws per seed")
        other = copy.copy(self)
        other._set_draw(i)
        return other

    def sample_lambdas(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """y of draws 0..n−1 (their own numpy streams; ``generator`` is not used)."""
        if n > _DRAWS:
            raise ValueError(f"n_lambdas={n}: at most {_DRAWS} draws per seed")
        return torch.tensor(np.stack([self._terms(i)["y"] for i in range(n)]), dtype=torch.float64)

    def box(self):
        return (
            torch.full((self.lam_dim,), self.lam_low, dtype=torch.float64),
            torch.full((self.lam_dim,), self.lam_high, dtype=torch.float64),
        )

    def w0(self, lam):
        """The far start x_init + far·(x_init − x*(y)), a constant of λ (detached)."""
        x_init = self.x_init.to(lam.dtype)
        return (x_init + self.far * (x_init - self.solve_inner(lam.detach()))).detach()

    def outer(self, w, lam):
        kind = self.outer_kind
        if kind == "linear":
            return self.outer_b @ w + lam.square().sum()
        if kind == "quadratic":
            return 0.5 * (self.outer_a @ w - self.outer_b).square().sum()
        if kind == "logistic":
            return F.softplus(-self.b_test * (self.x_test @ w)).mean()
        return self.inner_loss(w, lam)

    @property
    def n_held_out(self) -> int:
        """The rows of the held-out file (the ``logistic`` outer's samples)."""
        return self.x_test.shape[0]

    def validation_loss_on(self, w, lam, idx):
        """The ``logistic`` outer on held-out rows idx: mean log(1 + exp(−bⱼ aⱼᵀx))."""
        return F.softplus(-self.b_test[idx] * (self.x_test[idx] @ w)).mean()


class YeRidge(YeProblem):
    """Ridge regression of Ye et al. 2024 on their LIBSVM data, draws and protocol.

    G = 1/(2n)‖Ax − b‖² + 1/(2d)Σ exp(yⱼ)xⱼ², H = AᵀA/n + diag(exp y)/d, x* = H⁻¹Aᵀb/n;
    Φ = x − (1.8/λ_max(H))∇G, their gradient descent (module docstring)."""

    Options = YeRidgeOptions

    def __init__(self, name, seed, outer, lam_low, lam_high, data="mpg", test=None, far=10**1.5):
        super().__init__(name, seed, data, outer, lam_low, lam_high, test, far)
        n = self.x_train.shape[0]
        self.gram = self.x_train.T @ self.x_train / n
        self.xtb = self.x_train.T @ self.b_train / n

    def hessian(self, lam):
        return self.gram + torch.diag(torch.exp(lam)) / self.w_dim

    def inner_loss(self, w, lam):
        return 0.5 * (self.x_train @ w - self.b_train).square().mean() + 0.5 * (torch.exp(lam) * w.square()).sum() / self.w_dim

    def inner_loss_on(self, w, lam, idx):
        """(1/|idx|) Σ_{i∈idx} Gᵢ, Gᵢ = ½(aᵢᵀx − bᵢ)² + 1/(2d) Σⱼ exp(yⱼ)xⱼ²."""
        resid = self.x_train[idx] @ w - self.b_train[idx]
        return 0.5 * resid.square().mean() + 0.5 * (torch.exp(lam) * w.square()).sum() / self.w_dim

    def inner_grad(self, w, lam):
        return self.gram @ w - self.xtb + torch.exp(lam) * w / self.w_dim

    def curvature_bounds(self, lam):
        eig = torch.linalg.eigvalsh(self.hessian(lam))
        return eig[-1], eig[0]

    def consts(self, lam):
        return {"alpha": RIDGE_STEP / self.curvature_bounds(lam)[0]}

    def solve_inner(self, lam, start=None):
        return torch.linalg.solve(self.hessian(lam), self.xtb)


class YeLogistic(YeProblem):
    """Logistic regression of Ye et al. 2024 on their LIBSVM data, draws and protocol.

    G = mean log(1 + exp(−bᵢaᵢᵀx)) + ½·mean_j(exp(yⱼ)xⱼ²) (module docstring); inner solver
    gradient descent from step 1.0 with backtracking (``inner_step``). Φ = x − α∇G with
    α = 2/(L + μ), L = ‖A‖₂²/(4n) + max exp(y)/d, μ = min exp(y)/d (a contraction; the
    estimators' formulas do not depend on α)."""

    Options = YeLogisticOptions
    BINARY = True
    sum_outers = ("logistic", "inner")

    def __init__(self, name, seed, outer, lam_low, lam_high, data="liver", test=None, far=10**1.5):
        super().__init__(name, seed, data, outer, lam_low, lam_high, test, far)
        self.smooth_data = torch.linalg.matrix_norm(self.x_train, ord=2) ** 2 / (4 * self.x_train.shape[0])

    def inner_loss(self, w, lam):
        margins = self.b_train * (self.x_train @ w)
        return F.softplus(-margins).mean() + 0.5 * (torch.exp(lam) * w.square()).mean()

    def inner_loss_on(self, w, lam, idx):
        """(1/|idx|) Σ_{i∈idx} Gᵢ, Gᵢ = log(1 + exp(−bᵢaᵢᵀx)) + ½·mean_j(exp(yⱼ)xⱼ²)."""
        margins = self.b_train[idx] * (self.x_train[idx] @ w)
        return F.softplus(-margins).mean() + 0.5 * (torch.exp(lam) * w.square()).mean()

    def inner_grad(self, w, lam):
        margins = self.b_train * (self.x_train @ w)
        coef = -self.b_train * torch.sigmoid(-margins) / self.x_train.shape[0]
        return self.x_train.T @ coef + torch.exp(lam) * w / self.w_dim

    def curvature_bounds(self, lam):
        penalty = torch.exp(lam) / self.w_dim
        return self.smooth_data + penalty.max(), penalty.min()

    def newton_direction(self, w, g, lam):
        """H(x)⁻¹g with H = AᵀDA/n + diag(exp y)/d, D = diag(σ(mᵢ)σ(−mᵢ)), mᵢ = bᵢaᵢᵀx."""
        margins = self.b_train * (self.x_train @ w)
        curv = torch.sigmoid(margins) * torch.sigmoid(-margins) / self.x_train.shape[0]
        hess = self.x_train.T @ (curv[:, None] * self.x_train) + torch.diag(torch.exp(lam)) / self.w_dim
        return torch.linalg.solve(hess, g)

    def solve_inner(self, lam, start=None):
        """x* by Newton's method from x_init (where their BFGS starts) to round-off."""
        return super().solve_inner(lam, self.x_init.to(lam.dtype) if start is None else start)

    def inner_step(self, phi, w, lam, state):
        """Their step: x ← x − s∇G(x), s halved until G does not rise (s starts at 1.0 and stays
        halved for later steps). ∇G comes from one counted Φ evaluation, ∇G = (x − Φ(x))/α."""
        step, alpha = state if state is not None else (LOGISTIC_STEP, self.consts(lam.detach())["alpha"])
        grad = (w - phi(w, lam)) / alpha
        energy = self.inner_loss(w, lam)
        new = w - step * grad
        while self.inner_loss(new, lam) > energy and step > math.ulp(0.0):
            step /= 2
            new = w - step * grad
        return new, (step, alpha)
