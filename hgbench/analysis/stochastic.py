"""mode=stochastic's rows (stochastic.csv, written by hgbench.running.stochastic_mode): their
columns and key, the summary table, and the figure ``hgbench plot --kind stochastic``: MSE,
bias² and variance (relative to ‖∇f‖²) against oracle calls, one curve per estimator and batch
size, read from the rows alone."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from hgbench.analysis import canvas
from hgbench.analysis.results import load, write_text_atomic
from hgbench.analysis.style import palette

CSV = "stochastic.csv"
STATS = ["mse", "bias2", "variance", "bias2_debiased", "mse_rel", "bias2_rel", "variance_rel", "bias2_debiased_rel"]
ORACLES = ["n_grad", "n_hvp", "n_jvp", "n_outer", "oracle_calls"]
COLUMNS = [
    "run_id",
    "setting_id",
    "overrides",
    "problem",
    "estimator",
    "role",
    "seed",
    "lam_id",
    "t",
    "k",
    "batch",
    "outer_batch",
    "replace",
    "repeats",
    "dtype",
    *STATS,
    "grad_norm",
    *ORACLES,
    "time_s",
    "status",
    "reason",
]
KEY = ["run_id", "lam_id", "t", "k", "batch"]
CURVE = ["problem", "setting_id", "estimator", "batch", "outer_batch", "replace"]  # one curve each: no row merged across them
PANELS = [("mse_rel", "MSE / ‖∇f‖²"), ("bias2_rel", "bias² / ‖∇f‖²"), ("variance_rel", "variance / ‖∇f‖²")]
FLOOR = 1e-24  # a variance of 0 up to round-off (the full batch) still shows on a log axis
STYLES = ["-", "--", ":", "-."]  # line style per batch size, in increasing order


def load_stochastic(path: Path) -> pd.DataFrame:
    return load(path, CSV, KEY)


def medians(df: pd.DataFrame) -> pd.DataFrame:
    """Per curve (CURVE) and grid point (t, k): the medians over λ draws of the relative
    statistics, oracle calls and seconds of the ``ok`` rows, with the number of draws."""
    ok = df[df["status"] == "ok"]
    values = ["mse_rel", "bias2_rel", "variance_rel", "bias2_debiased_rel", "oracle_calls", "time_s"]
    grouped = ok.groupby([*CURVE, "t", "k"], dropna=False)
    return grouped[values].median().join(grouped.size().rename("draws")).reset_index()


def summary_text(df: pd.DataFrame) -> str:
    """The medians (``medians``) as a markdown table, 3 significant digits."""
    table = medians(df)
    if table.empty:
        return "no row is ok"
    cols = ["estimator", "batch", "t", "k", "mse_rel", "bias2_rel", "variance_rel", "bias2_debiased_rel", "oracle_calls", "time_s", "draws"]

    def cell(v) -> str:
        if isinstance(v, float):
            return "—" if math.isnan(v) else f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(row[c]) for c in cols) + " |" for _, row in table[cols].iterrows()]
    return "\n".join(lines)


def plot_stochastic(df: pd.DataFrame, out_dir: Path, stem: str = "stochastic_vs_oracles") -> list[Path]:
    """Three panels (MSE, bias², variance, each / ‖∇f‖²) against the oracle calls of one
    repetition. One curve per estimator (colour) and batch size (line style), and per problem
    and setting where the rows hold several: the medians over λ draws at t > 0 with, at each t,
    the largest k of the grid (k is None for estimators without a solver), in order of t. Values
    below FLOOR (a full batch's variance, 0 up to round-off) are drawn at FLOOR. The table of
    every grid point (``summary_text``) is written beside it, as ``stem``'s stochastic_summary.md."""
    write_text_atomic(Path(out_dir) / "stochastic_summary.md", f"# mode=stochastic: medians over λ draws\n\n{summary_text(df)}\n")
    table = medians(df)
    table = table[table["t"] > 0]
    if table.empty:
        raise ValueError("no ok row with t > 0 to draw")
    largest = table.groupby([*CURVE, "t"], dropna=False)["k"].transform("max")
    table = table[table["k"].isna() | (table["k"] == largest)]
    fig, axes = canvas.subplots(1, len(PANELS), 4.2, 3.4)
    axes = list(axes.flat)
    several = table[["problem", "setting_id"]].drop_duplicates().shape[0] > 1
    colours = palette(sorted(table["estimator"].unique()))
    batches = sorted(table["batch"].unique())
    for (problem, setting, estimator, batch, outer, replace), curve in table.groupby(CURVE, dropna=False):
        curve = curve.sort_values("t")
        label = f"{estimator}, b = {batch}" + (f", b' = {outer}" if outer != batch else "") + (" (repl.)" if replace else "")
        label = f"{problem} {setting[:6]}: {label}" if several else label
        style = {"color": colours[estimator]["color"], "linestyle": STYLES[batches.index(batch) % len(STYLES)]}
        for ax, (column, _) in zip(axes, PANELS):
            ax.plot(curve["oracle_calls"], curve[column].clip(lower=FLOOR), marker="o", ms=3, label=label, **style)
    for ax, (_, ylabel) in zip(axes, PANELS):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("oracle calls of one repetition")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
    canvas.title(
        fig,
        "Stochastic hypergradients against the certified reference: medians over λ draws of R seeded repetitions "
        "(t > 0, the largest k at each t; oracle calls = sample gradients + HVPs + JVPs + outer gradients)",
    )
    canvas.legend(fig)
    return canvas.save(fig, out_dir, stem)
