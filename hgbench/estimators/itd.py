"""Iterative differentiation (ITD): the exact gradient of f_t(λ) = E(w_t(λ), λ), where
w_t(λ) = Φ(w_{t−1}(λ), λ) from a start w_0 that does not depend on λ.

Both modes compute the same number ∇f_t(λ); only cost differs (Grazzi et al. 2020, §2;
Franceschi et al. 2017).
"""

from __future__ import annotations

import torch

from hgbench.core.cost import taped
from hgbench.estimators.base import Estimate, Estimator, GridShape, tape_text


class ITDReverse(Estimator):
    """ITD by reverse mode (backprop through t steps of Φ); memory O(t·dim w).

    One forward trajectory (taped) serves every t of the grid, but each t needs its own backward
    sweep (its objective E(w_t) differs): t VJPs through Φ for the point t. The tape is plain
    autograd (its saved bytes are observable).

    Batched λ draws (``bound.functional``, under torch.func.vmap): the tape does not vectorize,
    so each t is computed from scratch as torch.func.grad of λ ↦ E(w_t(λ), λ) through its t steps,
    the same number ∇f_t(λ) with the same counts (t Φ steps, t VJPs; what the tape's point t
    costs, forward included) and the time of that point alone, amortized over the draws; bytes
    saved under torch.func are not observable (None).
    """

    role = "itd"

    def planned_cost(self, d, p, pairs, step_bytes, itemsize):
        """The tape of the longest trajectory, T·S bytes; T steps and 2t units per t's sweep."""
        grid = GridShape.of(pairs)
        return grid.big_t * step_bytes, grid.big_t + sum(2 * t for t in grid.ts), f"itd's tape: {tape_text(grid.big_t, step_bytes)}"

    def estimate(self, bound, pairs):
        if bound.functional:
            yield from _functional(bound, sorted({t for t, _ in pairs}))
            return
        lam_var = bound.lam.detach().requires_grad_(True)
        with taped(bound.tally) as mark:
            points = list(bound.iterates({t for t, _ in pairs}, lam=lam_var, mark=mark))
        for t, w, forward_cost in points:
            backward = bound.meter()
            with backward:
                grad = _backward(bound, w, lam_var)
            yield Estimate(t, None, grad, w.detach(), forward_cost + backward.cost)


def _functional(bound, ts):
    """ITD's estimates at each t of ``ts``, each from scratch by torch.func.grad through its t
    steps (vectorizes over λ draws); t VJPs counted per point, as the tape's hooks count them."""
    for t in ts:
        point = bound.meter()
        with point:

            def f_t(lam):
                ((_, w, _),) = bound.iterates([t], lam=lam)
                return bound.outer(w, lam), w

            grad, w = torch.func.grad(f_t, has_aux=True)(bound.lam)
            bound.tally.n_vjp += t
            bound.tally.opaque = True
        yield Estimate(t, None, grad, w, point.cost)


def _backward(bound, w, lam_var):
    """dE(w, λ)/dλ through the tape that made w (kept for the next call)."""
    with torch.enable_grad():
        value = bound.outer(w, lam_var)
        if not value.requires_grad:  # E(w_0, λ) may not involve λ at all
            return torch.zeros_like(lam_var)
        (grad,) = torch.autograd.grad(value, lam_var, retain_graph=True, allow_unused=True, materialize_grads=True)
    return grad.detach()


class ITDTruncated(Estimator):
    """Truncated ITD: reverse mode through only the last k of the t steps.

    Shaban, Cheng, Hatch, Boots, AISTATS 2019; w_{t−k} is treated as a constant:

        ĝ(t, k) = ∇₂E(w_t) + Σ_{i=t−k+1..t} ∂₂Φ(w_{i−1})ᵀ J_{i+1}ᵀ ⋯ J_tᵀ ∇₁E(w_t),  J_i = ∂₁Φ(w_{i−1})

    k ≥ t is ITD (itd); k = 0 keeps only ∇₂E. Memory O(k·dim w). On a quadratic inner problem
    at convergence it equals AID-FP with k steps (J and ∂₂Φ are then the same at every step).
    One untaped trajectory gives every start w_{t−k}; each (t, k) then tapes its own k steps and
    backpropagates. Cost of (t, k): t Φ steps (t − k untaped, min(k, t) taped) and min(k, t) VJPs.
    """

    role = "itd_trunc"

    batchable = False

    def planned_cost(self, d, p, pairs, step_bytes, itemsize):
        """The tape of min(max k, T) steps; per (t, k): t steps and 2·min(k, t) units."""
        grid = GridShape.of(pairs)
        depth = min(grid.big_k, grid.big_t)
        return depth * step_bytes, sum(t + 2 * min(k, t) for t, k in pairs), f"the tape of {tape_text(depth, step_bytes)}"

    def estimate(self, bound, pairs):
        start_of = {(t, k): max(t - k, 0) for t, k in pairs}
        starts = {s: (w, cost) for s, w, cost in bound.iterates(set(start_of.values()))}
        for (t, k), s in sorted(start_of.items()):
            w, cost = starts[s]
            tape = bound.meter()
            with tape:
                with taped(bound.tally) as mark:  # the k steps of Φ; E's graph is not counted (hgbench.core.cost)
                    lam_var = bound.lam.detach().requires_grad_(True)
                    for _ in range(t - s):
                        w = mark(bound.phi(w, lam_var))
                grad = _backward(bound, w, lam_var)
            yield Estimate(t, k, grad, w.detach(), cost + tape.cost)


class ITDForward(Estimator):
    """ITD by forward mode: the same ∇f_t as itd, with memory independent of t.

    Pushes the Jacobian Z_i = dw_i/dλ (dim w × dim λ) along with the iterates,
    Z_i = ∂₁Φ Z_{i−1} + ∂₂Φ (dim λ JVPs per step, batched by vmap), ∇f_t = Z_tᵀ∇₁E + ∇₂E.
    One forward pass yields ∇f_t for every t of the grid; nothing is saved for backward.
    """

    role = "itd"
    needs = {"dense": "its dim w × dim λ Jacobian dw/dλ costs dim λ JVPs per step; use estimator=itd (reverse mode)"}

    def planned_cost(self, d, p, pairs, step_bytes, itemsize):
        """dw/dλ, its update and the tangent basis, (3·d·p + p²)·B bytes; T·(1 + p) units."""
        return (3 * d * p + p * p) * itemsize, GridShape.of(pairs).big_t * (1 + p), f"dw/dλ: {d} × {p} entries, pushed along"

    def estimate(self, bound, pairs):
        lam = bound.lam
        eye = torch.eye(lam.numel(), dtype=lam.dtype, device=lam.device)
        steps = bound.meter()
        w, done = bound.w0, 0
        jac = torch.zeros(w.numel(), lam.numel(), dtype=w.dtype, device=w.device)
        for t in sorted({t for t, _ in pairs}):
            with steps:
                while done < t:
                    w, jac = bound.push(w, jac, eye)  # one Φ evaluation, dim λ JVPs
                    done += 1
            final = bound.meter()
            with final:
                grad_w, grad_lam = bound.outer_grads(w)
                grad = jac.T @ grad_w + grad_lam
            yield Estimate(t, None, grad, w, steps.cost + final.cost)
