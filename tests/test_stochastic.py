"""Stochastic hypergradients (issue 27): finite-sum problems, the minibatch estimators against
their deterministic counterparts at the full batch, and mode=stochastic's bias and variance."""

from __future__ import annotations

import math

import pytest
import torch

from hgbench.analysis.stochastic import medians, plot_stochastic
from hgbench.core.bound import estimate
from hgbench.core.reference import reference
from hgbench.core.stochastic import Sampled, Sampling, stream_seed
from hgbench.estimators.fp import FixedPoint
from hgbench.estimators.itd import ITDReverse
from hgbench.estimators.linear_sgd import LinearSGD
from hgbench.estimators.neumann import Neumann
from hgbench.estimators.soba import SOBA
from hgbench.estimators.stoch_itd import StochasticITD
from hgbench.estimators.stocbio import StocBiO
from hgbench.problems.bilevel_quadratic import BilevelQuadratic
from hgbench.problems.ridge import Ridge
from hgbench.running.errors import UserError
from hgbench.running.stochastic_mode import bias_variance
from conftest import draws, run_cli

EPS = torch.finfo(torch.float64).eps
PAIRS = [(0, 0), (5, 3), (30, 0), (30, 12)]


@pytest.fixture(scope="module")
def quadratic():
    return BilevelQuadratic("bilevel_quadratic", 0, -1.0, 1.0, 64, 48, 6, 4, 0.1, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1)


def full(problem, lam, seed=0):
    """The problem at λ with minibatches that are the whole sample sets (without replacement)."""
    sampling = Sampling(problem.n_inner, problem.n_outer, replace=False)
    return Sampled(problem, lam, sampling, torch.Generator().manual_seed(seed))


def by_key(estimates):
    return {(e.t, e.k): e.grad for e in estimates}


