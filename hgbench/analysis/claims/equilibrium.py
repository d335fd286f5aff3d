"""Claims of Grazzi et al. (ICML 2020), §5, on training equilibrium models on MNIST, decided on
the outer.csv rows of several seeds per estimator (mode=outer on equilibrium_mnist, presets
deq_small and deq_small_free).

The paper's words: "When φᵢ is a contraction all the methods perform similarly." (D1) and "ITD is
the most stable when the contraction assumption is not satisfied." (D2).

Per run (one estimator, one seed) the evidence is: whether it diverged (a non-finite
hypergradient, loss or λ: a ``diverged`` row), the largest ‖A‖₂ over training (``q_bound``,
logged every step: the map is a contraction while ‖A‖₂ < 1), the relative hypergradient error
against the float64 reference at the evaluated steps (``err_rel``), and the final test accuracy
(at the last evaluated step). A run's **score** is its final test accuracy, or chance (1/10) if
it diverged: a model whose parameters are not finite predicts nothing.

Runs are compared within a seed: the estimators of one seed share the data and λ₀ (and the rows'
``setting_id``), so the difference of two estimators' scores is paired by seed. For a pair
(a, b) over the n common seeds, the statistic is the mean paired difference d̄ = mean_s(score_a,s
− score_b,s) and its 90% bootstrap interval [lo, hi] (percentiles 5 and 95 of d̄ over ``RESAMPLES``
resamples of the seeds with replacement, a fixed generator: the verdict is deterministic).
δ = ``DELTA`` (0.02, i.e. 2 points of accuracy) is the difference that matters.

D1, "all the methods perform similarly", where the map is a contraction (every run's max ‖A‖₂ ≤ 1):
    holds          every pair's interval lies inside [−δ, δ]
    does not hold  some pair's interval lies entirely outside it (lo > δ or hi < −δ)
    undecided      otherwise (the seeds' spread is too large for the difference), or fewer than
                   ``MIN_SEEDS`` common seeds, or the map was not a contraction, or the comparison
                   is void: the estimators' hypergradients do not differ measurably. They differ
                   measurably when, for some pair, the median over (seed, evaluated step) of
                   |err_a − err_b| is at least ``TAU`` (1%): by the triangle inequality
                   ‖ĝ_a − ĝ_b‖ ≥ |‖ĝ_a − ∇f‖ − ‖ĝ_b − ∇f‖| at a common λ (exactly at step 0, where
                   all runs of a seed share λ₀; approximately later, where their λ differ by little).
                   Estimators whose hypergradients agree cannot perform differently, so their
                   similarity says nothing about the claim.
D2, "ITD is the most stable", where the map is not a contraction (every run's max ‖A‖₂ > 1).
    "Stable" is about the training run, so D2 is decided on training, not on test accuracy (which
    saturates on these small subsets). A run's training loss is ``outer_value`` (the outer loss,
    mean cross-entropy on the training images, of the model as trained, logged every step); its
    **late loss** is the median of it over the last quarter of the steps (robust to one step's
    oscillation under momentum), or ln 10 (the cross-entropy of a uniform prediction over 10
    classes, as the score above uses chance) if the run diverged. Per other estimator X the paired
    difference over seeds of log₁₀ late loss, d̄ = mean(log₁₀ L_X − log₁₀ L_ITD) (> 0: ITD trains to a
    lower loss), and its 90% bootstrap interval; δ_L = log₁₀ ``TIE`` (a factor 1.25 in loss):
    holds          for every X, lo > −δ_L (ITD not less stable than any), and for some X, lo > δ_L
                   (ITD decisively more stable than at least one: otherwise "most" is vacuous)
    does not hold  for some X, hi < −δ_L (X decisively more stable than ITD)
    undecided      otherwise, or fewer than MIN_SEEDS common seeds, or no ITD run, or the map
                   stayed a contraction in some run
    Divergences (counted per estimator) and the test accuracies are reported beside.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from hgbench.analysis.claims.common import TIE, Claim, Verdict, declared, fmt

CHANCE = 0.1  # the score of a diverged run: chance accuracy on 10 classes
CHANCE_LOSS = float(np.log(10))  # the training loss of a diverged run: cross-entropy of a uniform prediction
DELTA = 0.02  # accuracy difference that matters
DELTA_LOSS = float(np.log10(TIE))  # log₁₀ training-loss difference that matters: a factor 1.25
TAU = 0.01  # relative hypergradient difference that is measurable
MIN_SEEDS = 5
RESAMPLES = 10_000
LEVEL = 0.90


def _setting(overrides: str) -> str:
    """The configuration of a run less its estimator and seed: what the runs compared share."""
    return " ".join(sorted(o for o in str(overrides).split() if not o.startswith(("seed=", "estimator="))))


RUN_COLUMNS = ("problem", "setting", "estimator", "seed", "role", "diverged", "a_max", "err_median", "test_acc", "score", "late_loss")


def runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run (problem, setting, estimator, seed): role, diverged, a_max (max ‖A‖₂ over
    training), err_median (median err_rel at the evaluated steps), test_acc (at the last
    evaluated step), score (test_acc, or CHANCE when diverged) and late_loss (the median training
    loss ``outer_value`` over the last quarter of the steps, or CHANCE_LOSS when diverged)."""
    df = declared(df)
    df = df.assign(setting=[_setting(o) for o in df["overrides"].fillna("")])
    out = []
    for (problem, setting, estimator, seed), run in df.groupby(["problem", "setting", "estimator", "seed"], sort=True):
        evaluated = run[run["test_acc"].notna()].sort_values("step")
        diverged = bool((run["status"] != "ok").any())
        acc = float(evaluated["test_acc"].iloc[-1]) if len(evaluated) else np.nan
        logged = run[run["outer_value"].notna()] if "outer_value" in run else run.iloc[:0]
        late = logged.loc[logged["step"] >= 0.75 * logged["step"].max(), "outer_value"].median() if len(logged) else np.nan
        out.append(
            {
                "problem": problem,
                "setting": setting,
                "estimator": estimator,
                "seed": seed,
                "role": run["role"].iloc[0],
                "diverged": diverged,
                "a_max": run["q_bound"].max(),
                "err_median": run["err_rel"].median(),
                "test_acc": acc,
                "score": CHANCE if diverged else acc,
                "late_loss": CHANCE_LOSS if diverged or not np.isfinite(late) else float(late),
            }
        )
    return pd.DataFrame(out, columns=[*RUN_COLUMNS])


