"""The estimators beyond ITD/FP/CG: each against an independent truth (the reference, a closed
form, another estimator under a stated identity, dense linear algebra) and its operation counts."""

import pytest
import torch
from conftest import draws, refusal
from test_numerics import finite_difference_grad, rel
from toy import LinearMap

from hgbench.core.bound import bind, check_applies, estimate
from hgbench.running.batch import estimate_batched
from hgbench.estimators.fp import FixedPoint
from hgbench.estimators.implicit import Exact, JacobianFree
from hgbench.estimators.itd import ITDReverse, ITDTruncated
from hgbench.estimators.neumann import Neumann
from hgbench.estimators.precond import Preconditioned
from hgbench.estimators.reparam import Reparameterized
from hgbench.problems.logistic import Logistic
from hgbench.problems.ridge import Ridge
from hgbench.core.reference import reference


def linear_map():
    return LinearMap("linear_map", seed=0, dim=6, q=0.5, lam_low=-1, lam_high=1)


def grads(estimator, problem, lam, pairs):
    return {(e.t, e.k): e.grad for e in estimate(estimator, problem, lam, pairs)}


@pytest.mark.parametrize("name", ["ridge", "logistic"])
def test_itd_trunc_with_k_at_least_t_is_itd(name, request):
    problem = request.getfixturevalue(name)
    lam = draws(problem, 1)[0]
    ts = (0, 1, 4, 17, 40)
    itd = {t: g for (t, _), g in grads(ITDReverse("itd"), problem, lam, [(t, None) for t in ts]).items()}
    trunc = grads(ITDTruncated("itd_trunc"), problem, lam, [(t, t) for t in ts] + [(t, t + 5) for t in ts])
    assert len(trunc) == 2 * len(ts)
    for (t, k), g in trunc.items():
        assert torch.allclose(g, itd[t], rtol=1e-12, atol=1e-15), (t, k)


def test_itd_trunc_equals_fp_at_the_fixed_point(logistic):
    """Once w_i = w* for every step, backprop through the last k steps sums the first k terms of
    the Neumann series: itd_trunc(t, k) = fp(t, k) (Shaban, Cheng, Hatch, Boots, AISTATS 2019, truncated
    back-propagation; Grazzi et al., ICML 2020, §3: AID-FP's k steps are the Neumann series' first k terms)."""
    lam = draws(logistic, 1)[0]
    pairs = [(2000, k) for k in (0, 1, 3, 8)]
    trunc, fp = grads(ITDTruncated("itd_trunc"), logistic, lam, pairs), grads(FixedPoint("fp"), logistic, lam, pairs)
    for key in pairs:
        assert torch.allclose(trunc[key], fp[key], rtol=1e-10, atol=1e-14), key
    assert rel(trunc[(2000, 0)], fp[(2000, 8)]) > 1e-3  # the k's differ: the check can fail


@pytest.mark.parametrize("name", ["logistic", "linear_map"])
def test_neumann_k_is_fp_k_plus_one_and_jfb_is_their_first_term(name, request):
    problem = linear_map() if name == "linear_map" else request.getfixturevalue(name)
    lam = draws(problem, 1)[0]
    ks, ts = (0, 1, 5, 20), (0, 7, 60)
    neumann = grads(Neumann("neumann"), problem, lam, [(t, k) for t in ts for k in ks])
    fp = grads(FixedPoint("fp"), problem, lam, [(t, k + 1) for t in ts for k in ks])
    jfb = grads(JacobianFree("jfb"), problem, lam, [(t, None) for t in ts])
    for t in ts:
        for k in ks:
            assert torch.allclose(neumann[(t, k)], fp[(t, k + 1)], rtol=1e-12, atol=1e-15), (t, k)
        assert torch.allclose(jfb[(t, None)], neumann[(t, 0)], rtol=1e-13, atol=1e-16)
    assert rel(neumann[(60, 0)], neumann[(60, 20)]) > 1e-3  # the k's differ: the check can fail


