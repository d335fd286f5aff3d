"""Theory next to data: the linear rates Grazzi et al. (2020) predict, and the rates the data show.

Grazzi, Franceschi, Pontil, Salzo, "On the Iteration Complexity of Hypergradient Computation"
(ICML 2020) bound the errors, for Φ(·, λ) a contraction with constant q, by

    inner steps t (AID with k large, or k = t):   c·qᵗ;  ITD:  (c₁ + c₂·t/q + c₃)·qᵗ
    solver steps k (t large):   fixed point / Neumann   c·qᵏ
                                CG                      c·pᵏ,  p = (√κ − 1)/(√κ + 1)
                                CG, normal equations    c·p₂ᵏ, p₂ = (κ − 1)/(κ + 1)  (κ² for CG)

(hgbench.problems.bounds gives the constants in closed form where they are computable).
The theorems' q is a global constant: sup over w of ‖∂₁Φ(w, λ)‖₂. The q used here is the one
every row carries, the LOCAL q = ‖∂₁Φ(w*, λ)‖₂ at the solution (and κ = cond(I − ∂₁Φᵀ) there),
measured by the float64 reference per λ draw; it is the asymptotic rate, and it equals the
global constant where Φ is affine in w (ridge, kernel ridge, biased regularization), where
∂₁Φ does not depend on w. Elsewhere (logistic, hyper-representation, equilibrium models) the
global q is larger, and the figures say "local q".

So every curve is asymptotically linear on a log scale with a predicted rate (q, p or p₂). The
fitted rate is exp of the least-squares slope of log(median err_rel over draws) against the
iteration count — for ITD in t, of log(median err_rel / t), the bound's t·qᵗ with its factor t
taken out — over the points whose median lies between a round-off floor and a ceiling (the
pre-asymptotic part), see ``fit_rate``; ``r2`` is that fit's coefficient of determination. The
predicted rate uses the medians of q and κ over the draws. Estimators without a known rate in k
(GMRES, JFB, ...) get none: ``RATE_IN_K`` names the roles that have one.

Rows are selected by what they declare, never by name: an estimator's ``role`` (the paper method it
computes; a renamed fp is still role fp) and a problem's ``min_min``; fits never pool two
configurations (``setting_id``) of one problem. ``declared`` supplies these columns for results written
before they existed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from hgbench.analysis.results import panel_rows, panels, read_csv
from hgbench.analysis.style import PREDICTED
from hgbench.problems.bounds import NAMES as BOUND_NAMES

CEILING = 0.5  # above it, errors are pre-asymptotic (ITD's t·qᵗ rise, the first steps)
MIN_POINTS = 3

COLUMNS = ["problem", "grid", "axis", "estimator", "role", "fitted_rate", "predicted_rate", "predicted_formula", "points_fitted", "r2"]
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


BOUNDS = "bounds.csv"  # a preset's bounds' constants per λ draw (hgbench reproduce writes it)
BOUND_COLUMNS = [f"b_{name}" for name in BOUND_NAMES]


def attach_constants(df: pd.DataFrame, bounds: pd.DataFrame | None) -> pd.DataFrame:
    """``df`` with the constants of Grazzi et al.'s bounds (hgbench.problems.bounds) of each row's
    λ draw as columns b_q, b_kappa, b_c1, … (NaN where none), from ``bounds`` (rows problem,
    setting_id, lam_id and the constants, as in bounds.csv). Results written before setting_id
    existed are matched on (problem, lam_id) alone."""
    df = declared(df).drop(columns=BOUND_COLUMNS, errors="ignore")
    if bounds is None or bounds.empty:
        return df.assign(**{c: math.nan for c in BOUND_COLUMNS})
    bounds = bounds.rename(columns={name: f"b_{name}" for name in BOUND_NAMES})
    bounds = bounds.assign(setting_id=bounds["setting_id"].fillna("").astype(str))
    on = ["problem", "setting_id", "lam_id"]
    if (df["setting_id"] == "").all():
        on = ["problem", "lam_id"]
    bounds = bounds.drop_duplicates(on)[[*on, *BOUND_COLUMNS]]
    return df.merge(bounds, on=on, how="left")


def load_constants(folder) -> pd.DataFrame | None:
    """The bounds.csv of a results folder, or None. One that is not a readable CSV with the
    columns problem, setting_id, lam_id and every constant, all numeric but the first two,
    raises ValueError naming the file."""
    path = Path(folder) / BOUNDS
    if not os.path.lexists(path):  # a link is refused by read_csv, not taken for a missing file
        return None
    bounds = read_csv(path)
    missing = [c for c in ("problem", "lam_id", *BOUND_NAMES) if c not in bounds]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}; is it a bounds.csv of `hgbench reproduce`?")
    for column in BOUND_NAMES:
        if not pd.api.types.is_numeric_dtype(bounds[column]):
            raise ValueError(f"{path}: column {column} holds a non-number; is it a bounds.csv of `hgbench reproduce`?")
    return bounds


def bounds_of(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``df`` that carry every constant of the bounds (``attach_constants``)."""
    if not set(BOUND_COLUMNS) <= set(df.columns):
        return df.iloc[:0]
    return df[df[BOUND_COLUMNS].notna().all(axis=1)]


