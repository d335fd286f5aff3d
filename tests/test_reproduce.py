"""Theory overlays, fitted rates, the claims table and `hgbench reproduce --quick`."""

import math
import re
import subprocess

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from hgbench.analysis.theory import fit_rate, rates


def test_fit_rate_recovers_a_geometric_rate_and_ignores_round_off():
    x = pd.Series(np.arange(0, 60, 3))
    err = pd.Series(0.7 * 0.83**x)
    err[x > 40] = 1e-16  # a round-off plateau must not enter the fit
    rate, used, _ = fit_rate(x, err, floor=1e-12)
    assert rate == pytest.approx(0.83, rel=1e-9)
    assert used == int(((x > 0) & (x <= 40) & (0.7 * 0.83**x < 0.5)).sum())
    assert math.isnan(fit_rate(x[:3], err[:3], floor=1e-12)[0])  # too few points


def test_predicted_rates():
    r = rates(0.5, 9.0)
    assert r == {"q": 0.5, "p": pytest.approx(0.5), "p2": pytest.approx(0.8)}


def test_reproduce_quick_claims_agree_with_their_data(tmp_path, monkeypatch):
    """The --quick reproduction of the ill-conditioned ridge preset writes the CSV, the figure,
    the rate table, the bounds' constants with the error-against-bound figure, and the claims table
    (the papers' claims, then the observations); observation O3's measured figures and verdict are
    those the CSV gives when recomputed here, every error lies within its bound (G7), and FP's
    fitted rate in k is q (J symmetric: rate = ‖J‖)."""
    out = tmp_path / "results"
    assert run_cli(monkeypatch, "reproduce", "ridge_illcond", "--quick", "--out", out) == 0
    folder = out / "ridge_illcond"
    for name in ("metrics.csv", "error_vs_iterations.png", "rates.csv", "reproduce.json", "bounds.csv", "error_vs_bound.png"):
        assert (folder / name).is_file(), name
    assert not list(out.glob("*.partial"))
    df = pd.read_csv(folder / "metrics.csv")
    assert not (folder / "0_ridge_fp_k_sweep" / "metrics.csv").exists()  # duplicates dropped
    at = df[(df["k"] == 50) & (df["status"] == "ok")].groupby("estimator")["err_rel"].median()
    text = (out / "claims.md").read_text()
    claims, observations = text.split("## Observations")
    assert "| G7 " in claims and next(line for line in claims.splitlines() if line.startswith("| G7 ")).endswith("| holds |")
    row = next(line for line in observations.splitlines() if line.startswith("| O3 "))
    cg, fp = (float(v) for v in re.search(r"cg ([\d.e+-]+), fp ([\d.e+-]+)", row).groups())
    assert cg == pytest.approx(at["cg"], rel=0.05) and fp == pytest.approx(at["fp"], rel=0.05)
    assert row.rstrip(" |").endswith("does not hold" if at["cg"] / at["fp"] >= 1e-2 else "holds")
    table = pd.read_csv(folder / "rates.csv").set_index("estimator")
    assert table.loc["fp", "fitted_rate"] == pytest.approx(df["q"].median(), rel=0.02)
    assert table.loc["cg", "fitted_rate"] < table.loc["fp", "fitted_rate"]


