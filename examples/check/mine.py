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
    return {
        "inner_loss": lambda w, lam: (w.square() - lam * w).sum(),
        "outer": lambda w, lam: 0.5 * (w - 1).square().sum(),
        "w0": torch.tensor(0.0, dtype=torch.float64),
        "lam": torch.tensor(0.5, dtype=torch.float64),
    }


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


def fixed_point_problem():
    """The plain form with a map: w = Φ(w, λ) = w/2 + λ (w* = 2λ), E = ½(w − 1)², w and λ of
    shape (1,); ∇f(λ) = 2(2λ − 1)."""
    return {
        "phi": lambda w, lam: 0.5 * w + lam,
        "outer": lambda w, lam: 0.5 * (w - 1).square().sum(),
        "w0": torch.zeros(1, dtype=torch.float64),
        "lam": torch.tensor([0.3], dtype=torch.float64),
    }


def torchdeq_default(lam, **settings):
    """∇f by a torchdeq DEQ layer, as its docs show (``deq = get_deq(); z_out, info = deq(f, z0)``).
    Its default backward is the 1-step gradient (ift=False, grad=1), a documented approximation
    that drops (I − J)⁻¹: here half of ∇f. ``settings``: get_deq's, e.g. ift=True, b_tol=1e-12."""
    from torchdeq import get_deq

    leaf = lam.detach().clone().requires_grad_(True)
    deq = get_deq(**settings)
    z_out, _ = deq(lambda z: 0.5 * z + leaf, torch.zeros(1, 1, dtype=lam.dtype))  # a batch of one sample
    (grad,) = torch.autograd.grad(0.5 * (z_out[-1][0] - 1).square().sum(), leaf)
    return grad
