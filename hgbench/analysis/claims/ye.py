"""Claims of Ye, Peyré, Cremers, Ablin, "Enhancing Hypergradients Estimation: A Study of
Preconditioning and Reparameterization", AISTATS 2024, on the error against the inner error."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from hgbench.analysis.claims.common import CONFIG, Claim, Verdict, declared, labels
from hgbench.analysis.inner_error import on_levels, slopes


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


YE = ("ye2024_ridge", "ye2024_logistic", "ye2024_logistic_weak")

CLAIMS = [
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
]  # fmt: skip
