"""The float64 reference hypergradient, by the implicit function theorem with a direct solve,
and its certificate (``certify``): the facts that must hold before any row is compared with it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from hgbench.problems.base import Problem


@dataclass
class Reference:
    """Everything known exactly about one λ draw (all tensors float64, on the CPU).

    w_star: the inner fixed point; grad: ∇f(λ); q: ‖∂₁Φ(w*, λ)‖₂ (the local contraction
    constant); kappa: the condition number of I − ∂₁Φᵀ (the linear system of AID);
    fixed_point_residual: ‖Φ(w*) − w*‖; linear_residual: ‖(I − Jᵀ)v − ∇₁E‖; rhs_norm: ‖∇₁E(w*, λ)‖,
    the right-hand side of that system.
    """

    w_star: torch.Tensor
    grad: torch.Tensor
    q: float
    kappa: float
    fixed_point_residual: float
    linear_residual: float
    rhs_norm: float

    def summary(self) -> dict:
        """The scalar facts, for run.json."""
        out = {k: v for k, v in asdict(self).items() if not isinstance(v, torch.Tensor)}
        out["grad_norm"] = torch.linalg.vector_norm(self.grad).item()
        out["w_star_norm"] = torch.linalg.vector_norm(self.w_star).item()
        return out


def reference(problem: "Problem", lam: torch.Tensor) -> Reference:
    """∇f(λ) = ∇₂E(w*, λ) + ∂₂Φ(w*, λ)ᵀ v,  (I − Jᵀ) v = ∇₁E(w*, λ),  J = ∂₁Φ(w*, λ).

    ``problem`` must hold float64 data. w* comes from ``problem.solve_inner`` (closed form or
    Newton) and v from ``problem.adjoint_system`` (by default LU on the dense J formed by
    reverse-mode autodiff; a large problem solves it its own exact way, e.g. block by block), so
    the only errors are round-off. Both residuals are recorded, the linear one measured by one VJP.
    """
    if lam.dtype != torch.float64:
        raise TypeError(f"the reference is computed in float64, got λ of dtype {lam.dtype}")
    phi = problem.bound_phi(lam)
    w_star = problem.solve_inner(lam)
    grad_w, grad_lam = torch.func.grad(problem.outer, argnums=(0, 1))(w_star, lam)
    v, q, kappa = problem.adjoint_system(lam, w_star, grad_w)
    phi_w_star, pullback = torch.func.vjp(phi, w_star, lam)
    jtv, phi_t_v = pullback(v)
    return Reference(
        w_star=w_star,
        grad=grad_lam + phi_t_v,
        q=q,
        kappa=kappa,
        fixed_point_residual=torch.linalg.vector_norm(phi_w_star - w_star).item(),
        linear_residual=torch.linalg.vector_norm(v - jtv - grad_w).item(),
        rhs_norm=torch.linalg.vector_norm(grad_w).item(),
    )


# The tolerances a reference must meet (``certify``).
FIXED_POINT_TOL = 1e-10  # ‖Φ(w*) − w*‖ / ‖w*‖ (absolute when w* = 0)
LINEAR_TOL = 1e-10  # ‖(I − Jᵀ)v − ∇₁E‖ / ‖∇₁E‖ (absolute when ∇₁E = 0)
BOUND_TOL = 1e-6  # κ · the relative linear residual: a bound on the relative error of v


def _relative(residual: float, scale: float) -> float:
    return residual / scale if scale > 0 else residual


def certify(ref: Reference) -> dict:
    """The certificate of one reference: whether it may be compared with estimates.

    Three checks, each on numbers measured on the reference itself (exact arithmetic aside,
    nothing here is estimated): the relative fixed-point residual ‖Φ(w*) − w*‖/‖w*‖ ≤
    FIXED_POINT_TOL (1e-10); the relative adjoint residual r = ‖(I − Jᵀ)v − ∇₁E‖/‖∇₁E‖ ≤ LINEAR_TOL
    (1e-10); and the bound κ·r ≤ BOUND_TOL (1e-6) on the relative error of v, ‖δv‖/‖v‖ ≤ κ·r (the
    standard perturbation bound of a linear system; it carries over to ∂₂Φᵀv). κ = cond(I − Jᵀ);
    where a problem does not compute it (NaN, the equilibrium model) and q = ‖J‖₂ < 1,
    κ ≤ (1 + q)/(1 − q) is used instead; with neither, or with κ infinite, nothing bounds the error
    and the reference is not certified. Returns the measured ratios, the tolerances, ``certified``
    and, when not, ``reason`` (one line naming the failed check and its numbers)."""
    fixed = _relative(ref.fixed_point_residual, torch.linalg.vector_norm(ref.w_star).item())
    linear = _relative(ref.linear_residual, ref.rhs_norm)
    kappa = ref.kappa if not math.isnan(ref.kappa) else ((1 + ref.q) / (1 - ref.q) if ref.q < 1 else math.nan)
    bound = kappa * linear
    out = {
        "fixed_point_rel": fixed, "linear_rel": linear, "kappa_used": kappa, "error_bound": bound,
        "tolerances": {"fixed_point_rel": FIXED_POINT_TOL, "linear_rel": LINEAR_TOL, "error_bound": BOUND_TOL},
    }  # fmt: skip
    if not fixed <= FIXED_POINT_TOL:
        reason = (f"fixed-point residual {ref.fixed_point_residual:.2g} vs ‖w*‖ {torch.linalg.vector_norm(ref.w_star).item():.2g} "
                  f"(relative {fixed:.2g} > {FIXED_POINT_TOL:g})")
    elif not linear <= LINEAR_TOL:
        reason = f"linear residual {ref.linear_residual:.2g} vs ‖∇₁E‖ {ref.rhs_norm:.2g} (relative {linear:.2g} > {LINEAR_TOL:g})"
    elif not math.isfinite(kappa):
        reason = f"κ = cond(I − Jᵀ) is {ref.kappa:.2g} (q = {ref.q:.17g}): no bound on the reference's error"
    elif not bound <= BOUND_TOL:
        reason = f"error bound κ·(relative linear residual) = {kappa:.2g} × {linear:.2g} = {bound:.2g} exceeds {BOUND_TOL:g}"
    else:
        return {**out, "certified": True}
    return {**out, "certified": False, "reason": f"reference not certified: {reason}"}