def test_reproduce_refuses_an_unknown_preset(tmp_path, monkeypatch, capsys):
    assert run_cli(monkeypatch, "reproduce", "nope", "--out", tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown preset(s) nope; available:" in err and "ridge_illcond" in err


def test_plot_theory_overlay(tmp_path, monkeypatch):
    args = [
        "run",
        "estimator=fp",
        "problem=ridge",
        "problem.n_features=8",
        "n_lambdas=2",
        "grid=k_sweep",
        "grid.t=400",
        "grid.k=[0,5,10,20,40]",
        "plot=false",
        f"hydra.run.dir={tmp_path}",
    ]
    assert run_cli(monkeypatch, *args) == 0
    assert run_cli(monkeypatch, "plot", tmp_path, "--theory") == 0
    assert (tmp_path / "error_vs_iterations.png").is_file()
    table = pd.read_csv(tmp_path / "rates.csv")
    assert list(table["estimator"]) == ["fp"] and table["predicted_formula"].iloc[0] == "q"
    assert run_cli(monkeypatch, "plot", tmp_path, "--theory", "--kind", "cost") == 2


def test_verdicts_table_is_written_between_the_markers_only(tmp_path):
    """results/README.md's short verdict table is regenerated between its markers, from the same
    tables as claims.md; the text around it is kept, and a README without markers is untouched."""
    from hgbench.running.reproduce import VERDICTS, _write_verdicts

    claims = pd.DataFrame(
        [{"id": "G1", "source": "Grazzi et al.", "claim": "linear", "preset": "p", "criterion": "c", "measured": "m", "verdict": "holds"}]
    )
    observations = claims.assign(id="O1", claim="close", verdict="undecided")
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{VERDICTS[0]}\nstale\n{VERDICTS[1]}\nafter\n")
    _write_verdicts(readme, claims, observations)
    text = readme.read_text()
    assert text.startswith("before\n") and text.endswith(f"{VERDICTS[1]}\nafter\n") and "stale" not in text
    assert "| G1 | Grazzi et al. | linear | p | holds |" in text
    assert "| O1 | observation (this project) | close | p | undecided |" in text
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    _write_verdicts(plain, claims, observations)
    assert plain.read_text() == "no markers\n"


def test_reproduce_runs_presets_side_by_side_up_to_jobs(tmp_path, monkeypatch):
    """With --jobs 2, four presets run two at a time (never three), the longest estimate first,
    each into its own folder; a failing one is counted and the others still finish."""
    import json
    import sys

    from hgbench.running import reproduce as rep

    blocks = {f"p{i}": {"minutes": m, "quick_minutes": m} for i, m in enumerate([0.1, 0.4, 0.2, 0.3])}
    monkeypatch.setattr(rep, "presets", lambda: blocks)
    log = tmp_path / "spans.jsonl"
    script = (
        "import json, sys, time; began = time.time(); time.sleep(0.6); "
        f"open({str(log)!r}, 'a').write(json.dumps([sys.argv[1], began, time.time()]) + '\\n'); "
        "sys.exit(sys.argv[1] == 'p2')"
    )
    monkeypatch.setattr(rep, "command", lambda name, block, target, quick: [sys.executable, "-c", script, name])
    finished = []
    monkeypatch.setattr(rep, "_finish", lambda name, block, out, code, *rest: finished.append(name) or code == 0)
    monkeypatch.setattr(rep, "claims_table", lambda out: (out / "claims.md", (out / "claims.md").write_text(""))[0])
    assert rep.reproduce([], tmp_path / "out", jobs=2) == 1
    spans = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(name for name, _, _ in spans) == ["p0", "p1", "p2", "p3"] and sorted(finished) == ["p0", "p1", "p2", "p3"]
    starts = sorted(spans, key=lambda s: s[1])
    assert [name for name, _, _ in starts[:2]] in (["p1", "p3"], ["p3", "p1"])  # the two longest first
    for _, began, _ in spans:
        assert sum(b <= began + 1e-3 < e for _, b, e in spans) <= 2
    assert any(b1 < e2 and b2 < e1 for n1, b1, e1 in spans for n2, b2, e2 in spans if n1 < n2)  # side by side
    with pytest.raises(ValueError, match="--jobs 0"):
        rep.reproduce([], tmp_path / "out", jobs=0)


def test_interrupted_reproduce_stops_its_running_presets(tmp_path, monkeypatch):
    """Ctrl-C while presets run: the exception propagates, every preset process is stopped
    (none keeps running on its own), nothing is renamed into place and no claims table is written."""
    import signal
    import sys

    from hgbench.running import reproduce as rep

    monkeypatch.setattr(rep, "presets", lambda: {"a": {"minutes": 1, "quick_minutes": 1}, "b": {"minutes": 1, "quick_minutes": 1}})
    procs = []
    real_start = rep.Launcher.start
    monkeypatch.setattr(rep.Launcher, "start", lambda self, *a: procs.append(real_start(self, *a)) or procs[-1])
    monkeypatch.setattr(rep, "command", lambda name, block, target, quick: [sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(rep.time, "sleep", lambda s: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        rep.reproduce([], tmp_path, jobs=2)
    assert len(procs) == 2 and all(p.poll() == -signal.SIGTERM for p in procs)  # stopped, not run to their end
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.partial", "b.partial"] and not (tmp_path / "claims.md").exists()


def test_launcher_runs_a_command_as_python_dash_c_would(tmp_path):
    """A preset's command forked from the preloaded server behaves as `python -c CODE ARGS`:
    the same argv, output in the log, the exit status of its SystemExit (and of an exception)."""
    import sys

    from hgbench.running.reproduce import Launcher

    launcher = Launcher()
    code = "import sys; print(sys.argv, __name__); print('err', file=sys.stderr); sys.exit(int(sys.argv[1]))"
    runs = {status: launcher.start([sys.executable, "-c", code, str(status), "x y"], tmp_path / f"{status}.txt") for status in (0, 3)}
    crash = launcher.start([sys.executable, "-c", "raise RuntimeError('boom')"], tmp_path / "crash.txt")
    assert {s: h.wait() for s, h in runs.items()} == {0: 0, 3: 3} and crash.wait() == 1
    for status in (0, 3):
        direct = subprocess.run([sys.executable, "-c", code, str(status), "x y"], capture_output=True, text=True)
        assert sorted((tmp_path / f"{status}.txt").read_text().splitlines()) == sorted(
            [*direct.stdout.splitlines(), *direct.stderr.splitlines()]
        )
    assert "RuntimeError: boom" in (tmp_path / "crash.txt").read_text()
