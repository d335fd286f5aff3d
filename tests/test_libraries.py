"""The adapters of higher, torchdeq and jaxopt (optional extras; each test marked by its extra,
which make setup installs, so that CI runs them all: tests/conftest.need_extra fails rather than
skips under CI) against hgbench's estimator of the same role, to round-off where the math says
they agree; and `hgbench check` flagging torchdeq's default (a documented approximation)."""

import pytest
import torch

from conftest import draws, need_extra
from hgbench.core.bound import check_applies, estimate
from hgbench.core.reference import reference
from hgbench.estimators.cg import ConjugateGradient
from hgbench.estimators.cg_normal import NormalCG
from hgbench.estimators.fp import FixedPoint
from hgbench.estimators.gmres import GMRES
from hgbench.estimators.higher_unrolled import HigherUnrolled
from hgbench.estimators.itd import ITDReverse, ITDTruncated
from hgbench.estimators.jaxopt_implicit import JaxoptImplicit
from hgbench.estimators.torchdeq_backward import TorchdeqImplicit, TorchdeqPhantom
from hgbench.running.check import check
from test_check import EXAMPLE

EPS = torch.finfo(torch.float64).eps


def rel(a, b):
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item()


@pytest.mark.higher
@pytest.mark.parametrize("name", ["ridge", "logistic"])
def test_higher_unrolled_computes_itd(name, request):
    """higher's innerloop_ctx with its differentiable SGD on ℓ (step α of Φ): ITD's w_t and ĝ(t) to round-off."""
    need_extra("higher", "higher")
    problem = request.getfixturevalue(name)
    lam = draws(problem, 1)[0]
    pairs = [(0, None), (1, None), (20, None)]
    for a, b in zip(estimate(ITDReverse("itd"), problem, lam, pairs), estimate(HigherUnrolled("higher_unrolled"), problem, lam, pairs)):
        assert a.t == b.t and b.k is None and HigherUnrolled.role == ITDReverse.role
        assert torch.linalg.vector_norm(a.w - b.w) <= 100 * EPS * max(1.0, torch.linalg.vector_norm(a.w).item())
        assert torch.linalg.vector_norm(a.grad - b.grad) <= 100 * EPS * max(1e-300, torch.linalg.vector_norm(a.grad).item())


@pytest.mark.torchdeq
@pytest.mark.parametrize("name", ["ridge", "logistic"])
def test_torchdeq_phantom_is_truncated_itd(name, request):
    """torchdeq's phantom gradient with grad = k from w_t is hgbench's itd_trunc at (t + k, k):
    the same k taped steps of Φ from the same w_t, so the same numbers to round-off, on any Φ."""
    need_extra("torchdeq", "torchdeq")
    problem = request.getfixturevalue(name)
    lam = draws(problem, 1)[0]
    pairs = [(0, 1), (5, 1), (5, 3), (30, 7)]
    ours = estimate(ITDTruncated("itd_trunc"), problem, lam, [(t + k, k) for t, k in pairs])
    theirs = estimate(TorchdeqPhantom("torchdeq_phantom"), problem, lam, pairs + [(5, 0)])  # k = 0: torchdeq has no such mode, no row
    rows = list(zip(ours, theirs, strict=True))
    assert len(rows) == len(pairs) and TorchdeqPhantom("p").role == ITDTruncated.role
    for a, b in rows:
        assert (a.t, a.k) == (b.t + b.k, b.k)
        assert torch.linalg.vector_norm(a.w - b.w) <= 100 * EPS * torch.linalg.vector_norm(a.w)
        assert torch.linalg.vector_norm(a.grad - b.grad) <= 100 * EPS * torch.linalg.vector_norm(a.grad)


@pytest.mark.torchdeq
def test_torchdeq_implicit_fixed_point_is_aid_fp(ridge):
    """At a solved inner problem, torchdeq's IFT with its fixed_point_iter backward (tol 0) is
    hgbench's fp at every k (to round-off × κ), and ∇f at large k; its default tolerance
    (b_tol = 1e-6, absolute) stops it well above round-off."""
    need_extra("torchdeq", "torchdeq")
    lam = draws(ridge, 1)[0]
    ref = reference(ridge, lam)
    pairs = [(400, 0), (400, 1), (400, 3), (400, 10), (400, 400)]
    tol = 100 * EPS * ref.kappa
    for a, b in zip(
        estimate(FixedPoint("fp"), ridge, lam, pairs), estimate(TorchdeqImplicit("torchdeq_fp", tol=0.0), ridge, lam, pairs), strict=True
    ):
        assert (a.t, a.k) == (b.t, b.k) and TorchdeqImplicit("x").role == FixedPoint.role
        assert torch.linalg.vector_norm(a.grad - b.grad) <= tol * torch.linalg.vector_norm(ref.grad)
    assert rel(b.grad, ref.grad) <= tol
    (default,) = estimate(TorchdeqImplicit("torchdeq_fp"), ridge, lam, [(400, 400)])
    assert rel(default.grad, ref.grad) > 1e3 * tol  # stopped by b_tol = 1e-6, not by k


