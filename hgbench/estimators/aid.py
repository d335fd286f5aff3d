"""Approximate implicit differentiation (AID), the shared part of every linear solver.

    ĝ(t, k) = ∇₂E(w_t, λ) + ∂₂Φ(w_t, λ)ᵀ v_k,   v_k ≈ solution of (I − Jᵀ) v = ∇₁E(w_t, λ),
    J = ∂₁Φ(w_t, λ)

(Grazzi et al. 2020, Alg. 2; Pedregosa 2016). The t inner steps for all t of a grid come from one
trajectory, and for each t the k-curve comes from one run of the solver: v_k is read off the
iterates at every k of the grid. A solver is a generator of its iterates v_1, v_2, … from
v_0 = 0 that uses a fixed number of products per iterate (one with Jᵀ; CG on the normal
equations also one with J) and never stops early.
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

    def initial(self, b: torch.Tensor) -> torch.Tensor:
        """v at k = 0, before any solver step (0 here; the Neumann series starts at b)."""
        return torch.zeros_like(b)

    def estimate(self, bound, pairs):
        ks_at = {}
        for t, k in pairs:
            ks_at.setdefault(t, set()).add(k)
        outer_grads = torch.func.grad(bound.outer, argnums=(0, 1))
        for t, w, inner_cost in bound.iterates(ks_at):
            solve = bound.meter()
            with solve:
                x = self.point(bound, w)
                grad_w, grad_lam = outer_grads(x, bound.lam)
                lin = bound.linearize(x)
                iterates = self.solver(lin, grad_w)
            v, done = self.initial(grad_w), 0
            for k in sorted(ks_at[t]):
                with solve:
                    while done < k:
                        v = next(iterates)
                        done += 1
                final = bound.meter()
                with final:  # part of this k's cost, not of the larger k's
                    grad = grad_lam + lin.lam_t(v)
                yield Estimate(t, k, grad, w, inner_cost + solve.cost + final.cost)
