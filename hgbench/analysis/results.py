"""The tidy results tables: columns, crash-safe writing, loading, combining, telling runs
apart, summarizing.

Every row carries the identity of the run that wrote it: ``run_id`` (a hash of the run's
resolved configuration, hgbench.running.identity.run_id), ``setting_id`` (the same hash less the
estimator's options: shared by the estimators run on one setting, which claims compare) and
``overrides`` (the run's Hydra task overrides, space-joined). Rows are deduplicated only within one run_id, so rows of different
configurations are never merged, and the figures and tables label each configuration.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import stat
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

IDENTITY = ["run_id", "setting_id", "overrides"]  # in every row of every mode
# Hex ids read as text: "032e16426749" would otherwise parse as a float (inf), and ids merge
# (outer.csv's problem_id: the runs of one outer problem share its f*).
ID_TEXT = {column: str for column in (*IDENTITY, "problem_id")}
COLUMNS = [
    "problem",
    "estimator",
    "role",
    "min_min",
    "grid",
    "seed",
    "lam_id",
    "t",
    "k",
    "level",
    "err_abs",
    "err_rel",
    "inner_err",
    "time_s",
    "time_kind",
    "n_phi",
    "n_vjp",
    "n_jvp",
    "saved_bytes",
    "peak_bytes",
    "q",
    "kappa",
    "dtype",
    "device",
    "status",
    "reason",
    *IDENTITY,
]
NAMED = ("problem", "estimator")  # never empty: load refuses a row without them
KEY = ["run_id", "problem", "estimator", "grid", "seed", "lam_id", "t", "k", "level", "dtype", "device"]
# Columns added after results were first written: a file without one reads it as empty.
LATER = ("level",)  # grid=levels: the absolute inner error a row's estimate is interpolated to
METRICS = "metrics.csv"
RUN_INFO = "run.json"  # next to a job's CSV: marks the folder as an hgbench run
# Options that place outputs or control resuming and drawing, not what a row holds: they are
# left out of run_id (and a resumed run may differ in them). n_lambdas: the λ draws are a prefix
# of one random stream, so more draws extend the same run; threads: torch's thread count changes
# float sums at ~1e-13 only, and run.json records it (runs that differ only in it share a run_id,
# so loading them together keeps one copy of each row); verbose: what a sweep prints.
RESUME_FREE = ("n_lambdas", "plot", "resume", "threads", "verbose")
# Stable dtypes, written and read the same way whatever the rows hold: integer columns are
# written without a decimal point ("10", "" when empty), ``k`` (empty for estimators without a
# solver) loads as pandas' nullable Int64, ``status`` and ``reason`` always load as text ("" for
# none), and a numeric column holding text is refused on load, naming the file and the column.
INTEGERS = ("seed", "lam_id", "step", "t", "k", "n_phi", "n_vjp", "n_jvp", "saved_bytes", "peak_bytes", "batch_size")
TEXT = ("status", "reason")
NUMBERS = ("level", "err_abs", "err_rel", "inner_err", "time_s", "q", "kappa", *INTEGERS)


TEMPORARY = "hgbench-"  # atomic's temporary files are .NAME.hgbench-PID.tmp (hgbench.running.lock removes dead writers')
MAX_BYTES = 2**30  # a results file above 1 GiB is refused (nothing hgbench writes comes near it)


@contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """Yields a temporary path next to ``path`` (``.NAME.hgbench-PID.tmp``, emptied of anything
    already there); when the block ends without an error it is renamed over ``path``
    (os.replace, atomic on POSIX), so a reader or a killed run only ever sees the old or the new
    complete file, and a ``path`` that is a symbolic link is replaced, never written through."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{TEMPORARY}{os.getpid()}.tmp")
    try:
        tmp.unlink(missing_ok=True)  # a link planted under this name must not be written through either
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write text to path through ``atomic``."""
    with atomic(path) as tmp:
        tmp.write_text(text)


def read_regular(path: Path, limit: int = MAX_BYTES) -> str:
    """The text of a results file: a regular file of at most ``limit`` bytes, opened without
    following a symbolic link and without blocking, so that a link to another file, a FIFO or a
    device (/dev/zero) is refused at once (ValueError naming it; text that is not UTF-8 raises
    UnicodeDecodeError, a ValueError); a missing file raises FileNotFoundError."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ValueError(f"{path} is a symbolic link; results are read from regular files only") from None
        raise
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError(f"{path} is not a regular file (a FIFO, a device or a folder); results are read from regular files only")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit} bytes; is it a results file?")
    return data.decode()


