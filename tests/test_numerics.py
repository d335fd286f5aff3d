"""Numerics against independent truths: finite differences, closed forms, known convergence."""

import pytest
import torch
from conftest import draws
from toy import LinearMap

from hgbench.core.bound import bind, check_applies, estimate
from hgbench.core.krylov import conjugate_gradient, iterates
from hgbench.estimators.cg import ConjugateGradient
from hgbench.estimators.fp import FixedPoint
from hgbench.estimators.itd import ITDForward, ITDReverse
from hgbench.problems.logistic import Logistic
from hgbench.problems.ridge import Ridge
from hgbench.core.reference import reference


def rel(a, b):
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item()


def finite_difference_grad(problem, lam, h=1e-5):
    """Central differences of f(λ) = E(w*(λ), λ), w* from the problem's own exact inner solver."""
    f = lambda l: problem.outer(problem.solve_inner(l), l).item()
    grad = torch.zeros_like(lam)
    for j in range(lam.numel()):
        e = torch.zeros_like(lam)
        e[j] = h
        grad[j] = (f(lam + e) - f(lam - e)) / (2 * h)
    return grad


@pytest.mark.parametrize("name", ["ridge", "logistic"])
def test_reference_matches_finite_differences(name, request):
    problem = request.getfixturevalue(name)
    for lam in draws(problem):
        ref = reference(problem, lam)
        assert rel(ref.grad, finite_difference_grad(problem, lam)) < 1e-6
        assert ref.fixed_point_residual < 1e-12 and ref.linear_residual < 1e-12
        assert 0 < ref.q < 1


def test_reference_matches_closed_form_on_nonsymmetric_map():
    problem = LinearMap("linear_map", seed=0, dim=6, q=0.5, lam_low=-1, lam_high=1)
    for lam in draws(problem):
        assert rel(reference(problem, lam).grad, problem.closed_form_grad(lam)) < 1e-12


@pytest.mark.parametrize("name", ["ridge", "logistic"])
def test_gradient_step_map_is_what_it_claims(name, request):
    """inner_grad is ∇ℓ, ∂₁Φ is symmetric, Newton/closed form is a fixed point of Φ."""
    problem = request.getfixturevalue(name)
    lam = draws(problem, 1)[0]
    w = torch.randn(problem.w_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    auto = torch.func.grad(problem.inner_loss)(w, lam)
    assert rel(problem.inner_grad(w, lam), auto) < 1e-12
    bound = bind(problem, lam)
    jac = torch.func.jacrev(lambda u: bound.phi(u, lam))(w)
    assert problem.symmetric_jacobian and torch.allclose(jac, jac.T, atol=1e-14)
    w_star = problem.solve_inner(lam)
    assert torch.linalg.vector_norm(torch.func.grad(problem.inner_loss)(w_star, lam)) < 1e-13


def test_ridge_contraction_constant_is_the_optimal_one(ridge):
    """α = 2/(L+μ) gives q = (κ−1)/(κ+1) exactly (Φ affine in w, so q does not depend on w)."""
    lam = draws(ridge, 1)[0]
    eig = torch.linalg.eigvalsh(ridge.hessian(lam))
    kappa = (eig[-1] / eig[0]).item()
    assert reference(ridge, lam).q == pytest.approx((kappa - 1) / (kappa + 1), rel=1e-12)


@pytest.mark.parametrize("name", ["ridge", "logistic"])
def test_itd_reverse_equals_forward_at_every_t(name, request):
    problem = request.getfixturevalue(name)
    pairs = [(t, None) for t in (0, 1, 2, 5, 13, 40)]
    for lam in draws(problem):
        reverse = list(estimate(ITDReverse("itd"), problem, lam, pairs))
        forward = list(estimate(ITDForward("itd_forward"), problem, lam, pairs))
        assert [e.t for e in reverse] == [e.t for e in forward] == [0, 1, 2, 5, 13, 40]
        for a, b in zip(reverse, forward):
            assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-14), a.t


