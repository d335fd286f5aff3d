"""``hgbench run``: the Hydra application, and the callback that closes a sweep."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from hgbench.paths import conf_dir
from hgbench.results import combine, load, summary_table
from hgbench.runner import UserError, execute, prepare, write_run_info

FAILED_JOBS: list[str] = []


def _draw(path: Path, mode: str = "error") -> None:
    from hgbench.plot import plot

    for figure in plot(path, "train" if mode == "train" else "error"):
        print(f"figure: {figure}")


def run_one(cfg: DictConfig, out_dir: Path) -> None:
    if cfg.mode == "train":
        from hgbench.train import train_one

        return train_one(cfg, out_dir)
    plan = prepare(cfg)
    df, facts = execute(plan, out_dir)
    write_run_info(cfg, plan, facts, out_dir)
    print(summary_table(df))
    print(f"results: {out_dir / 'metrics.csv'}")


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def task(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        try:
            run_one(cfg, out_dir)
        except UserError as err:
            print(f"hgbench: error: {err}", file=sys.stderr)
            sys.exit(2)
        if cfg.plot:
            _draw(out_dir / ("train.csv" if cfg.mode == "train" else "metrics.csv"), cfg.mode)
        return
    # In a sweep a failing job must not stop the others (and Hydra would then skip the
    # end-of-sweep callback): record the failure and go on.
    try:
        run_one(cfg, out_dir)
    except Exception as err:  # noqa: BLE001 — any failure of one job is reported, not raised
        message = f"job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)}): {type(err).__name__}: {err}"
        (out_dir / "error.txt").write_text(message + "\n\n" + traceback.format_exc())
        print(f"hgbench: {message}", file=sys.stderr)
        FAILED_JOBS.append(message)
    combine(Path(hydra_cfg.sweep.dir))


class SweepReport(Callback):
    """At the end of a sweep: the combined metrics.csv at the sweep root, its summary, its figure."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if config.mode == "train":
            from hgbench.train import sweep_report

            return sweep_report(sweep_dir, config.plot, FAILED_JOBS)
        combined = combine(sweep_dir)
        if combined is None:
            print(f"hgbench: no job of the sweep wrote results under {sweep_dir}", file=sys.stderr)
            return
        print(summary_table(load(combined)))
        print(f"results: {combined}")
        if config.plot:
            _draw(combined)
        if FAILED_JOBS:
            print(f"hgbench: {len(FAILED_JOBS)} job(s) failed; see error.txt in their folders:", file=sys.stderr)
            for message in FAILED_JOBS:
                print(f"  {message}", file=sys.stderr)
