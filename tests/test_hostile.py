"""Hostile inputs (issue 24): every case ends in one line on stderr (no traceback), exit 2,
and leaves no results file, lock or temporary file behind; a few are data, not refusals (a
problem with ∇f = 0, a map that is not a contraction, ids that look like numbers).

Every case runs in this process (tests/conftest.py's run_cli), so that the machine's memory
and the one-step timing can be fixed where a case depends on them."""

import csv
import shutil

import pandas as pd
import pytest
import torch
from conftest import TESTS, run_cli

import hgbench
from hgbench.problems.base import Problem
from hgbench.running import guard
from hgbench.running.lock import LOCK
from hgbench.running.errors import UserError

RESULTS = TESTS.parent / "results"
TOYS = f"hydra.searchpath=[file://{TESTS / 'conf'}]"
GB = 10**9


def _one_line(capsys, code, message, prefix="hgbench: error: "):
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(prefix) and message in err, err


def _nothing_left(folder):
    """No results file, no lock, no temporary file in ``folder`` (absent counts as empty)."""
    left = sorted(p.name for p in folder.rglob("*")) if folder.exists() else []
    assert not [n for n in left if n in ("metrics.csv", "outer.csv", "run.json", LOCK) or n.endswith(".tmp")], left


# --- hgbench run: sizes the guard must see before any allocation, values no integer holds --------------
@pytest.mark.parametrize(
    "overrides, message",
    [
        (["problem=hyper_rep", "problem.n_tasks=1000000000000000000"], "the problem 'hyper_rep' would need about"),
        (["problem=ridge", "problem.n_features=30000"], "the problem 'ridge' would need about"),
        (["grid=levels", "grid.n=100000000"], "(mostly rows:"),
        (["grid.t=[0,1000000000000000]"], "this run would take roughly"),
        (["mode=outer", "outer.steps=1000000000000000"], "estimated peak memory 1e+03 PB (mostly rows"),
        (["grid.t=[0,100000000000000000000]"], "grid.t=100000000000000000000 is too large for a 64-bit integer"),
        (
            ["problem=hyper_rep", "problem.rep_dim=100000000000000000000"],
            "problem.rep_dim=100000000000000000000 is too large for a 64-bit integer",
        ),
        (
            ["problem.n_train=1000000000000000000000000000000"],
            "problem.n_train=1000000000000000000000000000000 is too large for a 64-bit integer",
        ),
        (["mode=outer", "outer.steps=100000000000000000000"], "outer.steps=100000000000000000000 is too large for a 64-bit integer"),
        (["device=cuda:100000000000000000000"], "device='cuda:100000000000000000000' must be cpu, cuda or cuda:N"),
    ],
)
def test_run_refuses_in_one_line(tmp_path, monkeypatch, capsys, overrides, message):
    """The machine is taken to have 8 GB free, so that the refusals do not depend on this one."""
    monkeypatch.setattr(guard, "available_bytes", lambda device=None: 8 * GB)
    out = tmp_path / "run"
    code = run_cli(monkeypatch, "run", "problem=ridge", "n_lambdas=1", "plot=false", *overrides, f"hydra.run.dir={out}")
    _one_line(capsys, code, message)
    _nothing_left(out)


def test_broken_yaml_of_a_config_dir_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "conf" / "problem").mkdir(parents=True)
    (tmp_path / "conf" / "problem" / "bad.yaml").write_text("name: [unclosed\n  x: : :\n")
    out = tmp_path / "run"
    code = run_cli(monkeypatch, "run", "--config-dir", tmp_path / "conf", "problem=bad", f"hydra.run.dir={out}")
    _one_line(capsys, code, "a config file is not valid YAML: while parsing a flow sequence")
    _nothing_left(out)
    with pytest.raises(UserError, match="not valid YAML"):
        hgbench.evaluate("bad", "fp", config_dir=tmp_path / "conf", out_dir=tmp_path / "api")