@pytest.mark.parametrize("name", ["ridge", "logistic"])
@pytest.mark.parametrize("estimator", [FixedPoint("fp"), ConjugateGradient("cg"), ITDReverse("itd")])
def test_estimators_converge_to_reference(name, estimator, request):
    problem = request.getfixturevalue(name)
    for lam in draws(problem):
        ref = reference(problem, lam)
        (last,) = [e for e in estimate(estimator, problem, lam, [(2000, 2000)])]
        assert rel(last.grad, ref.grad) < 1e-8


def test_fp_converges_on_nonsymmetric_map():
    problem = LinearMap("linear_map", seed=0, dim=6, q=0.5, lam_low=-1, lam_high=1)
    lam = draws(problem, 1)[0]
    (last,) = estimate(FixedPoint("fp"), problem, lam, [(200, 200)])
    assert rel(last.grad, problem.closed_form_grad(lam)) < 1e-12


def test_cg_refuses_nonsymmetric_map():
    problem = LinearMap("linear_map", seed=0, dim=6, q=0.5, lam_low=-1, lam_high=1)
    with pytest.raises(ValueError, match=r"'cg' needs a symmetric .*'linear_map'.*estimator=fp"):
        check_applies(ConjugateGradient("cg"), problem)


def test_cg_is_exact_after_dim_w_steps():
    """Finite termination: on an ill-conditioned ridge, CG's rate bound promises little after d
    steps, yet the error at k = d is round-off while at k = d − 3 it is still large."""
    problem = Ridge("ridge", seed=0, n_train=40, n_val=40, n_features=10, cond=60, noise=0.1, lam_low=-9, lam_high=-9)
    lam = draws(problem, 1)[0]
    ref = reference(problem, lam)
    assert ref.kappa > 100  # 2((√κ−1)/(√κ+1))^d > 0.2: the rate bound alone promises nothing
    d, t = problem.w_dim, 10000  # q^t < 1e-20: the inner problem is solved
    errs = {e.k: rel(e.grad, ref.grad) for e in estimate(ConjugateGradient("cg"), problem, lam, [(t, d - 3), (t, d)])}
    assert errs[d - 3] > 1e-4
    assert errs[d] < 1e-8


def test_cg_matches_direct_solve_and_stays_put_after_convergence():
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    a = m @ m.T + 5 * torch.eye(5, dtype=torch.float64)
    b = torch.randn(5, generator=gen, dtype=torch.float64)
    steps = iterates(conjugate_gradient(lambda v: a @ v, b, batched=False))
    vs = [next(steps) for _ in range(12)]
    exact = torch.linalg.solve(a, b)
    assert rel(vs[4], exact) < 1e-12
    assert all(torch.isfinite(v).all() and rel(v, exact) < 1e-12 for v in vs[5:])
    # the zero right-hand side: residual exactly zero from the start, iterates stay at 0
    zero = iterates(conjugate_gradient(lambda v: a @ v, torch.zeros(5, dtype=torch.float64), batched=False))
    assert all(torch.equal(next(zero), torch.zeros(5, dtype=torch.float64)) for _ in range(3))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("system", ["spd", "identity", "zero_rhs"])
def test_cg_branches_equal_its_elementwise_selection_bit_for_bit(system, dtype):
    """CG's zero tests as Python branches (the loop) and as torch.where (what runs under vmap):
    the same iterates, bit for bit, through convergence, a residual at round-off (A = I: r = 0
    after one step, then pᵀAp = 0) and a zero right-hand side."""
    gen = torch.Generator().manual_seed(1)
    m = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    a = {"spd": m @ m.T + 0.1 * torch.eye(6, dtype=torch.float64), "identity": torch.eye(6, dtype=torch.float64)}.get(system, m @ m.T)
    bs = torch.randn(3, 6, generator=gen, dtype=torch.float64) * (system != "zero_rhs")
    a, bs = a.to(dtype), bs.to(dtype)

    def run(b, batched, n=20):
        steps = iterates(conjugate_gradient(lambda v: a @ v, b, batched=batched))
        return torch.stack([next(steps) for _ in range(n)])

    loop = torch.stack([run(b, batched=False) for b in bs])
    assert torch.equal(loop, torch.stack([run(b, batched=True) for b in bs]))


