"""CONTRIBUTING.md's worked examples, built from its own code blocks and run: each adds a piece
to a copy of the package (its files and nothing else), and the result is checked against an
independent truth (a closed form, an estimator it must equal)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import hgbench

ROOT = Path(hgbench.__file__).resolve().parent.parent
GUIDE = ROOT / "CONTRIBUTING.md"
BLOCK = re.compile(r"^```\w+ (?P<how>file|edit)=(?P<path>\S+)\n(?P<body>.*?)^```$", re.M | re.S)

pytestmark = pytest.mark.skipif(not GUIDE.is_file() or not (ROOT / "conf").is_dir(), reason="needs the checkout (CONTRIBUTING.md, conf/)")


def examples(how: str = "file") -> dict[str, str]:
    """path -> text of every ``file=PATH`` block (a new file) or ``edit=PATH`` block (lines of
    an existing file: see ``apply``) of CONTRIBUTING.md."""
    return {m["path"]: m["body"] for m in BLOCK.finditer(GUIDE.read_text()) if m["how"] == how}


def apply(text: str, edit: str) -> str:
    """An ``edit=`` block applied to a file's text: an import line is added after the last
    top-level import; any other line replaces the one line that starts as it does up to its
    " =" (e.g. the ``MODES: dict[str, Mode] =`` line)."""
    lines = text.splitlines()
    for line in edit.splitlines():
        if line.startswith(("from ", "import ")):
            last = max(i for i, old in enumerate(lines) if old.startswith(("from ", "import ")))
            lines.insert(last + 1, line)
        else:
            head = line.split(" =")[0]
            found = [i for i, old in enumerate(lines) if old.startswith(head + " =")]
            assert len(found) == 1, f"{head!r} does not name one line"
            lines[found[0]] = line
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A copy of the package and its conf/ with every example's files added, nothing else changed."""
    root = tmp_path_factory.mktemp("contrib")
    shutil.copytree(ROOT / "hgbench", root / "hgbench", ignore=shutil.ignore_patterns("__pycache__", "conf"))
    shutil.copytree(ROOT / "conf", root / "conf")
    for path, text in examples().items():
        assert not (root / path).exists(), f"{path} would replace a file of the package"
        (root / path).write_text(text)
    for path, text in examples("edit").items():
        (root / path).write_text(apply((root / path).read_text(), text))
    return root


