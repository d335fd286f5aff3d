"""The claim S2 (hgbench.analysis.claims.dagreou: SABA's linear convergence, Dagréou et al. 2022)
decided on synthetic mode=bilevel rows whose verdict follows from their formulas: a geometric
‖∇f(x_s)‖² ratio r_s = qˢ holds, a noise floor or a power law does not, a run too short to go ten
decades is undecided; and the hypothesis it needs (Polyak–Łojasiewicz) on the preset's draw."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from hgbench.analysis.claims import CLAIMS, evaluate
from hgbench.analysis.claims.dagreou import saba_converges_linearly
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
