"""The constants of Grazzi et al.'s bounds (hgbench.problems.bounds) against brute force: the
Lipschitz constants against difference quotients at sampled points of the ball around w(λ), and
the bounds against the actual errors of ITD, AID-FP and AID-CG computed here from scratch
(unrolled iterations differentiated by torch.func, a hand-written CG, the reference by a dense
solve of the implicit system), all in float64."""

import math

import pytest
import torch
from torch.func import grad, jacrev

from hgbench.problems.bounds import bound, computable, constants
from hgbench.problems.kernel_ridge import KernelRidge
from hgbench.problems.logistic import Logistic
from hgbench.problems.meta_learning import MetaLearning
from hgbench.problems.ridge import Ridge

PROBLEMS = {
    "ridge": lambda: Ridge("ridge", seed=0, n_train=30, n_val=20, n_features=5, cond=20.0, noise=0.1, lam_low=-3.0, lam_high=0.0),
    "kernel_ridge": lambda: KernelRidge("kernel_ridge", 0, -2.0, 0.0, -0.5, 0.5, data="synthetic", n_samples=30, n_features=3),
    "meta_learning": lambda: MetaLearning("meta_learning", 0, 3, 3, 2, 4, 0.5, 0.1, 0.5, -1.0, 1.0),
}


def _draw(problem, seed=0):
    return problem.sample_lambdas(1, torch.Generator().manual_seed(seed))[0]


def _ball(w, radius, n, gen):
    """n random points of the ball of the given radius around w."""
    u = torch.randn(n, w.numel(), generator=gen, dtype=w.dtype)
    u = u / u.norm(dim=1, keepdim=True) * radius * torch.rand(n, 1, generator=gen, dtype=w.dtype) ** (1 / w.numel())
    return w + u


@pytest.mark.parametrize("name", PROBLEMS)
def test_lipschitz_constants_bound_sampled_difference_quotients(name):
    problem = PROBLEMS[name]()
    lam = _draw(problem)
    c = constants(problem, lam)
    phi = problem.bound_phi(lam)
    w = problem.solve_inner(lam)
    points = _ball(w, c["D"], 30, torch.Generator().manual_seed(1))
    d2phi = [jacrev(phi, 1)(v, lam) for v in points]
    d2e = [grad(problem.outer, 1)(v, lam) for v in points]
    d1e = [grad(problem.outer, 0)(v, lam) for v in points]
    worst = {"nu2": 0.0, "mu2": 0.0, "mu1": 0.0}
    for i in range(len(points)):
        for j in range(i):
            gap = float((points[i] - points[j]).norm())
            worst["nu2"] = max(worst["nu2"], float(torch.linalg.matrix_norm(d2phi[i] - d2phi[j], ord=2)) / gap)
            worst["mu2"] = max(worst["mu2"], float((d2e[i] - d2e[j]).norm()) / gap)
            worst["mu1"] = max(worst["mu1"], float((d1e[i] - d1e[j]).norm()) / gap)
    for key, value in worst.items():
        assert value <= c[key] * (1 + 1e-9) + 1e-12, key
    assert max(float(torch.linalg.matrix_norm(b, ord=2)) for b in d2phi) <= c["L_phi"] * (1 + 1e-9)
    a = jacrev(phi, 0)(points[0], lam)  # Φ affine in w: the same Jacobian everywhere
    assert float(torch.linalg.matrix_norm(a, ord=2)) == pytest.approx(c["q"], rel=1e-10)
    assert c["L_E"] == pytest.approx(float(grad(problem.outer, 0)(w, lam).norm()), rel=1e-12)
    assert worst["mu1"] >= 0.3 * c["mu1"]  # the sampled quotients come near the constant: it is not vacuous


def test_ridge_constants_match_their_closed_forms():
    """On ridge ∂₂Φ(w) = −α diag(exp λ ∘ w): ν₂ = α·max exp λ; E does not depend on λ: μ₂ = 0."""
    problem = PROBLEMS["ridge"]()
    lam = _draw(problem)
    c = constants(problem, lam)
    alpha = float(problem.consts(lam)["alpha"])
    assert c["nu2"] == pytest.approx(alpha * float(torch.exp(lam).max()), rel=1e-10)
    assert c["mu2"] == 0.0
    big, small = problem.curvature_bounds(lam)
    assert c["q"] == pytest.approx(float((big - small) / (big + small)), rel=1e-10)
    assert c["kappa"] == pytest.approx(float(big / small), rel=1e-10)