def hgbench_in(tree: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    code = "import sys; from hgbench.running.cli import main; sys.argv = ['hgbench', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def test_the_guide_has_one_example_per_kind_of_piece():
    paths = set(examples())
    assert {"hgbench/problems/diagonal.py", "conf/problem/diagonal.yaml"} <= paths
    assert {"hgbench/estimators/relaxed.py", "conf/estimator/relaxed.yaml"} <= paths
    assert "hgbench/running/reference_mode.py" in paths and "hgbench/analysis/claims/example.py" in paths
    assert set(examples("edit")) == {"hgbench/running/modes.py", "hgbench/analysis/claims/__init__.py"}


def test_the_new_problem_and_estimator_run_and_agree_with_independent_truths(tree, tmp_path):
    """The problem's reference equals its closed-form hypergradient; CG reaches round-off by
    k = t = dim; relaxed with ω = 1 equals fp bit for bit; its options are checked in one line."""
    out = tmp_path / "sweep"
    done = hgbench_in(
        tree,
        "run",
        "-m",
        "problem=diagonal",
        "estimator=cg,fp,relaxed",
        "n_lambdas=2",
        "grid=full",
        "grid.t=[400]",
        "grid.k=[0,10,40]",
        "plot=false",
        f"hydra.sweep.dir={out}",
    )
    assert done.returncode == 0, done.stderr
    df = pd.read_csv(out / "metrics.csv")
    assert (df["status"] == "ok").all() and set(df["estimator"]) == {"cg", "fp", "relaxed"}
    cg = df[df["estimator"] == "cg"].set_index(["lam_id", "k"])["err_rel"]
    assert (cg.xs(40, level="k") < 1e-12).all()  # 400 inner steps (q < 0.93), then CG on a 20 × 20 SPD system: exact by k = 20
    fp = df[df["estimator"] == "fp"].set_index(["lam_id", "k"])["err_abs"]
    relaxed = df[df["estimator"] == "relaxed"].set_index(["lam_id", "k"])["err_abs"]
    assert relaxed.equals(fp) and (fp.xs(10, level="k") < fp.xs(0, level="k")).all()

    # one more process for the rest: the closed form, the refusals (as `hgbench run` checks them) and `hgbench list`
    check = """
import contextlib, io, sys, torch
from hydra import compose, initialize_config_dir
from hgbench.core.reference import reference
from hgbench.paths import conf_dir
from hgbench.problems.diagonal import Diagonal
from hgbench.running import cli, schema
problem = Diagonal("diagonal", 0, -2.0, 1.0, 20, 100.0)
worst = 0.0
for l in problem.sample_lambdas(3, torch.Generator().manual_seed(1)):
    h = problem.a + torch.exp(l)
    w = problem.b / h
    exact = -(w - problem.c) * w * torch.exp(l) / h
    worst = max(worst, ((reference(problem, l).grad - exact).norm() / exact.norm()).item())
print(worst)
for overrides in (["problem=diagonal", "problem.cond=0.5"], ["problem=diagonal", "estimator=relaxed", "estimator.omega=2"]):
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = compose("config", overrides=overrides)
    try:
        schema.validate(cfg)
        print("accepted")
    except schema.ConfigError as err:
        print(err)
listed = io.StringIO()
with contextlib.redirect_stdout(listed):
    cli._list([])
print(listed.getvalue())
"""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    found = subprocess.run([sys.executable, "-c", check], cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stderr
    worst, *lines = found.stdout.splitlines()
    assert float(worst) < 1e-13  # κ(I − J) ≤ 100·e: round-off times the conditioning
    assert lines[:2] == ["problem.cond=0.5 must be a finite number >= 1", "estimator.omega=2.0 must be a finite number in (0, 2)"]
    listed = "\n".join(lines[2:])
    assert re.search(r"^  diagonal\s+ℓ\(w, λ\) = ½ Σᵢ", listed, re.M) and re.search(r"^  relaxed\s+AID with k steps", listed, re.M)


def test_the_new_mode_runs_and_its_reference_is_the_closed_form(tree, tmp_path):
    """mode=reference on the guide's diagonal problem: every row certified, ‖∇f‖ equal to the
    closed form's to round-off; a sweep combines its CSV; a wrong mode is refused in one line."""
    out = tmp_path / "sweep"
    done = hgbench_in(tree, "run", "-m", "mode=reference", "problem=diagonal", "problem.dim=10,20", "n_lambdas=3", f"hydra.sweep.dir={out}")
    assert done.returncode == 0, done.stderr
    df = pd.read_csv(out / "references.csv")
    assert len(df) == 6 and df["certified"].all() and (df["error_bound"] < 1e-6).all()
    check = """
import sys, torch
from hydra import compose, initialize_config_dir
from hgbench.paths import conf_dir
from hgbench.problems.diagonal import Diagonal
from hgbench.running import schema
for dim in (10, 20):
    problem = Diagonal("diagonal", 0, -2.0, 1.0, dim, 100.0)
    for l in problem.sample_lambdas(3, torch.Generator().manual_seed(0)):
        h = problem.a + torch.exp(l)
        w = problem.b / h
        print(dim, (-(w - problem.c) * w * torch.exp(l) / h).norm().item())
with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
    cfg = compose("config", overrides=["mode=bogus"])
try:
    schema.validate(cfg)
except schema.ConfigError as err:
    print(err)
"""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    exact = subprocess.run([sys.executable, "-c", check], cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    assert exact.returncode == 0, exact.stderr
    *lines, refusal = exact.stdout.splitlines()
    norms = [float(line.split()[1]) for line in lines]
    measured = df.sort_values(["overrides", "lam_id"])["grad_norm"].tolist()  # problem.dim=10 sorts first
    assert len(norms) == len(measured) and all(abs(m - n) <= 1e-13 * n for m, n in zip(measured, norms)), (measured, norms)
    assert refusal == "mode='bogus' is not one of error, outer, stochastic, bilevel, reference"


def test_the_new_claim_is_decided_by_the_committed_rows_and_can_fail(tree):
    """The guide's claim holds on the committed grazzi2020 rows (AID-FP's k sweeps fall
    linearly), and does not hold once each of those curves is turned around (error rising in k)."""
    rows = ROOT / "results" / "grazzi2020" / "metrics.csv"
    if not rows.is_file():
        pytest.skip("needs the checkout's results/grazzi2020")
    check = f"""
import numpy as np
from hgbench.analysis.claims import CLAIMS, evaluate
from hgbench.analysis.results import load
df = load({str(rows)!r})
mine = [c for c in CLAIMS if c.id == "X1"]
print(evaluate({{"grazzi2020": df}}, mine)["verdict"].iloc[0])
sweep = (df["role"] == "fp") & (df["grid"] == "k_sweep")
for _, curve in df[sweep].groupby(["setting_id", "lam_id"]):
    order = curve.sort_values("k").index
    df.loc[order, "err_rel"] = df.loc[order[::-1], "err_rel"].to_numpy()  # the same errors, rising in k
print(evaluate({{"grazzi2020": df}}, mine)["verdict"].iloc[0])
"""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", check], cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["holds", "does not hold"]
