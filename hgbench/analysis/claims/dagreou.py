"""Claims of the stochastic bilevel papers: Dagréou, Ablin, Vaiter, Moreau, "A framework for bilevel
optimization that enables stochastic and global variance reduction algorithms", NeurIPS 2022.

S1 is decided by mode=stochastic's rows (stochastic.csv, hgbench.running.stochastic_mode): rows
selected by ``role`` (saba, soba) and compared within one configuration and sampling (problem,
setting_id, batch, outer_batch, replace), on the medians over λ draws of ``variance_rel`` (the
variance of the R seeded repetitions' directions, relative to ‖∇f‖²).

S2 is decided by mode=bilevel's rows (bilevel.csv, hgbench.running.bilevel_mode): each SABA run's
exact ‖∇f(λ_s)‖² relative to its start (``grad_norm2_rel``) against the iteration s.
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from hgbench.analysis.claims.common import Claim, Verdict, decide, fmt, run_pairs

SOURCE = "Dagréou, Ablin, Vaiter, Moreau, NeurIPS 2022, abstract"
VANISH = 1e-3  # SABA's variance must fall by at least 1000× from the first t > 0 to the last
FLAT = 0.1  # SOBA's must stay above a tenth of its first value: no vanishing
FLOOR = 1e-20  # a relative variance at or below is round-off: the full batch, nothing to reduce


def _pair(saba: pd.DataFrame, soba: pd.DataFrame) -> tuple[bool | None, str]:
    """The verdict and its evidence for one SABA run against one SOBA run of one sampling ("" when
    they cannot be compared: fewer than 3 common t > 0, or a full batch)."""
    ts = sorted(set(saba["t"]) & set(soba["t"]) - {0})
    if len(ts) < 3:
        return None, ""
    if (pd.concat([saba, soba]).loc[lambda d: d["t"].isin(ts), "status"] != "ok").any():
        return None, ": diverged rows"
    v = {name: rows.groupby("t")["variance_rel"].median() for name, rows in (("saba", saba), ("soba", soba))}
    first, last = ts[0], ts[-1]
    if v["soba"][first] <= FLOOR:
        return None, ""
    a, b = v["saba"][last] / v["saba"][first], v["soba"][last] / v["soba"][first]
    text = (
        f", t = {first} → {last}: SABA {fmt(v['saba'][first])} → {fmt(v['saba'][last])} (×{fmt(a)}), "
        f"SOBA {fmt(v['soba'][first])} → {fmt(v['soba'][last])} (×{fmt(b)})"
    )
    return (True if a <= VANISH and b >= FLAT else False if a > FLAT else None), text


def saba_variance_vanishes(df: pd.DataFrame) -> Verdict:
    """Per configuration and sampling (common.SAMPLING), for every pair of a SABA run and a SOBA run (never
    pooled) at ≥ 3 common t > 0: with v(t) the median variance_rel over λ draws, SABA's v(t_last)/v(t_first) ≤ VANISH while SOBA's
    ≥ FLAT holds; SABA's ratio > FLAT (its variance does not vanish) does not; anything between,
    a diverged row at those t, or no such pair (or only full batches, SOBA's v ≤ FLOOR): undecided."""
    rows = df[df["role"].isin(["saba", "soba"])]
    parts, texts = run_pairs(rows, lambda run: run["role"].iloc[0] == "saba", _pair)
    return "; ".join(texts) or "no minibatch with saba and soba rows at ≥ 3 common t > 0", decide(parts)


LINEAR_FROM = 1e-2  # the rate is measured below this ratio: past the transient of z and v
LINEAR_DEPTH = 1e-10  # linear convergence must take ‖∇f‖² ten decades down within the run
STALL = 1e-4  # a SABA run whose certified ratio never falls below this has not converged linearly
MIN_ROWS = 6  # certified evaluations below LINEAR_FROM needed to compare two halves' rates
KEEP = 0.5  # a linear rate is constant: the second half's at least half the first's (noise aside)
SLOWS = 1 / 3  # under a third of the first's: the rate decays (a power law r ∝ s^{-p} gives ≈ 1/4 over s = 50–3000)


def _decades_per_iteration(rows: pd.DataFrame) -> float:
    """−slope of the least-squares line of log₁₀ grad_norm2_rel against the iteration (decades gained per iteration)."""
    return -float(np.polyfit(rows["iteration"].to_numpy(float), np.log10(rows["grad_norm2_rel"].to_numpy(float)), 1)[0])


def _linear(rows: pd.DataFrame) -> tuple[bool | None, str]:
    """One SABA run: its certified rows (status ok) at s > 0; the rate (decades per 1000 iterations)
    over the first and the second half (by iteration) of those at ratio ≤ LINEAR_FROM."""
    ok = rows[(rows["status"] == "ok") & (rows["iteration"] > 0) & np.isfinite(rows["grad_norm2_rel"])].sort_values("iteration")
    if ok.empty:
        return None, "no certified evaluation"
    best = float(ok["grad_norm2_rel"].min())
    tail = ok[ok["grad_norm2_rel"] <= LINEAR_FROM]
    if len(tail) < MIN_ROWS:
        if best > STALL:
            return False, f"best ratio {fmt(best)} (never below {STALL:g})"
        return None, f"{len(tail)} certified evaluations below {LINEAR_FROM:g} (fewer than {MIN_ROWS})"
    half = len(tail) // 2
    first, second = 1000 * _decades_per_iteration(tail.iloc[:half]), 1000 * _decades_per_iteration(tail.iloc[half:])
    span = f"s = {int(tail['iteration'].iloc[0])}–{int(tail['iteration'].iloc[-1])}"
    text = f"{span}: ratio {fmt(float(tail['grad_norm2_rel'].iloc[0]))} → {fmt(best)}, {fmt(first)} then {fmt(second)} decades per 1000 iterations"
    if best > STALL or second < SLOWS * first:
        return False, text
    if best <= LINEAR_DEPTH and first > 0 and second >= KEEP * first:
        return True, text
    return None, text


def saba_converges_linearly(df: pd.DataFrame) -> Verdict:
    """Per SABA run (run_id; never pooled): on its certified evaluations at ratio ≤ LINEAR_FROM, the
    rates of decrease of log₁₀ ‖∇f‖² per iteration over the first and the second half — linear
    convergence keeps its rate. Holds: ratio ≤ LINEAR_DEPTH reached and the second half's rate ≥
    KEEP × the first's (> 0); does not hold: the ratio never below STALL, or the second half's rate
    under SLOWS × the first's (a sublinear tail); otherwise, or no SABA rows, undecided. SOBA's
    best ratio, where the preset ran it, is reported beside (not part of the verdict)."""
    parts, texts = [], []
    for (problem, run), rows in df[df["solver"] == "saba"].groupby(["problem", "run_id"]):
        verdict, text = _linear(rows)
        parts.append(verdict)
        texts.append(f"{problem} b = {int(rows['batch'].iloc[0])} [{run[:6]}]: {text}")
    soba = df[(df["solver"] == "soba") & (df["status"] == "ok") & (df["iteration"] > 0)]
    if len(soba):
        texts.append(f"beside it SOBA's best ratio {fmt(float(soba['grad_norm2_rel'].min()))}")
    return "; ".join(texts) or "no saba rows", decide(parts)


CLAIMS = [
    Claim(
        "S1",
        f"{SOURCE}; decided at a frozen λ for the direction D_λ (the outer variable held, so that only z, v and the "
        "directions' estimates move)",
        "“The simplicity of our approach allows us to develop global variance reduction algorithms, where the dynamics "
        "of all variables is subject to variance reduction.” — SABA's direction variance vanishes as t grows at a fixed "
        "batch size, where SOBA's does not",
        ("stochastic_vr",),
        f"per problem, setting and batch size < n, every saba run against every soba run (the preset gives both one step) at ≥ 3 "
        f"common t > 0: median over λ draws of "
        f"variance_rel at the last t / at the first t — SABA ≤ {VANISH:g} and SOBA ≥ {FLAT:g} holds; SABA > {FLAT:g} does "
        f"not hold; otherwise, or diverged rows, undecided",
        saba_variance_vanishes,
    ),
    Claim(
        "S2",
        "Dagréou, Ablin, Vaiter, Moreau, NeurIPS 2022, abstract (the sentence's second half is decided; the "
        "Polyak–Łojasiewicz hypothesis holds on the preset's draw: its value function is a strongly convex quadratic, "
        "tested in tests/test_claims_stochastic.py)",
        "“We demonstrate that SABA, an adaptation of the celebrated SAGA algorithm in our framework, has O(1/T) "
        "convergence rate, and that it achieves linear convergence under Polyak-Łojasiewicz assumption.” — with "
        "constant steps, SABA's exact ‖∇f(x_s)‖² falls geometrically in s",
        ("bilevel",),
        f"per SABA run, on its certified evaluations with ‖∇f‖²/‖∇f(x₀)‖² ≤ {LINEAR_FROM:g} (at least {MIN_ROWS}): the "
        f"least-squares rate of log₁₀ of it per iteration over the first and the second half — holds if the ratio reaches "
        f"≤ {LINEAR_DEPTH:g} and the second half's rate is ≥ {KEEP:g} × the first's; does not hold if the ratio never falls "
        f"below {STALL:g} or the second rate is under {SLOWS:.2g} × the first (a sublinear tail); otherwise undecided",
        saba_converges_linearly,
    ),
]
