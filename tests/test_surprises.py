"""What surprised a new user, fixed: --version, a missing launcher names its extra, a non-tensor
constant of an own problem is named, and a sweep does not replace curated (committed) results."""

import shutil
from pathlib import Path

import pytest
import torch
from hydra.errors import MissingConfigException

import hgbench
from hgbench.running.schema import explain
from tests.conftest import run_cli
from tests.toy import LinearMap

ROOT = Path(__file__).resolve().parent.parent


def test_version(monkeypatch, capsys):
    assert run_cli(monkeypatch, "--version") == 0
    assert capsys.readouterr().out == f"hgbench {hgbench.__version__}\n"


def test_a_missing_launcher_names_the_extra():
    err = MissingConfigException("In 'hydra/launcher/parallel': Could not load 'hydra/launcher/joblib'.", "hydra/launcher/joblib")
    assert explain(err) == (
        "the joblib launcher is not installed (hydra/launcher/joblib); install the launchers extra: pip install 'hgbench[launchers]'"
    )


class FloatConstant(LinearMap):
    def consts(self, lam):
        return {"alpha": 0.5}  # a Python float, not a tensor


def test_a_non_tensor_constant_is_named():
    problem = FloatConstant("toy", 0, 3, 0.5, 0.0, 1.0)
    with pytest.raises(TypeError) as info:
        problem.bound_phi(torch.zeros(3, dtype=torch.float64))
    assert str(info.value) == (
        "FloatConstant.consts returned 'alpha' = 0.5 (float); each constant must be a torch.Tensor, "
        "e.g. torch.as_tensor(value, dtype=lam.dtype)"
    )


def test_a_sweep_refuses_to_replace_curated_results_but_may_redo_its_own(tmp_path, monkeypatch, capsys):
    curated = tmp_path / "outer_ridge"
    curated.mkdir()
    shutil.copy(ROOT / "results" / "outer" / "outer_ridge" / "outer.csv", curated / "outer.csv")
    before = (curated / "outer.csv").read_bytes()
    code = run_cli(monkeypatch, "run", "-m", "+experiment=outer_ridge", f"hydra.sweep.dir={curated}")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "without their job folders" in err and "hydra.sweep.dir=DIR" in err
    assert (curated / "outer.csv").read_bytes() == before and [p.name for p in curated.iterdir()] == ["outer.csv"]
    small = [
        "problem=ridge",
        "problem.n_features=4",
        "problem.n_train=20",
        "problem.n_val=20",
        "n_lambdas=1",
        "grid.t=[0,5]",
        "estimator=fp",
        "plot=false",
        f"hydra.sweep.dir={tmp_path / 'own'}",
    ]
    assert run_cli(monkeypatch, "run", "-m", *small) == 0
    assert run_cli(monkeypatch, "run", "-m", *small) == 0  # a folder a sweep left: swept again
