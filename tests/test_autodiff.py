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


def test_a_reference_imports_no_dynamo():
    """A fresh process computing ridge's dense reference (with its error bound's norms) never
    imports torch._dynamo (torch.func's grad/vjp/jacrev would, 1.2 s)."""
    code = (
        "import sys, torch\n"
        "from hgbench.core.reference import reference, certify\n"
        "from hgbench.problems.ridge import Ridge\n"
        "p = Ridge('ridge', seed=0, n_train=60, n_val=40, n_features=8, cond=30.0, noise=0.1, lam_low=-3.0, lam_high=0.0)\n"
        "lam = p.sample_lambdas(1, torch.Generator().manual_seed(0))[0]\n"
        "assert certify(reference(p, lam))['certified']\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[-1] == "False"
