"""Approximate implicit differentiation (AID), the shared part of every linear solver.

    ĝ(t, k) = ∇₂E(w_t, λ) + ∂₂Φ(w_t, λ)ᵀ v_k,   v_k ≈ solution of (I − Jᵀ) v = ∇₁E(w_t, λ),
    J = ∂₁Φ(w_t, λ)

(Grazzi et al. 2020, Alg. 2; Pedregosa 2016). The t inner steps for all t of a grid come from one
trajectory, and for each t the k-curve comes from one run of the solver: v_k is read off the
iterates at every k of the grid. A solver is a generator of its iterates v_1, v_2, … from
v_0 = 0 that uses exactly one product with Jᵀ per iterate and never stops early. Solvers for a
non-symmetric J that also need products with J itself (e.g. CG on the normal equations) set
``uses_jv = True`` and receive ``jv(u) = J u`` as a third argument.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from hgbench.core.cost import Meter, record, vjp
from hgbench.estimators.base import Estimate, Estimator, inner_iterates


class AID(Estimator):
    """Base class: subclasses give ``solver(jtv, b)``, jtv(v) = Jᵀv, yielding v_1, v_2, …

    Cost of the point (t, k): t Φ steps, one Φ evaluation to build the VJP graph at w_t, k VJPs
    (solver) and one VJP for ∂₂Φᵀv_k.
    """

    uses_jv: bool = False  # the solver also takes jv(u) = J u (recorded as one JVP per call)

    def solver(self, jtv: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor) -> Iterator[torch.Tensor]:
        raise NotImplementedError

    def point(self, bound, w: torch.Tensor) -> torch.Tensor:
        """Where the implicit formula is evaluated, given the inner iterate w_t (w_t itself here;
        hgbench.estimators.precond takes one preconditioned step first)."""
        return w

    def initial(self, b: torch.Tensor) -> torch.Tensor:
        """v at k = 0, before any solver step (0 here; the Neumann series starts at b)."""
        return torch.zeros_like(b)

    def estimate(self, problem, lam, pairs):
        bound = problem.bind(lam)
        ks_at = {}
        for t, k in pairs:
            ks_at.setdefault(t, set()).add(k)
        outer_grads = torch.func.grad(bound.outer, argnums=(0, 1))
        for t, w, inner_cost in inner_iterates(bound, ks_at):
            solve = Meter(lam.device)
            with solve:
                x = self.point(bound, w)
                grad_w, grad_lam = outer_grads(x, lam)
                _, pullback = vjp(bound.phi, x, lam)
                jtv = lambda v: pullback(v, 0)  # noqa: E731
                iterates = self.solver(jtv, grad_w, jacobian_product(bound, x, lam)) if self.uses_jv else self.solver(jtv, grad_w)
            v, done = self.initial(grad_w), 0
            for k in sorted(ks_at[t]):
                with solve:
                    while done < k:
                        v = next(iterates)
                        done += 1
                final = Meter(lam.device)
                with final:  # part of this k's cost, not of the larger k's
                    grad = grad_lam + pullback(v, 1)
                yield Estimate(t, k, grad, w, inner_cost + solve.cost + final.cost)


def jacobian_product(bound, w: torch.Tensor, lam: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """jv(u) = ∂₁Φ(w, λ) u by forward mode (torch.func.jvp, so it composes with vmap). Forward
    mode evaluates Φ(w, λ) alongside the tangent, so each call records one JVP and one Φ."""

    def jv(u: torch.Tensor) -> torch.Tensor:
        record(n_jvp=1)
        return torch.func.jvp(lambda x: bound.phi(x, lam), (w,), (u,))[1]

    return jv
