"""The papers' claims (hgbench.analysis.claims) decided on synthetic result tables.

Every table is built from formulas whose verdict follows from the math: an error err(t) = c·qᵗ has
the fitted rate q, err = C·eˢ against the inner error e has the slope s, and each curve's λ draws
are err scaled by 0.9, 1 and 1.1, so the median over draws is err itself. Rows carry the columns of
metrics.csv (train.csv for the training claims), including the declared ``role``, ``min_min`` and
``setting_id``; problems are named ``*_inner`` exactly when min–min, so that the fallback for results
without those columns (theory.declared) reads the same tables the same way.
"""

import math

import numpy as np
import pandas as pd
import pytest

from hgbench.analysis.claims import CLAIMS, evaluate
from hgbench.analysis.theory import declared, rate_table

Q = 0.9
DRAWS = (0.9, 1.0, 1.1)  # per-draw factors of err: their median is 1
DIAG = [(t, t, Q**t) for t in range(0, 101, 5)]  # (t, k, inner error): cold start, k = t
INNER = [(t, math.nan, 0.5 ** (t + 1)) for t in range(18)]  # the iterates w_t, inner errors 0.5 … 3.8e-6


def rows(curves, points, grid, problem="toy_linear", setting_id="r1", q=Q, kappa=10.0):
    """metrics.csv rows: for each (estimator, role) -> err(t, k, e) of ``curves``, every λ draw
    and every (t, k, inner error e) of ``points``."""
    out = []
    for (name, role), err in curves.items():
        for lam_id, factor in enumerate(DRAWS):
            for t, k, e in points:
                value = factor * err(t, k, e)
                out.append({"problem": problem, "estimator": name, "role": role, "min_min": problem.endswith("_inner"),
                            "setting_id": setting_id, "grid": grid, "seed": 0, "lam_id": lam_id, "t": t, "k": k,
                            "err_rel": value, "err_abs": 3.0 * value, "inner_err": e, "q": q, "kappa": kappa,
                            "dtype": "float64", "device": "cpu", "status": "ok", "reason": ""})  # fmt: skip
    return pd.DataFrame(out)


def geometric(c, q):
    """c·qᵗ: fitted rate q in t."""
    return lambda t, k, e: c * q**t


def in_k(p):
    """pᵏ: fitted rate p in k."""
    return lambda t, k, e: p**k


def rises(q):
    """ITD's bound (1 + t)·qᵗ: it rises at t = 0 iff 1 + ln q > 0, i.e. q > 1/e."""
    return lambda t, k, e: (1 + t) * q**t


def inner(curves, problem="toy_linear", setting_id="r1"):
    """grid=inner rows: err = C·eˢ (slope s, constant C) for each (estimator, role) -> (C, s)."""
    laws = {key: (lambda t, k, e, c=c, s=s: c * e**s) for key, (c, s) in curves.items()}
    return rows(laws, INNER, "inner", problem, setting_id)


def train(finals, setting_id="r1"):
    """train.csv rows: per (estimator, role) -> (final val_acc, final test_acc, diverged),
    evaluated at steps 0, 2 (accuracy 0.1) and 4 (the final ones), batch rows in between."""
    out = []
    for (name, role), (val, test, diverged) in finals.items():
        for step in range(5):
            acc = (val, test) if step == 4 else (0.1, 0.1) if step % 2 == 0 else (math.nan, math.nan)
            out.append({"problem": "toy_deq", "estimator": name, "role": role, "setting_id": setting_id, "step": step,
                        "val_acc": acc[0], "test_acc": acc[1], "train_acc": acc[1],
                        "status": "diverged" if diverged and step == 4 else "ok"})  # fmt: skip
    return pd.DataFrame(out, columns=["problem", "estimator", "role", "setting_id", "step", "val_acc", "test_acc", "train_acc", "status"])


FP, ITD, CG, CG_NORMAL = ("fp", "fp"), ("itd", "itd"), ("cg", "cg"), ("cg_normal", "cg_normal")  # (estimator, role)
EXACT, JACOBI = ("exact", "exact"), ("precond_jacobi", "precond_jacobi")
P_100 = (math.sqrt(100) - 1) / (math.sqrt(100) + 1)  # CG's rate at κ = 100
K_SWEEP = [(6000, k, 1e-13) for k in range(0, 51, 5)]  # inner problem solved
T_LONG = [(t, t, 0.99**t) for t in range(0, 301, 10)]


