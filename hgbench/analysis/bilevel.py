"""mode=bilevel's rows (bilevel.csv, written by hgbench.running.bilevel_mode): their columns and
key, the summary (which solver first reaches ‖∇f‖² ≤ TARGET·‖∇f(λ₀)‖², in oracle calls and in
time; on a problem with metrics, the lowest test error and which solver first comes within
TEST_SLACK of it), and the figures ``hgbench plot --kind bilevel``: ‖∇f(λ_s)‖² / ‖∇f(λ₀)‖²
(bilevel_grad_norm) and, where the rows have test accuracy, the test error 1 − test_acc
(bilevel_test_error), against oracle calls and against time, one line per solver (and per
problem, setting and batch size where the rows hold several), read from the rows alone."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from hgbench.analysis.outer_loop import METRICS
from hgbench.analysis.results import load, write_text_atomic
from hgbench.analysis.style import palette

CSV = "bilevel.csv"
ORACLES = ["n_grad", "n_hvp", "n_jvp", "n_outer", "oracle_calls"]
COLUMNS = [
    "run_id",
    "setting_id",
    "overrides",
    "problem",
    "problem_id",
    "solver",
    "seed",
    "batch",
    "outer_batch",
    "replace",
    "dtype",
    "iteration",
    *ORACLES,
    "time_s",
    "ref_time_s",
    "lam_norm",
    "f",
    "grad_norm2",
    "grad_norm2_rel",
    *METRICS,
    "status",
    "reason",
]
KEY = ["run_id", "iteration"]
CURVE = ["problem", "setting_id", "solver", "batch", "outer_batch", "replace"]  # one line each: no row merged across them
TARGET = 1e-6  # the threshold: ‖∇f(λ)‖² ≤ 1e-6 · ‖∇f(λ₀)‖²
AXES = [("oracle_calls", "oracle calls (sample gradients + HVPs + JVPs + outer gradients)"), ("time_s", "time of the algorithm (s)")]
SUMMARY = "bilevel_summary.md"
TEST_SLACK = 0.01  # "first within one point of the lowest test error": the summary's test-error race


def load_bilevel(path: Path) -> pd.DataFrame:
    return load(path, CSV, KEY)


def _cell(value) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.3g}"
    return str(value)


def reached(df: pd.DataFrame, target: float = TARGET) -> pd.DataFrame:
    """Per curve (CURVE): the first evaluated row with grad_norm2_rel ≤ target (its oracle calls
    and time; NaN where none), the best ratio reached and where, the last iteration, the rows
    whose reference was not certified (``error``: near ∇f = 0 the certificate's relative bound
    fails first) and whether the run diverged."""
    out = []
    for key, curve in df.sort_values("iteration").groupby(CURVE, dropna=False):
        evaluated = curve[curve["grad_norm2_rel"].notna()]
        hit = evaluated[evaluated["grad_norm2_rel"] <= target]
        best = evaluated.loc[evaluated["grad_norm2_rel"].idxmin()] if len(evaluated) else None
        first = hit.iloc[0] if len(hit) else None
        scored = curve[curve["test_acc"].notna()]
        lowest = scored.loc[scored["test_acc"].idxmax()] if len(scored) else None
        out.append(
            {
                **dict(zip(CURVE, key)),
                "best_test_error": math.nan if lowest is None else 1.0 - float(lowest["test_acc"]),
                "test_error_at_calls": math.nan if lowest is None else float(lowest["oracle_calls"]),
                "calls_to_target": math.nan if first is None else float(first["oracle_calls"]),
                "time_to_target": math.nan if first is None else float(first["time_s"]),
                "best_ratio": math.nan if best is None else float(best["grad_norm2_rel"]),
                "best_at_calls": math.nan if best is None else float(best["oracle_calls"]),
                "iterations": int(curve["iteration"].max()),
                "uncertified": int((curve["status"] == "error").sum()),
                "diverged": bool((curve["status"] == "diverged").any()),
            }
        )
    return pd.DataFrame(out)


def summary_text(df: pd.DataFrame, target: float = TARGET) -> str:
    """The markdown summary: per solver line, the oracle calls and seconds to ‖∇f‖² ≤ target·‖∇f(λ₀)‖²
    and the best ratio reached; then which line reached it first in oracle calls and in time,
    or that none did, with the best ratio reached."""
    table = reached(df, target)
    cols = [
        "problem",
        "solver",
        "batch",
        "calls_to_target",
        "time_to_target",
        "best_ratio",
        "best_at_calls",
        "iterations",
        "uncertified",
        "diverged",
    ]
    if table["best_test_error"].notna().any():  # a problem with metrics
        cols += ["best_test_error", "test_error_at_calls"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in cols) + " |" for _, row in table[cols].iterrows()]
    lines.append("")
    for problem, rows in table.groupby("problem"):
        lines += _test_error_lines(df[df["problem"] == problem], problem)
        hit = rows.dropna(subset=["calls_to_target"])
        if hit.empty:
            best = rows.loc[rows["best_ratio"].idxmin()] if rows["best_ratio"].notna().any() else None
            tail = "" if best is None else f"; the best ratio reached: {best['best_ratio']:.3g} ({best['solver']}, b = {best['batch']})"
            lines.append(f"- {problem}: none reached ‖∇f‖² ≤ {target:g}·‖∇f(λ₀)‖²{tail}.")
            continue
        calls, secs = hit.loc[hit["calls_to_target"].idxmin()], hit.loc[hit["time_to_target"].idxmin()]
        lines.append(
            f"- {problem}: first to ‖∇f‖² ≤ {target:g}·‖∇f(λ₀)‖² in oracle calls: {calls['solver']} (b = {calls['batch']}, "
            f"{calls['calls_to_target']:.3g} calls); in time: {secs['solver']} (b = {secs['batch']}, {secs['time_to_target']:.3g} s) "
            f"— at the evaluated iterations only ({len(hit)} of {len(rows)} lines reached it)."
        )
    return "\n".join(lines)


def _test_error_lines(df: pd.DataFrame, problem: str) -> list[str]:
    """On rows with test accuracy: the lowest test error 1 − test_acc of any evaluated row, and
    which line first comes within TEST_SLACK of it in oracle calls and in time (its first such
    evaluated row); no line where the rows have no test accuracy."""
    scored = df[df["test_acc"].notna()]
    if scored.empty:
        return []
    low = scored.loc[scored["test_acc"].idxmax()]
    near = scored[1.0 - scored["test_acc"] <= 1.0 - low["test_acc"] + TEST_SLACK]
    calls, secs = near.loc[near["oracle_calls"].idxmin()], near.loc[near["time_s"].idxmin()]
    return [
        f"- {problem}: lowest test error {1.0 - low['test_acc']:.4g} ({low['solver']}, b = {low['batch']}, "
        f"at {low['oracle_calls']:.3g} calls); first within {TEST_SLACK:g} of it in oracle calls: {calls['solver']} "
        f"({calls['oracle_calls']:.3g} calls, test error {1.0 - calls['test_acc']:.4g}); in time: {secs['solver']} "
        f"({secs['time_s']:.3g} s, test error {1.0 - secs['test_acc']:.4g}) — at the evaluated iterations only."
    ]


def plot_bilevel(df: pd.DataFrame, out_dir: Path, stem: str = "bilevel_grad_norm") -> list[Path]:
    """Two panels: ‖∇f(λ_s)‖² / ‖∇f(λ₀)‖² (exact, from the certified reference) against oracle
    calls and against the algorithm's time, log–log, one line per curve (CURVE), at its evaluated
    iterations; a line ending in a diverged row ends with an ×. Where the rows have test
    accuracy (a problem with metrics), the same two panels of the test error 1 − test_acc
    (``stem`` with _grad_norm replaced by _test_error). The summary (``summary_text``) is written
    beside them as bilevel_summary.md."""
    write_text_atomic(Path(out_dir) / SUMMARY, f"# mode=bilevel: ‖∇f‖² ≤ {TARGET:g}·‖∇f(λ₀)‖²\n\n{summary_text(df)}\n")
    rows = df[df["grad_norm2_rel"].notna()]
    if rows.empty:
        raise ValueError("no evaluated row (grad_norm2_rel) to draw")
    paths = _panels(
        df,
        rows,
        "grad_norm2_rel",
        "‖∇f(λ)‖² / ‖∇f(λ₀)‖²",
        TARGET,
        out_dir,
        stem,
        (
            "Stochastic bilevel solvers end to end: exact ‖∇f(λ_s)‖² from the certified float64 reference "
            f"(dotted: {TARGET:g}; × a diverged run)"
        ),
    )
    scored = df[df["test_acc"].notna()].assign(test_error=lambda d: 1.0 - d["test_acc"])
    if len(scored):
        paths += _panels(
            df,
            scored,
            "test_error",
            "test error (1 − test accuracy)",
            None,
            out_dir,
            stem.replace("_grad_norm", "") + "_test_error",
            "Stochastic bilevel solvers end to end: test error of the model at λ_s (hyper_cleaning: the classifier w*(λ_s); × a diverged run)",
        )
    return paths


def _panels(df: pd.DataFrame, rows: pd.DataFrame, y: str, ylabel: str, target, out_dir: Path, stem: str, title: str) -> list[Path]:
    """``y`` of ``rows`` against each of AXES, log–log, one line per curve (CURVE); ``df`` (all
    rows) says which curves ended diverged; a dotted line at ``target`` unless None."""
    from hgbench.analysis import canvas  # matplotlib: imported when a figure is drawn, not by every run

    fig, axes = canvas.subplots(1, len(AXES), 4.6, 3.6)
    axes = list(axes.flat)
    # the solver's name alone where it names one line (a preset may give each solver its own setting, e.g. its eval_every)
    several = rows[CURVE].drop_duplicates().shape[0] > rows["solver"].nunique()
    colours = palette(sorted(rows["solver"].unique()))
    for (problem, setting, solver, batch, outer, replace), curve in rows.sort_values("iteration").groupby(CURVE, dropna=False):
        label = f"{problem} {setting[:6]} b = {batch}: {solver}" if several else solver
        ended = df[(df["setting_id"] == setting) & (df["solver"] == solver) & (df["batch"] == batch)]["status"].iloc[-1]
        # x = 0 at λ₀ has no place on a log axis: the first point drawn is the first evaluated after it
        for ax, (x, _) in zip(axes, AXES):
            shown = curve[curve[x] > 0]
            # colour, marker and line style: more solvers than colours (twelve on solvers_quadratic) stay told apart
            ax.plot(shown[x], shown[y], ms=2.5, label=label, **colours[solver])
            if ended == "diverged" and len(shown):
                ax.plot(shown[x].iloc[-1:], shown[y].iloc[-1:], marker="x", ms=8, color=colours[solver]["color"])
    for ax, (_, xlabel) in zip(axes, AXES):
        ax.set_xscale("log")
        ax.set_yscale("log")
        if target is not None:
            ax.axhline(target, color="0.5", linestyle=":", linewidth=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
    canvas.title(fig, title)
    canvas.legend(fig)
    return canvas.save(fig, out_dir, stem)
