"""The Python API (hgbench.evaluate, hgbench.plot) and problems defined outside the package:
the API's rows are the command line's, and the worked example under examples/own_problem runs
from a copy outside the checkout, by the command line and by its script."""

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli

import hgbench
from hgbench.analysis.results import COLUMNS, read_csv
from hgbench.problems.base import Problem
from hgbench.problems.ridge import Ridge
from hgbench.running.errors import UserError
from hgbench.running.prepare import target_class

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own_problem"
UNTIMED = ["time_s", "peak_bytes"]  # measured, not computed: differ between two runs
SMALL = {"n_features": 6, "n_train": 40, "n_val": 30}
GRID = [0, 5, 50]


def _same_rows(api: pd.DataFrame, cli: pd.DataFrame) -> None:
    """Equal columns, identity and values (bitwise), but for the measured time and memory."""
    assert list(api.columns) == list(cli.columns) == COLUMNS
    pd.testing.assert_frame_equal(api.drop(columns=UNTIMED), cli.drop(columns=UNTIMED), check_exact=True)


def test_evaluate_gives_the_rows_of_hgbench_run(tmp_path, monkeypatch):
    """One estimator: `hgbench run` typed as evaluate prints it; several: the jobs of `-m`."""
    typed = ["problem=ridge", *(f"problem.{k}={v}" for k, v in SMALL.items()), "grid=diag", "grid.t=[0,5,50]", "n_lambdas=2", "plot=False"]
    assert run_cli(monkeypatch, "run", *typed[:4], "estimator=fp", *typed[4:], f"hydra.run.dir={tmp_path / 'one'}") == 0
    assert run_cli(monkeypatch, "run", "-m", *typed[:4], "estimator=fp,itd", *typed[4:], f"hydra.sweep.dir={tmp_path / 'sweep'}") == 0
    one = hgbench.evaluate(("ridge", SMALL), "fp", ("diag", {"t": GRID}), n_lambdas=2, plot=False, progress=False)
    _same_rows(one, read_csv(tmp_path / "one" / "metrics.csv"))
    assert one["overrides"].iloc[0] == " ".join([*typed[:4], "estimator=fp", *typed[4:]])
    out = tmp_path / "api"
    both = hgbench.evaluate(
        ("ridge", "n_features=6 n_train=40 n_val=30"),
        ["fp", "itd"],
        ("diag", {"t": GRID}),
        n_lambdas=2,
        plot=False,
        out_dir=out,
        progress=False,
    )
    _same_rows(both, read_csv(tmp_path / "sweep" / "metrics.csv"))
    assert both["run_id"].nunique() == 2 and both["setting_id"].nunique() == 1
    _same_rows(read_csv(out / "metrics.csv"), read_csv(tmp_path / "sweep" / "metrics.csv"))  # the folder a sweep leaves
    fig = hgbench.plot(both, tmp_path / "figure")
    assert (tmp_path / "figure" / "error_vs_iterations.png").stat().st_size > 0
    assert sorted(line.get_label() for line in fig.axes[0].get_lines()) == ["fp", "itd"]


def test_import_hgbench_stays_light():
    """The API is imported on first use: `import hgbench` loads neither torch nor Hydra."""
    code = "import sys, hgbench; print(sorted(m for m in ('torch', 'hydra', 'pandas', 'hgbench.running') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.strip() == "[]", proc.stderr
    from hgbench.running import api

    assert hgbench.evaluate is api.evaluate and hgbench.plot is api.plot
    with pytest.raises(AttributeError, match="no attribute 'evalute'"):
        hgbench.evalute  # noqa: B018


@pytest.mark.parametrize(
    "args, words",
    [
        (("ridgee",), ["'problem/ridgee'", "ridge"]),  # names the value and the options there are
        (("ridge", "nope"), ["'estimator/nope'", "cg"]),
        (("ridge", "cg", "diag"), ["bogus", "options of hgbench run are"]),
        ((42,), ["problem=42", "config name"]),
        ((("ridge", "n_features"),), ["n_features", "key=value"]),
        ((object,), ["object", "hgbench.problems.base.Problem"]),
        ((Ridge("r", 0, 4, 4, 2, 1.0, 0.1, -1.0, 0.0),), ["problem=Ridge(...) is an instance", "(cls, {...})"]),
    ],
)
def test_evaluate_refuses_bad_input_in_one_line(args, words):
    kwargs = {"bogus": 1} if args == ("ridge", "cg", "diag") else {}
    with pytest.raises(UserError) as info:
        hgbench.evaluate(*args, n_lambdas=1, progress=False, **kwargs)
    message = str(info.value)
    assert "\n" not in message and all(word in message for word in words), message


