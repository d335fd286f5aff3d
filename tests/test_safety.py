"""Nothing lost, nothing wrong accepted (issue 14): certified references, output folders that
cannot lose data, the cost guard, one line for every failure, files others can read."""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys

import pandas as pd
import pytest
import torch
from conftest import TESTS, draws, run_cli, signal_when_paused

from hgbench.analysis.results import atomic, read_csv
from hgbench.core.bound import estimate
from hgbench.core.reference import Reference, certify, reference
from hgbench.estimators.itd import ITDReverse, ITDTruncated
from hgbench.estimators.reparam import Reparameterized
from hgbench.running.interrupt import Interrupted, interruptible
from hgbench.running.lock import LOCK

TOYS = f"hydra.searchpath=[file://{TESTS / 'conf'}]"
SMALL = ["problem=ridge", "problem.n_features=4", "problem.n_train=20", "problem.n_val=20", "n_lambdas=2", "grid.t=[0,5]", "plot=false"]
FAULTY = ["problem=faulty_map", TOYS, "estimator=fp", "grid.t=[0,5,20]", "plot=false"]
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}


def _one_line(capsys, code, message, expected=2, prefix="hgbench: error: "):
    err = capsys.readouterr().err
    assert code == expected, err
    assert err.startswith(prefix) and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err


def _strict(path):
    """run.json parsed as strict JSON: NaN or Infinity tokens raise."""
    return json.loads(path.read_text(), parse_constant=lambda token: pytest.fail(f"{token} in {path}"))


# --- 1. certified references ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, check",
    [
        (["problem=logistic", "problem.lam_low=-1000", "problem.n_samples=200"], "linear residual"),
        (["problem=meta_learning", "problem.gamma=1e-12", "problem.n_tasks=4"], "linear residual"),
    ],
)
def test_an_uncertified_reference_gives_error_rows_never_ok(tmp_path, monkeypatch, capsys, overrides, check):
    """q ≈ 1 (κ ~ 1e13–1e17): the LU solve leaves a relative adjoint residual far above 1e-10, and
    every row of such a draw is an error, with the certificate in run.json."""
    out = tmp_path / "run"
    assert (
        run_cli(monkeypatch, "run", *overrides, "estimator=fp", "n_lambdas=2", "grid.t=[0,10]", "plot=false", f"hydra.run.dir={out}") == 0
    )
    df = read_csv(out / "metrics.csv")
    assert (df["status"] == "error").all() and df["reason"].str.startswith(f"reference not certified: {check}").all()
    assert df["err_rel"].isna().all()
    for fact in _strict(out / "run.json")["references"]:
        certificate = fact["certificate"]
        assert certificate["certified"] is False and certificate["linear_rel"] > certificate["tolerances"]["linear_rel"] == 1e-10
        assert fact["error"] == certificate["reason"]


