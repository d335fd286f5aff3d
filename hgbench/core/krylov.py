"""The Krylov solvers, one implementation each: CG and GMRES as generators of their iterates.

Each generator runs from v₀ = 0 and yields (v_k, ρ_k) for k = 1, 2, …: the iterate after k
products with the matrix and a measure of its residual. It has no stopping test, so every
iterate is observable: the AID estimators (hgbench.estimators.cg, cg_normal, precond, gmres)
read v_k at each k of their grids (``iterates`` drops ρ_k), and the matrix-free reference
(hgbench.core.reference) drives the same generators to a tolerance with ``solve_cg`` and
``solve_gmres``, whose stopping tests (tolerance, at most ``maxiter`` products, GMRES restarts)
read ρ_k outside the iteration.
"""

from __future__ import annotations

from itertools import islice
from typing import Callable, Iterator

import torch

Matvec = Callable[[torch.Tensor], torch.Tensor]


def iterates(steps: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[torch.Tensor]:
    """v_1, v_2, … of a solver's (v_k, ρ_k): what the estimators read."""
    return (v for v, _ in steps)


def conjugate_gradient(matvec: Matvec, b: torch.Tensor, batched: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """CG (Hestenes & Stiefel 1952) on A v = b, A symmetric positive definite, from v₀ = 0.

        α_k = r_kᵀr_k / p_kᵀA p_k,  v_{k+1} = v_k + α_k p_k,  r_{k+1} = r_k − α_k A p_k,
        β_k = r_{k+1}ᵀr_{k+1} / r_kᵀr_k,  p_{k+1} = r_{k+1} + β_k p_k,   r₀ = p₀ = b

    Yields (v_k, ρ_k), ρ_k = r_kᵀr_k, the recursively updated residual's squared norm (equal to
    ‖b − A v_k‖² in exact arithmetic), using exactly one product with A per iterate. There is no
    stopping test: once the residual is zero the step sizes are set to zero and the iterate stays
    put (what exact CG does after convergence); NaN or inf propagate, so divergence stays visible.
    The recursive residual counts as zero (ρ_k = 0) once ‖r_k‖ ≤ ε‖b‖ (ε the dtype's machine
    epsilon): below that it is round-off and carries no information, and iterated further it
    underflows to denormals whose ratios blow the iterate up (seen after ~1,700 steps on
    breast_cancer). In exact arithmetic v_d is the solution for A of size d; in floating point,
    loss of orthogonality delays this by a few steps once κ(A) reaches the hundreds.

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
        yield v, rr


def gmres(matvec: Matvec, b: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """GMRES (Saad & Schultz 1986) on M v = b from v₀ = 0, no restart (``solve_gmres`` restarts).

    v_k minimizes ‖b − M v‖ over the Krylov space span{b, M b, …, M^{k−1} b}: Arnoldi with
    modified Gram–Schmidt, applied twice, builds an orthonormal basis Q_k and the Hessenberg H_k
    (M Q_k = Q_{k+1} H_k), and v_k = Q_k y_k with y_k = argmin ‖β e₁ − H_k y‖ (β = ‖b‖), solved
    anew at each k. Yields (v_k, ρ_k), ρ_k = ‖β e₁ − H_k y_k‖ (= ‖b − M v_k‖ in exact
    arithmetic). One product with M per iterate; memory k vectors. In exact arithmetic v_d is
    the solution for M of size d; in floating point the second Gram–Schmidt pass keeps the basis
    orthonormal to round-off, so v_k stays there past k = d.

    If the Krylov space stops growing (h_{k+1,k} = 0) v_k is the exact solution (for invertible
    M): ρ_k = 0, and later iterates repeat it. b = 0 yields v_k = 0, ρ_k = 0. No other stopping
    test, so NaN or inf propagate.
    """
    beta = torch.linalg.vector_norm(b)
    if beta == 0:
        while True:
            yield torch.zeros_like(b), beta
    basis = [b / beta]
    columns: list[torch.Tensor] = []
    zero = torch.zeros((), dtype=b.dtype, device=b.device)
    v, rho = torch.zeros_like(b), beta  # v₀ and its residual ‖b‖
    while True:
        j = len(columns)
        if len(basis) == j:  # breakdown: the solution lies in the current space
            yield v, rho
            continue
        z = matvec(basis[j])
        h = torch.zeros(j + 2, dtype=b.dtype, device=b.device)
        for _ in range(2):  # Gram–Schmidt twice: the basis stays orthonormal to round-off
            for i, q in enumerate(basis):
                overlap = q @ z
                h[i] += overlap
                z = z - overlap * q
        h[j + 1] = torch.linalg.vector_norm(z)
        columns.append(h)
        if h[j + 1] > 0:
            basis.append(z / h[j + 1])
        hess = torch.zeros(j + 2, j + 1, dtype=b.dtype, device=b.device)
        for col, values in enumerate(columns):
            hess[: col + 2, col] = values
        rhs = torch.zeros(j + 2, 1, dtype=b.dtype, device=b.device)
        rhs[0] = beta
        # QR (gels): H_k has full column rank. The CPU default (gelsy) was seen to return
        # different last bits for the same input (161 of 210 repeated calls), which made GMRES rows
        # irreproducible.
        y = torch.linalg.lstsq(hess, rhs, driver="gels").solution
        v = torch.stack(basis[: j + 1], dim=1) @ y[:, 0]
        rho = zero if h[j + 1] == 0 else torch.linalg.vector_norm(rhs - hess @ y)
        yield v, rho


def solve_cg(matvec: Matvec, b: torch.Tensor, tol: float, maxiter: int) -> tuple[torch.Tensor, int]:
    """x with A x ≈ b, A symmetric positive definite: ``conjugate_gradient``'s iterates until
    the recursive residual ‖r_k‖ ≤ tol·‖b‖ (ρ_k ≤ (tol·‖b‖)²) or ``maxiter`` products; x = 0 if
    b already meets it. Returns (x, products). tol > ε: CG's own round-off cut (ρ_k = 0 once
    ‖r_k‖ ≤ ε‖b‖) then stops nothing this test would not."""
    goal = (tol * torch.linalg.vector_norm(b)) ** 2
    x, used = torch.zeros_like(b), 0
    if b @ b <= goal:
        return x, 0
    for used, (x, rho) in enumerate(islice(conjugate_gradient(matvec, b), maxiter), start=1):
        if rho <= goal:
            break
    return x, used


def solve_gmres(matvec: Matvec, b: torch.Tensor, tol: float, maxiter: int, restart: int) -> tuple[torch.Tensor, int]:
    """x with M x ≈ b by GMRES(m), m = ``restart`` (Saad & Schultz 1986): cycles of at most m
    ``gmres`` iterates, each cycle on the residual system M δ = b − M x from δ₀ = 0 (one more
    product for the true residual), x ← x + δ at the cycle's end; until the least-squares residual
    ρ_k ≤ tol·‖b‖ (or the Krylov space stops growing, ρ_k = 0), the true residual at a restart
    is ≤ tol·‖b‖, or ``maxiter`` products (the restarts' residual products not counted).
    Returns (x, products)."""
    x, done = torch.zeros_like(b), 0
    goal = tol * torch.linalg.vector_norm(b)
    while done < maxiter:
        r = b - matvec(x) if done else b
        beta = torch.linalg.vector_norm(r)
        if beta <= goal or beta == 0:
            break
        for delta, rho in islice(gmres(matvec, r), min(restart, maxiter - done)):
            done += 1
            if rho <= goal:
                break
        x = x + delta
        if rho <= goal:
            break
    return x, done
