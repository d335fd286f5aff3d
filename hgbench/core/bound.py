"""What an estimator sees of a problem at one λ draw: Φ, E, w₀, λ and, where the problem has
one, the inner loss ℓ — never the problem's reference solvers (``solve_inner``,
``adjoint_system``), which only hgbench.core.reference uses.

``bind(problem, lam)`` gives a ``BoundProblem``; ``estimate(estimator, problem, lam, pairs)``
binds and runs an estimator (anything with the members of ``Estimating``, which
hgbench.estimators.base.Estimator has: core knows estimators by what it asks of them, not by
their class). Estimators declare what they need of a problem (``needs``: a symmetric ∂₁Φ, the
inner loss); ``check_applies`` refuses a problem that lacks it, before any work, with one
message format.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol

import torch

from hgbench.core.cost import Cost, Meter, Tally
from hgbench.core.linearization import Linearization
from hgbench.problems.base import Problem

Fn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# What an estimator may need of a problem, in words; a problem class declares what it provides
# (hgbench.problems.base.Problem.provides).
NEEDS: dict[str, str] = {
    "symmetric": "a symmetric ∂₁Φ (I − J symmetric positive definite)",
    "inner_loss": "the inner loss ℓ (Φ a gradient step on it)",
    "dense": "dense dim w × dim w (or dim w × dim λ) matrices (affordable only for small problems)",
}


@dataclass(frozen=True)
class BoundProblem:
    """A problem at one λ draw, as an estimator sees it.

    ``phi(w, l)`` is Φ with the draw's constants bound (e.g. a step size computed from λ's
    value, held fixed by every derivative, as the theory assumes); each call counts one Φ
    evaluation into ``tally``. ``outer(w, l)`` is E; ``inner_loss(w, l)`` is ℓ or None.
    ``symmetric`` tags ∂₁Φ as symmetric. ``functional``: products are built with torch.func
    (batched λ draws under vmap) instead of the autograd tape. ``v0``: where an AID solver starts
    (hgbench.estimators.aid; None: v₀ = 0), e.g. the previous outer step's v_k in a warm-started
    outer loop (hgbench.running.outer_loop); estimators without a solver ignore it.
    """

    phi: Fn
    outer: Fn
    lam: torch.Tensor
    w0: torch.Tensor
    inner_loss: Optional[Fn]
    symmetric: bool
    tally: Tally = field(default_factory=Tally)
    functional: bool = False
    v0: Optional[torch.Tensor] = None
    step: Optional[Callable] = None  # the problem's own inner step (Problem.inner_step) if it has one; None: iterate Φ
    dense: bool = False

    def meter(self) -> Meter:
        return Meter(self.tally, self.lam.device)

    def outer_grads(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(∇₁E(w, λ), ∇₂E(w, λ)), not counted (hgbench.core.cost). By plain autograd, or by
        torch.func.grad when ``functional`` (under vmap): the same numbers, bit for bit, but
        torch.func's first gradient imports torch._dynamo (~2 s), which a run whose
        estimator needs nothing else of torch.func does not pay before its first estimate."""
        if self.functional:
            return torch.func.grad(self.outer, argnums=(0, 1))(w, self.lam)
        leaves = (w.detach().requires_grad_(True), self.lam.detach().requires_grad_(True))
        with torch.enable_grad():
            value = self.outer(*leaves)
        if not value.requires_grad:  # E depends on neither w nor λ
            return tuple(torch.zeros_like(leaf) for leaf in leaves)
        return torch.autograd.grad(value, leaves, allow_unused=True, materialize_grads=True)

    def linearize(self, w: torch.Tensor, wrt_lam: bool = True) -> Linearization:
        """Φ linearized at (w, λ) (hgbench.core.linearization); ``wrt_lam=False`` when no
        ∂₂Φᵀ-product will be asked for."""
        return Linearization(
            self.phi, w, self.lam, self.tally, symmetric=self.symmetric, functional=self.functional, wrt_lam=wrt_lam, dense=self.dense
        )

    def iterates(
        self, ts: Iterable[int], lam: torch.Tensor | None = None, mark: Callable = lambda w: w
    ) -> Iterator[tuple[int, torch.Tensor, Cost]]:
        """Yield (t, w_t, cost of the t steps) for each t in ts, ascending, from ONE trajectory
        w_i = Φ(w_{i−1}, λ), w_0 = ``w0`` (or of the problem's own inner ``step`` where it has
        one, e.g. gradient descent with backtracking). The meter pauses while the caller works.
        ``lam``: the λ to step with (e.g. a leaf of a tape; default ``self.lam``); ``mark`` is
        applied to every iterate (a tape's VJP counter)."""
        lam = self.lam if lam is None else lam
        meter = self.meter()
        w, done, state = self.w0, 0, None
        for t in sorted(set(ts)):
            with meter:
                while done < t:
                    if self.step is None:
                        w = mark(self.phi(w, lam))
                    else:
                        w, state = self.step(w, lam, state)
                        w = mark(w)
                    done += 1
            yield t, w, replace(meter.cost)

    def push(self, w: torch.Tensor, dws: torch.Tensor, dlams: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward mode, m tangents at once: (Φ(w, λ), ∂₁Φ·dws + ∂₂Φ·dlams) with dws of shape
        (dim w, m) and dlams (m, dim λ). One Φ evaluation (vmap runs Φ once for all tangents)
        and m JVPs (m read off the shape)."""
        step = torch.func.vmap(lambda dw, dl: torch.func.jvp(self.phi, (w, self.lam), (dw, dl)), in_dims=(1, 0), out_dims=(0, 1))
        values, tangents = step(dws, dlams)
        self.tally.n_jvp += dlams.shape[0]
        return values[0], tangents


def bind(
    problem: Problem,
    lam: torch.Tensor,
    functional: bool = False,
    w0: torch.Tensor | None = None,
    v0: torch.Tensor | None = None,
    dense: bool = False,
) -> BoundProblem:
    """The problem at λ as an estimator sees it, with a fresh tally. ``w0``: the start of the
    inner iteration (default the problem's ``w0(lam)``; a warm start passes the previous outer
    step's w_t, a constant of λ like every w₀); ``v0``: the AID solver's start (default 0);
    ``dense``: products by a dense J (BoundProblem)."""
    pure = problem.bound_phi(lam)
    tally = Tally()

    def phi(w, l):
        tally.n_phi += 1
        return pure(w, l)

    own_step = type(problem).inner_step is not Problem.inner_step
    return BoundProblem(
        phi=phi,
        outer=problem.outer,
        lam=lam,
        w0=problem.w0(lam) if w0 is None else w0,
        inner_loss=problem.inner_loss if problem.has_inner_loss else None,
        symmetric=problem.symmetric_jacobian,
        tally=tally,
        functional=functional,
        v0=v0,
        step=functools.partial(problem.inner_step, phi) if own_step else None,
        dense=dense,
    )


class Estimating(Protocol):
    """What ``check_applies`` and ``estimate`` ask of an estimator (hgbench.estimators.base.Estimator
    has it): its name, what it needs of a problem (keys of NEEDS, each with its advice), a check
    of what it needs outside hgbench, and its estimates on a bound problem over (t, k) pairs
    (hgbench.estimators.base.Estimate records)."""

    name: str
    needs: dict[str, str]

    def check_ready(self) -> None: ...

    def estimate(self, bound: BoundProblem, pairs: list[tuple[int, int]]) -> Iterator[Any]: ...


def check_applies(estimator: Estimating, problem: Problem) -> None:
    """Raise ValueError, in one format, if ``problem`` lacks something ``estimator`` needs (and,
    first, if the estimator itself lacks an optional library it drives: ``Estimator.check_ready``)."""
    estimator.check_ready()
    for need, advice in estimator.needs.items():
        if need not in problem.provides():
            raise ValueError(f"estimator {estimator.name!r} needs {NEEDS[need]}, which problem {problem.name!r} does not provide; {advice}")


def estimate(
    estimator: Estimating,
    problem: Problem,
    lam: torch.Tensor,
    pairs,
    functional: bool = False,
    w0: torch.Tensor | None = None,
    v0: torch.Tensor | None = None,
    dense: bool = False,
) -> Iterator[Any]:
    """``estimator``'s estimates at λ over the (t, k) pairs: one per pair, or per distinct t
    for estimators without k; ``w0``, ``v0``: warm starts, ``dense``: the products' path (``bind``)."""
    return estimator.estimate(bind(problem, lam, functional, w0, v0, dense), pairs)
