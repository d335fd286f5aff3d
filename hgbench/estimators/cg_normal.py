"""AID with the conjugate gradient method on the normal equations (for a non-symmetric ∂₁Φ)."""

from __future__ import annotations

from hgbench.core.krylov import conjugate_gradient, iterates
from hgbench.estimators.aid import AID


class NormalCG(AID):
    """AID-CG on the normal equations: k CG steps on (I − J)(I − Jᵀ) v = (I − J) ∇₁E from v₀ = 0.

    The system M v = b, M = I − Jᵀ, has the same solution as MᵀM v = Mᵀb, whose matrix is
    symmetric positive definite whenever M is invertible, so CG applies to any J (Grazzi et al.
    2020, DEQ experiment). The price: cond(MᵀM) = cond(M)², so the rate is
    ((κ − 1)/(κ + 1))^k with κ = cond(I − J). Cost: one JVP for the right-hand side, then one
    VJP and one JVP per step (each forward-mode JVP also evaluates Φ once).
    """

    role = "cg_normal"

    def solver(self, lin, b):
        m = lambda v: v - lin.jt(v)  # (I − Jᵀ) v
        m_t = lambda u: u - lin.j(u)  # (I − J) u
        return iterates(conjugate_gradient(lambda v: m_t(m(v)), m_t(b), batched=lin.functional))
