"""The papers' claims, each decided by the data of the preset that tests it.

A claim is a statement from Grazzi et al. (2020) or Ye et al. (2024), the preset whose results
test it, and a ``check(df) -> (measured, holds)`` that reads only that preset's metrics.csv rows:
``measured`` is the figure the verdict rests on, in words; ``holds`` is True, False, or None when
the preset's rows cannot decide (e.g. a --quick run too short for a rate). ``hgbench reproduce``
writes the table of all claims whose presets have results (claims.md).

Rows are selected by what they declare, never by name: the estimator's ``role`` (the paper method
it computes: itd, fp, cg, exact, precond_jacobi, ...) and the problem's ``min_min`` (E is the inner
loss); ``theory.declared`` supplies both for results written before those columns existed.
Statistics are computed per configuration (problem, setting_id), never pooled across two: a curve is
one estimator's rows in one configuration, and a claim comparing two roles compares, in every
configuration, every pair of curves with those roles. A claim holds when it holds for every
configuration (or pair) of the preset that has the curves it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pandas as pd

from hgbench.analysis.inner_error import on_levels, slopes
from hgbench.analysis.theory import CONFIG, declared, rate_table

Verdict = tuple[str, Optional[bool]]
PAIR = [*CONFIG, "estimator_a", "estimator_b"]


@dataclass(frozen=True)
class Claim:
    """``presets``: the presets whose results test it; the table has one row per preset found."""

    id: str
    source: str
    statement: str
    presets: tuple[str, ...]
    criterion: str
    check: Callable[[pd.DataFrame], Verdict]


def medians(df: pd.DataFrame, x: str) -> pd.DataFrame:
    """Median err_rel over λ draws of every curve at every ``x`` (ok rows only): columns problem,
    setting_id, estimator, role, ``x``, err_rel."""
    ok = declared(df)
    ok = ok[ok["status"] == "ok"]
    return ok.groupby([*CONFIG, "estimator", "role", x])["err_rel"].median().reset_index()


def paired(df: pd.DataFrame, x: str, a: str, b: str) -> pd.DataFrame:
    """Every pair of curves of roles ``a`` and ``b`` in one configuration, at the ``x`` both have:
    columns problem, setting_id, ``x``, estimator_a, err_a, estimator_b, err_b (median err_rel)."""
    med = medians(df, x)

    def side(role: str, s: str) -> pd.DataFrame:
        rows = med[med["role"] == role].drop(columns="role")
        return rows.rename(columns={"estimator": f"estimator_{s}", "err_rel": f"err_{s}"})

    return side(a, "a").merge(side(b, "b"), on=[*CONFIG, x])


def per_pair(pairs: pd.DataFrame, values: pd.Series, how: str) -> pd.DataFrame:
    """``values`` (one per row of ``pairs``) reduced by ``how`` over each pair: columns of PAIR, value."""
    return pairs.assign(value=values).groupby(PAIR)["value"].agg(how).reset_index()


def labels(table: pd.DataFrame, names: tuple[str, ...] = ()) -> pd.Series:
    """How ``measured`` names each row's configuration: its problem, with the first 8 characters
    of its setting_id where the table holds several configurations of that problem, and the estimator
    names in the columns ``names`` where it holds several rows of that configuration."""
    label = table["problem"].astype(str)
    several_runs = table.groupby("problem")["setting_id"].transform("nunique") > 1
    label = label.where(~several_runs, label + " [" + table["setting_id"].str[:8] + "]")
    if names:
        several_rows = table.groupby(CONFIG)["problem"].transform("size") > 1
        label = label.where(~several_rows, label + " (" + table[list(names)].astype(str).agg("/".join, axis=1) + ")")
    return label


def _fmt(x: float) -> str:
    return f"{x:.2g}" if np.isfinite(x) else "n/a"


def same_rate_as_q(df: pd.DataFrame) -> Verdict:
    """ITD's and AID-FP's fitted rates in t (k = t) within 30% of log q, per configuration:
    |log(fitted) / log(q) − 1| < 0.3 for every curve of role itd or fp."""
    table = rate_table(df[df["grid"] == "diag"])
    if not table.empty:  # (an empty rate table has no columns)
        table = table[table["role"].isin(["itd", "fp"])]
    if table.empty or table["fitted_rate"].isna().any():
        return "too few points above round-off to fit a rate", None
    table = table.assign(ratio=np.log(table["fitted_rate"]) / np.log(table["predicted_rate"]), where=labels(table))
    parts = [
        f"{rows['where'].iloc[0]}: " + ", ".join(f"{r.estimator} {r.fitted_rate:.4f}" for r in rows.itertuples())
        + f" (q = {rows['q'].iloc[0]:.4f})"
        for _, rows in table.groupby(CONFIG)
    ]  # fmt: skip
    return "; ".join(parts), bool(((table["ratio"] - 1).abs() < 0.3).all())


def fp_below_itd(df: pd.DataFrame) -> Verdict:
    """With k = t, median over t ≥ 20 of err(AID-FP) / err(ITD) at most 1.01 for every pair of
    curves (roles fp, itd) of every configuration (equality is an identity where Φ is affine in
    (w, λ) and E does not depend on λ)."""
    pairs = paired(df[df["grid"] == "diag"], "t", "fp", "itd")
    pairs = pairs[(pairs["t"] >= 20) & (pairs[["err_a", "err_b"]].min(axis=1) > 1e-12)]
    if pairs.empty:
        return "no t ≥ 20 above round-off", None
    ratio = per_pair(pairs, pairs["err_a"] / pairs["err_b"], "median")
    text = ", ".join(f"{w}: {r:.2f}" for w, r in zip(labels(ratio, ("estimator_a", "estimator_b")), ratio["value"]))
    return text, bool((ratio["value"] <= 1.01).all())


def cold_start_coincide(df: pd.DataFrame) -> Verdict:
    """With k = t from a cold start, AID-CG and AID-FP within a factor 3 (|log(err_cg / err_fp)|
    < log 3) at every t ≥ 10 whose errors lie above round-off, for every pair of curves."""
    pairs = paired(df[df["grid"] == "diag"], "t", "cg", "fp")
    pairs = pairs[(pairs["t"] >= 10) & (pairs[["err_a", "err_b"]].min(axis=1) > 1e-12)]
    if pairs.empty:
        return "no t ≥ 10 above round-off", None
    spread = per_pair(pairs, np.exp(np.log(pairs["err_a"] / pairs["err_b"]).abs()), "max")
    text = ", ".join(f"{w}: {r:.2f}" for w, r in zip(labels(spread, ("estimator_a", "estimator_b")), spread["value"]))
    return "largest ratio " + text, bool((spread["value"] < 3).all())


def cg_beats_fp_in_k(df: pd.DataFrame, at_k: int = 50) -> Verdict:
    """With the inner problem solved (k sweep at large t), err(CG) / err(FP) at k = 50 below 1e-2
    for every pair of curves (roles cg, fp) of every configuration."""
    sweep = df[df["grid"] == "k_sweep"]
    rows = paired(sweep, "k", "cg", "fp")
    rows = rows[rows["k"] == at_k]
    if rows.empty:
        return f"no k = {at_k} in the k sweep", None
    q = declared(sweep).groupby(CONFIG)["q"].median().rename("q")
    rows = rows.join(q, on=CONFIG)
    text = ", ".join(
        f"{w}: cg {_fmt(r.err_a)}, fp {_fmt(r.err_b)} (q = {r.q:.4f})"
        for w, r in zip(labels(rows, ("estimator_a", "estimator_b")), rows.itertuples())
    )  # fmt: skip
    return text, bool((rows["err_a"] / rows["err_b"] < 1e-2).all())


def itd_rises_first(df: pd.DataFrame) -> Verdict:
    """With q close to 1, the median error of every ITD curve (role itd, k = t) at some t > 0
    exceeds its error at t = 0."""
    med = medians(df[df["grid"] == "diag"], "t")
    curves = []
    for key, curve in med[med["role"] == "itd"].groupby([*CONFIG, "estimator"]):
        curve = curve.set_index("t")["err_rel"]
        if 0 not in curve.index or len(curve) < 3:
            return "needs t = 0 and more t values", None
        curves.append(dict(zip([*CONFIG, "estimator"], key), peak_t=int(curve.idxmax()), peak=curve.max(), start=curve[0]))
    if not curves:
        return "no itd curve", None
    table = pd.DataFrame(curves)
    text = "; ".join(
        f"{w}: peak {_fmt(r.peak)} at t = {r.peak_t} vs {_fmt(r.start)} at t = 0"
        for w, r in zip(labels(table, ("estimator",)), table.itertuples())
    )  # fmt: skip
    return text, bool(((table["peak_t"] > 0) & (table["peak"] > table["start"])).all())


def curve_slopes(df: pd.DataFrame) -> pd.DataFrame:
    """Fitted error-vs-inner-error slopes and constants (hgbench.analysis.inner_error) of every
    curve, fitted per configuration: columns of ``slopes`` plus setting_id, role and min_min."""
    out = []
    for (_, setting_id), config in declared(df).groupby(CONFIG):
        fitted = slopes(on_levels(config))
        out.append(fitted.join(config.groupby("estimator")[["role", "min_min"]].first(), on="estimator").assign(setting_id=setting_id))
    return pd.concat(out, ignore_index=True)


def _fmt_slope(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.2f}"


def slope_near(role: str, target: float, min_min: bool = False, tol: float = 0.2) -> Callable[[pd.DataFrame], Verdict]:
    """The fitted slope of every curve of ``role`` within target ± tol, over the configurations
    whose problem is (``min_min``) or is not min–min (NaN slopes, where the error is at round-off
    over the whole range, are reported, not judged)."""

    def check(df: pd.DataFrame) -> Verdict:
        rows = curve_slopes(df)
        rows = rows[(rows["role"] == role) & rows["min_min"].eq(min_min)]
        if rows.empty:
            return f"no {role} rows", None
        text = ", ".join(f"{w}: {_fmt_slope(s)}" for w, s in zip(labels(rows, ("estimator",)), rows["slope"]))
        judged = rows["slope"].dropna()
        if judged.empty:
            return text + " (at round-off: nothing to fit)", None
        return text, bool(((judged - target).abs() <= tol).all())

    return check


def jacobi_linear_smaller_constant(df: pd.DataFrame) -> Verdict:
    """For every pair of curves (roles precond_jacobi, exact) of every configuration that is not
    min–min: the Jacobi-preconditioned slope is 1 ± 0.2 and its constant C (err ≈ C·eˢ) is below
    vanilla's."""
    fitted = curve_slopes(df)
    fitted = fitted[fitted["min_min"].eq(False)]
    keep = [*CONFIG, "estimator", "slope", "constant"]
    jac, van = (fitted.loc[fitted["role"] == role, keep] for role in ("precond_jacobi", "exact"))
    rows = jac.merge(van, on=CONFIG, suffixes=("_a", "_b"))
    if rows.empty:
        return "no precond_jacobi and exact curves of one configuration", None
    ratio = rows["constant_a"] / rows["constant_b"]
    text = "; ".join(
        f"{w}: slope {_fmt_slope(s)}, C/C_vanilla {c:.2g}"
        for w, s, c in zip(labels(rows, ("estimator_a", "estimator_b")), rows["slope_a"], ratio)
    )  # fmt: skip
    return text, bool((((rows["slope_a"] - 1).abs() <= 0.2) & (ratio < 1)).all())


