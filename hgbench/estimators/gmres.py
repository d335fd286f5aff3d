"""AID with GMRES, a Krylov method for non-symmetric systems."""

from __future__ import annotations

import torch

from hgbench.estimators.aid import AID
from hgbench.estimators.base import GridShape


def gmres(matvec, b):
    """GMRES (Saad & Schultz 1986) on M v = b from v₀ = 0, no restart.

    v_k minimizes ‖b − M v‖ over the Krylov space span{b, M b, …, M^{k−1} b}: Arnoldi with
    modified Gram–Schmidt, applied twice, builds an orthonormal basis Q_k and the Hessenberg
    H_k (M Q_k = Q_{k+1} H_k), and v_k = Q_k y_k with y_k = argmin ‖β e₁ − H_k y‖ (β = ‖b‖). One product with M
    per iterate; memory k vectors. If the Krylov space stops growing (h_{k+1,k} = 0) v_k is the
    exact solution (for invertible M), and later iterates repeat it; no other stopping test, so
    NaN or inf propagate. In exact arithmetic v_d is the solution for M of size d; in floating
    point the second Gram–Schmidt pass keeps the basis orthonormal past d, so v_k stays there.
    """
    beta = torch.linalg.vector_norm(b)
    if beta == 0:
        while True:
            yield torch.zeros_like(b)
    basis = [b / beta]
    columns: list[torch.Tensor] = []
    v = torch.zeros_like(b)
    while True:
        j = len(columns)
        if len(basis) == j:  # breakdown: the solution lies in the current space
            yield v
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
        y = torch.linalg.lstsq(hess, rhs).solution[:, 0]
        v = torch.stack(basis[: j + 1], dim=1) @ y
        yield v


class GMRES(AID):
    """AID-GMRES: k GMRES steps on (I − Jᵀ) v = ∇₁E from v₀ = 0; any J, one VJP per step.

    Residuals never increase with k; memory O(k·dim w). Python-side branching on the data
    (breakdown, b = 0) keeps it from vectorizing over λ draws.
    """

    role = "gmres"

    batchable = False

    def planned_cost(self, d, p, pairs, step_bytes, itemsize):
        """AID's cost, with the Krylov basis of max k + 4 vectors in place of 4."""
        bytes_, units, _ = super().planned_cost(d, p, pairs, step_bytes, itemsize)
        basis = GridShape.of(pairs).big_k + 4
        return bytes_ + (basis - 4) * d * itemsize, units, f"{basis} vectors of {d} and one VJP graph"

    def solver(self, lin, b):
        return gmres(lambda v: v - lin.jt(v), b)
