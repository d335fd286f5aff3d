"""The reference's certificate against references in extended precision (issue 22).

``hgbench.core.reference.error_bound`` claims ‖ĝ − ∇f(λ)‖ ≤ grad_error_bound for the float64
reference ĝ, and ‖ŵ − w*‖ ≤ w_error. Here ∇f(λ) and w*(λ) are computed independently, in mpmath
at 50 significant digits, from the problems' stored float64 data (taken as exact), by closed
forms (ridge, kernel ridge, meta-learning: the linear systems solved by LU at 50 digits) or by
Newton's method at 50 digits (logistic); the hypergradient by the implicit function theorem on
the inner optimality condition ∇₁ℓ(w*, λ) = 0, which does not involve Φ's step size:

    ∇f(λ) = ∇₂E(w*, λ) − (∂λ∇₁ℓ)ᵀ H⁻¹ ∇₁E(w*, λ),   H = ∇₁²ℓ(w*, λ).

Each problem is drawn well and ill conditioned (its conditioning options: cond, the λ range, γ),
with the dense reference (residuals at round-off; on the well-conditioned draws the true error
is asserted to be at round-off, where only the round-off allowances and floor hold the bound up)
and the matrix-free one (whose solves stop at 1e-13 relative). The assertions: the bound holds on
every draw, and it is not vacuous (≤ 1e-8 relative on the well-conditioned draws). With the
round-off constant at 1 ulp instead of ROUNDOFF_ULPS the meta-learning ill-conditioned case
fails, at 0 most cases do.
"""

from __future__ import annotations


import mpmath
import pytest
import torch

from hgbench.core.reference import certify, error_bound, reference
from hgbench.problems.kernel_ridge import KernelRidge
from hgbench.problems.logistic import Logistic
from hgbench.problems.meta_learning import MetaLearning
from hgbench.problems.ridge import Ridge

DIGITS = 50


def _mat(t: torch.Tensor) -> mpmath.matrix:
    """A float64 tensor (1-D or 2-D) as an exact mpmath matrix (column vector for 1-D)."""
    rows = t.reshape(t.shape[0], -1).tolist()
    return mpmath.matrix([[mpmath.mpf(x) for x in row] for row in rows])


def _diag(values) -> mpmath.matrix:
    out = mpmath.zeros(len(values), len(values))
    for i, x in enumerate(values):
        out[i, i] = x
    return out


def _vec(m: mpmath.matrix) -> list:
    return [m[i] for i in range(m.rows)]


def _error(estimate: torch.Tensor, truth: list) -> mpmath.mpf:
    """‖estimate − truth‖₂ in mpmath (the float64 estimate taken exactly)."""
    return mpmath.sqrt(mpmath.fsum((mpmath.mpf(x) - y) ** 2 for x, y in zip(estimate.tolist(), truth)))


def _norm(values: list) -> mpmath.mpf:
    return mpmath.sqrt(mpmath.fsum(x**2 for x in values))


# --- the truths, one per problem: (w*, ∇f) as lists of mpf -------------------------------------


def ridge_truth(problem: Ridge, lam: torch.Tensor):
    """H = XᵀX/n + diag(exp λ) (the stored Gram matrix), w* = H⁻¹Xᵀy/n; with
    z = H⁻¹∇₁E(w*), ∇f = −exp(λ) ⊙ w* ⊙ z (E the validation loss, ∇₂E = 0)."""
    exp = [mpmath.exp(mpmath.mpf(x)) for x in lam.tolist()]
    hessian = _mat(problem.gram) + _diag(exp)
    w = mpmath.lu_solve(hessian, _mat(problem.xty))
    xv, yv = _mat(problem.x_val), _mat(problem.y_val)
    grad_w = xv.T * (xv * w - yv) / problem.x_val.shape[0]
    z = mpmath.lu_solve(hessian, grad_w)
    return _vec(w), [-exp[j] * w[j] * z[j] for j in range(len(exp))]


