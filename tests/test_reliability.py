"""Reliable runs and sweeps: bad input refused in one line, divergence and failures kept as data,
crash safety and resume, determinism, parallel and cluster launchers (issue 8)."""

import json
import os
import re
import signal

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TESTS, run_cli, signal_when_paused

import hgbench
from hgbench.analysis.results import COLUMNS

TOYS = f"hydra.searchpath=[file://{TESTS / 'conf'}]"
SMALL = ["problem=ridge", "problem.n_features=4", "problem.n_train=20", "problem.n_val=20", "n_lambdas=2", "grid.t=[0,5]", "plot=false"]
FAULTY = ["problem=faulty_map", TOYS, "estimator=fp", "grid.t=[0,5,20]", "plot=false"]
# The numbers of a row; time_s (a measurement) is the one column allowed to change between runs.
NUMBERS = [c for c in COLUMNS if c != "time_s"]


def _one_line_error(capsys, code, message):
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("hgbench: error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["n_lambdas=-3"], "n_lambdas=-3 must be an integer >= 1"),
        (["n_lambdas=1.5"], "n_lambdas=1.5 must be an integer >= 1"),
        (["seed=abc"], "seed='abc' must be an integer in [0, 2**63)"),
        (["seed=99999999999999999999"], "seed=99999999999999999999 must be an integer in [0, 2**63)"),
        (["threads=99999999999999999999"], "threads=99999999999999999999 is too large for a 64-bit integer"),
        (
            ["problem.lam_low=900", "problem.lam_high=1000"],
            "estimator 'cg' fails on problem 'ridge' at the first λ draw with t = k = 1 (_LinAlgError: linalg.eigh",
        ),
        (["threads=0"], "threads=0 must be an integer >= 1, or null (torch's default)"),
        (["resume=maybe"], "resume='maybe' must be true or false"),
        (["device=tpu"], "device='tpu' must be cpu, cuda or cuda:N"),
        (["device=mps"], "device='mps' must be cpu, cuda or cuda:N"),
        (["grid.kind=spiral"], "grid.kind='spiral' is not one of diag, k_sweep, t_sweep, full"),
        (["grid=k_sweep", "grid.t=[1,2]"], "grid.kind=k_sweep needs a single t, got t=[1, 2]"),
        (["grid=full", "grid.k=[]"], "grid.k=[] must be an integer >= 0 or a non-empty list of them"),
        (["problem.lam_low=2"], "problem.lam_low=2.0 must be <= problem.lam_high=0.0"),
        (["problem.lam_low=-1e400"], "problem.lam_low=-inf must be a finite number"),
        (["+problem.bogus=1"], "problem.bogus=1 is not an option; the options of problem are name, seed, lam_low"),
        (["problem.seed=${nope}"], "InterpolationKeyError: Interpolation key 'nope' not found"),
        (["problem=data_file_map", TOYS], "MissingMandatoryValue"),
        (
            ["problem=data_file_map", TOYS, "problem.path=/nonexistent/c.txt"],
            "FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/c.txt'",
        ),
        (["problem=faulty_map", TOYS, "estimator=cg"], "'cg' needs a symmetric"),
    ],
)
def test_bad_input_is_one_line_before_work(tmp_path, monkeypatch, capsys, overrides, message):
    code = run_cli(monkeypatch, "run", *overrides, f"hydra.run.dir={tmp_path}")
    _one_line_error(capsys, code, message)
    assert not (tmp_path / "metrics.csv").exists()


def test_malformed_data_file_is_one_line(tmp_path, monkeypatch, capsys):
    data = tmp_path / "c.txt"
    data.write_text("1 2 three 4")
    code = run_cli(monkeypatch, "run", "problem=data_file_map", TOYS, f"problem.path={data}", f"hydra.run.dir={tmp_path}")
    _one_line_error(capsys, code, "ValueError: could not convert string to float: 'three'")
    data.write_text("1 2 3")
    code = run_cli(monkeypatch, "run", "problem=data_file_map", TOYS, f"problem.path={data}", f"hydra.run.dir={tmp_path}")
    _one_line_error(capsys, code, f"{data} holds 3 numbers; problem.dim=4 needs 4")


