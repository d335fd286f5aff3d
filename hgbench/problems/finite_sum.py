"""Finite-sum problems: inner and outer objectives that are means over samples (issue 27).

    ℓ(w, λ) = (1/n) Σᵢ ℓᵢ(w, λ),   i = 0 … n − 1   (n = ``n_inner``: training samples)
    E(w, λ) = (1/m) Σⱼ Eⱼ(w, λ),   j = 0 … m − 1   (m = ``n_outer``)

A finite-sum problem gives both on any minibatch of sample indices ``idx`` (a 1-D int64 tensor,
repeats allowed): ``inner_loss_on(w, lam, idx)`` = (1/|idx|) Σ_{i ∈ idx} ℓᵢ(w, λ) and
``outer_on(w, lam, idx)`` likewise, so that every product the stochastic estimators take — the
sample gradients ∇₁ℓᵢ, Hessian–vector products ∇₁²ℓᵢ·v, cross products ∂²ℓᵢ/∂λ∂w·v and the
outer gradients ∇Eⱼ — is the mean over a minibatch (hgbench.core.stochastic). On the full index
set, in order, each equals the problem's ``inner_loss`` / ``outer`` up to round-off (the
regularizer of ℓ is in every ℓᵢ, so it is counted once in the mean).

For a problem with a choice of outer objective (``outer_kind``): only the kinds in
``sum_outers`` are sums over samples — by default ``validation`` (the held-out samples) and
``inner`` (E = ℓ, the training samples); Ye et al.'s problems name their held-out loss
``logistic`` — while ``linear`` and ``quadratic`` (of x alone, not of samples) are not, and
``n_outer`` refuses them (ValueError, one line), which mode=stochastic and mode=bilevel report
before any work.
"""

from __future__ import annotations

import torch


class FiniteSum:
    """Mixin of a problem whose ℓ and E are means over samples (module docstring). A problem
    with a choice of outer objective gives ``validation_loss_on(w, lam, idx)``, the held-out
    loss on samples idx, and ``n_held_out``, their count; this mixin dispatches E on
    ``outer_kind`` (a problem without ``outer_kind`` has E = its held-out loss). A problem
    whose E is some other sum overrides ``outer_on`` and ``n_outer``."""

    finite_sum = True
    sum_outers: tuple[str, ...] = ("validation", "inner")  # the outer_kind values whose E is a mean over samples

    @property
    def n_held_out(self) -> int:
        """The held-out samples the held-out outer loss is the mean over (the validation rows)."""
        return self.x_val.shape[0]

    @property
    def n_inner(self) -> int:
        """n: the number of training samples ℓ is the mean over."""
        return self.x_train.shape[0]

    @property
    def n_outer(self) -> int:
        """m: the number of samples E is the mean over; ValueError where E is not a sum over samples."""
        kind = getattr(self, "outer_kind", "validation")
        if kind not in self.sum_outers:
            raise ValueError(
                f"problem {self.name!r} with outer={kind!r} has an outer objective that is not a sum over samples; "
                f"use outer={' or outer='.join(self.sum_outers)}"
            )
        return self.n_inner if kind == "inner" else self.n_held_out

    def inner_loss_on(self, w: torch.Tensor, lam: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def validation_loss_on(self, w: torch.Tensor, lam: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def outer_on(self, w: torch.Tensor, lam: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(1/|idx|) Σ_{j ∈ idx} Eⱼ(w, λ)."""
        self.n_outer  # noqa: B018 — refuses an outer objective that is not a sum
        if getattr(self, "outer_kind", "validation") == "inner":
            return self.inner_loss_on(w, lam, idx)
        return self.validation_loss_on(w, lam, idx)


def is_finite_sum(problem) -> bool:
    """Whether ``problem`` gives its objectives on minibatches (a FiniteSum)."""
    return isinstance(problem, FiniteSum)
