"""hgbench.problems.autodiff (plain autograd, no torch._dynamo) computes what torch.func
computes, bit for bit: the reference's numbers did not change when it moved off torch.func."""

import subprocess
import sys

import pytest
import torch

from hgbench.problems import autodiff
from hgbench.problems.kernel_ridge import KernelRidge
from tests.conftest import draws


@pytest.fixture(scope="module")
def kernel_ridge():
    return KernelRidge("kernel_ridge", 0, -2.0, 0.0, -0.5, 0.5, per_feature_bandwidth=True, data="synthetic", n_samples=30, n_features=3)


@pytest.fixture(params=["ridge", "logistic", "kernel_ridge"])
def problem(request):
    return request.getfixturevalue(request.param)


def _point(problem):
    """(w, λ) away from w* and w₀ (non-zero derivatives everywhere), float64."""
    lam = draws(problem, 1)[0]
    w = problem.w0(lam) + torch.linspace(-0.3, 0.4, problem.w_dim, dtype=torch.float64)
    return w, lam


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b)) if isinstance(a, tuple) else torch.equal(a, b)


def test_gradient_vjp_jacobian_equal_torch_func(problem):
    w, lam = _point(problem)
    phi = problem.bound_phi(lam)
    assert _same(autodiff.gradient(problem.outer, (w, lam), argnums=(0, 1)), torch.func.grad(problem.outer, argnums=(0, 1))(w, lam))
    assert _same(autodiff.gradient(problem.inner_loss, (w, lam)), torch.func.grad(problem.inner_loss)(w, lam))
    value, pullback = autodiff.vjp(phi, (w, lam))
    expected_value, expected_pullback = torch.func.vjp(phi, w, lam)
    u = torch.linspace(1.0, -2.0, problem.w_dim, dtype=torch.float64)
    assert torch.equal(value, expected_value) and _same(pullback(u), expected_pullback(u))
    assert _same(autodiff.jacobian(phi, (w, lam), argnums=(0, 1)), torch.func.jacrev(phi, argnums=(0, 1))(w, lam))
    assert _same(autodiff.jacobian(lambda x: phi(x, lam), (w,)), torch.func.jacrev(lambda x: phi(x, lam))(w))


def test_second_derivatives_equal_jacrev_of_grad(problem):
    """The Hessian blocks of the reference's error bound (``sensitivities``): jacrev of a grad
    with a tuple output; and ∂₁∇₂E, zero where E does not depend on λ (ridge, logistic)."""
    w, lam = _point(problem)
    phi = problem.bound_phi(lam)
    v = torch.linspace(0.5, -1.0, problem.w_dim, dtype=torch.float64)
    lagrangian = lambda x, l: problem.outer(x, l) + v @ phi(x, l)
    ours = autodiff.jacobian(lambda x: autodiff.gradient(lagrangian, (x, lam), argnums=(0, 1), create_graph=True), (w,))
    theirs = torch.func.jacrev(lambda x: torch.func.grad(lagrangian, argnums=(0, 1))(x, lam))(w)
    assert _same(ours, theirs)
    cross = autodiff.jacobian(lambda x: autodiff.gradient(problem.outer, (x, lam), argnums=1, create_graph=True), (w,))
    assert torch.equal(cross, torch.func.jacrev(lambda x: torch.func.grad(problem.outer, argnums=1)(x, lam))(w))
    if not isinstance(problem, KernelRidge):  # E does not depend on λ: ∂₁∇₂E = 0, an output without a graph
        assert torch.equal(cross, torch.zeros(problem.lam_dim, problem.w_dim, dtype=torch.float64))


def test_derivatives_do_not_reach_the_callers_tensors(ridge):
    """Derivatives at a point: the inputs' own graphs (a λ that requires grad) are cut."""
    w, lam = _point(ridge)
    lam = lam.clone().requires_grad_()
    grad = autodiff.gradient(ridge.outer, (w, lam), argnums=0)
    assert not grad.requires_grad
    value, pullback = autodiff.vjp(ridge.bound_phi(lam.detach()), (w, lam))
    assert not value.requires_grad and not any(g.requires_grad for g in pullback(w))


@pytest.mark.parametrize("build", [
    "Ridge('ridge', seed=0, n_train=60, n_val=40, n_features=8, cond=30.0, noise=0.1, lam_low=-3.0, lam_high=0.0)",
    "Logistic('logistic', seed=0, n_samples=200, n_features=6, label_noise=0.1, lam_low=-3.0, lam_high=-1.0)",
])  # fmt: skip
def test_a_reference_and_estimates_import_no_dynamo(build):
    """A fresh process computing a dense reference (with its error bound's norms; logistic's by
    Newton's method) and CG and ITD estimates on the dense path (J built by one vmapped VJP)
    never imports torch._dynamo (torch.func's grad/vjp/jacrev/hessian would, 1.2 s)."""
    code = (
        "import sys, torch\n"
        "from hgbench.core.bound import estimate\n"
        "from hgbench.estimators.cg import ConjugateGradient\n"
        "from hgbench.estimators.itd import ITDReverse\n"
        "from hgbench.core.reference import reference, certify\n"
        "from hgbench.problems.logistic import Logistic\n"
        "from hgbench.problems.ridge import Ridge\n"
        f"p = {build}\n"
        "lam = p.sample_lambdas(1, torch.Generator().manual_seed(0))[0]\n"
        "assert certify(reference(p, lam))['certified']\n"
        "for e in (ConjugateGradient('cg'), ITDReverse('itd')):\n"
        "    assert all(torch.isfinite(g.grad).all() for g in estimate(e, p, lam, [(5, 5)], dense=True))\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[-1] == "False"


def test_logistic_closed_form_hessian(logistic):
    """Logistic.inner_hessian against central differences of the closed-form gradient (an
    independent truth: error O(h²‖∇³ℓ‖) + O(eps‖∇ℓ‖/h) ≈ 1e-10 at h = 1e-5) at w* and at large
    margins (σ(m)σ(−m) → 0), and against autodiff (torch.func.hessian) to a few ulps of ‖H‖ where
    all margins are below softplus's threshold of 20 (beyond it F.softplus is linear, and its
    autodiff Hessian drops the e^{−|m|} term the math has)."""
    lam = draws(logistic, 1)[0]
    eps, h = torch.finfo(torch.float64).eps, 1e-5
    for w in (logistic.solve_inner(lam), torch.linspace(-4.0, 5.0, logistic.w_dim, dtype=torch.float64)):
        closed = logistic.inner_hessian(w, lam)
        scale = closed.abs().max()
        if (logistic.x_train @ w).abs().max() < 20:
            assert (closed - torch.func.hessian(logistic.inner_loss)(w, lam)).abs().max() <= 16 * eps * scale
        steps = torch.eye(logistic.w_dim, dtype=torch.float64) * h
        central = torch.stack([(logistic.inner_grad(w + e, lam) - logistic.inner_grad(w - e, lam)) / (2 * h) for e in steps])
        assert (closed - central).abs().max() <= 1e-8 * scale
