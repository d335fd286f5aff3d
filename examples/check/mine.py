"""Hypergradients to check with `hgbench check` (docs/check.md): one right, one off by a 1e-3
relative perturbation, and torchopt's implicit differentiation on a scalar inner problem
(torchopt issue 222: its CG's maxiter is 0 for a scalar right-hand side, so ∇f comes out 0).

    hgbench check examples/check/mine.py:ridge_closed_form --problem ridge
    hgbench check examples/check/mine.py:ridge_perturbed --problem ridge
    hgbench check examples/check/mine.py:torchopt_scalar --problem examples/check/mine.py:scalar_problem
"""

import torch


def ridge_closed_form(lam, problem):
    """hgbench's ridge problem (problem: its copy in λ's dtype): w* = H⁻¹Xᵀy/n, v = H⁻¹∇₁E(w*),
    ∇f = −exp(λ)⊙w*⊙v, as ∂²ℓ/∂λⱼ∂wⱼ = exp(λⱼ)wⱼ and E does not depend on λ."""
    h = problem.hessian(lam)
    w = torch.linalg.solve(h, problem.xty)
    grad_w = problem.x_val.T @ (problem.x_val @ w - problem.y_val) / problem.x_val.shape[0]
    return -torch.exp(lam) * w * torch.linalg.solve(h, grad_w)


def ridge_perturbed(lam, problem):
    """The closed form, off by 1e-3 of its norm in a seeded random direction."""
    g = ridge_closed_form(lam, problem)
    u = torch.randn(g.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(g.dtype)
    return g + 1e-3 * torch.linalg.vector_norm(g) * u / torch.linalg.vector_norm(u)


def scalar_problem():
    """The plain form: ℓ(w, λ) = w² − λw (w* = λ/2), E = ½(w − 1)², w and λ 0-dim tensors;
    ∇f(λ) = (λ/2 − 1)/2."""
    return {"inner_loss": lambda w, lam: (w.square() - lam * w).sum(), "outer": lambda w, lam: 0.5 * (w - 1).square().sum(),
            "w0": torch.tensor(0.0, dtype=torch.float64), "lam": torch.tensor(0.5, dtype=torch.float64)}  # fmt: skip


def torchopt_scalar(lam):
    """∇f by torchopt's implicit differentiation (custom_root, its CG solve), as its docs show."""
    import torchopt

    @torchopt.diff.implicit.custom_root(lambda w, l: 2 * w - l, argnums=1, solve=torchopt.linear_solve.solve_cg())
    def solve(w, l):
        return (l / 2).detach()  # the inner solution, found without autograd

    leaf = lam.detach().clone().requires_grad_(True)
    w = solve(torch.zeros_like(leaf), leaf)
    (grad,) = torch.autograd.grad(0.5 * (w - 1).square().sum(), leaf)
    return grad
