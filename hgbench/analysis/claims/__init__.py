"""The papers' claims, each decided by the data of the preset that tests it.

A claim is a statement from Grazzi et al. (2020), Ye et al. (2024) or a stochastic paper
(Dagréou et al. 2022; Iutzeler, Pauwels, Vaiter 2024), the preset whose results test it, and a ``check(df) -> (measured, holds)`` that reads only that preset's rows (metrics.csv; outer.csv for the equilibrium model; stochastic.csv for dagreou.py and iutzeler.py):
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

A claim that contrasts two presets (Ye et al.'s Fig. 1a against 1b, 3a against 3b) names them
joined by "+" (``ye2024_fig1a+ye2024_fig1b``): its check reads the rows of both, each frame's
rows marked with their preset's name in a column ``preset`` (every check's rows carry it), and the
table has that row only when every named preset has results.

One module per source: grazzi.py, ye.py, equilibrium.py, dagreou.py, iutzeler.py (each with its CLAIMS); common.py holds
the Claim record and the shared statistics.
"""

from __future__ import annotations

import pandas as pd

from hgbench.analysis.claims import dagreou, equilibrium, grazzi, iutzeler, ye
from hgbench.analysis.claims.common import Claim, paired

CLAIMS: list[Claim] = [*grazzi.CLAIMS, *ye.CLAIMS, *equilibrium.CLAIMS, *dagreou.CLAIMS, *iutzeler.CLAIMS]

__all__ = ["CLAIMS", "Claim", "evaluate", "paired"]


def _rows_of(results: dict[str, pd.DataFrame], preset: str) -> pd.DataFrame | None:
    """The rows of ``preset`` (or of every preset that "a+b" joins), each marked with its preset's
    name in the column ``preset``; None when one of them has no results."""
    names = preset.split("+")
    if not all(name in results for name in names):
        return None
    return pd.concat([results[name].assign(preset=name) for name in names], ignore_index=True)


def evaluate(results: dict[str, pd.DataFrame], claims=CLAIMS) -> pd.DataFrame:
    """One row per (claim, preset) whose preset is in ``results`` (preset name -> its rows)."""
    rows = []
    for claim in claims:
        for preset in claim.presets:
            df = _rows_of(results, preset)
            if df is None:
                continue
            measured, holds = claim.check(df)
            verdict = {True: "holds", False: "does not hold", None: "undecided"}[holds]
            rows.append(
                {
                    "id": claim.id,
                    "source": claim.source,
                    "claim": claim.statement,
                    "preset": preset,
                    "criterion": claim.criterion,
                    "measured": measured,
                    "verdict": verdict,
                }
            )
    return pd.DataFrame(rows, columns=["id", "source", "claim", "preset", "criterion", "measured", "verdict"])
