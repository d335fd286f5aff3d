"""The stochastic estimators of issue 27's second slice (saba, stoch_cg, amigo), the table at
equal oracle budget, and the claim S1 (SABA's variance reduction, Dagréou et al. 2022)."""

from __future__ import annotations

import itertools
import math

import pandas as pd
import pytest
import torch

from hgbench.analysis.claims import CLAIMS, evaluate
from hgbench.analysis.stochastic import at_budget, plot_stochastic
from hgbench.core.bound import estimate
from hgbench.core.reference import reference
from hgbench.core.stochastic import Sampled, Sampling
from hgbench.estimators.amigo import AmIGO
from hgbench.estimators.cg import ConjugateGradient
from hgbench.estimators.f2sa import F2SA
from hgbench.estimators.fp import FixedPoint
from hgbench.estimators.saba import SABA, saga
from hgbench.estimators.soba import SOBA
from hgbench.estimators.stoch_cg import StochasticCG
from hgbench.problems.bilevel_quadratic import BilevelQuadratic
from hgbench.problems.ridge import Ridge
from conftest import draws, run_cli

EPS = torch.finfo(torch.float64).eps
PAIRS = [(0, 0), (5, 3), (30, 0), (30, 12)]


@pytest.fixture(scope="module")
def quadratic():
    return BilevelQuadratic("bilevel_quadratic", 0, -1.0, 1.0, 64, 48, 6, 4, 0.1, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1)


def full(problem, lam, seed=0):
    """The problem at λ with minibatches that are the whole sample sets (without replacement)."""
    return Sampled(problem, lam, Sampling(problem.n_inner, problem.n_outer, replace=False), torch.Generator().manual_seed(seed))


def close(got, want, problem, lam):
    """Equal up to round-off: 1e4 ulps of the larger of the estimate and the reference."""
    scale = want.norm() + reference(problem, lam, bound=False).grad.norm()
    return (got - want).norm() <= 1e4 * EPS * scale


@pytest.mark.parametrize("which", ["ridge", "logistic", "quadratic"])
def test_full_batch_equalities(which, request):
    """At the full batch: SABA's SAGA estimates are the full means, so SABA = SOBA; minibatch CG
    is hgbench's cg (CG's iterates are scale-invariant: H z = ∇₁E vs (I − Jᵀ) v = ∇₁E); one
    round of AmIGO (T inner steps, N linear-system steps from 0) is fp(T, N)."""
    problem = request.getfixturevalue(which)
    lam = draws(problem, 1)[0]
    ts = [(0, 0), (3, 0), (25, 0)]
    saba = {e.t: e.grad for e in SABA("saba").stochastic(full(problem, lam), ts)}
    soba = {e.t: e.grad for e in SOBA("soba").stochastic(full(problem, lam), ts)}
    assert saba.keys() == soba.keys() and all(close(saba[t], soba[t], problem, lam) for t in soba)
    got = {(e.t, e.k): e.grad for e in StochasticCG("stoch_cg").stochastic(full(problem, lam), PAIRS)}
    want = {(e.t, e.k): e.grad for e in estimate(ConjugateGradient("cg"), problem, lam, PAIRS)}
    assert got.keys() == want.keys() and all(close(got[key], want[key], problem, lam) for key in want)
    for inner, solver in [(5, 3), (30, 12)]:
        (one,) = AmIGO("amigo", inner_steps=inner, solver_steps=solver).stochastic(full(problem, lam), [(1, 0)])
        (fp,) = estimate(FixedPoint("fp"), problem, lam, [(inner, solver)])
        assert close(one.grad, fp.grad, problem, lam)


def test_amigo_at_the_full_batch_converges_to_the_reference():
    """Warm starts carry both solvers across rounds: with the full batch, AmIGO's estimate tends to ∇f(λ)."""
    ridge = Ridge("ridge", 0, 60, 40, 6, 3.0, 0.1, 0.0, 0.0)
    lam = draws(ridge, 1)[0]
    truth = reference(ridge, lam).grad
    errors = {
        e.t: float((e.grad - truth).norm() / truth.norm())
        for e in AmIGO("amigo", inner_steps=2, solver_steps=2).stochastic(full(ridge, lam), [(1, 0), (20, 0)])
    }
    assert errors[20] < 1e-10 < 1e-3 < errors[1]


