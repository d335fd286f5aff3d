"""Observations: this project's own findings on its presets, reported apart from the papers'
claims (claims.md, section "Observations"). None of them is a statement of Grazzi et al. (2020)
or Ye et al. (2024); each is decided like a claim (statistic, threshold, "undecided" rule), by
the rows of the presets that show it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hgbench.analysis.claims.common import CONFIG, Claim, Verdict, declared, fmt, labels, paired, per_pair

SOURCE = "this project"


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


def _head(overrides: str) -> str:
    """The hyper-representation head a run's overrides name ("logistic" when none: the default)."""
    for item in str(overrides).split():
        key, _, value = item.strip().partition("=")
        if key.strip() == "problem.head":
            return value.strip()
    return "logistic"


def fp_above_itd_by_head(df: pd.DataFrame) -> Verdict:
    """On hyper-representation with k = t, the median over t ≥ 20 (above round-off) of
    err(AID-FP)/err(ITD) is above 1 with logistic heads and below 1 with ridge heads, in every
    configuration of each head (the head read from the rows' overrides; none: logistic).
    Undecided unless both heads have a configuration."""
    df = declared(df)
    df = df[df["problem"] == "hyper_rep"]
    if "overrides" not in df:
        df = df.assign(overrides="")
    heads = df.groupby(CONFIG)["overrides"].first().map(_head).rename("head")
    pairs = paired(df[df["grid"] == "diag"], "t", "fp", "itd")
    pairs = pairs[(pairs["t"] >= 20) & (pairs[["err_a", "err_b"]].min(axis=1) > 1e-12)]
    if pairs.empty:
        return "no hyper_rep fp and itd curves with t ≥ 20 above round-off", None
    ratio = per_pair(pairs, pairs["err_a"] / pairs["err_b"], "median").join(heads, on=CONFIG)
    text = ", ".join(f"head={r.head}: {r.value:.2f}" for r in ratio.itertuples())
    if set(ratio["head"]) < {"logistic", "ridge"}:
        return f"median err(fp)/err(itd) {text}; needs runs of both heads", None
    logistic, ridge = ratio[ratio["head"] == "logistic"], ratio[ratio["head"] == "ridge"]
    return "median err(fp)/err(itd) " + text, bool((logistic["value"] > 1).all() and (ridge["value"] < 1).all())


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
    )
    return text, bool((rows["err_a"] / rows["err_b"] < 1e-2).all())


OBSERVATIONS = [
    Claim(
        "O1",
        SOURCE,
        "From a cold start (k = t) the AID curves come close: the inner error dominates",
        ("grazzi2020", "ridge_illcond_cold"),
        "err(cg)/err(fp) within a factor 3 at every t ≥ 10 above round-off",
        cold_start_coincide,
    ),
    Claim(
        "O2",
        SOURCE,
        "On hyper-representation, AID-FP's error is above ITD's (k = t) with logistic heads, below it with ridge heads",
        ("hyper_rep_heads", "grazzi2020"),
        "median over t ≥ 20 of err(fp)/err(itd): > 1 for head=logistic, < 1 for head=ridge",
        fp_above_itd_by_head,
    ),
    Claim(
        "O3",
        SOURCE,
        "CG's advantage over FP in k is largest once the inner problem is solved (q close to 1)",
        ("ridge_illcond",),
        "err(cg)/err(fp) < 1e-2 at k = 50 (t = 6000)",
        cg_beats_fp_in_k,
    ),
]
