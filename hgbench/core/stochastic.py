"""What a stochastic estimator sees of a finite-sum problem at one λ draw (issue 27): minibatch
products, seeded sampling, and the field's oracle counts.

A finite-sum problem (hgbench.problems.finite_sum) gives ℓ and E as means over samples. At λ,
``Sampled`` offers, on a minibatch B of sample indices (|B| = b):

    grad(w, B)         ∇₁ℓ_B(w, λ)          = (1/b) Σ_{i∈B} ∇₁ℓᵢ          b sample gradients
    inner_grads(w, B)  (∇₁ℓ_B, ∇₂ℓ_B)                                     b sample gradients
    hvp(w, u, B)       ∇₁²ℓ_B(w, λ) u                                     b sample Hessian–vector products
    cross(w, u, B)     ∂²ℓ_B/∂λ∂w (w, λ) u  = ∂_λ ⟨∇₁ℓ_B(w, λ), u⟩       b sample Jacobian–vector products
    outer_grads(w, B') (∇₁E_B', ∇₂E_B')                                   b' sample outer gradients

each computed exactly (autodiff, no approximation) on the minibatch and counted in ``oracles``
(per sample: the unit of the stochastic bilevel literature, e.g. Ji, Yang, Liang ICML 2021,
Dagréou et al. NeurIPS 2022). Minibatches come from ``sampling`` with the λ draw's own seeded
generator: ``inner_batch()`` draws b of the n training samples, ``outer_batch()`` b' of the m
outer samples, uniformly, with or without replacement (without: sorted, so that b = n is the
full set in order and every product equals the full-batch one up to round-off).

``alpha`` is the step of the problem's deterministic Φ = w − α∇₁ℓ at λ (α = 2/(L + μ),
hgbench.problems.base.GradientStepProblem), the unit of the estimators' step options: with the
full batch and steps α, each stochastic estimator computes its deterministic counterpart.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, fields, replace
from typing import Iterable, Iterator, Optional

import torch


@dataclass
class Oracles:
    """Oracle calls, counted per sample: ``n_grad`` sample gradients ∇₁ℓᵢ, ``n_hvp`` sample
    Hessian–vector products ∇₁²ℓᵢ·u, ``n_jvp`` sample cross (Jacobian–vector) products
    ∂²ℓᵢ/∂λ∂w·u, ``n_outer`` sample outer gradients (∇₁Eⱼ, ∇₂Eⱼ) — both partials of one Eⱼ count once."""

    n_grad: int = 0
    n_hvp: int = 0
    n_jvp: int = 0
    n_outer: int = 0

    @property
    def total(self) -> int:
        """All oracle calls: the x axis of the field's figures."""
        return self.n_grad + self.n_hvp + self.n_jvp + self.n_outer

    def __add__(self, other: "Oracles") -> "Oracles":
        return Oracles(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass(frozen=True)
class Sampling:
    """How minibatches are drawn: ``batch`` inner samples (of n), ``outer_batch`` outer samples
    (of m), uniformly, ``replace`` = with replacement (i.i.d.) or without (a uniform subset)."""

    batch: int
    outer_batch: int
    replace: bool

    def indices(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """``size`` indices in [0, n): i.i.d. uniform with replacement, else a uniform subset, sorted."""
        if self.replace:
            return torch.randint(n, (size,), generator=generator)
        return torch.randperm(n, generator=generator)[:size].sort().values


def step_at(step, i: int, halflife: float | None):
    """The step of iteration i = 0, 1, …: ``step`` constant when ``halflife`` is None, else the
    decreasing γᵢ = step·h/(h + i) (h = ``halflife``: halved at i = h, ∝ 1/i for i ≫ h, so that
    Σγᵢ = ∞ and Σγᵢ² < ∞, Robbins & Monro 1951) — the vanishing steps under which SGD's iterates
    and their derivatives converge in mean square, where constant steps leave a noise ball
    (Iutzeler, Pauwels, Vaiter, NeurIPS 2024, abstract; Grazzi, Pontil, Salzo, AISTATS 2021)."""
    return step if halflife is None else step * halflife / (halflife + i)


def stream_seed(seed: int, lam_id: int, batch: int, outer_batch: int, repeat: int) -> int:
    """The seed of one repetition's generator: a hash of (run seed, λ draw, batch sizes,
    repetition), so that every row can be rerun alone and no two repetitions share a stream."""
    digest = hashlib.sha256(f"hgbench-stochastic:{seed}:{lam_id}:{batch}:{outer_batch}:{repeat}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class Segment:
    """The oracle calls and wall-clock seconds of the ``with`` blocks it times, accumulated: a
    part of a computation (the inner steps, the solver's steps, the final products), so that a
    grid point's cost is the sum of the parts a from-scratch computation of it would run."""

    def __init__(self, sampled: "Sampled"):
        self.sampled, self.oracles, self.seconds = sampled, Oracles(), 0.0

    def __enter__(self):
        self._calls, self._start = replace(self.sampled.oracles), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds += time.perf_counter() - self._start
        now, before = self.sampled.oracles, self._calls
        self.oracles = self.oracles + Oracles(*(getattr(now, f.name) - getattr(before, f.name) for f in fields(now)))


def total(*segments: Segment) -> tuple[Oracles, float]:
    """The oracle calls and seconds of several segments together (a grid point's cost)."""
    oracles = Oracles()
    for part in segments:
        oracles = oracles + part.oracles
    return oracles, sum(part.seconds for part in segments)


@dataclass
class StochasticEstimate:
    """One stochastic hypergradient ĝ(t, k) (k None for estimators without a solver), the inner
    iterate w_t it used, its oracle calls and seconds as a from-scratch computation of that
    point would have them."""

    t: int
    k: Optional[int]
    grad: torch.Tensor
    w: torch.Tensor
    oracles: Oracles
    time_s: float


class Sampled:
    """A finite-sum problem at λ with a seeded minibatch sampler (module docstring)."""

    def __init__(self, problem, lam: torch.Tensor, sampling: Sampling, generator: torch.Generator):
        self.problem, self.lam, self.sampling, self.generator = problem, lam, sampling, generator
        self.alpha = problem.draw_consts(lam)["alpha"]  # computed once per λ value (Problem.draw_consts), detached
        self.w0 = problem.w0(lam)
        self.oracles = Oracles()
        self._grad = torch.func.grad(problem.inner_loss_on)  # ∇₁ℓ_B(w, λ, B)
        self._outer_grads = torch.func.grad(problem.outer_on, argnums=(0, 1))
        self._inner_grads = torch.func.grad(problem.inner_loss_on, argnums=(0, 1))

    def inner_batch(self) -> torch.Tensor:
        return self.sampling.indices(self.problem.n_inner, self.sampling.batch, self.generator)

    def outer_batch(self) -> torch.Tensor:
        return self.sampling.indices(self.problem.n_outer, self.sampling.outer_batch, self.generator)

    def grad(self, w: torch.Tensor, idx: torch.Tensor, lam: torch.Tensor | None = None) -> torch.Tensor:
        """∇₁ℓ_B(w, λ); ``lam`` a leaf of an autograd tape to differentiate through it (ITD)."""
        self.oracles.n_grad += idx.numel()
        return self._grad(w, self.lam if lam is None else lam, idx)

    def inner_grads(self, w: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(∇₁ℓ_B(w, λ), ∇₂ℓ_B(w, λ)): both partials of one ℓᵢ count as one sample gradient each
        (as for ``outer_grads``); what first-order, Hessian-free methods take (hgbench.estimators.f2sa)."""
        self.oracles.n_grad += idx.numel()
        return self._inner_grads(w, self.lam, idx)

    def hvp(self, w: torch.Tensor, u: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """∇₁²ℓ_B(w, λ) u, one VJP of ∇₁ℓ_B in w (the Hessian is symmetric)."""
        self.oracles.n_hvp += idx.numel()
        _, pullback = torch.func.vjp(lambda x: self._grad(x, self.lam, idx), w)
        return pullback(u)[0]

    def cross(self, w: torch.Tensor, u: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """∂²ℓ_B/∂λ∂w (w, λ) u = ∂_λ⟨∇₁ℓ_B(w, λ), u⟩, one VJP of ∇₁ℓ_B in λ; shape of λ."""
        self.oracles.n_jvp += idx.numel()
        _, pullback = torch.func.vjp(lambda l: self._grad(w, l, idx), self.lam)
        return pullback(u)[0]

    def outer_grads(self, w: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(∇₁E_B'(w, λ), ∇₂E_B'(w, λ))."""
        self.oracles.n_outer += idx.numel()
        return self._outer_grads(w, self.lam, idx)

    def outer_on(self, w: torch.Tensor, lam: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """E_B'(w, λ) itself, for differentiating through a tape (counted as b' outer gradients)."""
        self.oracles.n_outer += idx.numel()
        return self.problem.outer_on(w, lam, idx)

    def each(self, product, *args, idx: torch.Tensor):
        """The per-sample values of ``product`` (``grad``, ``hvp``, ``cross`` or ``outer_grads``,
        called as ``product(*args, B)``): row i is its value on the one-sample minibatch
        {idx[i]}, so their mean over the rows is its value on idx (to round-off); what a SAGA
        memory stores (hgbench.estimators.saba). One vectorized call (torch.func.vmap), counted
        as ``idx.numel()`` samples of each oracle the product calls."""
        before = replace(self.oracles)
        rows = torch.func.vmap(lambda one: product(*args, one))(idx[:, None])
        # vmap traces ``product`` once, on a one-sample batch: that single count stands for every row
        for f in fields(self.oracles):
            added = getattr(self.oracles, f.name) - getattr(before, f.name)
            setattr(self.oracles, f.name, getattr(before, f.name) + added * idx.numel())
        return rows

    def segment(self) -> Segment:
        return Segment(self)

    def sgd(
        self, ts: Iterable[int], step: torch.Tensor, lam: torch.Tensor | None = None, halflife: float | None = None
    ) -> Iterator[tuple[int, torch.Tensor, Segment]]:
        """(t, w_t, the segment of the t steps: oracle calls and seconds) for each t in ts,
        ascending, from ONE trajectory of minibatch SGD w_{i+1} = w_i − γᵢ∇₁ℓ_{Bᵢ}(w_i, λ), a
        fresh Bᵢ per step, from w₀, with γᵢ = ``step_at(step, i, halflife)`` (``lam``: as in
        ``grad``). The steps depend on i only, so every t is a prefix of the one trajectory. The
        segment pauses while the caller works; each yield is a copy."""
        inner = self.segment()
        w, done = self.w0, 0
        for t in sorted(set(ts)):
            with inner:
                while done < t:
                    w = w - step_at(step, done, halflife) * self.grad(w, self.inner_batch(), lam)
                    done += 1
            snapshot = Segment(self)
            snapshot.oracles, snapshot.seconds = replace(inner.oracles), inner.seconds
            yield t, w, snapshot