def test_a_good_reference_is_certified_and_recorded(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert run_cli(monkeypatch, "run", *SMALL, f"hydra.run.dir={out}") == 0
    facts = _strict(out / "run.json")["references"]
    assert len(facts) == 2
    for fact in facts:
        certificate = fact["certificate"]
        assert certificate["certified"] is True and certificate["error_bound"] < 1e-12
        assert certificate["fixed_point_rel"] < 1e-14 and certificate["linear_rel"] < 1e-14


def test_certify_checks_each_condition(ridge):
    ref = reference(ridge, draws(ridge, 1)[0])
    assert certify(ref)["certified"]
    zero = Reference(**{**vars(ref), "w_star": torch.zeros_like(ref.w_star), "fixed_point_residual": 1e-11})
    assert certify(zero)["certified"]  # w* = 0: the residual is taken as absolute
    bad_fixed = certify(Reference(**{**vars(ref), "fixed_point_residual": 1e-6}))
    assert not bad_fixed["certified"] and bad_fixed["reason"].startswith("reference not certified: fixed-point residual 1e-06")
    singular = {**ref.norms, "inverse": float("inf"), "from_w": float("inf"), "from_v": float("inf")}  # I − J singular
    infinite = certify(Reference(**{**vars(ref), "norms": singular}))
    assert not infinite["certified"] and "no bound on the reference's error" in infinite["reason"]
    sensitive = {**ref.norms, "from_v": 1e9 * ref.norms["from_v"]}  # ∇f very sensitive to the adjoint residual
    loose = certify(Reference(**{**vars(ref), "norms": sensitive, "linear_residual": 1e-11 * ref.rhs_norm}))
    assert not loose["certified"] and loose["reason"].startswith("reference not certified: error bound")
    assert loose["error_bound"] > 1e-6 and loose["grad_error_bound"] == pytest.approx(
        loose["error_bound"] * torch.linalg.vector_norm(ref.grad).item()
    )
    unmeasured = certify(reference(ridge, draws(ridge, 1)[0], bound=False))
    assert not unmeasured["certified"] and "no error bound" in unmeasured["reason"]


# --- 2. folders that cannot lose data ----------------------------------------------------------


def _lock(out, pid):
    out.mkdir(parents=True, exist_ok=True)
    (out / LOCK).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "2026-12-01 10:00:00 UTC"}))


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _lock(out, os.getpid())  # a live holder
    code = run_cli(monkeypatch, "run", *SMALL, f"hydra.run.dir={out}")
    _one_line(
        capsys,
        code,
        f"is being written by another hgbench run (pid {os.getpid()} on {socket.gethostname()}, started 2026-12-01 10:00:00 UTC)",
    )
    assert not (out / "metrics.csv").exists()
    dead = subprocess.Popen(["true"])
    dead.wait()
    _lock(out, dead.pid)  # a holder that no longer runs
    (out / f".metrics.csv.hgbench-{dead.pid}.tmp").write_text("half a file")
    assert run_cli(monkeypatch, "run", *SMALL, f"hydra.run.dir={out}") == 0
    assert len(read_csv(out / "metrics.csv")) == 4
    assert not (out / LOCK).exists() and not list(out.glob(".*.tmp"))  # released; the dead writer's temporary file deleted


