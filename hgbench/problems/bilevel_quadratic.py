"""The simulated quadratic bilevel problem of benchopt's benchmark_bilevel (Dagréou et al. 2022's
benchmark: datasets/quadratic.py and benchmark_utils/gen_matrices.py), a finite sum."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hgbench.options import SIZE, Number, UniformOptions, option
from hgbench.problems.base import GradientStepProblem, Planned
from hgbench.problems.finite_sum import FiniteSum

POSITIVE = Number(0, low_open=True)


@dataclass
class BilevelQuadraticOptions(UniformOptions):
    n_inner: int = option(SIZE, "samples of the inner objective g (benchmark_bilevel: n_samples_inner = 1024)")
    n_outer: int = option(SIZE, "samples of the outer objective f (n_samples_outer = 1024)")
    dim_inner: int = option(SIZE, "dim w = dim z (dim_inner = 100)")
    dim_outer: int = option(SIZE, "dim λ = dim x (dim_outer = 100)")
    mu: float = option(POSITIVE, "smallest eigenvalue (and singular value) of the expected matrices (mu_inner = 0.1)")
    l_inner_inner: float = option(POSITIVE, "largest eigenvalue of E[H_i^zz] of g (L_inner_inner = 1)")
    l_inner_outer: float = option(POSITIVE, "largest eigenvalue of E[H_j^zz] of f (L_inner_outer = 1)")
    l_outer_inner: float = option(POSITIVE, "largest eigenvalue of E[H_i^xx] of g (L_outer_inner = 1)")
    l_outer_outer: float = option(POSITIVE, "largest eigenvalue of E[H_j^xx] of f (L_outer_outer = 1)")
    l_cross_inner: float = option(POSITIVE, "largest singular value of E[C_i] of g (L_cross_inner = 0.1)")
    l_cross_outer: float = option(POSITIVE, "largest singular value of E[C_j] of f (L_cross_outer = 0.1)")


def _orthogonal(d: int, gen: torch.Generator) -> torch.Tensor:
    """The left singular vectors of a random d × 1 Gaussian matrix: a random d × d orthogonal basis."""
    u, _, _ = torch.linalg.svd(torch.randn(d, 1, generator=gen, dtype=torch.float64))
    return u


def _half_spectrum(low: float, high: float, d: int) -> torch.Tensor:
    """√ of d eigenvalues log-spaced from low to high."""
    return torch.logspace(0.5 * torch.log10(torch.tensor(low)).item(), 0.5 * torch.log10(torch.tensor(high)).item(), d, dtype=torch.float64)


def sample_terms(n: int, d_in: int, d_out: int, l_in: float, l_out: float, l_cross: float, mu: float, gen: torch.Generator) -> dict:
    """One objective's n samples, as benchmark_bilevel's gen_matrices draws them, kept as rank-one
    factors (the n × d × d matrices are never formed):

        H_i^zz = pᵢpᵢᵀ, pᵢ = A ξᵢ,  A = U diag(√s) Uᵀ, s log-spaced in [mu, l_in]  (E H^zz = A², spectrum [mu, l_in])
        H_i^xx = rᵢrᵢᵀ, rᵢ = B ζᵢ,  B = U' diag(0, √s') U'ᵀ, s' in [mu, l_out] (d_out − 1 values; one zero eigenvalue)
        C_i    = sᵢuᵢᵀ, sᵢ = P D ηᵢ, uᵢ = Q ηᵢ  (P D Q the SVD form, D's singular values log-spaced in [mu, l_cross])
        linear terms aᵢ ~ N(0, I_{d_in}), bᵢ ~ N(0, I_{d_out})

    with ξᵢ, ζᵢ, ηᵢ standard Gaussian (E C_i = P D Q). Shapes: p (n, d_in), r (n, d_out), s (n, d_out),
    u (n, d_in), a (n, d_in), b (n, d_out)."""
    a_half = _orthogonal(d_in, gen)
    a_half = a_half * _half_spectrum(mu, l_in, d_in) @ a_half.T
    p = torch.randn(n, d_in, generator=gen, dtype=torch.float64) @ a_half
    b_half = _orthogonal(d_out, gen)
    b_half = b_half * torch.cat([torch.zeros(1, dtype=torch.float64), _half_spectrum(mu, l_out, d_out - 1)]) @ b_half.T
    r = torch.randn(n, d_out, generator=gen, dtype=torch.float64) @ b_half
    left, _, right = torch.linalg.svd(torch.randn(d_out, d_in, generator=gen, dtype=torch.float64))
    m = min(d_in, d_out)
    singular = torch.zeros(d_out, d_in, dtype=torch.float64)
    singular[:m, :m] = torch.diag(
        torch.logspace(torch.log10(torch.tensor(mu)).item(), torch.log10(torch.tensor(l_cross)).item(), m, dtype=torch.float64)
    )
    eta = torch.randn(n, d_in, generator=gen, dtype=torch.float64)
    s = eta @ (left @ singular).T
    u = eta @ right.T
    return {
        "p": p,
        "r": r,
        "s": s,
        "u": u,
        "a": torch.randn(n, d_in, generator=gen, dtype=torch.float64),
        "b": torch.randn(n, d_out, generator=gen, dtype=torch.float64),
    }


def quadratic_on(terms: dict, z: torch.Tensor, x: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
    """(1/|idx|) Σ_{i∈idx} ½(pᵢᵀz)² + ½(rᵢᵀx)² + (xᵀsᵢ)(uᵢᵀz) + aᵢᵀz + bᵢᵀx (all samples: idx None)."""
    pick = (lambda key: terms[key]) if idx is None else (lambda key: terms[key][idx])
    pz, rx, sx, uz = pick("p") @ z, pick("r") @ x, pick("s") @ x, pick("u") @ z
    return (0.5 * pz.square() + 0.5 * rx.square() + sx * uz + pick("a") @ z + pick("b") @ x).mean()


class BilevelQuadratic(FiniteSum, GradientStepProblem):
    """benchmark_bilevel's simulated quadratic problem (README "Simulated bilevel problem";
    datasets/quadratic.py with benchmark_utils/gen_matrices.py), λ = x ∈ ℝ^{d_out}, w = z ∈ ℝ^{d_in}:

        ℓ(z, x) = g(z, x) = (1/n) Σᵢ ½ zᵀH_i^zz z + ½ xᵀH_i^xx x + xᵀC_i z + aᵢᵀz + bᵢᵀx
        E(z, x) = f(z, x) = (1/m) Σⱼ the same form with the outer objective's own samples

    drawn as ``sample_terms`` says (the benchmark's distributions and defaults, drawn with torch's
    generator from ``seed``: the same law, not the same numbers as its JAX keys; the benchmark
    also redraws until the value function's Hessian is positive definite, which a fixed-λ
    hypergradient does not need and is not done here). Φ = z − α∇₁ℓ with α = 2/(L + μ) from the
    extreme eigenvalues of H = (1/n) Σ H_i^zz (exact, constant in λ). Closed form:
    z*(x) = −H⁻¹(C̄ᵀx + ā), C̄ = (1/n) Σ C_i. A finite sum over n inner and m outer samples.
    """

    Options = BilevelQuadraticOptions

    def __init__(
        self,
        name,
        seed,
        lam_low,
        lam_high,
        n_inner,
        n_outer,
        dim_inner,
        dim_outer,
        mu,
        l_inner_inner,
        l_inner_outer,
        l_outer_inner,
        l_outer_outer,
        l_cross_inner,
        l_cross_outer,
    ):
        super().__init__(name, seed, lam_low, lam_high)
        gen = torch.Generator().manual_seed(self.seed)
        self.inner_terms = sample_terms(n_inner, dim_inner, dim_outer, l_inner_inner, l_outer_inner, l_cross_inner, mu, gen)
        self.outer_terms = sample_terms(n_outer, dim_inner, dim_outer, l_inner_outer, l_outer_outer, l_cross_outer, mu, gen)
        t = self.inner_terms
        self.hess = t["p"].T @ t["p"] / n_inner  # H = mean pᵢpᵢᵀ, d_in × d_in
        self.cross_mean = t["s"].T @ t["u"] / n_inner  # C̄ = mean sᵢuᵢᵀ, d_out × d_in
        self.linear_mean = t["a"].mean(0)
        eig = torch.linalg.eigvalsh(self.hess)
        self.eig_max, self.eig_min = eig[-1], eig[0]

    @classmethod
    def planned(cls, settings: dict) -> Planned | None:
        """The factors: 6 vectors per sample of each objective; an eigendecomposition of H."""
        n, d_in, d_out = settings["n_inner"] + settings["n_outer"], settings["dim_inner"], settings["dim_outer"]
        return Planned(d_in, d_out, 8.0 * 3 * n * (d_in + d_out), 10.0 * d_in**3 + 2.0 * n * d_in * d_in)

    def to(self, dtype, device):
        """A copy with the samples' factors cast and moved too (they are held in dicts)."""
        other = super().to(dtype, device)
        for key in ("inner_terms", "outer_terms"):
            setattr(other, key, {k: v.to(dtype).to(device) for k, v in getattr(self, key).items()})
        return other

    @property
    def lam_dim(self) -> int:
        return self.cross_mean.shape[0]

    @property
    def w_dim(self) -> int:
        return self.hess.shape[0]

    @property
    def n_inner(self) -> int:
        return self.inner_terms["p"].shape[0]

    @property
    def n_outer(self) -> int:
        return self.outer_terms["p"].shape[0]

    def inner_loss(self, w, lam):
        return quadratic_on(self.inner_terms, w, lam)

    def inner_grad(self, w, lam):
        return self.hess @ w + self.cross_mean.T @ lam + self.linear_mean

    def curvature_bounds(self, lam):
        return self.eig_max, self.eig_min

    def outer(self, w, lam):
        return quadratic_on(self.outer_terms, w, lam)

    def inner_loss_on(self, w, lam, idx):
        return quadratic_on(self.inner_terms, w, lam, idx)

    def outer_on(self, w, lam, idx):
        return quadratic_on(self.outer_terms, w, lam, idx)

    def solve_inner(self, lam, start=None):
        return -torch.linalg.solve(self.hess, self.cross_mean.T @ lam + self.linear_mean)