@pytest.mark.parametrize(
    "problem, message",
    [
        (("hyper_rep", {"rep_dim": 10**20}), "problem.rep_dim=100000000000000000000 is too large for a 64-bit integer"),
        (("ridge", {"n_train": 10**30}), "problem.n_train=1000000000000000000000000000000 is too large for a 64-bit integer"),
        (("ridge", {"n_train": 1e30}), "problem.n_train=1e+30 must be an integer >= 1"),
    ],
)
def test_api_refuses_sizes_with_one_line_naming_the_key(tmp_path, problem, message):
    with pytest.raises(UserError) as refused:
        hgbench.evaluate(problem, "fp", n_lambdas=1, out_dir=tmp_path, progress=False)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    _nothing_left(tmp_path)


# --- the guard's estimates of long runs ------------------------------------------------------------------
def _composed(*overrides):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from hgbench.paths import conf_dir
    from hgbench.running.grids import grid_pairs

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("config", list(overrides))
    return cfg, instantiate(cfg.problem), instantiate(cfg.estimator), grid_pairs(cfg.grid.kind, list(cfg.grid.t), cfg.grid.get("k"))


def test_many_cheap_draws_are_warned_about(monkeypatch, capsys):
    """ridge, n_lambdas=100000 (issue 24: 5 min, no warning): the rows' bookkeeping alone,
    100000 draws × 17 points × POINT_S, passes LONG_S, whatever Φ's step costs (fixed at 0 here)."""
    cfg, problem, estimator, pairs = _composed("problem=ridge", "n_lambdas=100000")
    size = guard.measure_step(problem)[0]
    monkeypatch.setattr(guard, "measure_step", lambda problem: (size, 0.0))
    assert cfg.n_lambdas * len(pairs) * guard.POINT_S > guard.LONG_S
    guard.check(cfg, problem, estimator, pairs, torch.device("cpu"))
    err = capsys.readouterr().err
    assert err.startswith("hgbench: warning: this run will take roughly") and len(err.strip().splitlines()) == 1


def test_a_dense_reference_counts_its_factorizations(monkeypatch, ridge):
    """A dense reference at d > 500 adds DENSE_SVDS SVDs of d × d per draw (hyper_cleaning with
    reference=dense, d = 7,850: > 6 min a draw, which the Φ-step units alone put at seconds)."""
    from hgbench.core.reference import MATRIX_FREE_ABOVE

    cfg, problem, estimator, pairs = _composed("problem=ridge", "problem.n_features=600", "reference=dense", "n_lambdas=1")
    monkeypatch.setattr(guard, "measure_step", lambda problem: (0, 0.0))
    monkeypatch.setattr(guard, "svd_seconds_per_cube", lambda: 1e-9)
    found = guard.estimate(cfg, problem, estimator, pairs)
    assert found["seconds"] == pytest.approx(len(pairs) * guard.POINT_S + guard.DENSE_SVDS * 1e-9 * 600**3)
    assert problem.w_dim <= MATRIX_FREE_ABOVE


def test_planned_sizes_match_the_built_problems():
    """Problem.planned (read before construction) gives the dims the built problem has."""
    for overrides in (
        ["problem=ridge"],
        ["problem=logistic"],
        ["problem=meta_learning"],
        ["problem=hyper_rep"],
        ["problem=kernel_ridge", "problem.data=synthetic"],
    ):
        cfg, problem, _, _ = _composed(*overrides)
        settings = {k: v for k, v in dict(cfg.problem).items() if k != "_target_"}
        planned = type(problem).planned(settings)
        assert (planned.w_dim, planned.lam_dim) == (problem.w_dim, problem.lam_dim), overrides


