"""torchopt (Ren et al., "TorchOpt: An Efficient Library for Differentiable Optimization", JMLR
2023) driven as its documentation shows, as estimators of hgbench's grid: adapters, needing the
optional extra ``pip install 'hgbench[torchopt]'``. Its implicit differentiation
(``TorchoptImplicit``, below) and its unrolled differentiation (``TorchoptUnrolled``, at the end).

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

from dataclasses import dataclass, replace

import torch

from hgbench.estimators.base import Estimate, Estimator
from hgbench.estimators.libraries import gradient_step_size, load
from hgbench.options import Choice, EstimatorOptions, Number, option


@dataclass
class TorchoptImplicitOptions(EstimatorOptions):
    solver: str = option(
        Choice(("cg", "neumann")), "torchopt's linear solve: cg (solve_cg) or neumann (solve_inv with ns=True), k iterations at most"
    )
    rtol: float = option(Number(0), "cg only: torchopt's early stop ‖r‖ ≤ rtol·‖b‖ (its default 1e-5; 0: exactly k iterations)")


def load_torchopt():
    """The torchopt module, or one ValueError line saying how to install it."""
    return load("torchopt", "torchopt")


class TorchoptImplicit(Estimator):
    """torchopt's implicit differentiation (custom_root) with its CG or Neumann solve, k iterations at most."""

    Options = TorchoptImplicitOptions

    batchable = False  # torchopt's custom_root is an autograd.Function on the tape

    def __init__(self, name: str, solver: str = "cg", rtol: float = 1e-5):
        super().__init__(name)
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


class TorchoptUnrolled(Estimator):
    """torchopt's unrolled differentiation: t steps of its functional SGD on ℓ (step = Φ's α), backpropagated to λ.

    As torchopt's documentation shows for differentiable optimization with its functional API:
    ``opt = torchopt.sgd(lr=α)``; each step ``updates, state = opt.update(∇₁ℓ(w, λ), state,
    inplace=False)``, ``w = torchopt.apply_updates(w, updates, inplace=False)``, the gradient taken
    with create_graph=True; then ∇λ E(w_t, λ) by autograd through the t steps: ITD (Grazzi et al.
    2020, Alg. 1) by torchopt's steps instead of Φ. It needs ℓ and a Φ that is a gradient step on
    it with a constant step, Φ(w, λ) = w − α∇₁ℓ(w, λ): α is read off at w₀ as
    ⟨w₀ − Φ(w₀), ∇₁ℓ(w₀)⟩/‖∇₁ℓ(w₀)‖² (least squares), and a Φ that is not such a step there
    (residual above 1e-8 relative) is refused. Cost: time and the Φ evaluation reading α;
    torchopt's products are not counted (n_vjp empty).
    """

    role = "itd"
    batchable = False
    needs = {"inner_loss": "torchopt's unrolled SGD steps on ℓ; use estimator=itd for Φ alone"}

    def check_ready(self) -> None:
        load_torchopt()

    def estimate(self, bound, pairs):
        torchopt = load_torchopt()
        ts = sorted({t for t, _ in pairs})
        alpha = gradient_step_size(bound, "torchopt_unrolled")
        w0 = bound.w0.detach()
        for t in ts:
            meter = bound.meter()
            with meter, torch.enable_grad():
                lam = bound.lam.detach().clone().requires_grad_(True)
                opt = torchopt.sgd(lr=alpha)
                w = w0.clone().requires_grad_(True)
                state = opt.init(w)
                for _ in range(t):
                    (g,) = torch.autograd.grad(bound.inner_loss(w, lam), w, create_graph=True)
                    updates, state = opt.update(g, state, inplace=False)
                    w = torchopt.apply_updates(w, updates, inplace=False)
                value = bound.outer(w, lam)
                (grad,) = torch.autograd.grad(value, lam, allow_unused=True, materialize_grads=True)
            cost = replace(meter.cost, n_phi=1, n_vjp=None, saved_bytes=None)
            yield Estimate(t, None, grad.detach(), w.detach(), cost)