def test_biased_regularization_has_c2_zero():
    """∂₂Φ = αγI does not depend on w: ν₂ = 0, so c₂ = 0 and the FP and ITD bounds coincide at k = t."""
    problem = PROBLEMS["meta_learning"]()
    c = constants(problem, _draw(problem))
    assert c["nu2"] == 0.0 and c["c2"] == 0.0
    assert bound("fp", 7, 7, c) == pytest.approx(bound("itd", 7, 7, c), rel=1e-12)


def _errors(problem, lam, t, k):
    """|ĝ − ∇f| of ITD (t steps), AID-FP and AID-CG (t inner, k solver steps), from scratch."""
    phi = problem.bound_phi(lam)
    w_star = problem.solve_inner(lam)
    a = jacrev(phi, 0)(w_star, lam)
    eye = torch.eye(w_star.numel(), dtype=torch.float64)
    v = torch.linalg.solve(eye - a.T, grad(problem.outer, 0)(w_star, lam))
    exact = grad(problem.outer, 1)(w_star, lam) + jacrev(phi, 1)(w_star, lam).T @ v

    def unrolled(l):
        w = problem.w0(lam)
        for _ in range(t):
            w = phi(w, l)
        return problem.outer(w, l)

    itd = grad(unrolled)(lam)
    w = problem.w0(lam)
    for _ in range(t):
        w = phi(w, lam)
    a_t, b_t = jacrev(phi, 0)(w, lam), jacrev(phi, 1)(w, lam)
    rhs = grad(problem.outer, 0)(w, lam)
    fp = torch.zeros_like(w)
    for _ in range(k):
        fp = a_t.T @ fp + rhs
    m = eye - a_t.T  # CG on m x = rhs from 0
    x, r = torch.zeros_like(w), rhs.clone()
    p = r.clone()
    for _ in range(k):
        if float(r.norm()) == 0.0:
            break
        step = (r @ r) / (p @ (m @ p))
        x, r_new = x + step * p, r - step * (m @ p)
        p, r = r_new + ((r_new @ r_new) / (r @ r)) * p, r_new
    e2 = grad(problem.outer, 1)(w, lam)
    return {"itd": float((itd - exact).norm()), "fp": float((e2 + b_t.T @ fp - exact).norm()), "cg": float((e2 + b_t.T @ x - exact).norm())}


@pytest.mark.parametrize("name", PROBLEMS)
def test_errors_lie_below_the_bounds(name):
    problem = PROBLEMS[name]()
    for seed in range(2):
        lam = _draw(problem, seed)
        c = constants(problem, lam)
        for t, k in [(0, 0), (1, 1), (3, 2), (10, 10), (30, 5), (30, 30)]:
            for role, err in _errors(problem, lam, t, k).items():
                assert err <= bound(role, t, k, c) * (1 + 1e-9) + 1e-13, (role, t, k)


def test_bound_forms():
    """At t = k = 0 ITD and FP both bound by c₁ + c₃ (FP: c₁ + c₃); the FP bound is below ITD's
    for c₂ > 0 at every t ≥ 1; CG's falls below FP's for large k once c₂qᵗ/(1 − q) < c₃."""
    c = {"q": 0.9, "kappa": 19.0, "D": 1.0, "L_phi": 1.0, "L_E": 1.0, "mu1": 1.0, "c1": 2.0, "c2": 0.5, "c3": 10.0}
    assert bound("itd", 0, 0, c) == pytest.approx(12.0) and bound("fp", 0, 0, c) == pytest.approx(12.0)
    assert all(bound("fp", t, t, c) < bound("itd", t, t, c) for t in range(1, 200))
    assert bound("cg", 50, 200, c) < bound("fp", 50, 200, c)
    assert math.isnan(bound("gmres", 1, 1, c))


def test_problems_without_closed_form_constants_are_refused():
    problem = Logistic("logistic", seed=0, n_samples=40, n_features=3, label_noise=0.1, lam_low=-3.0, lam_high=-1.0)
    assert not computable(problem)
    with pytest.raises(ValueError, match="not computable in closed form"):
        constants(problem, _draw(problem))