def typed(df: pd.DataFrame) -> pd.DataFrame:
    """df with the stable dtypes: INTEGERS as nullable Int64, TEXT as str ("" for none)."""
    df = df.copy()
    for column in (c for c in INTEGERS if c in df):
        df[column] = pd.to_numeric(df[column]).astype("Int64")
    for column in (c for c in TEXT if c in df):
        df[column] = df[column].astype(object).where(df[column].notna(), "").astype(str)
    return df


def frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """Rows as a frame with the stable dtypes (``typed``)."""
    return typed(pd.DataFrame(rows, columns=columns))


def _cell(column: str, value) -> str:
    """One CSV cell: empty for None/NaN/NA, integers without a decimal point, floats by repr
    (shortest round trip, as pandas writes them), booleans as True/False."""
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if column in INTEGERS:
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def csv_text(rows: list[dict], columns: list[str], header: bool = True) -> str:
    """The CSV text of rows (dicts; missing keys are empty cells), integer columns without a
    decimal point; quoting as pandas does (only where needed). Costs O(len(rows)), no frame."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(columns)
    writer.writerows([_cell(c, row.get(c)) for c in columns] for row in rows)
    return out.getvalue()


def write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write a CSV through ``atomic``: a reader (or a killed run) only ever sees a complete file.
    The same rows also go beside it as Parquet (``write_parquet``)."""
    with atomic(path) as tmp:
        tmp.write_text(csv_text(df.to_dict("records"), list(df.columns)))
    write_parquet(df, Path(path).with_suffix(".parquet"))


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """The rows as Parquet (through ``atomic``), typed as ``read_csv`` types a CSV's (``typed``:
    integer columns nullable Int64, identity and TEXT columns str; floats float64, booleans bool),
    so that ``load`` of either file gives the same frame without dtype fixes."""
    df = typed(df)
    for column in (c for c in IDENTITY if c in df):
        df[column] = df[column].astype(object).where(df[column].notna(), "").astype(str)
    for column in (c for c in NUMBERS if c in df and c not in INTEGERS):
        df[column] = pd.to_numeric(df[column]).astype("float64")
    with atomic(path) as tmp:
        df.to_parquet(tmp, index=False, engine="pyarrow")


def read_parquet(path: Path) -> pd.DataFrame:
    """A results Parquet file (``write_parquet``) with the frame ``read_csv`` gives of its CSV:
    ``k`` Int64, the other integer columns as numbers (as a CSV's read), identity and TEXT str."""
    try:
        df = pd.read_parquet(path, engine="pyarrow")
    except Exception as err:  # pyarrow's errors have no common base: one message naming the file
        raise ValueError(f"{path} is not a readable Parquet file ({type(err).__name__}: {' '.join(str(err).split())[:120]})") from err
    for column in IDENTITY:
        df[column] = df[column].fillna("").astype(str) if column in df else ""
    for column in (c for c in NUMBERS if c in df and c != "k"):
        df[column] = (
            df[column].astype("float64") if column not in INTEGERS else df[column].astype("float64" if df[column].isna().any() else "int64")
        )
    return df


