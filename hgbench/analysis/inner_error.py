"""Hypergradient error against inner error (Ye, Peyré, Cremers, Ablin, AISTATS 2024, §5), from
result rows alone.

Rows of a ``grid=inner`` run hold, per λ draw, estimates at the exact inner iterates w_t with
their inner errors e_t = ‖w_t − w*‖/‖w*‖ (the ``inner_err`` column). Per draw, log10 err_rel is
interpolated linearly in log10 e between consecutive iterates onto a common log grid of inner
error levels (the paper interpolates its estimates the same way); the levels span the range every
draw of the problem covers. Across draws: the mean and standard deviation of log10 err_rel
(geometric mean, multiplicative band). Both axes are relative errors; the paper plots absolute
ones, which differ per draw by the constant factors ‖w*‖ and ‖∇f‖ and so have the same slopes.

Rows of a ``grid=levels`` run (Ye et al.'s protocol, hgbench.running.levels) are already on
fixed absolute inner-error levels ‖w − w*‖ (the ``level`` column), with the estimates
interpolated there: they are aggregated as the authors do, the arithmetic mean and standard
deviation of err_abs over λ draws at each level, the band mean ± std (its lower end clipped
above 0 on the log axis), and levels and errors are absolute.

The fitted slope is the least-squares slope of the mean log10 error against log10 e, over the
levels at or below ``fit_below`` (default 1e-1: far from w* the asymptotic rate has not set in)
whose mean error is above ``floor`` (default 1e-12: round-off, e.g. Newton-preconditioned
estimates on a quadratic inner problem are exact up to it). ≈ 1: error linear in the inner
error; ≈ 2: quadratic ("super-efficient"). Fewer than 3 such levels: no slope (NaN).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

N_LEVELS = 25
FLOOR = 1e-12
FIT_BELOW = 1e-1
_TINY = 1e-18  # an exact zero (bitwise agreement with the reference) counts as round-off


def usable(df: pd.DataFrame) -> pd.DataFrame:
    """Finite, ok rows with a positive inner error (the point w* itself has no place on a log axis)."""
    ok = df["status"].eq("ok") if "status" in df else True
    keep = df[ok & np.isfinite(df["err_rel"]) & (df["inner_err"] > 0)]
    return keep.sort_values(["problem", "estimator", "lam_id", "inner_err"])


def on_fixed_levels(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of grid=levels runs: the arithmetic mean and std (ddof 0) of err_abs over λ draws at
    each ``level`` (module docstring); columns as ``on_levels``."""
    stats = rows.groupby(["problem", "estimator", "level"])["err_abs"].agg(["mean", "std", "count"]).reset_index()
    stats["std"] = rows.groupby(["problem", "estimator", "level"])["err_abs"].std(ddof=0).to_numpy()
    mean = np.maximum(stats["mean"], _TINY)
    return pd.DataFrame(
        {
            "problem": stats["problem"],
            "estimator": stats["estimator"],
            "level": stats["level"],
            "mean_log10": np.log10(mean),
            "std_log10": np.nan,
            "n_draws": stats["count"],
            "low": np.maximum(stats["mean"] - stats["std"], mean / 1e3),
            "high": stats["mean"] + stats["std"],
        }
    )


def on_levels(df: pd.DataFrame, n_levels: int = N_LEVELS) -> pd.DataFrame:
    """Mean and std over λ draws of log10 err_rel at each inner-error level: columns problem,
    estimator, level, mean_log10, std_log10, n_draws, and the band low/high (10^(mean ± std)).
    Rows of grid=levels runs are aggregated by ``on_fixed_levels`` instead."""
    out = []
    rows = usable(df)
    if rows.empty:
        raise ValueError("no finite rows with a positive inner error; is this a grid=inner or grid=levels run?")
    fixed = rows["grid"].eq("levels") if "grid" in rows else pd.Series(False, index=rows.index)
    if fixed.all():
        return on_fixed_levels(rows)
    if fixed.any():
        raise ValueError("rows of grid=levels and of other grids: analyse them apart")
    for problem, part in rows.groupby("problem", sort=True):
        curves = part.groupby(["estimator", "lam_id"])["inner_err"]
        low, high = curves.min().max(), curves.max().min()
        if not low < high:
            raise ValueError(f"problem {problem}: the λ draws' inner-error ranges do not overlap")
        levels = np.geomspace(high, low, n_levels)
        for (estimator, lam_id), curve in part.groupby(["estimator", "lam_id"]):
            x = np.log10(curve["inner_err"].to_numpy())
            y = np.log10(np.maximum(curve["err_rel"].to_numpy(), _TINY))
            y_at = np.interp(np.log10(levels), x, y)
            out.append(pd.DataFrame({"problem": problem, "estimator": estimator, "lam_id": lam_id, "level": levels, "log10": y_at}))
    per_draw = pd.concat(out, ignore_index=True)
    stats = per_draw.groupby(["problem", "estimator", "level"])["log10"].agg(["mean", "std", "count"]).reset_index()
    stats = stats.rename(columns={"mean": "mean_log10", "std": "std_log10", "count": "n_draws"})
    spread = stats["std_log10"].fillna(0)
    return stats.assign(low=10 ** (stats["mean_log10"] - spread), high=10 ** (stats["mean_log10"] + spread))


def slopes(stats: pd.DataFrame, floor: float = FLOOR, fit_below: float = FIT_BELOW) -> pd.DataFrame:
    """Per (problem, estimator): slope and constant C of err ≈ C·eˢˡᵒᵖᵉ fitted on the mean curve
    (see the module docstring for the levels used), n_levels, and the fitted inner-error range."""
    out = []
    for (problem, estimator), part in stats.groupby(["problem", "estimator"], sort=True):
        fit = part[(part["level"] <= fit_below * (1 + 1e-12)) & (part["mean_log10"] >= np.log10(floor))]
        slope = constant = np.nan
        if len(fit) >= 3:
            slope, intercept = np.polyfit(np.log10(fit["level"]), fit["mean_log10"], 1)
            constant = 10.0**intercept
        out.append(
            {
                "problem": problem,
                "estimator": estimator,
                "slope": slope,
                "constant": constant,
                "n_levels": len(fit),
                "inner_err_from": fit["level"].max() if len(fit) else np.nan,
                "inner_err_to": fit["level"].min() if len(fit) else np.nan,
            }
        )
    return pd.DataFrame(out)


def slope_table(fitted: pd.DataFrame) -> str:
    """Markdown table: one row per estimator, one column per problem, the fitted slopes."""
    table = fitted.pivot(index="estimator", columns="problem", values="slope")
    header = "| estimator | " + " | ".join(table.columns) + " |"
    lines = [header, "|" + "---|" * (len(table.columns) + 1)]
    for name, row in table.iterrows():
        cells = ["n/a" if np.isnan(v) else f"{v:.2f}" for v in row]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