@pytest.mark.parametrize("which", ["ridge", "logistic", "quadratic"])
def test_finite_sums_on_every_sample_are_the_objectives(which, request):
    problem = request.getfixturevalue(which)
    lam = draws(problem, 1)[0]
    w = torch.randn(problem.w_dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    every = torch.arange(problem.n_inner)
    assert torch.allclose(problem.inner_loss_on(w, lam, every), problem.inner_loss(w, lam), rtol=1e-14, atol=0)
    assert torch.allclose(problem.outer_on(w, lam, torch.arange(problem.n_outer)), problem.outer(w, lam), rtol=1e-14, atol=0)
    # the mean of two halves' means is the mean: the samples are what the sums are over
    half = problem.n_inner // 2
    split = 0.5 * (problem.inner_loss_on(w, lam, every[:half]) + problem.inner_loss_on(w, lam, every[half : 2 * half]))
    assert torch.allclose(split, problem.inner_loss_on(w, lam, every[: 2 * half]), rtol=1e-14, atol=0)


@pytest.mark.parametrize("which", ["ridge", "logistic", "quadratic"])
@pytest.mark.parametrize(
    "stochastic, deterministic",
    [
        (StocBiO("stocbio"), Neumann("neumann")),
        (LinearSGD("linear_sgd"), FixedPoint("fp")),
        (StochasticITD("stoch_itd"), ITDReverse("itd")),
    ],
)
def test_full_batch_is_the_deterministic_counterpart(which, stochastic, deterministic, request):
    """At the full batch with the deterministic step α: StocBiO = neumann, SGD on the linear
    system = fp, stochastic ITD = itd, to round-off (the products are summed in another order)."""
    problem = request.getfixturevalue(which)
    for lam in draws(problem, 1):
        got = by_key(stochastic.stochastic(full(problem, lam), PAIRS))
        want = by_key(estimate(deterministic, problem, lam, PAIRS))
        assert got.keys() == want.keys()
        for key, grad in want.items():
            scale = grad.norm() + reference(problem, lam, bound=False).grad.norm()
            assert (got[key] - grad).norm() <= 1e4 * EPS * scale, key


def test_bilevel_quadratic_closed_forms_and_law(quadratic):
    """benchmark_bilevel's quadratic problem: ∇₁ℓ and w* in closed form against autodiff; and, over
    many samples, the expected matrices have the spectra gen_matrices gives them: E H^zz
    eigenvalues and E C singular values log-spaced in [mu, L] (3 values: mu, √(mu·L), L)."""
    lam = draws(quadratic, 1)[0]
    w = torch.randn(quadratic.w_dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.allclose(quadratic.inner_grad(w, lam), torch.func.grad(quadratic.inner_loss)(w, lam), rtol=1e-12, atol=1e-14)
    assert torch.func.grad(quadratic.inner_loss)(quadratic.solve_inner(lam), lam).norm() < 1e-12
    big = BilevelQuadratic("q", 1, -1.0, 1.0, 40_000, 10, 3, 3, 0.1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    want = torch.tensor([0.1, 0.1**0.5, 1.0], dtype=torch.float64)
    assert torch.allclose(torch.linalg.eigvalsh(big.hess), want, atol=0.05)
    assert torch.allclose(torch.linalg.svdvals(big.cross_mean).flip(0), want, atol=0.05)


def test_soba_at_the_full_batch_converges_to_the_reference():
    """SOBA's joint iteration at a frozen λ has no deterministic twin at finite t, but its fixed
    point is (w*, −H⁻¹∇₁E): with the full batch its direction tends to ∇f(λ) (here q ≈ 0.3)."""
    ridge = Ridge("ridge", 0, 60, 40, 6, 3.0, 0.1, 0.0, 0.0)
    lam = draws(ridge, 1)[0]
    truth = reference(ridge, lam)
    assert truth.q < 0.5
    errors = {e.t: (e.grad - truth.grad).norm() / truth.grad.norm() for e in SOBA("soba").stochastic(full(ridge, lam), [(3, 0), (150, 0)])}
    assert errors[150] < 1e-10 < 1e-2 < errors[3]


def test_oracle_counts_are_per_sample(ridge):
    lam = draws(ridge, 1)[0]
    sampled = Sampled(ridge, lam, Sampling(7, 5, replace=True), torch.Generator().manual_seed(0))
    ((t, k),) = [(6, 4)]
    est = next(iter(StocBiO("stocbio").stochastic(sampled, [(t, k)])))
    assert (est.oracles.n_grad, est.oracles.n_hvp, est.oracles.n_jvp, est.oracles.n_outer) == (t * 7, k * 7, 7, 5)
    est = next(
        iter(
            StochasticITD("stoch_itd").stochastic(Sampled(ridge, lam, Sampling(7, 5, True), torch.Generator().manual_seed(0)), [(t, None)])
        )
    )
    assert (est.oracles.n_grad, est.oracles.n_hvp, est.oracles.n_jvp, est.oracles.n_outer) == (t * 7, t * 7, t * 7, 5)


def test_bias_variance_decomposition():
    """MSE = bias² + variance for the plug-in statistics, to round-off; against a direct loop."""
    gen = torch.Generator().manual_seed(3)
    grads, truth = torch.randn(50, 6, generator=gen, dtype=torch.float64) + 0.3, torch.randn(6, generator=gen, dtype=torch.float64)
    stats = bias_variance(grads, truth)
    assert math.isclose(stats["mse"], stats["bias2"] + stats["variance"], rel_tol=1e3 * EPS)
    mean = sum(grads) / len(grads)
    assert math.isclose(stats["bias2"], float(((mean - truth) ** 2).sum()), rel_tol=1e3 * EPS)
    assert math.isclose(stats["variance"], float(sum(((g - mean) ** 2).sum() for g in grads) / len(grads)), rel_tol=1e3 * EPS)
    # debiased bias²: unbiased for ‖Eĝ − ∇f‖²; here, over many samples of 50, near 0.3²·6 (bias 0.3 per coordinate)
    means = [
        bias_variance(torch.randn(50, 6, generator=gen, dtype=torch.float64) + 0.3, torch.zeros(6, dtype=torch.float64)) for _ in range(400)
    ]
    debiased, plug_in = (sum(m[key] for m in means) / len(means) for key in ("bias2_debiased", "bias2"))
    assert abs(debiased - 0.54) < 0.05 < plug_in - 0.54  # the plug-in is off by σ²/R = 6/50


def test_sampling_is_seeded_and_full_without_replacement():
    sampling = Sampling(5, 5, replace=False)
    a = sampling.indices(20, 5, torch.Generator().manual_seed(stream_seed(0, 1, 5, 5, 2)))
    b = sampling.indices(20, 5, torch.Generator().manual_seed(stream_seed(0, 1, 5, 5, 2)))
    assert torch.equal(a, b) and len(set(a.tolist())) == 5
    assert torch.equal(Sampling(20, 20, False).indices(20, 20, torch.Generator()), torch.arange(20))
    assert stream_seed(0, 1, 5, 5, 2) != stream_seed(0, 1, 5, 5, 3)


def _run(tmp_path, estimator, batches, repeats, t, k, n_lambdas=1, **more):
    from hgbench.running.api import evaluate

    overrides = {"mode": "stochastic", "stochastic.batches": batches, "stochastic.repeats": repeats, "plot": False, "threads": 1, **more}
    return evaluate(
        ("ridge", {"n_train": 60, "n_val": 40, "n_features": 5, "cond": 10}),
        estimator,
        ("full", {"t": t, "k": k}),
        n_lambdas=n_lambdas,
        out_dir=tmp_path,
        progress=False,
        **overrides,
    )


def test_mode_full_batch_neumann_bias_is_the_deterministic_error(tmp_path):
    """mode=stochastic with stocbio at the full batch: variance 0, and bias² the squared error of
    the deterministic neumann estimate against the reference (computed here independently)."""
    df = _run(tmp_path, "stocbio", [60], 3, [0, 10], [0, 5], **{"stochastic.outer_batch": 40})
    problem = Ridge("ridge", 0, 60, 40, 5, 10.0, 0.1, -4.0, 0.0)
    lam = draws(problem, 1)[0]
    truth = reference(problem, lam).grad
    want = {
        (e.t, e.k): float((e.grad - truth).square().sum())
        for e in estimate(Neumann("neumann"), problem, lam, [(0, 0), (0, 5), (10, 0), (10, 5)])
    }
    assert len(df) == 4 and (df["status"] == "ok").all()
    for row in df.itertuples():
        assert row.variance <= 1e-20 * row.grad_norm**2
        assert math.isclose(row.bias2, want[(row.t, row.k)], rel_tol=1e-9, abs_tol=1e-24 * row.grad_norm**2)
        assert math.isclose(row.mse, row.bias2 + row.variance, rel_tol=1e-12)


def test_mode_variance_shrinks_with_the_batch(tmp_path, figures):
    """Sampling with replacement: the variance of StocBiO's estimate at b = 36 is far below that
    at b = 3 (about 1/b for the gradient noise; asserted with a factor 4 of margin, R = 40)."""
    df = _run(tmp_path, "stocbio", [3, 36], 40, [20], [10], **{"stochastic.replace": True})
    var = df.set_index("batch")["variance"]
    assert (df["status"] == "ok").all() and var[36] * 4 < var[3]
    assert ((df["mse"] - df["bias2"] - df["variance"]).abs() <= 1e-12 * df["mse"]).all()
    assert list(df["oracle_calls"]) == [b * (20 + 10 + 1) + b for b in df["batch"]]
    plot_stochastic(df, tmp_path)  # one curve per batch size in each of the three panels
    assert len(figures) == 1 and [len(ax.lines) for ax in figures[0].axes] == [2, 2, 2]
    table = (tmp_path / "stochastic_summary.md").read_text().splitlines()  # the medians beside the figure
    assert table[2].startswith("| estimator | batch | t | k | mse_rel |") and len(table) == 4 + len(medians(df))


def test_mode_diverging_estimates_are_flagged_rows(tmp_path):
    """An inner step 50 times α makes SGD blow up: the rows say diverged, with NaN statistics; the
    run completes, and t = 0 (no step taken) stays ok."""
    df = _run(tmp_path, "stoch_itd", [5], 2, [0, 400], [0], **{"estimator.inner_step": 50.0})
    status = df.set_index("t")["status"]
    assert status[0] == "ok" and status[400] == "diverged" and df.set_index("t")["mse"].isna()[400]
    assert "repetitions NaN or inf" in df.set_index("t")["reason"][400]


def test_mode_refusals(tmp_path):
    with pytest.raises(UserError, match="is stochastic"):
        _run(tmp_path / "a", "stocbio", [5], 2, [1], [1], mode="error")
    with pytest.raises(UserError, match="has 60 training"):
        _run(tmp_path / "b", "stocbio", [61], 2, [1], [1])
    with pytest.raises(UserError, match="not a sum over samples"):
        _run(tmp_path / "c", "stocbio", [5], 2, [1], [1], **{"problem.outer": "linear"})
    with pytest.raises(UserError, match="runs a stochastic estimator"):
        _run(tmp_path / "d", "fp", [5], 2, [1], [1])
    with pytest.raises(UserError, match="resume=true applies to mode=error"):
        _run(tmp_path / "e", "stocbio", [5], 2, [1], [1], resume=True)


def test_a_stochastic_estimator_is_refused_in_the_other_modes_before_any_work(tmp_path, monkeypatch, capsys):
    for mode in ("error", "outer"):
        code = run_cli(monkeypatch, "run", f"mode={mode}", "estimator=stocbio", "problem.n_features=5", f"hydra.run.dir={tmp_path / mode}")
        err = capsys.readouterr().err
        assert (
            code == 2 and err.strip() == f"hgbench: error: estimator 'stocbio' is stochastic: it runs in mode=stochastic, not mode={mode}"
        ), err
        assert not any((tmp_path / mode).glob("*.csv"))
