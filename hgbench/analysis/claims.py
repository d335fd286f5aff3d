"""The papers' claims, each decided by the data of the preset that tests it.

A claim is a statement from Grazzi et al. (2020) or Ye et al. (2024), the preset whose results
test it, and a ``check(df) -> (measured, holds)`` that reads only that preset's metrics.csv rows:
``measured`` is the figure the verdict rests on, in words; ``holds`` is True, False, or None when
the preset's rows cannot decide (e.g. a --quick run too short for a rate). ``hgbench reproduce``
writes the table of all claims whose presets have results (claims.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pandas as pd

from hgbench.analysis.inner_error import on_levels, slopes
from hgbench.analysis.theory import rate_table

Verdict = tuple[str, Optional[bool]]


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
    """Median err_rel over λ draws: index (problem, x), one column per estimator (ok rows only)."""
    ok = df[df["status"] == "ok"]
    return ok.groupby(["problem", x, "estimator"])["err_rel"].median().unstack("estimator")


def _fmt(x: float) -> str:
    return f"{x:.2g}" if np.isfinite(x) else "n/a"


def same_rate_as_q(df: pd.DataFrame) -> Verdict:
    """ITD's and AID-FP's fitted rates in t (k = t) within 30% of log q, per problem."""
    table = rate_table(df[df["grid"] == "diag"])
    table = table[table["estimator"].isin(["itd", "fp"])]
    if table.empty or table["fitted_rate"].isna().any():
        return "too few points above round-off to fit a rate", None
    table = table.assign(ratio=np.log(table["fitted_rate"]) / np.log(table["predicted_rate"]))
    parts = [
        f"{p}: " + ", ".join(f"{r.estimator} {r.fitted_rate:.4f}" for r in rows.itertuples()) + f" (q = {rows['q'].iloc[0]:.4f})"
        for p, rows in table.groupby("problem")
    ]
    return "; ".join(parts), bool(((table["ratio"] - 1).abs() < 0.3).all())


def fp_below_itd(df: pd.DataFrame) -> Verdict:
    """With k = t, median over t ≥ 20 of err(AID-FP) / err(ITD) at most 1.01 on every problem
    (equality is an identity where Φ is affine in (w, λ) and E does not depend on λ)."""
    med = medians(df[df["grid"] == "diag"], "t")
    med = med[(med.index.get_level_values("t") >= 20) & (med[["fp", "itd"]].min(axis=1) > 1e-12)]
    if med.empty:
        return "no t ≥ 20 above round-off", None
    ratio = (med["fp"] / med["itd"]).groupby(level="problem").median()
    return ", ".join(f"{p}: {r:.2f}" for p, r in ratio.items()), bool((ratio <= 1.01).all())


def cold_start_coincide(df: pd.DataFrame) -> Verdict:
    """With k = t from a cold start, AID-CG and AID-FP within a factor 3 at every t ≥ 10 whose
    errors lie above round-off."""
    med = medians(df[df["grid"] == "diag"], "t")
    med = med[(med.index.get_level_values("t") >= 10) & (med[["fp", "cg"]].min(axis=1) > 1e-12)]
    if med.empty:
        return "no t ≥ 10 above round-off", None
    spread = np.exp(np.log(med["cg"] / med["fp"]).abs()).groupby(level="problem").max()
    return "largest ratio " + ", ".join(f"{p}: {r:.2f}" for p, r in spread.items()), bool((spread < 3).all())


def cg_beats_fp_in_k(df: pd.DataFrame, at_k: int = 50) -> Verdict:
    """With the inner problem solved (k sweep at large t), err(CG) / err(FP) at k = 50 below 1e-2."""
    med = medians(df[df["grid"] == "k_sweep"], "k")
    rows = med[med.index.get_level_values("k") == at_k]
    if rows.empty or rows[["cg", "fp"]].isna().any().any():
        return f"no k = {at_k} in the k sweep", None
    ratio = rows["cg"] / rows["fp"]
    q = df.groupby("problem")["q"].median()
    text = ", ".join(
        f"{p}: cg {_fmt(r.cg)}, fp {_fmt(r.fp)} (q = {q[p]:.4f})" for (p, _), r in rows.iterrows()
    )  # fmt: skip
    return text, bool((ratio < 1e-2).all())


def itd_rises_first(df: pd.DataFrame) -> Verdict:
    """With q close to 1, ITD's median error at some t > 0 exceeds its error at t = 0."""
    med = medians(df[(df["grid"] == "diag") & (df["estimator"] == "itd")], "t")["itd"]
    out = []
    holds = []
    for problem, curve in med.groupby(level="problem"):
        curve = curve.droplevel("problem")
        if 0 not in curve.index or len(curve) < 3:
            return "needs t = 0 and more t values", None
        peak_t = int(curve.idxmax())
        out.append(f"{problem}: peak {_fmt(curve.max())} at t = {peak_t} vs {_fmt(curve[0])} at t = 0")
        holds.append(peak_t > 0 and curve.max() > curve[0])
    return "; ".join(out), all(holds)


