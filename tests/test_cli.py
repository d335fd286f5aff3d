"""The command line, in process: runs, sweeps, plots, listing, errors, help, completion."""

import json
import os

import pandas as pd
import pytest
from conftest import TESTS, run_cli

from hgbench.running.grids import grid_pairs
from hgbench.analysis.results import COLUMNS

SMALL = ["problem.n_features=6", "problem.n_train=40", "problem.n_val=30", "n_lambdas=2", "grid.t=[0,5,50,300]"]


def test_run_writes_csv_json_and_figure(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert run_cli(monkeypatch, "run", "estimator=cg", "problem=ridge", *SMALL, f"hydra.run.dir={out}") == 0
    df = pd.read_csv(out / "metrics.csv")
    assert list(df.columns) == COLUMNS
    assert len(df) == 2 * 4 and set(df["status"]) == {"ok"}
    assert (df["problem"] == "ridge").all() and (df["estimator"] == "cg").all() and (df["k"] == df["t"]).all()
    assert df["err_rel"].iloc[-1] < 1e-8 and df["q"].between(0, 1).all()
    clocked = df["time_s"] > 0  # every row has a measured (positive) cost; no claim on speed
    assert clocked.all()
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["estimator"]["name"] == "cg" and info["dtype"] == "float64"
    assert len(info["references"]) == 2 and info["references"][0]["fixed_point_residual"] < 1e-12
    assert {"torch", "python", "hgbench"} <= set(info["versions"]) and info["threads"] >= 1
    assert (out / "error_vs_iterations.png").stat().st_size > 0 and not (out / "error_vs_iterations.pdf").exists()  # PDF: hgbench plot
    printed = capsys.readouterr().out
    assert "median relative error over 2 λ draws" in printed and str(out / "metrics.csv") in printed


def test_itd_rows_have_empty_k(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert (
        run_cli(
            monkeypatch, "run", "estimator=itd", "problem=logistic", "n_lambdas=1", "grid.t=[0,10]", f"hydra.run.dir={out}", "plot=false"
        )
        == 0
    )
    df = pd.read_csv(out / "metrics.csv")
    assert df["k"].isna().all() and list(df["t"]) == [0, 10]


def test_default_cg_ridge_run_reaches_round_off(tmp_path, monkeypatch):
    """`hgbench run estimator=cg problem=ridge` with its default grid shows the whole
    convergence: err_rel < 1e-8 at the largest grid point for every λ draw."""
    out = tmp_path / "run"
    assert run_cli(monkeypatch, "run", "estimator=cg", "problem=ridge", "n_lambdas=3", f"hydra.run.dir={out}", "plot=false") == 0
    df = pd.read_csv(out / "metrics.csv")
    last = df[df["t"] == df["t"].max()]
    assert len(last) == 3 and (last["err_rel"] < 1e-8).all()


def test_multirun_leaves_combined_csv_and_plot_redraws(tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    code = run_cli(monkeypatch, "run", "-m", "estimator=fp,itd_forward", "problem=ridge", *SMALL, f"hydra.sweep.dir={sweep}")
    assert code == 0
    combined = pd.read_csv(sweep / "metrics.csv")
    assert sorted(combined["estimator"].unique()) == ["fp", "itd_forward"] and len(combined) == 16
    assert (sweep / "error_vs_iterations.png").exists()
    (sweep / "error_vs_iterations.png").unlink()
    replot = tmp_path / "replot"
    assert run_cli(monkeypatch, "plot", sweep / "metrics.csv", "--out", replot) == 0
    assert (replot / "error_vs_iterations.png").stat().st_size > 0 and (replot / "error_vs_iterations.pdf").exists()
    # a directory: every metrics.csv below it, the combined one and the jobs' ones, counted once
    assert run_cli(monkeypatch, "plot", sweep) == 0 and (sweep / "error_vs_iterations.png").exists()


def test_failed_job_still_leaves_combined_csv(tmp_path, monkeypatch, capsys):
    """One job of the sweep fails (cg on a non-symmetric problem); the other's rows are combined
    and the command exits non-zero, naming the failure."""
    sweep = tmp_path / "sweep"
    code = run_cli(
        monkeypatch,
        "run",
        "-m",
        "estimator=fp,cg",
        "problem=linear_map",
        "n_lambdas=2",
        "grid.t=[0,20]",
        f"hydra.searchpath=[file://{TESTS / 'conf'}]",
        f"hydra.sweep.dir={sweep}",
    )
    assert code == 1
    combined = pd.read_csv(sweep / "metrics.csv")
    assert set(combined["estimator"]) == {"fp"} and len(combined) == 4
    assert "1 job(s) failed" in capsys.readouterr().err
    assert len(list(sweep.rglob("error.txt"))) == 1


def test_unknown_estimator_names_the_choices(tmp_path, monkeypatch, capsys):
    code = run_cli(monkeypatch, "run", "estimator=nope", f"hydra.run.dir={tmp_path}")
    assert code != 0
    err = capsys.readouterr().err
    assert "nope" in err and all(name in err for name in ("itd", "itd_forward", "fp", "cg"))


@pytest.mark.parametrize(
    "override, message",
    [
        ("n_lambdas=0", "n_lambdas=0 must be an integer >= 1"),
        ("dtype=float16", "dtype='float16' is not one of float64, float32"),
        ("device=cuda", "device='cuda' asked for, but this machine has no CUDA device"),
        ("grid.t=[5,-1]", "grid.t=[5, -1] must be an integer >= 0 or a non-empty list of them"),
        ("grid.t=[]", "grid.t=[] must be an integer >= 0 or a non-empty list of them"),
        ("problem.n_features=0", "problem.n_features=0 must be an integer >= 1"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, monkeypatch, capsys, override, message):
    import torch

    if override.startswith("device=cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    code = run_cli(monkeypatch, "run", override, f"hydra.run.dir={tmp_path}")
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("hgbench: error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "metrics.csv").exists()


def test_cg_on_nonsymmetric_problem_is_refused_before_work(tmp_path, monkeypatch, capsys):
    code = run_cli(
        monkeypatch, "run", "estimator=cg", "problem=linear_map", f"hydra.searchpath=[file://{TESTS / 'conf'}]", f"hydra.run.dir={tmp_path}"
    )
    err = capsys.readouterr().err
    assert code == 2 and "'cg' needs a symmetric" in err and "estimator=fp" in err


def test_cfg_help_and_list(monkeypatch, capsys):
    assert run_cli(monkeypatch, "run", "estimator=fp", "--cfg", "job") == 0
    assert "name: fp" in capsys.readouterr().out
    assert run_cli(monkeypatch, "run", "--help") == 0
    printed = capsys.readouterr().out
    listed = next(line for line in printed.splitlines() if line.strip().startswith("estimator: "))
    assert "hgbench run" in printed and {"cg", "fp", "itd", "itd_forward"} <= set(listed.split(": ", 1)[1].split(", "))
    assert run_cli(monkeypatch, "list") == 0
    printed = capsys.readouterr().out
    for name in ("ridge", "logistic", "itd_forward", "cg", "diag", "k_sweep", "t_sweep", "full"):
        assert f"  {name}" in printed
    lines = printed.splitlines()
    assert "${" not in printed  # interpolations resolved: seed=0, name=precond_newton
    assert any(line.split()[:2] == ["demo", "`make"] and line.endswith("swept at large t.") for line in lines)
    assert any(line.split()[:2] == ["grazzi2020", "*"] and "Grazzi et al. (ICML 2020)" in line for line in lines)
    assert any(line.split()[0] == "cg" and "(needs: symmetric)" in line for line in lines)
    applies = {
        line.split()[0]: line.split(None, 1)[1]
        for line in lines[lines.index(next(l for l in lines if l.startswith("which estimators apply"))) + 1 :]
    }
    assert (
        applies["equilibrium_mnist"]
        == "all but cg, higher_unrolled, jaxopt_cg, reparam, reparam_exp, reparam_opt, torchopt_cg, torchopt_unrolled; "
        "no minibatch estimator, no solver (not a finite sum)"
        and applies["kernel_ridge"] == "all deterministic; no minibatch estimator, no solver (not a finite sum)"
        and applies["ridge"] == applies["hyper_rep"] == applies["ye_ridge"] == "all"
    )
    # the minibatch estimators are named as such, and said to apply to finite sums only
    header = next(line for line in lines if line.startswith("which estimators apply"))
    from hgbench.running.prepare import target_class
    from hgbench.estimators.base import Estimator
    from omegaconf import OmegaConf
    from hgbench.paths import conf_dir

    minibatch = sorted(
        p.stem
        for p in (conf_dir() / "estimator").glob("*.yaml")
        if target_class(OmegaConf.load(p)["_target_"], "estimator", Estimator).minibatch
    )
    assert len(minibatch) >= 9 and f"the minibatch estimators ({', '.join(minibatch)}; mode=stochastic)" in header
    assert any(line.split()[0] == "stocbio" and "(finite-sum problems only)" in line for line in lines)


def test_shell_completion_sees_run_overrides(monkeypatch, capsys):
    """The bash completion script calls `hgbench -sc query=bash` with COMP_LINE holding the
    whole line, `run` included."""
    monkeypatch.setenv("COMP_LINE", "hgbench run estimator=")
    monkeypatch.setenv("COMP_POINT", "22")
    assert run_cli(monkeypatch, "-sc", "query=bash") == 0
    choices = capsys.readouterr().out.split()
    assert {"estimator=cg", "estimator=fp", "estimator=itd", "estimator=itd_forward"} <= set(choices)


def test_plot_and_command_errors(tmp_path, monkeypatch, capsys):
    assert run_cli(monkeypatch, "plot", tmp_path / "missing") == 2
    assert "neither a CSV file nor a directory" in capsys.readouterr().err
    assert run_cli(monkeypatch, "frobnicate") == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kind, t, k, pairs",
    [
        ("diag", [3, 0, 3], None, [(0, 0), (3, 3)]),
        ("k_sweep", 9, [2, 1], [(9, 1), (9, 2)]),
        ("t_sweep", [4, 1], 7, [(1, 7), (4, 7)]),
        ("full", [0, 2], [1, 3], [(0, 1), (0, 3), (2, 1), (2, 3)]),
    ],
)
def test_grid_pairs(kind, t, k, pairs):
    assert grid_pairs(kind, t, k) == pairs


def test_grid_errors():
    with pytest.raises(ValueError, match="grid.kind='spiral' is not one of diag, k_sweep, t_sweep, full"):
        grid_pairs("spiral", [1])
    with pytest.raises(ValueError, match="k_sweep needs a single t"):
        grid_pairs("k_sweep", [1, 2], [3])
    with pytest.raises(ValueError, match=r"grid.kind=full needs grid.k"):
        grid_pairs("full", [1])


def test_float32_run_end_to_end(tmp_path, monkeypatch):
    """dtype=float32: the estimators run in float32, the reference stays float64, so the error
    floor is float32 round-off."""
    out = tmp_path / "run"
    assert run_cli(monkeypatch, "run", "estimator=fp", "dtype=float32", *SMALL, f"hydra.run.dir={out}", "plot=false") == 0
    df = pd.read_csv(out / "metrics.csv")
    assert (df["dtype"] == "float32").all()
    last = df[df["t"] == 300]["err_rel"]
    assert (last < 1e-4).all() and (last > 1e-10).all()


def test_inner_grid_preset_and_plot_inner(tmp_path, monkeypatch, capsys):
    """A small Ye et al. preset sweep (grid=inner), then `hgbench plot --kind inner`: the figure,
    the printed slope table and slopes.csv / slopes.md next to it, from the CSV alone."""
    sweep = tmp_path / "sweep"
    code = run_cli(
        monkeypatch,
        "run",
        "-m",
        "+experiment=ye2024_logistic",
        "estimator=exact,precond",
        "problem.outer=validation",
        "n_lambdas=2",
        f"grid.t=[{','.join(map(str, range(0, 40, 2)))}]",
        "grid.k=1",
        f"hydra.sweep.dir={sweep}",
    )
    assert code == 0
    df = pd.read_csv(sweep / "metrics.csv")
    assert set(df["grid"]) == {"inner"} and set(df["estimator"]) == {"exact", "precond_newton"} and df["k"].isna().all()
    assert set(df["problem"]) == {"ye_logistic_validation"} and len(df) == 2 * 2 * 20
    assert (sweep / "error_vs_iterations.png").exists()
    capsys.readouterr()
    assert run_cli(monkeypatch, "plot", sweep / "metrics.csv", "--kind", "inner") == 0
    printed = capsys.readouterr().out
    assert "| precond_newton |" in printed and str(sweep / "error_vs_inner_error.png") in printed
    slopes = pd.read_csv(sweep / "slopes.csv").set_index("estimator")["slope"]
    assert abs(slopes["exact"] - 1) < 0.3 and abs(slopes["precond_newton"] - 2) < 0.3
    assert (sweep / "slopes.md").read_text().startswith("| estimator | ye_logistic_validation |")
    assert (sweep / "error_vs_inner_error.pdf").exists()


def test_inner_grid_needs_one_k_and_plot_inner_needs_inner_rows(tmp_path, monkeypatch, capsys):
    code = run_cli(monkeypatch, "run", "estimator=exact", "grid=inner", "grid.k=[1,2]", f"hydra.run.dir={tmp_path}")
    assert code == 2 and "grid.kind=inner needs a single k, got k=[1, 2]" in capsys.readouterr().err
    out = tmp_path / "run"
    assert run_cli(monkeypatch, "run", "estimator=jfb", "n_lambdas=1", "grid.t=[0,3]", "plot=false", f"hydra.run.dir={out}") == 0
    assert run_cli(monkeypatch, "plot", out, "--kind", "inner") == 2
    assert "no rows of a grid=inner or grid=levels run" in capsys.readouterr().err


def test_help_and_list_are_answered_from_the_first_call_without_torch(tmp_path, monkeypatch):
    """The shipped answers (hgbench/running/shipped_answers.json) are the current code's: a fresh
    process prints `hgbench list` and `hgbench run --help` exactly as computed afresh, without
    importing torch, pandas or Hydra, on its first call. Answers not shipped are kept in the
    user's store after their first computation; a changed config file makes them computed
    afresh, and HGBENCH_NO_CACHE=1 bypasses the stores."""
    import subprocess
    import sys

    from hgbench.running import answers

    stale = "the shipped answers are not the current code's: run `make answers` (python -m hgbench.running.answers)"
    assert answers.shipped(answers.fingerprint()), stale
    probe = (
        "import sys\nfrom hgbench.running.cli import main\nsys.argv = ['hgbench', *sys.argv[1:]]\ntry:\n    main()\n"
        "except SystemExit as done:\n    heavy = [m for m in ('torch', 'pandas', 'hydra') if m in sys.modules]\n"
        "    print('HEAVY', heavy, done.code, file=sys.stderr)"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    for words in answers.SHIPPED:
        first = subprocess.run([sys.executable, "-c", probe, *words], env=env, capture_output=True, text=True)
        assert "HEAVY [] 0" in first.stderr, first.stderr
        assert first.stdout == answers.compute(words), stale
    assert not (tmp_path / "hgbench").exists()  # answered from the shipped file, nothing written
    monkeypatch.setattr(answers, "SHIPPED_FILE", tmp_path / "none.json")
    calls = []
    words = ["list"]
    key = answers.fingerprint()
    os.environ["XDG_CACHE_HOME"], saved = str(tmp_path / "own"), os.environ["XDG_CACHE_HOME"]
    try:
        assert answers.answer(words, lambda: calls.append(1) or print("one") or 0) == 0
        assert answers.answer(words, lambda: calls.append(1) or print("two") or 0) == 0 and len(calls) == 1
        assert answers.answer(["failing"], lambda: calls.append(1) or print("x") or 3) == 3
        assert answers.answer(["failing"], lambda: calls.append(1) or print("x") or 3) == 3 and len(calls) == 3  # failures are not kept
        monkeypatch.setenv("HGBENCH_NO_CACHE", "1")
        assert answers.answer(words, lambda: calls.append(1) or print("three") or 0) == 0 and len(calls) == 4  # bypassed
        monkeypatch.delenv("HGBENCH_NO_CACHE")
    finally:
        os.environ["XDG_CACHE_HOME"] = saved
    assert answers.fingerprint() == key
    conf = tmp_path / "conf"
    (conf / "problem").mkdir(parents=True)
    (conf / "problem" / "mine.yaml").write_text("name: mine\n")
    monkeypatch.setattr(answers, "conf_dir", lambda: conf)
    before = answers.fingerprint()
    (conf / "problem" / "mine.yaml").write_text("name: mine2\n")
    assert answers.fingerprint() != before  # a changed config file: another key, a fresh answer


def test_a_completion_is_computed_once_per_line(tmp_path, monkeypatch, capsys):
    """Shell completion (`hgbench -sc query=bash`, the line in COMP_LINE) is Hydra's answer, kept
    in the user's store: the same line, cursor and directory again is answered without Hydra;
    another line is computed."""
    from hgbench.running import cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    real, calls = cli._complete, []
    monkeypatch.setattr(cli, "_complete", lambda argv: calls.append(os.environ["COMP_LINE"]) or real(argv))
    for line in ("hgbench run problem=kern", "hgbench run problem=kern", "hgbench run estimator=c"):
        monkeypatch.setenv("COMP_LINE", line)
        monkeypatch.setenv("COMP_POINT", str(len(line)))
        assert run_cli(monkeypatch, "-sc", "query=bash") == 0
    out = capsys.readouterr().out.split()
    assert out[:2] == ["problem=kernel_ridge"] * 2 and "estimator=cg" in out[2:]
    assert calls == ["hgbench run problem=kern", "hgbench run estimator=c"]


def test_completion_without_torch_offers_what_hgbench_run_offers(monkeypatch, capsys):
    """Completion from the schemas shipped with the package (hgbench.running.completion: no
    torch) offers, line by line, exactly the candidates of `hgbench run`'s own completion (the
    components' Options imported); a fresh process completing a line imports no torch or pandas."""
    import subprocess
    import sys

    from hgbench.running import answers, cli

    schemas = answers.shipped(answers.fingerprint(), "schemas")
    assert schemas, "the shipped schemas are not the current code's: run `make answers`"
    lines = ("hgbench run problem=ridge problem.n", "hgbench run ", "hgbench run mode=bilevel solver=saba solver.")
    for line in lines:
        offered = []
        for path in ("shipped", "run"):
            monkeypatch.setenv("COMP_LINE", line)
            monkeypatch.setenv("COMP_POINT", str(len(line)))
            if path == "shipped":
                with monkeypatch.context() as patch:  # the torch-free path, not a fallback to `hgbench run`'s
                    patch.setattr(cli, "_run", None)
                    assert cli._complete(["hgbench", "-sc", "query=bash"]) == 0
            else:
                assert cli._run(["hgbench", "-sc", "query=bash"]) == 0
            offered.append(capsys.readouterr().out.split())
        assert offered[0] == offered[1] and offered[0], line
    assert run_cli(monkeypatch, "run", "problem.bogus=1") == 2  # the typed schemas are back: a run still validates
    probe = (
        "import sys\nfrom hgbench.running.cli import main\nsys.argv = ['hgbench', '-sc', 'query=bash']\ntry:\n    main()\n"
        "except SystemExit:\n    print('HEAVY', [m for m in ('torch', 'pandas') if m in sys.modules], file=sys.stderr)"
    )
    env = {**os.environ, "COMP_LINE": "hgbench run problem=kern", "COMP_POINT": "24", "HGBENCH_NO_CACHE": "0"}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert done.stdout.split() == ["problem=kernel_ridge"] and "HEAVY []" in done.stderr, done.stderr