@pytest.mark.parametrize(
    "args, message",
    [
        (["problem=nope"], "Could not find 'problem/nope'"),
        (["grid=nope"], "Could not find 'grid/nope'"),
        (["hydra/launcher=nope"], "Could not find 'hydra/launcher/nope'"),
        (["foo=1"], "foo is not an option; the options of hgbench run are seed, n_lambdas"),
        (["n_lambdas"], "Error parsing override 'n_lambdas'"),
        (["-m", "--cfg", "job"], "Only one of --run, --multirun, --cfg"),
    ],
)
def test_hydra_refusals_are_one_line(tmp_path, monkeypatch, capsys, args, message):
    code = run_cli(monkeypatch, "run", *args, f"hydra.run.dir={tmp_path}")
    _one_line_error(capsys, code, message)


def test_non_contraction_warns_with_measured_q_and_overflow_is_data(tmp_path, monkeypatch, capsys):
    """q = ‖A‖₂ = 20: the warning gives the measured q; the float32 iterates overflow, and those
    rows are kept with status diverged while the run finishes."""
    out = tmp_path / "run"
    code = run_cli(
        monkeypatch,
        "run",
        "problem=linear_map",
        TOYS,
        "problem.q=20",
        "estimator=fp",
        "dtype=float32",
        "n_lambdas=2",
        "grid.t=[0,1,200]",
        "plot=false",
        f"hydra.run.dir={out}",
    )
    assert code == 0
    err = capsys.readouterr().err
    measured = re.search(r"not a contraction at λ draw 0: q = ‖∂₁Φ\(w\*, λ\)‖₂ = ([0-9.e+]+) >= 1", err)
    assert measured and float(measured.group(1)) == pytest.approx(20, rel=1e-5)
    df = pd.read_csv(out / "metrics.csv")
    assert len(df) == 6 and np.allclose(df["q"], 20, rtol=1e-12)
    assert (df[df["t"] == 0]["status"] == "ok").all()
    far = df[df["t"] == 200]
    assert (far["status"] == "diverged").all() and far["reason"].str.contains("NaN or inf").all()


