"""Theory next to data: the linear rates Grazzi et al. (2020) predict, and the rates the data show.

For a problem instance with contraction constant q = ‖∂₁Φ(w*, λ)‖₂ and κ = cond(I − ∂₁Φᵀ) (both
measured by the float64 reference, per λ draw, and logged in every row), Grazzi et al. (2020,
Thms. 1–3) bound the errors by

    inner steps t (AID with k large, or k = t; ITD):   c·qᵗ, and c·t·qᵗ for ITD
    solver steps k (t large):   fixed point / Neumann   c·qᵏ
                                CG                      c·pᵏ,  p = (√κ − 1)/(√κ + 1)
                                CG, normal equations    c·p₂ᵏ, p₂ = (κ − 1)/(κ + 1)  (κ² for CG)

so every curve is asymptotically linear on a log scale with a predicted rate (q, p or p₂; ITD's
extra factor t leaves its asymptotic rate q). The fitted rate is exp of the least-squares slope of
log(median err_rel over draws) against the iteration count, over the points whose median lies
between a round-off floor and a ceiling (the pre-asymptotic part), see ``fit_rate``. The
predicted rate uses the medians of q and κ over the draws. Estimators without a known rate in k
(GMRES, JFB, ...) get none: ``RATE_IN_K`` names the roles that have one.

Rows are selected by what they declare, never by name: an estimator's ``role`` (the paper method it
computes; a renamed fp is still role fp) and a problem's ``min_min``; fits never pool two
configurations (``setting_id``) of one problem. ``declared`` supplies these columns for results written
before they existed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hgbench.analysis.results import panel_rows, panels

CEILING = 0.5  # above it, errors are pre-asymptotic (ITD's t·qᵗ rise, the first steps)
MIN_POINTS = 3

COLUMNS = ["problem", "grid", "axis", "estimator", "role", "fitted_rate", "predicted_rate", "predicted_formula", "points_fitted"]
RATE_IN_K = {"fp": "q", "neumann": "q", "cg": "p", "cg_normal": "p2"}  # role -> its predicted rate in k
FORMULAS = {"q": "q", "p": "(√κ−1)/(√κ+1)", "p2": "(κ−1)/(κ+1)"}
# One configuration: rows of different ones are never pooled. setting_id (a hash of the resolved
# configuration less the estimator's options) is shared by the estimators run on one setting, so
# they are compared within it, and differs when any other option does.
CONFIG = ["problem", "setting_id"]
_ROLE_OF_OLD_NAME = {"itd_forward": "itd"}  # every other shipped estimator config is named after its role


def declared(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the columns that rows are selected and grouped by: ``role`` (the paper method
    the estimator computes), ``min_min`` (the outer objective E is the inner loss) and ``setting_id``
    (one configuration; missing values become "").

    Results written before these columns existed lack them. For those only, and only here, they
    are derived from names as the shipped configurations named things: role = the estimator's name
    (itd_forward → itd), min_min = the problem's name ends in ``_inner``, setting_id = "" (all rows of
    a problem are one configuration). A column that is present is used as written."""
    add = {"setting_id": df["setting_id"].fillna("").astype(str) if "setting_id" in df else ""}
    if "role" not in df:
        add["role"] = df["estimator"].map(lambda name: _ROLE_OF_OLD_NAME.get(name, name))
    if "min_min" not in df:
        add["min_min"] = df["problem"].str.endswith("_inner")
    return df.assign(**add)


def floor_for(dtype: str) -> float:
    """Errors below this are round-off, not convergence: 1e-12 in float64, 1e-4 in float32."""
    return 1e-4 if dtype == "float32" else 1e-12


def rates(q: float, kappa: float) -> dict[str, float]:
    """The predicted per-step factors for an instance: q, p and p₂ (see the module docstring)."""
    root = math.sqrt(kappa) if np.isfinite(kappa) else math.nan
    return {"q": q, "p": (root - 1) / (root + 1), "p2": (kappa - 1) / (kappa + 1)}


def fit_rate(x: pd.Series, err: pd.Series, floor: float) -> tuple[float, int]:
    """(exp(slope of log err against x), number of points used) over the points with x > 0 and
    floor < err < CEILING; NaN when fewer than MIN_POINTS remain."""
    keep = (x > 0) & (err > floor) & (err < CEILING) & np.isfinite(err)
    if keep.sum() < MIN_POINTS:
        return math.nan, int(keep.sum())
    slope = np.polyfit(x[keep].astype(float), np.log(err[keep].astype(float)), 1)[0]
    return float(np.exp(slope)), int(keep.sum())


def rate_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (configuration, panel, estimator): the fitted rate against the predicted one.

    A configuration is (problem, setting_id). Panels are those of the error figure
    (hgbench.analysis.plot): an axis t (k = t, or k fixed) or k (t fixed at its largest value). In
    t every estimator's predicted rate is q; in k it is given by its role in ``RATE_IN_K`` (none
    for ITD, which has no k, or for solvers without a rate bound)."""
    df = declared(df)
    df = df[df["status"] == "ok"]
    out = []
    for (problem, setting_id), config in df.groupby(CONFIG, sort=True):
        for kind, x, _ in panels(config):
            part = panel_rows(config, kind, x)
            kappa = part["kappa"].median() if "kappa" in part else math.nan
            predicted_rates = rates(part["q"].median(), kappa)
            for (name, role), rows in part.groupby(["estimator", "role"], dropna=False):
                if rows[x].isna().all():  # ITD in a k panel
                    continue
                med = rows.groupby(x)["err_rel"].median()
                fitted, used = fit_rate(pd.Series(med.index, index=med.index), med, floor_for(rows["dtype"].iloc[0]))
                which = "q" if x == "t" else RATE_IN_K.get(role)
                out.append({
                    "problem": problem, "setting_id": setting_id, "grid": kind, "axis": x, "estimator": name, "role": role,
                    "fitted_rate": fitted, "points_fitted": used,
                    "predicted_rate": predicted_rates[which] if which else math.nan,
                    "predicted_formula": FORMULAS[which] if which else "—",
                    "q": predicted_rates["q"], "kappa": kappa,
                })  # fmt: skip
    return pd.DataFrame(out)


def overlay(ax, part: pd.DataFrame, x: str) -> None:
    """Dashed predicted-rate lines on a panel, anchored at the largest median error at the
    panel's first positive iteration count: qᵗ and t·qᵗ on a t axis, qᵏ and pᵏ on a k axis."""
    part = part[(part["status"] == "ok") & part[x].notna() & (part[x] > 0)]
    if part.empty:
        return
    x0 = part[x].min()
    y0 = part[part[x] == x0].groupby("estimator")["err_rel"].median().max()
    if not np.isfinite(y0) or y0 <= 0:
        return
    r = rates(part["q"].median(), part["kappa"].median() if "kappa" in part else math.nan)
    xs = np.linspace(x0, part[x].max(), 200)
    lines = {f"q^{x}": y0 * r["q"] ** (xs - x0)}
    if x == "t":
        lines["t·q^t"] = y0 * (xs / x0) * r["q"] ** (xs - x0)
    elif np.isfinite(r["p"]):
        lines["p^k, p=(√κ−1)/(√κ+1)"] = y0 * r["p"] ** (xs - x0)
    ax.set_yscale("log")  # before reading the limits: they must be the log axis's
    bottom, top = ax.get_ylim()
    for (label, ys), ls in zip(lines.items(), ("--", ":")):
        ax.plot(xs, ys, color="0.35", ls=ls, lw=1.1, label=f"theory {label}")
    ax.set_ylim(bottom, top)  # the theory lines must not stretch the data's range