def kernel_ridge_truth(problem: KernelRidge, lam: torch.Tensor):
    """K = exp(−½ sq·e^{−2λ₁}/d_x), H = K + ρI, c* = H⁻¹y, E = ‖K_v c − y_v‖²/(2n_v); with
    z = H⁻¹∇₁E: ∂f/∂log ρ = −ρ zᵀc*, ∂f/∂λ₁ = ∂₂E − zᵀ(∂K/∂λ₁)c*, ∂K/∂λ₁ = K ⊙ sq·e^{−2λ₁}/d_x
    (one shared bandwidth)."""
    rho = mpmath.exp(mpmath.mpf(lam[0].item()))
    scale = mpmath.exp(-2 * mpmath.mpf(lam[1].item())) / problem.n_features
    sq, sq_val = _mat(problem.sq_train[..., 0]), _mat(problem.sq_val[..., 0])
    kern = lambda s: s.apply(lambda x: mpmath.exp(-x * scale / 2))
    k, k_val = kern(sq), kern(sq_val)
    dk = mpmath.matrix(k.rows, k.cols)
    dk_val = mpmath.matrix(k_val.rows, k_val.cols)
    for i in range(k.rows):
        for j in range(k.cols):
            dk[i, j] = k[i, j] * sq[i, j] * scale
    for i in range(k_val.rows):
        for j in range(k_val.cols):
            dk_val[i, j] = k_val[i, j] * sq_val[i, j] * scale
    hessian = k + rho * mpmath.eye(k.rows)
    c = mpmath.lu_solve(hessian, _mat(problem.y_train))
    n_val = problem.x_val.shape[0]
    resid = k_val * c - _mat(problem.y_val)
    z = mpmath.lu_solve(hessian, k_val.T * resid / n_val)
    d_rho = -rho * (z.T * c)[0]
    d_band = (resid.T * (dk_val * c))[0] / n_val - (z.T * (dk * c))[0]
    return _vec(c), [d_rho, d_band]


def meta_learning_truth(problem: MetaLearning, lam: torch.Tensor):
    """Per task (G_i + γI) w_i = Xᵢᵀyᵢ/n + γh (the stored G_i, Xᵢᵀyᵢ/n); E the mean over tasks
    and validation points of ½(residual)²; with z_i = (G_i + γI)⁻¹∇_{w_i}E: ∇_h f = γ Σ_i z_i
    (h is fixed-γ here, ``learn_gamma`` false)."""
    gamma = mpmath.exp(mpmath.mpf(problem.log_gamma))
    h = _mat(lam)
    tasks, d = problem.grams.shape[0], problem.grams.shape[1]
    n_val = problem.x_val.shape[1]
    w_all, grad = [], mpmath.zeros(d, 1)
    for i in range(tasks):
        system = _mat(problem.grams[i]) + gamma * mpmath.eye(d)
        w = mpmath.lu_solve(system, _mat(problem.xty[i]) + gamma * h)
        xv = _mat(problem.x_val[i])
        grad_w = xv.T * (xv * w - _mat(problem.y_val[i])) / (tasks * n_val)
        grad += gamma * mpmath.lu_solve(system, grad_w)
        w_all += _vec(w)
    return w_all, _vec(grad)


def logistic_truth(problem: Logistic, lam: torch.Tensor, start: torch.Tensor):
    """w* by Newton's method at 50 digits from the float64 reference's w (quadratic convergence:
    six steps take its round-off error to far below 1e-40), then ∇f = −exp(λ) ⊙ w* ⊙ H⁻¹∇₁E(w*),
    H = XᵀDX/n + diag(exp λ), D = σ(m)(1 − σ(m)) at the margins m = b ⊙ Xw*."""
    x, b = _mat(problem.x_train), _vec(_mat(problem.b_train))
    xv, bv = _mat(problem.x_val), _vec(_mat(problem.b_val))
    exp = [mpmath.exp(mpmath.mpf(t)) for t in lam.tolist()]
    n, d = x.rows, x.cols
    sigmoid = lambda t: 1 / (1 + mpmath.exp(-t))
    w = _mat(start)
    for _ in range(6):
        margins = x * w
        coef = mpmath.matrix([-b[i] * sigmoid(-b[i] * margins[i]) / n for i in range(n)])
        grad = x.T * coef + mpmath.matrix([exp[j] * w[j] for j in range(d)])
        curv = [sigmoid(margins[i]) * (1 - sigmoid(margins[i])) / n for i in range(n)]
        hessian = x.T * _diag(curv) * x + _diag(exp)
        w = w - mpmath.lu_solve(hessian, grad)
    margins, val = x * w, xv * w
    curv = [sigmoid(margins[i]) * (1 - sigmoid(margins[i])) / n for i in range(n)]
    hessian = x.T * _diag(curv) * x + _diag(exp)
    grad_w = xv.T * mpmath.matrix([-bv[i] * sigmoid(-bv[i] * val[i]) / xv.rows for i in range(xv.rows)])
    z = mpmath.lu_solve(hessian, grad_w)
    return _vec(w), [-exp[j] * w[j] * z[j] for j in range(d)]


