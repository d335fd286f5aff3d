"""AID with the fixed-point (Richardson) iteration."""

from __future__ import annotations

import torch

from hgbench.estimators.aid import AID


class FixedPoint(AID):
    """AID-FP: k steps of v ← Jᵀv + ∇₁E from v₀ = 0, i.e. v_k = Σ_{i<k} (Jᵀ)ⁱ∇₁E.

    Converges like q^k when ‖J‖ ≤ q < 1; needs no symmetry. One VJP per step.
    """

    role = "fp"

    def solver(self, lin, b):
        v = torch.zeros_like(b)
        while True:
            v = lin.jt(v) + b
            yield v