def floor_for(dtype: str) -> float:
    """Errors below this are round-off, not convergence: 1e-12 in float64, 1e-4 in float32."""
    return 1e-4 if dtype == "float32" else 1e-12


def rates(q: float, kappa: float) -> dict[str, float]:
    """The predicted per-step factors for an instance: q, p and p₂ (see the module docstring)."""
    root = math.sqrt(kappa) if np.isfinite(kappa) else math.nan
    return {"q": q, "p": (root - 1) / (root + 1), "p2": (kappa - 1) / (kappa + 1)}


def fit_rate(x: pd.Series, err: pd.Series, floor: float, t_factor: bool = False) -> tuple[float, int, float]:
    """(exp(slope of log err against x), number of points used, R² of that fit) over the points
    with x > 0 and floor < err < CEILING; with ``t_factor`` the fit is of log(err/x) (ITD's
    bound t·qᵗ: the rate q without its factor t). NaNs when fewer than MIN_POINTS remain."""
    keep = (x > 0) & (err > floor) & (err < CEILING) & np.isfinite(err)
    if keep.sum() < MIN_POINTS:
        return math.nan, int(keep.sum()), math.nan
    xs = x[keep].astype(float).to_numpy()
    ys = np.log(err[keep].astype(float).to_numpy()) - (np.log(xs) if t_factor else 0.0)
    slope, intercept = np.polyfit(xs, ys, 1)
    spread = ((ys - ys.mean()) ** 2).sum()
    r2 = 1.0 - ((ys - (slope * xs + intercept)) ** 2).sum() / spread if spread > 0 else 1.0
    return float(np.exp(slope)), int(keep.sum()), float(r2)


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
                with_t = x == "t" and role == "itd"  # ITD's bound is t·qᵗ
                fitted, used, r2 = fit_rate(pd.Series(med.index, index=med.index), med, floor_for(rows["dtype"].iloc[0]), with_t)
                which = "q" if x == "t" else RATE_IN_K.get(role)
                out.append(
                    {
                        "problem": problem,
                        "setting_id": setting_id,
                        "grid": kind,
                        "axis": x,
                        "estimator": name,
                        "role": role,
                        "fitted_rate": fitted,
                        "points_fitted": used,
                        "r2": r2,
                        "predicted_rate": predicted_rates[which] if which else math.nan,
                        "predicted_formula": (FORMULAS[which] + (" (fit of err/t)" if with_t else "")) if which else "—",
                        "q": predicted_rates["q"],
                        "kappa": kappa,
                    }
                )
    return pd.DataFrame(out)


def overlay(ax, part: pd.DataFrame, x: str, styles: dict, label: str) -> None:
    """Each estimator's predicted rate on a panel, as a thin dashed line in the estimator's colour
    (``styles``: curve label -> matplotlib style), anchored at its own median error at the panel's
    first positive iteration count: on a t axis qᵗ (ITD: t·qᵗ), on a k axis the rate of its role in
    ``RATE_IN_K`` (none for roles without one), with q and κ the medians over the estimator's rows
    of the LOCAL ‖∂₁Φ(w*)‖ and cond(I − ∂₁Φᵀ) (module docstring). All lines carry ``label``, so the
    figure's legend has one entry for them."""
    part = part[(part["status"] == "ok") & part[x].notna() & (part[x] > 0)]
    if part.empty:
        return
    ax.set_yscale("log")  # before reading the limits: they must be the log axis's
    bottom, top = ax.get_ylim()
    for (name, role), rows in part.groupby(["estimator", "role"]):
        x0 = rows[x].min()
        y0 = rows[rows[x] == x0]["err_rel"].median()
        which = "q" if x == "t" else RATE_IN_K.get(role)
        if which is None or not np.isfinite(y0) or y0 <= 0:
            continue
        rate = rates(rows["q"].median(), rows["kappa"].median() if "kappa" in rows else math.nan)[which]
        if not 0 < rate < 1:
            continue
        xs = np.linspace(x0, rows[x].max(), 200)
        ys = y0 * rate ** (xs - x0) * ((xs / x0) if x == "t" and role == "itd" else 1.0)
        ax.plot(xs, ys, color=styles[name]["color"], label=label, **PREDICTED)
    ax.set_ylim(bottom, top)  # the predicted lines must not stretch the data's range
