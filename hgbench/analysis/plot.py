"""Figures drawn from result rows alone (never recomputed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hgbench.analysis import canvas
from hgbench.analysis.canvas import FONT, PREDICTED_LABEL
from hgbench.analysis.results import labels, load, markdown, panel_rows, panels, write_text_atomic
from hgbench.analysis.outer_loop import load_outer, plot_outer, plot_training
from hgbench.analysis.bilevel import load_bilevel, plot_bilevel
from hgbench.analysis.stochastic import load_stochastic, plot_stochastic
from hgbench.analysis.style import estimator_style, palette  # noqa: F401 (public: every figure's palette)
from hgbench.analysis.theory import (
    COLUMNS as RATE_COLUMNS,
    attach_constants,
    bounds_of,
    declared,
    floor_for,
    load_constants,
    overlay,
    rate_table,
)
from hgbench.problems.bounds import bound

BAND = (0.25, 0.75)
FLOOR = 1e-18  # errors of exactly 0 still show on a log axis
CUT = 0.7  # an x axis is cut where every curve has reached round-off, when that is before this share of it


def _finish(ax, xlabel: str, ylabel: str | None = "relative error ‖ĝ − ∇f‖ / ‖∇f‖", title: str | None = None) -> None:
    """Log y axis, labels, grid, and the panel's title (its problem and grid kind)."""
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.grid(True, which="major", alpha=0.3)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title, fontsize=FONT + 1, loc="left")


