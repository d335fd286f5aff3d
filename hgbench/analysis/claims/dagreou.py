"""Claims of the stochastic bilevel papers, decided by mode=stochastic's rows (stochastic.csv,
hgbench.running.stochastic_mode): Dagréou, Ablin, Vaiter, Moreau, "A framework for bilevel
optimization that enables stochastic and global variance reduction algorithms", NeurIPS 2022.

Rows are selected by ``role`` (saba, soba) and compared within one configuration and sampling
(problem, setting_id, batch, outer_batch, replace), on the medians over λ draws of
``variance_rel`` (the variance of the R seeded repetitions' directions, relative to ‖∇f‖²).
"""

from __future__ import annotations

import pandas as pd

from hgbench.analysis.claims.common import Claim, Verdict, decide, fmt
from hgbench.analysis.stochastic import CURVE

SOURCE = "Dagréou, Ablin, Vaiter, Moreau, NeurIPS 2022, abstract"
VANISH = 1e-3  # SABA's variance must fall by at least 1000× from the first t > 0 to the last
FLAT = 0.1  # SOBA's must stay above a tenth of its first value: no vanishing
FLOOR = 1e-20  # a relative variance at or below is round-off: the full batch, nothing to reduce


def saba_variance_vanishes(df: pd.DataFrame) -> Verdict:
    """Per configuration and sampling where both roles have ok rows at ≥ 3 common t > 0: with
    v(t) the median variance_rel over λ draws, SABA's v(t_last)/v(t_first) ≤ VANISH while SOBA's
    ≥ FLAT holds; SABA's ratio > FLAT (its variance does not vanish) does not; anything between,
    a diverged row at those t, or no such pair (or only full batches, SOBA's v ≤ FLOOR): undecided."""
    ok = df[df["role"].isin(["saba", "soba"])]
    group = [c for c in CURVE if c != "estimator"]
    parts, texts = [], []
    for key, rows in ok.groupby(group, dropna=False):
        if set(rows["role"]) != {"saba", "soba"}:
            continue
        ts = sorted(set.intersection(*(set(part["t"]) for _, part in rows.groupby("role"))) - {0})
        medians = {role: part[part["status"] == "ok"].groupby("t")["variance_rel"].median() for role, part in rows.groupby("role")}
        label = f"{key[0]} b = {key[2]}"
        if (rows[rows["t"].isin(ts)]["status"] != "ok").any():
            parts.append(None)
            texts.append(f"{label}: diverged rows")
            continue
        if len(ts) < 3 or medians["soba"][ts[0]] <= FLOOR:
            continue
        first, last = ts[0], ts[-1]
        saba, soba = (medians[r][last] / medians[r][first] for r in ("saba", "soba"))
        parts.append(True if saba <= VANISH and soba >= FLAT else False if saba > FLAT else None)
        texts.append(
            f"{label}, t = {first} → {last}: SABA {fmt(medians['saba'][first])} → {fmt(medians['saba'][last])} "
            f"(×{fmt(saba)}), SOBA {fmt(medians['soba'][first])} → {fmt(medians['soba'][last])} (×{fmt(soba)})"
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
        f"per problem, setting and batch size < n with saba and soba at ≥ 3 common t > 0 (same step): median over λ draws of "
        f"variance_rel at the last t / at the first t — SABA ≤ {VANISH:g} and SOBA ≥ {FLAT:g} holds; SABA > {FLAT:g} does "
        f"not hold; otherwise, or diverged rows, undecided",
        saba_variance_vanishes,
    ),
]
