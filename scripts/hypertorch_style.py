"""What a user of hypertorch (Grazzi et al.'s library, prolearner/hypertorch) writes for one
error curve, as its examples use it: plain torch, no hgbench code and no hypertorch code (it is
not on the package index; this is the same pattern written from the math). The anchor
"hypertorch-style script" of scripts/bench.py.

    python scripts/hypertorch_style.py --estimator cg [--n-lambdas 10] [--ts 10 20 ... 100] [--seed 0]

The problem, its data, λ draws, step size α and float64 reference are scripts/typical_user.py's
(hgbench's default logistic problem). What differs from that careful script is how the user
gets the derivatives: the inner gradient ∇₁ℓ comes from autograd (a backward pass through ℓ at
every step, as an inner optimizer on a loss does), and every grid point is computed from
scratch —

    inner   t steps of gradient descent w ← Φ(w, λ) = w − α ∇₁ℓ(w, λ) from w₀ = 0,
            ∇₁ℓ by torch.autograd.grad of ℓ;
    itd     the same t steps kept on the tape (∇₁ℓ with create_graph=True), then
            d/dλ E(w_t) by backpropagation through the whole unrolled loop (Franceschi et al. 2017);
    fp, cg  a fresh run of the t steps, then at w_t: Φ(w_t, λ) evaluated once with its graph
            (∇₁ℓ with create_graph=True), Jᵀu = ∂₁Φᵀu and ∂₂Φᵀv by autograd through it (so each
            Jᵀu is a double backward through ℓ), v from k steps of the fixed-point iteration
            v ← Jᵀv + ∇E(w_t) (Grazzi et al. 2020, Alg. 2) or of conjugate gradient on
            (I − Jᵀ)v = ∇E(w_t) (Pedregosa 2016), and ĝ = ∂₂Φᵀv (E does not depend on λ).

Prints the mean relative error per t and the time taken.
"""

from __future__ import annotations

import torch

import typical_user  # scripts/typical_user.py: the problem, the reference and the two linear solvers


def autograd_phi(p, w, lam, create_graph):
    """Φ(w, λ) = w − α ∇₁ℓ(w, λ), ∇₁ℓ by autograd. ``w`` must require grad; with
    ``create_graph`` the result keeps the graph of ∇₁ℓ (so that it can be differentiated again)."""
    (grad,) = torch.autograd.grad(p.inner_loss(w, lam), w, create_graph=create_graph)
    return w - p.alpha * grad


def gradient_descent(p, lam, t):
    """w_t: t steps of Φ from w₀ = 0, no tape kept between steps."""
    w = torch.zeros(p.x.shape[1], dtype=torch.float64)
    for _ in range(t):
        with torch.enable_grad():
            w = autograd_phi(p, w.detach().requires_grad_(), lam, create_graph=False)
    return w.detach()


def itd(p, lam, t, k):
    """Backpropagation through the t steps: d/dλ E(w_t(λ))."""
    lam = lam.clone().requires_grad_()
    w = torch.zeros(p.x.shape[1], dtype=torch.float64, requires_grad=True)
    for _ in range(t):
        w = autograd_phi(p, w, lam, create_graph=True)
    return torch.autograd.grad(p.outer(w), lam)[0]


def aid(solve):
    """ĝ = ∂₂Φ(w_t, λ)ᵀ v,  v = solve(u ↦ Jᵀu, ∇E(w_t), k), all products by autograd."""

    def hypergrad(p, lam, t, k):
        w = gradient_descent(p, lam, t).requires_grad_()
        lam = lam.clone().requires_grad_()
        (grad_e,) = torch.autograd.grad(p.outer(w), w)
        out = autograd_phi(p, w, lam, create_graph=True)
        v = solve(lambda u: torch.autograd.grad(out, w, u, retain_graph=True)[0], grad_e, k)
        return torch.autograd.grad(out, lam, v)[0]

    return hypergrad


HYPERGRADS = {"itd": itd, "fp": aid(typical_user.fixed_point), "cg": aid(typical_user.conjugate_gradient)}


def curve(data, lams, estimator, ts, with_reference=True):
    """{(draw, t): (ĝ, relative error or None)}: a fresh inner run and hypergradient per point, t = k."""
    return typical_user.curve(data, lams, estimator, ts, with_reference, hypergrads=HYPERGRADS)


if __name__ == "__main__":
    typical_user.main(__doc__, HYPERGRADS, "cg")