def test_injected_nan_gives_diverged_rows_and_a_finished_run(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "sweep"
    code = run_cli(monkeypatch, "run", "-m", *FAULTY, "estimator=fp,itd", "problem.nan_above=0", "n_lambdas=6", f"hydra.sweep.dir={sweep}")
    assert code == 0
    assert "rows diverged (the estimate is NaN or inf); kept in metrics.csv" in capsys.readouterr().err
    df = pd.read_csv(sweep / "metrics.csv")
    lam0 = {f["lam_id"]: f["lam"][0] for f in json.loads(next(sweep.glob("*_fp_*/run.json")).read_text())["references"]}
    assert sorted(lam0) == list(range(6)) and {lam > 0 for lam in lam0.values()} == {True, False}
    poisoned = df["lam_id"].map(lam0) > 0
    expected = np.where(poisoned & (df["t"] >= 1), "diverged", "ok")
    assert list(df["status"]) == list(expected) and len(df) == 2 * 6 * 3
    assert df[df["status"] == "ok"]["err_rel"].notna().all()


def test_failing_draws_are_error_rows_and_resume_retries_only_them(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    args = ["run", *FAULTY, "n_lambdas=6", f"hydra.run.dir={out}", "resume=true"]
    monkeypatch.setenv("HGBENCH_TEST_FAIL_ABOVE", "0")
    assert run_cli(monkeypatch, *args) == 0
    assert "rows error (RuntimeError: injected failure at λ₀ = " in capsys.readouterr().err
    first = pd.read_csv(out / "metrics.csv")
    failed = set(first[first["status"] == "error"]["lam_id"])
    assert failed and len(failed) < 6 and len(first) == 6 * 3
    assert first[first["status"] == "error"]["err_rel"].isna().all()
    monkeypatch.delenv("HGBENCH_TEST_FAIL_ABOVE")
    assert run_cli(monkeypatch, *args) == 0
    second = pd.read_csv(out / "metrics.csv")
    assert (second["status"] == "ok").all() and len(second) == 6 * 3
    kept = ~second["lam_id"].isin(failed)
    assert second[kept]["time_s"].tolist() == first[~first["lam_id"].isin(failed)]["time_s"].tolist()  # not recomputed


def test_resume_refuses_results_of_another_configuration(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert run_cli(monkeypatch, "run", *FAULTY, "n_lambdas=1", f"hydra.run.dir={out}") == 0
    capsys.readouterr()
    code = run_cli(monkeypatch, "run", *FAULTY, "n_lambdas=1", "problem.q=0.6", "resume=true", f"hydra.run.dir={out}")
    _one_line_error(capsys, code, "holds results of another configuration (differing in problem.q); rerun with resume=false")
    # more draws of the same configuration extend the run: the first draw is kept as it was
    before = pd.read_csv(out / "metrics.csv")
    assert run_cli(monkeypatch, "run", *FAULTY, "n_lambdas=2", "resume=true", f"hydra.run.dir={out}") == 0
    after = pd.read_csv(out / "metrics.csv")
    assert sorted(after["lam_id"].unique()) == [0, 1] and after[after["lam_id"] == 0]["time_s"].tolist() == before["time_s"].tolist()


def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_rows(tmp_path, monkeypatch):
    args = [*FAULTY, "n_lambdas=4", "resume=true"]
    full = tmp_path / "full"
    assert run_cli(monkeypatch, "run", *args, f"hydra.run.dir={full}") == 0
    killed = tmp_path / "killed"
    code, _ = signal_when_paused(tmp_path, 2, *args, f"hydra.run.dir={killed}")
    assert code == -signal.SIGKILL
    partial = pd.read_csv(killed / "metrics.csv")
    assert sorted(partial["lam_id"].unique()) == [0, 1] and len(partial) == 2 * 3  # complete draws only
    assert run_cli(monkeypatch, "run", *args, f"hydra.run.dir={killed}") == 0
    done, reference = pd.read_csv(killed / "metrics.csv"), pd.read_csv(full / "metrics.csv")
    assert not done.duplicated(["lam_id", "t", "k"]).any()
    pd.testing.assert_frame_equal(done[NUMBERS], reference[NUMBERS])
    assert done["time_s"].iloc[:6].tolist() == partial["time_s"].tolist()  # the first two draws were kept
    assert not list(killed.glob(".*.tmp"))


def test_identical_runs_give_identical_numbers(tmp_path, monkeypatch):
    threads = torch.get_num_threads()
    try:
        frames, infos = [], []
        for name in ("a", "b"):
            out = tmp_path / name
            assert run_cli(monkeypatch, "run", *SMALL, "estimator=itd_forward", "threads=1", f"hydra.run.dir={out}") == 0
            frames.append(pd.read_csv(out / "metrics.csv"))
            infos.append(json.loads((out / "run.json").read_text()))
    finally:
        torch.set_num_threads(threads)
    a, b = frames
    assert a[["lam_id", "t", "k", "n_phi", "n_jvp", "status"]].equals(b[["lam_id", "t", "k", "n_phi", "n_jvp", "status"]])
    for column in ("err_abs", "err_rel", "inner_err", "q"):
        np.testing.assert_allclose(a[column], b[column], rtol=1e-12, atol=0)
    assert [r["lam"] for r in infos[0]["references"]] == [r["lam"] for r in infos[1]["references"]]
    info = infos[0]
    assert info["threads"] == 1 and info["device"] == "cpu"
    assert info["versions"]["hgbench"] == hgbench.__version__ and info["versions"]["torch"] == torch.__version__
    assert "code_revision" in info and {"hydra", "numpy", "python"} <= set(info["versions"])


def test_joblib_sweep_with_a_failing_job_combines_and_aggregate_rebuilds(tmp_path, monkeypatch, capsys):
    """Two jobs in joblib worker processes, one of which fails: the other's rows are combined,
    the failure (recorded by the worker in error.txt) makes the command exit 1;
    `hgbench aggregate` rebuilds the combined CSV from the jobs' files."""
    sweep = tmp_path / "sweep"
    code = run_cli(monkeypatch, "run", "-m", "hydra/launcher=parallel", *SMALL, "estimator=fp", "n_lambdas=2,0", f"hydra.sweep.dir={sweep}")
    assert code == 1
    assert "1 job(s) failed" in capsys.readouterr().err
    assert "n_lambdas=0 must be an integer >= 1" in next(sweep.rglob("error.txt")).read_text().splitlines()[0]
    combined = pd.read_csv(sweep / "metrics.csv")
    assert set(combined["estimator"]) == {"fp"} and len(combined) == 2 * 2
    (sweep / "metrics.csv").unlink()
    assert run_cli(monkeypatch, "aggregate", sweep) == 0
    assert f"results: {sweep / 'metrics.csv'}" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(sweep / "metrics.csv"), combined)
    assert run_cli(monkeypatch, "aggregate", tmp_path / "missing") == 2
    assert "neither a CSV file nor a directory" in capsys.readouterr().err


def test_submitit_local_sweep_combines(tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    code = run_cli(
        monkeypatch, "run", "-m", "hydra/launcher=slurm_local", *SMALL, "estimator=fp,cg", "n_lambdas=1", f"hydra.sweep.dir={sweep}"
    )
    assert code == 0
    combined = pd.read_csv(sweep / "metrics.csv")
    assert sorted(combined["estimator"].unique()) == ["cg", "fp"] and len(combined) == 2 * 2
    assert (combined["status"] == "ok").all() and len(list(sweep.glob(".submitit/[0-9]*"))) == 2  # two submitit jobs ran


KEYS = [
    "n_lambdas",
    "seed",
    "dtype",
    "device",
    "threads",
    "batch_lambdas",
    "resume",
    "grid.kind",
    "grid.t",
    "grid.k",
    "problem.n_features",
    "problem.n_train",
    "problem.cond",
    "problem.noise",
    "problem.lam_low",
    "problem.lam_high",
]
WILD = [
    "null",
    "true",
    "false",
    "float32",
    "float64",
    "float16",
    "cpu",
    "cuda",
    "cuda:7",
    "meta",
    "abc",
    "''",
    "[]",
    "[0,2]",
    "[1,-1]",
    "[3]",
    "[1.5]",
    "['a']",
    "{}",
    "${seed}",
    "${nope}",
    "diag",
    "full",
    "k_sweep",
    "t_sweep",
    "1e400",
    "-1e400",
    "nan",
    "99999999999999999999",
    "0.0",
]


def _overrides():
    from hypothesis import strategies as st

    value = st.one_of(
        st.sampled_from(WILD),
        st.integers(-3, 6).map(str),
        st.floats(-10, 10, allow_nan=False).map(lambda x: f"{x:.3g}"),
        st.lists(st.integers(-2, 12), max_size=3).map(lambda xs: "[" + ",".join(map(str, xs)) + "]"),
    )
    setting = st.tuples(st.sampled_from(KEYS), value).map("=".join)
    group = st.sampled_from(
        [
            "estimator=cg",
            "estimator=fp",
            "estimator=itd",
            "estimator=itd_forward",
            "estimator=nope",
            "grid=full",
            "grid=k_sweep",
            "grid=t_sweep",
        ]
    )
    return st.lists(st.one_of(setting, group), min_size=1, max_size=4)


def test_random_overrides_never_give_a_traceback(tmp_path, monkeypatch, capsys):
    """Property: whatever the overrides (a few keys, combined, run end to end; every key alone:
    tests/test_schema.py), `hgbench run` finishes (exit 0, metrics.csv written) or refuses in
    one line (exit 2; Hydra's composition errors included), never with a traceback."""
    from hypothesis import HealthCheck, given, settings

    threads = torch.get_num_threads()
    runs = iter(range(10**6))
    base = [*SMALL, "grid.t=[0,3]", "grid.k=[2]", "problem.n_features=3", "n_lambdas=1"]

    @settings(
        max_examples=int(os.environ.get("HGBENCH_HYPOTHESIS_EXAMPLES", 20)),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(_overrides())
    def check(overrides):
        out = tmp_path / f"run{next(runs)}"
        try:
            code = run_cli(monkeypatch, "run", *base, *overrides, f"hydra.run.dir={out}")
        finally:
            torch.set_num_threads(threads)
        err = capsys.readouterr().err
        assert "Traceback" not in err, (overrides, err)
        if code == 0:
            assert (out / "metrics.csv").is_file(), overrides
        else:
            assert code == 2 and err.startswith("hgbench: error: ") and len(err.strip().splitlines()) == 1, (overrides, err)

    check()
