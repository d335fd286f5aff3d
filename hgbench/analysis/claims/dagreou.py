"""Claims of the stochastic bilevel papers, decided by mode=stochastic's rows (stochastic.csv,
hgbench.running.stochastic_mode): Dagréou, Ablin, Vaiter, Moreau, "A framework for bilevel
optimization that enables stochastic and global variance reduction algorithms", NeurIPS 2022.

Rows are selected by ``role`` (saba, soba) and compared within one configuration and sampling
(problem, setting_id, batch, outer_batch, replace), on the medians over λ draws of
``variance_rel`` (the variance of the R seeded repetitions' directions, relative to ‖∇f‖²).
"""

from __future__ import annotations

import itertools

import pandas as pd

from hgbench.analysis.claims.common import Claim, Verdict, decide, fmt

SOURCE = "Dagréou, Ablin, Vaiter, Moreau, NeurIPS 2022, abstract"
VANISH = 1e-3  # SABA's variance must fall by at least 1000× from the first t > 0 to the last
FLAT = 0.1  # SOBA's must stay above a tenth of its first value: no vanishing
FLOOR = 1e-20  # a relative variance at or below is round-off: the full batch, nothing to reduce
SAMPLING = ["problem", "setting_id", "batch", "outer_batch", "replace"]


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
    """Per configuration and sampling (SAMPLING), for every pair of a SABA run and a SOBA run (never
    pooled) at ≥ 3 common t > 0: with v(t) the median variance_rel over λ draws, SABA's v(t_last)/v(t_first) ≤ VANISH while SOBA's
    ≥ FLAT holds; SABA's ratio > FLAT (its variance does not vanish) does not; anything between,
    a diverged row at those t, or no such pair (or only full batches, SOBA's v ≤ FLOOR): undecided."""
    rows_of = df[df["role"].isin(["saba", "soba"])]
    parts, texts = [], []
    for key, rows in rows_of.groupby(SAMPLING, dropna=False):
        runs = {role: dict(list(part.groupby("run_id"))) for role, part in rows.groupby("role")}
        for (saba_run, saba_rows), (soba_run, soba_rows) in itertools.product(runs.get("saba", {}).items(), runs.get("soba", {}).items()):
            verdict, text = _pair(saba_rows, soba_rows)
            if text:
                parts.append(verdict)
                texts.append(
                    f"{key[0]} b = {key[2]}"
                    + (f" [{saba_run[:6]}/{soba_run[:6]}]" if len(runs["saba"]) * len(runs["soba"]) > 1 else "")
                    + text
                )
    return "; ".join(texts) or "no minibatch with saba and soba rows at ≥ 3 common t > 0", decide(parts)


CLAIMS = [
    Claim(
        "D1",
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
]
