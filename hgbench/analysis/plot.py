"""Figures drawn from result rows alone (never recomputed)."""

from __future__ import annotations

import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from hgbench.analysis.results import atomic, labels, load, markdown, panel_rows, panels, write_text_atomic  # noqa: E402
from hgbench.analysis.outer import load_outer, plot_outer, plot_training  # noqa: E402
from hgbench.analysis.theory import COLUMNS as RATE_COLUMNS, attach_constants, bounds_of, declared, load_constants, overlay, rate_table  # noqa: E402
from hgbench.problems.bounds import bound  # noqa: E402

BAND = (0.25, 0.75)
FLOOR = 1e-18  # errors of exactly 0 still show on a log axis


def _finish(ax, xlabel: str, problem: str | None, ylabel: str = "relative error ‖ĝ − ∇f‖ / ‖∇f‖") -> None:
    """Log y axis, labels, grid; the problem's name heads the y label of a row's first panel."""
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.grid(True, which="major", alpha=0.3)
    if problem is not None:
        ax.set_ylabel(f"{problem}\n{ylabel}")


def _figure(rows: int, cols: int, width: float, height: float):
    """A figure of rows × cols panels with constrained layout, which keeps the title, the axis
    labels and a legend outside the axes inside the figure."""
    return plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")


def _title(fig, text: str) -> None:
    """The figure's title, aligned left over the panels, clear of the legend on the right."""
    fig.suptitle(text, x=0.01, ha="left", fontsize=11)


LEGEND_ROW = 0.2  # inches per legend entry at font size 8
LEGEND_CHAR = 0.06  # inches per character of a label, about


def _legend(fig) -> None:
    """One legend for the whole figure, outside the axes on the right: every label once, in the
    order first drawn, in as many columns as keep it no taller than the panels; the figure is
    widened by the legend's width so that the panels keep theirs."""
    entries = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if not entries:
        return
    width, height = fig.get_size_inches()
    rows = max(3, int((height - 1.2) / LEGEND_ROW))
    ncols = -(-len(entries) // rows)
    fig.set_size_inches(width + ncols * (0.7 + LEGEND_CHAR * max(map(len, entries))), height)
    fig.legend(entries.values(), entries.keys(), loc="outside right upper", fontsize=8, ncols=ncols)


def _stats(rows: pd.DataFrame, x: str) -> pd.DataFrame:
    err = rows["err_rel"].where(np.isfinite(rows["err_rel"])).clip(lower=FLOOR)
    grouped = err.groupby(rows[x])
    return pd.DataFrame({"median": grouped.median(), "low": grouped.quantile(BAND[0]), "high": grouped.quantile(BAND[1])})


def plot_errors(df: pd.DataFrame, out_dir: Path, stem: str = "error_vs_iterations", theory: bool = False) -> list[Path]:
    """``error_figure`` saved in out_dir (``stem``.png and .pdf); with ``theory``, also the
    fitted-vs-predicted rate table next to it (rates.csv, rates.md). Rows of grid=levels runs
    have no iteration axis: their figure is ``plot_inner``'s."""
    if "grid" in df and len(df) and df["grid"].eq("levels").all():
        return plot_inner(df, out_dir)
    paths = _save(error_figure(df, theory), out_dir, stem)
    if theory:
        paths += _rate_tables(_error_rows(df), out_dir)
    return paths


def _error_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the error figure: roles from the estimators' own names (before curves are
    relabelled), each configuration's label as its estimator, ``ok`` rows only."""
    df = declared(df)
    df = df.assign(estimator=labels(df))
    return df[df["status"] == "ok"] if "status" in df else df