def test_target_of_an_own_problem(tmp_path):
    """A `_target_` is a class on sys.path or a file path.py:Class; anything else, one line."""
    (tmp_path / "mine.py").write_text("from toy import LinearMap\n\nclass Mine(LinearMap):\n    pass\n")
    cls = target_class(f"{tmp_path / 'mine.py'}:Mine", "problem", Problem)
    assert cls.__name__ == "Mine" and target_class(f"{tmp_path / 'mine.py'}:Mine", "problem", Problem) is cls  # loaded once
    assert target_class("toy.LinearMap", "problem", Problem).__name__ == "LinearMap"
    for target, words in [
        ("nowhere.Mine", ["problem._target_='nowhere.Mine'", "No module named 'nowhere'", "path/to/file.py:Class"]),
        (f"{tmp_path / 'absent.py'}:Mine", ["absent.py", "no file"]),
        (f"{tmp_path / 'mine.py'}:Other", ["Other"]),
        ("collections.OrderedDict", ["not a subclass of hgbench.problems.base.Problem"]),
    ]:
        with pytest.raises(UserError) as info:
            target_class(target, "problem", Problem)
        assert "\n" not in str(info.value) and all(word in str(info.value) for word in words), str(info.value)


def test_own_problem_yaml_is_checked(tmp_path, monkeypatch):
    """The open schema /schema/problem/own: _target_, name and seed checked, the other keys
    passed to the constructor (which refuses what it cannot use)."""
    shutil.copytree(EXAMPLE, tmp_path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("results", "__pycache__"))
    monkeypatch.chdir(tmp_path)  # the YAML names its class by a file relative to the working directory
    conf = tmp_path / "conf" / "problem"
    source = (conf / "robust_regression.yaml").read_text()
    for line, words in [
        ("_target_: not a class", ["problem._target_='not a class'", "pkg.module.Class"]),
        ("name: ''", ["problem.name=''"]),
        ("delta: -1.0", ["problem.delta=-1.0 must be > 0"]),
        ("extra: 1", ["unexpected keyword argument 'extra'"]),
    ]:
        key = line.split(":")[0] + ":"
        edited = [line if row.startswith(key) else row for row in source.splitlines()]
        (conf / "broken.yaml").write_text("\n".join(edited + ([line] if line not in edited else [])) + "\n")
        with pytest.raises(UserError) as info:
            hgbench.evaluate("broken", "fp", n_lambdas=1, config_dir=tmp_path / "conf", progress=False)
        assert "\n" not in str(info.value) and all(word in str(info.value) for word in words), str(info.value)


def test_problem_class_without_yaml(monkeypatch):
    """A Problem subclass and its constructor's arguments, given directly."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from robust_regression import RobustRegression

    settings = {"lam_low": -3.0, "lam_high": 0.0, "n_train": 50, "n_val": 30, "n_features": 5, "noise": 0.5, "delta": 1.0}
    df = hgbench.evaluate((RobustRegression, settings), "cg", ("diag", {"t": [0, 30, 100]}), n_lambdas=2, progress=False)
    assert (df["problem"] == "robust_regression").all() and (df["status"] == "ok").all()
    assert df["overrides"].iloc[0].startswith("problem=robust_regression.RobustRegression problem.lam_low=-3.0 ")
    assert df.loc[df["t"] == 100, "err_rel"].max() < 1e-10


def _errors_fall(df: pd.DataFrame) -> None:
    """Each estimator's error on each draw falls with t until round-off, where it stays."""
    assert (df["status"] == "ok").all() and len(df) == 3 * 3 * 6  # estimators × λ draws × grid points
    for _, curve in df.groupby(["estimator", "lam_id"]):
        err = curve.sort_values("t")["err_rel"].to_numpy()
        assert all(a > b for a, b in zip(err[:4], err[1:4])), err  # t = 0, 10, 20, 50
        assert err[-1] < 1e-13 and err[0] > 0.5, err


def test_example_runs_outside_the_checkout(tmp_path, monkeypatch, capsys):
    """examples/own_problem, copied outside the checkout: the README's command and its script
    give the same rows, converging to the reference."""
    here = tmp_path / "own_problem"
    shutil.copytree(EXAMPLE, here, ignore=shutil.ignore_patterns("results", "__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # hgbench from the checkout, as if installed
    command = (EXAMPLE / "README.md").read_text().split("    hgbench run -m ")[1].split("\n\n")[0].replace("\\\n", " ").split()
    cli = [sys.executable, "-c", "from hgbench.running.cli import main; main()", "run", "-m", *command, "hydra.sweep.dir=out"]
    proc = subprocess.run(cli, cwd=here, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_csv(here / "out" / "metrics.csv")
    _errors_fall(rows)
    assert (here / "out" / "error_vs_iterations.png").is_file()
    monkeypatch.chdir(tmp_path)  # the script moves to its own folder; restored afterwards
    runpy.run_path(str(here / "evaluate.py"), run_name="__main__")  # in this process: one start-up less
    assert "figure: results/evaluate/error_vs_iterations.png" in capsys.readouterr().out
    script = read_csv(here / "results" / "evaluate" / "metrics.csv")
    _same_rows(script, rows)
    assert (here / "results" / "evaluate" / "error_vs_iterations.png").is_file()