def ridge_closed_form_grad(problem, lam):
    """Ridge, by hand: w* = H⁻¹Xᵀy/n, H = XᵀX/n + diag(eᵝ); ∇f = −eᵝ ⊙ w* ⊙ H⁻¹∇E(w*)."""
    h = problem.gram + torch.diag(torch.exp(lam))
    w = torch.linalg.solve(h, problem.xty)
    grad_e = problem.x_val.T @ (problem.x_val @ w - problem.y_val) / problem.x_val.shape[0]
    return -torch.exp(lam) * w * torch.linalg.solve(h, grad_e)


@pytest.mark.parametrize("name", ["ridge", "logistic", "linear_map"])
def test_exact_at_large_t_matches_reference(name, request):
    """Against the reference, and against truths that share none of its code path (no dense
    LU of I − Jᵀ): ridge's closed form, logistic's central differences of f (1e-6: their own
    truncation error), the non-symmetric map's closed form."""
    problem = linear_map() if name == "linear_map" else request.getfixturevalue(name)
    truth = {"ridge": ridge_closed_form_grad, "logistic": finite_difference_grad, "linear_map": lambda p, l: p.closed_form_grad(l)}[name]
    for lam in draws(problem):
        (est,) = estimate(Exact("exact"), problem, lam, [(3000, None)])
        assert rel(est.grad, reference(problem, lam).grad) < 1e-10
        assert rel(est.grad, truth(problem, lam)) < (1e-6 if name == "logistic" else 1e-10)


@pytest.mark.parametrize("name", ["ridge", "linear_map"])
def test_newton_precond_is_exact_at_every_t_when_phi_is_affine(name, request):
    """Φ affine in w (ridge; the non-symmetric toy): one Newton step lands on w*, so the
    estimate is the reference at any t, while vanilla (exact) at the same w_t is not."""
    problem = linear_map() if name == "linear_map" else request.getfixturevalue(name)
    lam = draws(problem, 1)[0]
    ref = reference(problem, lam).grad
    newton = grads(Preconditioned("precond_newton"), problem, lam, [(t, None) for t in (0, 2, 9)])
    vanilla = grads(Exact("exact"), problem, lam, [(2, None)])
    assert all(rel(g, ref) < 1e-10 for g in newton.values())
    assert rel(vanilla[(2, None)], ref) > 1e-3


