"""torchdeq (Geng & Kolter, "TorchDEQ: A Library for Deep Equilibrium Models", arXiv:2310.18605,
2023) driven as its documentation shows, as estimators of hgbench's grid: adapters, needing the
optional extra ``pip install 'hgbench[torchdeq]'``. Its two backward modes:

- ``TorchdeqImplicit`` (``get_deq(ift=True, b_solver=..., b_max_iter=k, b_tol=tol)``): torchdeq's
  output is z = Φ(w_t) (its "1-step grad for df/dθ" applied to the solver's state) and its backward
  solves g = Jᵀg + ∇₁E(z) by its solver (J = ∂₁Φ at z), then backpropagates g through Φ(w_t):

      ĝ(t, k) = ∇₂E(w_{t+1}) + ∂₂Φ(w_t)ᵀ v_k,   v_k ≈ (I − Jᵀ)⁻¹ ∇₁E(w_{t+1})

  the implicit function theorem (AID, Grazzi et al. 2020, Alg. 2) at w_{t+1}. ``solver``:
  ``fixed_point_iter`` (v_k = Σ_{i<k} (Jᵀ)ⁱ∇₁E: hgbench's fp, role fp), ``anderson`` or
  ``broyden`` (no estimator of hgbench's computes these: role empty). torchdeq stops its solver
  early once ‖v_{i+1} − v_i‖ < tol (its default b_tol = 1e-6, absolute); ``tol=0``: k steps.
  Its fixed_point_iter returns the iterate of smallest step, not the last (the same for a
  contraction whose steps shrink).
- ``TorchdeqPhantom`` (``get_deq(grad=k, tau=τ)``; torchdeq's default is grad=1, ift=False, the
  "1-step gradient" of Geng et al. 2021 and Fung et al. 2022, JFB): k more steps
  z ← τΦ(z) + (1 − τ)z from the detached w_t, backpropagated through those k steps only. With
  τ = 1 that is hgbench's truncated ITD at (t + k, k) (Shaban et al. 2019; role itd_trunc),
  an approximation of ∇f that ignores all but k − 1 terms of the Neumann series: on the scalar
  z = z/2 + x the default gives dz/dx = 1 where the exact value is 2. k ≥ 1 (torchdeq refuses
  grad = 0): grid points with k = 0 give no row.

The t inner steps are hgbench's (one trajectory, as every estimator's), handed to torchdeq as its
initial state with f_max_iter = 0, so that rows differ from hgbench's own only by torchdeq's
backward. w is passed as a batch of one, (1, dim w): torchdeq's stopping norms are per sample.
Cost: time and Φ evaluations (hgbench's counted Φ, called by torchdeq); its VJPs are taken
inside torchdeq where they cannot be counted, so ``n_vjp`` is empty.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from hgbench.estimators.base import Estimate, Estimator
from hgbench.estimators.libraries import load
from hgbench.options import Choice, EstimatorOptions, Number, option


def load_torchdeq():
    """The torchdeq module, or one ValueError line saying how to install it."""
    return load("torchdeq", "torchdeq")


def _deq_gradient(bound, deq, w_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(∇λ E(z, λ) by torchdeq's backward, z) for the DEQ layer ``deq`` started at w_t: z is
    torchdeq's output (a function of λ through Φ)."""
    lam = bound.lam.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        z_out, _ = deq(lambda z: bound.phi(z[0], lam).unsqueeze(0), w_t.detach().unsqueeze(0))
        z = z_out[-1][0]
        (grad,) = torch.autograd.grad(bound.outer(z, lam), lam, allow_unused=True, materialize_grads=True)
    return grad.detach(), z.detach()


@dataclass
class TorchdeqImplicitOptions(EstimatorOptions):
    solver: str = option(
        Choice(("fixed_point_iter", "anderson", "broyden")), "torchdeq's backward solver (b_solver), k iterations at most (b_max_iter)"
    )
    tol: float = option(
        Number(0), "torchdeq's early stop of the backward solver, ‖v_{i+1} − v_i‖ < tol (b_tol; its default 1e-6; 0: k iterations)"
    )


class TorchdeqImplicit(Estimator):
    """torchdeq's implicit differentiation (ift=True) with its fixed_point_iter, anderson or broyden backward solver."""

    Options = TorchdeqImplicitOptions

    batchable = False  # torchdeq's backward is an autograd.Function on the tape

    def __init__(self, name: str, solver: str = "fixed_point_iter", tol: float = 1e-6):
        super().__init__(name)
        self.solver, self.tol = solver, float(tol)
        self.role = "fp" if solver == "fixed_point_iter" else None

    def check_ready(self) -> None:
        load_torchdeq()

    def estimate(self, bound, pairs):
        torchdeq = load_torchdeq()
        ks_at = {}
        for t, k in pairs:
            ks_at.setdefault(t, set()).add(k)
        for t, w_t, inner_cost in bound.iterates(ks_at):
            for k in sorted(ks_at[t]):
                meter = bound.meter()
                with meter:
                    deq = torchdeq.get_deq(ift=True, f_max_iter=0, b_solver=self.solver, b_max_iter=k, b_tol=self.tol)
                    grad, z = _deq_gradient(bound, deq, w_t)
                yield Estimate(t, k, grad, z, replace(inner_cost + meter.cost, n_vjp=None, saved_bytes=None))


@dataclass
class TorchdeqPhantomOptions(EstimatorOptions):
    tau: float = option(Number(0, 1, low_open=True), "torchdeq's damping τ of the phantom steps z ← τΦ(z) + (1 − τ)z (its default 1)")


class TorchdeqPhantom(Estimator):
    """torchdeq's phantom gradient: k steps from w_t backpropagated (grad=k; k = 1 is its default 1-step gradient)."""

    Options = TorchdeqPhantomOptions

    batchable = False

    def __init__(self, name: str, tau: float = 1.0):
        super().__init__(name)
        self.tau = float(tau)
        self.role = "itd_trunc" if self.tau == 1.0 else None  # τ < 1: a damped map, none of the papers' estimators

    def check_ready(self) -> None:
        load_torchdeq()

    def estimate(self, bound, pairs):
        torchdeq = load_torchdeq()
        ks_at = {}
        for t, k in pairs:
            if k >= 1:  # torchdeq asserts grad >= 1
                ks_at.setdefault(t, set()).add(k)
        for t, w_t, inner_cost in bound.iterates(ks_at):
            for k in sorted(ks_at[t]):
                meter = bound.meter()
                with meter:
                    deq = torchdeq.get_deq(f_max_iter=0, grad=k, tau=self.tau)
                    grad, z = _deq_gradient(bound, deq, w_t)
                yield Estimate(t, k, grad, z, replace(inner_cost + meter.cost, n_vjp=None, saved_bytes=None))
