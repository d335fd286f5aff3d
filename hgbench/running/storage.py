"""What both modes write and read back, crash-safe: a row's relative error (``relative``), the
rows' CSV and then run.json, each atomically (``save``, ``write_run_info``; run.json holds the
run's identity, configuration, versions and per-draw facts: ``run_info``), and the resume check
(``previous_info``: results already in the folder, of this configuration only)."""

from __future__ import annotations

import functools
import json
import math
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
import numpy as np
import pandas as pd
import torch

from hgbench.analysis.results import RESUME_FREE, RUN_INFO, atomic, frame, read_regular, strict_json, write_csv_atomic
from hgbench.running.errors import UserError, reason_of
from hgbench.version import __version__

if TYPE_CHECKING:
    from hgbench.running.plan import Plan


def relative(err: float, scale: float) -> float:
    """err / scale, the relative error of a row; NaN where scale = 0 (e.g. ∇f = 0 or w* = 0 at
    the draw: a relative error is undefined there, and the row's absolute error says it all)."""
    return err / scale if scale != 0 else math.nan


def _differences(old, new, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two resolved configurations (RESUME_FREE
    keys excepted)."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [
            d for key in keys if f"{prefix}{key}" not in RESUME_FREE for d in _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [] if old == new else [prefix.rstrip(".")]


def check_outputs(out_dir: Path, csv: str) -> None:
    """Before any work: the files a run will write must be regular files or absent."""
    for name in (csv, RUN_INFO):
        path = out_dir / name
        if path.exists() and not path.is_file():
            raise UserError(f"{path} exists and is not a file; remove it or choose another output directory")


def unreadable(out_dir: Path, err: BaseException) -> UserError:
    return UserError(f"resume=true: cannot read the results in {out_dir} ({reason_of(err)}); rerun with resume=false")


def previous_info(plan: Plan, out_dir: Path, csv: str) -> dict | None:
    """For resume=true, either mode: out_dir's run.json when out_dir holds results (``csv`` and
    run.json) of this configuration (equal but for RESUME_FREE keys); None when there is nothing
    to resume (resume=false, or no results). Results of another configuration, or unreadable
    ones, are refused in one line."""
    info_path = out_dir / RUN_INFO
    check_outputs(out_dir, csv)
    if not (plan.resume and (out_dir / csv).is_file() and info_path.is_file()):
        return None
    try:
        info = json.loads(read_regular(info_path))
    except (ValueError, OSError) as err:
        raise unreadable(out_dir, err) from err
    if not (isinstance(info, dict) and isinstance(info.get("config"), dict) and isinstance(info.get("references", []), list)):
        raise unreadable(out_dir, ValueError(f"{RUN_INFO} is not an hgbench run.json (an object with config and references)"))
    changed = _differences(info.get("config", {}), plan.config)
    if changed:
        raise UserError(
            f"resume=true: {out_dir} holds results of another configuration (differing in {', '.join(changed)}); "
            "rerun with resume=false to overwrite them, or choose another output directory"
        )
    return info


def save(plan: Plan, rows: list[dict], columns: list[str], csv: str, facts: list[dict], out_dir: Path) -> pd.DataFrame:
    """Training: write the rows to out_dir/``csv`` and then run.json, each atomically, and
    return the rows as a frame."""
    df = frame(rows, columns)
    write_csv_atomic(df, out_dir / csv)
    write_run_info(plan, facts, out_dir)
    return df


@functools.lru_cache(maxsize=1)
def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_info(plan: Plan, facts: list[dict]) -> dict:
    """run.json's content: the run's identity (run_id, overrides: as in its rows), the resolved
    configuration, versions, threads, device, code revision and the reference facts of every λ
    draw (training: every step with an error) done so far."""
    return {
        **plan.identity,
        "config": plan.config,
        "versions": {
            "hgbench": __version__,
            "torch": torch.__version__,
            "hydra": hydra.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "code_revision": _git_revision(),
        "threads": torch.get_num_threads(),
        "device": str(plan.device),
        "device_name": torch.cuda.get_device_name(plan.device) if plan.device.type == "cuda" else platform.processor(),
        "dtype": str(plan.dtype).removeprefix("torch."),
        "references": facts,
    }


def write_run_info(plan: Plan, facts: list[dict], out_dir: Path) -> Path:
    """Write run.json (``run_info``) atomically, as strict JSON (NaN and infinities as null)."""
    path = out_dir / RUN_INFO
    with atomic(path) as tmp:
        tmp.write_text(strict_json(run_info(plan, facts), indent=2))
    return path