def test_per_sample_products_and_their_counts(ridge):
    """Sampled.each: row i is the product on {idx[i]}; their mean is the minibatch product; each
    row counts as one sample of each oracle the product calls."""
    lam = draws(ridge, 1)[0]
    sampled = Sampled(ridge, lam, Sampling(5, 5, replace=True), torch.Generator().manual_seed(0))
    w, u = (torch.randn(ridge.w_dim, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in (1, 2))
    idx = torch.tensor([3, 7, 7, 1])
    for product, args in [(sampled.grad, (w,)), (sampled.hvp, (w, u)), (sampled.cross, (w, u))]:
        rows = sampled.each(product, *args, idx=idx)
        assert torch.allclose(rows[1], product(*args, idx[1:2]), rtol=1e-13, atol=0)
        assert torch.allclose(rows.mean(0), product(*args, idx), rtol=1e-12, atol=1e-15)
    rows_w, rows_lam = sampled.each(sampled.outer_grads, w, idx=idx)
    assert torch.allclose(rows_w.mean(0), sampled.outer_grads(w, idx)[0], rtol=1e-12, atol=1e-15)
    # each call above: 4 rows, then the minibatch check on 1 and on 4 samples
    assert (sampled.oracles.n_grad, sampled.oracles.n_hvp, sampled.oracles.n_jvp, sampled.oracles.n_outer) == (9, 9, 9, 8)


def test_saga_is_unbiased_over_every_minibatch():
    """SAGA's estimate averaged over all C(6, 2) subsets is the mean of the values, whatever the
    memory (an exact enumeration); with every sample it is the mean itself; the memory stores B's values."""
    gen = torch.Generator().manual_seed(4)
    values, memory = torch.randn(6, 3, generator=gen, dtype=torch.float64), torch.randn(6, 3, generator=gen, dtype=torch.float64)
    subsets = [torch.tensor(s) for s in itertools.combinations(range(6), 2)]
    mean = sum(saga(values[s], memory, s)[0] for s in subsets) / len(subsets)
    assert torch.allclose(mean, values.mean(0), rtol=0, atol=1e-14)
    every = torch.arange(6)
    estimate_all, stored = saga(values, memory, every)
    assert torch.allclose(estimate_all, values.mean(0), rtol=0, atol=1e-14) and torch.equal(stored, values)
    _, stored = saga(values[[1, 4]], memory, torch.tensor([1, 4]))
    assert torch.equal(stored[[1, 4]], values[[1, 4]]) and torch.equal(stored[[0, 2, 3, 5]], memory[[0, 2, 3, 5]])


def test_saba_variance_vanishes_where_sobas_does_not():
    """On a small ridge at b = 5 of n = 30 and step 0.3·α: over R = 3 seeded runs the variance of
    SABA's direction falls by orders of magnitude from t = 20 to t = 120; SOBA's does not."""
    ridge = Ridge("ridge", 0, 30, 30, 4, 5.0, 0.1, -1.0, -1.0)
    lam = draws(ridge, 1)[0]

    def variances(estimator):
        runs = [
            {e.t: e.grad for e in estimator.stochastic(Sampled(ridge, lam, Sampling(5, 5, False), torch.Generator().manual_seed(seed)), [(20, 0), (120, 0)])}
            for seed in range(3)
        ]  # fmt: skip
        stacked = {t: torch.stack([run[t] for run in runs]) for t in (20, 120)}
        return {t: float((g - g.mean(0)).square().sum(1).mean()) for t, g in stacked.items()}

    saba, soba = variances(SABA("saba", 0.3)), variances(SOBA("soba", 0.3))
    assert saba[120] < 1e-4 * saba[20]
    assert soba[120] > 0.1 * soba[20]


def test_oracle_counts(ridge):
    lam = draws(ridge, 1)[0]

    def calls(estimator, pairs):
        sampled = Sampled(ridge, lam, Sampling(7, 5, replace=True), torch.Generator().manual_seed(0))
        o = next(iter(estimator.stochastic(sampled, pairs))).oracles
        return o.n_grad, o.n_hvp, o.n_jvp, o.n_outer

    assert calls(SABA("saba"), [(6, 0)]) == (6 * 7, 6 * 7, 7 * 7, 7 * 5)
    assert calls(StochasticCG("stoch_cg"), [(6, 4)]) == (6 * 7, 4 * 7, 7, 5)
    assert calls(AmIGO("amigo", inner_steps=3, solver_steps=2), [(4, 0)]) == (4 * 3 * 7, 4 * 2 * 7, 7, 4 * 5)


def _rows(curves: dict, **more) -> pd.DataFrame:
    """Rows of stochastic.csv: per (estimator, batch) a list of (t, k, oracle_calls, mse_rel), one λ draw."""
    out = []
    for (estimator, batch), points in curves.items():
        for t, k, calls, mse in points:
            out.append(
                {"problem": "ridge", "setting_id": "s", "run_id": f"{estimator}{batch}", "overrides": f"estimator={estimator}",
                 "estimator": estimator, "role": estimator, "batch": batch, "outer_batch": batch,
                 "replace": False, "lam_id": 0, "t": t, "k": k, "oracle_calls": calls, "mse_rel": mse, "bias2_rel": mse / 2,
                 "variance_rel": mse / 2, "bias2_debiased_rel": mse / 2, "time_s": 0.0, "status": "ok", **more}
            )  # fmt: skip
    return pd.DataFrame(out)


def test_the_table_at_equal_budget(tmp_path):
    """Per curve and budget: the point of the largest cost within the budget (ties: the smallest
    MSE), NaN where the curve has none; every curve at every budget, none merged."""
    df = _rows(
        {
            ("stocbio", 10): [(0, 0, 10, 1.0), (5, 0, 60, 0.5), (5, 4, 100, 0.2), (10, 0, 110, 0.3), (10, 4, 150, 0.1)],
            ("stocbio", 50): [(5, 0, 300, 0.05), (10, 4, 750, 0.01), (20, 4, 1500, 0.001)],
            ("saba", 10): [(5, None, 90, 0.4), (20, None, 400, 0.02)],
        }
    )
    table = at_budget(df, [100.0, 1000.0]).set_index(["budget", "estimator", "batch"])
    assert len(table) == 6
    assert table.loc[(100.0, "stocbio", 10), ["t", "k", "mse_rel"]].tolist() == [5, 4, 0.2]
    assert table.loc[(1000.0, "stocbio", 10), "mse_rel"] == 0.1 and table.loc[(1000.0, "saba", 10), "t"] == 20
    assert math.isnan(table.loc[(100.0, "stocbio", 50), "mse_rel"]) and table.loc[(1000.0, "stocbio", 50), "mse_rel"] == 0.01
    ties = _rows({("stocbio", 10): [(5, 0, 100, 0.3), (1, 8, 100, 0.2)]})  # equal cost: the smaller MSE
    assert at_budget(ties, [100.0])["k"].item() == 8
    assert list(at_budget(df)["budget"].unique()) == [100.0, 1000.0]  # the decades from the least to the most costly point
    # two runs of one estimator in one setting (F2SA's penalty): two curves, told apart by their options
    runs = pd.concat(
        [_rows({("f2sa", 10): [(5, None, 90, 0.4)]}).assign(run_id=f"r{nu}", overrides=f"estimator.penalty={nu}") for nu in (10, 100)]
    )
    both = at_budget(runs, [100.0])
    assert len(both) == 2 and sorted(both["variant"]) == ["estimator.penalty=10", "estimator.penalty=100"]
    # or by the sub-preset that sets their options together (BOME's η with its step: stochastic_bome/eta_*.yaml)
    presets = pd.concat(
        [
            _rows({("bome", 10): [(5, None, 90, 0.4)]}).assign(
                run_id=f"r{eta}", overrides=f"estimator=bome +experiment/stochastic_bome={eta}"
            )
            for eta in ("eta_5", "eta_50")
        ]
    )
    assert sorted(at_budget(presets, [100.0])["variant"]) == ["+experiment/stochastic_bome=eta_5", "+experiment/stochastic_bome=eta_50"]
    # a sub-preset named after the estimator (its own steps in a sweep over estimators) is no variant
    own = _rows({("saba", 10): [(5, None, 90, 0.4)]}).assign(
        overrides="+experiment=stochastic_quadratic +experiment/stochastic_quadratic=saba"
    )
    assert at_budget(own, [100.0])["variant"].tolist() == [""]
    plot_stochastic(df, tmp_path)
    text = (tmp_path / "stochastic_budget.md").read_text()
    assert (
        "| budget | estimator | batch | t | k | oracle_calls | mse_rel |" in text
        and [line[:8] for line in text.splitlines()].count("| 100 | ") == 3
    )


def _variance_rows(saba, soba, status="ok"):
    """saba / soba: variance_rel at t = 0, 30, 100, 300, batch 10, two λ draws (the second ×1.1)."""
    out = []
    for role, values in (("saba", saba), ("soba", soba)):
        for lam_id, factor in ((0, 1.0), (1, 1.1)):
            for t, v in zip((0, 30, 100, 300), values):
                out.append(
                    {"problem": "ridge", "setting_id": "s", "run_id": role, "estimator": f"my_{role}", "role": role, "batch": 10, "outer_batch": 10,
                     "replace": False, "lam_id": lam_id, "t": t, "variance_rel": v * factor, "status": status if t == 300 else "ok"}
                )  # fmt: skip
    return pd.DataFrame(out)


@pytest.mark.parametrize(
    "saba, soba, status, expected",
    [
        ((0.0, 0.03, 1e-4, 1e-14), (0.0, 0.2, 0.17, 0.16), "ok", "holds"),
        ((0.0, 0.03, 0.02, 0.04), (0.0, 0.2, 0.17, 0.16), "ok", "does not hold"),
        ((0.0, 0.03, 0.01, 0.001), (0.0, 0.2, 0.17, 0.16), "ok", "undecided"),  # falls 30×: between
        ((0.0, 0.03, 1e-4, 1e-14), (0.0, 0.2, 0.01, 1e-3), "ok", "undecided"),  # SOBA's falls too
        ((0.0, 0.03, 1e-4, 1e-14), (0.0, 0.2, 0.17, 0.16), "diverged", "undecided"),
        ((0.0, 1e-33, 1e-33, 1e-33), (0.0, 1e-33, 1e-33, 1e-33), "ok", "undecided"),  # the full batch
    ],
)
def test_claim_d1_saba_variance_reduction(saba, soba, status, expected):
    claim = [c for c in CLAIMS if c.id == "S1"]
    table = evaluate({"stochastic_vr": _variance_rows(saba, soba, status)}, claim)
    assert table["verdict"].item() == expected, table["measured"].item()


def test_f2sa_converges_to_the_penalty_surrogate_whose_bias_is_order_one_over_the_penalty():
    """F2SA at the full batch, t = 400 (q ≈ 0.3): its estimate is the gradient of Kwon et al.'s
    surrogate ψ_ν (computed here independently: on ridge y_ν = argmin E + νℓ is one Newton step
    from anywhere, and ∇ψ_ν = ∇₂E(y_ν) + ν(∇₂ℓ(y_ν) − ∇₂ℓ(w*)) by the envelope theorem), to 1e-10;
    its distance to ∇f falls about tenfold from ν = 10 to ν = 100 (O(1/ν)) and stays above round-off."""
    ridge = Ridge("ridge", 0, 60, 40, 6, 3.0, 0.1, 0.0, 0.0)
    lam = draws(ridge, 1)[0]
    truth = reference(ridge, lam).grad
    every_inner, every_outer = torch.arange(ridge.n_inner), torch.arange(ridge.n_outer)
    w_star = ridge.solve_inner(lam)
    errors = {}
    for nu in (10.0, 100.0):
        (got,) = F2SA("f2sa", penalty=nu).stochastic(full(ridge, lam), [(400, 0)])

        def penalized(w, nu=nu):
            return ridge.outer_on(w, lam, every_outer) + nu * ridge.inner_loss_on(w, lam, every_inner)

        y_nu = w_star - torch.linalg.solve(torch.func.hessian(penalized)(w_star), torch.func.grad(penalized)(w_star))
        partial = torch.func.grad(ridge.inner_loss_on, argnums=1)
        want = torch.func.grad(ridge.outer_on, argnums=1)(y_nu, lam, every_outer) + nu * (
            partial(y_nu, lam, every_inner) - partial(w_star, lam, every_inner)
        )
        assert (got.grad - want).norm() <= 1e-10 * want.norm()
        errors[nu] = float((got.grad - truth).norm() / truth.norm())
    assert 0.05 < errors[100.0] / errors[10.0] < 0.2 and errors[100.0] > 1e-6


def test_f2sa_oracle_counts(ridge):
    lam = draws(ridge, 1)[0]
    sampled = Sampled(ridge, lam, Sampling(7, 5, replace=True), torch.Generator().manual_seed(0))
    o = next(iter(F2SA("f2sa").stochastic(sampled, [(6, 0)]))).oracles
    assert (o.n_grad, o.n_hvp, o.n_jvp, o.n_outer) == (2 * 6 * 7 + 2 * 7, 0, 0, 7 * 5)


def test_list_names_the_new_estimators_with_their_papers(monkeypatch, capsys):
    assert run_cli(monkeypatch, "list") == 0
    # the estimators' section only: the solvers of mode=bilevel share some names (saba, amigo, f2sa)
    section = capsys.readouterr().out.split("estimators (estimator=NAME):", 1)[1].split("\ngrids (", 1)[0]
    lines = {line.split()[0]: line for line in section.splitlines() if line.startswith("  ")}
    for name, paper in [("saba", "Dagréou et al. NeurIPS 2022"), ("stoch_cg", "Grazzi, Pontil, Salzo AISTATS 2021"),
                        ("amigo", "Arbel & Mairal ICLR 2022"), ("f2sa", "Kwon et al. ICML 2023")]:  # fmt: skip
        assert paper in lines[name] and "mode=stochastic" in lines[name], lines[name]


def test_variants_of_one_estimator_are_drawn_apart(tmp_path, figures):
    """Two runs of one estimator (its options differ) keep its colour and differ in marker and, at one
    batch size, in line style; a second batch size takes the line style instead."""
    runs = [
        _rows({("stoch_itd", 10): [(10, None, 100, 0.1), (30, None, 300, 0.1)]}).assign(
            run_id=f"r{h}", overrides=f"estimator.step_halflife={h}"
        )
        for h in ("null", 30)
    ]
    plot_stochastic(pd.concat(runs), tmp_path)
    lines = figures[0].axes[0].lines
    assert len(lines) == 2 and lines[0].get_color() == lines[1].get_color()
    assert lines[0].get_marker() != lines[1].get_marker() and lines[0].get_linestyle() != lines[1].get_linestyle()
    more = pd.concat(
        [*runs, _rows({("stoch_itd", 50): [(10, None, 500, 0.01)]}).assign(overrides="estimator.step_halflife=null", run_id="rnull")]
    )
    plot_stochastic(more, tmp_path)
    styles = {(line.get_label(), line.get_linestyle(), line.get_marker()) for line in figures[1].axes[0].lines}
    assert len({s[1] for s in styles}) == 2 and len({s[2] for s in styles}) == 2  # line style: the batch; marker: the variant
