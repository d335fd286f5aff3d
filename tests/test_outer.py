"""Outer-loop mode (mode=outer): exact hypergradients give gradient descent on the closed-form
f, warm starts, solvers started from v₀, resume after SIGKILL, refusals, figure and summary."""

import signal

import pandas as pd
import pytest
import torch
from conftest import TESTS, run_cli, signal_when_paused

from hgbench.core.bound import bind, estimate
from hgbench.core.reference import reference
from hgbench.estimators.cg import ConjugateGradient
from hgbench.estimators.cg_normal import NormalCG
from hgbench.estimators.fp import FixedPoint
from hgbench.estimators.gmres import GMRES
from hgbench.estimators.neumann import Neumann
from hgbench.problems.ridge import Ridge
from hgbench.running.outer import STATE

RIDGE = ["mode=outer", "problem=ridge", "problem.n_train=60", "problem.n_val=40", "problem.n_features=8", "problem.cond=30",
         "outer.eval_every=1", "plot=false"]  # fmt: skip


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
    code = run_cli(monkeypatch, "run", *RIDGE, *estimator, "outer.t=3000", "outer.steps=8", "outer.lr=20",
                   f"hydra.run.dir={out}")  # fmt: skip
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
        assert run_cli(monkeypatch, "run", *RIDGE, "estimator=cg", "outer.t=2000", "outer.k=8", "outer.steps=6", "outer.lr=20",
                       "outer.momentum=0.5", f"outer.warm_start={warm}", f"hydra.run.dir={out}") == 0  # fmt: skip
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
    assert run_cli(monkeypatch, "run", *RIDGE, "estimator=fp", "outer.t=50", "outer.k=50", "outer.steps=5", "outer.lr=1e4",
                   "outer.clamp=true", f"hydra.run.dir={out}") == 0  # fmt: skip
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
    code = run_cli(monkeypatch, "run", "-m", "mode=outer", "problem=equilibrium_mnist", "problem.state_dim=8", "problem.n_train=40",
                   "problem.n_val=10", "problem.n_test=20", "estimator=itd,cg_normal", "outer.warm_start=inner+solver",
                   "outer.t=5", "outer.k=5", "outer.steps=4", "outer.lr=0.5", "outer.eval_every=2", f"hydra.sweep.dir={sweep}")  # fmt: skip
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


KILLED = ["mode=outer", "problem=faulty_map", f"hydra.searchpath=[file://{TESTS / 'conf'}]", "estimator=fp", "outer.t=5",
          "outer.k=3", "outer.steps=12", "outer.lr=0.3", "outer.momentum=0.5", "outer.warm_start=inner+solver",
          "outer.eval_every=3", "outer.checkpoint_every=4", "resume=true", "plot=false"]  # fmt: skip


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
    assert run_cli(monkeypatch, "run", *RIDGE, "estimator=fp", "outer.optimizer=adam", "outer.lr=0.01", "outer.steps=1",
                   f"hydra.run.dir={out}") == 0  # fmt: skip
    lam0 = ridge_problem().sample_lambdas(1, torch.Generator().manual_seed(0))[0]
    moved = (torch.load(out / STATE, weights_only=True)["lam"] - lam0).abs()
    assert ((moved > 0.0099) & (moved <= 0.01)).all()
