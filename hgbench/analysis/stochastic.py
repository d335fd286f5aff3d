"""mode=stochastic's rows (stochastic.csv, written by hgbench.running.stochastic_mode): their
columns and key, the summary table, and the figure ``hgbench plot --kind stochastic``: MSE,
bias² and variance (relative to ‖∇f‖²) against oracle calls, one curve per estimator and batch
size, read from the rows alone; and the table at equal oracle budget (``at_budget``)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

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
# one curve each: no row merged across them (run_id: one estimator run with different options, e.g. F2SA's penalty)
CURVE = ["problem", "setting_id", "run_id", "estimator", "batch", "outer_batch", "replace"]
PANELS = [("mse_rel", "MSE / ‖∇f‖²"), ("bias2_rel", "bias² / ‖∇f‖²"), ("variance_rel", "variance / ‖∇f‖²")]
FLOOR = 1e-24  # a variance of 0 up to round-off (the full batch) still shows on a log axis
STYLES = ["-", "--", ":", "-."]  # line style per batch size, in increasing order


def load_stochastic(path: Path) -> pd.DataFrame:
    return load(path, CSV, KEY)


def variant(overrides: str, estimator: str | None = None) -> str:
    """A run's estimator options as its overrides set them (``estimator.penalty=10``; "" for none),
    or the sub-preset that sets them (``+experiment/stochastic_bome=eta_5``: a sweep over options
    that must change together): what tells apart two runs of one estimator in one setting. A
    sub-preset named after the run's ``estimator`` (``+experiment/stochastic_quadratic=saba``: that
    estimator's own steps in a sweep over estimators) says nothing its name does not: left out."""
    items = [item for item in str(overrides).split() if item.startswith(("estimator.", "+experiment/"))]
    return " ".join(item for item in items if not (item.startswith("+experiment/") and item.split("=", 1)[1] == estimator))


def medians(df: pd.DataFrame) -> pd.DataFrame:
    """Per curve (CURVE) and grid point (t, k): the medians over λ draws of the relative
    statistics, oracle calls and seconds of the ``ok`` rows, with the number of draws and the
    run's ``variant``."""
    ok = df[df["status"] == "ok"]
    values = ["mse_rel", "bias2_rel", "variance_rel", "bias2_debiased_rel", "oracle_calls", "time_s"]
    grouped = ok.groupby([*CURVE, "t", "k"], dropna=False)
    table = grouped[values].median().join(grouped.size().rename("draws")).reset_index()
    overrides = ok.groupby("run_id")["overrides"].first() if "overrides" in ok else pd.Series(dtype=str)
    runs = table["run_id"].map(overrides).fillna("")
    table = table.assign(variant=[variant(text, estimator) for text, estimator in zip(runs, table["estimator"])])
    order = ["problem", "setting_id", "estimator", "variant", "batch", "outer_batch", "replace", "run_id", "t", "k"]
    return table.sort_values(order, kind="stable", na_position="first").reset_index(drop=True)


def summary_text(df: pd.DataFrame) -> str:
    """The medians (``medians``) as a markdown table, 3 significant digits."""
    table = medians(df)
    if table.empty:
        return "no row is ok"
    cols = ["estimator", *(["variant"] if table["variant"].any() else []), "batch", "t", "k", "mse_rel", "bias2_rel", "variance_rel"]
    cols += ["bias2_debiased_rel", "oracle_calls", "time_s", "draws"]
    return _markdown(table, cols)


def budgets(table: pd.DataFrame) -> list[float]:
    """The common budgets of ``at_budget``: the powers of 10 from the smallest cost of any curve's
    grid point with t > 0 to the largest (a curve without a point within a budget has an empty row there)."""
    positive = table[table["t"] > 0]["oracle_calls"]
    if positive.empty:
        return []
    return [10.0**j for j in range(math.ceil(math.log10(positive.min())), math.floor(math.log10(positive.max())) + 1)]


def at_budget(df: pd.DataFrame, levels: list[float] | None = None) -> pd.DataFrame:
    """Every curve (CURVE: estimator, batch sizes, sampling, problem and setting; never merged) at
    each common oracle budget B (``levels``; default ``budgets``): its grid point (t > 0) of the
    largest median oracle calls ≤ B — ties (several (t, k) of that cost) broken by the smallest
    median mse_rel — with its medians over λ draws (``medians``). A curve without a point within
    B has a row of NaN statistics (and t, k NaN): every curve appears at every budget."""
    table = medians(df)
    levels = budgets(table) if levels is None else levels
    stats = ["t", "k", "oracle_calls", "mse_rel", "bias2_rel", "variance_rel", "bias2_debiased_rel", "draws"]
    rows = []
    for key, curve in table[table["t"] > 0].groupby([*CURVE, "variant"], dropna=False):
        for level in levels:
            within = curve[curve["oracle_calls"] <= level]
            best = within[within["oracle_calls"] == within["oracle_calls"].max()].nsmallest(1, "mse_rel")
            found = best.iloc[0][stats].to_dict() if len(best) else dict.fromkeys(stats, math.nan)
            rows.append({"budget": level, **dict(zip([*CURVE, "variant"], key)), **found})
    columns = ["budget", *CURVE, "variant", *stats]
    return pd.DataFrame(rows, columns=columns).sort_values(["budget", "problem", "setting_id", "batch", "estimator"], kind="stable")


