"""What a user of torchopt (Ren et al., "TorchOpt: An Efficient Library for Differentiable
Optimization", JMLR 2023; on the package index) writes for one error curve, as its documentation
shows: no hgbench code. The anchor "torchopt" of scripts/bench.py.

    python scripts/torchopt_user.py --estimator implicit_cg [--n-lambdas 10] [--ts 10 20 ... 100] [--seed 0]

The problem, its data, λ draws, step size α and float64 reference are scripts/typical_user.py's
(hgbench's default logistic problem). Per grid point, from scratch (t = k):

    unrolled      t steps of torchopt's functional SGD (``torchopt.sgd(lr=α)``, ``update`` and
                  ``apply_updates`` with inplace=False) on ℓ, ∇₁ℓ by autograd with create_graph=True,
                  then d/dλ E(w_t) through the t steps (ITD);
    implicit_cg   t steps of gradient descent (∇₁ℓ by autograd, no tape), then
    implicit_neumann  ``torchopt.diff.implicit.custom_root`` with the optimality condition
                  F(w, λ) = α ∇₁ℓ(w, λ) = w − Φ(w, λ) = 0 at w_t (∇₁ℓ by torch.func.grad:
                  torchopt differentiates F under functorch, as its documentation's examples do), so that
                  torchopt solves (∂₁F)ᵀv = (I − Jᵀ)v = ∇E(w_t) with ``solve_cg(maxiter=k)`` (CG,
                  as hgbench's cg; rtol = RTOL so that it does not stop before the k steps the
                  others take) or ``solve_inv(ns=True, maxiter=k)`` (the Neumann series
                  Σ_{i≤k}(Jᵀ)ⁱ∇E, as hgbench's neumann); ĝ = ∂₂Φᵀv (AID).

Prints the mean relative error per t and the time taken.
"""

from __future__ import annotations

import torch
import torchopt

import typical_user  # scripts/typical_user.py: the problem and its reference
from hypertorch_style import gradient_descent  # the same inner run: gradient descent with an autograd ∇₁ℓ

RTOL = 1e-15  # torchopt's CG stops once ‖r‖ ≤ rtol·‖b‖ (default 1e-5): here only at round-off, as hgbench's cg


def inner_gradient(p, w, lam):
    """∇₁ℓ(w, λ) by autograd, differentiable (create_graph)."""
    return torch.autograd.grad(p.inner_loss(w, lam), w, create_graph=True)[0]


def unrolled(p, lam, t, k):
    lam = lam.clone().requires_grad_()
    opt = torchopt.sgd(lr=p.alpha.item())
    w = torch.zeros(p.x.shape[1], dtype=torch.float64, requires_grad=True)
    state = opt.init(w)
    for _ in range(t):
        updates, state = opt.update(inner_gradient(p, w, lam), state, inplace=False)
        w = torchopt.apply_updates(w, updates, inplace=False)
    return torch.autograd.grad(p.outer(w), lam)[0]


def implicit(solver):
    def hypergrad(p, lam, t, k):
        w_t = gradient_descent(p, lam, t)

        def optimality(w, lam):  # torchopt differentiates it with functorch: ∇₁ℓ by torch.func.grad, as its docs do
            return p.alpha * torch.func.grad(p.inner_loss)(w, lam)

        @torchopt.diff.implicit.custom_root(optimality, argnums=1, solve=solver(k))
        def solve(w, lam):
            return w_t

        lam = lam.clone().requires_grad_()
        return torch.autograd.grad(p.outer(solve(w_t, lam)), lam)[0]

    return hypergrad


HYPERGRADS = {
    "unrolled": unrolled,
    "implicit_cg": implicit(lambda k: torchopt.linear_solve.solve_cg(maxiter=k, rtol=RTOL)),
    "implicit_neumann": implicit(lambda k: torchopt.linear_solve.solve_inv(ns=True, maxiter=k)),
}


def curve(data, lams, estimator, ts, with_reference=True):
    """{(draw, t): (ĝ, relative error or None)}: a fresh inner run and hypergradient per point, t = k."""
    return typical_user.curve(data, lams, estimator, ts, with_reference, hypergrads=HYPERGRADS)


if __name__ == "__main__":
    typical_user.main(__doc__, HYPERGRADS, "implicit_cg")
