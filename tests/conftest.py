import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hgbench.problems.logistic import Logistic
from hgbench.problems.ridge import Ridge

TESTS = Path(__file__).resolve().parent
# Answers kept by hgbench.running.answers (`run --help`, `list`) go to a store of the test session's own.
os.environ["XDG_CACHE_HOME"] = str(Path(__import__("tempfile").mkdtemp(prefix="hgbench-tests-cache-")))


@pytest.fixture(scope="session")
def ridge():
    return Ridge("ridge", seed=0, n_train=60, n_val=40, n_features=8, cond=30.0, noise=0.1, lam_low=-3.0, lam_high=0.0)


@pytest.fixture(scope="session")
def logistic():
    return Logistic("logistic", seed=0, n_samples=200, n_features=6, label_noise=0.1, lam_low=-3.0, lam_high=-1.0)


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions draw, instead of saving them."""
    from hgbench.analysis import canvas

    drawn = []
    monkeypatch.setattr(canvas, "save", lambda fig, out_dir, stem: drawn.append(fig) or [])
    yield drawn
    for fig in drawn:
        canvas.plt.close(fig)


def need_extra(module: str, extra: str):
    """``module`` imported: on CI (CI set; make setup installs every extra) a missing one fails
    the test, elsewhere it skips it with how to install the extra."""
    if os.environ.get("CI"):
        return __import__(module)
    return pytest.importorskip(module, reason=f"needs the {extra} extra: pip install 'hgbench[{extra}]'")


def draws(problem, n=2, seed=0):
    return problem.sample_lambdas(n, torch.Generator().manual_seed(seed))


def run_cli(monkeypatch, *args):
    """Call the hgbench command in this process; returns its exit code."""
    from hgbench.running.cli import main

    monkeypatch.setattr(sys, "argv", ["hgbench", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code


def signal_when_paused(tmp_path, pause: int, *args, signum=signal.SIGKILL) -> tuple[int, str]:
    """Run ``hgbench run *args`` in a child process that pauses at its ``pause``-th checkpoint
    (tests/faulty.py's HGBENCH_TEST_PAUSE hook: a λ draw in error mode, an evaluation in
    training mode, a reference in outer mode), send it ``signum`` there and return its exit
    status and stderr."""
    marker = tmp_path / "paused"
    env = {**os.environ, "HGBENCH_TEST_PAUSE": f"{pause}:{marker}", "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    command = [sys.executable, "-c", "from hgbench.running.cli import main; main()", "run", *map(str, args)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        give_up = time.monotonic() + 600  # a guard against a hung child, not a timing assertion
        while not marker.exists():
            if proc.poll() is not None or time.monotonic() > give_up:
                pytest.fail(f"the run ended or hung before its pause: {proc.stderr.read() if proc.poll() is not None else ''}")
            time.sleep(0.05)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, err


def refusal(*overrides: str) -> str | None:
    """The one line the configuration's checks (hgbench.running.schema.validate: every option's
    check and the relations its Options states) give for ``hgbench run OVERRIDES``; None when
    accepted. The options are declared by the components (hgbench.options), not their constructors."""
    from hydra import compose, initialize_config_dir

    from hgbench.paths import conf_dir
    from hgbench.running import schema

    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = compose("config", overrides=list(overrides))
    try:
        schema.validate(cfg)
    except schema.ConfigError as err:
        return str(err)
    return None