def interval(diffs: np.ndarray) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of the paired differences and its LEVEL bootstrap interval over
    RESAMPLES resamples of the seeds (percentile method, generator seeded 0)."""
    rng = np.random.default_rng(0)
    means = diffs[rng.integers(0, len(diffs), size=(RESAMPLES, len(diffs)))].mean(axis=1)
    tail = 100 * (1 - LEVEL) / 2
    return float(diffs.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def _paired(part: pd.DataFrame, a: str, b: str, column: str) -> np.ndarray:
    """column of estimator a minus that of b, over their common seeds."""
    wide = part.pivot(index="seed", columns="estimator", values=column)[[a, b]].dropna()
    return (wide[a] - wide[b]).to_numpy(float)


def _describe(part: pd.DataFrame) -> str:
    """Per estimator: seeds diverged, max ‖A‖₂, median hypergradient error, final test accuracy mean ± std."""
    words = []
    for estimator, rows in part.groupby("estimator", sort=True):
        words.append(
            f"{estimator}: diverged {int(rows['diverged'].sum())}/{len(rows)}, max ‖A‖₂ {rows['a_max'].max():.3g}, "
            f"median err {fmt(rows['err_median'].median())}, late training loss {fmt(rows['late_loss'].median())} (median), "
            f"test {rows['score'].mean():.3f} ± {rows['score'].std(ddof=1):.3f}"
        )
    return "; ".join(words)


def _seeds(part: pd.DataFrame) -> int:
    """The number of seeds that every estimator of the configuration has."""
    sets = [set(rows["seed"]) for _, rows in part.groupby("estimator")]
    return len(set.intersection(*sets)) if sets else 0


def _measurable(df: pd.DataFrame, part: pd.DataFrame) -> tuple[float, str]:
    """The largest, over pairs of estimators, median over (seed, evaluated step) of |err_a − err_b|."""
    rows = declared(df)
    rows = rows.assign(setting=[_setting(o) for o in rows["overrides"].fillna("")])
    rows = rows[(rows["problem"] == part["problem"].iloc[0]) & (rows["setting"] == part["setting"].iloc[0]) & rows["err_rel"].notna()]
    wide = rows.pivot_table(index=["seed", "step"], columns="estimator", values="err_rel")
    best, where = 0.0, "n/a"
    names = sorted(part["estimator"].unique())
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if a in wide and b in wide:
                gap = (wide[a] - wide[b]).abs().dropna().median()
                if np.isfinite(gap) and gap >= best:
                    best, where = float(gap), f"{a}/{b}"
    return best, where


def _per_configuration(df: pd.DataFrame, decide: Callable[[pd.DataFrame, pd.DataFrame], Verdict]) -> Verdict:
    """``decide`` (the rows, one configuration's runs -> verdict) on every configuration: the texts
    joined, True when all hold, None when one cannot decide."""
    table = runs(df)
    if table.empty:
        return "no training runs", None
    verdicts = [decide(df, part) for _, part in table.groupby(["problem", "setting"], sort=True)]
    holds = [h for _, h in verdicts]
    return " — ".join(text for text, _ in verdicts), None if None in holds else all(holds)


def _alike(df: pd.DataFrame, part: pd.DataFrame) -> Verdict:
    text = _describe(part)
    n = _seeds(part)
    if part["estimator"].nunique() < 2 or n < MIN_SEEDS:
        return f"{text}; {n} common seed(s) of {part['estimator'].nunique()} estimator(s), {MIN_SEEDS} needed", None
    if not (part["a_max"] <= 1).all():
        return f"{text}; max ‖A‖₂ {part['a_max'].max():.3g} > 1: the map was not a contraction", None
    gap, where = _measurable(df, part)
    if not gap >= TAU:
        return f"{text}; hypergradients differ by a median Δerr of {fmt(gap)} < {TAU:g}: the comparison is void at this setting", None
    pairs, inside, outside = [], True, False
    names = sorted(part["estimator"].unique())
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            mean, lo, hi = interval(_paired(part, a, b, "score"))
            pairs.append(f"{a}−{b} {mean:+.3f} [{lo:+.3f}, {hi:+.3f}]")
            inside &= -DELTA <= lo and hi <= DELTA
            outside |= lo > DELTA or hi < -DELTA
    text = f"{text}; hypergradients differ (median Δerr {fmt(gap)}, {where}); test accuracy differences, mean [90% interval] over {n} seeds: {', '.join(pairs)}"
    return text, True if inside else False if outside else None


def alike(df: pd.DataFrame) -> Verdict:
    """D1 (module docstring)."""
    return _per_configuration(df, _alike)


def _itd_most_stable(df: pd.DataFrame, part: pd.DataFrame) -> Verdict:
    text = _describe(part)
    itd = part[part["role"] == "itd"]
    n = _seeds(part)
    if itd.empty or part["estimator"].nunique() < 2 or n < MIN_SEEDS:
        return f"{text}; needs ITD and another estimator on {MIN_SEEDS} common seeds ({n})", None
    if not (part["a_max"] > 1).all():
        return f"{text}; some run kept max ‖A‖₂ ≤ 1 (min {part['a_max'].min():.3g}): the map stayed a contraction", None
    name = itd["estimator"].iloc[0]
    part = part.assign(log_loss=np.log10(part["late_loss"]))
    pairs, not_worse, better, worse = [], True, False, False
    for other in sorted(set(part["estimator"]) - {name}):
        mean, lo, hi = interval(_paired(part, other, name, "log_loss"))
        pairs.append(f"{other}/{name} {mean:+.2f} [{lo:+.2f}, {hi:+.2f}]")
        not_worse &= lo > -DELTA_LOSS
        better |= lo > DELTA_LOSS
        worse |= hi < -DELTA_LOSS
    text = f"{text}; log₁₀ late training loss ratio (> 0: ITD lower), mean [90% interval] over {n} seeds, paired: {', '.join(pairs)}"
    if not worse and not_worse and not better:
        text += "; no estimator decisively more or less stable than ITD at this setting"
    return text, False if worse else True if not_worse and better else None


def itd_most_stable(df: pd.DataFrame) -> Verdict:
    """D2 (module docstring)."""
    return _per_configuration(df, _itd_most_stable)


D1_CRITERION = (
    f"map a contraction (max ‖A‖₂ ≤ 1) and hypergradients differing measurably (median over seeds and steps of the absolute difference of two estimators' err_rel ≥ {TAU:g}); "
    f"holds if every pair's 90% bootstrap interval (over ≥ {MIN_SEEDS} seeds, paired) of the final test accuracy "
    f"difference (chance if diverged) lies in ±{DELTA:g}, does not hold if one lies outside, else undecided"
)
D2_CRITERION = (
    f"map not a contraction (max ‖A‖₂ > 1 in every run); per run the late training loss (median outer loss over the last quarter "
    f"of the steps; ln 10 if diverged); holds if, paired over ≥ {MIN_SEEDS} seeds, the 90% bootstrap interval of mean log₁₀(loss_X/loss_ITD) is "
    f"above −log₁₀ {TIE} for every other X and above +log₁₀ {TIE} for one; does not hold if below −log₁₀ {TIE} for one; else undecided; "
    "divergences and test accuracy reported beside"
)

SLIDES = "Grazzi et al. 2020, talk slides (ICML 2020), on the equilibrium-model experiment"
CLAIMS = [
    Claim(
        "D1",
        SLIDES,
        '"When φᵢ is a contraction all the methods perform similarly." (equilibrium models on MNIST: ITD, AID-FP, AID-CG)',
        ("deq_small",),
        D1_CRITERION,
        alike,
    ),
    Claim(
        "D2",
        SLIDES,
        '"ITD is the most stable when the contraction assumption is not satisfied." (equilibrium models on MNIST)',
        ("deq_small_free", "deq_free_k20"),
        D2_CRITERION,
        itd_most_stable,
    ),
]
