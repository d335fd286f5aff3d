"""The installed product works: the wheel built from this checkout, installed into a fresh venv
and run from outside the checkout, ships every module and config, sweeps with the joblib
launcher, reproduces a preset, and runs a problem defined outside the package."""

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "hgbench", "conf")  # what a build reads


def _check(cmd, cwd, env=None):
    """Run cmd; on failure, fail with its output."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the checkout's sources (so no stale build/ leaks in)."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(path, src / name)
    dist = tmp_path_factory.mktemp("dist")
    # no build isolation: the build uses this environment's setuptools (the test extra) offline
    _check([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, src], cwd=src)
    (path,) = dist.glob("hgbench-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A fresh venv with the wheel installed; this environment's site-packages are visible to it
    (through a .pth file, which adds the paths but runs none of their .pth files, so the
    checkout's editable install does not come along). Returns (bin dir, env, working dir)."""
    venv = tmp_path_factory.mktemp("venv")
    made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], capture_output=True, text=True)
    if made.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot create a venv on CI: {made.stderr}")
        pytest.skip(f"cannot create a venv here: {made.stderr.strip()}")
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    purelib = _check([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], venv, env)
    (Path(purelib.stdout.strip()) / "host.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # pip comes from this environment's site-packages; --ignore-installed: the editable hgbench
    # seen there is another environment's and must not be uninstalled or taken as satisfying
    _check([bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", wheel], venv, env)
    outside = tmp_path_factory.mktemp("outside")  # a working directory outside the checkout
    where = _check([bin_dir / "python", "-c", "import hgbench; print(hgbench.__file__)"], outside, env)
    assert Path(where.stdout.strip()).is_relative_to(venv), f"hgbench imported from {where.stdout.strip()}, not the venv"
    return bin_dir, env, outside


def test_wheel_ships_every_module_and_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "hgbench").rglob("*.py")}
    configs = {"hgbench/conf/" + p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml")}
    assert "hgbench/conf/hydra/launcher/parallel.yaml" in configs
    assert modules - names == set()
    assert configs - names == set()
    shipped = {"hgbench/data/libsvm_files/" + p.name for p in (ROOT / "hgbench" / "data" / "libsvm_files").iterdir()}
    assert len(shipped) == 3 and shipped - names == set()  # Ye et al.'s LIBSVM files


def test_installed_wheel_reads_its_data_files(installed):
    """The LIBSVM files and the MNIST subset load from the installed package, their checksums
    verified, and the MNIST file is the one installed (not the checkout's)."""
    bin_dir, env, outside = installed
    code = (
        "from hgbench.data import libsvm, mnist, shipped; print(libsvm.load('mpg')[0].shape[0], "
        "libsvm.load('liver', binary=True)[2].shape[0], mnist._load_subset()[0].shape[0], "
        "shipped.shipped_path('mnist_files/mnist_5k.csv.gz').is_relative_to(shipped.__file__.rsplit('/', 1)[0]))"
    )
    assert _check([bin_dir / "python", "-c", code], outside, env).stdout.split() == ["297", "200", "5000", "True"]


def test_installed_wheel_answers_help_at_once(installed, tmp_path):
    """The installed wheel answers its first `hgbench run --help` from its shipped answers (the
    wheel's own files and configs fingerprint as the checkout's): no torch, pandas or Hydra
    imported, the text the checkout computes."""
    from hgbench.running import answers

    bin_dir, env, outside = installed
    probe = (
        "import sys\nfrom hgbench.running.cli import main\nsys.argv = ['hgbench', 'run', '--help']\ntry:\n    main()\n"
        "except SystemExit:\n    print('HEAVY', [m for m in ('torch', 'pandas', 'hydra') if m in sys.modules], file=sys.stderr)"
    )
    done = _check([bin_dir / "python", "-c", probe], outside, {**env, "XDG_CACHE_HOME": str(tmp_path)})
    assert "HEAVY []" in done.stderr and done.stdout == answers.compute(["run", "--help"])


def test_installed_joblib_sweep(installed, tmp_path):
    bin_dir, env, outside = installed
    sweep = tmp_path / "sweep"
    proc = _check(
        [
            bin_dir / "hgbench",
            "run",
            "-m",
            "hydra/launcher=parallel",
            "problem=ridge",
            "problem.n_features=8",
            "problem.n_train=40",
            "estimator=fp,cg",
            "n_lambdas=2",
            "grid.t=[0,5]",
            "plot=false",
            "threads=1",
            "hydra/hydra_logging=default",
            f"hydra.sweep.dir={sweep}",
        ],
        outside,
        env,
    )
    # Hydra's own log (quiet by default: conf/hydra/hydra_logging/quiet.yaml) names the launcher
    assert "Joblib.Parallel" in proc.stdout + proc.stderr  # the launcher config was found and used
    rows = pd.read_csv(sweep / "metrics.csv")
    got = sorted(zip(rows.estimator, rows.lam_id, rows.t, rows.k))
    assert got == sorted((e, i, t, t) for e in ("fp", "cg") for i in (0, 1) for t in (0, 5))
    assert (rows.status == "ok").all()


def test_installed_reproduce_quick(installed, tmp_path):
    bin_dir, env, outside = installed
    out = tmp_path / "out"
    _check([bin_dir / "hgbench", "reproduce", "--quick", "ridge_illcond", "--out", out], outside, env)
    assert len(pd.read_csv(out / "ridge_illcond" / "metrics.csv")) > 0
    assert "ridge_illcond" in (out / "claims.md").read_text()


def test_installed_runs_an_own_problem(installed, tmp_path):
    """The worked example's problem (examples/own_problem), from a copy outside the checkout, by
    the installed console script: its sys.path lacks the working directory, and the example's
    YAML names its class by file, so none is needed."""
    bin_dir, env, _ = installed
    here = tmp_path / "own_problem"
    shutil.copytree(ROOT / "examples" / "own_problem", here, ignore=shutil.ignore_patterns("results", "__pycache__"))
    _check(
        [
            bin_dir / "hgbench",
            "run",
            "--config-dir",
            "conf",
            "problem=robust_regression",
            "estimator=cg",
            "n_lambdas=1",
            "grid.t=[0,100]",
            "plot=false",
            "threads=1",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        here,
        env,
    )
    rows = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(rows.t) == [0, 100] and (rows.status == "ok").all() and rows.err_rel.iloc[-1] < 1e-10
