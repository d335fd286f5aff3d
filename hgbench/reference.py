"""The float64 reference hypergradient, by the implicit function theorem with a direct solve."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

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


def reference(problem: Problem, lam: torch.Tensor) -> Reference:
    """∇f(λ) = ∇₂E(w*, λ) + ∂₂Φ(w*, λ)ᵀ v,  (I − Jᵀ) v = ∇₁E(w*, λ),  J = ∂₁Φ(w*, λ).

    ``problem`` must hold float64 data. w* comes from ``problem.solve_inner`` (closed form or
    Newton); J is formed densely by reverse-mode autodiff and the system is solved by LU, so the
    only errors are round-off (both residuals are recorded).

    A problem too large for a dense J gives ``adjoint_system(lam, w_star, b) -> (v, q, κ)``: its own
    exact solve of (I − Jᵀ)v = b with q = ‖J‖₂ and κ = cond(I − Jᵀ) (e.g. block by block); the
    linear residual is then measured by one VJP.
    """
    if hasattr(problem, "adjoint_system"):
        return _reference_structured(problem, lam)
    if lam.dtype != torch.float64:
        raise TypeError(f"the reference is computed in float64, got λ of dtype {lam.dtype}")
    bound = problem.bind(lam)
    w_star = problem.solve_inner(lam)
    phi_w = lambda w: bound.phi(w, lam)  # noqa: E731
    jac = torch.func.jacrev(phi_w)(w_star)
    grad_w, grad_lam = torch.func.grad(bound.outer, argnums=(0, 1))(w_star, lam)
    system = torch.eye(jac.shape[0], dtype=jac.dtype) - jac.T
    v = torch.linalg.solve(system, grad_w)
    _, vjp_lam = torch.func.vjp(lambda l: bound.phi(w_star, l), lam)
    grad = grad_lam + vjp_lam(v)[0]
    singular = torch.linalg.svdvals(system)
    return Reference(
        w_star=w_star,
        grad=grad,
        q=torch.linalg.matrix_norm(jac, ord=2).item(),
        kappa=(singular[0] / singular[-1]).item(),
        fixed_point_residual=torch.linalg.vector_norm(phi_w(w_star) - w_star).item(),
        linear_residual=torch.linalg.vector_norm(system @ v - grad_w).item(),
    )


def _reference_structured(problem: Problem, lam: torch.Tensor) -> Reference:
    """As ``reference``, with the linear system solved by the problem's ``adjoint_system``."""
    bound = problem.bind(lam)
    w_star = problem.solve_inner(lam)
    grad_w, grad_lam = torch.func.grad(bound.outer, argnums=(0, 1))(w_star, lam)
    v, q, kappa = problem.adjoint_system(lam, w_star, grad_w)
    phi_w_star, pullback = torch.func.vjp(bound.phi, w_star, lam)
    jtv, phi_t_v = pullback(v)
    return Reference(
        w_star=w_star,
        grad=grad_lam + phi_t_v,
        q=q,
        kappa=kappa,
        fixed_point_residual=torch.linalg.vector_norm(phi_w_star - w_star).item(),
        linear_residual=torch.linalg.vector_norm(v - jtv - grad_w).item(),
    )