def slope_cases(role, min_min, holds, fails, undecided):
    """A slope claim on ``role``: slopes ``holds``, ``fails`` and ``undecided`` give those verdicts;
    the other min–min class and another role carry slopes that must be ignored."""
    own, other = ("toy_inner", "toy_linear") if min_min else ("toy_linear", "toy_inner")
    distractors = pd.concat([inner({(role, role): (1.0, fails)}, other), inner({("jfb", "jfb"): (1.0, 0.0)}, own)])
    return {
        "holds": lambda: pd.concat([inner({(role, role): (0.3, holds)}, own), distractors]),
        "does not hold": lambda: pd.concat([inner({(role, role): (0.3, fails)}, own), distractors]),
        "undecided": lambda: pd.concat([inner({(role, role): (0.3, undecided)}, own), distractors]),
    }


def linear_cases(role):
    """Linear: slope 1 holds, 1.5 does not, 1.35 is undecided (round-off does not hold: tested below)."""
    return slope_cases(role, False, 1.0, 1.5, 1.35)


def quadratic_cases(role, min_min=False):
    """Quadratic: slope 2 holds, 1 does not, 1.5 is undecided (round-off holds: tested below)."""
    return slope_cases(role, min_min, 2.0, 1.0, 1.5)


def ranking(ratio):
    """Jacobi with constant 0.1, both reparameterizations with ratio × that, all slope 1."""
    return inner({JACOBI: (0.1, 1.0), ("reparam_diag", "reparam_diag"): (0.1 * ratio, 1.0), ("reparam_exp", "reparam_exp"): (0.1 * ratio, 1.0)})


CASES = {
    "G1": {  # fitted rates in t of itd and fp against q: 1.2·log q is within 30%, 1.4·log q is not
        "holds": lambda: rows({FP: geometric(0.4, Q), ITD: geometric(0.4, Q**1.2)}, DIAG, "diag"),
        "does not hold": lambda: rows({FP: geometric(0.4, Q), ITD: geometric(0.4, Q**1.4)}, DIAG, "diag"),
        "undecided": lambda: rows({FP: geometric(0.4, Q), ITD: geometric(0.4, Q)}, DIAG[:2], "diag"),  # one t > 0
    },
    "G2": {  # err(fp)/err(itd) = 0.5 or 1.05 at every t; below 1e-12 nothing is judged
        "holds": lambda: rows({FP: geometric(0.5, Q), ITD: geometric(1.0, Q)}, DIAG, "diag"),
        "does not hold": lambda: rows({FP: geometric(1.05, Q), ITD: geometric(1.0, Q)}, DIAG, "diag"),
        "undecided": lambda: rows({FP: geometric(1e-13, Q), ITD: geometric(1e-13, Q)}, DIAG, "diag"),
    },
    "G3": {  # err(cg)/err(fp) = 2.5 (within 3) or 1/3.5 (a factor 3.5 the other way); no t ≥ 10
        "holds": lambda: rows({CG: geometric(2.5, Q), FP: geometric(1.0, Q)}, DIAG, "diag"),
        "does not hold": lambda: rows({CG: geometric(1 / 3.5, Q), FP: geometric(1.0, Q)}, DIAG, "diag"),
        "undecided": lambda: rows({CG: geometric(1.0, Q), FP: geometric(1.0, Q)}, DIAG[:2], "diag"),
    },
    "G4": {  # at k = 50: (p/q)⁵⁰ with p = 9/11 (κ = 100) is 7e-5 < 1e-2, (0.95/0.99)⁵⁰ = 0.13 is not
        "holds": lambda: rows({CG: in_k(P_100), FP: in_k(0.99)}, K_SWEEP, "k_sweep", q=0.99, kappa=100.0),
        "does not hold": lambda: rows({CG: in_k(0.95), FP: in_k(0.99)}, K_SWEEP, "k_sweep", q=0.99, kappa=100.0),
        "undecided": lambda: rows({CG: in_k(P_100), FP: in_k(0.99)}, K_SWEEP[:-2], "k_sweep", q=0.99),  # k ≤ 40
    },
    "G5": {  # (1 + t)·qᵗ rises first iff q > 1/e; an fp curve that never rises must not count
        "holds": lambda: rows({ITD: rises(0.99), FP: geometric(1.0, 0.99)}, T_LONG, "diag"),
        "does not hold": lambda: rows({ITD: rises(0.3)}, T_LONG, "diag"),
        "undecided": lambda: rows({ITD: rises(0.99)}, T_LONG[1:], "diag"),  # no t = 0
    },
    "Y1": linear_cases("exact"),
    "Y2": quadratic_cases("precond_newton"),
    "Y3": {  # both slopes 1; C_jacobi / C_vanilla = 0.1 or 2; a min–min pair that would fail is ignored
        "holds": lambda: pd.concat([inner({JACOBI: (0.1, 1.0), EXACT: (1.0, 1.0)}), inner({JACOBI: (5.0, 2.0), EXACT: (1.0, 2.0)}, "toy_inner")]),
        "does not hold": lambda: inner({JACOBI: (2.0, 1.0), EXACT: (1.0, 1.0)}),
        "undecided": lambda: pd.concat([inner({JACOBI: (0.1, 1.0)}), inner({EXACT: (1.0, 1.0)}, "toy_inner")]),
    },
    "Y4": quadratic_cases("exact", min_min=True),
    "Y5": linear_cases("reparam_diag"),
    "Y6": quadratic_cases("reparam_opt"),
    "Y7": {"holds": lambda: ranking(10.0), "does not hold": lambda: ranking(0.5), "undecided": lambda: ranking(1.1)},
    "D1": {  # final test accuracies spread 0.015 ≤ 0.02, or 0.04; a diverged run fails too (below)
        "holds": lambda: train({ITD: (0.9, 0.88, False), FP: (0.9, 0.89, False), CG_NORMAL: (0.9, 0.895, False)}),
        "does not hold": lambda: train({ITD: (0.9, 0.88, False), FP: (0.9, 0.92, False), CG_NORMAL: (0.9, 0.9, False)}),
        "undecided": lambda: train({}),
    },
    "D2": {  # the best final validation accuracy is ITD's, or another's; no ITD run: undecided
        "holds": lambda: train({ITD: (0.9, 0.9, False), FP: (0.5, 0.5, True), CG_NORMAL: (0.7, 0.7, False)}),
        "does not hold": lambda: train({ITD: (0.6, 0.6, False), FP: (0.5, 0.5, True), CG_NORMAL: (0.7, 0.7, False)}),
        "undecided": lambda: train({FP: (0.5, 0.5, False), CG_NORMAL: (0.7, 0.7, False)}),
    },
}
CASE_LIST = [(claim_id, verdict) for claim_id, cases in CASES.items() for verdict in cases]


