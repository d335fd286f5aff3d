"""The tidy results table: columns, crash-safe writing, loading, combining, summarizing."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

COLUMNS = [
    "problem", "estimator", "grid", "seed", "lam_id", "t", "k",
    "err_abs", "err_rel", "inner_err", "time_s", "n_phi", "n_vjp", "n_jvp", "saved_bytes", "peak_bytes",
    "q", "kappa", "dtype", "device", "status", "reason",
]  # fmt: skip
KEY = ["problem", "estimator", "grid", "seed", "lam_id", "t", "k", "dtype", "device"]
METRICS = "metrics.csv"
TRAIN_CSV = "train.csv"
TRAIN_COLUMNS = [
    "problem", "estimator", "label", "seed", "step", "time_s", "train_loss", "train_acc", "val_loss", "val_acc",
    "test_loss", "test_acc", "batch_loss", "q_bound", "q", "err_abs", "err_rel", "t", "k", "lr", "momentum",
    "batch_size", "dtype", "device", "status",
]  # fmt: skip
TRAIN_KEY = ["problem", "estimator", "label", "seed", "step", "t", "k", "lr", "batch_size", "dtype", "device"]


def write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write to a temporary file, then rename: a reader (or a killed run) only ever sees a
    complete file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def find_csvs(path: Path, name: str = METRICS) -> list[Path]:
    """The CSV at path, or every file called ``name`` below the directory path."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(path.rglob(name))
    raise FileNotFoundError(f"{path} is neither a CSV file nor a directory")


def load(path: Path, name: str = METRICS, key: list[str] = KEY) -> pd.DataFrame:
    """All result rows in a CSV, or in every file ``name`` below a directory; rows that appear
    in several files (a sweep's combined CSV and its jobs' CSVs) are kept once, by ``key``."""
    files = find_csvs(path, name)
    if not files:
        raise FileNotFoundError(f"no {name} under {path}")
    df = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    missing = [c for c in key if c not in df.columns]
    if missing:
        raise ValueError(f"{files[0]} lacks the columns {missing}; is it an hgbench {name}?")
    return df.drop_duplicates(subset=key, keep="last").reset_index(drop=True)


def combine(sweep_dir: Path, name: str = METRICS) -> Path | None:
    """Write the rows of every job's file ``name`` below sweep_dir into sweep_dir/``name``
    (rebuilt from the jobs' files each time: safe to call again, e.g. by ``hgbench aggregate``)."""
    sweep_dir = Path(sweep_dir)
    jobs = [f for f in find_csvs(sweep_dir, name) if f.parent != sweep_dir]
    if not jobs:
        return None
    df = pd.concat([pd.read_csv(f) for f in jobs], ignore_index=True)
    target = sweep_dir / name
    write_csv_atomic(df, target)
    return target


def summary_table(df: pd.DataFrame) -> str:
    """Median err_rel over λ draws: one column per estimator, one row per grid point, one block
    per (problem, grid). Estimators without k (ITD) are matched to the other rows by t."""
    blocks = []
    for (problem, grid), part in df.groupby(["problem", "grid"], sort=True):
        med = part.groupby(["estimator", "t", "k"], dropna=False)["err_rel"].median().reset_index()
        with_k = med[med["k"].notna()].pivot(index=["t", "k"], columns="estimator", values="err_rel")
        no_k = med[med["k"].isna()].pivot(index="t", columns="estimator", values="err_rel")
        if with_k.empty:
            table = no_k
        else:
            table = with_k.reset_index().merge(no_k.reset_index(), on="t", how="left") if not no_k.empty else with_k.reset_index()
            table["k"] = table["k"].astype(int)
            table = table.set_index(["t", "k"])
        n = part["lam_id"].nunique()
        blocks.append(
            f"problem={problem} grid={grid}: median relative error over {n} λ draws\n"
            + table.to_string(float_format=lambda x: f"{x:.2e}")
        )
    return "\n\n".join(blocks)


def markdown(table: pd.DataFrame) -> str:
    """A table as markdown: floats with 4 decimals (NaN as —), "|" in text replaced by "/"."""

    def cell(v) -> str:
        if isinstance(v, float):
            return "—" if math.isnan(v) else f"{v:.4f}"
        return str(v).replace("|", "/")

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def panels(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(grid kind, x axis, title) for every panel the data call for, in a fixed order."""
    out = []
    for kind in ("diag", "t_sweep", "k_sweep", "full", "inner"):
        part = df[df["grid"] == kind]
        if part.empty:
            continue
        t_max, k_max = int(part["t"].max()), part["k"].max()
        k_label = f"{int(k_max)}" if pd.notna(k_max) else "—"
        if kind == "diag":
            out.append((kind, "t", "cold start, k = t"))
        if kind in ("t_sweep", "full", "inner"):
            out.append((kind, "t", f"inner steps t (k = {k_label})"))
        if kind in ("k_sweep", "full"):
            out.append((kind, "k", f"solver steps k (t = {t_max})"))
    return out


def panel_rows(df: pd.DataFrame, kind: str, x: str) -> pd.DataFrame:
    """The rows a panel shows: grid ``kind``; on a k axis only the largest t; on the t axis of a
    ``full`` grid only the largest k (and estimators without k)."""
    part = df[df["grid"] == kind]
    if x == "t" and kind == "full":
        part = part[part["k"].isna() | (part["k"] == part["k"].max())]
    if x == "k":
        part = part[part["t"] == part["t"].max()]
    return part


def load_training(path: Path) -> pd.DataFrame:
    """The rows of a train.csv, or of every train.csv below a directory (a sweep's combined file
    and its jobs' files are not double counted)."""
    df = load(path, TRAIN_CSV, TRAIN_KEY)
    df["label"] = ["" if pd.isna(x) else str(x) for x in df["label"]]  # an empty label reads back as NaN
    return df
