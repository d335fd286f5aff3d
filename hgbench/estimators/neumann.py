"""AID with the truncated Neumann series."""

from __future__ import annotations

from hgbench.estimators.aid import AID


class Neumann(AID):
    """AID-Neumann: v_k = Σ_{i=0..k} (Jᵀ)ⁱ∇₁E, the truncated Neumann series; neumann(k) = fp(k + 1).

    The series of (I − Jᵀ)⁻¹∇₁E cut after the term i = k (Lorraine, Vicol, Duvenaud 2020;
    Grazzi et al. 2020, §3).

    Index convention: k counts the Jᵀ-products (as for every solver here), so neumann(k) holds
    k + 1 terms and equals fp(k + 1) — the same vector, reached with one product less, because
    FP's first step multiplies v₀ = 0. neumann(0) = ∇₁E is the Jacobian-free estimate (jfb).
    Converges like q^(k+1) when ‖J‖ ≤ q < 1; needs no symmetry. One VJP per step.
    """

    role = "neumann"

    def initial(self, b):
        return b

    def solver(self, lin, b):
        term, v = b, b
        while True:
            term = lin.jt(term)
            v = v + term
            yield v
