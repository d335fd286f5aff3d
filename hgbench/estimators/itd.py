"""Iterative differentiation (ITD): the exact gradient of f_t(λ) = E(w_t(λ), λ), where
w_t(λ) = Φ(w_{t−1}(λ), λ) from a start w_0 that does not depend on λ.

Both modes compute the same number ∇f_t(λ); only cost differs (Grazzi et al. 2020, §2;
Franceschi et al. 2017).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from hgbench.cost import Meter, record, taped
from hgbench.estimators.base import Estimate, Estimator


class ITDReverse(Estimator):
    """ITD by reverse mode (backprop through t steps of Φ); memory O(t·dim w).

    One forward trajectory (taped) serves every t of the grid, but each t needs its own backward
    sweep (its objective E(w_t) differs): t VJPs through Φ for the point t. The tape is plain
    autograd (its saved bytes are observable), so it does not vectorize over λ draws.
    """

    batchable = False

    def estimate(self, problem, lam, pairs):
        bound = problem.bind(lam)
        lam_var = lam.detach().requires_grad_(True)
        forward = Meter(lam.device)
        points = []
        with taped() as mark:
            w, done = bound.w0, 0
            for t in sorted({t for t, _ in pairs}):
                with forward:
                    while done < t:
                        w = mark(bound.phi(w, lam_var))
                        done += 1
                points.append((t, w, replace(forward.cost)))
        for t, w, forward_cost in points:
            backward = Meter(lam.device)
            with backward, torch.enable_grad():
                value = bound.outer(w, lam_var)
                if value.requires_grad:
                    (grad,) = torch.autograd.grad(value, lam_var, retain_graph=True, allow_unused=True, materialize_grads=True)
                else:  # E(w_0, λ) may not involve λ at all
                    grad = torch.zeros_like(lam_var)
            yield Estimate(t, None, grad.detach(), w.detach(), forward_cost + backward.cost)


class ITDForward(Estimator):
    """ITD by forward mode: the same ∇f_t as itd, with memory independent of t.

    Pushes the Jacobian Z_i = dw_i/dλ (dim w × dim λ) along with the iterates,
    Z_i = ∂₁Φ Z_{i−1} + ∂₂Φ (dim λ JVPs per step, batched by vmap), ∇f_t = Z_tᵀ∇₁E + ∇₂E.
    One forward pass yields ∇f_t for every t of the grid; nothing is saved for backward.
    """

    def estimate(self, problem, lam, pairs):
        bound = problem.bind(lam)
        eye = torch.eye(lam.numel(), dtype=lam.dtype, device=lam.device)

        def push(w, dw, dlam):
            return torch.func.jvp(lambda u, l: bound.phi(u, l), (w, lam), (dw, dlam))

        step = torch.func.vmap(push, in_dims=(None, 1, 0), out_dims=(0, 1))
        outer_grads = torch.func.grad(bound.outer, argnums=(0, 1))
        steps = Meter(lam.device)
        w, done = bound.w0, 0
        jac = torch.zeros(w.numel(), lam.numel(), dtype=w.dtype, device=w.device)
        for t in sorted({t for t, _ in pairs}):
            with steps:
                while done < t:
                    w_batch, jac = step(w, jac, eye)  # one Φ evaluation, dim λ JVPs
                    record(n_jvp=lam.numel())
                    w = w_batch[0]
                    done += 1
            final = Meter(lam.device)
            with final:
                grad_w, grad_lam = outer_grads(w, lam)
                grad = jac.T @ grad_w + grad_lam
            yield Estimate(t, None, grad, w, steps.cost + final.cost)