def test_precond_step_is_ye_et_al_step(logistic):
    """x̂ = w − P⁻¹∇₁ℓ(w) with P the inner Hessian (Newton) or its diagonal (Jacobi), computed here
    from ℓ by autodiff; the estimator computes it from Φ alone."""
    lam = draws(logistic, 1)[0]
    w = torch.randn(logistic.w_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    grad = torch.func.grad(logistic.inner_loss)(w, lam)
    hess = torch.func.hessian(logistic.inner_loss)(w, lam)
    bound = bind(logistic, lam)
    newton = Preconditioned("n", kind="newton").point(bound, w)
    jacobi = Preconditioned("j", kind="jacobi").point(bound, w)
    assert rel(newton, w - torch.linalg.solve(hess, grad)) < 1e-12
    assert rel(jacobi, w - grad / hess.diagonal()) < 1e-12


def test_precond_by_cg_matches_direct(ridge):
    """solve=cg: P⁻¹ by precond_steps CG steps, the implicit system by k CG steps; with both
    counts beyond dim w (CG's finite termination) it is the direct version."""
    lam = draws(ridge, 1)[0]
    d = ridge.w_dim
    for kind in ("newton", "jacobi"):
        direct = grads(Preconditioned("p", kind=kind), ridge, lam, [(5, None), (40, None)])
        by_cg = grads(Preconditioned("p", kind=kind, solve="cg", precond_steps=d + 6), ridge, lam, [(5, d + 6), (40, d + 6), (40, 1)])
        for t in (5, 40):
            assert rel(by_cg[(t, d + 6)], direct[(t, None)]) < 1e-9, (kind, t)
        assert rel(by_cg[(40, 1)], direct[(40, None)]) > 1e-4


@pytest.mark.parametrize("name", ["ridge", "logistic"])
@pytest.mark.parametrize("map_", ["diag", "exp"])
def test_reparam_matches_reference_at_the_solution(name, map_, request):
    """At w* the implicit formula in z mapped back is exact, for any map; with the diag map this
    needs the ∂_λφ term (P depends on λ)."""
    problem = request.getfixturevalue(name)
    for lam in draws(problem):
        (est,) = estimate(Reparameterized("r", map=map_), problem, lam, [(3000, None)])
        assert rel(est.grad, reference(problem, lam).grad) < 1e-9


def test_reparam_differs_from_vanilla_away_from_the_solution(logistic):
    lam = draws(logistic, 1)[0]
    vanilla = grads(Exact("exact"), logistic, lam, [(3, None)])[(3, None)]
    for map_ in ("diag", "exp"):
        assert rel(grads(Reparameterized("r", map=map_), logistic, lam, [(3, None)])[(3, None)], vanilla) > 1e-6


def test_bad_options_and_unsuited_problems_are_refused(ridge):
    assert refusal("estimator=precond", "estimator.kind=lu") == "estimator.kind='lu' is not one of newton, jacobi"
    assert refusal("estimator=precond", "estimator.solve=gmres") == "estimator.solve='gmres' is not one of direct, cg"
    assert refusal("estimator=reparam", "estimator.map=log") == "estimator.map='log' is not one of diag, exp, opt"
    assert refusal("estimator=precond", "estimator.kind=jacobi") is None
    with pytest.raises(ValueError, match=r"'reparam_exp' needs the inner loss .*'linear_map'.*estimator=exact"):
        check_applies(Reparameterized("reparam_exp", map="exp"), linear_map())
    with pytest.raises(
        ValueError, match=r"'precond_newton' needs a symmetric .*'linear_map'.*solve=cg runs CG; use estimator.solve=direct"
    ):
        check_applies(Preconditioned("precond_newton", solve="cg"), linear_map())
    check_applies(Reparameterized("r"), ridge)
    check_applies(Preconditioned("p", solve="cg"), ridge)
    assert refusal("problem.outer=val") == "problem.outer='val' is not one of validation, linear, quadratic, inner"


@pytest.mark.parametrize("outer", ["linear", "quadratic", "inner"])
@pytest.mark.parametrize("cls", [Ridge, Logistic])
def test_outer_options_reference_matches_finite_differences(cls, outer):
    if cls is Ridge:
        problem = Ridge("ridge", seed=1, n_train=40, n_val=30, n_features=5, cond=10, noise=0.1, lam_low=-2, lam_high=0, outer=outer)
    else:
        problem = Logistic("logistic", seed=1, n_samples=80, n_features=5, label_noise=0.1, lam_low=-2, lam_high=0, outer=outer)
    lam = draws(problem, 1)[0]
    ref = reference(problem, lam)
    assert rel(ref.grad, finite_difference_grad(problem, lam)) < 1e-6
    if outer == "inner":  # min–min: ∇₁ℓ(w*) = 0, so ∇f = ∇₂ℓ(w*, λ) = ½ exp(λ) ⊙ w*²
        assert rel(ref.grad, 0.5 * torch.exp(lam) * ref.w_star.square()) < 1e-10


COUNTS = {  # (n_phi, n_vjp) of the point (t, k) with d = dim w, as each docstring states
    "exact": lambda t, k, d: (t + 1, d + 1),
    "jfb": lambda t, k, d: (t + 1, 1),
    "precond_newton": lambda t, k, d: (t + 2, 2 * d + 1),
    "itd_trunc": lambda t, k, d: (t, min(k, t)),
    "neumann": lambda t, k, d: (t + 1, k + 1),
}


@pytest.mark.parametrize(
    "estimator", [Exact("exact"), JacobianFree("jfb"), Preconditioned("precond_newton"), ITDTruncated("itd_trunc"), Neumann("neumann")]
)
def test_counts(ridge, estimator):
    lam = draws(ridge, 1)[0]
    d = ridge.w_dim
    for e in estimate(estimator, ridge, lam, [(0, 0), (6, 2), (6, 9), (20, 4)]):
        k = e.k if e.k is not None else 0
        assert (e.cost.n_phi, e.cost.n_vjp, e.cost.n_jvp) == (*COUNTS[estimator.name](e.t, k, d), 0), (e.t, e.k)


@pytest.mark.parametrize(
    "estimator",
    [
        Exact("exact"),
        JacobianFree("jfb"),
        Preconditioned("precond_newton"),
        Preconditioned("precond_jacobi", kind="jacobi"),
        Reparameterized("reparam_diag"),
        Reparameterized("reparam_exp", map="exp"),
        Neumann("neumann"),
    ],
)
def test_batched_draws_equal_the_loop(logistic, estimator):
    lams = draws(logistic, 3)
    pairs = [(1, 2), (8, 2), (8, 5)]
    batched = estimate_batched(estimator, logistic, lams, pairs)
    for lam, row in zip(lams, batched):
        for a, b in zip(estimate(estimator, logistic, lam, pairs), row):
            assert (a.t, a.k) == (b.t, b.k) and torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-14)


