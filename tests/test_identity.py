"""Every row keeps its identity (issue 12): run_id and overrides in every row and in run.json;
sweeps over a problem, solver or grid option load with exactly the rows they wrote; figures and
tables label configurations apart; modes are one registry."""

import json

import pandas as pd
import pytest
from conftest import run_cli

import hgbench.analysis.plot as plot_module
from hgbench.analysis import canvas
from hgbench.analysis.results import COLUMNS, combine, configurations, labels, load, summary_table
from hgbench.running.identity import run_id

TINY = ["problem=ridge", "problem.n_features=8", "problem.n_train=40", "n_lambdas=2", "plot=false"]
SWEEPS = {
    "problem option": ["estimator=fp", "grid=full", "grid.t=[5,20]", "grid.k=[5,20]", "problem.cond=2,300"],
    "solver option": [
        "estimator=precond",
        "estimator.solve=cg",
        "estimator.precond_steps=1,5",
        "grid=full",
        "grid.t=[5,20]",
        "grid.k=[5,20]",
    ],
    "grid option": ["estimator=cg", "grid.t=[5,10],[5,20]"],
}


@pytest.mark.parametrize("sweep", SWEEPS)
def test_sweeps_load_exactly_the_rows_they_wrote(tmp_path, monkeypatch, sweep):
    out = tmp_path / "sweep"
    assert run_cli(monkeypatch, "run", "-m", *TINY, *SWEEPS[sweep], f"hydra.sweep.dir={out}") == 0
    jobs = sorted(out.glob("[0-9]*/metrics.csv"))
    written = [pd.read_csv(job, dtype={"run_id": str}) for job in jobs]
    assert len(jobs) == 2 and all(len(rows) > 0 for rows in written)
    for job, rows in zip(jobs, written):
        info = json.loads((job.parent / "run.json").read_text())
        assert list(rows.columns) == COLUMNS
        assert set(rows["run_id"]) == {info["run_id"]} and len(info["run_id"]) == 12 and int(info["run_id"], 16) >= 0
        assert set(rows["overrides"]) == {info["overrides"]} and info["overrides"].startswith("problem=ridge ")
    assert written[0]["run_id"].iloc[0] != written[1]["run_id"].iloc[0]
    n = sum(len(rows) for rows in written)
    assert len(pd.read_csv(out / "metrics.csv")) == n  # the combined CSV
    assert len(load(out / "metrics.csv")) == n and len(load(out)) == n  # combined and jobs' files: not double counted
    table = summary_table(load(out))
    if sweep == "problem option":
        assert "fp, problem.cond=2 " in table and "fp, problem.cond=300" in table


def test_estimators_of_one_setting_share_its_setting_id(tmp_path, monkeypatch):
    """run_id tells the four jobs apart; setting_id (the configuration less the estimator) pairs
    fp with cg on each problem setting, and the claims that compare them find both pairs."""
    from hgbench.analysis.claims import paired

    out = tmp_path / "sweep"
    args = ["estimator=fp,cg", "problem.cond=2,300", "grid.t=[5,20]"]
    assert run_cli(monkeypatch, "run", "-m", *TINY, *args, f"hydra.sweep.dir={out}") == 0
    df = load(out)
    assert df["run_id"].nunique() == 4 and df["setting_id"].nunique() == 2
    assert (df.groupby("setting_id")["estimator"].nunique() == 2).all()
    assert len(paired(df, "t", "cg", "fp")[["setting_id"]].drop_duplicates()) == 2