@pytest.mark.torchdeq
def test_check_flags_torchdeq_s_default_one_step_gradient():
    """get_deq()'s default backward is the 1-step gradient (ift=False, grad=1; torchdeq's docs:
    "ift ... Default False", "grad ... Default 1"): on w = w/2 + λ it returns ∂Φ/∂λ = 1 times
    ∇₁E where the exact factor is (1 − 1/2)⁻¹ = 2, half of ∇f: `hgbench check` flags it; with
    ift=True and tight tolerances it passes. (Not exactly half: the default forward solve also
    stops early, at ‖z_{i+1} − z_i‖ < f_tol = 1e-3, so E's gradient is taken short of w*.)"""
    need_extra("torchdeq", "torchdeq")
    report = check(EXAMPLE.torchdeq_default, **EXAMPLE.fixed_point_problem())
    assert report.verdict == "wrong" and report.err_rel == pytest.approx(0.5, abs=2e-3), str(report)
    tight = {"ift": True, "f_tol": 1e-15, "f_max_iter": 100, "b_tol": 1e-15, "b_max_iter": 100}
    assert check(lambda lam: EXAMPLE.torchdeq_default(lam, **tight), **EXAMPLE.fixed_point_problem()).verdict == "ok"


@pytest.mark.jaxopt
@pytest.mark.parametrize("ours, solver", [(ConjugateGradient("cg"), "cg"), (NormalCG("cg_normal"), "normal_cg"), (GMRES("gmres"), "gmres")])
def test_jaxopt_computes_what_hgbench_s_estimator_of_its_role_computes(ridge, ours, solver):
    """jaxopt's root_vjp with solve_cg / solve_normal_cg / solve_gmres (tol 0, k iterations) on
    the linearization handed over through numpy: hgbench's cg, cg_normal, gmres at the same
    (t, k) to round-off × conditioning (κ² for the normal equations)."""
    need_extra("jaxopt", "jaxopt")
    lam = draws(ridge, 1)[0]
    ref = reference(ridge, lam)
    theirs = JaxoptImplicit(f"jaxopt_{solver}", solver, tol=0.0)
    assert theirs.role == ours.role
    pairs = [(5, 2), (300, 12)]
    tol = 100 * EPS * (ref.kappa**2 if solver == "normal_cg" else ref.kappa)
    for a, b in zip(estimate(ours, ridge, lam, pairs), estimate(theirs, ridge, lam, pairs), strict=True):
        assert (a.t, a.k) == (b.t, b.k)
        assert torch.linalg.vector_norm(a.grad - b.grad) <= tol * torch.linalg.vector_norm(ref.grad)
    assert rel(b.grad, ref.grad) <= tol  # k = dim w = 8 < 12: converged


@pytest.mark.jaxopt
def test_jaxopt_cg_is_refused_where_the_jacobian_is_not_symmetric():
    from toy import LinearMap

    need_extra("jaxopt", "jaxopt")
    with pytest.raises(ValueError, match="needs a symmetric"):
        check_applies(JaxoptImplicit("jaxopt_cg", "cg"), LinearMap("m", 0, 4, 0.5, -1.0, 1.0))
    check_applies(JaxoptImplicit("jaxopt_gmres", "gmres"), LinearMap("m", 0, 4, 0.5, -1.0, 1.0))


@pytest.mark.higher
@pytest.mark.torchdeq
@pytest.mark.jaxopt
def test_library_rows_are_rows_like_hgbench_s_own():
    """`hgbench run estimator=...`: each library's rows carry its role, (t, k), a time, n_vjp
    empty (not observed), status ok; and equal errors where the math says so (converged t)."""
    import hgbench

    for module, extra in (("higher", "higher"), ("torchdeq", "torchdeq"), ("jaxopt", "jaxopt")):
        need_extra(module, extra)
    df = hgbench.evaluate(
        ("ridge", {"n_train": 40, "n_val": 30, "n_features": 6}),
        ["itd", "fp", "cg", "higher_unrolled", "torchdeq_fp", "jaxopt_cg"],
        "diag",
        n_lambdas=1,
        progress=False,
        plot=False,
        **{"grid.t": [0, 5, 200]},
    )
    by = {name: part.set_index(["t", "k"]) if part["k"].notna().any() else part.set_index("t") for name, part in df.groupby("estimator")}
    for ours, theirs, role in (("itd", "higher_unrolled", "itd"), ("fp", "torchdeq_fp", "fp"), ("cg", "jaxopt_cg", "cg")):
        rows = by[theirs]
        assert (rows["role"] == role).all() and (rows["status"] == "ok").all() and rows["n_vjp"].isna().all(), theirs
        assert rows["time_s"].gt(0).all()  # each row was timed (a value, compared with nothing)
        assert list(rows.index) == list(by[ours].index)
    assert abs(by["itd"]["err_abs"] - by["higher_unrolled"]["err_abs"]).max() <= 1e-12
    assert abs(by["cg"].loc[(200, 200), "err_abs"] - by["jaxopt_cg"].loc[(200, 200), "err_abs"]) <= 1e-12
