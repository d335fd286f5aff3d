"""Results are data, nothing is lost or clobbered, wrong results are not accepted, and a signal
ends every kind of run the same way (issue 24). Each case asserts the one line, the exit code and
the files left afterwards (docs/reliability.md)."""

import json
import os
import pickle
import re
import shlex
import signal
import socket
import sys

import pandas as pd
import pytest
from conftest import TESTS, run_cli, signal_when_paused

import hgbench
from hgbench.analysis.results import read_csv
from hgbench.running import reproduce as rep
from hgbench.running.lock import LOCK

TOYS = f"hydra.searchpath=[file://{TESTS / 'conf'}]"
SMALL = ["problem=ridge", "problem.n_features=4", "problem.n_train=20", "problem.n_val=20", "n_lambdas=2", "grid.t=[0,5]", "plot=false"]
FAULTY = ["problem=faulty_map", TOYS, "estimator=fp", "grid.t=[0,5,20]", "plot=false"]
OUTER = [
    "mode=outer",
    "problem=faulty_map",
    TOYS,
    "estimator=fp",
    "outer.t=5",
    "outer.k=3",
    "outer.steps=5",
    "outer.lr=0.3",
    "outer.eval_every=1",
    "outer.checkpoint_every=1",
    "outer.optimum_evals=0",
    "plot=false",
]
# outer.optimum_evals=0: the pauses count the reference's inner solves, which the f* solve would shift


def _one_line(capsys, code, message, expected=2, prefix="hgbench: error: "):
    err = capsys.readouterr().err
    assert code == expected, err
    assert err.startswith(prefix) and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err