def final_accuracies(df: pd.DataFrame) -> pd.DataFrame:
    """Per curve of a training preset (train.csv rows of one configuration and estimator): the last
    evaluated train / validation / test accuracy, whether the run diverged, and its role; columns
    problem, setting_id, estimator, role, train_acc, val_acc, test_acc, diverged."""
    out = []
    for (problem, setting_id, estimator), run in declared(df).groupby([*CONFIG, "estimator"]):
        last = run[run["val_acc"].notna()].sort_values("step").iloc[-1]
        out.append({"problem": problem, "setting_id": setting_id, "estimator": estimator, "role": run["role"].iloc[0],
                    "train_acc": last["train_acc"], "val_acc": float(last["val_acc"]), "test_acc": last["test_acc"],
                    "diverged": bool((run["status"] != "ok").any())})  # fmt: skip
    return pd.DataFrame(out)


def _per_training_config(df: pd.DataFrame, decide: Callable[[pd.DataFrame], Verdict]) -> Verdict:
    """``decide`` (final accuracies of one configuration -> verdict) on every configuration of a
    training preset: the texts joined, True when all hold, None when one cannot decide."""
    final = final_accuracies(df)
    if final.empty:
        return "no training runs", None
    final = final.assign(where=labels(final))
    verdicts = [decide(rows) for _, rows in final.groupby(CONFIG)]
    holds = [h for _, h in verdicts]
    return "; ".join(text for text, _ in verdicts), None if None in holds else all(holds)


