"""AID with the conjugate gradient method."""

from __future__ import annotations

from hgbench.core.krylov import conjugate_gradient, iterates
from hgbench.estimators.aid import AID


class ConjugateGradient(AID):
    """AID-CG: k CG steps on (I − Jᵀ) v = ∇₁E from v₀ = 0; needs I − J symmetric positive definite.

    Error ∝ ((√κ − 1)/(√κ + 1))^k, κ = cond(I − J) (Grazzi et al. 2020, Thm. 3). One VJP per step.
    The solver is hgbench.core.krylov.conjugate_gradient, the one the matrix-free reference runs.
    """

    role = "cg"

    needs = {"symmetric": "use estimator=fp (or another solver for non-symmetric systems: cg_normal, gmres)"}

    def solver(self, lin, b):
        return iterates(conjugate_gradient(lambda v: v - lin.jt(v), b, batched=lin.functional))