def _files(folder):
    """Every path below folder with its bytes (a link: where it points)."""
    return {
        p.relative_to(folder): (os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


class _Payload:
    """Unpickling this creates the file ``path``: proof that a pickle ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# --- results are data: nothing named in a results folder is imported, instantiated or unpickled --


def _planted_run(folder, problem: dict, lam=(0.1, 0.2, 0.3, 0.4)):
    job = folder / f"{len(list(folder.glob('*')))}_job"
    job.mkdir(parents=True)
    config = {"mode": "error", "problem": problem, "estimator": {"name": "fp"}, "grid": {"kind": "diag"}}
    (job / "run.json").write_text(json.dumps({"run_id": "x", "config": config, "references": [{"lam_id": 0, "lam": list(lam)}]}))


def _ridge_problem(**changes):
    return {
        "_target_": "hgbench.problems.ridge.Ridge",
        "name": "ridge",
        "seed": 0,
        "n_train": 20,
        "n_val": 20,
        "n_features": 4,
        "cond": 10.0,
        "noise": 0.1,
        "lam_low": -4.0,
        "lam_high": 0.0,
        "data": "synthetic",
        "val_fraction": 0.5,
        "outer": "validation",
        **changes,
    }


@pytest.mark.parametrize("target", ["pandas.read_pickle", "numpy.savetxt", "antigravity.Foo", "os.system"])
@pytest.mark.parametrize("where", ["problem", "nested"])
def test_a_planted_run_json_runs_nothing(tmp_path, capsys, target, where):
    """X1: write_bounds (hgbench reproduce's bounds step) on run.json files naming any callable,
    as the problem or inside a ridge problem's value: nothing is imported, called or unpickled;
    the victim file is intact; a genuine ridge run beside them still gets its constants."""
    folder, marker, victim = tmp_path / "preset", tmp_path / "payload_ran", tmp_path / "victim.txt"
    victim.write_text("precious\n")
    evil = tmp_path / "data.pkl"
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    args = {"pandas.read_pickle": [str(evil)], "numpy.savetxt": [str(victim), [1.0]], "os.system": [f"touch {marker}"]}.get(target, [])
    node = {"_target_": target, "_args_": args}
    _planted_run(folder, node if where == "problem" else _ridge_problem(name=node))
    _planted_run(folder, _ridge_problem())
    modules = set(sys.modules)
    table = rep.write_bounds(folder)
    assert not marker.exists() and victim.read_text() == "precious\n"
    assert "antigravity" not in sys.modules and not {m for m in set(sys.modules) - modules if m.split(".")[0] in ("antigravity",)}
    assert list(table["problem"]) == ["ridge"] and (folder / "bounds.csv").exists()  # the genuine run, one draw
    err = capsys.readouterr().err
    if where == "nested":  # refused by the ridge schema, in one warning line
        assert "skipped for the bounds" in err and "problem.name=" in err and "Traceback" not in err


@pytest.mark.parametrize("flag", ["--experimental-rerun", "--experimental-rerun="])
def test_hydra_rerun_of_a_pickle_is_refused(tmp_path, monkeypatch, capsys, flag):
    """X4: Hydra's --experimental-rerun would unpickle its file."""
    marker, evil = tmp_path / "payload_ran", tmp_path / "config.pickle"
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    args = [f"{flag}{evil}"] if flag.endswith("=") else [flag, evil]
    _one_line(capsys, run_cli(monkeypatch, "run", *args), "--experimental-rerun")
    assert not marker.exists()


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    """A small finished error-mode run (its folder is copied by each test that changes it)."""
    out = tmp_path_factory.mktemp("one") / "run"
    mp = pytest.MonkeyPatch()
    try:
        assert run_cli(mp, "run", *SMALL, f"hydra.run.dir={out}") == 0
    finally:
        mp.undo()
    return out


def _copy(run, to):
    to.mkdir(parents=True)
    for name in ("metrics.csv", "run.json"):
        (to / name).write_bytes((run / name).read_bytes())
    return to


def test_a_figure_that_is_a_link_is_replaced_not_written_through(tmp_path, monkeypatch, one_run):
    """X2: error_vs_iterations.png planted as a link to a victim file."""
    run, victim = _copy(one_run, tmp_path / "run"), tmp_path / "victim"
    victim.write_text("precious\n")
    (run / "error_vs_iterations.png").symlink_to(victim)
    assert run_cli(monkeypatch, "plot", run) == 0
    figure = run / "error_vs_iterations.png"
    assert victim.read_text() == "precious\n" and not figure.is_symlink() and figure.read_bytes().startswith(b"\x89PNG")
    assert not list(run.glob(".*.tmp"))


@pytest.mark.parametrize("kind", ["link to a secret", "link to /dev/zero", "fifo"])
@pytest.mark.parametrize("command", ["aggregate", "plot"])
def test_a_results_file_that_is_not_a_regular_file_is_refused(tmp_path, monkeypatch, capsys, one_run, kind, command):
    """X3: a job's metrics.csv that is a link (to a secret, to /dev/zero) or a FIFO: one line,
    exit 2, at once (no hang, no read to the end of memory); the secret is copied nowhere."""
    sweep = tmp_path / "sweep"
    job = _copy(one_run, sweep / "0_job")
    (job / "metrics.csv").unlink()
    secret = tmp_path / "secret.csv"
    secret.write_text("problem,estimator\nTOP,SECRET\n")
    if kind == "fifo":
        os.mkfifo(job / "metrics.csv")
    else:
        (job / "metrics.csv").symlink_to(secret if kind == "link to a secret" else "/dev/zero")
    before = _files(sweep)
    code = run_cli(monkeypatch, command, sweep)
    what = "is not a regular file" if kind == "fifo" else "is a symbolic link"
    _one_line(capsys, code, f"{job / 'metrics.csv'} {what}", prefix=f"hgbench {command}: error: ")
    assert _files(sweep) == before  # nothing written (no combined CSV holding the secret, no figure)


# --- nothing lost or clobbered --------------------------------------------------------------------


def test_a_sweep_never_overwrites_a_single_run(tmp_path, monkeypatch, capsys, one_run):
    """S1: hydra.sweep.dir= a folder holding a single run's results."""
    run = _copy(one_run, tmp_path / "run")
    before = _files(run)
    code = run_cli(monkeypatch, "run", "-m", *SMALL, "estimator=fp,cg", f"hydra.sweep.dir={run}")
    _one_line(capsys, code, f"hydra.sweep.dir={run} holds a single run's results")
    assert _files(run) == before  # no job folder, no combined CSV, no lock


def test_a_sweep_locks_its_folder(tmp_path, monkeypatch, capsys):
    """A sweep into a folder another live writer holds is refused before any job; a finished
    sweep leaves no lock."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / LOCK).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    code = run_cli(monkeypatch, "run", "-m", *SMALL, "estimator=fp", f"hydra.sweep.dir={sweep}")
    _one_line(capsys, code, "is being written by another hgbench run")
    assert sorted(p.name for p in sweep.iterdir()) == [LOCK]
    (sweep / LOCK).unlink()
    assert run_cli(monkeypatch, "run", "-m", *SMALL, "estimator=fp", f"hydra.sweep.dir={sweep}") == 0
    assert (sweep / "metrics.csv").exists() and not list(sweep.rglob(LOCK))


def test_a_second_reproduce_into_one_folder_is_refused(tmp_path, monkeypatch, capsys):
    """S2: reproduce --out holds the folder's lock while it works; a second one is refused in one
    line and touches nothing (the first's running preset stays)."""
    out = tmp_path / "out"
    seen = []
    monkeypatch.setattr(rep, "_reproduce", lambda *args: seen.append((out / LOCK).exists()) or 0)
    assert rep.reproduce(["ridge_illcond"], out) == 0 and seen == [True] and not (out / LOCK).exists()
    (out / "ridge_illcond.partial").mkdir()
    (out / "ridge_illcond.partial" / "log.txt").write_text("the first reproduction runs\n")
    (out / LOCK).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    before = _files(out)
    code = run_cli(monkeypatch, "reproduce", "ridge_illcond", "--out", out)
    _one_line(capsys, code, "is being written by another hgbench run", prefix="hgbench reproduce: error: ")
    assert _files(out) == before


@pytest.mark.parametrize(
    "name",
    [
        ".important.123456789.tmp",
        ".metrics.csv.99999999999999999999.tmp",
        ".metrics.csv.hgbench-99999999999999999999.tmp",
        ".run.json.1.tmp",
    ],
)
def test_only_hgbench_temporary_files_are_removed(tmp_path, monkeypatch, name):
    """S3: a user's file that looks like a temporary one (a PID-like number, one too large to be a
    PID) survives a run into its folder, which ends normally and leaves no lock."""
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_text("the user's\n")
    assert run_cli(monkeypatch, "run", *SMALL, f"hydra.run.dir={out}") == 0
    assert (out / name).read_text() == "the user's\n" and not (out / LOCK).exists()
    assert len(read_csv(out / "metrics.csv")) == 4


def test_a_lock_that_is_not_a_regular_file_is_stale_not_a_hang(tmp_path, monkeypatch):
    """A FIFO planted as the folder's lock: read without blocking, it names no holder, so it is
    taken over; the run ends normally and leaves no lock."""
    out = tmp_path / "run"
    out.mkdir()
    os.mkfifo(out / LOCK)
    assert run_cli(monkeypatch, "run", *SMALL, f"hydra.run.dir={out}") == 0
    assert not os.path.lexists(out / LOCK) and len(read_csv(out / "metrics.csv")) == 4


@pytest.mark.parametrize(
    "content",
    [
        '{"quick": "no"}',
        '{"quick": 1}',
        '{"quick": "true"}',
        '{"quick": null}',
        "[]",
        '"quick"',
        '{"quick": false}',
        "not json",
        '{"quick": true, "seconds": "x"}',
    ],
)
def test_only_quick_true_marks_quick_results(tmp_path, monkeypatch, capsys, content):
    """S4: a reproduce.json whose quick is anything but true counts as full results (refused by
    --quick without --force); a malformed one is never a traceback (the time estimate falls
    back to the preset's)."""
    out = tmp_path / "results"
    (out / "ridge_illcond").mkdir(parents=True)
    (out / "ridge_illcond" / "reproduce.json").write_text(content)
    (out / "ridge_illcond" / "metrics.csv").write_text("the full results\n")
    block = rep.presets()["ridge_illcond"]
    for quick in (False, True):
        assert rep._estimate_s("ridge_illcond", block, out, quick) == 60.0 * block["quick_minutes" if quick else "minutes"]
    if content.startswith('{"quick": true'):
        assert rep._full_results(out, ["ridge_illcond"]) == []
        return
    code = run_cli(monkeypatch, "reproduce", "ridge_illcond", "--quick", "--out", out)
    _one_line(capsys, code, "--quick would replace the full results of ridge_illcond", prefix="hgbench reproduce: error: ")
    assert (out / "ridge_illcond" / "metrics.csv").read_text() == "the full results\n"


# --- wrong results are not accepted ---------------------------------------------------------------


def test_a_sweep_with_failed_outer_jobs_exits_1_and_lists_them(tmp_path, monkeypatch, capsys):
    """W2: outer jobs, one refused (error.txt), one whose reference fails at step 0 (a diverged
    row, no f: the summary once raised KeyError 'rel_gap'): exit 1 and the failed job printed."""
    monkeypatch.setenv("HGBENCH_TEST_FAIL_ABOVE", "-5")
    sweep = tmp_path / "sweep"
    code = run_cli(monkeypatch, "run", "-m", *OUTER, "outer.lr=0.3,-1", f"hydra.sweep.dir={sweep}")
    err = capsys.readouterr().err
    assert code == 1 and "1 job(s) failed" in err and "outer.lr=-1" in err and "Traceback" not in err and "KeyError" not in err
    assert len(list(sweep.rglob("error.txt"))) == 1 and not list(sweep.rglob(LOCK))
    rows = read_csv(sweep / "outer.csv")
    assert list(rows["status"]) == ["diverged"] and "injected failure" in rows["reason"].iloc[0]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["problem=ye_logistic", "problem.test=/nonexistent.svm"],
            "problem.test='/nonexistent.svm' would be ignored: problem.data='liver' brings its own",
        ),
        (["problem=ye_logistic", "problem.outer=linear", "problem.test=/nonexistent.svm"], "only problem.outer=logistic reads it"),
        (["problem=ye_ridge", "problem.test=/nonexistent.svm"], "only problem.outer=logistic reads it, not problem.outer="),
    ],
)
def test_an_option_the_problem_cannot_honour_is_refused(tmp_path, monkeypatch, capsys, overrides, message):
    """W3: not ignored (it would also change the run_id of rows it does not affect)."""
    out = tmp_path / "run"
    _one_line(capsys, run_cli(monkeypatch, "run", *overrides, "estimator=fp", "n_lambdas=1", f"hydra.run.dir={out}"), message)
    assert not (out / "metrics.csv").exists() and not (out / LOCK).exists()


@pytest.mark.parametrize("key", ["hydra.run.dir", "hydra.sweep.dir", "+hydra.job.chdir", "hydra"])
def test_evaluate_refuses_hydra_options(tmp_path, key):
    """W4: hydra.* does nothing in a composed configuration: refused by name, before any work."""
    with pytest.raises(ValueError, match=rf"^{re.escape(key)}='x': hydra\.\* options do not apply"):
        hgbench.evaluate("ridge", "fp", n_lambdas=1, out_dir=tmp_path / "out", **{key: "x"})
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where, kept", [("init", None), ("draw", [0])])
def test_a_problem_calling_sys_exit_fails_the_run(tmp_path, monkeypatch, capsys, where, kept):
    """W5: sys.exit(0) in an own problem's constructor, or in its code at the second draw: one line,
    exit 1; the complete draws are kept (and resume=true finishes the run), the lock released."""
    out = tmp_path / "run"
    monkeypatch.setenv("HGBENCH_TEST_EXIT", where)
    code = run_cli(monkeypatch, "run", *FAULTY, "n_lambdas=3", f"hydra.run.dir={out}")
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the progress bar (stderr) of the draws done
    assert code == 1 and last.startswith("hgbench: error: RuntimeError: the run's code called sys.exit(0)") and "Traceback" not in err
    assert not (out / LOCK).exists() and not list(out.glob(".*.tmp"))
    if kept is None:
        assert not (out / "metrics.csv").exists()
        return
    assert sorted(read_csv(out / "metrics.csv")["lam_id"].unique()) == kept
    monkeypatch.delenv("HGBENCH_TEST_EXIT")
    assert run_cli(monkeypatch, "run", *FAULTY, "n_lambdas=3", "resume=true", f"hydra.run.dir={out}") == 0
    assert sorted(read_csv(out / "metrics.csv")["lam_id"].unique()) == [0, 1, 2]


# --- signals: every kind of run ends the same way -------------------------------------------------


def _interrupted(err, signum, where, folder_key, folder, args):
    last = err.strip().splitlines()[-1]
    continued = shlex.join(["hgbench", "run", *args, "resume=true", f"{folder_key}={folder}"])
    assert last == f"hgbench: interrupted ({signal.Signals(signum).name}) {where}; to continue, run: {continued}", err
    assert "Traceback" not in err
    return continued


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_an_outer_run_like_an_error_run(tmp_path, monkeypatch, signum, code):
    """Outer mode: exit 130/143, one line with the steps logged and the command that continues
    (which ends with the rows of an uninterrupted run), no lock, no temporary file."""
    out, full = tmp_path / "run", tmp_path / "full"
    returncode, err = signal_when_paused(tmp_path, 2, *OUTER, f"hydra.run.dir={out}", signum=signum)
    assert returncode == code
    continued = _interrupted(err, signum, f"after outer step 2 of 6 in {out}", "hydra.run.dir", out, OUTER)
    assert not (out / LOCK).exists() and not list(out.glob(".*.tmp"))
    assert list(pd.read_csv(out / "outer.csv")["step"]) == [0, 1]
    assert run_cli(monkeypatch, *shlex.split(continued)[1:]) == 0
    assert run_cli(monkeypatch, "run", *OUTER, f"hydra.run.dir={full}") == 0
    done, reference_rows = pd.read_csv(out / "outer.csv"), pd.read_csv(full / "outer.csv")
    numbers = [c for c in reference_rows.columns if c not in ("time_s", "ref_time_s", "overrides")]  # overrides: + resume=true
    pd.testing.assert_frame_equal(done[numbers], reference_rows[numbers])


def test_sigterm_during_the_warm_up_releases_the_lock(tmp_path, monkeypatch):
    """Error mode's untimed warm-up estimate runs with the handlers installed and the lock held."""
    out = tmp_path / "run"
    monkeypatch.setenv("HGBENCH_TEST_PAUSE_PHI", f"0:{tmp_path / 'paused'}")  # signal_when_paused waits for this file
    args = [*FAULTY, "n_lambdas=2", "guard=false"]  # the guard's timing probe evaluates Φ too, before the lock is taken
    returncode, err = signal_when_paused(tmp_path, -1, *args, f"hydra.run.dir={out}", signum=signal.SIGTERM)
    assert returncode == 143
    _interrupted(err, signal.SIGTERM, f"after draw 0 of 2 in {out}", "hydra.run.dir", out, args)
    assert not (out / LOCK).exists() and not (out / "metrics.csv").exists()


def test_sigint_in_a_sweep_advises_a_command_that_continues_it(tmp_path, monkeypatch):
    """-m: the advice is the sweep's own command with resume=true and its hydra.sweep.dir; taking
    it completes every job and the combined CSV; no lock is left in the sweep or its jobs."""
    sweep = tmp_path / "sweep"
    args = ["-m", *FAULTY, "n_lambdas=3"]
    returncode, err = signal_when_paused(tmp_path, 1, *args, f"hydra.sweep.dir={sweep}", signum=signal.SIGINT)
    assert returncode == 130
    (job,) = [p for p in sweep.iterdir() if p.is_dir()]
    continued = _interrupted(err, signal.SIGINT, f"after draw 1 of 3 in {job}", "hydra.sweep.dir", sweep, args)
    assert not list(sweep.rglob(LOCK))
    assert run_cli(monkeypatch, *shlex.split(continued)[1:]) == 0
    assert sorted(read_csv(sweep / "metrics.csv")["lam_id"].unique()) == [0, 1, 2] and not list(sweep.rglob(LOCK))
