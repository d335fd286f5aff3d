"""Outer-loop mode (mode=outer): exact hypergradients give gradient descent on the closed-form
f, warm starts, solvers started from v₀, resume after SIGKILL, refusals, figure and summary."""

import signal

import pandas as pd
import pytest
import torch
from conftest import TESTS, run_cli, signal_when_paused

from hgbench.core.bound import bind, estimate
from hgbench.analysis.outer_loop import summary, with_gaps
from hgbench.core.optimum import certified_optimum, stationarity, stationarity_uncertified
from hgbench.core.reference import reference
from hgbench.estimators.cg import ConjugateGradient
from hgbench.estimators.cg_normal import NormalCG
from hgbench.estimators.fp import FixedPoint
from hgbench.estimators.gmres import GMRES
from hgbench.estimators.neumann import Neumann
from hgbench.problems.meta_learning import MetaLearning
from hgbench.problems.ridge import Ridge
from hgbench.running.outer_loop import STATE

RIDGE = [
    "mode=outer",
    "problem=ridge",
    "problem.n_train=60",
    "problem.n_val=40",
    "problem.n_features=8",
    "problem.cond=30",
    "outer.eval_every=1",
    "plot=false",
]


def ridge_problem():
    return Ridge("ridge", seed=0, n_train=60, n_val=40, n_features=8, cond=30.0, noise=0.1, lam_low=-4.0, lam_high=0.0)


def closed_form(problem, lam):
    """f(λ) and ∇f(λ) of ridge from w* = H⁻¹Xᵀy/n: ∂w*/∂λⱼ = −H⁻¹eⱼ exp(λⱼ) w*ⱼ, so
    ∇f = −exp(λ) ⊙ w* ⊙ H⁻¹∇₁E(w*) with ∇₁E = X_vᵀ(X_v w* − y_v)/n_v."""
    h = problem.hessian(lam)
    w = torch.linalg.solve(h, problem.xty)
    resid = problem.x_val @ w - problem.y_val
    grad_e = problem.x_val.T @ resid / len(resid)
    return 0.5 * resid.square().mean().item(), -torch.exp(lam) * w * torch.linalg.solve(h, grad_e)


@pytest.mark.parametrize("estimator", [["estimator=exact"], ["estimator=cg", "outer.k=8"]])
def test_exact_hypergradients_follow_gradient_descent_on_the_closed_form(tmp_path, monkeypatch, estimator):
    out = tmp_path / "run"
    code = run_cli(monkeypatch, "run", *RIDGE, *estimator, "outer.t=3000", "outer.steps=8", "outer.lr=20", f"hydra.run.dir={out}")
    assert code == 0
    rows = pd.read_csv(out / "outer.csv")
    problem = ridge_problem()
    lam = problem.sample_lambdas(1, torch.Generator().manual_seed(0))[0]
    values = [closed_form(problem, lam)[0]]
    for _ in range(8):  # λ_{s+1} = λ_s − lr ∇f(λ_s)
        lam = lam - 20 * closed_form(problem, lam)[1]
        values.append(closed_form(problem, lam)[0])
    assert list(rows["step"]) == list(range(9))
    assert max(abs(a - b) for a, b in zip(rows["f"], values)) < 1e-10
    assert values[-1] < values[0] - 1e-4  # the run really moved downhill
    final = torch.load(out / STATE, weights_only=True)["lam"]
    assert torch.linalg.vector_norm(final - lam).item() < 1e-10