# --- hgbench plot and aggregate on results files that are not what hgbench wrote ------------------------
def _base_rows():
    with open(RESULTS / "hyper_cleaning" / "cg" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _write(path, rows, columns=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns or list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _mutated(column, value, first_only=True):
    rows = _base_rows()
    for row in rows[:1] if first_only else rows:
        row[column] = value
    return rows


BAD_METRICS = {
    "k=1.5": (lambda: _mutated("k", "1.5"), "column k holds 1.5, not an integer"),
    "k=1e23": (lambda: _mutated("k", "1e23"), "column k holds 1e+23, not an integer"),
    "k=inf": (lambda: _mutated("k", "inf"), "column k holds inf, not an integer"),
    "t=inf": (lambda: _mutated("t", "inf", first_only=False), "column t holds inf, not an integer"),
    "estimator empty": (lambda: _mutated("estimator", "", first_only=False), "column estimator is empty in 6 row(s)"),
}


@pytest.mark.parametrize("case", sorted(BAD_METRICS))
@pytest.mark.parametrize("kind", ["error", "cost"])
def test_plot_refuses_bad_rows(tmp_path, monkeypatch, capsys, case, kind):
    rows, message = BAD_METRICS[case]
    _write(tmp_path / "metrics.csv", rows())
    code = run_cli(monkeypatch, "plot", tmp_path / "metrics.csv", "--kind", kind)
    _one_line(capsys, code, message, prefix="hgbench plot: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


def test_plot_refuses_missing_columns(tmp_path, monkeypatch, capsys):
    rows = _base_rows()
    _write(tmp_path / "metrics.csv", rows, [c for c in rows[0] if c not in ("t", "lam_id")])
    code = run_cli(monkeypatch, "plot", tmp_path)
    _one_line(capsys, code, "lacks the columns ['lam_id', 't']", prefix="hgbench plot: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


def test_header_only_outer_csv_is_refused(tmp_path, monkeypatch, capsys):
    """What a run killed at step 0 leaves: the header only."""
    header = (RESULTS / "deq_small" / "outer.csv").read_text().splitlines()[0]
    (tmp_path / "outer.csv").write_text(header + "\n")
    for kind in ("outer", "train"):
        code = run_cli(monkeypatch, "plot", tmp_path, "--kind", kind)
        _one_line(capsys, code, "no rows in", prefix="hgbench plot: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outer.csv"]


@pytest.mark.parametrize("case", ["k=1.5", "estimator empty", "header only", "missing columns"])
def test_aggregate_refuses_before_writing(tmp_path, monkeypatch, capsys, case):
    job = tmp_path / "sweep" / "0_job"
    rows = _base_rows()
    if case == "header only":
        _write(job / "metrics.csv", [], list(rows[0]))
    elif case == "missing columns":
        _write(job / "metrics.csv", rows, [c for c in rows[0] if c != "t"])
    else:
        _write(job / "metrics.csv", BAD_METRICS[case][0]())
    shutil.copy(RESULTS / "hyper_cleaning" / "cg" / "run.json", job / "run.json")
    code = run_cli(monkeypatch, "aggregate", tmp_path / "sweep")
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("hgbench aggregate: error: ") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "sweep" / "metrics.csv").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("a,b\n1,2\n", "lacks the columns ['problem', 'lam_id'"),
        (None, "column L_phi holds a non-number"),
        (b"\xec\x00\xff binary", "is not a readable CSV"),
    ],
)
def test_plot_refuses_a_bad_bounds_csv(tmp_path, monkeypatch, capsys, content, message):
    shutil.copy(RESULTS / "ridge_illcond" / "metrics.csv", tmp_path / "metrics.csv")
    bounds = tmp_path / "bounds.csv"
    if content is None:  # the shipped file with one constant spoiled
        rows = list(csv.reader(open(RESULTS / "ridge_illcond" / "bounds.csv", newline="")))
        rows[1][rows[0].index("L_phi")] = "abc"
        with open(bounds, "w", newline="") as f:
            csv.writer(f).writerows(rows)
    elif isinstance(content, bytes):
        bounds.write_bytes(content)
    else:
        bounds.write_text(content)
    code = run_cli(monkeypatch, "plot", tmp_path, "--kind", "bound")
    _one_line(capsys, code, message, prefix="hgbench plot: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bounds.csv", "metrics.csv"]


# --- hgbench reproduce: its options, before any preset starts ---------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "{file}"], "exists and is not a directory"),
        (["--threads", "-1"], "--threads -1: give 0 (torch's default) or a positive count"),
        (["--out", "{tmp}/a,b=c"], "which Hydra's overrides would parse"),
    ],
)
def test_reproduce_checks_its_options_first(tmp_path, monkeypatch, capsys, args, message):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine\n")
    args = [a.format(file=a_file, tmp=tmp_path) for a in args]
    code = run_cli(monkeypatch, "reproduce", "ridge_illcond", *args)
    _one_line(capsys, code, message, prefix="hgbench reproduce: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"] and a_file.read_text() == "mine\n"


