"""torchopt's implicit differentiation (Ren et al., "TorchOpt: An Efficient Library for
Differentiable Optimization", JMLR 2023) driven as its documentation shows, as an estimator of
hgbench's grid: an adapter, needing the optional extra ``pip install 'hgbench[torchopt]'``.

    ĝ(t, k) = the gradient torchopt's ``custom_root`` gives at w_t, with the optimality
    condition F(w, λ) = w − Φ(w, λ) = 0 and its linear solve capped at k iterations

torchopt solves (∂₁F)ᵀ v = ∇₁E, i.e. (I − Jᵀ) v = ∇₁E, and returns ∇₂E + ∂₂Φᵀ v (the implicit
function theorem at w_t, as AID: Grazzi et al. 2020, Alg. 2). ``solver``: ``cg``
(``torchopt.linear_solve.solve_cg(maxiter=k, rtol=rtol)``: CG, stopping early once
‖r‖ ≤ rtol·‖b‖, torchopt's default rtol 1e-5) or ``neumann`` (``solve_inv(ns=True, maxiter=k)``:
v = Σ_{i≤k} (Jᵀ)ⁱ b, hgbench's neumann). The t inner steps are hgbench's (one trajectory, as
every estimator's), so rows differ from hgbench's own cg and neumann only by torchopt's solve.

Cost: time and Φ evaluations are measured (hgbench's counted Φ, called by F); the VJPs happen
inside torchopt (functorch.vjp) where they cannot be counted, so ``n_vjp`` is left empty.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from hgbench.estimators.base import Estimate, Estimator

SOLVERS = ("cg", "neumann")


def load_torchopt():
    """The torchopt module, or one ValueError line saying how to install it."""
    try:
        import torchopt
    except ImportError as err:
        raise ValueError(f"this estimator needs torchopt, which is not installed ({err}): pip install 'hgbench[torchopt]'") from err
    return torchopt


class TorchoptImplicit(Estimator):
    """torchopt's implicit differentiation (custom_root) with its CG or Neumann solve, k iterations at most."""

    batchable = False  # torchopt's custom_root is an autograd.Function on the tape

    def __init__(self, name: str, solver: str = "cg", rtol: float = 1e-5):
        super().__init__(name)
        if solver not in SOLVERS:
            raise ValueError(f"solver={solver!r} is not one of {', '.join(SOLVERS)}")
        self.solver, self.rtol = solver, float(rtol)
        self.role = solver  # the papers' method it computes: AID-CG, or the Neumann series
        self.needs = {"symmetric": "torchopt's CG needs I − ∂₁Φ symmetric; use solver=neumann"} if solver == "cg" else {}

    def check_ready(self) -> None:
        load_torchopt()

    def linear_solve(self, torchopt, k: int):
        if self.solver == "cg":
            return torchopt.linear_solve.solve_cg(maxiter=k, rtol=self.rtol)
        return torchopt.linear_solve.solve_inv(ns=True, maxiter=k)

    def estimate(self, bound, pairs):
        """One custom_root call per (t, k): its forward returns w_t (found by hgbench's inner
        steps), its backward solves the adjoint system by torchopt's solver."""
        torchopt = load_torchopt()
        ks_at = {}
        for t, k in pairs:
            ks_at.setdefault(t, set()).add(k)
        for t, w_t, inner_cost in bound.iterates(ks_at):
            w_t = w_t.detach()
            for k in sorted(ks_at[t]):
                meter = bound.meter()
                with meter, torch.enable_grad():
                    solve = torchopt.diff.implicit.custom_root(
                        lambda w, lam: w - bound.phi(w, lam), argnums=1, solve=self.linear_solve(torchopt, k)
                    )(lambda w, lam: w_t)
                    lam = bound.lam.detach().clone().requires_grad_(True)
                    w = solve(w_t, lam)
                    (grad,) = torch.autograd.grad(bound.outer(w, lam), lam)
                cost = inner_cost + meter.cost
                yield Estimate(t, k, grad.detach(), w_t, replace(cost, n_vjp=None, saved_bytes=None))
