"""The equilibrium-model claims D1, D2 (hgbench.analysis.claims.equilibrium) decided on synthetic
outer.csv frames whose verdicts follow from the rules: paired differences (of final test
accuracies for D1, of log₁₀ late training losses for D2) that are constant over seeds have a
zero-width bootstrap interval (at their value), differences alternating in sign over the seeds
straddle ±δ, a diverged run scores chance (accuracy 0.1, training loss ln 10)."""

import numpy as np
import pandas as pd
import pytest

from hgbench.analysis.claims import evaluate
from hgbench.analysis.claims.equilibrium import CHANCE, CLAIMS, DELTA, interval, runs

SEEDS = range(5)
STEPS = (0, 10, 20)


def outer_rows(spec, seeds=SEEDS, preset="deq_small"):
    """outer.csv rows: per estimator -> (final test accuracy, relative hypergradient error, max
    ‖A‖₂, diverged seeds, late training loss; accuracy and loss a number or a function of the
    seed); evaluated at STEPS, ‖A‖₂ growing linearly to its max, accuracy 0.1 at step 0, the
    training loss (outer_value) ln 10 at step 0 and the late loss from the last quarter of the steps on."""
    out = []
    for name, (acc, err, a_max, diverged, loss) in spec.items():
        for seed in seeds:
            final = acc(seed) if callable(acc) else acc
            late = loss(seed) if callable(loss) else loss
            for step in STEPS:
                last = step == STEPS[-1]
                out.append(
                    {
                        "problem": "equilibrium_mnist",
                        "estimator": name,
                        "role": name.removeprefix("my_"),
                        "seed": seed,
                        "step": step,
                        "setting_id": f"s{seed}",
                        "overrides": f"estimator={name} seed={seed} +experiment={preset}",
                        "q_bound": a_max * (0.5 + step / (2 * STEPS[-1])),
                        "err_rel": np.nan if last else err,
                        "test_acc": final if last else 0.1,
                        "outer_value": late if step >= 0.75 * STEPS[-1] else np.log(10),
                        "status": "diverged" if last and seed in diverged else "ok",
                    }
                )
    return pd.DataFrame(out)


def verdict(claim_id, df):
    claim = next(c for c in CLAIMS if c.id == claim_id)
    table = evaluate({claim.presets[0]: df}, [claim])
    return table["verdict"].item(), table["measured"].item()


def noisy(base, amplitude):
    """base ± amplitude, the sign alternating over the seeds."""
    return lambda seed: base + amplitude * (-1) ** seed


def est(acc, err=0.05, a_max=0.5, diverged=(), loss=0.005):
    return (acc, err, a_max, diverged, loss)


D1_CASES = {
    "holds": {"itd": est(0.87, 0.08), "fp": est(0.875, 0.05), "cg_normal": est(0.872, 0.03)},
    "does not hold": {"itd": est(0.87, 0.08), "fp": est(0.82, 0.05), "cg_normal": est(0.872, 0.03)},
    "does not hold, diverged": {"itd": est(0.87, 0.08), "fp": est(0.87, 0.05, diverged=SEEDS), "cg_normal": est(0.87, 0.03)},
    "undecided, spread": {"itd": est(0.87, 0.08), "fp": est(noisy(0.87, 0.05), 0.05)},
    "undecided, void": {"itd": est(0.87, 1e-5), "fp": est(0.87, 2e-5), "cg_normal": est(0.87, 3e-5)},
    "undecided, not a contraction": {"itd": est(0.87, 0.08, 1.5), "fp": est(0.87, 0.05)},
}


@pytest.mark.parametrize("case", D1_CASES)
def test_d1_verdicts(case):
    got, measured = verdict("D1", outer_rows(D1_CASES[case]))
    assert got == case.split(",")[0]
    if case == "undecided, void":
        assert "the comparison is void at this setting" in measured
    if case == "does not hold, diverged":
        assert "fp: diverged 5/5" in measured


def test_d1_needs_five_seeds():
    got, measured = verdict("D1", outer_rows(D1_CASES["holds"], seeds=range(4)))
    assert got == "undecided" and "4 common seed(s)" in measured