def test_resume_with_fewer_draws_keeps_the_finished_ones(tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = ["run", *FAULTY, "resume=true", f"hydra.run.dir={out}"]
    assert run_cli(monkeypatch, *args, "n_lambdas=3") == 0
    before = read_csv(out / "metrics.csv")
    assert run_cli(monkeypatch, *args, "n_lambdas=2") == 0
    after = read_csv(out / "metrics.csv")
    pd.testing.assert_frame_equal(after.drop(columns="overrides"), before.drop(columns="overrides"))
    assert [f["lam_id"] for f in _strict(out / "run.json")["references"]] == [0, 1, 2]


def test_resume_drops_a_torn_line_and_a_draw_without_its_facts(tmp_path, monkeypatch):
    """What a kill can leave: rows of a draw whose facts line never came, and (after a power cut)
    a last line without its newline. Resume keeps only the draws that have both."""
    out = tmp_path / "run"
    args = ["run", *FAULTY, "n_lambdas=3", "resume=true", f"hydra.run.dir={out}"]
    assert run_cli(monkeypatch, *args) == 0
    full = read_csv(out / "metrics.csv")
    info = json.loads((out / "run.json").read_text())
    info["references"] = info["references"][:1]  # draws 1 and 2 lose their facts
    (out / "run.json").write_text(json.dumps(info))
    text = (out / "metrics.csv").read_text()
    (out / "metrics.csv").write_text(text + text.splitlines()[1][:25])  # a torn last line
    assert run_cli(monkeypatch, *args) == 0
    again = read_csv(out / "metrics.csv")
    assert len(again) == len(full) and not again.duplicated(["lam_id", "t", "k"]).any()
    assert again[again["lam_id"] == 0]["time_s"].tolist() == full[full["lam_id"] == 0]["time_s"].tolist()  # kept
    assert again[again["lam_id"] == 2]["time_s"].tolist() != full[full["lam_id"] == 2]["time_s"].tolist()  # recomputed


def test_quick_reproduction_never_replaces_full_results(tmp_path, monkeypatch, capsys):
    out = tmp_path / "results"
    (out / "ridge_illcond").mkdir(parents=True)
    (out / "ridge_illcond" / "reproduce.json").write_text(json.dumps({"quick": False, "seconds": 60}))
    (out / "ridge_illcond" / "metrics.csv").write_text("the full results\n")
    code = run_cli(monkeypatch, "reproduce", "ridge_illcond", "--quick", "--out", out)
    _one_line(capsys, code, "--quick would replace the full results of ridge_illcond", prefix="hgbench reproduce: error: ")
    assert (out / "ridge_illcond" / "metrics.csv").read_text() == "the full results\n"


def test_aggregate_reads_only_hgbench_job_files(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "sweep"
    job = sweep / "0_job"
    assert run_cli(monkeypatch, "run", *SMALL, f"hydra.run.dir={job}") == 0
    foreign = sweep / "other"
    foreign.mkdir()
    (foreign / "run.json").write_text("[]")  # not hgbench's
    (foreign / "metrics.csv").write_bytes(b"\x00\xff\xfe binary")
    capsys.readouterr()
    assert run_cli(monkeypatch, "aggregate", sweep) == 0
    assert "skipping" in capsys.readouterr().err and len(read_csv(sweep / "metrics.csv")) == 4
    (foreign / "run.json").write_text((job / "run.json").read_text())  # now it looks like a job: its CSV must be readable
    code = run_cli(monkeypatch, "aggregate", sweep)
    _one_line(capsys, code, "metrics.csv is not a readable CSV (UnicodeDecodeError", prefix="hgbench aggregate: error: ")
    code = run_cli(monkeypatch, "aggregate", job / "metrics.csv")
    _one_line(capsys, code, "is a file; give the sweep directory", prefix="hgbench aggregate: error: ")


# --- 3. the cost guard -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["problem=ridge", "estimator=itd", "grid.t=[0,1000000000]"], "B (mostly estimator (itd's tape: 1000000000 steps"),
        (["problem=equilibrium_mnist", "estimator=itd_forward"], "(mostly estimator (dw/dλ: 500000 × 199010 entries"),
        (["problem=equilibrium_mnist", "estimator=fp", "n_lambdas=100000"], "(mostly λ draws: 159 GB)"),
    ],
)
def test_the_guard_refuses_what_exceeds_memory(tmp_path, monkeypatch, capsys, overrides, message):
    code = run_cli(monkeypatch, "run", *overrides, "plot=false", f"hydra.run.dir={tmp_path}")
    _one_line(capsys, code, message)
    assert not (tmp_path / "metrics.csv").exists()


def _composed(*overrides):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from hgbench.paths import conf_dir
    from hgbench.running.grids import grid_pairs

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("config", list(overrides))
    grid = cfg.grid
    return cfg, instantiate(cfg.problem), instantiate(cfg.estimator), grid_pairs(grid.kind, list(grid.t), grid.get("k"))


def test_the_guard_warns_about_long_runs_and_can_be_switched_off(monkeypatch, capsys):
    """reparam on hyper_rep (d = 400): 25·d Φ-step units per point, 17 points, 10 draws; with
    τ = 3 ms, hyper_rep's Φ step on 2 idle cores (fixed here: a measured one varies with load),
    about 86 min: warned about."""
    from hgbench.running import guard

    cfg, problem, estimator, pairs = _composed("problem=hyper_rep", "estimator=reparam")
    size = guard.measure_step(problem)[0]
    monkeypatch.setattr(guard, "measure_step", lambda problem: (size, 3e-3))
    found = guard.estimate(cfg, problem, estimator, pairs)
    assert found["units"] > 25 * problem.w_dim * len(pairs) and found["seconds"] > guard.LONG_S
    guard.check(cfg, problem, estimator, pairs, torch.device("cpu"))
    err = capsys.readouterr().err
    assert err.startswith("hgbench: warning: this run will take roughly") and "guard=false skips this estimate" in err
    cfg, problem, estimator, pairs = _composed("problem=ridge", "estimator=itd", "grid.t=[0,1000000000]", "guard=false")
    guard.check(cfg, problem, estimator, pairs, torch.device("cpu"))  # would refuse with guard=true
    assert capsys.readouterr().err == ""