def read_csv(path: Path, text: str | None = None) -> pd.DataFrame:
    """A results CSV (or its ``text``, when given): the identity columns as text ("" for none;
    files written before runs had an identity get "" in both, i.e. they count as one run per
    (old) key), ``k`` as Int64, TEXT columns as str. A file that is not a readable CSV, or a
    numeric column holding text, raises ValueError naming the file."""
    try:
        text = read_regular(path) if text is None else text
        df = pd.read_csv(io.StringIO(text), dtype=ID_TEXT)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path} is not a readable CSV ({type(err).__name__}: {' '.join(str(err).split())[:120]})") from err
    for column in IDENTITY:
        df[column] = df[column].fillna("") if column in df else ""
    for column in (c for c in NUMBERS if c in df):
        values = pd.to_numeric(df[column], errors="coerce")
        bad = df[column][values.isna() & df[column].notna()]
        if len(bad):
            raise ValueError(f"{path}: column {column} holds a non-number ({bad.iloc[0]!r}); is it an hgbench CSV?")
        if column in INTEGERS:  # counts and ids: whole numbers that fit Int64 (k = 1.5, 1e23 or inf is refused)
            whole = values.isna() | (np.isfinite(values) & (values.abs() < 2.0**63) & (values == values.round()))
            if not whole.all():
                raise ValueError(f"{path}: column {column} holds {values[~whole].iloc[0]}, not an integer; is it an hgbench CSV?")
        df[column] = values.astype("Int64") if column == "k" else values
    for column in (c for c in TEXT if c in df):
        df[column] = df[column].astype(object).where(df[column].notna(), "").astype(str)
    return df


def finite_json(value):
    """``value`` with every NaN or infinite float replaced by None (JSON null), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value


def strict_json(value, **kwargs) -> str:
    """Strict JSON (RFC 8259: no NaN or Infinity tokens) of ``value``, non-finite floats as null."""
    return json.dumps(finite_json(value), allow_nan=False, **kwargs)


def is_run_info(path: Path) -> bool:
    """Whether path is a run.json that hgbench wrote: a JSON object with ``run_id`` and ``config``."""
    try:
        info = json.loads(read_regular(path))
    except (ValueError, OSError):
        return False
    return isinstance(info, dict) and isinstance(info.get("config"), dict) and "run_id" in info


def find_csvs(path: Path, name: str = METRICS) -> list[Path]:
    """The CSV at path, or every file called ``name`` below the directory path."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(path.rglob(name))
    raise FileNotFoundError(f"{path} is neither a CSV file nor a directory")


def load(path: Path, name: str = METRICS, key: list[str] = KEY) -> pd.DataFrame:
    """All result rows in a CSV or a Parquet file (metrics.parquet, beside every metrics.csv),
    or in every file ``name`` below a directory. A row that appears
    in several files (a sweep's combined CSV and its jobs' CSVs) is kept once: duplicates are
    rows with the same ``key``, which starts with run_id, so rows of different configurations
    are all kept."""
    files = find_csvs(path, name)
    if not files:
        raise FileNotFoundError(f"no {name} under {path}")
    df = checked(
        pd.concat([read_parquet(f) if f.suffix == ".parquet" else read_csv(f) for f in files], ignore_index=True), files, name, key
    )
    return df.drop_duplicates(subset=key, keep="last").reset_index(drop=True)


def checked(df: pd.DataFrame, files: list[Path], name: str, key: list[str]) -> pd.DataFrame:
    """The rows read from ``files`` (results CSVs called ``name``), refused (ValueError, one
    line naming the file) unless they have every ``key`` column (a LATER one is added empty), at
    least one row (a run killed before its first row leaves the header only) and a non-empty
    problem and estimator in every row (those of the two columns the file's rows have: a mode's
    key says which it must have)."""
    for column in (c for c in LATER if c in key and c not in df):
        df[column] = np.nan
    missing = [c for c in key if c not in df.columns]
    if missing:
        raise ValueError(f"{files[0]} lacks the columns {missing}; is it an hgbench {name}?")
    if df.empty:
        raise ValueError(f"no rows in {' '.join(map(str, files[:3]))}{' …' if len(files) > 3 else ''}: nothing to show")
    for column in (c for c in NAMED if c in df.columns):
        empty = df[column].isna() | (df[column].astype(str).str.strip() == "")
        if empty.any():
            where = files[0] if len(files) == 1 else f"the {name} files below {files[0].parent.parent}"
            raise ValueError(f"{where}: column {column} is empty in {int(empty.sum())} row(s); is it an hgbench {name}?")
    return df


