"""The claims S2 (hgbench.analysis.claims.dagreou: SABA's linear convergence, Dagréou et al. 2022)
and S3 (hgbench.analysis.claims.iutzeler: SGD's derivatives, Iutzeler et al. 2024) decided on synthetic mode=bilevel rows whose verdict follows from their formulas: a geometric
‖∇f(x_s)‖² ratio r_s = qˢ holds, a noise floor or a power law does not, a run too short to go ten
decades is undecided; and the hypothesis it needs (Polyak–Łojasiewicz) on the preset's draw."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from hgbench.analysis.claims import CLAIMS, evaluate
from hgbench.analysis.claims.dagreou import saba_converges_linearly
from hgbench.analysis.claims.iutzeler import sgd_derivatives
from hgbench.problems.bilevel_quadratic import BilevelQuadratic
from test_bilevel_solvers import minimizer

STEPS = range(0, 3001, 50)


def run(ratio, solver="saba", run_id="aaaaaaaaaaaa", problem="bilevel_quadratic", status=lambda r: "ok"):
    """bilevel.csv rows of one run: ratio(s) at s = 0, 50, …, 3000."""
    rows = []
    for s in STEPS:
        r = float(ratio(s))
        rows.append(
            {"run_id": run_id, "problem": problem, "solver": solver, "batch": 64, "iteration": s, "grad_norm2_rel": r, "status": status(r)}
        )
    return pd.DataFrame(rows)


GEOMETRIC = lambda s: 0.99**s  # 4.4 decades per 1000 iterations, 13 decades by s = 3000
CASES = {
    "geometric": (run(GEOMETRIC), True),
    "geometric, uncertified below 1e-14": (
        run(GEOMETRIC, status=lambda r: "ok" if r > 1e-14 else "error").assign(
            grad_norm2_rel=lambda d: d["grad_norm2_rel"].where(d["status"] == "ok")
        ),
        True,
    ),
    "noise floor": (run(lambda s: 0.99**s + 1e-3), False),
    "power law": (run(lambda s: (1 + s) ** -3.0), False),  # 1e-10 at s = 3000, its rate falling as 1/s
    "too shallow": (run(lambda s: 0.996**s), None),  # geometric but only 5 decades by s = 3000
    "no saba": (run(GEOMETRIC, solver="soba"), None),
    "one of two runs stalls": (pd.concat([run(GEOMETRIC), run(lambda s: 0.5 + 0.5 * 0.99**s, run_id="bbbbbbbbbbbb")]), False),
}


@pytest.mark.parametrize("case", CASES)
def test_d3_verdict_follows_from_the_formulas(case):
    rows, expected = CASES[case]
    measured, holds = saba_converges_linearly(rows)
    assert holds is expected, measured


def test_d3_reads_its_preset_and_reports_the_rates():
    (claim,) = [c for c in CLAIMS if c.id == "S2"]
    table = evaluate({"bilevel": run(GEOMETRIC)}, [claim])
    assert list(table["verdict"]) == ["holds"] and "4.4 then 4.4 decades per 1000 iterations" in table["measured"][0]
    assert evaluate({"stochastic_vr": run(GEOMETRIC)}, [claim]).empty  # another preset's rows are not read


def test_d3_hypothesis_the_presets_value_function_is_strongly_convex():
    """solvers_quadratic's problem (conf/problem/bilevel_quadratic.yaml, seed 0): f(x) = E(z*(x), x)
    is quadratic with the Hessian of ``minimizer`` (closed form from the samples' factors), which is
    positive definite: f is strongly convex, so Polyak–Łojasiewicz holds and the paper's linear rate
    applies."""
    problem = BilevelQuadratic("bilevel_quadratic", 0, -1.0, 1.0, 1024, 1024, 100, 100, 0.1, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1)
    _, curvature = minimizer(problem)
    eigenvalues = torch.linalg.eigvalsh(0.5 * (curvature + curvature.T))
    assert eigenvalues[0] > 1e-3 * eigenvalues[-1] > 0


TS = [10, 30, 100, 300, 1000]


def itd_run(mse, run_id, halflife=None, status="ok"):
    """stochastic.csv rows of one stoch_itd run: mse_rel = mse(t) at two λ draws, its step rule in its overrides."""
    overrides = "estimator=stoch_itd +experiment=stochastic_steps" + ("" if halflife is None else f" estimator.step_halflife={halflife}")
    return pd.DataFrame(
        [
            {
                "run_id": run_id,
                "setting_id": "s",
                "overrides": overrides,
                "problem": "ridge",
                "role": "stoch_itd",
                "batch": 10,
                "outer_batch": 100,
                "replace": False,
                "lam_id": lam_id,
                "t": t,
                "mse_rel": float(mse(t)) if t else 1.0,
                "status": status,
            }
            for lam_id in (0, 1)
            for t in [0, *TS]
        ]
    )


PLATEAU = lambda t: 0.8 + 0.5 / t  # constant steps: a noise ball
RATE = lambda t: 3 * math.log(t) ** 2 / t  # vanishing steps at the bound's rate
S3_CASES = {
    "ball and log²t/t": ([itd_run(PLATEAU, "c"), itd_run(RATE, "v", 30)], True),
    "ball and 1/t": ([itd_run(PLATEAU, "c"), itd_run(lambda t: 5 / t, "v", "30.0")], True),
    "vanishing steps stall": ([itd_run(PLATEAU, "c"), itd_run(PLATEAU, "v", 30)], False),
    "constant steps grow": ([itd_run(lambda t: 0.01 * t, "c"), itd_run(RATE, "v", 30)], False),
    "constant steps still falling": ([itd_run(lambda t: 50 / t, "c"), itd_run(RATE, "v", 30)], None),
    "slower than the bound, still falling": ([itd_run(PLATEAU, "c"), itd_run(lambda t: t**-0.4, "v", 30)], None),
    "null halflife is constant": ([itd_run(PLATEAU, "c", "null"), itd_run(RATE, "v", 30)], True),
    "no vanishing run": ([itd_run(PLATEAU, "c")], None),
    "a row not ok": ([itd_run(PLATEAU, "c"), itd_run(RATE, "v", 30, status="diverged")], None),
}


@pytest.mark.parametrize("case", S3_CASES)
def test_s3_verdict_follows_from_the_formulas(case):
    frames, expected = S3_CASES[case]
    measured, holds = sgd_derivatives(pd.concat(frames, ignore_index=True))
    assert holds is expected, measured


def test_s3_reads_its_preset():
    (claim,) = [c for c in CLAIMS if c.id == "S3"]
    rows = pd.concat([itd_run(PLATEAU, "c"), itd_run(RATE, "v", 30)], ignore_index=True)
    table = evaluate({"stochastic_steps": rows}, [claim])
    assert list(table["verdict"]) == ["holds"] and "t = 100–1000" in table["measured"][0]
    assert evaluate({"stochastic_vr": rows}, [claim]).empty