def test_warm_start_reproduces_the_cold_start_when_t_is_large(tmp_path, monkeypatch):
    """With t large the inner problem is solved from any start, and with k = dim w CG solves
    the system from any v₀: warm and cold runs give the same λ path (f, outer values)."""
    runs = {}
    for warm in ("none", "inner", "inner+solver"):
        out = tmp_path / warm
        assert (
            run_cli(
                monkeypatch,
                "run",
                *RIDGE,
                "estimator=cg",
                "outer.t=2000",
                "outer.k=8",
                "outer.steps=6",
                "outer.lr=20",
                "outer.momentum=0.5",
                f"outer.warm_start={warm}",
                f"hydra.run.dir={out}",
            )
            == 0
        )
        runs[warm] = pd.read_csv(out / "outer.csv")
    cold = runs["none"]
    for warm in ("inner", "inner+solver"):
        for column in ("f", "outer_value", "err_rel"):
            assert (runs[warm][column] - cold[column]).abs().max() < 1e-10
    # the same budgets; CG from v₀ pays one VJP for r₀ = b − (I − Jᵀ)v₀ at every step after the first
    warm = runs["inner+solver"]
    assert ((warm["n_vjp"] - cold["n_vjp"]) == (warm["step"] - 1).clip(lower=0)).all() and (warm["n_phi"] == cold["n_phi"]).all()


@pytest.fixture(scope="module")
def system():
    """A ridge problem bound at one λ, its w* and the exact adjoint v* at w*."""
    problem = ridge_problem()
    lam = problem.sample_lambdas(1, torch.Generator().manual_seed(1))[0]
    ref = reference(problem, lam)
    grad_w = torch.func.grad(problem.outer)(ref.w_star, lam)
    v_star = problem.adjoint_system(lam, ref.w_star, grad_w)[0]
    return problem, lam, ref, v_star


@pytest.mark.parametrize("make", [FixedPoint, ConjugateGradient, NormalCG, GMRES, Neumann])
def test_solvers_started_at_the_solution_stay_there(system, make):
    """From v₀ = v* (and w₀ = w*) every solver's iterates stay at v*: the residual it starts
    from is zero. Cold (v₀ = None) they move away from 0 towards v*."""
    problem, lam, ref, v_star = system
    est = make(make.__name__)
    warm = list(estimate(est, problem, lam, [(0, k) for k in (0, 1, 5, 20)], w0=ref.w_star, v0=v_star))
    for e in warm:
        assert (torch.linalg.vector_norm(e.v - v_star) / torch.linalg.vector_norm(v_star)).item() < 1e-10
        assert (torch.linalg.vector_norm(e.grad - ref.grad) / torch.linalg.vector_norm(ref.grad)).item() < 1e-10
    cold = list(estimate(est, problem, lam, [(0, 1)], w0=ref.w_star))[0]
    assert torch.linalg.vector_norm(cold.v - v_star).item() > 1e-6