def combine(sweep_dir: Path, name: str = METRICS, key: list[str] | None = None) -> Path | None:
    """Write the rows of every job's file ``name`` below sweep_dir into sweep_dir/``name``
    (rebuilt from the jobs' files each time: safe to call again, e.g. by ``hgbench aggregate``).
    Only hgbench's own job files count: a file ``name`` in a folder with a run.json that hgbench
    wrote (``is_run_info``); others (e.g. a nested sweep's combined file) are skipped with a
    warning. A sweep_dir that is a file, or a job file that is not a readable results CSV,
    raises ValueError naming it; with ``key``, so do rows ``checked`` refuses, before anything
    is written."""
    sweep_dir = Path(sweep_dir)
    if sweep_dir.is_file():
        raise ValueError(f"{sweep_dir} is a file; give the sweep directory that holds the jobs' folders")
    jobs = []
    for f in find_csvs(sweep_dir, name):
        if f.parent == sweep_dir:
            continue
        if is_run_info(f.parent / RUN_INFO):
            jobs.append(f)
        else:
            print(f"hgbench: warning: skipping {f}: not an hgbench job folder (no hgbench {RUN_INFO} next to it)", file=sys.stderr)
    if not jobs:
        return None
    df = pd.concat([read_csv(f) for f in jobs], ignore_index=True)
    if key is not None:
        checked(df.copy(), jobs, name, key)
    target = sweep_dir / name
    write_csv_atomic(df, target)
    return target


def _settings(overrides: str) -> dict[str, str]:
    """{key: value} of a space-joined override string, without the RESUME_FREE keys."""
    pairs = (item.partition("=") for item in overrides.split())
    return {key: value for key, _, value in pairs if key.lstrip("+~") not in RESUME_FREE}


def labels(df: pd.DataFrame, name: pd.Series | None = None) -> pd.Series:
    """Each row's configuration label: its ``name`` (default: the estimator's), and, where the
    rows of one (problem, grid kind, name) come from several runs, the overrides whose values
    differ between those runs (``fp, problem.cond=2``; an override one run lacks shows as
    ``(default)``). The grid kind is not part of a label: figures and tables show each kind
    apart. Labels are unique among the runs of one (problem, grid kind); where the overrides do
    not tell two runs apart, their run_id is appended."""
    name = (df["estimator"] if name is None else name).astype(str)
    out = name.copy()
    groups = [df[c] for c in ("problem", "grid") if c in df] + [name]
    for _, part in df.groupby(groups, sort=False, dropna=False):
        runs = dict(zip(part["run_id"], part["overrides"]))
        if len(runs) < 2:
            continue
        settings = {run: _settings(text) for run, text in runs.items()}
        keys = sorted(set().union(*settings.values()))
        differing = [k for k in keys if len({s.get(k) for s in settings.values()}) > 1]
        text = {run: ", ".join(f"{k}={s.get(k, '(default)')}" for k in differing) for run, s in settings.items()}
        clash = {t for t in text.values() if list(text.values()).count(t) > 1}
        text = {run: (f"{t}, run {run}" if t else f"run {run}") if t in clash else t for run, t in text.items()}
        out[part.index] = [f"{n}, {text[r]}" for n, r in zip(name[part.index], part["run_id"])]
    return out


def configurations(df: pd.DataFrame, name: pd.Series | None = None) -> Iterator[tuple[str, pd.DataFrame]]:
    """(label, rows) for every run (configuration, one run_id) in df, ordered by problem, grid
    kind and label; see ``labels``. For claims: select a configuration's rows without pooling
    runs that differ in a setting."""
    tags = labels(df, name)
    order = [c for c in ("problem", "grid") if c in df]
    runs = [(tuple(rows[order].iloc[0]), tags[rows.index[0]], rows) for _, rows in df.groupby("run_id", sort=False)]
    for _, label, rows in sorted(runs, key=lambda r: (r[0], r[1])):
        yield label, rows


def summary_table(df: pd.DataFrame) -> str:
    """Median err_rel over λ draws: one column per estimator (per configuration, labelled as by
    ``labels``, when several runs of one estimator share a block), one row per grid point, one
    block per (problem, grid). Estimators without k (ITD) are matched to the other rows by t."""
    df = df.assign(estimator=labels(df))
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
            f"problem={problem} grid={grid}: median relative error over {n} λ draws\n" + table.to_string(float_format=lambda x: f"{x:.2e}")
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
