"""device=cuda (issue 16): every problem's estimates on the GPU equal the CPU's in float64, and
scripts/gpu_check.py. The cuda tests skip on machines without a CUDA device (CI); the script's
"no cuda device" path and its logic (cpu against cpu) are tested everywhere."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import draws, run_cli
from test_problems import NAMES, build
from test_scale import small_equilibrium

from hgbench.core.bound import check_applies, estimate
from hgbench.estimators.cg import ConjugateGradient
from hgbench.estimators.fp import FixedPoint
from hgbench.estimators.itd import ITDReverse
from hgbench.problems.hyper_cleaning import HyperCleaning

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _script(*args, env=None):
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[1]), **(env or {})}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600)


def test_gpu_check_says_no_cuda_device(tmp_path):
    done = _script("--out", str(tmp_path / "gpu"), env={"CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr
    assert "gpu_check: no cuda device on this machine" in done.stdout
    assert not (tmp_path / "gpu").exists()


def test_gpu_check_logic_cpu_against_cpu(tmp_path):
    done = _script("--out", str(tmp_path), "--against", "cpu", "--problems", "ridge")
    assert done.returncode == 0, done.stderr
    df = pd.read_csv(tmp_path / "gpu_check.csv")
    assert list(df["estimator"]) == ["itd", "fp", "cg", "fp (hgbench run)"] and (df["status"] == "ok").all()
    assert (df["max_rel_diff"].dropna() == 0).all()  # the same device: the same numbers
    assert (tmp_path / "runs" / "ridge" / "metrics.csv").is_file()


def _problems(ridge, logistic):
    small = {name: build(name) for name in NAMES}
    return {
        **small,
        "ridge": ridge,
        "logistic": logistic,
        "equilibrium_mnist": small_equilibrium(),
        "hyper_cleaning": HyperCleaning("hyper_cleaning", 0, n_train=60, n_val=40, reg=0.5),
    }


@cuda
def test_estimates_on_cuda_equal_cpu(ridge, logistic):
    for name, problem in _problems(ridge, logistic).items():
        lam = draws(problem, 1)[0]
        on_gpu = problem.to(torch.float64, "cuda")
        for est in (ITDReverse("itd"), FixedPoint("fp"), ConjugateGradient("cg")):
            try:
                check_applies(est, problem)
            except ValueError:
                continue
            cpu = [e.grad for e in estimate(est, problem, lam, [(5, 5), (20, 20)])]
            gpu = [e.grad.cpu() for e in estimate(est, on_gpu, lam.cuda(), [(5, 5), (20, 20)])]
            for a, b in zip(gpu, cpu):
                assert torch.linalg.vector_norm(a - b) <= 1e-10 * torch.linalg.vector_norm(b), (name, est.name)


@cuda
def test_run_on_cuda(monkeypatch, tmp_path):
    out = tmp_path / "run"
    assert (
        run_cli(
            monkeypatch,
            "run",
            "problem=hyper_cleaning",
            "problem.n_train=60",
            "problem.n_val=40",
            "estimator=cg",
            "device=cuda",
            "n_lambdas=1",
            "grid.t=[5]",
            "plot=false",
            f"hydra.run.dir={out}",
        )
        == 0
    )
    df = pd.read_csv(out / "metrics.csv")
    assert (df["status"] == "ok").all() and (df["device"] == "cuda").all()
