"""AID with GMRES, a Krylov method for non-symmetric systems."""

from __future__ import annotations

from hgbench.core.krylov import gmres, iterates
from hgbench.estimators.aid import AID
from hgbench.estimators.base import GridShape


class GMRES(AID):
    """AID-GMRES: k GMRES steps on (I − Jᵀ) v = ∇₁E from v₀ = 0; any J, one VJP per step.

    Residuals never increase with k; memory O(k·dim w). Python-side branching on the data
    (breakdown, b = 0) keeps it from vectorizing over λ draws. The solver is
    hgbench.core.krylov.gmres, the one the matrix-free reference runs.
    """

    role = "gmres"

    batchable = False

    def planned_cost(self, d, p, pairs, step_bytes, itemsize):
        """AID's cost, with the Krylov basis of max k + 4 vectors in place of 4."""
        bytes_, units, _ = super().planned_cost(d, p, pairs, step_bytes, itemsize)
        basis = GridShape.of(pairs).big_k + 4
        return bytes_ + (basis - 4) * d * itemsize, units, f"{basis} vectors of {d} and one VJP graph"

    def solver(self, lin, b):
        return iterates(gmres(lambda v: v - lin.jt(v), b))