# --- 4. every failure is one line --------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["problem.init_scale=inf"], "problem.init_scale=inf must be a finite number > 0"),  # the schema, first
        (["problem.init_scale=1e300"], "problem.init_scale=1e+300 with problem.init_a_norm=None gives λ draws whose norm is not finite"),
        (["problem.init_a_norm=1e308"], "problem.init_a_norm=1e+308 gives λ draws whose norm is not finite"),
    ],
)
def test_equilibrium_overflow_is_one_line(tmp_path, monkeypatch, capsys, overrides, message):
    args = ["problem=equilibrium_mnist", "estimator=fp", "n_lambdas=1", "grid.t=[0,2]", "plot=false"]
    code = run_cli(monkeypatch, "run", *args, *overrides, f"hydra.run.dir={tmp_path}")
    _one_line(capsys, code, message)


def test_output_directory_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    code = run_cli(monkeypatch, "run", *SMALL, f"hydra.run.dir={a_file}")
    _one_line(capsys, code, f"cannot write the output directory: File exists: {a_file}")
    code = run_cli(monkeypatch, "run", *SMALL, f"hydra.run.dir={a_file / 'sub'}")
    _one_line(capsys, code, f"cannot write the output directory: Not a directory: {a_file / 'sub'}")
    locked = tmp_path / "locked"  # the tests run as root, so a read-only folder is simulated
    real_mkdir = type(locked).mkdir

    def mkdir(self, *args, **kwargs):
        if str(self).startswith(str(locked)):
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(type(locked), "mkdir", mkdir)
    code = run_cli(monkeypatch, "run", *SMALL, f"hydra.run.dir={locked}")
    _one_line(capsys, code, f"cannot write the output directory: Permission denied: {locked}")


@pytest.mark.parametrize(
    "content, message",
    [
        ("[]", "is not an hgbench run.json"),
        ("null", "is not an hgbench run.json"),
        ("no json", "cannot read the results"),
        ("lacks lam_id", "a reference entry without an integer lam_id"),
        ("string lam_id", "a reference entry without an integer lam_id"),
        ("a directory", "run.json exists and is not a file"),
    ],
)
def test_resume_over_a_bad_run_json_is_one_line_before_work(tmp_path, monkeypatch, capsys, content, message):
    out = tmp_path / "run"
    assert run_cli(monkeypatch, "run", *FAULTY, "n_lambdas=1", f"hydra.run.dir={out}") == 0
    info_path, info = out / "run.json", json.loads((out / "run.json").read_text())
    before = (out / "metrics.csv").read_text()
    if content == "lacks lam_id":
        del info["references"][0]["lam_id"]
        content = json.dumps(info)
    elif content == "string lam_id":
        info["references"][0]["lam_id"] = "0"
        content = json.dumps(info)
    if content == "a directory":
        info_path.unlink()
        info_path.mkdir()
    else:
        info_path.write_text(content)
    capsys.readouterr()
    code = run_cli(monkeypatch, "run", *FAULTY, "n_lambdas=2", "resume=true", f"hydra.run.dir={out}")
    _one_line(capsys, code, message)
    assert (out / "metrics.csv").read_text() == before  # nothing computed, nothing written


def test_plot_of_bad_input_is_one_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert run_cli(monkeypatch, "run", *SMALL, f"hydra.run.dir={out}") == 0
    df = pd.read_csv(out / "metrics.csv", dtype={"err_rel": str})
    df.loc[1, "err_rel"] = "abc"
    bad = tmp_path / "bad.csv"
    df.to_csv(bad, index=False)
    capsys.readouterr()
    _one_line(capsys, run_cli(monkeypatch, "plot", bad), "column err_rel holds a non-number ('abc')", prefix="hgbench plot: error: ")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    _one_line(
        capsys, run_cli(monkeypatch, "plot", out, "--out", a_file), "cannot write the figures: File exists", prefix="hgbench plot: error: "
    )


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_the_run_in_one_line_with_complete_draws(tmp_path, monkeypatch, signum, code):
    """One line naming the signal, the complete draws and the command that continues, which does."""
    out = tmp_path / "run"
    returncode, err = signal_when_paused(tmp_path, 2, *FAULTY, "n_lambdas=4", f"hydra.run.dir={out}", signum=signum)
    assert returncode == code
    last = err.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    continued = shlex.join(["hgbench", "run", *FAULTY, "n_lambdas=4", "resume=true", f"hydra.run.dir={out}"])
    assert last == f"hgbench: interrupted ({name}) after draw 2 of 4 in {out}; to continue, run: {continued}"
    assert "Traceback" not in err
    partial = read_csv(out / "metrics.csv")
    assert sorted(partial["lam_id"].unique()) == [0, 1] and len(partial) == 2 * 3
    assert not list(out.glob(".*.tmp")) and not (out / LOCK).exists()
    assert run_cli(monkeypatch, *shlex.split(continued)[1:]) == 0  # the advice is taken: the same configuration
    assert sorted(read_csv(out / "metrics.csv")["lam_id"].unique()) == [0, 1, 2, 3]


