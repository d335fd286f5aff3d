"""``hgbench run``: the Hydra application (``launch``, for hgbench.running.cli), one run of a composed
configuration (``run_job``, also hgbench.running.api's), and the callback that closes a sweep."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from hgbench.running import lock, modes, progress
from hgbench.analysis.results import RUN_INFO, atomic, combine, read_regular
from hgbench.running.errors import UserError, one_line
from hgbench.running.interrupt import Interrupted, interruptible
from hgbench.running.mode import Mode
from hgbench.paths import conf_dir
from hgbench.running.prepare import prepare

# What ``launch`` shares with Hydra's task and callback, which Hydra calls without arguments of
# ours: whether a single run's failure raises with its traceback, and the messages of a sweep's
# failed jobs (SweepReport), which launch returns.
_tracebacks = False
_FAILED_JOBS: list[str] = []
SWEEP_LOCK: list[Path] = []  # the lock a sweep holds on its folder (released at its end, or by ``launch``)
ERROR_FILE = "error.txt"  # a failed sweep job's message (first line) and traceback


def _draw(path: Path, mode: Mode) -> None:
    """The figures the mode draws after a run (``Mode.drawn``) from the rows at path, as PNG
    (`hgbench plot` redraws them as PNG and PDF)."""
    from hgbench.analysis import canvas
    from hgbench.analysis.plot import announced, plot

    for kind in mode.drawn(path):
        try:
            with canvas.formats("png"):
                figures = plot(path, kind)
        except ValueError as err:  # e.g. every row diverged: the rows are the result, the figure is skipped
            print(f"hgbench: warning: no figure: {err}", file=sys.stderr)
            continue
        for figure in figures:
            print(f"{announced(figure)}: {figure}")


def run_job(cfg: DictConfig, out_dir: Path, overrides: list[str], progress: bool = True) -> tuple[Mode, pd.DataFrame]:
    """One run of a composed configuration, as ``hgbench run`` and hgbench.running.api.evaluate
    both do it: validate and plan (hgbench.running.prepare.prepare), then run in the
    configuration's mode into out_dir, holding its lock, with SIGINT and SIGTERM turned into
    hgbench.running.interrupt.Interrupted while it is held (so that the lock is released).
    ``overrides``: the run's overrides as typed (its rows' identity). Returns the mode and the
    rows. Code that calls sys.exit (an own problem's, say) ends the run with a RuntimeError: a
    run never ends quietly without its rows."""
    try:
        mode = modes.get(cfg.mode)
        plan = prepare(cfg, mode, " ".join(overrides))
        with lock.held(out_dir), interruptible(None, 0, out_dir):
            return mode, mode.run(plan, out_dir, progress)
    except SystemExit as err:
        raise RuntimeError(
            f"the run's code called sys.exit({err.code!r}); the run in {out_dir} stopped there "
            "(its complete draws, if any, are kept: resume=true continues)"
        ) from None


def run_one(cfg: DictConfig, out_dir: Path, overrides: list[str], table: bool = True) -> Mode:
    """``run_job``, then print the summary (unless not ``table``) and warn about rows that
    diverged or failed; returns the mode."""
    mode, df = run_job(cfg, out_dir, overrides)
    if table:
        print(mode.summarize(df))
        print(f"results: {out_dir / mode.csv}")
    for status in ("diverged", "error") if "status" in df else ():  # a mode whose rows have statuses
        bad = df[df["status"] == status]
        if len(bad):
            print(f"hgbench: warning: {len(bad)} of {len(df)} rows {status} ({bad['reason'].iloc[0]}); kept in {mode.csv}", file=sys.stderr)
    return mode


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def task(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)  # as typed: "${…}" unresolved
    if hydra_cfg.mode != RunMode.MULTIRUN:
        try:
            mode = run_one(cfg, out_dir, overrides)
        except UserError as err:
            print("hgbench: error: " + " ".join(str(err).split()), file=sys.stderr)
            sys.exit(2)
        except Exception as err:  # one line here, before Hydra adds its own
            if _tracebacks:
                raise
            sys.exit(one_line(err))
        if cfg.plot:
            _draw(out_dir / mode.csv, mode)
        return
    # In a sweep a failing job must not stop the others (and Hydra would then skip the
    # end-of-sweep callback): record the failure in the job's error.txt (parallel launchers run
    # jobs in other processes, so the callback reads the files) and go on.
    (out_dir / ERROR_FILE).unlink(missing_ok=True)  # from an earlier attempt of this job
    progress.SWEEP_JOB = f"job {hydra_cfg.job.num}"  # one progress bar at a time, no line per job
    try:
        run_one(cfg, out_dir, overrides, table=bool(cfg.verbose))
    except Interrupted as err:  # the advice to continue names the sweep (hgbench.running.cli)
        err.sweep_dir = Path(hydra_cfg.sweep.dir)
        raise
    except Exception as err:  # noqa: BLE001 — any failure of one job is reported, not raised
        reason = " ".join(str(err).split())
        message = f"job {hydra_cfg.job.num} ({' '.join(overrides)}): {type(err).__name__}: {reason}"
        with atomic(out_dir / ERROR_FILE) as tmp:
            tmp.write_text(message + "\n\n" + traceback.format_exc())
        print(f"hgbench: {message}", file=sys.stderr)
    mode = modes.find(cfg.mode)
    if mode is not None:
        combine(Path(hydra_cfg.sweep.dir), mode.csv)


class SweepReport(Callback):
    """At the start of a sweep: its folder locked (hgbench.running.lock), and refused when it
    holds a single run's results (the combined CSV would replace that run's rows). At the end:
    the failed jobs' messages (which make ``hgbench run -m`` exit 1), the jobs' rows combined at
    the sweep root (the mode's CSV), their summary and figure, and the lock released.

    Hydra turns an exception of a callback into a warning and goes on; so a refusal here is one
    line and SystemExit(2), and the end's report cannot hide the failed jobs."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            if (sweep_dir / RUN_INFO).exists():
                raise UserError(
                    f"hydra.sweep.dir={sweep_dir} holds a single run's results ({sweep_dir / RUN_INFO}); "
                    "a sweep would replace them: choose another directory"
                )
            sweep_dir.mkdir(parents=True, exist_ok=True)
            SWEEP_LOCK.append(lock.acquire(sweep_dir))
        except (UserError, OSError) as err:
            print("hgbench: error: " + " ".join(str(err).split()), file=sys.stderr)
            sys.exit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            _FAILED_JOBS[:] = [_first_line(path) for path in sorted(sweep_dir.rglob(ERROR_FILE))]
            mode = modes.find(config.mode)
            if mode is not None:  # else every job failed with the one-line refusal of the mode
                try:
                    _report(sweep_dir, mode, config.plot)
                except Exception as err:  # noqa: BLE001 — the rows stay in the jobs' folders; the failures still print
                    print(f"hgbench: warning: no sweep summary: {type(err).__name__}: {' '.join(str(err).split())}", file=sys.stderr)
            if _FAILED_JOBS:
                print(f"hgbench: {len(_FAILED_JOBS)} job(s) failed; see {ERROR_FILE} in their folders:", file=sys.stderr)
                for message in _FAILED_JOBS:
                    print(f"  {message}", file=sys.stderr)
        finally:
            release_sweep_lock()


def launch(tracebacks: bool = False) -> list[str]:
    """Run the Hydra application (``task``) on sys.argv: one run, or a sweep with -m. Returns the
    messages of a sweep's failed jobs (empty when none failed, or for a single run). Hydra re-raises
    every failure (HYDRA_FULL_ERROR=1 while it runs: its composition errors, a single run's
    interruption) for the caller to report in one line; a single run's own failure is printed in
    one line here (SystemExit), or raised with its traceback when ``tracebacks``. The sweep's
    lock is released however it ends."""
    global _tracebacks
    _tracebacks = tracebacks
    _FAILED_JOBS.clear()
    before = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        task()
    finally:
        release_sweep_lock()  # a sweep that ended early (a signal, an error) leaves no lock
        if before is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = before
    return list(_FAILED_JOBS)


def release_sweep_lock() -> None:
    """Release the lock a sweep took (SweepReport), if it holds one."""
    while SWEEP_LOCK:
        SWEEP_LOCK.pop().unlink(missing_ok=True)


def _first_line(path: Path) -> str:
    try:
        return read_regular(path).split("\n", 1)[0]
    except (ValueError, OSError) as err:
        return f"{path.parent.name}: (its {ERROR_FILE} cannot be read: {' '.join(str(err).split())})"


def sweep_target(overrides: list[str]) -> tuple[Path, str] | None:
    """The folder and mode of the sweep ``overrides`` ask for, when they fix the folder: by
    hydra.sweep.dir=, or by the +experiment= preset's hydra.sweep.dir (conf/experiment/); the
    mode by mode= or the preset's. None for a folder named by the time (the default)."""
    given = dict(o.lstrip("+").split("=", 1) for o in overrides if "=" in o and not o.startswith("~"))
    preset = conf_dir() / "experiment" / f"{given.get('experiment', '')}.yaml"
    block = OmegaConf.load(preset) if "experiment" in given and preset.is_file() else OmegaConf.create()
    folder = given.get("hydra.sweep.dir") or OmegaConf.select(block, "hydra.sweep.dir", default=None)
    if folder is None or "$" in str(folder):
        return None
    return Path(folder), given.get("mode") or OmegaConf.select(block, "mode", default="error")


def refuse_curated(sweep_dir: Path, mode_name: str) -> None:
    """Refuse (UserError, before any job) a sweep into a folder that holds a combined results file
    none of whose job folders are there: curated results, such as the committed
    results/outer/outer_<problem> (a sweep there would replace them and leave its job folders),
    as ``hgbench reproduce`` refuses to replace full results. A folder a sweep left (its jobs'
    files beside the combined one, e.g. results/demo) may be swept again."""
    mode = modes.find(mode_name)
    if mode is None or not (sweep_dir / mode.csv).is_file() or os.path.lexists(sweep_dir / RUN_INFO):
        return  # a single run's folder: SweepReport refuses it with its own message
    if any(path.parent != sweep_dir for path in sweep_dir.glob(f"*/{mode.csv}")):
        return
    raise UserError(
        f"{sweep_dir} holds results ({mode.csv}) without their job folders, e.g. committed ones: a sweep "
        "would replace them; give hydra.sweep.dir=DIR for new results, or delete the folder to regenerate it"
    )


def _report(sweep_dir: Path, mode: Mode, plot: bool) -> None:
    """The end of a sweep: the combined CSV, its summary, its figure."""
    combined = combine(sweep_dir, mode.csv)
    if combined is None:
        print(f"hgbench: no job of the sweep wrote {mode.csv} under {sweep_dir}", file=sys.stderr)
        return
    print(mode.summarize(mode.load(combined)))
    print(f"results: {combined}")
    if plot:
        _draw(combined, mode)
