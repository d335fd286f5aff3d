"""Claims of Iutzeler, Pauwels, Vaiter, "Derivatives of Stochastic Gradient Descent in parametric
optimization", NeurIPS 2024: the derivative ∂w_k/∂λ of minibatch SGD's iterates.

S3 is decided by mode=stochastic's rows (stochastic.csv) of stochastic ITD (``role`` stoch_itd),
whose estimate ĝ(t) = ∇₂E(w_t) + (∂w_t/∂λ)ᵀ∇₁E(w_t) is a linear image of the derivative when E's
gradients are exact (the preset's outer batch is the whole validation set): its MSE is bounded by a
constant times the derivative's and the iterate's, so a derivative converging at O(log²k/k) makes
the hypergradient's MSE do so too, and a derivative in a noise ball keeps it in one. A run's step
rule is what its overrides set (``estimator.step_halflife``: vanishing steps γᵢ = γ·h/(h + i),
hgbench.core.stochastic.step_at; absent or null: constant).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hgbench.analysis.claims.common import Claim, Verdict, decide, fmt, run_pairs
from hgbench.analysis.stochastic import variant

SOURCE = 'Iutzeler, Pauwels, Vaiter, "Derivatives of Stochastic Gradient Descent in parametric optimization", NeurIPS 2024, abstract'
SLACK = 0.2  # on a log-log slope: sampling noise of R ≈ 20 repetitions and the pre-asymptotic transient
FLOOR = 1e-20  # a relative MSE at or below is round-off (the full batch): nothing random to converge
MIN_POINTS = 3  # grid points in the last decade of t needed for a slope


def vanishing(overrides: str) -> bool:
    """Whether the run's overrides set vanishing steps (a step_halflife other than null)."""
    return any(
        item.split("=", 1)[1] not in ("null", "None") for item in variant(overrides).split() if item.startswith("estimator.step_halflife=")
    )


def last_decade(rows: pd.DataFrame) -> tuple[float, float, float, float] | None:
    """(slope, t_first, t_last, mse at t_last) of the least-squares line of log mse_rel (median over
    λ draws of the ok rows) against log t over the grid points t ≥ t_last/10; None with fewer than
    MIN_POINTS such points or a non-ok row there."""
    ok = rows[rows["t"] > 0]
    if (ok["status"] != "ok").any():
        return None
    mse = ok.groupby("t")["mse_rel"].median()
    tail = mse[mse.index >= mse.index.max() / 10]
    if len(tail) < MIN_POINTS or (tail <= 0).any():
        return None
    slope = float(np.polyfit(np.log(tail.index.to_numpy(float)), np.log(tail.to_numpy(float)), 1)[0])
    return slope, float(tail.index[0]), float(tail.index[-1]), float(tail.iloc[-1])


def bound_slope(t_first: float, t_last: float) -> float:
    """The local log-log slope of log²t/t at the geometric middle t_m of [t_first, t_last]: −1 + 2/ln t_m."""
    return -1 + 2 / math.log(math.sqrt(t_first * t_last))


def _pair(constant: pd.DataFrame, decaying: pd.DataFrame) -> tuple[bool | None, str]:
    """The verdict for one constant-step run against one vanishing-step run of one sampling."""
    a, b = last_decade(constant), last_decade(decaying)
    if a is None or b is None:
        return None, f", fewer than {MIN_POINTS} grid points in the last decade of t, or rows not ok"
    if min(a[3], b[3]) <= FLOOR:
        return None, ", round-off level (no minibatch noise)"
    wanted = bound_slope(b[1], b[2])
    text = (
        f", t = {b[1]:g}–{b[2]:g}: constant steps slope {a[0]:+.2f} (MSE/‖∇f‖² {fmt(a[3])} at t = {a[2]:g}), "
        f"vanishing steps slope {b[0]:+.2f} (log²t/t's {wanted:+.2f}; {fmt(b[3])} at t = {b[2]:g})"
    )
    ball = True if abs(a[0]) <= SLACK else False if a[0] > SLACK else None  # still falling: the ball not reached yet
    rate = True if b[0] <= wanted + SLACK else False if b[0] >= -SLACK else None
    return decide([ball, rate]), text


def sgd_derivatives(df: pd.DataFrame) -> Verdict:
    """Per sampling (common.SAMPLING), every pair of a constant-step and a vanishing-step stoch_itd run
    (never pooled), on the last decade of t of each: the constant run's log-log slope within ±SLACK
    (a noise ball: a stable, non-zero MSE) and the vanishing run's at most log²t/t's local slope +
    SLACK hold; the constant run's slope above SLACK (growing) or the vanishing run's above −SLACK
    (not converging) does not; otherwise (e.g. the constant run still falling), no such pair, or
    round-off-level MSE: undecided."""
    rows = df[df["role"] == "stoch_itd"]
    parts, texts = run_pairs(rows, lambda run: not vanishing(run["overrides"].iloc[0]), _pair)
    return "; ".join(texts) or "no stoch_itd runs with both constant and vanishing steps", decide(parts)


CLAIMS = [
    Claim(
        "S3",
        f"{SOURCE}; decided on stochastic ITD's hypergradient (E's gradients exact), whose error the derivative's bounds",
        "“we demonstrate that with constant step-sizes, these derivatives stabilize within a noise ball centered at the "
        "solution derivative, and that with vanishing step-sizes they exhibit O(log(k)²/k) convergence rates”",
        ("stochastic_steps",),
        f"per problem, setting and batch size, every constant-step stoch_itd run against every vanishing-step one, "
        f"log-log slope of the median (over λ draws) MSE/‖∇f‖² against t over the last decade of t: constant within "
        f"±{SLACK:g} and vanishing ≤ (−1 + 2/ln t_m) + {SLACK:g} (log²t/t's slope at the decade's middle t_m) holds; "
        f"constant > {SLACK:g} or vanishing ≥ −{SLACK:g} does not hold; otherwise undecided",
        sgd_derivatives,
    ),
]