def error_figure(df: pd.DataFrame, theory: bool = False):
    """Median relative error over λ draws vs iterations, interquartile band; one row of panels
    per problem, one panel per grid kind, one curve per estimator, or per configuration where
    several runs of one estimator share a panel (labelled by hgbench.analysis.results.labels,
    e.g. "fp, problem.cond=2"). Estimators without k (ITD) appear in a k panel as a horizontal
    line: their error at that panel's t. ``theory``: also the predicted rates as dashed lines
    (hgbench.analysis.theory.overlay). Returns the matplotlib Figure."""
    df = _error_rows(df)
    problems = sorted(df["problem"].unique())
    layout = panels(df)
    if not problems or not layout:
        raise ValueError("no finite result rows to plot")
    estimators = sorted(df["estimator"].unique())
    styles = _styles(estimators)
    fig, axes = _figure(len(problems), len(layout), 4.6, 3.6)
    for row, problem in enumerate(problems):
        for col, (kind, x, title) in enumerate(layout):
            ax = axes[row][col]
            part = panel_rows(df[df["problem"] == problem], kind, x)
            for name in estimators:
                rows = part[part["estimator"] == name]
                if rows.empty:
                    continue
                style = styles[name]
                if x == "k" and rows["k"].isna().all():
                    s = _stats(rows, "t").iloc[0]
                    ax.axhline(s["median"], color=style["color"], ls=style["ls"], label=name)
                    ax.axhspan(s["low"], s["high"], color=style["color"], alpha=0.12)
                    continue
                s = _stats(rows, x)
                ax.plot(s.index, s["median"], ms=3, label=name, **style)
                ax.fill_between(s.index, s["low"], s["high"], color=style["color"], alpha=0.2, lw=0)
            if theory:
                overlay(ax, part, x)
            _finish(ax, title, problem if col == 0 else None)
    n_draws = df.groupby("problem")["lam_id"].nunique().max()
    _legend(fig)
    _title(fig, f"Hypergradient error: median over {n_draws} λ draws,\nband = {int(BAND[0]*100)}–{int(BAND[1]*100)}% quantiles")
    return fig