def test_a_signal_during_a_write_waits_for_it_and_leaves_no_temporary_file(tmp_path):
    """Inside ``critical`` (a draw's append) SIGINT is held until the block ends; an atomic
    rewrite interrupted midway deletes its temporary file and keeps the old file."""
    appended = []
    with pytest.raises(Interrupted) as info:
        with interruptible(lambda: len(appended), 3, tmp_path) as critical:
            with critical():
                os.kill(os.getpid(), signal.SIGINT)
                appended.append("draw 0")  # still runs: the signal waits
            appended.append("never")
    assert appended == ["draw 0"] and info.value.code == 130 and "after draw 1 of 3" in info.value.message
    target = tmp_path / "metrics.csv"
    target.write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic(target) as tmp:
            tmp.write_text("new, half")
            raise KeyboardInterrupt
    assert target.read_text() == "old\n" and not list(tmp_path.glob(".*.tmp"))


def test_a_closed_pipe_ends_quietly(tmp_path):
    command = [sys.executable, "-c", "from hgbench.running.cli import main; main()", "run", "-sc", "install=bash"]
    proc = subprocess.Popen(command, env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    proc.stdout.close()  # the reader is gone before the first write
    err = proc.stderr.read().decode()
    proc.wait(timeout=600)
    assert proc.returncode == 141 and err == ""


# --- 5. files others can read ----------------------------------------------------------------------


def test_run_json_is_strict_and_csv_dtypes_are_stable(tmp_path, monkeypatch):
    out = tmp_path / "run"  # the equilibrium model does not compute κ: NaN, written as null
    args = [
        "problem=equilibrium_mnist",
        "problem.state_dim=6",
        "problem.n_train=20",
        "problem.n_val=10",
        "problem.n_test=10",
        "estimator=itd",
        "n_lambdas=1",
        "grid.t=[0,3]",
        "plot=false",
    ]
    assert run_cli(monkeypatch, "run", *args, f"hydra.run.dir={out}") == 0
    fact = _strict(out / "run.json")["references"][0]
    assert fact["kappa"] is None and fact["certificate"]["certified"] is True
    df = read_csv(out / "metrics.csv")
    assert str(df["k"].dtype) == "Int64" and df["k"].isna().all()
    assert df["reason"].map(type).eq(str).all() and (df["reason"] == "").all()
    raw = pd.read_csv(out / "metrics.csv", dtype=str, keep_default_na=False)
    for column in ("seed", "lam_id", "t", "n_phi", "n_vjp", "n_jvp", "saved_bytes"):
        assert raw[column].str.fullmatch(r"\d+").all(), column  # integers, never "10.0"


def test_saved_bytes_has_one_scope(ridge):
    """Bytes saved for backward through Φ only: truncated ITD with k ≥ t equals ITD (E's graph is
    counted by neither); reparam's torch.func graphs are not observable: empty, not 0."""
    lam = draws(ridge, 1)[0]
    pairs = [(0, 0), (5, 5), (20, 20), (20, 40)]
    itd = {e.t: e.cost.saved_bytes for e in estimate(ITDReverse("itd"), ridge, lam, pairs)}
    for e in estimate(ITDTruncated("itd_trunc"), ridge, lam, pairs):
        assert e.cost.saved_bytes == itd[e.t], (e.t, e.k)
    assert itd[0] == 0 and itd[20] > itd[5] > 0
    for e in estimate(Reparameterized("reparam"), ridge, lam, [(0, None), (5, None)]):
        assert e.cost.saved_bytes is None
