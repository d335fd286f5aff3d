"""AID with the conjugate gradient method."""

from __future__ import annotations

import torch

from hgbench.estimators.aid import AID


def conjugate_gradient(matvec, b):
    """CG (Hestenes–Stiefel) on A v = b, A symmetric positive definite, from v₀ = 0.

    Yields v_1, v_2, … using exactly one product with A per iterate. There is no stopping test:
    once the residual is zero the step sizes are set to zero and the iterate stays put (what
    exact CG does after convergence); NaN or inf propagate, so divergence stays visible. The
    recursively updated residual counts as zero once ‖r‖ ≤ ε‖b‖ (ε the dtype's machine epsilon):
    below that it is round-off and carries no information, and iterated further it underflows
    to denormals whose ratios blow the iterate up (seen after ~1,700 steps on breast_cancer).
    In exact arithmetic v_d is the solution for A of size d; in floating point, loss of
    orthogonality delays this by a few steps once κ(A) reaches the hundreds.
    """
    v = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = r @ r
    zero = torch.zeros((), dtype=b.dtype, device=b.device)
    round_off = (torch.finfo(b.dtype).eps ** 2) * rr
    while True:
        ap = matvec(p)
        pap = p @ ap
        alpha = torch.where(pap == 0, zero, rr / pap)
        v = v + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        rr_new = torch.where(rr_new <= round_off, zero, rr_new)
        p = r + torch.where(rr == 0, zero, rr_new / rr) * p
        rr = rr_new
        yield v


class ConjugateGradient(AID):
    """AID-CG: k CG steps on (I − Jᵀ) v = ∇₁E from v₀ = 0; needs I − J symmetric positive definite.

    Error ∝ ((√κ − 1)/(√κ + 1))^k, κ = cond(I − J) (Grazzi et al. 2020, Thm. 3). One VJP per step.
    """

    role = "cg"

    needs = {"symmetric": "use estimator=fp (or another solver for non-symmetric systems: cg_normal, gmres)"}

    def solver(self, lin, b):
        return conjugate_gradient(lambda v: v - lin.jt(v), b)
