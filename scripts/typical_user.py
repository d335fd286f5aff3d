"""What a typical user of a hypergradient library writes by hand for one error curve: plain
torch, no hgbench code (the yardstick of scripts/bench.py, measures (a) and (b)).

    python scripts/typical_user.py --estimator cg [--n-lambdas 10] [--ts 10 20 ... 100] [--seed 0]

The problem is hgbench's default logistic one, rebuilt from its math (Grazzi et al. 2020, §5):
X ∈ ℝ^{n×d}, b ∈ {−1, +1}^n from x ~ N(0, I), b = sign(x·w₀ + 0.1 ε), split half/half into
train and validation;

    ℓ(w, λ) = (1/n) Σᵢ log(1 + exp(−bᵢ xᵢᵀw)) + ½ Σⱼ exp(λⱼ) wⱼ²,   E(w) = validation cross-entropy,
    Φ(w, λ) = w − α ∇₁ℓ(w, λ),  α = 2/(L + μ),  L = ‖X‖₂²/(4n) + max e^λ,  μ = min e^λ,

λ ~ U[−5, −1]^d. For every λ draw: the reference ∇f(λ) = −∂₂∇₁ℓᵀ H⁻¹ ∇E(w*) (implicit function
theorem; ∂₂∇₁ℓ = diag(e^λ ⊙ w*)) with w* by Newton's method on ℓ (Hessian by autograd) and a
dense solve; then for every t = k of the grid, from scratch as the user calls a library once per
point: t steps of Φ from w₀ = 0 and one hypergradient —

    itd  backpropagation through the t steps (Franceschi et al. 2017);
    fp   k steps of v ← Jᵀv + ∇E(w_t), ĝ = ∂₂Φᵀv (Grazzi et al. 2020, Alg. 2), J = ∂₁Φ(w_t, λ);
    cg   k steps of conjugate gradient on (I − Jᵀ)v = ∇E(w_t), ĝ = ∂₂Φᵀv (Pedregosa 2016);

Jᵀ- and ∂₂Φᵀ-products by autograd through one evaluation of Φ(w_t, λ), as in hypertorch
(Grazzi et al.'s library). Prints the mean relative error per t and the time taken.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def logistic_data(seed=0, n_samples=1000, n_features=20, label_noise=0.1):
    """(X, b, X_v, b_v): the synthetic data, float64."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_samples, n_features, generator=gen, dtype=torch.float64)
    w_true = torch.randn(n_features, generator=gen, dtype=torch.float64)
    noise = torch.randn(n_samples, generator=gen, dtype=torch.float64)
    b = torch.where(x @ w_true + label_noise * noise > 0, 1.0, -1.0).to(torch.float64)
    half = n_samples // 2
    return x[:half], b[:half], x[half:], b[half:]