# --- data, not refusals -------------------------------------------------------------------------------------
class Flat(Problem):
    """Φ(w, λ) = ½w + λ, E(w, λ) = 0·(Σw + Σλ): w* = 2λ, ∇f(λ) = 0 exactly."""

    def __init__(self, name, seed, lam_low=-1.0, lam_high=1.0):
        super().__init__(name, seed, lam_low, lam_high)

    lam_dim = w_dim = 3

    def phi(self, w, lam, consts):
        return 0.5 * w + lam

    def outer(self, w, lam):
        return 0.0 * (w.sum() + lam.sum())

    def solve_inner(self, lam, start=None):
        return 2 * lam


def test_a_zero_hypergradient_gives_ok_rows_with_an_empty_relative_error(tmp_path):
    """err_rel = ‖ĝ − ∇f‖/‖∇f‖ is undefined where ∇f = 0: NaN, the row ok, err_abs its error."""
    df = hgbench.evaluate((Flat, {}), ["fp", "itd"], ("diag", {"t": [0, 3]}), n_lambdas=2, out_dir=tmp_path, progress=False)
    assert (df["status"] == "ok").all() and df["err_rel"].isna().all() and (df["err_abs"] == 0).all()
    assert df["inner_err"].notna().all()


def test_a_non_contraction_warns_as_its_rows_are(tmp_path, monkeypatch, capsys):
    """q = 1.5: the warning says which rows become diverged (those whose estimate is NaN or inf);
    here none is, and every row is ok."""
    code = run_cli(
        monkeypatch,
        "run",
        "problem=linear_map",
        TOYS,
        "problem.q=1.5",
        "estimator=fp",
        "grid.t=[0,5]",
        "n_lambdas=1",
        "plot=false",
        f"hydra.run.dir={tmp_path}",
    )
    err = capsys.readouterr().err
    assert code == 0 and "is not a contraction" in err and "a row whose estimate is NaN or inf gets status diverged" in err
    assert (pd.read_csv(tmp_path / "metrics.csv")["status"] == "ok").all()


def test_ids_that_look_like_numbers_stay_text(tmp_path):
    """run_id 032e16426749 parses as inf by default: hgbench.load and the documented dtypes keep it."""
    rows = _base_rows()
    for row in rows:
        row["run_id"], row["setting_id"] = "032e16426749", "1234e5678901"
    _write(tmp_path / "metrics.csv", rows)
    assert pd.read_csv(tmp_path / "metrics.csv")["run_id"].iloc[0] == float("inf")  # why the dtype matters
    df = hgbench.load(tmp_path)
    assert set(df["run_id"]) == {"032e16426749"} and set(df["setting_id"]) == {"1234e5678901"}
    plain = pd.read_csv(tmp_path / "metrics.csv", dtype={"run_id": str, "setting_id": str, "problem_id": str})
    assert set(plain["run_id"]) == {"032e16426749"}
