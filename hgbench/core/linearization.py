"""Φ linearized at a point: the products with its Jacobians that solvers and estimators use,
each counted by the object that performs it.

At (w, λ), with J = ∂₁Φ(w, λ) (dim w × dim w) and ∂₂Φ(w, λ) (dim w × dim λ):

    jt(v)      = Jᵀ v           one VJP
    j(u)       = J u            one JVP (forward mode evaluates Φ alongside it: one Φ too)
    lam_t(v)   = ∂₂Φᵀ v         one VJP
    dense_jt() = Jᵀ as a matrix, column i = Jᵀeᵢ: dim w VJPs

All are exact (to round-off); nothing is approximated here. Building a linearization evaluates Φ
once (``value`` = Φ(w, λ)) and keeps its graph for the VJPs. ``symmetric`` is a structure tag
(J = Jᵀ, as for Φ = w − α∇₁ℓ): solvers that need it (CG) are only run where it holds, like
lineax's operator tags decide which solver applies.

Two backends compute the same numbers:
- the tape (default): one autograd graph with leaves w and λ; each VJP differentiates only the
  path to the argument it asks for, and the bytes the graph saves for backward are counted;
- ``functional=True`` (batched λ draws: everything runs under torch.func.vmap): torch.func.vjp,
  whose pullback computes a cotangent for every argument it was built on. So that a Jᵀ-product
  does not also pay for ∂₂Φᵀ (the costly half on the equilibrium model, whose λ holds B of
  784 × d), the graph of Jᵀ is built on w alone and, when ``wrt_lam``, a second one on λ alone:
  one more Φ evaluation, counted. Bytes saved under torch.func are not observable (not counted).

Two paths compute the products (``dense``), with the same numbers to round-off and the same
counts:
- products (matrix-free): each jt(v) is a VJP through Φ's graph, each j(u) a JVP;
- dense: on the first product asked for, J is built once, as a matrix, by ONE batched VJP
  (torch.func.vmap of the pullback over the basis e₁ … e_d; the vectors Jᵀeᵢ are the rows of
  J), and every later jt(v) = Jᵀv and j(u) = J u is a d × d matrix–vector product.
  For small d a VJP costs mostly per-operation overhead, so a solver step becomes several times
  cheaper (observed on logistic, d = 20, whole curve t = k ∈ {10, …, 100}: fp 3.1×, cg 2.7×;
  scripts/bench_paths.py). The counts stay those of the matrix-free algorithm (one VJP per jt,
  one JVP and one Φ per j, d VJPs per dense_jt: what a matrix-free user pays, hgbench.core.cost;
  saved_bytes too: the graph of Φ that the products would use), only time_s differs, and the tally records that
  the shortcut ran (``Tally.dense``), so that every row says which path its time_s measures.
  ``dense_path`` picks it: dense for dim w ≤ DENSE_MAX_DIM unless forced.
"""

from __future__ import annotations

from typing import Callable

import torch

from hgbench.core.cost import Tally, taped
from hgbench.problems import autodiff

Phi = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

PATHS = ("auto", "dense", "products")  # the top-level option ``linearization`` (hgbench.running.schema)
# auto: dense up to this dim w. Measured (scripts/bench_paths.py (b): cg at t = k = 50 on ridge,
# float64, 1 thread): dense J ÷ products time 0.51 / 0.64 / 0.56 / 0.76 at d = 20 / 100 / 200 /
# 300, 1.4 at d = 500 and 1.6 at d = 1000 (building J, d² entries, then outweighs the VJPs it
# saves); the matrix's d²·8 bytes stay ≤ 720 KB.
DENSE_MAX_DIM = 300


def dense_path(option: str, w_dim: int) -> bool:
    """Whether a run's linearizations use the dense J: ``option`` dense | products, or for auto
    dim w ≤ DENSE_MAX_DIM."""
    if option not in PATHS:
        raise ValueError(f"linearization={option!r} is not one of {', '.join(PATHS)}")
    return option == "dense" or (option == "auto" and w_dim <= DENSE_MAX_DIM)