def _slopes(df: pd.DataFrame, min_min: bool) -> pd.DataFrame:
    """Fitted error-vs-inner-error slopes (hgbench.analysis.inner_error) of the problems whose outer
    objective is the inner loss (``min_min``) or is not; problem names end in _<outer>."""
    fitted = slopes(on_levels(df))
    return fitted[fitted["problem"].str.endswith("_inner") == min_min]


def slope_near(estimator: str, target: float, min_min: bool = False, tol: float = 0.2) -> Callable[[pd.DataFrame], Verdict]:
    """``estimator``'s fitted slope within target ± tol on every outer objective of the preset
    (NaN slopes, where the error is at round-off over the whole range, are reported, not judged)."""

    def check(df: pd.DataFrame) -> Verdict:
        rows = _slopes(df, min_min)
        rows = rows[rows["estimator"] == estimator]
        if rows.empty:
            return f"no {estimator} rows", None
        text = ", ".join(f"{r.problem}: {_fmt_slope(r.slope)}" for r in rows.itertuples())
        judged = rows["slope"].dropna()
        if judged.empty:
            return text + " (at round-off: nothing to fit)", None
        return text, bool(((judged - target).abs() <= tol).all())

    return check


def _fmt_slope(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.2f}"


def jacobi_linear_smaller_constant(df: pd.DataFrame) -> Verdict:
    """Jacobi-preconditioned slope 1 ± 0.2 and its constant C (err ≈ C·eˢ) below vanilla's."""
    rows = _slopes(df, False).set_index(["problem", "estimator"])["slope constant".split()]
    parts, holds = [], []
    for problem in rows.index.get_level_values("problem").unique():
        jac, van = rows.loc[(problem, "precond_jacobi")], rows.loc[(problem, "exact")]
        ratio = jac["constant"] / van["constant"]
        parts.append(f"{problem}: slope {_fmt_slope(jac['slope'])}, C/C_vanilla {ratio:.2g}")
        holds.append(abs(jac["slope"] - 1) <= 0.2 and ratio < 1)
    return "; ".join(parts), all(holds) if holds else None


def final_accuracies(df: pd.DataFrame) -> pd.DataFrame:
    """Per estimator of a training run (train.csv rows): the last evaluated train / validation /
    test accuracy, and whether the run diverged."""
    out = {}
    for estimator, run in df.groupby("estimator"):
        last = run[run["val_acc"].notna()].sort_values("step").iloc[-1]
        out[estimator] = {"train_acc": last["train_acc"], "val_acc": last["val_acc"], "test_acc": last["test_acc"],
                          "diverged": bool((run["status"] != "ok").any())}  # fmt: skip
    return pd.DataFrame(out).T


def _accuracies(final: pd.DataFrame) -> str:
    return ", ".join(f"{e}: test {r.test_acc:.3f}{' (diverged)' if r.diverged else ''}" for e, r in final.iterrows())


def train_alike(df: pd.DataFrame) -> Verdict:
    """No run diverged and the final test accuracies lie within 0.02 of each other."""
    final = final_accuracies(df)
    spread = final["test_acc"].max() - final["test_acc"].min()
    return _accuracies(final) + f"; spread {spread:.3f}", bool(not final["diverged"].any() and spread <= 0.02)


def itd_most_stable(df: pd.DataFrame) -> Verdict:
    """ITD did not diverge and its final validation accuracy is the highest of the estimators."""
    final = final_accuracies(df)
    if "itd" not in final.index:
        return "no itd run", None
    best = final["val_acc"].astype(float).idxmax()
    text = ", ".join(f"{e}: val {r.val_acc:.3f}{' (diverged)' if r.diverged else ''}" for e, r in final.iterrows())
    return text, bool(best == "itd" and not final.loc["itd", "diverged"])


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
