"""A toy problem with a NON-symmetric ∂₁Φ, known in closed form; it lives in the tests to show
that a problem is one file plus one YAML file (tests/conf/problem/linear_map.yaml)."""

import torch

from hgbench.problems.base import Problem


class LinearMap(Problem):
    """Φ(w, λ) = A w + B λ with ‖A‖₂ = q < 1, A not symmetric; E(w, λ) = ½‖w − c‖² + ½ρ‖λ‖².

    w* = (I − A)⁻¹ B λ, so ∇f(λ) = Bᵀ(I − A)⁻ᵀ(w* − c) + ρλ in closed form.
    """

    def __init__(self, name, seed, dim, q, lam_low, lam_high, rho=0.1):
        super().__init__(name, seed, lam_low, lam_high)
        gen = torch.Generator().manual_seed(seed)
        a = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
        self.a = q * a / torch.linalg.matrix_norm(a, ord=2)
        self.b = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
        self.c = torch.randn(dim, generator=gen, dtype=torch.float64)
        self.rho = rho

    @property
    def lam_dim(self):
        return self.b.shape[1]

    @property
    def w_dim(self):
        return self.a.shape[0]

    def phi(self, w, lam, consts):
        return self.a @ w + self.b @ lam

    def outer(self, w, lam):
        return 0.5 * (w - self.c).square().sum() + 0.5 * self.rho * lam.square().sum()

    def solve_inner(self, lam):
        return torch.linalg.solve(torch.eye(self.w_dim, dtype=lam.dtype) - self.a, self.b @ lam)

    def closed_form_grad(self, lam):
        system = torch.eye(self.w_dim, dtype=lam.dtype) - self.a
        return self.b.T @ torch.linalg.solve(system.T, self.solve_inner(lam) - self.c) + self.rho * lam