def test_fixed_point_from_v0_and_neumann_from_v0(system):
    """fp from v₀ is v_k = (Jᵀ)ᵏv₀ + Σ_{i<k}(Jᵀ)ⁱb with k VJPs; neumann from v₀ is the Neumann
    series of the residual, v₀ + Σ_{i≤k}(Jᵀ)ⁱr₀, which equals fp(k + 1) from v₀ (one VJP for r₀)."""
    problem, lam, ref, v_star = system
    w = ref.w_star
    v0 = torch.randn(w.numel(), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    lin = bind(problem, lam).linearize(w)
    b = torch.func.grad(problem.outer)(w, lam)
    v = v0
    for _ in range(3):
        v = lin.jt(v) + b
    (fp3,) = estimate(FixedPoint("fp"), problem, lam, [(0, 3)], w0=w, v0=v0)
    (fp4,) = estimate(FixedPoint("fp"), problem, lam, [(0, 4)], w0=w, v0=v0)
    (neu3,) = estimate(Neumann("neumann"), problem, lam, [(0, 3)], w0=w, v0=v0)
    assert torch.allclose(fp3.v, v, rtol=0, atol=1e-14)
    assert torch.allclose(neu3.v, fp4.v, rtol=0, atol=1e-12)
    assert (fp3.cost.n_vjp, neu3.cost.n_vjp) == (3 + 1, 3 + 1 + 1)  # k steps, r₀ (neumann), the final ∂₂Φᵀv


def test_clamp_keeps_lambda_in_the_box_and_refusals(tmp_path, monkeypatch, capsys):
    out = tmp_path / "clamped"
    assert (
        run_cli(
            monkeypatch,
            "run",
            *RIDGE,
            "estimator=fp",
            "outer.t=50",
            "outer.k=50",
            "outer.steps=5",
            "outer.lr=1e4",
            "outer.clamp=true",
            f"hydra.run.dir={out}",
        )
        == 0
    )
    lam = torch.load(out / STATE, weights_only=True)["lam"]
    assert lam.min() >= -4.0 and lam.max() <= 0.0 and ((lam == -4.0) | (lam == 0.0)).any()  # pushed to the boundary
    capsys.readouterr()
    assert run_cli(monkeypatch, "run", *RIDGE, "outer.warm_start=cold", f"hydra.run.dir={tmp_path / 'bad'}") == 2
    assert "outer.warm_start='cold' is not one of none, inner, inner+solver" in capsys.readouterr().err
    assert run_cli(monkeypatch, "run", "mode=outer", "problem=hyper_rep", "outer.clamp=true", f"hydra.run.dir={tmp_path / 'bad2'}") == 2
    assert "has no box" in capsys.readouterr().err
    assert run_cli(monkeypatch, "run", *RIDGE, "outer.optimizer=lbfgs", f"hydra.run.dir={tmp_path / 'bad3'}") == 2
    assert "outer.optimizer='lbfgs' is not one of sgd, adam" in capsys.readouterr().err


def test_equilibrium_model_outer_loop_with_warm_adjoint_and_a_sweep_figure(tmp_path, monkeypatch, capsys):
    """mode=outer on equilibrium_mnist: projected λ, test accuracy logged; itd with
    inner+solver runs as inner with a note; the sweep's figure and summary."""
    sweep = tmp_path / "sweep"
    code = run_cli(
        monkeypatch,
        "run",
        "-m",
        "mode=outer",
        "problem=equilibrium_mnist",
        "problem.state_dim=8",
        "problem.n_train=40",
        "problem.n_val=10",
        "problem.n_test=20",
        "estimator=itd,cg_normal",
        "outer.warm_start=inner+solver",
        "outer.t=5",
        "outer.k=5",
        "outer.steps=4",
        "outer.lr=0.5",
        "outer.eval_every=2",
        f"hydra.sweep.dir={sweep}",
    )
    assert code == 0
    assert "itd has no linear solver to warm-start; outer.warm_start=inner+solver runs as inner" in capsys.readouterr().out
    rows = pd.read_csv(sweep / "outer.csv")
    assert sorted(rows["estimator"].unique()) == ["cg_normal", "itd"] and (rows["status"] == "ok").all()
    evaluated = rows[rows["f"].notna()]
    assert list(evaluated["step"].unique()) == [0, 2, 4] and evaluated["test_acc"].between(0, 1).all()
    assert (evaluated["q"] <= 0.99 + 1e-9).all()
    assert (sweep / "outer.png").exists() and (sweep / "outer_summary.csv").exists()
    (sweep / "outer_summary.csv").unlink()
    assert run_cli(monkeypatch, "plot", sweep, "--kind", "outer", "--eps", "0.5") == 0
    table = pd.read_csv(sweep / "outer_summary.csv")
    assert sorted(table["run"]) == ["cg_normal, warm=inner+solver", "itd, warm=inner+solver"] and (table["seeds"] == 1).all()


KILLED = [
    "mode=outer",
    "problem=faulty_map",
    f"hydra.searchpath=[file://{TESTS / 'conf'}]",
    "estimator=fp",
    "outer.t=5",
    "outer.k=3",
    "outer.steps=12",
    "outer.lr=0.3",
    "outer.momentum=0.5",
    "outer.warm_start=inner+solver",
    "outer.eval_every=3",
    "outer.checkpoint_every=4",
    "outer.optimum_evals=0",
    "resume=true",
    "plot=false",
]
# (outer.optimum_evals=0: the pause counts FaultyMap's inner solves, which the certified optimum's solve would also make)


def test_killed_outer_run_resumes_to_the_uninterrupted_rows(tmp_path, monkeypatch):
    """An outer run killed (SIGKILL) at the reference of step 9 resumes from the state of step 8
    (λ, momentum, warm starts w and v, counts) and ends with exactly the rows of an
    uninterrupted run (measured times aside)."""
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert run_cli(monkeypatch, "run", *KILLED, f"hydra.run.dir={full}") == 0
    assert signal_when_paused(tmp_path, 3, *KILLED, f"hydra.run.dir={killed}")[0] == -signal.SIGKILL
    assert torch.load(killed / STATE, weights_only=True)["step"] == 8 and not list(killed.glob(".*.tmp"))
    assert list(pd.read_csv(killed / "outer.csv")["step"]) == list(range(8))
    assert run_cli(monkeypatch, "run", *KILLED, f"hydra.run.dir={killed}") == 0
    done, reference_rows = pd.read_csv(killed / "outer.csv"), pd.read_csv(full / "outer.csv")
    numbers = [c for c in reference_rows.columns if c not in ("time_s", "ref_time_s")]
    pd.testing.assert_frame_equal(done[numbers], reference_rows[numbers])
    assert list(done["step"]) == list(range(13)) and done["f"].notna().sum() == 5 and done["n_vjp"].is_monotonic_increasing
    assert run_cli(monkeypatch, "run", *KILLED, f"hydra.run.dir={killed}") == 0  # finished: kept, not recomputed
    assert pd.read_csv(killed / "outer.csv")["time_s"].tolist() == done["time_s"].tolist()


def test_adam_takes_its_first_step_of_size_lr_on_every_coordinate(tmp_path, monkeypatch):
    """torch.optim.Adam's first step is lr·g/(|g| + eps), i.e. lr·sign(g) per coordinate up to
    eps = 1e-8 against |g| (here ≥ 1e-6: within 1% of lr)."""
    out = tmp_path / "adam"
    assert (
        run_cli(
            monkeypatch, "run", *RIDGE, "estimator=fp", "outer.optimizer=adam", "outer.lr=0.01", "outer.steps=1", f"hydra.run.dir={out}"
        )
        == 0
    )
    lam0 = ridge_problem().sample_lambdas(1, torch.Generator().manual_seed(0))[0]
    moved = (torch.load(out / STATE, weights_only=True)["lam"] - lam0).abs()
    assert ((moved > 0.0099) & (moved <= 0.01)).all()


# --- the certified optimum f* and the summary against it --------------------------------------


def ridge_f(problem, lam):
    """f(λ) of ridge in float64 from the closed form alone (``closed_form``), not the reference."""
    return closed_form(problem, lam)[0]


def test_certified_optimum_is_stationary_by_central_differences():
    """f* of ridge on its box [−4, 0]⁸: the projected-gradient stationarity π at λ* measured
    independently, with ∇f by central differences of the closed-form f in float64, is within the
    solve's tolerance (plus the differences' own error, measured as the change from h to h/2);
    λ₀ itself was far from stationary, and the same λ₀ gives the same f*."""
    problem = ridge_problem()
    low, high = problem.box()
    box = lambda lam: torch.clamp(lam, low, high)
    lam0 = problem.sample_lambdas(1, torch.Generator().manual_seed(0))[0]
    found = certified_optimum(problem, lam0, box)
    assert found["certified"] and found["stationarity"] <= found["tol"] == pytest.approx(1e-6 * found["pi0"])
    lam = torch.tensor(found["lam_star"], dtype=torch.float64)

    def differences(h):
        eye = torch.eye(len(lam), dtype=torch.float64)
        return torch.tensor([(ridge_f(problem, lam + h * e) - ridge_f(problem, lam - h * e)) / (2 * h) for e in eye])

    coarse, fine = differences(1e-4), differences(5e-5)
    fd_error = torch.linalg.vector_norm(coarse - fine).item()
    pi_fd = stationarity(lam, fine, box)
    assert fd_error < 0.1 * found["tol"]  # the check can see a violation of the tolerance
    assert pi_fd <= found["tol"] + fd_error
    assert abs(found["f_star"] - ridge_f(problem, lam)) <= 1e-12 * found["f_star"]
    pi0_fd = stationarity(lam0, closed_form(problem, lam0)[1], box)
    assert pi0_fd > 1e5 * found["tol"] and found["f_star"] < ridge_f(problem, lam0)
    again = certified_optimum(problem, lam0, box)
    assert again["f_star"] == found["f_star"] and again["lam_star"] == found["lam_star"]


def test_an_optimum_not_reached_in_budget_is_not_certified():
    problem = ridge_problem()
    lam0 = problem.sample_lambdas(1, torch.Generator().manual_seed(0))[0]
    found = certified_optimum(problem, lam0, lambda lam: lam, max_evals=3)
    assert not found["certified"] and found["reason"].startswith("no certified optimum: π = ") and found["f_star"] != found["f_star"]
    assert not certified_optimum(problem, lam0, lambda lam: lam, max_evals=0)["certified"]


def test_stationarity_is_certified_by_the_absolute_bound_not_the_relative_gate():
    """At λ* the gradient is small, so certify's relative gate (bound/‖ĝ‖ ≤ 1e-6) fails for an
    accurate reference; π(λ*) is certified when the residuals pass and π + bound ≤ tol (π is
    1-Lipschitz in ∇f), and not when the bound could hide a violation or a residual fails."""
    cert = {
        "fixed_point_rel": 1e-16,
        "linear_rel": 1e-16,
        "grad_error_bound": 1e-12,
        "certified": False,
        "tolerances": {"fixed_point_rel": 1e-10, "linear_rel": 1e-10},
        "reason": "reference not certified: relative 1e-05",
    }
    assert stationarity_uncertified(cert, 1e-7, 1e-6) == ""
    assert "π + the reference's error bound" in stationarity_uncertified(cert, 1e-6, 1e-6)
    assert stationarity_uncertified({**cert, "grad_error_bound": float("inf")}, 1e-7, 1e-6)
    assert stationarity_uncertified({**cert, "linear_rel": 1e-8}, 1e-7, 1e-6).startswith("reference not certified")
    problem = MetaLearning("meta_learning", 0, 20, 10, 5, 15, 0.5, 0.1, 0.2, -1.0, 1.0)  # the defaults; ‖∇f(λ*)‖ ≈ 1e-7 at the optimum
    lam0 = problem.sample_lambdas(1, torch.Generator().manual_seed(0))[0]
    found = certified_optimum(problem, lam0, lambda lam: lam)
    assert found["certified"], found["reason"]
    assert found["stationarity"] <= found["tol"] and found["grad_norm"] < 1e-3 * stationarity(
        lam0, reference(problem, lam0).grad, lambda lam: lam
    )


def synthetic(f_star=0.0, reason=""):
    """Two configurations on one outer problem, one seed: a falls from f = 1 to 0.2 by step 4,
    b from 1 to 0.01 (its last value the lowest of any run)."""
    rows = []
    for name, values in (("a", [1.0, 0.6, 0.4, 0.3, 0.2]), ("b", [1.0, 0.3, 0.1, 0.03, 0.01])):
        for step, f in enumerate(values):
            rows.append(
                {
                    "problem": "p",
                    "estimator": name,
                    "warm_start": "none",
                    "seed": 0,
                    "step": step,
                    "f": f,
                    "stationarity": f,
                    "time_s": float(step),
                    "vjp_eq": 10 * step,
                    "test_acc": float("nan"),
                    "status": "ok",
                    "problem_id": "x",
                    "run_id": name,
                    "overrides": f"estimator={name}",
                    "f_star": f_star,
                    "f_star_stationarity": 1e-9,
                    "f_star_tol": 1e-8,
                    "f_star_evals": 5,
                    "f_star_reason": reason,
                }
            )
    return pd.DataFrame(rows)


def test_summary_measures_gaps_against_the_certified_optimum_only():
    """The best run's last value is not 'gap 0': against f* = 0, b ends at relative gap 0.01
    and reaches ε = 0.05 (at step 3, f = 0.03) but not ε = 1e-3, whatever the other runs did;
    a run reaches gap ≤ 0 only where f ≤ f*; without a certified f* there is no ε-claim."""
    table = summary(synthetic(), eps=1e-3).set_index("run")
    assert table.loc["b, warm=none", "final_rel_gap"] == pytest.approx(0.01) and table.loc["b, warm=none", "reached"] == 0
    assert (table["certified"] == 1).all() and table["time_to_eps_s"].isna().all()
    table = summary(synthetic(), eps=0.05).set_index("run")
    assert table.loc["b, warm=none", "reached"] == 1 and table.loc["b, warm=none", "step_to_eps"] == 3
    assert table.loc["a, warm=none", "reached"] == 0 and table.loc["b, warm=none", "vjp_eq_to_eps"] == 30
    gaps = with_gaps(synthetic(f_star=0.1))
    assert ((gaps["rel_gap"] <= 0) == (gaps["f"] <= 0.1)).all()
    none = summary(synthetic(f_star=float("nan"), reason="no certified optimum: π = 1 > tol = 0"), eps=0.5)
    assert (none["certified"] == 0).all() and none["reached"].isna().all() and none["final_rel_gap"].isna().all()
    assert none["final_f"].tolist() == [0.2, 0.01] and none["final_pi_rel"].tolist() == [0.2, 0.01]
    old = summary(synthetic().drop(columns=["f_star"]), eps=0.5)  # rows from before f* was certified: no claim
    assert old["reached"].isna().all()


def test_outer_rows_carry_the_certified_optimum_and_stationarity(tmp_path, monkeypatch):
    """A clamped ridge run: every row carries f* (the same as a direct solve from λ₀), each
    evaluated step the exact stationarity π(λ_s) and ‖∇f(λ_s)‖, and no step lies below f*."""
    out = tmp_path / "run"
    assert (
        run_cli(
            monkeypatch,
            "run",
            *RIDGE,
            "estimator=cg",
            "outer.k=8",
            "outer.t=200",
            "outer.steps=10",
            "outer.lr=20",
            "outer.clamp=true",
            f"hydra.run.dir={out}",
        )
        == 0
    )
    rows = pd.read_csv(out / "outer.csv")
    problem = ridge_problem()
    low, high = problem.box()
    lam0 = problem.sample_lambdas(1, torch.Generator().manual_seed(0))[0]
    direct = certified_optimum(problem, lam0, lambda lam: torch.clamp(lam, low, high))
    assert (rows["f_star"] == direct["f_star"]).all() and rows["f_star_reason"].isna().all()
    assert (rows["f"] >= rows["f_star"]).all() and rows["stationarity"].notna().all()
    lam = torch.clamp(lam0, low, high)
    f0, g0 = closed_form(problem, lam)
    assert rows["f"].iloc[0] == pytest.approx(f0, rel=1e-10)
    assert rows["grad_norm"].iloc[0] == pytest.approx(torch.linalg.vector_norm(g0).item(), rel=1e-8)
    assert rows["stationarity"].iloc[0] == pytest.approx(stationarity(lam, g0, lambda x: torch.clamp(x, low, high)), rel=1e-8)


def test_outer_mode_flags_rows_whose_reference_is_not_certified(tmp_path, monkeypatch, capsys):
    """meta_learning with γ = 1e-12: q = 1 − O(γ), the reference's certificate fails (as in
    error mode): the evaluated rows are ``error`` with the certificate's reason and carry no f or
    error; f* is not certified either, and the summary makes no ε-claim."""
    out = tmp_path / "run"
    assert (
        run_cli(
            monkeypatch,
            "run",
            "mode=outer",
            "problem=meta_learning",
            "problem.gamma=1e-12",
            "problem.n_tasks=4",
            "estimator=cg",
            "outer.t=5",
            "outer.k=5",
            "outer.steps=2",
            "outer.eval_every=1",
            f"hydra.run.dir={out}",
        )
        == 0
    )
    printed = capsys.readouterr().out
    rows = pd.read_csv(out / "outer.csv")
    assert (rows["status"] == "error").all() and rows["reason"].str.startswith("reference not certified").all()
    assert rows[["f", "err_rel", "stationarity"]].isna().all().all() and rows["outer_value"].iloc[:2].notna().all()
    assert rows["f_star"].isna().all() and rows["f_star_reason"].str.contains("reference not certified").all()
    assert "no ε-claim" in printed