@pytest.mark.parametrize("estimator", [FixedPoint("fp"), ConjugateGradient("cg"), ITDReverse("itd"), ITDForward("itd_forward")])
def test_one_pass_curve_equals_points_computed_alone(ridge, estimator):
    """The one-pass machinery (shared trajectory, solver iterates read off at each k) gives the
    same numbers as computing each grid point from scratch."""
    lam = draws(ridge, 1)[0]
    pairs = [(t, k) for t in (0, 3, 30) for k in (0, 2, 7)]
    together = {(e.t, e.k): e.grad for e in estimate(estimator, ridge, lam, pairs)}
    for key, grad in together.items():
        (alone,) = estimate(estimator, ridge, lam, [(key[0], key[1] if key[1] is not None else 0)])
        assert torch.allclose(alone.grad, grad, rtol=1e-13, atol=1e-16), key


def test_fp_matches_neumann_partial_sums(ridge):
    """v_k of AID-FP is Σ_{i<k} (Jᵀ)ⁱ∇₁E: check against dense matrix powers."""
    lam = draws(ridge, 1)[0]
    bound = bind(ridge, lam)
    w = ridge.solve_inner(lam)
    jac = torch.func.jacrev(lambda u: bound.phi(u, lam))(w)
    grad_w, grad_lam = torch.func.grad(bound.outer, argnums=(0, 1))(w, lam)
    _, vjp_lam = torch.func.vjp(lambda l: bound.phi(w, l), lam)
    v = sum(torch.linalg.matrix_power(jac.T, i) @ grad_w for i in range(6))
    (est,) = estimate(FixedPoint("fp"), ridge, lam, [(3000, 6)])
    assert torch.allclose(est.grad, grad_lam + vjp_lam(v)[0], rtol=1e-10)


def test_float32_run_is_accurate_to_float32(ridge):
    lam = draws(ridge, 1)[0]
    ref = reference(ridge, lam)
    (est,) = estimate(ConjugateGradient("cg"), ridge.to(torch.float32, "cpu"), lam.float(), [(500, 50)])
    assert est.grad.dtype == torch.float32
    assert 1e-9 < rel(est.grad.double(), ref.grad) < 1e-4


def test_cg_stays_put_long_after_convergence():
    """Run far past convergence, CG's recursively updated residual would underflow to denormals
    whose ratios blow the iterate up (this draw reached err 2e31 at k = 2000 before the fix):
    once ‖r‖ ≤ ε‖b‖ the residual counts as zero and the iterate stays at its converged value."""
    problem = Logistic(
        "logistic", seed=0, n_samples=1000, n_features=20, label_noise=0.1, lam_low=-5.0, lam_high=-1.0, data="breast_cancer"
    )
    lam = draws(problem, 10)[9]
    early, late = (e.grad for e in estimate(ConjugateGradient("cg"), problem, lam, [(2000, 500), (2000, 2000)]))
    assert torch.equal(early, late)


@pytest.mark.parametrize("outer", ["validation", "linear", "inner"])
def test_outer_gradients_by_autograd_equal_torch_func_bit_for_bit(outer):
    """A bound problem's (∇₁E, ∇₂E) by plain autograd (the loop) equal torch.func.grad's (what
    the batched path uses, under vmap) bit for bit, with E independent of λ (validation) or not,
    at points where λ enters E (linear) or enters through ℓ (inner)."""
    problem = Logistic("logistic", seed=0, n_samples=200, n_features=6, label_noise=0.1, lam_low=-3.0, lam_high=-1.0, outer=outer)
    for lam in draws(problem, 3):
        w = torch.randn(problem.w_dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        by_autograd = bind(problem, lam).outer_grads(w)
        by_func = torch.func.grad(problem.outer, argnums=(0, 1))(w, lam)
        assert all(torch.equal(a, b) for a, b in zip(by_autograd, by_func))
