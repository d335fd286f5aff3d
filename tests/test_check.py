"""`hgbench check` / hgbench.check: a correct hypergradient passes, a wrong one is flagged, an
uncertified or contradicted reference never gives ok, and the command's exit codes."""

import importlib.util
import json
import os

import pytest
import torch

from conftest import TESTS, run_cli
from hgbench.core.bound import estimate
from hgbench.estimators.cg import ConjugateGradient
from hgbench.running import check as check_module
from hgbench.running.check import check
from hgbench.running.errors import UserError
from hgbench.testing import assert_hypergradient

RIDGE = ("ridge", {"n_train": 60, "n_val": 40, "n_features": 8, "cond": 30})


def ridge_closed_form(lam, problem):
    """Ridge's ∇f without hgbench's reference: w* = H⁻¹Xᵀy/n, v = H⁻¹∇₁E(w*), ∇f = −exp(λ)⊙w*⊙v
    (∂²ℓ/∂λⱼ∂wⱼ = exp(λⱼ)wⱼ, E independent of λ), in the dtype of λ."""
    h = problem.hessian(lam)
    w = torch.linalg.solve(h, problem.xty)
    grad_w = problem.x_val.T @ (problem.x_val @ w - problem.y_val) / problem.x_val.shape[0]
    return -torch.exp(lam) * w * torch.linalg.solve(h, grad_w)


