"""Adapters of hypergradient libraries as estimators (optional extras; tests marked by extra,
which make setup installs, so that CI runs them all)."""

import os

import pytest
import torch

from conftest import draws
from hgbench.core.bound import check_applies, estimate
from hgbench.core.reference import reference
from hgbench.estimators.cg import ConjugateGradient
from hgbench.estimators.neumann import Neumann
from hgbench.estimators.itd import ITDReverse
from hgbench.estimators.torchopt_implicit import TorchoptImplicit, TorchoptUnrolled

pytestmark = [pytest.mark.torchopt, pytest.mark.filterwarnings("ignore:We.ve integrated functorch:FutureWarning")]


@pytest.fixture(autouse=True)
def torchopt_installed():
    if os.environ.get("CI"):  # CI installs the extra (Makefile): a missing torchopt fails there, never skips
        import torchopt  # noqa: F401
    else:
        pytest.importorskip("torchopt", reason="needs the torchopt extra: pip install 'hgbench[torchopt]'")


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (ConjugateGradient("cg"), TorchoptImplicit("torchopt_cg", "cg", rtol=0.0)),
        (Neumann("neumann"), TorchoptImplicit("torchopt_neumann", "neumann")),
    ],
)
def test_torchopt_computes_what_hgbench_s_estimator_of_its_role_computes(ridge, ours, theirs):
    """Same t inner steps, same k solver steps: the same ĝ(t, k) to round-off (relative to ‖∇f‖),
    at every k; ∇f itself when converged."""
    lam = draws(ridge, 1)[0]
    ref = reference(ridge, lam)
    pairs = [(60, 1), (60, 3), (60, 10), (300, 300)]
    assert theirs.role == ours.role
    for a, b in zip(estimate(ours, ridge, lam, pairs), estimate(theirs, ridge, lam, pairs)):
        assert (a.t, a.k) == (b.t, b.k)
        scale = torch.linalg.vector_norm(ref.grad)
        assert torch.linalg.vector_norm(a.grad - b.grad) <= 1e3 * torch.finfo(torch.float64).eps * scale
        assert b.cost.n_vjp is None and b.cost.n_phi > a.t  # VJPs inside torchopt are not counted; Φ calls are
    assert torch.linalg.vector_norm(b.grad - ref.grad) <= 1e-10 * scale


@pytest.mark.parametrize("name", ["ridge", "logistic"])
def test_torchopt_unrolled_computes_itd(name, request):
    """torchopt's functional SGD on ℓ with Φ's step, backpropagated: ITD's ĝ(t) and w_t to round-off."""
    problem = request.getfixturevalue(name)
    lam = draws(problem, 1)[0]
    pairs = [(0, None), (1, None), (20, None)]
    for a, b in zip(estimate(ITDReverse("itd"), problem, lam, pairs), estimate(TorchoptUnrolled("torchopt_unrolled"), problem, lam, pairs)):
        assert a.t == b.t and b.k is None and TorchoptUnrolled.role == "itd"
        eps = 100 * torch.finfo(torch.float64).eps
        assert torch.linalg.vector_norm(a.w - b.w) <= eps * max(1.0, torch.linalg.vector_norm(a.w).item())
        assert torch.linalg.vector_norm(a.grad - b.grad) <= eps * max(1e-300, torch.linalg.vector_norm(a.grad).item())


def test_torchopt_unrolled_refuses_a_phi_that_is_not_a_gradient_step():
    """A problem with ℓ whose Φ is not w − α∇₁ℓ: refused with the reason, not a silent ITD of something else."""
    from toy import LinearMap

    class WithLoss(LinearMap):
        def inner_loss(self, w, lam):
            return 0.5 * w.square().sum()

    problem = WithLoss("m", 0, 4, 0.5, -1.0, 1.0)
    with pytest.raises(ValueError, match="not a gradient step"):
        list(estimate(TorchoptUnrolled("torchopt_unrolled"), problem, draws(problem, 1)[0], [(3, None)]))


def test_torchopt_s_default_rtol_stops_cg_early():
    """torchopt's CG stops once ‖r‖ ≤ 1e-5·‖b‖ (its default): on conf/problem/ridge.yaml's problem
    (50 features, cond 100) its error stops falling with k, where rtol=0 goes on to round-off."""
    from hgbench.problems.ridge import Ridge

    ridge = Ridge("ridge", 0, n_train=200, n_val=200, n_features=50, cond=100, noise=0.1, lam_low=-4.0, lam_high=0.0)
    lam = draws(ridge, 1)[0]
    ref = reference(ridge, lam)
    err = {
        rtol: [
            torch.linalg.vector_norm(e.grad - ref.grad).item() / torch.linalg.vector_norm(ref.grad).item()
            for e in estimate(TorchoptImplicit("c", "cg", rtol=rtol), ridge, lam, [(400, 150), (400, 300)])
        ]
        for rtol in (1e-5, 0.0)
    }
    assert err[0.0][1] < 1e-12 and err[1e-5][1] > 1e-7 and err[1e-5][1] == err[1e-5][0], err


def test_torchopt_cg_is_refused_where_the_jacobian_is_not_symmetric():
    from toy import LinearMap

    with pytest.raises(ValueError, match="needs a symmetric"):
        check_applies(TorchoptImplicit("torchopt_cg", "cg"), LinearMap("m", 0, 4, 0.5, -1.0, 1.0))
    check_applies(TorchoptImplicit("torchopt_neumann", "neumann"), LinearMap("m", 0, 4, 0.5, -1.0, 1.0))


def test_torchopt_rows_are_rows_like_hgbench_s_own():
    """`hgbench run estimator=torchopt_cg`: the CSV's rows with the role of hgbench's cg, (t, k),
    time and Φ counts, and n_vjp empty (not observed), status ok."""
    import hgbench

    df = hgbench.evaluate(
        ("ridge", {"n_train": 40, "n_val": 30, "n_features": 6}),
        ["cg", "torchopt_cg"],
        "diag",
        n_lambdas=1,
        progress=False,
        plot=False,
        **{"grid.t": [0, 5, 50]},
    )
    ours, theirs = (df[df["estimator"] == name].set_index(["t", "k"]) for name in ("cg", "torchopt_cg"))
    assert (theirs["role"] == "cg").all() and (theirs["status"] == "ok").all() and theirs["n_vjp"].isna().all()
    assert theirs["time_s"].gt(0).all()  # each row was timed (a value, compared with nothing)
    assert (theirs["n_phi"] >= ours["n_phi"]).all()
    assert list(theirs.index) == list(ours.index)
    assert (
        (theirs["err_abs"] - ours["err_abs"]).abs() <= 1e-6 * ours["err_abs"] + 1e-15
    ).all()  # 6 dims: CG ends before torchopt's rtol stops it


def test_without_torchopt_a_run_is_refused_in_one_line_before_any_work(monkeypatch, tmp_path, capsys):
    import sys

    from conftest import run_cli

    monkeypatch.setitem(sys.modules, "torchopt", None)  # import torchopt now raises ImportError
    code = run_cli(monkeypatch, "run", "estimator=torchopt_cg", "problem=ridge", "grid=diag", "n_lambdas=1", f"hydra.run.dir={tmp_path}")
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'hgbench[torchopt]'" in err and err.count("\n") == 1, err
    assert not (tmp_path / "metrics.csv").exists()
