import sys
from pathlib import Path

import pytest
import torch

from hgbench.problems.logistic import Logistic
from hgbench.problems.ridge import Ridge

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def ridge():
    return Ridge("ridge", seed=0, n_train=60, n_val=40, n_features=8, cond=30.0, noise=0.1, lam_low=-3.0, lam_high=0.0)


@pytest.fixture(scope="session")
def logistic():
    return Logistic("logistic", seed=0, n_samples=200, n_features=6, label_noise=0.1, lam_low=-3.0, lam_high=-1.0)


def draws(problem, n=2, seed=0):
    return problem.sample_lambdas(n, torch.Generator().manual_seed(seed))


def run_cli(monkeypatch, *args):
    """Call the hgbench command in this process; returns its exit code."""
    from hgbench.running.cli import main

    monkeypatch.setattr(sys, "argv", ["hgbench", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code
