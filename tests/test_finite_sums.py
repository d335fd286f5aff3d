"""Finite sums of Ye et al.'s problems, hyper_rep and hyper_cleaning (issue 27): the per-minibatch
objectives against the problems' own, the refusals where E is not a sum over samples, a tiny
mode=stochastic run on each, and mode=bilevel's test-error path on hyper_cleaning."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from hgbench.analysis.bilevel import plot_bilevel, summary_text
from hgbench.problems.hyper_cleaning import HyperCleaning
from hgbench.problems.hyper_rep import HyperRep
from hgbench.problems.ye import YeLogistic, YeRidge
from conftest import draws, run_cli

EPS = torch.finfo(torch.float64).eps
REP = dict(n_tasks=3, ways=2, shots=4, val_shots=3, rep_dim=3, pool=4, beta=0.1, lam_low=0.5, lam_high=1.5)
CLEANING = dict(n_train=40, n_val=30, n_test=20, reg=0.5)

PROBLEMS = {
    "ye_ridge inner": lambda: YeRidge("ye_ridge", 0, "inner", 3.0, 6.0),
    "ye_logistic logistic": lambda: YeLogistic("ye_logistic", 0, "logistic", 3.0, 6.0),
    "ye_logistic inner": lambda: YeLogistic("ye_logistic", 0, "inner", 3.0, 6.0),
    "hyper_rep logistic linear": lambda: HyperRep("hyper_rep", 0, **REP),
    "hyper_rep ridge tanh": lambda: HyperRep("hyper_rep", 0, **REP, head="ridge", representation="tanh"),
    "hyper_cleaning": lambda: HyperCleaning("hyper_cleaning", 0, **CLEANING),
}


@pytest.fixture(scope="module", params=list(PROBLEMS))
def problem(request):
    return PROBLEMS[request.param]()


def _close(a: torch.Tensor, b: torch.Tensor, terms: int) -> bool:
    """Equal up to the round-off of a mean of ``terms`` terms summed in another order."""
    return bool((a - b).abs().max() <= 4 * terms * EPS * b.abs().max().clamp_min(1.0))


def test_on_every_sample_the_sums_are_the_objectives(problem):
    """On the full index set, in order: ℓ and E, and their gradients in w and λ, as the problem's own."""
    lam = draws(problem, 1)[0]
    w = torch.randn(problem.w_dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    n, m = problem.n_inner, problem.n_outer
    for full, sampled, count in ((problem.inner_loss, problem.inner_loss_on, n), (problem.outer, problem.outer_on, m)):
        every = torch.arange(count)
        assert _close(sampled(w, lam, every), full(w, lam), count)
        want = torch.func.grad(full, argnums=(0, 1))(w, lam)
        got = torch.func.grad(sampled, argnums=(0, 1))(w, lam, every)
        assert all(_close(g, h, count) for g, h in zip(got, want))


def test_the_weighted_minibatch_means_of_a_partition_are_the_mean(problem):
    """A seeded permutation cut into three unequal parts B_k: Σ_k |B_k|/n · ℓ_{B_k} = ℓ (and E likewise)."""
    lam = draws(problem, 1)[0]
    w = torch.randn(problem.w_dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for full, sampled, count in (
        (problem.inner_loss, problem.inner_loss_on, problem.n_inner),
        (problem.outer, problem.outer_on, problem.n_outer),
    ):
        order = torch.randperm(count, generator=torch.Generator().manual_seed(3))
        parts = torch.tensor_split(order, [count // 5, count // 2])
        mean = sum(len(part) / count * sampled(w, lam, part) for part in parts)
        assert _close(mean, full(w, lam), count)


@pytest.mark.parametrize(
    "make, outer, allowed",
    [
        (YeRidge, "linear", "use outer=inner"),
        (YeRidge, "quadratic", "use outer=inner"),
        (YeLogistic, "linear", "use outer=logistic or outer=inner"),
    ],
)
def test_outers_that_are_not_sums_are_refused(make, outer, allowed):
    problem = make(make.__name__, 0, outer, 3.0, 6.0)
    with pytest.raises(ValueError, match=f"outer={outer!r} has an outer objective that is not a sum over samples; {allowed}$"):
        problem.n_outer  # noqa: B018 — the property refuses


STOCHASTIC = {
    "ye_ridge": ["problem.outer=inner"],
    "ye_logistic": ["problem.outer=logistic"],
    "hyper_rep": [f"problem.{key}={value}" for key, value in REP.items()],
    "hyper_cleaning": [f"problem.{key}={value}" for key, value in CLEANING.items()],
}


@pytest.mark.parametrize(
    "name, estimator", [(name, "stocbio") for name in STOCHASTIC if name != "hyper_cleaning"] + [(name, "saba") for name in STOCHASTIC]
)
def test_a_tiny_stochastic_run_on_each(tmp_path, monkeypatch, name, estimator):
    """mode=stochastic on each new finite sum, one λ draw, R = 2, b = 4: ok rows with finite
    statistics and the oracle counts per sample (stocbio: b·(t + k + 1) + b' per repetition).
    SABA takes every product per sample (vmap), StocBiO minibatch HVPs; hyper_cleaning, whose
    matrix-free reference costs seconds, runs SABA only."""
    out = tmp_path / name
    code = run_cli(
        monkeypatch, "run", "mode=stochastic", f"problem={name}", *STOCHASTIC[name], f"estimator={estimator}",
        "grid=full", "grid.t=[2]", "grid.k=[2]", "stochastic.batches=[4]", "stochastic.repeats=2", "n_lambdas=1",
        "threads=1", "plot=false", f"hydra.run.dir={out}",
    )  # fmt: skip
    df = pd.read_csv(out / "stochastic.csv")
    assert code == 0 and len(df) == 1 and (df["status"] == "ok").all(), df[["status", "reason"]]
    assert math.isfinite(df["mse"].item()) and df["grad_norm"].item() > 0
    if estimator == "stocbio":
        assert df["oracle_calls"].item() == 4 * (2 + 2 + 1) + 4


def test_bilevel_logs_the_test_error_of_the_certified_classifier(tmp_path, monkeypatch, figures):
    """mode=bilevel on a tiny hyper_cleaning: every evaluated row has the metrics of w*(λ_s); at
    iteration 0 they equal those of a classifier computed independently (2 000 plain gradient
    steps of Φ from 0 at λ₀, not the reference's Newton–Krylov); val_loss is f (E at w*); the
    summary names the lowest test error and the test-error figure is drawn."""
    out = tmp_path / "cleaning"
    code = run_cli(
        monkeypatch, "run", "mode=bilevel", "problem=hyper_cleaning", *STOCHASTIC["hyper_cleaning"], "solver=soba",
        "solver.inner_step=0.05", "solver.outer_step=100", "bilevel.batch=8", "bilevel.iterations=3", "bilevel.eval_every=3",
        "n_lambdas=1", "threads=1", "plot=false", f"hydra.run.dir={out}",
    )  # fmt: skip
    df = pd.read_csv(out / "bilevel.csv")
    assert code == 0 and list(df["iteration"]) == [0, 3] and (df["status"] == "ok").all()
    for split, size in (("train", 40), ("val", 30), ("test", 20)):
        assert df[f"{split}_loss"].notna().all()
        assert ((df[f"{split}_acc"] * size - (df[f"{split}_acc"] * size).round()).abs() < 1e-9).all()  # a count of images
    assert ((df["val_loss"] - df["f"]).abs() <= 1e-12 * df["f"]).all()

    problem = HyperCleaning("hyper_cleaning", 0, **CLEANING)
    lam0 = draws(problem, 1)[0]
    want = problem.evaluate(lam0, 2000)  # q ≤ 0.957 here (contraction_bound): q^2000 < 1e-38, the classifier to round-off
    first = df.iloc[0]
    assert first["test_acc"] == want["test_acc"] and first["train_acc"] == want["train_acc"]
    assert all(math.isclose(first[key], want[key], rel_tol=1e-9) for key in ("train_loss", "val_loss", "test_loss"))

    assert "lowest test error" in summary_text(df)
    plot_bilevel(df, tmp_path)
    assert len(figures) == 2 and [len(ax.lines) for ax in figures[1].axes] == [1, 1]  # the test-error panels: one solver
    assert figures[1].axes[0].get_ylabel().startswith("test error")


@pytest.mark.parametrize("preset, n_train", [("solvers_cleaning", 500), ("solvers_cleaning_full", 2500)])
@pytest.mark.parametrize("solver", ["soba", "saba", "amigo", "stocbio", "f2sa"])
def test_the_cleaning_preset_composes_each_solver_with_its_steps(preset, n_train, solver):
    """+experiment=PRESET with its sweep's +experiment/solvers_cleaning=NAME: the solver NAME with the
    steps of solvers_cleaning/NAME.yaml on hyper_cleaning, validated by the schemas (the full-size
    preset: the same with all 2 500 training images)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from hgbench.running import schema
    from hgbench.paths import conf_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = compose("config", overrides=[f"+experiment={preset}", f"+experiment/solvers_cleaning={solver}"])
    schema.validate(cfg)
    steps = OmegaConf.load(conf_dir() / "experiment" / "solvers_cleaning" / f"{solver}.yaml")
    assert cfg.solver.name == solver and cfg.problem.name == "hyper_cleaning" and cfg.mode == "bilevel"
    assert all(cfg.solver[key] == value for key, value in steps.solver.items())
    assert cfg.bilevel.eval_every == steps.bilevel.eval_every and cfg.bilevel.iterations == steps.bilevel.iterations
    assert cfg.bilevel.max_calls == 150_000 and cfg.problem.n_train == n_train


@pytest.mark.parametrize("mode", ["stochastic", "bilevel"])
def test_an_outer_that_is_not_a_sum_is_refused_in_one_line(tmp_path, monkeypatch, capsys, mode):
    code = run_cli(
        monkeypatch, "run", f"mode={mode}", "problem=ye_ridge", "problem.outer=quadratic", "estimator=stocbio",
        "stochastic.batches=[4]", "bilevel.batch=4", f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == (
        "hgbench: error: problem 'ye_ridge' with outer='quadratic' has an outer objective that is not a sum over samples; use outer=inner"
    ), err
    assert not any(tmp_path.glob("*.csv"))


@pytest.mark.parametrize(
    "preset, problem_name",
    [
        ("stochastic_ye_ridge", "ye_ridge"),
        ("stochastic_ye_logistic", "ye_logistic"),
        ("stochastic_hyper_rep", "hyper_rep"),
        ("stochastic_hyper_cleaning", "hyper_cleaning"),
    ],
)
def test_the_stochastic_presets_on_the_new_finite_sums_end_at_the_full_batch(preset, problem_name):
    """+experiment=stochastic_NAME composes on its problem, passes the schemas, and its batch sizes
    run from a minibatch to the problem's whole training set as built (b = n: the full batch, whose
    row has no variance; a changed problem size would leave the preset without it, or refused)."""
    from hydra import compose, initialize_config_dir

    from hgbench.paths import conf_dir
    from hgbench.running import schema
    from hgbench.running.prepare import build

    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = compose("config", overrides=[f"+experiment={preset}"])
    schema.validate(cfg)
    built = build(cfg.problem, "problem")
    batches = list(cfg.stochastic.batches)
    assert cfg.mode == "stochastic" and cfg.problem.name == problem_name and cfg.threads == 1
    assert min(batches) < built.n_inner and max(batches) == built.n_inner
    assert max(batches) <= built.n_outer and cfg.stochastic.replace is False


@pytest.mark.parametrize("eta", ["eta_0p5", "eta_5", "eta_50"])
def test_the_bome_preset_sweeps_eta_with_its_step(eta):
    """+experiment=stochastic_bome with its sweep's +experiment/stochastic_bome=eta_*: BOME with that
    η and the w-step ξ = min(0.05, 0.25/η) its comment states, on stochastic_ridge's problem and grid."""
    from hydra import compose, initialize_config_dir

    from hgbench.paths import conf_dir
    from hgbench.running import schema

    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = compose("config", overrides=["+experiment=stochastic_bome", f"+experiment/stochastic_bome={eta}"])
        ridge = compose("config", overrides=["+experiment=stochastic_ridge"])
    schema.validate(cfg)
    assert cfg.estimator.name == "bome" and cfg.estimator.eta == float(eta[4:].replace("p", "."))
    assert cfg.estimator.bome_step == min(0.05, 0.25 / cfg.estimator.eta)
    assert cfg.problem == ridge.problem and cfg.grid == ridge.grid and cfg.stochastic == ridge.stochastic


def test_the_quadratic_preset_gives_every_estimator_steps_stable_on_its_minibatches():
    """+experiment=stochastic_quadratic with each +experiment/stochastic_quadratic=NAME: that estimator,
    every step 0.15·α, batch sizes up to the full batch; and 0.15·α is below 2/λ_max of sampled
    Hessians at b = 16 and 64 (where α = 2/(L + μ) itself is not: the preset's reason)."""
    from hydra import compose, initialize_config_dir

    from hgbench.paths import conf_dir
    from hgbench.running import schema
    from hgbench.running.prepare import build

    names = ["stoch_itd", "stocbio", "linear_sgd", "soba", "stoch_cg", "saba", "amigo"]
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        configs = {
            name: compose("config", overrides=["+experiment=stochastic_quadratic", f"+experiment/stochastic_quadratic={name}"])
            for name in names
        }
    for name, cfg in configs.items():
        schema.validate(cfg)
        steps = [cfg.estimator[key] for key in ("inner_step", "solver_step") if key in cfg.estimator]
        assert cfg.estimator.name == name and cfg.problem.name == "bilevel_quadratic" and steps and set(steps) == {0.15}
    problem = build(configs["saba"].problem, "problem")
    assert max(configs["saba"].stochastic.batches) == problem.n_inner
    lam = problem.sample_lambdas(1, torch.Generator().manual_seed(0))[0]
    alpha, w = float(problem.draw_consts(lam)["alpha"]), problem.w0(lam)
    generator = torch.Generator().manual_seed(1)
    for b in (16, 64):
        for _ in range(3):
            idx = torch.randperm(problem.n_inner, generator=generator)[:b].sort().values
            top = float(torch.linalg.eigvalsh(torch.autograd.functional.hessian(lambda v: problem.inner_loss_on(v, lam, idx), w))[-1])
            assert 0.15 * alpha * top < 2 < alpha * top, (b, top)