def _accuracies(final: pd.DataFrame, column: str) -> str:
    """``column`` of each curve of one configuration in words, its runs that diverged marked."""
    return ", ".join(f"{r.estimator} {getattr(r, column):.3f}{' (diverged)' if r.diverged else ''}" for r in final.itertuples())


def _alike(final: pd.DataFrame) -> Verdict:
    spread = final["test_acc"].max() - final["test_acc"].min()
    text = f"{final['where'].iloc[0]}: test {_accuracies(final, 'test_acc')}, spread {spread:.3f}"
    return text, bool(not final["diverged"].any() and spread <= 0.02)


def train_alike(df: pd.DataFrame) -> Verdict:
    """In every configuration, no run diverged and the final test accuracies lie within 0.02 of
    each other (max − min ≤ 0.02)."""
    return _per_training_config(df, _alike)


def _itd_best(final: pd.DataFrame) -> Verdict:
    text = f"{final['where'].iloc[0]}: val {_accuracies(final, 'val_acc')}"
    itd = final[final["role"] == "itd"]
    if itd.empty:
        return text + " (no itd run)", None
    best = final.loc[final["val_acc"].idxmax()]
    return text, bool(best["role"] == "itd" and not itd["diverged"].any())


def itd_most_stable(df: pd.DataFrame) -> Verdict:
    """In every configuration, no ITD run (role itd) diverged and the highest final validation
    accuracy is an ITD run's."""
    return _per_training_config(df, _itd_best)


