"""AID with the conjugate gradient method."""

from __future__ import annotations

import torch

from hgbench.estimators.aid import AID


def conjugate_gradient(matvec, b, batched: bool):
    """CG (Hestenes–Stiefel) on A v = b, A symmetric positive definite, from v₀ = 0.

    Yields v_1, v_2, … using exactly one product with A per iterate. There is no stopping test:
    once the residual is zero the step sizes are set to zero and the iterate stays put (what
    exact CG does after convergence); NaN or inf propagate, so divergence stays visible. The
    recursively updated residual counts as zero once ‖r‖ ≤ ε‖b‖ (ε the dtype's machine epsilon):
    below that it is round-off and carries no information, and iterated further it underflows
    to denormals whose ratios blow the iterate up (seen after ~1,700 steps on breast_cancer).
    In exact arithmetic v_d is the solution for A of size d; in floating point, loss of
    orthogonality delays this by a few steps once κ(A) reaches the hundreds.

    The three zero tests (pᵀAp = 0, rᵀr ≤ round-off, rᵀr = 0 before the update) are Python
    branches on the scalars' values, read once per product (pᵀAp, rᵀr): no tensor operation
    of their own, on tensors of one element whose per-operation overhead dominates a step on
    small problems. ``batched`` (under torch.func.vmap, where each draw has its own scalars and
    no value can be read), and off the CPU (where a read waits for the device), select them
    elementwise with torch.where instead; both give the same numbers, bit for bit.
    """
    zero = torch.zeros((), dtype=b.dtype, device=b.device)
    elementwise = batched or b.device.type != "cpu"
    v = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = r @ r
    round_off = (torch.finfo(b.dtype).eps ** 2) * rr
    if not elementwise:  # the values, exact as Python floats (float32 and float64 alike)
        rr_value, round_off = rr.item(), round_off.item()
    while True:
        ap = matvec(p)
        pap = p @ ap
        if elementwise:
            alpha = torch.where(pap == 0, zero, rr / pap)
        else:
            alpha = zero if pap.item() == 0 else rr / pap
        v = v + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        if elementwise:
            rr_new = torch.where(rr_new <= round_off, zero, rr_new)
            beta = torch.where(rr == 0, zero, rr_new / rr)
        else:
            new_value = rr_new.item()
            if new_value <= round_off:
                rr_new, new_value = zero, 0.0
            beta = zero if rr_value == 0 else rr_new / rr
            rr_value = new_value
        p = r + beta * p
        rr = rr_new
        yield v


class ConjugateGradient(AID):
    """AID-CG: k CG steps on (I − Jᵀ) v = ∇₁E from v₀ = 0; needs I − J symmetric positive definite.

    Error ∝ ((√κ − 1)/(√κ + 1))^k, κ = cond(I − J) (Grazzi et al. 2020, Thm. 3). One VJP per step.
    """

    role = "cg"

    needs = {"symmetric": "use estimator=fp (or another solver for non-symmetric systems: cg_normal, gmres)"}

    def solver(self, lin, b):
        return conjugate_gradient(lambda v: v - lin.jt(v), b, batched=lin.functional)
