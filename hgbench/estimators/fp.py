"""AID with the fixed-point (Richardson) iteration."""

from __future__ import annotations

import torch

from hgbench.estimators.aid import AID


class FixedPoint(AID):
    """AID-FP: k steps of v ← Jᵀv + ∇₁E from v₀ = 0, i.e. v_k = Σ_{i<k} (Jᵀ)ⁱ∇₁E.

    Converges like q^k when ‖J‖ ≤ q < 1; needs no symmetry. One VJP per step. From a warm start
    v₀ it iterates from v₀ (no residual to form): v_k = (Jᵀ)ᵏv₀ + Σ_{i<k} (Jᵀ)ⁱ∇₁E.
    """

    role = "fp"

    def solver(self, lin, b, v0=None):
        v = torch.zeros_like(b) if v0 is None else v0
        while True:
            v = lin.jt(v) + b
            yield v

    def warm(self, lin, b, v0):
        return v0, self.solver(lin, b, v0)