def perturbed(lam, problem, size=1e-3):
    """The closed form plus a perturbation of relative size ``size`` in a seeded random direction."""
    g = ridge_closed_form(lam, problem)
    u = torch.randn(g.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(g.dtype)
    return g + size * torch.linalg.vector_norm(g) * u / torch.linalg.vector_norm(u)


def cg_estimator(lam, problem):
    """hgbench's own AID-CG at t = k = 300 (converged to round-off on this problem)."""
    (est,) = estimate(ConjugateGradient("cg"), problem, lam, [(300, 300)])
    return est.grad


@pytest.mark.parametrize("hypergradient", [ridge_closed_form, cg_estimator])
def test_a_correct_hypergradient_passes(hypergradient):
    report = check(hypergradient, RIDGE, dtype="float64")
    assert report.verdict == "ok" and report.exit_code == 0, str(report)
    assert report.certificate["certified"] and report.cross_check_ok
    assert report.err_rel <= report.rtol
    assert "OK" in str(report)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_relative_perturbation_of_1e_3_is_flagged(dtype):
    report = check(perturbed, RIDGE, dtype=dtype)
    assert report.verdict == "wrong" and report.exit_code == 1, str(report)
    assert report.err_rel == pytest.approx(1e-3, rel=1e-2)  # the check measures the perturbation put in


def test_the_default_tolerance_passes_correct_float32_code_on_an_ill_conditioned_problem():
    """float32 round-off grows with κ; the default max(√ε, 10·κ·ε) does not flag a correct solve."""
    report = check(ridge_closed_form, ("ridge", {**RIDGE[1], "cond": 1e4}), dtype="float32")
    assert report.verdict == "ok", str(report)
    assert report.dtype == "float32" and report.rtol >= torch.finfo(torch.float32).eps ** 0.5


def test_an_uncertified_reference_never_gives_ok(monkeypatch):
    exact = check(ridge_closed_form, RIDGE, dtype="float64")
    assert exact.verdict == "ok"
    monkeypatch.setattr(check_module, "certify", lambda ref: {"certified": False, "reason": "reference not certified: test"})
    for hypergradient in (ridge_closed_form, perturbed):
        report = check(hypergradient, RIDGE, dtype="float64")
        assert report.verdict == "undecided" and report.exit_code == 3, str(report)
        assert "not certified" in report.reason


def test_the_reference_bound_widens_the_verdict(monkeypatch):
    """With certify's bound b on ‖∇f_ref − ∇f‖: ok needs err + b ≤ tol, wrong needs err − b > tol."""
    real = check_module.certify
    bound = {"b": 0.0}
    monkeypatch.setattr(check_module, "certify", lambda ref: {**real(ref), check_module.REFERENCE_BOUND: bound["b"]})
    wrong = check(perturbed, RIDGE, dtype="float64")
    bound["b"] = 10 * wrong.err_abs  # the reference might be as far off as the perturbation
    for hypergradient in (ridge_closed_form, perturbed):
        report = check(hypergradient, RIDGE, dtype="float64")
        assert report.verdict == "undecided", str(report)


def test_the_cross_check_contradicts_a_wrong_reference(monkeypatch):
    """A reference off by 1e-5 relative is caught by the central differences: nothing is ok then."""
    real = check_module.reference

    def off(problem, lam, method):
        ref = real(problem, lam, method)
        ref.grad = ref.grad * (1 + 1e-5)
        return ref

    monkeypatch.setattr(check_module, "reference", off)
    report = check(ridge_closed_form, RIDGE, dtype="float64")
    assert not report.cross_check_ok and report.verdict == "undecided", str(report)


def test_the_cross_check_agrees_with_the_reference():
    """On a non-quadratic ℓ (logistic regression); ridge's agreement is part of every test above."""
    report = check(lambda lam: torch.zeros_like(lam), ("logistic", {"n_samples": 60, "n_features": 4}), dtype="float64", directions=2)
    assert report.cross_check_ok, str(report)
    assert len(report.cross_check) == 2 and report.verdict == "wrong"


def test_the_plain_form_with_modules_and_dicts_reports_per_block():
    """ℓ and E on an nn.Linear's parameters (w) and a dict λ: the check's cross-check agrees, the
    error of a zero answer is ∇f block by block, an error put in one block shows in that block only."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 3, generator=gen, dtype=torch.float64), torch.randn(30, 1, generator=gen, dtype=torch.float64)
    xv, yv = torch.randn(20, 3, generator=gen, dtype=torch.float64), torch.randn(20, 1, generator=gen, dtype=torch.float64)
    model = torch.nn.Linear(3, 1).double()

    def predict(w, data):
        return torch.func.functional_call(model, w, (data,))

    def inner_loss(w, lam):
        fit = (predict(w, x) - y).square().mean() + torch.log1p((predict(w, x) - y).square()).mean()
        return fit + 0.5 * (torch.exp(lam["weight"]) * w["weight"].square()).sum() + 0.5 * torch.exp(lam["bias"]) * w["bias"].square().sum()

    def outer(w, lam):
        return 0.5 * (predict(w, xv) - yv).square().mean()

    lam = {"weight": torch.tensor([[-1.0, 0.0, 0.5]], dtype=torch.float64), "bias": torch.tensor(-2.0, dtype=torch.float64)}
    plain = {"inner_loss": inner_loss, "outer": outer, "w0": model, "lam": lam, "directions": 1}
    zero = check(lambda l: {k: torch.zeros_like(v) for k, v in l.items()}, **plain)
    assert zero.cross_check_ok and zero.certificate["certified"] and zero.verdict == "wrong", str(zero)
    assert all(block["err_abs"] == block["norm"] > 0 for block in zero.blocks.values())  # a zero answer is off by ∇f itself
    reference = torch.tensor(zero.details["reference"], dtype=torch.float64)
    off = {"weight": reference[:3].reshape(1, 3), "bias": reference[3].reshape(()) * 1.01}
    report = check(lambda l: off, **plain)
    assert report.verdict == "wrong" and report.blocks["weight"]["err_abs"] == 0, str(report)
    assert report.blocks["bias"]["err_rel"] == pytest.approx(0.01)


def test_the_plain_form_with_a_map_phi():
    """Φ(w, λ) = A w + B λ (A not symmetric, ‖A‖₂ = 0.7), E = ½‖w − c‖²: ∇f = Bᵀ(I − A)⁻ᵀ(w* − c)."""
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    a = 0.7 * a / torch.linalg.matrix_norm(a, ord=2)
    b, c = torch.randn(6, 4, generator=gen, dtype=torch.float64), torch.randn(6, generator=gen, dtype=torch.float64)
    eye = torch.eye(6, dtype=torch.float64)

    def closed(lam):
        w = torch.linalg.solve(eye - a, b @ lam)
        return b.T @ torch.linalg.solve((eye - a).T, w - c)

    plain = {
        "phi": lambda w, lam: a @ w + b @ lam,
        "outer": lambda w, lam: 0.5 * (w - c).square().sum(),
        "w0": torch.zeros(6, dtype=torch.float64),
        "lam": torch.tensor([0.3, -1.0, 2.0, 0.1], dtype=torch.float64),
    }
    assert check(closed, **plain).verdict == "ok"
    assert check(lambda lam: closed(lam) * (1 + 1e-3), **plain).verdict == "wrong"


def _example():
    """examples/check/mine.py, the worked example docs/check.md runs: its scalar problem and its
    torchopt call are the ones tested here."""
    spec = importlib.util.spec_from_file_location("check_example", TESTS.parent / "examples" / "check" / "mine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE = _example()
scalar_problem = EXAMPLE.scalar_problem  # w and λ 0-dim tensors: w* = λ/2, ∇f(λ) = (λ/2 − 1)/2


def implicit_with_cg(lam, maxiter_rule):
    """Implicit differentiation of the scalar problem, the adjoint (∂²ℓ/∂w²) v = ∂E/∂w solved by
    CG whose iteration cap follows ``maxiter_rule(b)``; ∇f = −(∂²ℓ/∂λ∂w) v = v."""
    w = lam / 2
    b = w - 1
    v = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    for _ in range(maxiter_rule(b)):
        ap = 2 * p
        step = (r * r).sum() / (p * ap).sum()
        v, r_new = v + step * p, r - step * ap
        if r_new.abs().max() == 0:
            break
        p, r = r_new + (r_new * r_new).sum() / (r * r).sum() * p, r_new
    return v


def test_the_scalar_b_cg_pattern_is_flagged():
    """torchopt issue 222 (open): its CG sets maxiter = 10 · size(b) with size the SUM of b's
    shape, 0 for a scalar, so the solve returns v = 0. The same rule by hand, and the correct one
    (10 · numel), on the scalar problem."""
    assert check(lambda lam: implicit_with_cg(lam, lambda b: 10 * b.numel()), **scalar_problem()).verdict == "ok"
    report = check(lambda lam: implicit_with_cg(lam, lambda b: 10 * sum(b.shape)), **scalar_problem())
    assert report.verdict == "wrong" and report.err_rel == pytest.approx(1.0), str(report)


@pytest.mark.torchopt
@pytest.mark.filterwarnings("ignore:We.ve integrated functorch:FutureWarning")  # torchopt 0.7.3 calls functorch.vjp
def test_torchopt_scalar_cg_is_flagged():
    """The real torchopt: implicit differentiation (custom_root with its CG solve) of the scalar
    problem returns ∇f = 0 (issue 222); with λ of shape (1,) the same code is right."""
    if os.environ.get("CI"):  # CI installs the extra (Makefile): a missing torchopt fails there, never skips
        import torchopt  # noqa: F401
    else:
        pytest.importorskip("torchopt", reason="needs the torchopt extra: pip install 'hgbench[torchopt]'")
    hypergradient = EXAMPLE.torchopt_scalar  # examples/check/mine.py: custom_root with its CG solve
    report = check(hypergradient, **scalar_problem())
    assert report.verdict == "wrong" and report.err_rel == pytest.approx(1.0), str(report)
    vector = {**scalar_problem(), "w0": torch.zeros(1, dtype=torch.float64), "lam": torch.tensor([0.5], dtype=torch.float64)}
    assert check(hypergradient, **vector).verdict == "ok"


def test_assert_hypergradient():
    assert assert_hypergradient(ridge_closed_form, RIDGE, dtype="float64").ok
    with pytest.raises(AssertionError, match="hypergradient check: wrong"):
        assert_hypergradient(perturbed, RIDGE, dtype="float64")


HYPERGRADIENTS = """
import torch

def right(lam, problem):
    h = problem.hessian(lam)
    w = torch.linalg.solve(h, problem.xty)
    grad_w = problem.x_val.T @ (problem.x_val @ w - problem.y_val) / problem.x_val.shape[0]
    return -torch.exp(lam) * w * torch.linalg.solve(h, grad_w)

def wrong(lam, problem):
    return right(lam, problem) * (1 + 1e-3)

def fails(lam):
    raise RuntimeError("my solver broke")
"""


def test_the_command_s_exit_codes(tmp_path, monkeypatch, capsys):
    mine = tmp_path / "mine.py"
    mine.write_text(HYPERGRADIENTS)
    common = ["--problem", "ridge", "n_train=60", "n_val=40", "n_features=8", "--dtype", "float64"]
    assert run_cli(monkeypatch, "check", f"{mine}:right", *common, "--json", tmp_path / "r.json") == 0
    assert "verdict     OK" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["verdict"] == "ok"
    assert run_cli(monkeypatch, "check", f"{mine}:wrong", *common) == 1
    assert "verdict     WRONG" in capsys.readouterr().out
    assert run_cli(monkeypatch, "check", f"{mine}:fails", *common) == 1
    assert "RuntimeError: my solver broke" in capsys.readouterr().err
    for bad in (
        [f"{tmp_path}/none.py:right"],
        [f"{mine}:nothing"],
        ["no_colon"],
        [f"{mine}:right", "--problem", "nosuch"],
        [f"{mine}:right", "--problem", "ridge", "n_features=-3"],
    ):
        assert run_cli(monkeypatch, "check", *bad) == 2, bad
        err = capsys.readouterr().err
        assert err.startswith("hgbench check: error:") and err.count("\n") == 1, err
    monkeypatch.setattr(check_module, "certify", lambda ref: {"certified": False, "reason": "reference not certified: test"})
    assert run_cli(monkeypatch, "check", f"{mine}:right", *common) == 3
    assert "UNDECIDED" in capsys.readouterr().out


def test_a_problem_without_a_strict_minimum_is_refused_in_one_line():
    """ℓ(w, λ) = (w₁ − λ)² is flat along w₂: its Hessian is singular, Newton cannot find w*."""
    plain = {
        "inner_loss": lambda w, lam: (w[0] - lam).square().sum(),
        "outer": lambda w, lam: w.sum(),
        "w0": torch.zeros(2, dtype=torch.float64),
        "lam": torch.tensor([0.5], dtype=torch.float64),
    }
    with pytest.raises(UserError, match="reference cannot be computed.*singular"):
        check(lambda lam: lam, **plain)


def test_the_five_lines_of_docs_check_md():
    """docs/check.md's first snippet, run as printed, on float32 data and a float32 hypergradient."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "check.md").read_text()
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(snippet.strip().splitlines()) == 5
    gen = torch.Generator().manual_seed(0)
    n, d = 40, 4
    x, y, xv, yv = (torch.randn(*shape, generator=gen) for shape in ((n, d), (n,), (n, d), (n,)))

    def my_hypergradient(lam):
        h = x.T @ x / n + torch.diag(torch.exp(lam))
        w = torch.linalg.solve(h, x.T @ y / n)
        return -torch.exp(lam) * w * torch.linalg.solve(h, xv.T @ (xv @ w - yv) / n)

    space = {"X": x, "y": y, "Xv": xv, "yv": yv, "d": d, "lam": torch.zeros(d), "my_hypergradient": my_hypergradient}
    exec(snippet, space)  # noqa: S102 — the documentation's own example
    assert space["report"].ok and space["report"].dtype == "float32"