def lambdas(n, d, seed=0, low=-5.0, high=-1.0):
    u = torch.rand(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return low + (high - low) * u


class Logistic:
    """ℓ, E and Φ at one λ (α computed once from λ and held constant)."""

    def __init__(self, x, b, x_val, b_val, lam):
        self.x, self.b, self.x_val, self.b_val = x, b, x_val, b_val
        penalty = lam.exp()
        big = torch.linalg.matrix_norm(x, ord=2) ** 2 / (4 * x.shape[0]) + penalty.max()
        self.alpha = 2.0 / (big + penalty.min())

    def inner_loss(self, w, lam):
        return F.softplus(-self.b * (self.x @ w)).mean() + 0.5 * (lam.exp() * w.square()).sum()

    def inner_grad(self, w, lam):
        coef = -self.b * torch.sigmoid(-self.b * (self.x @ w)) / self.x.shape[0]
        return self.x.T @ coef + lam.exp() * w

    def outer(self, w):
        return F.softplus(-self.b_val * (self.x_val @ w)).mean()

    def phi(self, w, lam):
        return w - self.alpha * self.inner_grad(w, lam)


def reference(p, lam):
    """∇f(λ) by Newton's method for w* (autograd Hessian, stop when ‖∇ℓ‖ stops decreasing) and
    a dense solve: ∇f = −(e^λ ⊙ w*) ⊙ H⁻¹ ∇E(w*)."""
    w = torch.zeros(p.x.shape[1], dtype=torch.float64)
    g = p.inner_grad(w, lam)
    for _ in range(100):
        hess = torch.autograd.functional.hessian(lambda u: p.inner_loss(u, lam), w)
        w_new = w - torch.linalg.solve(hess, g)
        g_new = p.inner_grad(w_new, lam)
        if not torch.linalg.vector_norm(g_new) < torch.linalg.vector_norm(g):
            break
        w, g = w_new, g_new
    hess = torch.autograd.functional.hessian(lambda u: p.inner_loss(u, lam), w)
    w_req = w.clone().requires_grad_()
    (grad_e,) = torch.autograd.grad(p.outer(w_req), w_req)
    return -(lam.exp() * w) * torch.linalg.solve(hess, grad_e)


def inner_loop(p, lam, t, taped=False):
    w = torch.zeros(p.x.shape[1], dtype=torch.float64, requires_grad=taped)
    for _ in range(t):
        w = p.phi(w, lam)
    return w


def itd(p, lam, t, k):
    lam = lam.clone().requires_grad_()
    w = inner_loop(p, lam, t, taped=True)
    return torch.autograd.grad(p.outer(w), lam)[0]


def fixed_point(jt, b, k):
    v = torch.zeros_like(b)
    for _ in range(k):
        v = jt(v) + b
    return v


def conjugate_gradient(jt, b, k):
    """k CG steps on (I − Jᵀ)v = b from v = 0 (hypertorch's loop)."""
    v, r = torch.zeros_like(b), b.clone()
    p = r.clone()
    rr = r @ r
    for _ in range(k):
        ap = p - jt(p)
        alpha = rr / (p @ ap)
        v = v + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return v


def aid(solve):
    def hypergrad(p, lam, t, k):
        w = inner_loop(p, lam, t).detach().requires_grad_()
        lam = lam.clone().requires_grad_()
        (grad_e,) = torch.autograd.grad(p.outer(w), w)
        out = p.phi(w, lam)
        v = solve(lambda u: torch.autograd.grad(out, w, u, retain_graph=True)[0], grad_e, k)
        return torch.autograd.grad(out, lam, v)[0]

    return hypergrad


HYPERGRADS = {"itd": itd, "fp": aid(fixed_point), "cg": aid(conjugate_gradient)}


def curve(data, lams, estimator, ts, with_reference=True, hypergrads=HYPERGRADS):
    """{(draw, t): (ĝ, relative error or None)}: one inner loop and one hypergradient per point,
    ``hypergrads[estimator]`` (this script's, or another anchor's: scripts/hypertorch_style.py)."""
    out = {}
    for i, lam in enumerate(lams):
        p = Logistic(*data, lam)
        ref = reference(p, lam) if with_reference else None
        for t in ts:
            g = hypergrads[estimator](p, lam, t, t)
            out[i, t] = g, None if ref is None else (torch.linalg.vector_norm(g - ref) / torch.linalg.vector_norm(ref)).item()
    return out


def main(doc=__doc__, hypergrads=HYPERGRADS, default="cg"):
    """The command line of this script, and of the other anchors with their ``hypergrads``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--estimator", choices=sorted(hypergrads), default=default)
    parser.add_argument("--n-lambdas", type=int, default=10)
    parser.add_argument("--ts", type=int, nargs="+", default=list(range(10, 101, 10)))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    data = logistic_data(args.seed)
    points = curve(data, lambdas(args.n_lambdas, data[0].shape[1], args.seed), args.estimator, args.ts, hypergrads=hypergrads)
    for t in args.ts:
        errs = [points[i, t][1] for i in range(args.n_lambdas)]
        print(f"t = k = {t:4d}: mean relative error {sum(errs) / len(errs):.3e}")
    print(f"time: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