class Linearization:
    """Φ linearized at (w, λ); see the module docstring. ``phi`` is the counted Φ of a bound
    problem (each call counts one Φ evaluation into ``tally``); ``dense``: the products by the
    dense J, built on the first one asked for."""

    def __init__(
        self,
        phi: Phi,
        w: torch.Tensor,
        lam: torch.Tensor,
        tally: Tally,
        *,
        symmetric: bool,
        functional: bool = False,
        wrt_lam: bool = True,
        dense: bool = False,
    ):
        self.phi, self.w, self.lam, self.tally = phi, w, lam, tally
        self.symmetric = symmetric
        self.functional = functional
        self.dense = dense
        self._j: torch.Tensor | None = None
        if functional:
            self.value, self._pull_w = torch.func.vjp(lambda x: phi(x, lam), w)
            self._pull_lam = torch.func.vjp(lambda l: phi(w, l), lam)[1] if wrt_lam else None
            return
        with taped(tally):
            self._leaves = (w.detach().requires_grad_(True), lam.detach().requires_grad_(True))
            self._out = phi(*self._leaves)
        self.value = self._out.detach()

    def _tape_vjp(self, v: torch.Tensor, i: int) -> torch.Tensor:
        if not self._out.requires_grad:  # Φ does not depend on w or λ at all
            return torch.zeros_like(self._leaves[i])
        (grad,) = torch.autograd.grad(self._out, self._leaves[i], v, retain_graph=True, allow_unused=True, materialize_grads=True)
        return grad

    def _matrix(self) -> torch.Tensor:
        """J (dim w × dim w), built once by one batched VJP over the basis (not counted: the
        products it stands in for are, where they are asked for)."""
        if self._j is None:
            self.tally.dense = True
            flat = self.w.reshape(-1)
            eye = torch.eye(flat.numel(), dtype=flat.dtype, device=flat.device).reshape(-1, *self.w.shape)
            pull = self._pull_w if self.functional else self._functional_pullback()
            self._j = torch.func.vmap(pull)(eye)[0].reshape(flat.numel(), flat.numel())
        return self._j

    def _functional_pullback(self):
        """A pullback on w by plain autograd (hgbench.problems.autodiff.vjp: the numbers of
        torch.func.vjp, bit for bit, without its first call's import of torch._dynamo, 1.2 s),
        which vmap batches over the basis (the tape's own batched backward, is_grads_batched,
        measured 7–12× slower at d = 300 to 600 on ridge). Its Φ evaluation is the tape's again,
        not a new one: not counted."""
        n_phi = self.tally.n_phi
        pull = autodiff.vjp(lambda x: self.phi(x, self.lam), (self.w,))[1]
        self.tally.n_phi = n_phi
        return pull

    def jt(self, v: torch.Tensor) -> torch.Tensor:
        """Jᵀv, one VJP (counted as one on the dense path too)."""
        self.tally.n_vjp += 1
        if self.dense:
            return (v.reshape(-1) @ self._matrix()).reshape(self.w.shape)
        return self._pull_w(v)[0] if self.functional else self._tape_vjp(v, 0)

    def lam_t(self, v: torch.Tensor) -> torch.Tensor:
        """∂₂Φᵀv, one VJP."""
        self.tally.n_vjp += 1
        if not self.functional:
            return self._tape_vjp(v, 1)
        if self._pull_lam is None:
            raise RuntimeError("this linearization was built with wrt_lam=False")
        return self._pull_lam(v)[0]

    def j(self, u: torch.Tensor) -> torch.Tensor:
        """J u by forward mode (torch.func.jvp, so it composes with vmap): one JVP, and the Φ
        evaluation that forward mode performs alongside it."""
        self.tally.n_jvp += 1
        if self.dense:  # counted as forward mode would run: one JVP and one Φ
            self.tally.n_phi += 1
            return (self._matrix() @ u.reshape(-1)).reshape(self.w.shape)
        return torch.func.jvp(lambda x: self.phi(x, self.lam), (self.w,), (u,))[1]

    def dense_jt(self) -> torch.Tensor:
        """Jᵀ as a d × d matrix, column i = Jᵀeᵢ: d VJPs (w a vector)."""
        if self.dense:
            self.tally.n_vjp += self.w.numel()
            return self._matrix().T
        eye = torch.eye(self.w.numel(), dtype=self.w.dtype, device=self.w.device)
        return torch.stack([self.jt(e) for e in eye], dim=1)


def jacobian(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tally: Tally) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(x), ∂f/∂x): the Jacobian (shape f(x).shape + x.shape) by reverse mode, one VJP per
    output entry, all of them vectorized by vmap over the output's basis; counts that many VJPs.
    For derivatives of functions other than Φ (e.g. the Hessian of a reparameterized inner loss,
    each Hessian-vector product of ℓ counted as one VJP, what it is through Φ = w − α∇ℓ)."""
    out, pull = torch.func.vjp(f, x)
    tally.opaque = True  # its saved tensors are not observable (hgbench.core.cost)
    basis = torch.eye(out.numel(), dtype=out.dtype, device=out.device).reshape(out.numel(), *out.shape)
    tally.n_vjp += out.numel()
    return out, torch.func.vmap(pull)(basis)[0].reshape(*out.shape, *x.shape)


def vjp(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, v: torch.Tensor, tally: Tally) -> torch.Tensor:
    """(∂f/∂x)ᵀ v, one VJP (for functions other than Φ, as ``jacobian``)."""
    tally.n_vjp += 1
    tally.opaque = True
    return torch.func.vjp(f, x)[1](v)[0]