def d2(itd_loss, fp_loss, cg_loss, fp_diverged=(), fp_a=4.0, accs=(0.85, 0.85, 0.85)):
    """deq_small_free rows: late training losses of ITD, AID-FP, AID-CG (numbers or functions of the seed)."""
    return {
        "itd": est(accs[0], 0.8, 3.0, loss=itd_loss),
        "fp": est(accs[1], 0.9, fp_a, diverged=fp_diverged, loss=fp_loss),
        "cg_normal": est(accs[2], 0.9, 3.0, loss=cg_loss),
    }


D2_CASES = {  # log₁₀ loss ratios: 2× = 0.30 and 1.1× = 0.04, against δ_L = log₁₀ 1.25 = 0.097
    "holds": d2(0.004, 0.008, 0.0044),
    "holds, fp diverged": d2(0.004, 0.0045, 0.0044, fp_diverged=SEEDS),  # a diverged run's loss is ln 10
    "holds, whatever the test accuracy": d2(0.004, 0.008, 0.0044, accs=(0.60, 0.85, 0.85)),
    "does not hold": d2(0.02, 0.005, 0.02),
    "undecided, all alike": d2(0.004, 0.004, 0.004),
    "undecided, equal at round-off": d2(0.004, 0.004 * (1 + 1e-12), 0.004 * (1 - 1e-12)),
    "undecided, spread": d2(lambda seed: 0.004 * 10 ** (0.3 * (-1) ** seed), 0.004, 0.004),
    "undecided, no itd": {"fp": est(0.80, 0.9, 4.0), "cg_normal": est(0.84, 0.9, 3.0)},
    "undecided, a contraction": d2(0.004, 0.008, 0.0044, fp_a=0.9),
}


@pytest.mark.parametrize("case", D2_CASES)
def test_d2_verdicts(case):
    got, measured = verdict("D2", outer_rows(D2_CASES[case], preset="deq_small_free"))
    assert got == case.split(",")[0]
    if case == "undecided, all alike":
        assert "no estimator decisively more or less stable than ITD" in measured


@pytest.mark.parametrize("claim_id, cases", [("D1", D1_CASES), ("D2", D2_CASES)])
def test_rows_are_chosen_by_role_not_name(claim_id, cases):
    """my_itd (role itd) is ITD; the verdicts stay."""
    for case, spec in cases.items():
        df = outer_rows({f"my_{name}": value for name, value in spec.items()})
        assert verdict(claim_id, df)[0] == case.split(",")[0], case


def test_per_run_evidence_and_the_diverged_score():
    table = runs(outer_rows({"itd": est(0.87, 0.08, 0.5), "fp": est(0.8, 0.05, 0.7, diverged=(1,))}))
    fp = table[table["estimator"] == "fp"].set_index("seed")
    assert fp.loc[1, "diverged"] and fp.loc[1, "score"] == CHANCE and fp.loc[0, "score"] == pytest.approx(0.8)
    assert fp.loc[1, "late_loss"] == pytest.approx(np.log(10)) and fp.loc[0, "late_loss"] == pytest.approx(0.005)
    assert fp["a_max"].tolist() == pytest.approx([0.7] * 5) and fp["err_median"].tolist() == pytest.approx([0.05] * 5)


def test_two_settings_are_decided_apart():
    """Rows of two settings (overrides differing beyond estimator and seed) are not pooled: a
    setting where FP is 0.05 worse fails D1 though the other holds."""
    good = outer_rows(D1_CASES["holds"])
    bad = outer_rows(D1_CASES["does not hold"]).assign(overrides=lambda d: d["overrides"] + " problem.radius=0.9")
    got, measured = verdict("D1", pd.concat([good, bad]))
    assert got == "does not hold" and measured.count(" — ") == 1


def test_bootstrap_interval():
    """Constant differences: a zero-width interval at their value; a spread: the mean inside, and
    the interval within the range of the differences."""
    assert interval(np.full(5, 0.03)) == pytest.approx((0.03, 0.03, 0.03))
    diffs = np.array([-0.05, 0.05, -0.05, 0.05, -0.05])
    mean, lo, hi = interval(diffs)
    assert mean == pytest.approx(-0.01) and -0.05 <= lo < -DELTA and DELTA < hi <= 0.05