def verdict(claim_id, df):
    """The claims table's verdict of claim ``claim_id`` on ``df`` as its first preset's results."""
    claim = next(c for c in CLAIMS if c.id == claim_id)
    return evaluate({claim.presets[0]: df}, [claim])["verdict"].item()


def test_every_claim_is_tested():
    assert set(CASES) == {c.id for c in CLAIMS}


@pytest.mark.parametrize("claim_id, expected", CASE_LIST)
def test_verdict_follows_from_the_formulas(claim_id, expected):
    assert verdict(claim_id, CASES[claim_id][expected]()) == expected


@pytest.mark.parametrize("claim_id", ["D1", "D2"])
def test_a_diverged_run_fails_the_training_claims(claim_id):
    """ITD's accuracy the best, the test accuracies equal, but a run diverged: D1 allows no
    divergence, D2 none of ITD."""
    diverged = ITD if claim_id == "D2" else FP
    finals = {ITD: (0.9, 0.88), FP: (0.8, 0.88)}
    assert verdict(claim_id, train({key: (*acc, key == diverged) for key, acc in finals.items()})) == "does not hold"
    assert verdict(claim_id, train({key: (*acc, False) for key, acc in finals.items()})) == "holds"


@pytest.mark.parametrize("claim_id, expected", CASE_LIST)
def test_renamed_estimators_give_the_same_verdicts(claim_id, expected):
    """Rows are chosen by role: estimator names (my_fp with role fp, ...) do not matter."""
    df = CASES[claim_id][expected]()
    renamed = df.assign(estimator="my_" + df["estimator"])
    assert verdict(claim_id, renamed) == expected


@pytest.mark.parametrize("claim_id, expected", CASE_LIST)
def test_results_without_declared_columns_fall_back_to_names(claim_id, expected):
    """Old CSVs lack role, min_min and setting_id; the standard names and the _inner suffix stand in."""
    df = CASES[claim_id][expected]().drop(columns=["role", "min_min", "setting_id"], errors="ignore")
    assert verdict(claim_id, df) == expected


