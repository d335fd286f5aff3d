"""Preconditioned implicit differentiation (Ye, Peyré, Cremers, Ablin, AISTATS 2024, arXiv 2402.16748)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hgbench.core.krylov import conjugate_gradient, iterates
from hgbench.estimators.aid import AID
from hgbench.estimators.base import dense_cost
from hgbench.estimators.implicit import implicit_at, point_estimates, solve_direct, solve_or_nan
from hgbench.options import Choice, EstimatorOptions, Integer, option


@dataclass
class PrecondOptions(EstimatorOptions):
    kind: str = option(Choice(("newton", "jacobi")), "P = the inner Hessian (newton) or its diagonal (jacobi)")
    solve: str = option(Choice(("direct", "cg")), "direct (LU; no k) or cg (k CG steps from the grid)")
    precond_steps: int = option(Integer(0), "CG steps for P⁻¹ when solve=cg (Newton only)")


class Preconditioned(AID):
    """Preconditioned implicit differentiation (Ye et al. 2024), kind=newton|jacobi.

    One preconditioned step from the inner iterate, then implicit differentiation there:

        x̂ = w_t − P⁻¹∇₁ℓ(w_t, λ),    ĝ = ∇₂E(x̂) + ∂₂Φ(x̂)ᵀ v,   (I − Jᵀ(x̂)) v = ∇₁E(x̂)

    with P = ∇₁²ℓ(w_t, λ) (``kind=newton``) or its diagonal (``kind=jacobi``), as in the
    authors' code. Newton makes ‖x̂ − w*‖ = O(‖w_t − w*‖²), so the error becomes quadratic in the
    inner error ("super-efficiency"); Jacobi stays linear with a smaller constant.

    Written on Φ alone: for Φ = w − α∇₁ℓ (α held fixed), ∇₁ℓ = (w − Φ(w))/α and ∇₁²ℓ = (I − J)/α,
    so P⁻¹∇₁ℓ = (I − J)⁻¹(w − Φ(w)) (Newton) or diag(I − J)⁻¹(w − Φ(w)) (Jacobi): α cancels, the
    step is Ye et al.'s exactly, and for any other contraction Φ it is Newton (or Jacobi) on the
    fixed-point residual w − Φ(w) = 0.

    ``solve=direct`` (small problems): the Newton system and the implicit system are solved by LU
    on dense matrices (d VJPs each; the Jacobi diagonal also takes d VJPs); the estimator has no
    k and yields k = None once per t. Cost per point: t Φ steps, 2 Φ evaluations, 2d + 1 VJPs.
    ``solve=cg`` (larger problems; needs a symmetric ∂₁Φ): P⁻¹ is applied by ``precond_steps``
    CG steps on (I − J)s = w − Φ(w) (Newton; Jacobi still divides by the exact diagonal), and
    the implicit system at x̂ by k CG steps, k from the grid. Cost of (t, k): t Φ steps,
    2 Φ evaluations, precond_steps (Newton) or d (Jacobi) VJPs, k + 1 VJPs.
    """

    Options = PrecondOptions

    def __init__(self, name, kind="newton", solve="direct", precond_steps=20):
        super().__init__(name)
        self.kind, self.solve, self.precond_steps = kind, solve, precond_steps
        self.role = f"precond_{kind}"
        self.solver_start = solve == "cg"  # solve=direct has no solver to start
        self.needs = {}
        if solve == "cg":
            self.needs["symmetric"] = "solve=cg runs CG; use estimator.solve=direct"
        if solve == "direct" or kind == "jacobi":  # LU on I − J, or the diagonal of the dense Jᵀ
            self.needs["dense"] = "use estimator.solve=cg with kind=newton, or a matrix-free estimator (cg, gmres, fp)"

    def planned_cost(self, d, p, pairs, step_bytes, itemsize):
        """Dense matrices with solve=direct (4 units per d per point); AID's cost with solve=cg."""
        return super().planned_cost(d, p, pairs, step_bytes, itemsize) if self.solve == "cg" else dense_cost(4, d, pairs, itemsize)

    def point(self, bound, w):
        """x̂ = w − P⁻¹∇₁ℓ(w), in the Φ form above."""
        lin = bound.linearize(w, wrt_lam=False)
        residual = w - lin.value
        if self.kind == "jacobi":
            return w - residual / (1 - lin.dense_jt().diagonal())
        if self.solve == "direct":  # I − J = (I − Jᵀ)ᵀ
            system = torch.eye(w.numel(), dtype=w.dtype, device=w.device) - lin.dense_jt().T
            return w - solve_or_nan(system, residual)
        steps = iterates(conjugate_gradient(lambda v: v - lin.jt(v), residual, batched=lin.functional))
        step = torch.zeros_like(w)
        for _ in range(self.precond_steps):
            step = next(steps)
        return w - step

    def solver(self, lin, b):
        return iterates(conjugate_gradient(lambda v: v - lin.jt(v), b, batched=lin.functional))

    def at(self, bound, w):
        return implicit_at(bound, self.point(bound, w), solve_direct)

    def estimate(self, bound, pairs):
        if self.solve == "cg":
            return super().estimate(bound, pairs)
        return point_estimates(bound, pairs, self.at)
