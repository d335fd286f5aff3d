"""Claims of Grazzi, Franceschi, Pontil, Salzo, "On the Iteration Complexity of Hypergradient
Computation", ICML 2020, on the error of ITD, AID-FP and AID-CG."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hgbench.analysis.claims.common import CONFIG, Claim, Verdict, fmt, declared, labels, medians, paired, per_pair
from hgbench.analysis.theory import rate_table


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
        f"{w}: cg {fmt(r.err_a)}, fp {fmt(r.err_b)} (q = {r.q:.4f})"
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
        f"{w}: peak {fmt(r.peak)} at t = {r.peak_t} vs {fmt(r.start)} at t = 0"
        for w, r in zip(labels(table, ("estimator",)), table.itertuples())
    )  # fmt: skip
    return text, bool(((table["peak_t"] > 0) & (table["peak"] > table["start"])).all())


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
]  # fmt: skip
