"""Claims of Grazzi et al. (ICML 2020), §5, on training equilibrium models on MNIST."""

from __future__ import annotations

from typing import Callable

import pandas as pd

from hgbench.analysis.claims.common import CONFIG, Claim, Verdict, declared, labels


def final_accuracies(df: pd.DataFrame) -> pd.DataFrame:
    """Per curve of a training preset (train.csv rows of one configuration and estimator): the last
    evaluated train / validation / test accuracy, whether the run diverged, and its role; columns
    problem, setting_id, estimator, role, train_acc, val_acc, test_acc, diverged."""
    out = []
    for (problem, setting_id, estimator), run in declared(df).groupby([*CONFIG, "estimator"]):
        last = run[run["val_acc"].notna()].sort_values("step").iloc[-1]
        out.append({"problem": problem, "setting_id": setting_id, "estimator": estimator, "role": run["role"].iloc[0],
                    "train_acc": last["train_acc"], "val_acc": float(last["val_acc"]), "test_acc": last["test_acc"],
                    "diverged": bool((run["status"] != "ok").any())})  # fmt: skip
    return pd.DataFrame(out)


def _per_training_config(df: pd.DataFrame, decide: Callable[[pd.DataFrame], Verdict]) -> Verdict:
    """``decide`` (final accuracies of one configuration -> verdict) on every configuration of a
    training preset: the texts joined, True when all hold, None when one cannot decide."""
    final = final_accuracies(df)
    if final.empty:
        return "no training runs", None
    final = final.assign(where=labels(final))
    verdicts = [decide(rows) for _, rows in final.groupby(CONFIG)]
    holds = [h for _, h in verdicts]
    return "; ".join(text for text, _ in verdicts), None if None in holds else all(holds)


def _accuracies(final: pd.DataFrame, column: str) -> str:
    """``column`` of each curve of one configuration in words, its runs that diverged marked."""
    return ", ".join(f"{r.estimator} {getattr(r, column):.3f}{' (diverged)' if r.diverged else ''}" for r in final.itertuples())


def _alike(final: pd.DataFrame) -> Verdict:
    spread = final["test_acc"].max() - final["test_acc"].min()
    text = f"{final['where'].iloc[0]}: test {_accuracies(final, 'test_acc')}, spread {spread:.3f}"
    return text, bool(not final["diverged"].any() and spread <= 0.02)


def train_alike(df: pd.DataFrame) -> Verdict:
    """In every configuration, no run diverged and the final test accuracies lie within 0.02 of
    each other (max − min ≤ 0.02)."""
    return _per_training_config(df, _alike)


def _itd_best(final: pd.DataFrame) -> Verdict:
    text = f"{final['where'].iloc[0]}: val {_accuracies(final, 'val_acc')}"
    itd = final[final["role"] == "itd"]
    if itd.empty:
        return text + " (no itd run)", None
    best = final.loc[final["val_acc"].idxmax()]
    return text, bool(best["role"] == "itd" and not itd["diverged"].any())


def itd_most_stable(df: pd.DataFrame) -> Verdict:
    """In every configuration, no ITD run (role itd) diverged and the highest final validation
    accuracy is an ITD run's."""
    return _per_training_config(df, _itd_best)


CLAIMS = [
    Claim("D1", "Grazzi et al. 2020, §5", "Equilibrium model, map kept a contraction (ρ = 0.99): ITD, AID-FP and AID-CG (normal equations) train about equally well",
          ("deq_train_small",), "no divergence; final test accuracies within 0.02", train_alike),
    Claim("D2", "Grazzi et al. 2020, §5", "Equilibrium model, map not a contraction: ITD is the most stable",
          ("deq_train_small_free",), "ITD does not diverge and ends with the best validation accuracy", itd_most_stable),
]  # fmt: skip