# --- the problems, well and ill conditioned -----------------------------------------------------

CASES = {
    "ridge_well": lambda: Ridge("ridge", 0, n_train=40, n_val=30, n_features=6, cond=10.0, noise=0.1, lam_low=-2.0, lam_high=0.0),
    "ridge_ill": lambda: Ridge("ridge", 1, n_train=40, n_val=30, n_features=6, cond=1e6, noise=0.1, lam_low=-12.0, lam_high=-9.0),
    "kernel_ridge_well": lambda: KernelRidge("kernel_ridge", 0, -1.0, 0.0, 0.0, 0.5, data="synthetic", n_samples=30, n_features=3),
    "kernel_ridge_ill": lambda: KernelRidge("kernel_ridge", 1, -9.0, -7.0, 0.0, 0.5, data="synthetic", n_samples=30, n_features=3),
    "meta_learning_well": lambda: MetaLearning(
        "meta_learning", 0, n_tasks=3, n_features=4, n_train=8, n_val=6, task_spread=0.5, noise=0.1, gamma=1.0, lam_low=-1.0, lam_high=1.0
    ),
    "meta_learning_ill": lambda: MetaLearning(
        "meta_learning", 1, n_tasks=3, n_features=4, n_train=3, n_val=6, task_spread=0.5, noise=0.1, gamma=1e-5, lam_low=-1.0, lam_high=1.0
    ),
    "logistic_well": lambda: Logistic("logistic", 0, n_samples=60, n_features=4, label_noise=0.1, lam_low=-2.0, lam_high=-1.0),
    "logistic_ill": lambda: Logistic("logistic", 1, n_samples=60, n_features=4, label_noise=0.1, lam_low=-8.0, lam_high=-6.0),
}
TRUTHS = {"ridge": ridge_truth, "kernel_ridge": kernel_ridge_truth, "meta_learning": meta_learning_truth}
N_DRAWS = 4  # per case; the matrix-free reference (seconds per draw) on the first N_FREE
N_FREE = 2


def truth(problem, lam, ref):
    with mpmath.workdps(DIGITS):
        if problem.name == "logistic":
            return logistic_truth(problem, lam, ref.w_star)
        return TRUTHS[problem.name](problem, lam)


def measure(problem, lam, method="dense"):
    """(true ‖ĝ − ∇f‖, true ‖ŵ − w*‖, ‖∇f‖, the certificate) for one draw."""
    ref = reference(problem, lam, method)
    with mpmath.workdps(DIGITS):
        w_true, g_true = truth(problem, lam, ref)
        return float(_error(ref.grad, g_true)), float(_error(ref.w_star, w_true)), float(_norm(g_true)), ref


class Bounded:
    """A problem whose ``contraction_bound`` is (L − μ)/(L + μ) from its curvature bounds: valid at
    every w for α = 2/(L + μ) (ridge: exact eigenvalues; logistic: global bounds), so that the
    matrix-free reference takes q from it (its rigorous path, as on hyper_cleaning) instead of
    power iteration."""

    def contraction_bound(self, lam):
        big, small = self.curvature_bounds(lam)
        return ((big - small) / (big + small)).item()


class BoundedRidge(Bounded, Ridge):
    pass


class BoundedLogistic(Bounded, Logistic):
    pass


BOUNDED = {
    "ridge_ill": lambda: BoundedRidge("ridge", 1, n_train=40, n_val=30, n_features=6, cond=1e6, noise=0.1, lam_low=-12.0, lam_high=-9.0),
    "logistic_ill": lambda: BoundedLogistic("logistic", 1, n_samples=60, n_features=4, label_noise=0.1, lam_low=-8.0, lam_high=-6.0),
}