YE = ("ye2024_ridge", "ye2024_logistic", "ye2024_logistic_weak")

CLAIMS = [
    Claim("G1", "Grazzi et al. 2020, Thms. 1–2", "ITD and AID-FP converge linearly, at the same rate, set by q",
          ("grazzi2020",), "fitted rates of itd and fp in t (k = t) within 30% of log q", same_rate_as_q),
    Claim("G2", "Grazzi et al. 2020, §3 (bounds)", "With k = t, AID-FP's error is at most ITD's (below it by a constant factor)",
          ("grazzi2020",), "median over t ≥ 20 of err(fp)/err(itd) ≤ 1.01 on every problem", fp_below_itd),
    Claim("G3", "Grazzi et al. 2020, §5", "From a cold start (k = t) the AID curves nearly coincide: the inner error dominates",
          ("grazzi2020", "ridge_illcond_cold"), "err(cg)/err(fp) within a factor 3 at every t ≥ 10", cold_start_coincide),
    Claim("G4", "Grazzi et al. 2020, Thm. 3", "With the inner problem solved and q close to 1, CG beats FP in k by orders of magnitude",
          ("ridge_illcond",), "err(cg)/err(fp) < 1e-2 at k = 50 (t = 6000)", cg_beats_fp_in_k),
    Claim("G5", "Grazzi et al. 2020, Thm. 1", "ITD's bound t·qᵗ can rise before it falls when q is close to 1",
          ("ridge_illcond_cold",), "ITD’s median error peaks at some t > 0 above its value at t = 0", itd_rises_first),
    Claim("Y1", "Ye et al. 2024, §3", "Vanilla implicit differentiation at an inexact inner solution: error linear in the inner error",
          YE, "slope of `exact` 1 ± 0.2 (outer ≠ inner loss)", slope_near("exact", 1.0)),
    Claim("Y2", "Ye et al. 2024, §4", "Newton-preconditioned implicit differentiation: error quadratic in the inner error",
          YE, "slope of `precond_newton` 2 ± 0.2 (outer ≠ inner loss)", slope_near("precond_newton", 2.0)),
    Claim("Y3", "Ye et al. 2024, §4", "Jacobi preconditioning stays linear, with a smaller constant than vanilla",
          YE, "slope of `precond_jacobi` 1 ± 0.2 and its constant below vanilla's", jacobi_linear_smaller_constant),
    Claim("Y4", "Ye et al. 2024, §3", "In the min–min case (E = inner loss) vanilla implicit differentiation is already quadratic",
          YE, "slope of `exact` 2 ± 0.2 with outer = inner", slope_near("exact", 2.0, min_min=True)),
    Claim("Y5", "Ye et al. 2024, §5", "Reparameterization is quadratic only for specially designed maps: diagonal scaling stays linear",
          YE, "slope of `reparam_diag` 1 ± 0.2 (outer ≠ inner loss)", slope_near("reparam_diag", 1.0)),
    Claim("D1", "Grazzi et al. 2020, §5", "Equilibrium model, map kept a contraction (ρ = 0.99): ITD, AID-FP and AID-CG (normal equations) train about equally well",
          ("deq_train_small",), "no divergence; final test accuracies within 0.02", train_alike),
    Claim("D2", "Grazzi et al. 2020, §5", "Equilibrium model, map not a contraction: ITD is the most stable",
          ("deq_train_small_free",), "ITD does not diverge and ends with the best validation accuracy", itd_most_stable),
]  # fmt: skip


def evaluate(results: dict[str, pd.DataFrame], claims=CLAIMS) -> pd.DataFrame:
    """One row per (claim, preset) whose preset is in ``results`` (preset name -> its rows)."""
    rows = []
    for claim in claims:
        for preset in claim.presets:
            if preset not in results:
                continue
            measured, holds = claim.check(results[preset])
            verdict = {True: "holds", False: "does not hold", None: "undecided"}[holds]
            rows.append({"id": claim.id, "source": claim.source, "claim": claim.statement, "preset": preset,
                         "criterion": claim.criterion, "measured": measured, "verdict": verdict})  # fmt: skip
    return pd.DataFrame(rows, columns=["id", "source", "claim", "preset", "criterion", "measured", "verdict"])
