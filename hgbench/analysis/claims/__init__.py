"""The papers' claims, each decided by the data of the preset that tests it.

A claim is a statement from Grazzi et al. (2020) or Ye et al. (2024), the preset whose results
test it, and a ``check(df) -> (measured, holds)`` that reads only that preset's rows (metrics.csv; outer.csv for the equilibrium model):
``measured`` is the figure the verdict rests on, in words; ``holds`` is True, False, or None when
the preset's rows cannot decide (e.g. a --quick run too short for a rate). ``hgbench reproduce``
writes the table of all claims whose presets have results (claims.md).

Rows are selected by what they declare, never by name: the estimator's ``role`` (the paper method
it computes: itd, fp, cg, exact, precond_jacobi, ...) and the problem's ``min_min`` (E is the inner
loss); ``theory.declared`` supplies both for results written before those columns existed.
Statistics are computed per configuration (problem, setting_id), never pooled across two: a curve is
one estimator's rows in one configuration, and a claim comparing two roles compares, in every
configuration, every pair of curves with those roles. A claim holds when it holds for every
configuration (or pair) of the preset that has the curves it needs.

One module per source: grazzi.py, ye.py, equilibrium.py (each with its CLAIMS); common.py holds
the Claim record and the shared statistics.
"""

from __future__ import annotations

import pandas as pd

from hgbench.analysis.claims import equilibrium, grazzi, ye
from hgbench.analysis.claims.common import Claim, paired

CLAIMS: list[Claim] = [*grazzi.CLAIMS, *ye.CLAIMS, *equilibrium.CLAIMS]

__all__ = ["CLAIMS", "Claim", "evaluate", "paired"]


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
