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
is undecided otherwise. Fig. 1's claims (Y6, Y8) apply the rule each panel calls for (FIG1): with
the linear outer (1a) Newton and OptPhi are super-efficient; with the quadratic outer (1b) Newton
stays so and OptPhi is linear, as the paper's Fig. 1b shows. Y10 contrasts Figs. 3a and 3b, read
together (the preset "ye2024_fig3a+ye2024_fig3b"). Where a statement is a paraphrase of a figure
rather than a quotation, its source says so.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import pandas as pd

from hgbench.analysis.claims.common import CONFIG, TIE, Claim, Verdict, decide, declared, labels
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


def _linear_rule(slope: float, roundoff: bool) -> Optional[bool]:
    """Linear in the inner error (module docstring's rule)."""
    if roundoff or slope >= 1.5:
        return False
    return True if abs(slope - 1) <= 0.2 else None


def _quadratic_rule(slope: float, roundoff: bool) -> Optional[bool]:
    """Quadratic in the inner error, or exact (module docstring's rule)."""
    if not roundoff and slope <= 1.2:
        return False
    return True if roundoff or slope >= 1.8 else None


RULES = {"linear": _linear_rule, "quadratic": _quadratic_rule}


def _judged(df: pd.DataFrame, role: str, rule: str, min_min: bool = False) -> tuple[str, list[Optional[bool]]]:
    """Every curve of ``role`` judged by RULES[rule]: its words (slope, or round-off) and verdicts."""
    rows = _rate_rows(df, role, min_min)
    if rows.empty:
        return f"no {role} rows", []
    exact = "round-off (exact)" if rule == "quadratic" else "round-off"
    text = ", ".join(
        f"{w}: {exact if r else _fmt_slope(s)}" for w, s, r in zip(labels(rows, ("estimator",)), rows["slope"], rows["roundoff"])
    )
    return text, [RULES[rule](s, bool(r)) for s, r in zip(rows["slope"], rows["roundoff"])]


def linear(role: str, min_min: bool = False) -> Callable[[pd.DataFrame], Verdict]:
    """Every curve of ``role`` linear in the inner error (module docstring's rule)."""

    def check(df: pd.DataFrame) -> Verdict:
        text, verdicts = _judged(df, role, "linear", min_min)
        return text, decide(verdicts)

    return check


def quadratic(role: str, min_min: bool = False) -> Callable[[pd.DataFrame], Verdict]:
    """Every curve of ``role`` quadratic in the inner error or exact (module docstring's rule)."""

    def check(df: pd.DataFrame) -> Verdict:
        text, verdicts = _judged(df, role, "quadratic", min_min)
        return text, decide(verdicts)

    return check


# Ye et al.'s Fig. 1, ridge on mpg: the outer objective of each panel (the presets' problem.outer)
# and what each method's error does there. Newton lands on x* in one step on ridge (exact: round-off),
# whatever the outer; OptPhi's Jacobian dx*/dy is exact at any iterate, so its only error is that of
# ∇ₓf evaluated at the inexact x: none for the linear outer (∇ₓf constant), linear for the quadratic.
FIG1 = {
    "ye2024_fig1a": ("linear outer", {"precond_newton": "quadratic", "reparam_opt": "quadratic"}),
    "ye2024_fig1b": ("quadratic outer", {"precond_newton": "quadratic", "reparam_opt": "linear"}),
}


def fig1(roles: tuple[str, ...]) -> Callable[[pd.DataFrame], Verdict]:
    """The curves of ``roles`` in each Fig. 1 panel present (column ``preset``), each judged by the
    rule FIG1 gives for its panel (quadratic: super-efficient or exact; linear: slope 1 ± 0.2)."""

    def check(df: pd.DataFrame) -> Verdict:
        texts, verdicts = [], []
        for preset, part in df.groupby("preset", sort=True):
            if preset not in FIG1:
                continue
            outer, expect = FIG1[preset]
            for role in roles:
                text, judged = _judged(part, role, expect[role])
                texts.append(f"{preset[-2:]} ({outer}) {role}, expected {expect[role]}: {text}")
                verdicts += judged or [None]
        return ("; ".join(texts) or "no Fig. 1 panel"), decide(verdicts)

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
    )
    return text, bool((((rows["slope_a"] - 1).abs() <= 0.2) & (ratio < 1)).all())


