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
BLOCK = re.compile(r"^```\w+ file=(?P<path>\S+)\n(?P<body>.*?)^```$", re.M | re.S)

pytestmark = pytest.mark.skipif(not GUIDE.is_file() or not (ROOT / "conf").is_dir(), reason="needs the checkout (CONTRIBUTING.md, conf/)")


def examples() -> dict[str, str]:
    """path -> text of every ``file=PATH`` block of CONTRIBUTING.md."""
    return {m["path"]: m["body"] for m in BLOCK.finditer(GUIDE.read_text())}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A copy of the package and its conf/ with every example's files added, nothing else changed."""
    root = tmp_path_factory.mktemp("contrib")
    shutil.copytree(ROOT / "hgbench", root / "hgbench", ignore=shutil.ignore_patterns("__pycache__", "conf"))
    shutil.copytree(ROOT / "conf", root / "conf")
    for path, text in examples().items():
        assert not (root / path).exists(), f"{path} would replace a file of the package"
        (root / path).write_text(text)
    return root


def hgbench_in(tree: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    code = "import sys; from hgbench.running.cli import main; sys.argv = ['hgbench', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def test_the_guide_has_one_example_per_kind_of_piece():
    paths = set(examples())
    assert {"hgbench/problems/diagonal.py", "conf/problem/diagonal.yaml"} <= paths
    assert {"hgbench/estimators/relaxed.py", "conf/estimator/relaxed.yaml"} <= paths


def test_the_new_problem_and_estimator_run_and_agree_with_independent_truths(tree, tmp_path):
    """The problem's reference equals its closed-form hypergradient; CG reaches round-off by
    k = t = dim; relaxed with ω = 1 equals fp bit for bit; its options are checked in one line."""
    out = tmp_path / "sweep"
    done = hgbench_in(tree, "run", "-m", "problem=diagonal", "estimator=cg,fp,relaxed", "n_lambdas=2", "grid=full", "grid.t=[400]", "grid.k=[0,10,40]",
                      "plot=false", f"hydra.sweep.dir={out}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    df = pd.read_csv(out / "metrics.csv")
    assert (df["status"] == "ok").all() and set(df["estimator"]) == {"cg", "fp", "relaxed"}
    cg = df[df["estimator"] == "cg"].set_index(["lam_id", "k"])["err_rel"]
    assert (cg.xs(40, level="k") < 1e-12).all()  # 400 inner steps (q < 0.93), then CG on a 20 × 20 SPD system: exact by k = 20
    fp = df[df["estimator"] == "fp"].set_index(["lam_id", "k"])["err_abs"]
    relaxed = df[df["estimator"] == "relaxed"].set_index(["lam_id", "k"])["err_abs"]
    assert relaxed.equals(fp) and (fp.xs(10, level="k") < fp.xs(0, level="k")).all()

    check = """
import torch
from hgbench.core.reference import reference
from hgbench.problems.diagonal import Diagonal
problem = Diagonal("diagonal", 0, -2.0, 1.0, 20, 100.0)
lam = problem.sample_lambdas(3, torch.Generator().manual_seed(1))
worst = 0.0
for l in lam:
    h = problem.a + torch.exp(l)
    w = problem.b / h
    exact = -(w - problem.c) * w * torch.exp(l) / h
    worst = max(worst, ((reference(problem, l).grad - exact).norm() / exact.norm()).item())
print(worst)
"""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    worst = subprocess.run([sys.executable, "-c", check], cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    assert worst.returncode == 0, worst.stderr
    assert float(worst.stdout) < 1e-13  # κ(I − J) ≤ 100·e: round-off times the conditioning

    for args, line in [(["problem=diagonal", "problem.cond=0.5"], "problem.cond=0.5 must be a finite number >= 1"),
                       (["problem=diagonal", "estimator=relaxed", "estimator.omega=2"], "estimator.omega=2.0 must be a finite number in (0, 2)")]:  # fmt: skip
        refused = hgbench_in(tree, "run", *args, f"hydra.run.dir={tmp_path / 'refused'}")
        assert refused.returncode == 2 and refused.stderr.strip() == f"hgbench: error: {line}", refused.stderr

    listed = hgbench_in(tree, "list")
    assert re.search(r"^  diagonal\s+ℓ\(w, λ\) = ½ Σᵢ", listed.stdout, re.M) and re.search(r"^  relaxed\s+AID with k steps", listed.stdout, re.M)