def _check(problem, lam, ref, w_true, g_true, well: bool) -> float:
    """The bound holds for ∇f and w*; on a well-conditioned draw it is ≤ 1e-8 relative and the
    reference is certified. Returns bound / true error."""
    terms, certificate = error_bound(ref), certify(ref)
    g_err, w_err = float(_error(ref.grad, g_true)), float(_error(ref.w_star, w_true))
    assert g_err <= terms["grad_error_bound"], (g_err, terms)
    assert w_err <= terms["w_error"], (w_err, terms)
    assert certificate["error_bound"] == terms["grad_error_bound"] / torch.linalg.vector_norm(ref.grad).item()
    if well:
        assert certificate["error_bound"] <= 1e-8 and certificate["certified"], certificate
    return terms["grad_error_bound"] / max(g_err, 1e-300)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bound_holds_against_extended_precision(case):
    """Dense references on N_DRAWS draws, matrix-free on N_FREE: ‖ĝ − ∇f‖ ≤ grad_error_bound and
    ‖ŵ − w*‖ ≤ w_error on every draw; the well-conditioned draws are at round-off (true relative
    error ≤ 1e-14, where only the round-off floor and allowances can hold the bound up) and
    their bound is ≤ 1e-8 relative."""
    problem = CASES[case]()
    well = case.endswith("_well")
    for i, lam in enumerate(problem.sample_lambdas(N_DRAWS, torch.Generator().manual_seed(0))):
        dense = reference(problem, lam)
        with mpmath.workdps(DIGITS):
            w_true, g_true = truth(problem, lam, dense)
            for ref in (dense, reference(problem, lam, "matrix_free")) if i < N_FREE else (dense,):
                _check(problem, lam, ref, w_true, g_true, well)
            if well:
                assert _error(dense.grad, g_true) <= 1e-14 * _norm(g_true)


@pytest.mark.parametrize("case", sorted(BOUNDED))
def test_matrix_free_bounds_hold_with_a_contraction_bound(case):
    """The matrix-free reference with q from the problem's contraction bound (as on
    hyper_cleaning): ‖ŵ − w*‖ ≤ w_error_bound = (r_w + its round-off allowance)/(1 − q), and
    ‖ĝ − ∇f‖ ≤ the bound, on ill-conditioned draws (1/(1 − q) ≈ 10²–10⁴)."""
    problem = BOUNDED[case]()
    for lam in problem.sample_lambdas(N_FREE, torch.Generator().manual_seed(0)):
        ref = reference(problem, lam, "matrix_free")
        facts = ref.matrix_free
        assert facts["q_source"].startswith("contraction_bound") and facts["q_used"] == problem.contraction_bound(lam)
        assert facts["w_error_bound"] == error_bound(ref)["w_error"] > ref.fixed_point_residual / (1 - facts["q_used"])
        with mpmath.workdps(DIGITS):
            w_true, g_true = truth(problem, lam, ref)
            _check(problem, lam, ref, w_true, g_true, well=False)


def test_round_off_allowance_covers_the_measured_residuals_own_error():
    """The measured fixed-point residual is itself rounded: against the residual computed at
    50 digits (Φ(ŵ) − ŵ for ridge, exact data and ŵ), |measured − true| ≤ the allowance a_w."""
    problem = CASES["ridge_ill"]()
    for lam in problem.sample_lambdas(N_DRAWS, torch.Generator().manual_seed(0)):
        ref = reference(problem, lam)
        alpha = problem.consts(lam)["alpha"].item()
        with mpmath.workdps(DIGITS):
            exp = [mpmath.exp(mpmath.mpf(x)) for x in lam.tolist()]
            w = _mat(ref.w_star)
            grad = _mat(problem.gram) * w - _mat(problem.xty) + mpmath.matrix([exp[j] * w[j] for j in range(len(exp))])
            true = _norm(_vec(grad * mpmath.mpf(alpha)))
            assert abs(true - ref.fixed_point_residual) <= error_bound(ref)["fixed_point_allowance"]


def test_sensitivities_match_closed_forms_on_ridge():
    """Ridge with the validation outer: A = ∂₂Φ = −α diag(e^λ ⊙ w), M = X_vᵀX_v/n_v (Φ is affine
    in w), N = −α diag(e^λ ⊙ v), I − J = αH, so Z = −H⁻¹diag(e^λ ⊙ w) and
    (N + ZᵀM)(I − J)⁻¹ = (N + ZᵀM)H⁻¹/α. The dense norms equal these to 1e-10; the power-iteration
    ones (matrix-free path) are estimates from below, within 1 % here."""
    problem = CASES["ridge_well"]()
    lam = problem.sample_lambdas(1, torch.Generator().manual_seed(0))[0]
    ref = reference(problem, lam)
    alpha = problem.consts(lam)["alpha"]
    w, exp = ref.w_star, torch.exp(lam)
    hessian = problem.hessian(lam)
    grad_w = problem.x_val.T @ (problem.x_val @ w - problem.y_val) / problem.x_val.shape[0]
    v = torch.linalg.solve(alpha * hessian, grad_w)
    m = problem.x_val.T @ problem.x_val / problem.x_val.shape[0]
    n = -alpha * torch.diag(exp * v)
    z = -torch.linalg.solve(hessian, torch.diag(exp * w))
    expected = {
        "phi_lam": torch.linalg.matrix_norm(alpha * torch.diag(exp * w), ord=2),
        "hess_ww": torch.linalg.matrix_norm(m, ord=2),
        "hess_lw": torch.linalg.matrix_norm(n, ord=2),
        "from_v": torch.linalg.matrix_norm(z, ord=2),
        "from_w": torch.linalg.matrix_norm((n + z.T @ m) @ torch.linalg.inv(hessian) / alpha, ord=2),
        "inverse": 1 / torch.linalg.eigvalsh(alpha * hessian)[0],
    }
    for key, value in expected.items():
        assert ref.norms[key] == pytest.approx(value.item(), rel=1e-10), key
    free = reference(problem, lam, "matrix_free").norms
    for key in ("phi_lam", "hess_ww", "hess_lw"):
        assert 0.99 * expected[key].item() <= free[key] <= expected[key].item() * (1 + 1e-12), key