def _reparam_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Per configuration that is not min–min (there all are quadratic) and per pair of curves
    (reparam_diag = PzPhi or reparam_exp = ExpPhi, precond_jacobi): the median over the fitted levels
    (inner errors ≤ 1e-1) of mean err(reparam) / mean err(jacobi). Columns problem, setting_id,
    reparam, ratio."""
    out = []
    rows = declared(df)
    for (problem, setting_id), config in rows[rows["min_min"].eq(False)].groupby(CONFIG):
        stats = on_levels(config)
        stats = stats[stats["level"] <= FIT_BELOW * (1 + 1e-12)]
        roles = config.groupby("estimator")["role"].first()
        mean = stats.pivot(index="level", columns="estimator", values="mean_log10")
        jacobi = [e for e in mean if roles[e] == "precond_jacobi"]
        for other in (e for e in mean if roles[e] in ("reparam_diag", "reparam_exp")):
            for jac in jacobi:
                out.append((problem, setting_id, other, float(np.median(10 ** (mean[other] - mean[jac])))))
    return pd.DataFrame(out, columns=[*CONFIG, "reparam", "ratio"])


def jacobi_beats_reparam(df: pd.DataFrame) -> Verdict:
    """Per configuration that is not min–min, ``_reparam_ratios``: holds if every ratio > TIE
    (Jacobi smaller), does not hold if one is < 1/TIE (a reparameterization smaller), undecided
    otherwise (a tie)."""
    table = _reparam_ratios(df)
    if table.empty:
        return "no precond_jacobi and reparam curves of one configuration", None
    text = ", ".join(f"{r.problem}: {r.reparam}/jacobi {r.ratio:.3g}" for r in table.itertuples())
    if (table["ratio"] < 1 / TIE).any():
        return text, False
    return text, True if (table["ratio"] > TIE).all() else None


POORER = 2.0  # one configuration's diagonal Hessian approximation is materially poorer: C_J/C_V ≥ 2× the other's


def reparam_compensates(df: pd.DataFrame) -> Verdict:
    """Ye et al.'s Figs. 3a against 3b (logistic on liver-disorders, y ~ U[−1, 1] and U[3, 6]):
    where the diagonal (Jacobi) approximation of the Hessian is poor, a reparameterization comes
    level with Jacobi preconditioning. How poor the approximation is in a configuration is measured,
    not assumed: Jacobi's error constant over vanilla's, C_J/C_V (err ≈ C·eˢ, fitted as in Y3; the
    exact Hessian would make it 0, a useless one 1). With P the configuration of largest C_J/C_V
    and G that of smallest, r(c) = the smallest over the reparameterizations (PzPhi, ExpPhi) of
    ``_reparam_ratios`` in c. Undecided: fewer than two configurations with all these curves, or
    C_J/C_V(P) < POORER × C_J/C_V(G) (no contrast in the approximation). Holds: r(P) ≤ TIE (a
    reparameterization matches Jacobi or beats it where Jacobi is poor) and r(P)·TIE < r(G) (and
    does so better than where Jacobi is good). Does not hold: r(P) > TIE (every reparameterization
    stays behind Jacobi even where it is poor). Else undecided."""
    fitted = curve_slopes(df)
    fitted = fitted[fitted["min_min"].eq(False)]
    constant = fitted.pivot_table(index=CONFIG, columns="role", values="constant", aggfunc="min")
    ratios = _reparam_ratios(df)
    if ratios.empty or not {"precond_jacobi", "exact"} <= set(constant.columns):
        return "needs precond_jacobi, exact and a reparameterization in one configuration", None
    best = ratios.groupby(CONFIG)["ratio"].min()
    quality = (constant["precond_jacobi"] / constant["exact"]).dropna()
    table = pd.DataFrame({"quality": quality, "best": best}).dropna()
    if len(table) < 2:
        return "needs two configurations to contrast (Fig. 3a and 3b)", None
    table = table.sort_values("quality")
    good, poor = table.iloc[0], table.iloc[-1]
    names = {key: f"{key[0]}" for key in table.index}
    text = "; ".join(f"{names[key]}: C_J/C_V {r.quality:.2g}, best reparam/jacobi {r.best:.3g}" for key, r in table.iterrows())
    if poor["quality"] < POORER * good["quality"]:
        return f"{text}; Jacobi's approximation not materially poorer in one configuration (< {POORER:g}×)", None
    if poor["best"] > TIE:
        return text, False
    return text, True if poor["best"] * TIE < good["best"] else None


SYNTHETIC = ("ye2024_ridge", "ye2024_logistic", "ye2024_logistic_weak")  # this project's extension
ABSTRACT = "Ye et al. 2024, abstract"
QUOTE = (
    "“super efficiency, namely reaching an error on the hypergradient that depends quadratically on the error "
    "on the inner problem, is achievable”"
)

FIGS = ("ye2024_fig2b", "ye2024_fig3a", "ye2024_fig3b")
CLAIMS = [
    Claim(
        "Y1",
        "Ye et al. 2024, analysis of the IFT error; Figs. 2b, 3a, 3b (Vanilla)",
        "Vanilla IFT evaluated at an inexact inner solution: error linear in the inner error",
        (*FIGS, *SYNTHETIC),
        "every `exact` curve: slope 1 ± 0.2 holds; ≥ 1.5 or round-off does not; else undecided (outer ≠ inner loss)",
        linear("exact"),
    ),
    Claim(
        "Y2",
        f"{ABSTRACT}; Figs. 1a, 1b, 3a, 3b (Newton)",
        f"Newton-preconditioned IFT: {QUOTE} — error quadratic in the inner error",
        ("ye2024_fig1a", "ye2024_fig1b", "ye2024_fig3a", "ye2024_fig3b", *SYNTHETIC),
        "every `precond_newton` curve: slope ≥ 1.8 or error at round-off (exact: on ridge one Newton step lands on w*) holds; ≤ 1.2 does not; else undecided",
        quadratic("precond_newton"),
    ),
    Claim(
        "Y3",
        "Ye et al. 2024, analysis of preconditioning; Figs. 2b, 3a, 3b (Precond)",
        "Jacobi (diagonal) preconditioning stays linear, with a smaller constant than vanilla",
        (*FIGS, *SYNTHETIC),
        "slope of `precond_jacobi` 1 ± 0.2 and its constant below vanilla's",
        jacobi_linear_smaller_constant,
    ),
    Claim(
        "Y4",
        "Ye et al. 2024, analysis of the IFT error (min–min case)",
        "In the min–min case (outer = inner loss) vanilla IFT is already quadratic",
        SYNTHETIC,
        "every `exact` curve with outer = inner: slope ≥ 1.8 or round-off holds; ≤ 1.2 does not; else undecided",
        quadratic("exact", min_min=True),
    ),
    Claim(
        "Y5",
        f"{ABSTRACT}; Figs. 2b, 3a, 3b (PzPhi)",
        "Reparameterization is super-efficient only for specially designed maps: diagonal scaling (PzPhi) stays linear",
        (*FIGS, *SYNTHETIC),
        "every `reparam_diag` curve: slope 1 ± 0.2 holds; ≥ 1.5 or round-off does not; else undecided",
        linear("reparam_diag"),
    ),
    Claim(
        "Y6",
        f"{ABSTRACT}; Fig. 1a vs 1b (OptPhi)",
        f"The specially designed reparameterization on ridge (OptPhi): {QUOTE} — with the linear outer (Fig. 1a); with the quadratic outer (Fig. 1b) its error is linear",
        ("ye2024_fig1a", "ye2024_fig1b"),
        "every `reparam_opt` curve: on 1a (linear outer) quadratic — slope ≥ 1.8 or round-off holds, ≤ 1.2 does not; on 1b (quadratic outer) linear — "
        "slope 1 ± 0.2 holds, ≥ 1.5 or round-off does not; else undecided",
        fig1(("reparam_opt",)),
    ),
    Claim(
        "Y7",
        f"{ABSTRACT} (“compare the two approaches when this is impossible”); Figs. 2b, 3a, 3b",
        "Where neither is super-efficient, Jacobi preconditioning gives a smaller error than the reparameterizations (ExpPhi, PzPhi)",
        (*FIGS, *SYNTHETIC),
        f"median over inner errors ≤ 1e-1 of err(reparam)/err(jacobi) > {TIE} for both maps holds; < 1/{TIE} for one does not; else (a tie) undecided",
        jacobi_beats_reparam,
    ),
    Claim(
        "Y8",
        "Ye et al. 2024, Fig. 1 (1a linear outer, 1b quadratic outer)",
        "Newton preconditioning is super-efficient with either outer function; the specially designed reparameterization (OptPhi) only with the linear one",
        ("ye2024_fig1a+ye2024_fig1b",),
        "both panels: every `precond_newton` curve quadratic (slope ≥ 1.8 or round-off; ≤ 1.2 does not hold); `reparam_opt` quadratic on 1a and linear "
        "(slope 1 ± 0.2; ≥ 1.5 or round-off does not hold) on 1b; holds when all do, does not hold when one does not, else undecided",
        fig1(("precond_newton", "reparam_opt")),
    ),
    Claim(
        "Y9",
        f"{ABSTRACT}; Figs. 2b, 3a, 3b (ExpPhi)",
        "Reparameterization is super-efficient only for specially designed maps: the elementwise exponential map (ExpPhi) stays linear",
        (*FIGS, *SYNTHETIC),
        "every `reparam_exp` curve: slope 1 ± 0.2 holds; ≥ 1.5 or round-off does not; else undecided",
        linear("reparam_exp"),
    ),
    Claim(
        "Y10",
        "Ye et al. 2024, Figs. 3a vs 3b (paraphrase: reparameterization can compensate for a poor Hessian approximation)",
        "Where the diagonal Hessian approximation is poor (Fig. 3a, weak regularization), a reparameterization (PzPhi or ExpPhi) comes level with Jacobi preconditioning; where it is good (3b), Jacobi is ahead",
        ("ye2024_fig3a+ye2024_fig3b",),
        f"poorness of the approximation measured as C_jacobi/C_vanilla per configuration (must differ ≥ {POORER:g}×, else undecided); best "
        f"err(reparam)/err(jacobi) (median over inner errors ≤ 1e-1) in the poorer one ≤ {TIE} and {TIE}× below the other's holds; > {TIE} does not; else undecided",
        reparam_compensates,
    ),
]
