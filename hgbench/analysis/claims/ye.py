"""Claims of Ye, Peyré, Cremers, Ablin, "Enhancing Hypergradients Estimation: A Study of
Preconditioning and Reparameterization", AISTATS 2024 (arXiv 2402.16748), on the error against the
inner error.

The paper's own words (abstract): "As a function of the error of the inner problem resolution, we
study the error of the IFT method. We analyze two strategies to reduce this error: preconditioning
the IFT formula and reparameterizing the inner problem. [...] Our theoretical findings explain when
super efficiency, namely reaching an error on the hypergradient that depends quadratically on the
error on the inner problem, is achievable and compare the two approaches when this is impossible."
Each claim names the figure whose method set and setting its preset reproduces (ye2024_fig*: their
data and protocol; ye2024_ridge, ye2024_logistic, ye2024_logistic_weak: this project's synthetic
extension).

Verdict rules, per curve (one estimator in one configuration; slopes and constants of
hgbench.analysis.inner_error, fitted on the mean error at inner errors ≤ 1e-1 above round-off):
- "linear": slope within 1 ± 0.2 holds; a slope ≥ 1.5, or an error at round-off over the whole
  fitted range (better than linear), does not hold; anything else is undecided.
- "quadratic (super-efficient)": slope ≥ 1.8, or the error at round-off over the whole fitted
  range (exact, e.g. Newton on ridge where one Newton step lands on w*), holds; a slope ≤ 1.2 does
  not hold; 1.2 < slope < 1.8, or too few levels above round-off to fit, is undecided.
A claim holds when it holds for every curve it reads, does not hold when one curve does not, and
is undecided otherwise.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from hgbench.analysis.claims.common import CONFIG, Claim, Verdict, declared, labels
from hgbench.analysis.inner_error import FIT_BELOW, FLOOR, on_levels, slopes


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


def _at_roundoff(df: pd.DataFrame) -> pd.DataFrame:
    """Per (problem, setting_id, estimator): whether the mean error is at round-off (below
    FLOOR) at every level of the fitted range (inner errors ≤ FIT_BELOW)."""
    out = []
    for (_, setting_id), config in declared(df).groupby(CONFIG):
        stats = on_levels(config)
        fit = stats[stats["level"] <= FIT_BELOW * (1 + 1e-12)]
        low = fit.groupby(["problem", "estimator"])["mean_log10"].max() < np.log10(FLOOR)
        out.append(low.rename("roundoff").reset_index().assign(setting_id=setting_id))
    return pd.concat(out, ignore_index=True)


def _rate_rows(df: pd.DataFrame, role: str, min_min: bool) -> pd.DataFrame:
    rows = curve_slopes(df).merge(_at_roundoff(df), on=["problem", "setting_id", "estimator"])
    return rows[(rows["role"] == role) & rows["min_min"].eq(min_min)]


def linear(role: str, min_min: bool = False) -> Callable[[pd.DataFrame], Verdict]:
    """Every curve of ``role`` linear in the inner error (module docstring's rule)."""

    def check(df: pd.DataFrame) -> Verdict:
        rows = _rate_rows(df, role, min_min)
        if rows.empty:
            return f"no {role} rows", None
        text = ", ".join(f"{w}: {'round-off' if r else _fmt_slope(s)}" for w, s, r in zip(labels(rows, ("estimator",)), rows["slope"], rows["roundoff"]))
        if (rows["roundoff"] | (rows["slope"] >= 1.5)).any():
            return text, False
        return text, True if ((rows["slope"] - 1).abs() <= 0.2).all() else None

    return check


def quadratic(role: str, min_min: bool = False) -> Callable[[pd.DataFrame], Verdict]:
    """Every curve of ``role`` quadratic in the inner error or exact (module docstring's rule)."""

    def check(df: pd.DataFrame) -> Verdict:
        rows = _rate_rows(df, role, min_min)
        if rows.empty:
            return f"no {role} rows", None
        text = ", ".join(
            f"{w}: {'round-off (exact)' if r else _fmt_slope(s)}" for w, s, r in zip(labels(rows, ("estimator",)), rows["slope"], rows["roundoff"])
        )  # fmt: skip
        if (~rows["roundoff"] & (rows["slope"] <= 1.2)).any():
            return text, False
        return text, True if (rows["roundoff"] | (rows["slope"] >= 1.8)).all() else None

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


TIE = 1.25  # error ratios within a factor 1.25 either way: a tie, undecided


def jacobi_beats_reparam(df: pd.DataFrame) -> Verdict:
    """Per configuration that is not min–min, the median over the fitted levels (inner errors ≤ 1e-1) of
    mean err(reparam) / mean err(precond_jacobi), for each reparameterization (reparam_diag =
    PzPhi, reparam_exp = ExpPhi): holds if every ratio > TIE (Jacobi smaller), does not hold if
    one is < 1/TIE (a reparameterization smaller), undecided otherwise (a tie)."""
    out = []
    rows = declared(df)
    for (problem, setting_id), config in rows[rows["min_min"].eq(False)].groupby(CONFIG):  # min–min: all quadratic
        stats = on_levels(config)
        stats = stats[stats["level"] <= FIT_BELOW * (1 + 1e-12)]
        roles = config.groupby("estimator")["role"].first()
        mean = stats.pivot(index="level", columns="estimator", values="mean_log10")
        jacobi = [e for e in mean if roles[e] == "precond_jacobi"]
        for other in (e for e in mean if roles[e] in ("reparam_diag", "reparam_exp")):
            for jac in jacobi:
                out.append((problem, other, float(np.median(10 ** (mean[other] - mean[jac])))))
    if not out:
        return "no precond_jacobi and reparam curves of one configuration", None
    text = ", ".join(f"{p}: {o}/jacobi {r:.3g}" for p, o, r in out)
    ratios = np.array([r for *_, r in out])
    if (ratios < 1 / TIE).any():
        return text, False
    return text, True if (ratios > TIE).all() else None


SYNTHETIC = ("ye2024_ridge", "ye2024_logistic", "ye2024_logistic_weak")  # this project's extension
ABSTRACT = "Ye et al. 2024, abstract"
QUOTE = ("“super efficiency, namely reaching an error on the hypergradient that depends quadratically on the error "
         "on the inner problem, is achievable”")  # fmt: skip

CLAIMS = [
    Claim("Y1", "Ye et al. 2024, §3; Figs. 2b, 3a, 3b (Vanilla)", "Vanilla IFT evaluated at an inexact inner solution: error linear in the inner error",
          ("ye2024_fig2b", "ye2024_fig3a", "ye2024_fig3b", *SYNTHETIC), "every `exact` curve: slope 1 ± 0.2 holds; ≥ 1.5 or round-off does not; else undecided (outer ≠ inner loss)",
          linear("exact")),
    Claim("Y2", f"{ABSTRACT}; Figs. 1a, 1b, 3a, 3b (Newton)", f"Newton-preconditioned IFT: {QUOTE} — error quadratic in the inner error",
          ("ye2024_fig1a", "ye2024_fig1b", "ye2024_fig3a", "ye2024_fig3b", *SYNTHETIC),
          "every `precond_newton` curve: slope ≥ 1.8 or error at round-off (exact: on ridge one Newton step lands on w*) holds; ≤ 1.2 does not; else undecided",
          quadratic("precond_newton")),
    Claim("Y3", "Ye et al. 2024, §4; Figs. 2b, 3a, 3b (Precond)", "Jacobi (diagonal) preconditioning stays linear, with a smaller constant than vanilla",
          ("ye2024_fig2b", "ye2024_fig3a", "ye2024_fig3b", *SYNTHETIC), "slope of `precond_jacobi` 1 ± 0.2 and its constant below vanilla's",
          jacobi_linear_smaller_constant),
    Claim("Y4", "Ye et al. 2024, §3", "In the min–min case (outer = inner loss) vanilla IFT is already quadratic",
          SYNTHETIC, "every `exact` curve with outer = inner: slope ≥ 1.8 or round-off holds; ≤ 1.2 does not; else undecided", quadratic("exact", min_min=True)),
    Claim("Y5", "Ye et al. 2024, §5; Figs. 2b, 3a, 3b (PzPhi)", "Reparameterization is super-efficient only for specially designed maps: diagonal scaling (PzPhi) stays linear",
          ("ye2024_fig2b", "ye2024_fig3a", "ye2024_fig3b", *SYNTHETIC), "every `reparam_diag` curve: slope 1 ± 0.2 holds; ≥ 1.5 or round-off does not; else undecided",
          linear("reparam_diag")),
    Claim("Y6", f"{ABSTRACT}; Figs. 1a, 1b (OptPhi)", f"The specially designed reparameterization on ridge (OptPhi): {QUOTE} — error quadratic in the inner error",
          ("ye2024_fig1a", "ye2024_fig1b"), "every `reparam_opt` curve: slope ≥ 1.8 or error at round-off holds; ≤ 1.2 does not; else undecided",
          quadratic("reparam_opt")),
    Claim("Y7", f"{ABSTRACT} (“compare the two approaches when this is impossible”); Figs. 2b, 3a, 3b",
          "Where neither is super-efficient, Jacobi preconditioning gives a smaller error than the reparameterizations (ExpPhi, PzPhi)",
          ("ye2024_fig2b", "ye2024_fig3a", "ye2024_fig3b", *SYNTHETIC),
          f"median over inner errors ≤ 1e-1 of err(reparam)/err(jacobi) > {TIE} for both maps holds; < 1/{TIE} for one does not; else (a tie) undecided",
          jacobi_beats_reparam),
]  # fmt: skip