def test_fitted_slopes_on_logistic():
    """Ye et al. 2024 on logistic regression (n = 80, d = 6, one exp-penalty per feature), slopes
    of log err vs log inner error fitted by hgbench.analysis.inner_error from the exact iterates, tolerance
    ±0.2: vanilla (exact) ≈ 1, Newton-preconditioned ≈ 2, Jacobi ≈ 1 with a constant at least 3×
    smaller than vanilla's; in the min–min case (E = ℓ) vanilla ≈ 2."""
    import pandas as pd

    from hgbench.analysis.inner_error import on_levels, slopes

    rows = []
    for outer in ("validation", "inner"):
        problem = Logistic(outer, seed=0, n_samples=160, n_features=6, label_noise=0.1, lam_low=-1, lam_high=1, outer=outer)
        estimators = [Exact("exact")] + (
            [Preconditioned("newton"), Preconditioned("jacobi", kind="jacobi")] if outer == "validation" else []
        )
        for lam_id, lam in enumerate(draws(problem, 3)):
            ref = reference(problem, lam)
            for estimator in estimators:
                for e in estimate(estimator, problem, lam, [(t, None) for t in range(0, 45)]):
                    rows.append(
                        {
                            "problem": outer,
                            "estimator": estimator.name,
                            "lam_id": lam_id,
                            "status": "ok",
                            "err_rel": rel(e.grad, ref.grad),
                            "inner_err": rel(e.w, ref.w_star),
                        }
                    )
    fitted = slopes(on_levels(pd.DataFrame(rows))).set_index(["problem", "estimator"])
    assert fitted.loc[("validation", "exact"), "slope"] == pytest.approx(1, abs=0.2)
    assert fitted.loc[("validation", "newton"), "slope"] == pytest.approx(2, abs=0.2)
    assert fitted.loc[("validation", "jacobi"), "slope"] == pytest.approx(1, abs=0.2)
    assert fitted.loc[("validation", "jacobi"), "constant"] < fitted.loc[("validation", "exact"), "constant"] / 3
    assert fitted.loc[("inner", "exact"), "slope"] == pytest.approx(2, abs=0.2)
    assert (fitted["n_levels"] >= 5).all()


def test_reparam_exp_at_zero_iterate_is_a_nan_not_a_crash(logistic):
    """x = sign(w)·exp(z) is undefined where w has a zero coordinate (w₀ = 0): the estimate is
    NaN (the runner's ``diverged`` row) and later iterates are fine."""
    lam = draws(logistic, 1)[0]
    est = grads(Reparameterized("reparam_exp", map="exp"), logistic, lam, [(0, None), (5, None)])
    assert torch.isnan(est[(0, None)]).all() and torch.isfinite(est[(5, None)]).all()
