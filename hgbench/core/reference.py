"""The float64 reference hypergradient, by the implicit function theorem with a direct solve."""

from __future__ import annotations

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
    fixed_point_residual: ‖Φ(w*) − w*‖; linear_residual: ‖(I − Jᵀ)v − ∇₁E‖.
    """

    w_star: torch.Tensor
    grad: torch.Tensor
    q: float
    kappa: float
    fixed_point_residual: float
    linear_residual: float

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
    )