def test_matrix_free_reference_without_its_bound_measures_no_norms(ridge):
    """bound=False: the matrix-free reference skips the error bound's norms (the problem's own
    contraction bound, NaN or a number, must not switch them back on), so certify refuses it."""
    from hgbench.core.reference import certify, matrix_free_reference

    lam = ridge.sample_lambdas(1, torch.Generator().manual_seed(0))[0]
    with_bound, without = matrix_free_reference(ridge, lam), matrix_free_reference(ridge, lam, bound=False)
    assert with_bound.norms is not None and without.norms is None and torch.equal(with_bound.grad, without.grad)
    assert certify(with_bound)["certified"] and not certify(without)["certified"]


def test_large_dimension_path_bounds_the_exact_norms(monkeypatch):
    """Above SPECTRUM_BY_SVD_MAX the dense reference takes no SVD: q and κ from the eigenvalues
    of the symmetric J, the certificate's norms bounded above by min(‖·‖_F, √(‖·‖₁‖·‖_∞)) and
    1/(1 − q), the composites by products; where these do not certify (ill-conditioned), the
    exact norms. Forced here on small problems: q and κ equal the SVDs' to round-off, ∇f and w*
    are the same, every bound is at least the exact norm (closed forms above, SVDs here), and
    every reference is certified — by the cheap bounds except on ridge_ill."""
    from hgbench.core import reference as module
    from hgbench.problems import base

    eps = torch.finfo(torch.float64).eps
    for name in ("ridge_well", "ridge_ill", "logistic_well", "logistic_ill"):
        problem = CASES[name]()
        lam = problem.sample_lambdas(1, torch.Generator().manual_seed(1))[0]
        exact = reference(problem, lam)
        with monkeypatch.context() as patch:
            patch.setattr(base, "SPECTRUM_BY_SVD_MAX", 0)
            patch.setattr(module, "SPECTRUM_BY_SVD_MAX", 0)
            cheap = reference(problem, lam)
            v = problem.adjoint_system(lam, cheap.w_star, torch.func.grad(problem.outer)(cheap.w_star, lam))[0]
            bounds = module.sensitivities(problem, lam, cheap.w_star, v, None, cheap.q)
        assert bounds["source"].startswith("dense, d > 0") and exact.norms["source"] == "dense", name
        assert torch.equal(cheap.grad, exact.grad) and torch.equal(cheap.w_star, exact.w_star), name
        scale = problem.w_dim * eps
        assert cheap.q == pytest.approx(exact.q, rel=scale, abs=scale) and cheap.kappa == pytest.approx(
            exact.kappa, rel=scale * exact.kappa
        )
        for key in ("phi_lam", "hess_ww", "hess_lw", "inverse", "from_v", "from_w"):
            assert bounds[key] >= exact.norms[key] * (1 - scale), (name, key)
        assert certify(cheap)["certified"], name
        # ridge_ill (κ ≈ 1e5): the products' bound is ~5e-4 relative, past BOUND_TOL: the exact norms
        assert cheap.norms["source"] == ("dense" if name == "ridge_ill" else bounds["source"]), name
    diagonal = torch.diag(torch.linspace(-3.0, 2.0, 7, dtype=torch.float64))
    assert module.norm_above(diagonal) == pytest.approx(3.0, rel=64 * eps)  # exact on a diagonal
    generator = torch.Generator().manual_seed(0)
    for shape in ((5, 5), (9, 3), (1, 6)):
        m = torch.randn(*shape, generator=generator, dtype=torch.float64)
        assert module.norm_above(m) >= torch.linalg.matrix_norm(m, ord=2).item()
