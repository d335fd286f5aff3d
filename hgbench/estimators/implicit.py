"""Implicit differentiation at a given point, with the linear system solved directly (no k).

    ĝ(x) = ∇₂E(x, λ) + ∂₂Φ(x, λ)ᵀ v,   (I − Jᵀ) v = ∇₁E(x, λ),   J = ∂₁Φ(x, λ)

evaluated at x = w_t (``exact``; Pedregosa 2016, Grazzi et al. 2020 with an exact solve), or with
v = ∇₁E (``jfb``, Jacobian-free backpropagation: Fung et al., AAAI 2022). Since the system is
solved exactly, the error of ``exact`` is the inner error's alone (the "vanilla implicit
differentiation" of Ye, Peyré, Cremers, Ablin, AISTATS 2024): linear in ‖w_t − w*‖ in general,
quadratic in the min–min case E = ℓ. Neither has a solver iteration count: both yield k = None,
once per t. Jᵀ is formed densely by d VJPs (one per basis vector), so these are for problems with
up to a few thousand unknowns. The pieces are shared with hgbench.estimators.precond.
"""

from __future__ import annotations

from typing import Callable

import torch

from hgbench.core.bound import BoundProblem
from hgbench.core.linearization import Linearization
from hgbench.estimators.base import Estimate, Estimator, dense_cost

Solve = Callable[[Linearization, torch.Tensor], torch.Tensor]


def solve_or_nan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a⁻¹b by LU; NaN where a is singular, so that the estimate becomes a ``diverged`` row
    instead of stopping the run."""
    x, info = torch.linalg.solve_ex(a, b)
    return torch.where(info == 0, x, torch.full_like(x, float("nan")))


def solve_direct(lin: Linearization, b: torch.Tensor) -> torch.Tensor:
    """v = (I − Jᵀ)⁻¹ b by LU on the dense matrix (d VJPs)."""
    system = torch.eye(b.numel(), dtype=b.dtype, device=b.device) - lin.dense_jt()
    return solve_or_nan(system, b)


def implicit_at(bound: BoundProblem, x: torch.Tensor, solve: Solve) -> torch.Tensor:
    """∇₂E(x) + ∂₂Φ(x)ᵀ v with v = solve(lin, ∇₁E(x)), lin = Φ linearized at x; one Φ
    evaluation builds the VJP graph at x, one VJP gives ∂₂Φᵀv (plus whatever ``solve`` uses)."""
    grad_w, grad_lam = bound.outer_grads(x)
    lin = bound.linearize(x)
    return grad_lam + lin.lam_t(solve(lin, grad_w))


def point_estimates(bound: BoundProblem, pairs, at: Callable[[BoundProblem, torch.Tensor], torch.Tensor]):
    """One estimate ``at(bound, w_t)`` per distinct t of pairs (k = None), all t from one
    trajectory; the cost of the point t is the t inner steps plus what ``at`` does."""
    for t, w, inner_cost in bound.iterates({t for t, _ in pairs}):
        meter = bound.meter()
        with meter:
            grad = at(bound, w)
        yield Estimate(t, None, grad, w, inner_cost + meter.cost)


class PointEstimator(Estimator):
    """An estimator that maps each inner iterate w_t to one estimate (k = None), from one
    trajectory for all t; subclasses give ``at(bound, w)``. The cost of the point t: the t
    inner steps plus what ``at`` does."""

    def at(self, bound: BoundProblem, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def estimate(self, bound, pairs):
        return point_estimates(bound, pairs, self.at)


class Exact(PointEstimator):
    """Implicit differentiation at w_t, the linear system solved directly (no k).

    (I − Jᵀ)v = ∇₁E is solved by LU on the dense matrix: isolates the inner solver's error. Cost per point: t Φ steps, one Φ evaluation,
    d + 1 VJPs."""

    role = "exact"
    needs = {"dense": "use a matrix-free estimator (cg, gmres, fp, neumann, itd)"}

    def planned_cost(self, d, p, pairs, step_bytes, itemsize):
        return dense_cost(2, d, pairs, itemsize)

    def at(self, bound, w):
        return implicit_at(bound, w, solve_direct)


class JacobianFree(PointEstimator):
    """Jacobian-free (JFB): v = ∇₁E(w_t), the inverse dropped (no k).

    (I − Jᵀ)⁻¹ is replaced by I; equals fp with k = 1 and neumann with k = 0. Biased even at w* unless J = 0. Cost per point: t Φ steps, one Φ
    evaluation, one VJP."""

    role = "jfb"

    def at(self, bound, w):
        return implicit_at(bound, w, lambda lin, b: b)