def test_figure_has_a_legend_entry_per_configuration(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    assert run_cli(monkeypatch, "run", "-m", *TINY, *SWEEPS["problem option"], f"hydra.sweep.dir={out}") == 0
    figures = []
    monkeypatch.setattr(canvas, "save", lambda fig, out_dir, stem: figures.append(fig) or [])
    plot_module.plot(out)
    (fig,) = figures
    entries = {text.get_text() for legend in fig.legends for text in legend.get_texts()} - {plot_module.ROUNDOFF_LABEL.format(floor=1e-12)}
    assert entries == {"fp, problem.cond=2", "fp, problem.cond=300"}
    canvas.plt.close(fig)


def _rows(run, overrides, estimator="fp", problem="ridge", grid="diag", n=2):
    return pd.DataFrame(
        {
            "problem": problem,
            "estimator": estimator,
            "grid": grid,
            "lam_id": range(n),
            "t": 5,
            "k": 5,
            "err_rel": 0.1,
            "run_id": run,
            "overrides": overrides,
        }
    )


def test_labels_name_the_differing_overrides_and_never_pool_runs():
    df = pd.concat(
        [
            _rows("a" * 12, "estimator=fp problem.cond=2 n_lambdas=2"),
            _rows("b" * 12, "estimator=fp problem.cond=300 n_lambdas=4"),  # n_lambdas does not tell runs apart
            _rows("c" * 12, "estimator=fp"),  # the default cond
            _rows("d" * 12, "estimator=cg problem.cond=2", estimator="cg"),  # the only cg run: its name alone
            _rows("e" * 12, "estimator=fp", grid="k_sweep"),  # another grid kind: shown apart anyway
            _rows("f" * 12, "estimator=fp", problem="logistic"),
            _rows("0" * 12, "estimator=fp", problem="logistic"),  # same overrides (another code version): run ids
        ],
        ignore_index=True,
    )
    tags = labels(df)
    assert list(dict.fromkeys(tags)) == [
        "fp, problem.cond=2",
        "fp, problem.cond=300",
        "fp, problem.cond=(default)",
        "cg",
        "fp",
        f"fp, run {'f' * 12}",
        f"fp, run {'0' * 12}",
    ]
    runs = list(configurations(df))
    assert len(runs) == 7 and all(rows["run_id"].nunique() == 1 and len(rows) == 2 for _, rows in runs)
    assert [label for label, _ in runs][:2] == [f"fp, run {'0' * 12}", f"fp, run {'f' * 12}"]  # logistic first


def test_load_keeps_rows_of_different_runs_and_drops_copies_within_one(tmp_path):
    a, b = _rows("a" * 12, "problem.cond=2"), _rows("123456789012", "problem.cond=300")  # an all-digit id stays text
    (tmp_path / "x").mkdir()
    pd.concat([a, b]).to_csv(tmp_path / "all.csv", index=False)
    a.to_csv(tmp_path / "x" / "all.csv", index=False)  # a copy of run a's rows
    key = ["run_id", "problem", "estimator", "grid", "lam_id", "t", "k"]
    df = load(tmp_path, "all.csv", key)
    assert len(df) == 4 and sorted(df["run_id"].unique()) == ["123456789012", "a" * 12]


def test_combine_reads_only_hgbench_job_folders(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    assert run_cli(monkeypatch, "run", "-m", *TINY, "estimator=fp", "grid.t=[0,5]", "seed=0,1", f"hydra.sweep.dir={out}") == 0
    stray = out / "notes" / "metrics.csv"
    stray.parent.mkdir()
    pd.read_csv(out / "metrics.csv").to_csv(stray, index=False)  # e.g. a copied sweep: no run.json next to it
    capsys.readouterr()
    assert combine(out) == out / "metrics.csv"
    assert f"skipping {stray}: not an hgbench job folder" in capsys.readouterr().err
    assert len(pd.read_csv(out / "metrics.csv")) == 2 * 2 * 2


def test_run_id_ignores_only_what_does_not_change_a_row():
    config = {"problem": {"name": "ridge", "cond": 2.0}, "n_lambdas": 2, "threads": None, "plot": True, "resume": False, "seed": 0}
    same = {
        **config,
        "n_lambdas": 9,
        "threads": 1,
        "plot": False,
        "resume": True,
        "hydra": {"run": {"dir": "x"}},
        "reproduce": {"minutes": 2.5, "quick": ["n_lambdas=3"]},
    }
    assert run_id(config) == run_id(same) and len(run_id(config)) == 12
    assert run_id(config) != run_id({**config, "problem": {"name": "ridge", "cond": 3.0}})
    assert run_id(config) != run_id({**config, "seed": 1})


def test_rows_carry_role_min_min_and_time_kind(tmp_path, monkeypatch):
    for name, extra in (("loop", ["linearization=products"]), ("batch", ["batch_lambdas=true", "problem.outer=inner"])):
        assert run_cli(monkeypatch, "run", *TINY, "estimator=cg", "grid.t=[0,5]", *extra, f"hydra.run.dir={tmp_path / name}") == 0
    loop, batch = (pd.read_csv(tmp_path / name / "metrics.csv") for name in ("loop", "batch"))
    assert set(loop["role"]) == {"cg"} and set(loop["time_kind"]) == {"per_point"} and not loop["min_min"].any()
    # linearization=auto on d = 8: the products of t = 5 (k = 5) ran on the dense J; t = k = 0 asks for none
    assert dict(zip(batch["t"], batch["time_kind"])) == {0: "batch_mean", 5: "batch_mean_dense"} and batch["min_min"].all()
    assert set(batch["overrides"]) == {
        "problem=ridge problem.n_features=8 problem.n_train=40 n_lambdas=2 plot=false estimator=cg grid.t=[0,5] batch_lambdas=true problem.outer=inner"
    }


def test_unknown_mode_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    assert run_cli(monkeypatch, "run", *TINY, "mode=foo", f"hydra.run.dir={tmp_path}") == 2
    err = capsys.readouterr().err
    assert (
        err.strip() == "hgbench: error: mode='foo' is not one of error, outer, stochastic, bilevel"
        and not (tmp_path / "metrics.csv").exists()
    )


def test_resumed_rows_take_the_identity_of_the_run_that_extends_them(tmp_path, monkeypatch):
    out = tmp_path / "run"
    tiny = [a for a in TINY if not a.startswith("n_lambdas=")]
    args = ["run", *tiny, "estimator=fp", "grid.t=[0,5]", "resume=true", f"hydra.run.dir={out}"]
    assert run_cli(monkeypatch, *args, "n_lambdas=1") == 0
    first = pd.read_csv(out / "metrics.csv", dtype={"run_id": str})
    assert run_cli(monkeypatch, *args, "n_lambdas=3") == 0
    df = pd.read_csv(out / "metrics.csv", dtype={"run_id": str})
    assert len(df) == 3 * 2 and df["run_id"].nunique() == 1 and df["run_id"].iloc[0] == first["run_id"].iloc[0]
    assert set(df["overrides"]) == {json.loads((out / "run.json").read_text())["overrides"]} and "n_lambdas=3" in df["overrides"].iloc[0]
    assert set(labels(df)) == {"fp"}


def test_another_modes_options_do_not_change_a_runs_identity(tmp_path, monkeypatch):
    """outer.* does not change error-mode rows: same run_id with or without them, and a
    resume across such a change is accepted."""
    out = tmp_path / "run"
    assert run_cli(monkeypatch, "run", *TINY, "estimator=fp", "grid.t=[0,5]", f"hydra.run.dir={out}") == 0
    first = json.loads((out / "run.json").read_text())
    assert "outer" not in first["config"]
    args = ["outer.lr=0.01", "outer.steps=7", "resume=true"]
    assert run_cli(monkeypatch, "run", *TINY, "estimator=fp", "grid.t=[0,5]", *args, f"hydra.run.dir={out}") == 0
    assert json.loads((out / "run.json").read_text())["run_id"] == first["run_id"]
