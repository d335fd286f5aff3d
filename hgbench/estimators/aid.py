"""Approximate implicit differentiation (AID), the shared part of every linear solver.

    ĝ(t, k) = ∇₂E(w_t, λ) + ∂₂Φ(w_t, λ)ᵀ v_k,   v_k ≈ solution of (I − Jᵀ) v = ∇₁E(w_t, λ),
    J = ∂₁Φ(w_t, λ)

(Grazzi et al. 2020, Alg. 2; Pedregosa 2016). The t inner steps for all t of a grid come from one
trajectory, and for each t the k-curve comes from one run of the solver: v_k is read off the
iterates at every k of the grid. A solver is a generator of its iterates v_1, v_2, … from
v_0 = 0 that uses a fixed number of products per iterate (one with Jᵀ; CG on the normal
equations also one with J) and never stops early.

Warm start (the bound problem's ``v0``, e.g. the previous outer step's v_k): by default the
solver runs on the residual system

    (I − Jᵀ) δ = r₀,   r₀ = b − (I − Jᵀ) v₀,   v_k = v₀ + δ_k

which is exactly how CG and GMRES start from a nonzero v₀ (the Krylov space of r₀; Saad 2003,
§6.5, §6.11), costs one more VJP (for r₀) and makes neumann from v₀ the Neumann series of δ;
a solver with a cheaper native start overrides ``warm`` (the fixed-point iteration simply
iterates from v₀). With v₀ = None nothing changes: the solver starts from 0.
"""

from __future__ import annotations

from typing import Iterator

import torch

from hgbench.core.linearization import Linearization
from hgbench.estimators.base import Estimate, Estimator


class AID(Estimator):
    """Base class: subclasses give ``solver(lin, b)`` yielding v_1, v_2, … for (I − Jᵀ) v = b,
    with the products of ``lin`` (hgbench.core.linearization: ``lin.jt(v)`` = Jᵀv, and
    ``lin.j(u)`` = J u for solvers that need J itself, e.g. CG on the normal equations).

    Cost of the point (t, k): t Φ steps, one Φ evaluation to build the VJP graph at w_t, the
    solver's products for k steps and one VJP for ∂₂Φᵀv_k.
    """

    def solver(self, lin: Linearization, b: torch.Tensor) -> Iterator[torch.Tensor]:
        raise NotImplementedError

    def point(self, bound, w: torch.Tensor) -> torch.Tensor:
        """Where the implicit formula is evaluated, given the inner iterate w_t (w_t itself here;
        hgbench.estimators.precond takes one preconditioned step first)."""
        return w

    solver_start = True

    def initial(self, b: torch.Tensor) -> torch.Tensor:
        """v at k = 0, before any solver step (0 here; the Neumann series starts at b)."""
        return torch.zeros_like(b)

    def warm(self, lin: Linearization, b: torch.Tensor, v0: torch.Tensor) -> tuple[torch.Tensor, Iterator[torch.Tensor]]:
        """(v at k = 0, the iterates v_1, v_2, …) from the start v₀: the solver on the residual
        system (module docstring), one VJP for r₀ = b − v₀ + Jᵀv₀."""
        r0 = b - v0 + lin.jt(v0)
        return v0 + self.initial(r0), (v0 + delta for delta in self.solver(lin, r0))

    def estimate(self, bound, pairs):
        ks_at = {}
        for t, k in pairs:
            ks_at.setdefault(t, set()).add(k)
        for t, w, inner_cost in bound.iterates(ks_at):
            solve = bound.meter()
            with solve:
                x = self.point(bound, w)
                grad_w, grad_lam = bound.outer_grads(x)
                lin = bound.linearize(x)
                if bound.v0 is None:
                    v, iterates = self.initial(grad_w), self.solver(lin, grad_w)
                else:
                    v, iterates = self.warm(lin, grad_w, bound.v0)
            done = 0
            for k in sorted(ks_at[t]):
                with solve:
                    while done < k:
                        v = next(iterates)
                        done += 1
                final = bound.meter()
                with final:  # part of this k's cost, not of the larger k's
                    grad = grad_lam + lin.lam_t(v)
                yield Estimate(t, k, grad, w, inner_cost + solve.cost + final.cost, v)