def _family(estimator: str, variant: str) -> str:
    """A curve family's label for the palette: the estimator, then its options (``base`` reads the head)."""
    return f"{estimator}, {variant}" if variant else estimator


def _markdown(table: pd.DataFrame, cols: list[str]) -> str:
    """``table[cols]`` as a markdown table, floats to 3 significant digits, NaN as —."""

    def cell(v) -> str:
        if isinstance(v, float):
            return "—" if math.isnan(v) else f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(row[c]) for c in cols) + " |" for _, row in table[cols].iterrows()]
    return "\n".join(lines)


def budget_text(df: pd.DataFrame, levels: list[float] | None = None) -> str:
    """``at_budget`` as a markdown table (problem and setting shown where the rows hold several)."""
    table = at_budget(df, levels)
    if table.empty:
        return "no ok row with t > 0"
    several = table[["problem", "setting_id"]].drop_duplicates().shape[0] > 1
    table = table.assign(setting=table["setting_id"].str[:8])
    cols = ["budget", *(["problem", "setting"] if several else []), "estimator", *(["variant"] if table["variant"].any() else [])]
    cols += ["batch", "t", "k", "oracle_calls"]
    cols += ["mse_rel", "bias2_rel", "variance_rel", "bias2_debiased_rel", "draws"]
    return _markdown(table, cols)


def plot_stochastic(df: pd.DataFrame, out_dir: Path, stem: str = "stochastic_vs_oracles") -> list[Path]:
    """Three panels (MSE, bias², variance, each / ‖∇f‖²) against the oracle calls of one
    repetition. One curve per estimator (colour) and batch size (line style), and per problem
    and setting where the rows hold several: the medians over λ draws at t > 0 with, at each t,
    the largest k of the grid (k is None for estimators without a solver), in order of t. Values
    below FLOOR (a full batch's variance, 0 up to round-off) are drawn at FLOOR. The table of
    every grid point (``summary_text``) is written beside it, as stochastic_summary.md, and the
    table at equal oracle budget (``budget_text``) as stochastic_budget.md."""
    from hgbench.analysis import canvas  # matplotlib: imported when a figure is drawn, not by every run

    write_text_atomic(Path(out_dir) / "stochastic_summary.md", f"# mode=stochastic: medians over λ draws\n\n{summary_text(df)}\n")
    write_text_atomic(
        Path(out_dir) / "stochastic_budget.md",
        "# mode=stochastic at equal oracle budget\n\nPer estimator, batch size and problem, at each budget B (the powers of 10 "
        "between the rows' smallest and largest oracle calls at t > 0): its grid point of the largest median oracle calls ≤ B (ties: the smallest "
        "median mse_rel), with the medians over λ draws of its statistics, relative to ‖∇f‖²; — where the curve has "
        "no point within B; a curve whose grid stops below B shows the oracle calls it spent "
        f"(hgbench.analysis.stochastic.at_budget).\n\n{budget_text(df)}\n",
    )
    table = medians(df)
    table = table[table["t"] > 0]
    if table.empty:
        raise ValueError("no ok row with t > 0 to draw")
    largest = table.groupby([*CURVE, "t"], dropna=False)["k"].transform("max")
    table = table[table["k"].isna() | (table["k"] == largest)]
    fig, axes = canvas.subplots(1, len(PANELS), 4.2, 3.4)
    axes = list(axes.flat)
    several = table[["problem", "setting_id"]].drop_duplicates().shape[0] > 1
    # a configuration of an estimator (its variant) keeps the estimator's colour with its own marker
    # (hgbench.analysis.style.palette); line styles tell batch sizes apart, or, with one, the variants
    families = palette({_family(e, v) for e, v in zip(table["estimator"], table["variant"])})
    batches = sorted(table["batch"].unique())
    for (problem, setting, _, estimator, batch, outer, replace, options), curve in table.groupby([*CURVE, "variant"], dropna=False):
        curve = curve.sort_values("t")
        label = (
            f"{estimator}{f' ({options})' if options else ''}, b = {batch}"
            + (f", b' = {outer}" if outer != batch else "")
            + (" (repl.)" if replace else "")
        )
        label = f"{problem} {setting[:6]}: {label}" if several else label
        family = families[_family(estimator, options)]
        line = family["ls"] if len(batches) == 1 else STYLES[batches.index(batch) % len(STYLES)]
        style = {"color": family["color"], "marker": family["marker"], "linestyle": line}
        for ax, (column, _) in zip(axes, PANELS):
            ax.plot(curve["oracle_calls"], curve[column].clip(lower=FLOOR), ms=4, label=label, **style)
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