def _rate_tables(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    table = rate_table(df)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    paths = [Path(out_dir) / "rates.csv", Path(out_dir) / "rates.md"]
    write_text_atomic(paths[0], table.to_csv(index=False))
    write_text_atomic(paths[1], markdown(table[RATE_COLUMNS]))
    return paths


MARKERS = "os^vDPX*<>hp"
LINES = ("-", "--", "-.", ":")
COLOURS = 20  # tab20: ten dark colours, then their ten light companions
N_STYLES = 60  # (colour, marker) pairs repeat only after lcm(20, 12) styles


def style(i: int) -> dict:
    """Style number i: colour i mod 20 (tab20's dark colours first), a marker that changes with
    every step, and a line style that also changes between styles of one colour."""
    colour = i % COLOURS
    return dict(
        color=plt.cm.tab20((2 * colour) % COLOURS + colour // 10), marker=MARKERS[i % len(MARKERS)],
        ls=LINES[(i + i // COLOURS) % len(LINES)],
    )  # fmt: skip


def _styles(names) -> dict:
    """A distinct style (colour, marker, line style) per name, chosen by the name itself: its
    colour is crc32(name) mod 20, or the next colour no other name of the figure has; once all
    20 colours are taken, the same colours with other markers and line styles. So an estimator
    keeps its style across figures, up to 20 names have 20 different colours, and curves that
    coincide (itd and itd_forward compute the same number) stay distinguishable."""
    taken, out = set(), {}
    for name in sorted(names):
        start = zlib.crc32(name.encode()) % COLOURS
        order = (cycle * COLOURS + (start + k) % COLOURS for cycle in range(N_STYLES // COLOURS) for k in range(COLOURS))
        i = next((i for i in order if i not in taken), len(taken))
        taken.add(i)
        out[name] = style(i)
    return out


COSTS = {
    "time_s": "wall time per estimate (s)",
    "ops": "VJP-equivalents (VJPs + JVPs + Φ evaluations, one each)",
}


def plot_cost(df: pd.DataFrame, out_dir: Path, stem: str = "error_vs_cost") -> list[Path]:
    """Accuracy per unit of cost: for every grid point, the median relative error over λ draws
    against the median cost of computing that point from scratch, one panel per cost measure
    (time, VJP-equivalents) and per problem. Dots are grid points; the line is each estimator's
    (each configuration's, as in ``plot_errors``) Pareto front (the lowest error reached at no
    more cost)."""
    missing = {"n_phi", "n_vjp", "n_jvp"} - set(df.columns)
    if missing:
        raise ValueError(f"these results lack the cost columns {sorted(missing)}; rerun them with this version")
    df = df.assign(estimator=labels(df), ops=df["n_phi"] + df["n_vjp"] + df["n_jvp"])[df["status"] == "ok"]
    keys = ["problem", "estimator", "grid", "t", "k"]
    med = df.groupby(keys, dropna=False)[["err_rel", *COSTS]].median().reset_index()
    med["err_rel"] = med["err_rel"].clip(lower=FLOOR)
    problems = sorted(med["problem"].unique())
    styles = _styles(med["estimator"].unique())
    fig, axes = _figure(len(problems), len(COSTS), 5.2, 3.8)
    for row, problem in enumerate(problems):
        for col, (cost, label) in enumerate(COSTS.items()):
            ax = axes[row][col]
            part = med[med["problem"] == problem]
            for name, rows in part.groupby("estimator"):
                style = styles[name]
                rows = rows.sort_values(cost)
                front = rows[rows["err_rel"] <= rows["err_rel"].cummin()]
                ax.scatter(rows[cost], rows["err_rel"], s=8, color=style["color"], alpha=0.35, marker=style["marker"])
                ax.step(front[cost], front["err_rel"], where="post", color=style["color"], ls=style["ls"], label=name)
            ax.set_xscale("log" if cost == "time_s" else "symlog")
            _finish(ax, label, problem if col == 0 else None)
    _legend(fig)
    _title(fig, "Error vs cost: grid points (median over λ draws) and each estimator's Pareto front")
    return _save(fig, out_dir, stem)


def _save(fig, out_dir: Path, stem: str, close: bool = True) -> list[Path]:
    """The figure as out_dir/``stem``.png and .pdf, each through a temporary file
    (hgbench.analysis.results.atomic: a link in its place is replaced, never written through);
    closed afterwards unless ``close`` is false."""
    paths = [Path(out_dir) / f"{stem}.png", Path(out_dir) / f"{stem}.pdf"]
    for path in paths:
        with atomic(path) as tmp:
            fig.savefig(tmp, dpi=130, bbox_inches="tight", format=path.suffix[1:])
    if close:
        plt.close(fig)
    return paths


def plot_inner(df: pd.DataFrame, out_dir: Path, stem: str = "error_vs_inner_error") -> list[Path]:
    """Error vs inner error (Ye et al. 2024), from the rows of grid=inner runs: per problem, the
    mean of log10 err_rel over λ draws at log-spaced inner-error levels (x decreasing), ± one
    standard deviation, one curve per estimator (per configuration, as in ``plot_errors``), its
    fitted slope in the legend (hgbench.analysis.inner_error).
    Prints the slopes and writes them next to the figure as slopes.csv and slopes.md."""
    from hgbench.analysis.inner_error import FIT_BELOW, on_levels, slope_table, slopes

    df = df.assign(estimator=labels(df))[df["grid"].isin(["inner", "levels"])]
    if df.empty:
        raise ValueError("no rows of a grid=inner or grid=levels run to plot (e.g. +experiment=ye2024_logistic or ye2024_fig3a)")
    fixed = bool(df["grid"].eq("levels").all())  # Ye et al.'s protocol: absolute errors, mean ± std
    stats = on_levels(df)
    fitted = slopes(stats)
    problems = sorted(stats["problem"].unique())
    styles = _styles(stats["estimator"].unique())
    fig, axes = _figure(1, len(problems), 5.4, 4.2)
    for ax, problem in zip(axes[0], problems):
        for name, part in stats[stats["problem"] == problem].groupby("estimator"):
            slope = fitted.loc[(fitted["problem"] == problem) & (fitted["estimator"] == name), "slope"].iloc[0]
            style = styles[name]
            ax.plot(part["level"], 10 ** part["mean_log10"], ms=3, label=f"{name} ({'n/a' if np.isnan(slope) else f'{slope:.2f}'})", **style)
            ax.fill_between(part["level"], part["low"], part["high"], color=style["color"], alpha=0.15, lw=0)
        ax.axvline(FIT_BELOW, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.invert_xaxis()
        if fixed:
            _finish(ax, "inner error ‖w − w*‖ (decreasing)", problem, "absolute error ‖ĝ − ∇f‖")
        else:
            _finish(ax, "inner error ‖w_t − w*‖ / ‖w*‖ (decreasing)", problem)
        ax.set_title(problem, fontsize=9)
        # per panel, below it: the fitted slopes differ between problems
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2)
    n_draws = int(stats["n_draws"].max())
    _title(fig, f"Absolute error vs inner error: mean ± std over {n_draws} draws (legend: fitted slope)" if fixed
           else f"Error vs inner error: mean ± std of log10 over {n_draws} λ draws (legend: fitted slope)")  # fmt: skip
    paths = _save(fig, out_dir, stem)
    write_text_atomic(Path(out_dir) / "slopes.csv", fitted.to_csv(index=False))
    table = slope_table(fitted)
    write_text_atomic(Path(out_dir) / "slopes.md", table + "\n")
    print("fitted slopes of err_rel vs inner error (≈1 linear, ≈2 quadratic):\n" + table)
    print(f"slopes: {Path(out_dir) / 'slopes.csv'}")
    return paths


def load_with_constants(path: Path) -> pd.DataFrame:
    """The rows of ``load(path)`` with the bounds' constants of the bounds.csv next to them (in the
    folder, or the CSV's folder): hgbench.analysis.theory.attach_constants."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    constants = load_constants(folder)
    if constants is None:
        raise FileNotFoundError(f"no bounds.csv in {folder}: `hgbench reproduce` writes it for the presets whose problems "
                                "have closed-form constants (ridge, kernel_ridge, meta_learning)")  # fmt: skip
    return attach_constants(load(path), constants)


def plot_bound(df: pd.DataFrame, out_dir: Path, stem: str = "error_vs_bound") -> list[Path]:
    """Error against bound (Grazzi et al. 2020): per problem with the bounds' constants
    (hgbench.problems.bounds), every row of role itd, fp or cg as a dot at (its bound with its λ
    draw's constants, its absolute error), on log–log axes, with the line error = bound: every dot
    must lie below it (errors at round-off excepted)."""
    have = bounds_of(declared(df))
    have = have[(have["status"] == "ok") & have["role"].isin(["itd", "fp", "cg"])]
    if have.empty:
        raise ValueError("no itd, fp or cg rows with the bounds' constants to draw")
    constants = have[[c for c in have.columns if c.startswith("b_")]].rename(columns=lambda c: c[2:])
    k = have["k"].astype(float).where(have["k"].notna(), have["t"].astype(float))
    have = have.assign(bound=[bound(role, t, kk, c) for role, t, kk, c in
                              zip(have["role"], have["t"].astype(float), k, constants.to_dict("records"))])  # fmt: skip
    problems = sorted(have["problem"].unique())
    styles = _styles(sorted(have["role"].unique()))
    fig, axes = _figure(1, len(problems), 4.6, 4.2)
    for col, problem in enumerate(problems):
        ax = axes[0][col]
        part = have[have["problem"] == problem]
        for role, rows in part.groupby("role"):
            ax.scatter(rows["bound"].clip(lower=FLOOR), rows["err_abs"].clip(lower=FLOOR), s=7, alpha=0.5, label=role,
                       color=styles[role]["color"], marker=styles[role]["marker"])  # fmt: skip
        ends = [FLOOR, 10 * max(part["bound"].max(), part["err_abs"].max())]
        ax.plot(ends, ends, color="0.3", lw=1, ls="--", label="error = bound")
        ax.set_xscale("log")
        ax.set_xlim(*ends)
        ax.set_ylim(*ends)
        _finish(ax, "bound (c₁, c₂, c₃ in closed form, global q)", problem, "absolute error ‖ĝ − ∇f‖")
    _legend(fig)
    _title(fig, "Error against Grazzi et al.'s bound, every λ draw and (t, k)")
    return _save(fig, out_dir, stem)


# figure kind -> (its function, the loader of the rows it is drawn from)
KINDS = {
    "error": (plot_errors, load), "cost": (plot_cost, load), "inner": (plot_inner, load),
    "outer": (plot_outer, load_outer), "train": (plot_training, load_outer),
    "bound": (plot_bound, load_with_constants),
}


def plot(path: Path, kind: str = "error", out_dir: Path | None = None, **options) -> list[Path]:
    """Draw figure ``kind`` from the CSV at path (or every CSV below it of the kind that figure
    is drawn from: metrics.csv, or outer.csv for ``outer`` and ``train``), next to the data; ``options`` go to
    the figure's function (e.g. theory=True for ``error``)."""
    if kind not in KINDS:
        raise ValueError(f"--kind {kind!r} is not one of {', '.join(KINDS)}")
    path = Path(path)
    draw, load_rows = KINDS[kind]
    df = load_rows(path)
    target = Path(out_dir) if out_dir else (path.parent if path.is_file() else path)
    target.mkdir(parents=True, exist_ok=True)
    return draw(df, target, **options)