def test_declared_derives_roles_only_where_the_columns_are_missing():
    old = pd.DataFrame({"problem": ["a_inner", "a_validation"], "estimator": ["itd_forward", "fp"]})
    got = declared(old)
    assert list(got["role"]) == ["itd", "fp"] and list(got["min_min"]) == [True, False] and list(got["setting_id"]) == ["", ""]
    new = old.assign(role=["itd", "cg"], min_min=[False, True], setting_id=["x", None])
    got = declared(new)
    assert list(got["role"]) == ["itd", "cg"] and list(got["min_min"]) == [False, True] and list(got["setting_id"]) == ["x", ""]


def test_two_configurations_of_one_problem_are_not_pooled():
    """err(fp)/err(itd) is 0.1 in run A and 2 in run B (one draw each): B fails G2. Pooled, the
    medians over both runs' draws would be fp (0.1 + 0.02)/2 and itd (1 + 0.01)/2, ratio 0.12."""
    run_a = rows({FP: geometric(0.1, Q), ITD: geometric(1.0, Q)}, DIAG, "diag", setting_id="runA").query("lam_id == 1")
    run_b = rows({FP: geometric(0.02, Q), ITD: geometric(0.01, Q)}, DIAG, "diag", setting_id="runB").query("lam_id == 1")
    assert verdict("G2", run_a) == "holds" and verdict("G2", run_b) == "does not hold"
    both = pd.concat([run_a, run_b])
    table = evaluate({"grazzi2020": both}, [c for c in CLAIMS if c.id == "G2"])
    assert table["verdict"].item() == "does not hold"
    assert "toy_linear [runA]: 0.10" in table["measured"].item() and "toy_linear [runB]: 2.00" in table["measured"].item()
    assert verdict("G2", both.assign(setting_id="same")) == "holds"  # what pooling would have said


def test_exact_at_roundoff_passes_a_quadratic_claim_and_fails_a_linear_one():
    """Newton on ridge lands on w* in one step: its error is round-off at every level, which is
    better than quadratic (Y2 holds) and not linear (Y1, on such a curve, does not hold)."""
    exact = inner({("precond_newton", "precond_newton"): (1e-14, 0.0), EXACT: (1e-14, 0.0)})
    assert verdict("Y2", exact) == "holds" and "round-off (exact)" in evaluate({"ye2024_fig1a": exact}, [c for c in CLAIMS if c.id == "Y2"])["measured"].item()
    assert verdict("Y1", exact) == "does not hold"


def test_two_configurations_are_fitted_apart():
    """Slopes 1 (run A) and 1.5 (run B) with the same λ draws: Y1 fails on B; pooled fits would
    interleave the two runs' iterates."""
    both = pd.concat([inner({EXACT: (0.3, 1.0)}, setting_id="runA"), inner({EXACT: (0.3, 1.5)}, setting_id="runB")])
    table = evaluate({"ye2024_ridge": both}, [c for c in CLAIMS if c.id == "Y1"])
    assert table["verdict"].item() == "does not hold"
    assert table["measured"].item() == "toy_linear [runA]: 1.00, toy_linear [runB]: 1.50"


def test_rate_table_predicts_by_role_per_configuration():
    """A renamed CG (my_cg, role cg) gets CG's rate p = (√κ−1)/(√κ+1) in k; an estimator without
    a role none; two run_ids of one problem give two rows each."""
    a = rows({("my_cg", "cg"): in_k(P_100), ("mine", None): in_k(0.5)}, K_SWEEP, "k_sweep", setting_id="a", kappa=100.0)
    b = a.assign(setting_id="b", err_rel=a["err_rel"] ** 2)  # rate p² in run b
    table = rate_table(pd.concat([a, b])).set_index(["setting_id", "estimator"])
    assert table.loc[("a", "my_cg"), "predicted_rate"] == pytest.approx(P_100)
    assert table.loc[("a", "my_cg"), "fitted_rate"] == pytest.approx(P_100)
    assert table.loc[("b", "my_cg"), "fitted_rate"] == pytest.approx(P_100**2)
    assert np.isnan(table.loc[("a", "mine"), "predicted_rate"]) and table.loc[("a", "mine"), "predicted_formula"] == "—"
