"""Reparameterized implicit differentiation (Ye, Peyré, Cremers, Ablin, AISTATS 2024, arXiv 2402.16748)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hgbench.core.linearization import jacobian, vjp
from hgbench.estimators.base import Estimator, dense_cost
from hgbench.estimators.implicit import point_estimates, solve_or_nan
from hgbench.options import Choice, EstimatorOptions, option


@dataclass
class ReparamOptions(EstimatorOptions):
    map: str = option(
        Choice(("diag", "exp", "opt")),
        "x = P(λ)⁻¹z with P the Hessian's diagonal (diag), x = sign(w_t)·exp(z) (exp), or x = H(w_t, λ)⁻¹∇ℓ(z, λ_c) + w_t (opt)",
    )


class Reparameterized(Estimator):
    """Reparameterized implicit differentiation (Ye et al. 2024), map=diag|exp|opt.

    Implicit differentiation after a change of inner variable x = φ(z, λ):

        G̃(z, λ) = ℓ(φ(z, λ), λ),   Ẽ(z, λ) = E(φ(z, λ), λ),   z_t = φ⁻¹(w_t)
        ĝ = ∇₂Ẽ(z_t, λ) − (∂₂∇₁G̃(z_t, λ))ᵀ ∇₁²G̃(z_t, λ)⁻¹ ∇₁Ẽ(z_t, λ)

    i.e. the implicit formula of the inner problem in z (whose solution z* maps to w*), the chain
    rule dw*/dλ = ∂_zφ·dz*/dλ + ∂_λφ mapping it back. Exact at w_t = w*; at an inexact w_t the
    error changes with φ (Ye et al. 2024, §4: quadratic only for specially designed maps). Maps,
    with x_c = w_t held fixed (not differentiated):

    - ``map=exp``: x = sign(x_c) ⊙ exp(z), elementwise (undefined where a coordinate of w_t is 0:
      the estimate is then NaN, a ``diverged`` row);
    - ``map=diag``: x = P(λ)⁻¹ z, P(λ) = diag(∇₁²ℓ(x_c, λ)) (diagonal scaling; P depends on λ,
      so ∂_λφ ≠ 0);
    - ``map=opt``: their "specially designed" map ("OptPhi", used on ridge regression),
      x = H(x_c, λ)⁻¹ ∇₁ℓ(z, λ_c) + x_c with H = ∇₁²ℓ and λ_c = λ held fixed. Its z_c = φ⁻¹(x_c)
      solves ∇₁ℓ(z, λ_c) = 0, i.e. z_c = w*: for a quadratic ℓ (ridge) one Newton step from x_c
      finds it exactly, which is what is computed (on other problems z_c is that Newton step).
      The error is then quadratic in ‖x_c − w*‖ (Ye et al. 2024), a map that needs the
      Hessian and, in effect, the solution.

    The d × d Hessian of G̃ is formed densely and solved by LU: small problems only; no k
    (k = None, once per t). Needs the problem's ``inner_loss``. Cost per point, counting a
    Hessian-vector product of ℓ as one VJP (what it is through Φ = w − α∇ℓ): t Φ steps, d VJPs
    for ∇₁²G̃, one for the λ-product, and for ``map=diag`` 2d more: d for the diagonal of ∇₁²ℓ and
    d for its derivative in λ (each a VJP through a Hessian-vector product); for ``map=opt``
    d + d² for ∇₁²ℓ and its derivative in λ; all counted by hgbench.core.linearization.jacobian
    where they are performed.
    """

    Options = ReparamOptions

    def __init__(self, name, map="diag"):
        super().__init__(name)
        self.map = map
        self.role = f"reparam_{map}"

    needs = {"inner_loss": "use estimator=exact or precond", "dense": "use a matrix-free estimator (cg, gmres, fp, neumann, itd)"}

    def planned_cost(self, d, p, pairs, step_bytes, itemsize):
        return dense_cost(25, d, pairs, itemsize)

    def reparameterization(self, bound, x_c):
        """(φ, z_c): the map z ↦ x as a function of (z, λ), and z at the current iterate."""
        if self.map == "exp":
            sign = torch.sign(x_c)
            return (lambda z, l: sign * torch.exp(z)), torch.log(torch.abs(x_c))
        lam, tally = bound.lam, bound.tally
        # jacrev rather than grad: the same ∇ℓ, rounded as the committed results were (grad differs at 1e-17)
        gradient = torch.func.jacrev(bound.inner_loss, argnums=0)
        if self.map == "opt":
            hessian = lambda l: jacobian(lambda x: gradient(x, l), x_c, tally)[1]
            hess, dhess = jacobian(hessian, lam, tally)
            inv = torch.linalg.inv(hess)
            lam_c = lam.detach()
            # H(λ)⁻¹ linearized at λ, H⁻¹ − H⁻¹(∂H·(l − λ))H⁻¹: the first λ-derivatives the estimate needs, exactly
            return (lambda z, l: (inv - inv @ (dhess @ (l - lam)) @ inv) @ gradient(z, lam_c) + x_c), x_c - inv @ gradient(x_c, lam_c)
        diagonal = lambda l: torch.diagonal(jacobian(lambda x: gradient(x, l), x_c, tally)[1])
        scale, dscale = jacobian(diagonal, lam, tally)
        # The estimate needs φ and its first λ-derivatives at λ only: P's linearization at λ
        # gives both exactly, without differentiating a Hessian again inside every product.
        return (lambda z, l: z / (scale + dscale @ (l - lam))), scale * x_c

    def at(self, bound, w):
        lam = bound.lam
        phi, z = self.reparameterization(bound, w)
        inner = lambda z, l: bound.inner_loss(phi(z, l), l)
        outer = lambda z, l: bound.outer(phi(z, l), l)
        grad_z = torch.func.grad(inner, argnums=0)
        _, hess = jacobian(lambda z: grad_z(z, lam), z, bound.tally)
        outer_z, outer_lam = torch.func.grad(outer, argnums=(0, 1))(z, lam)
        u = solve_or_nan(hess, outer_z)
        return outer_lam - vjp(lambda l: grad_z(z, l), lam, u, bound.tally)

    def estimate(self, bound, pairs):
        return point_estimates(bound, pairs, self.at)
