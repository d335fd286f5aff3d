"""What every claim module shares: the Claim record, the verdict type, and the statistics that
pair the curves of two roles within one configuration."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pandas as pd

from hgbench.analysis.theory import CONFIG, declared

Verdict = tuple[str, Optional[bool]]
PAIR = [*CONFIG, "estimator_a", "estimator_b"]

# Two errors of DIFFERENT estimators (medians or means over a few λ draws or seeds) within a factor
# TIE of each other are a tie: neither is "lower". 1.25 is about the spread of such a median over
# the 5–10 draws of a preset (e.g. the draws' factors 0.9–1.1 around it in this project's tests).
TIE = 1.25
# Two numbers that are equal by construction (two bounds with c₂ = 0, an estimator's error against
# itself) come out of float64 arithmetic within a few ulps of each other: ratios within ROUNDOFF of
# 1 are equal. (Relative 1e-9 is far above float64's 2.2e-16 and far below any material factor.)
ROUNDOFF = 1e-9


# the columns fixing how mode=stochastic's minibatches were drawn: runs are compared only within one
SAMPLING = ["problem", "setting_id", "batch", "outer_batch", "replace"]


def run_pairs(rows: pd.DataFrame, first: Callable[[pd.DataFrame], bool], judge) -> tuple[list, list[str]]:
    """mode=stochastic's runs compared two by two, never pooled: per SAMPLING, every pair of a run
    whose rows satisfy ``first`` and a run whose rows do not (e.g. SABA against SOBA), judged by
    ``judge(first_rows, second_rows) -> (verdict, text)``; a pair with an empty text cannot be
    compared and is left out. Returns the verdicts and, per pair, "PROBLEM b = B[ ids]TEXT"."""
    parts, texts = [], []
    for key, group in rows.groupby(SAMPLING, dropna=False):
        runs = dict(list(group.groupby("run_id")))
        pairs = list(itertools.product([r for r in runs if first(runs[r])], [r for r in runs if not first(runs[r])]))
        for one, other in pairs:
            verdict, text = judge(runs[one], runs[other])
            if text:
                parts.append(verdict)
                texts.append(f"{key[0]} b = {key[2]}" + (f" [{one[:6]}/{other[:6]}]" if len(pairs) > 1 else "") + text)
    return parts, texts


def decide(parts: list[Optional[bool]]) -> Optional[bool]:
    """A claim's verdict from its parts' (configurations', curves', presets'): False when one does
    not hold, True when every one holds, None (undecided) otherwise or when there are none."""
    if False in parts:
        return False
    return True if parts and all(p is True for p in parts) else None


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
    """Median err_rel over λ draws of every curve at every ``x`` (ok rows only): columns problem,
    setting_id, estimator, role, ``x``, err_rel."""
    ok = declared(df)
    ok = ok[ok["status"] == "ok"]
    return ok.groupby([*CONFIG, "estimator", "role", x])["err_rel"].median().reset_index()


def paired(df: pd.DataFrame, x: str, a: str, b: str) -> pd.DataFrame:
    """Every pair of curves of roles ``a`` and ``b`` in one configuration, at the ``x`` both have:
    columns problem, setting_id, ``x``, estimator_a, err_a, estimator_b, err_b (median err_rel)."""
    med = medians(df, x)

    def side(role: str, s: str) -> pd.DataFrame:
        rows = med[med["role"] == role].drop(columns="role")
        return rows.rename(columns={"estimator": f"estimator_{s}", "err_rel": f"err_{s}"})

    return side(a, "a").merge(side(b, "b"), on=[*CONFIG, x])


def per_pair(pairs: pd.DataFrame, values: pd.Series, how: str) -> pd.DataFrame:
    """``values`` (one per row of ``pairs``) reduced by ``how`` over each pair: columns of PAIR, value."""
    return pairs.assign(value=values).groupby(PAIR)["value"].agg(how).reset_index()


def labels(table: pd.DataFrame, names: tuple[str, ...] = ()) -> pd.Series:
    """How ``measured`` names each row's configuration: its problem, with the first 8 characters
    of its setting_id where the table holds several configurations of that problem, and the estimator
    names in the columns ``names`` where it holds several rows of that configuration."""
    label = table["problem"].astype(str)
    several_runs = table.groupby("problem")["setting_id"].transform("nunique") > 1
    label = label.where(~several_runs, label + " [" + table["setting_id"].str[:8] + "]")
    if names:
        several_rows = table.groupby(CONFIG)["problem"].transform("size") > 1
        label = label.where(~several_rows, label + " (" + table[list(names)].astype(str).agg("/".join, axis=1) + ")")
    return label


def fmt(x: float) -> str:
    return f"{x:.2g}" if np.isfinite(x) else "n/a"