def _grid(n: int, cols: int, width: float, height: float):
    """A figure of ``n`` panels in rows of ``cols`` (fewer when n is smaller): the figure and the n
    axes in reading order; the unused places of the last row are removed."""
    cols = max(1, min(cols, n))
    fig, axes = canvas.subplots(-(-n // cols), cols, width, height)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.remove()
    return fig, flat[:n]


def _inner_labels(axes) -> None:
    """The y label only on the first panel of each row: the panels of a row share it."""
    for ax in axes:
        if ax.get_subplotspec().colspan.start:
            ax.set_ylabel("")


def _columns(n_problems: int, per_problem: int) -> int:
    """Panels per row: a problem's panels side by side, two problems per row where each has at
    most two panels and there are more than two problems (grazzi2020: 2 × 4, not 4 × 2)."""
    return per_problem * (2 if n_problems > 2 and per_problem <= 2 else 1)


ROUNDOFF_LABEL = "round-off (below {floor:g}, not fitted)"  # the shaded band of the error figure


def _roundoff(ax, floor: float, label: str) -> None:
    """Shade the part of a log y axis below ``floor`` (errors there are round-off, not
    convergence; the rate fits leave them out), keep the axis from reaching far below it, and
    show the floor itself even where every error lies below it (then they are all round-off)."""
    bottom, top = ax.get_ylim()
    ax.axhspan(FLOOR, floor, color="0.88", zorder=0, lw=0, label=label)
    ax.set_ylim(max(bottom, floor * 1e-5), max(top, floor * 100))


def _cut_x(ax, curves: list[tuple[np.ndarray, np.ndarray]], floor: float, symbol: str) -> None:
    """Cut the x axis where every curve (x, median error) has reached ``floor`` for good, when that
    happens before CUT of the axis: the rest would show only round-off. A note says so."""
    reached = []
    for xs, ys in curves:
        above = np.flatnonzero(~(ys <= floor))
        if len(ys) < 2 or (len(above) and above[-1] == len(ys) - 1):
            return  # a curve ends above round-off: nothing to cut
        reached.append(xs[min(above[-1] + 1, len(xs) - 1)] if len(above) else xs[0])
    low, high = min(xs.min() for xs, _ in curves), max(xs.max() for xs, _ in curves)
    stop = max(reached) + 0.15 * (max(reached) - low)
    if stop < low + CUT * (high - low):
        ax.set_xlim(left=low - 0.02 * (stop - low), right=stop)
        ax.annotate(
            f"round-off up to {symbol} = {high:g} →",
            xy=(0.98, 0.97),
            xycoords="axes fraction",
            ha="right",
            va="top",
            fontsize=FONT - 1,
            color="0.35",
        )


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
    paths = canvas.save(error_figure(df, theory), out_dir, stem)
    if theory:
        paths += _rate_tables(_error_rows(df), out_dir)
    return paths


def _error_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the error figure: roles from the estimators' own names (before curves are
    relabelled), each configuration's label as its estimator, ``ok`` rows only."""
    df = declared(df)
    df = df.assign(estimator=labels(df))
    return df[df["status"] == "ok"] if "status" in df else df


def _roles(df: pd.DataFrame) -> dict:
    """Curve label -> the role its rows declare (for the palette of names that are not shipped)."""
    if "role" not in df:
        return {}
    return dict(zip(df["estimator"].astype(str), df["role"].astype(str)))


def _floor(rows: pd.DataFrame) -> float:
    """The round-off floor of relative errors of these rows: the coarsest of their dtypes'."""
    dtypes = rows["dtype"].dropna().unique() if "dtype" in rows else []
    return max((floor_for(str(d)) for d in dtypes), default=floor_for("float64"))


def error_figure(df: pd.DataFrame, theory: bool = False):
    """Median relative error over λ draws vs iterations, interquartile band; per problem, one
    titled panel per grid kind (several problems' panels share a row, ``_columns``), one curve per
    estimator, or per configuration where several runs of one estimator share a panel (labelled
    by hgbench.analysis.results.labels, e.g. "fp, problem.cond=2"), in the estimator's fixed style
    (hgbench.analysis.style). Estimators without k (ITD) appear in a k panel as a horizontal
    line: their error at that panel's t. Errors below the dtype's round-off floor are shaded, and
    an x axis is cut where every curve has reached it. ``theory``: also each estimator's
    predicted rate, in its colour (hgbench.analysis.theory.overlay). Returns the matplotlib Figure."""
    df = _error_rows(df)
    problems = sorted(df["problem"].unique())
    layout = panels(df)
    if not problems or not layout:
        raise ValueError("no finite result rows to plot")
    estimators = sorted(df["estimator"].unique())
    styles = _styles(estimators, _roles(df))
    cells = [(problem, kind, x, title) for problem in problems for kind, x, title in panels(df[df["problem"] == problem])]
    fig, axes = _grid(len(cells), _columns(len(problems), len(layout)), 3.7, 3.0)
    for ax, (problem, kind, x, title) in zip(axes, cells):
        part = panel_rows(df[df["problem"] == problem], kind, x)
        floor, curves = _floor(part), []
        for name in estimators:
            rows = part[part["estimator"] == name]
            if rows.empty:
                continue
            style = styles[name]
            if x == "k" and rows["k"].isna().all():
                s = _stats(rows, "t").iloc[0]
                ax.axhline(s["median"], color=style["color"], ls=style["ls"], label=name)
                ax.axhspan(s["low"], s["high"], color=style["color"], alpha=0.12, lw=0)
                continue
            s = _stats(rows, x)
            ax.plot(s.index, s["median"], ms=4, label=name, **style)
            ax.fill_between(s.index, s["low"], s["high"], color=style["color"], alpha=0.15, lw=0)
            curves.append((s.index.to_numpy(dtype=float), s["median"].to_numpy()))
        ax.set_yscale("log")
        if theory:
            overlay(ax, part, x, styles, PREDICTED_LABEL)
        _roundoff(ax, floor, ROUNDOFF_LABEL.format(floor=floor))
        if curves:
            _cut_x(ax, curves, floor, x)
        _finish(ax, "inner steps t" if x == "t" else "solver steps k", title=f"{problem}: {title}")
    _inner_labels(axes)
    n_draws = df.groupby("problem")["lam_id"].nunique().max()
    canvas.title(fig, f"Hypergradient error: median over {n_draws} λ draws, band = {int(BAND[0] * 100)}–{int(BAND[1] * 100)}% quantiles")
    canvas.legend(fig)
    return fig


def _rate_tables(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    table = rate_table(df)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    paths = [Path(out_dir) / "rates.csv", Path(out_dir) / "rates.md"]
    write_text_atomic(paths[0], table.to_csv(index=False))
    write_text_atomic(paths[1], markdown(table[RATE_COLUMNS]))
    return paths


def _styles(names, roles: dict | None = None) -> dict:
    """The style of every curve label: hgbench.analysis.style.palette (a fixed colour and marker
    per estimator, in every figure)."""
    return palette(names, roles)


COSTS = {
    "time_s": "wall time per estimate (s)",
    "ops": "VJP-equivalents (VJPs + JVPs + Φ evaluations, one each)",
}


def _front(rows: pd.DataFrame, cost: str) -> pd.DataFrame:
    """The Pareto front of (cost, err_rel) points: sorted by cost, each point that is more
    accurate than every cheaper one."""
    rows = rows.sort_values([cost, "err_rel"])
    return rows[rows["err_rel"] < rows["err_rel"].cummin().shift(fill_value=np.inf)]


def plot_cost(df: pd.DataFrame, out_dir: Path, stem: str = "error_vs_cost") -> list[Path]:
    """Accuracy per unit of cost: for every grid point, the median relative error over λ draws
    against the median cost of computing that point from scratch, one panel per cost measure
    (time, VJP-equivalents) and per problem, both axes logarithmic (points of zero cost, t = k = 0,
    have no place there and are left out). Faint markers are grid points; the thin step line is
    each estimator's (each configuration's, as in ``plot_errors``) Pareto front (the lowest error
    reached at no more cost); the thick line under them is the front of all estimators together,
    coloured by the estimator that owns it: the winner at each budget."""
    missing = {"n_phi", "n_vjp", "n_jvp"} - set(df.columns)
    if missing:
        raise ValueError(f"these results lack the cost columns {sorted(missing)}; rerun them with this version")
    df = declared(df)
    df = df.assign(estimator=labels(df), ops=df["n_phi"] + df["n_vjp"] + df["n_jvp"])[df["status"] == "ok"]
    keys = ["problem", "estimator", "grid", "t", "k"]
    med = df.groupby(keys, dropna=False)[["err_rel", *COSTS]].median().reset_index()
    med["err_rel"] = med["err_rel"].clip(lower=FLOOR)
    problems = sorted(med["problem"].unique())
    styles = _styles(med["estimator"].unique(), _roles(df))
    cells = [(problem, cost, label) for problem in problems for cost, label in COSTS.items()]
    fig, axes = _grid(len(cells), _columns(len(problems), len(COSTS)), 4.6, 3.6)
    for ax, (problem, cost, label) in zip(axes, cells):
        part = med[(med["problem"] == problem) & (med[cost] > 0)]
        best = _front(part, cost)
        ax.plot([], [], color="0.5", lw=7, alpha=0.35, label="the best estimator at that budget")
        for i in range(len(best)):  # the winner's segment: from its point to the next winner's cost
            here = best.iloc[i]
            right = best[cost].iloc[i + 1] if i + 1 < len(best) else part[cost].max()
            ax.plot(
                [here[cost], right],
                [here["err_rel"]] * 2,
                color=styles[here["estimator"]]["color"],
                lw=7,
                alpha=0.35,
                solid_capstyle="butt",
                zorder=1,
            )
        for name, rows in part.groupby("estimator"):
            style = styles[name]
            front = _front(rows, cost)
            ax.scatter(rows[cost], rows["err_rel"], s=10, color=style["color"], alpha=0.3, marker=style["marker"], zorder=2)
            ax.step(
                front[cost],
                front["err_rel"],
                where="post",
                color=style["color"],
                ls=style["ls"],
                lw=1.3,
                zorder=3,
                marker=style["marker"],
                ms=4,
                label=name,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        _roundoff(ax, _floor(df[df["problem"] == problem]), "round-off")
        _finish(ax, label, title=f"{problem}: {'time' if cost == 'time_s' else 'VJP-equivalents'}")
    _inner_labels(axes)
    canvas.title(fig, "Error vs cost (median over λ draws): each estimator's Pareto front; thick band = the best estimator at each budget")
    canvas.legend(fig)
    return canvas.save(fig, out_dir, stem)


def figure(df: pd.DataFrame, kind: str, out_dir: Path, **options):
    """Figure ``kind`` (a key of KINDS) of the rows ``df``, saved in out_dir as ``plot`` saves it;
    returns the matplotlib Figure, left open."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    with canvas.kept() as saved:
        KINDS[kind][0](df, Path(out_dir), **options)
        return saved[-1]


def plot_inner(df: pd.DataFrame, out_dir: Path, stem: str = "error_vs_inner_error") -> list[Path]:
    """Error vs inner error (Ye et al. 2024), from the rows of grid=inner runs: per problem, the
    mean of log10 err_rel over λ draws at log-spaced inner-error levels (x decreasing), ± one
    standard deviation, one curve per estimator (per configuration, as in ``plot_errors``), its
    fitted slope in the legend (hgbench.analysis.inner_error). Round-off shows as round-off: below
    the fit's floor (inner_error.FLOOR: levels there are not fitted) the axis is shaded, no band is
    drawn, and a curve without a slope says why (at round-off, or too few levels above it).
    Prints the slopes and writes them next to the figure as slopes.csv and slopes.md."""
    from hgbench.analysis.inner_error import FIT_BELOW, FLOOR as ROUNDOFF, on_levels, slope_table, slopes

    df = df.assign(estimator=labels(df))[df["grid"].isin(["inner", "levels"])]
    if df.empty:
        raise ValueError("no rows of a grid=inner or grid=levels run to plot (e.g. +experiment=ye2024_logistic or ye2024_fig3a)")
    fixed = bool(df["grid"].eq("levels").all())  # Ye et al.'s protocol: absolute errors, mean ± std
    stats = on_levels(df)
    fitted = slopes(stats)
    problems = sorted(stats["problem"].unique())
    styles = _styles(stats["estimator"].unique(), _roles(declared(df)))
    fig, axes = _grid(len(problems), 3 if len(problems) != 4 else 2, 5.0, 4.0)
    for ax, problem in zip(axes, problems):
        for name, part in stats[stats["problem"] == problem].groupby("estimator"):
            slope = fitted.loc[(fitted["problem"] == problem) & (fitted["estimator"] == name), "slope"].iloc[0]
            mean = 10 ** part["mean_log10"]
            above = mean > ROUNDOFF
            if np.isfinite(slope):
                note = f"slope {slope:.2f}"
            else:
                note = "at round-off" if not above[part["level"] <= FIT_BELOW].any() else "too few levels to fit"
            style = styles[name]
            ax.plot(part["level"], mean, ms=3, markevery=max(1, len(part) // 12), label=f"{name}: {note}", **style)
            ax.fill_between(part["level"], part["low"].where(above), part["high"].where(above), color=style["color"], alpha=0.15, lw=0)
        ax.axvline(FIT_BELOW, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.invert_xaxis()
        _roundoff(ax, ROUNDOFF, "round-off")
        if fixed:
            _finish(ax, "inner error ‖w − w*‖ (decreasing)", "absolute error ‖ĝ − ∇f‖", title=problem)
        else:
            _finish(ax, "inner error ‖w_t − w*‖ / ‖w*‖ (decreasing)", title=problem)
        # per panel, below it: the fitted slopes differ between problems
        ax.legend(fontsize=FONT - 0.5, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=2, handlelength=3)
    n_draws = int(stats["n_draws"].max())
    canvas.title(
        fig,
        f"Absolute error vs inner error: mean ± std over {n_draws} draws;\nslopes fitted right of the dotted line, "
        f"above the shaded round-off"
        if fixed
        else f"Error vs inner error: mean ± std of log10 over {n_draws} λ draws;\nslopes fitted right of the dotted line, "
        f"above the shaded round-off",
    )
    paths = canvas.save(fig, out_dir, stem)
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
        raise FileNotFoundError(
            f"no bounds.csv in {folder}: `hgbench reproduce` writes it for the presets whose problems "
            "have closed-form constants (ridge, kernel_ridge, meta_learning)"
        )
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
    have = have.assign(
        bound=[bound(role, t, kk, c) for role, t, kk, c in zip(have["role"], have["t"].astype(float), k, constants.to_dict("records"))]
    )
    problems = sorted(have["problem"].unique())
    styles = _styles(sorted(have["role"].unique()))
    fig, axes = _grid(len(problems), 3, 4.4, 4.0)
    for ax, problem in zip(axes, problems):
        part = have[have["problem"] == problem]
        for role, rows in part.groupby("role"):
            ax.scatter(
                rows["bound"].clip(lower=FLOOR),
                rows["err_abs"].clip(lower=FLOOR),
                s=7,
                alpha=0.5,
                label=role,
                color=styles[role]["color"],
                marker=styles[role]["marker"],
            )
        ends = [FLOOR, 10 * max(part["bound"].max(), part["err_abs"].max())]
        ax.plot(ends, ends, color="0.3", lw=1, ls="--", label="error = bound")
        ax.set_xscale("log")
        ax.set_xlim(*ends)
        ax.set_ylim(*ends)
        _finish(ax, "bound (c₁, c₂, c₃ in closed form, global q)", "absolute error ‖ĝ − ∇f‖", title=problem)
    canvas.title(fig, "Error against Grazzi et al.'s bound, every λ draw and (t, k)")
    canvas.legend(fig)
    return canvas.save(fig, out_dir, stem)


def announced(path: Path) -> str:
    """How a written file is announced on the console: "figure" (PNG, PDF) or "table" (CSV, Markdown)."""
    return "figure" if Path(path).suffix in (".png", ".pdf", ".svg") else "table"


# figure kind -> (its function, the loader of the rows it is drawn from)
KINDS = {
    "error": (plot_errors, load),
    "cost": (plot_cost, load),
    "inner": (plot_inner, load),
    "outer": (plot_outer, load_outer),
    "train": (plot_training, load_outer),
    "bound": (plot_bound, load_with_constants),
    "stochastic": (plot_stochastic, load_stochastic),
    "bilevel": (plot_bilevel, load_bilevel),
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
