"""BOME (Liu, Ye, Wright, Stone, Liu NeurIPS 2022) in mode=bilevel: its multiplier by hand and as
the solution of its direction's quadratic program, the full-batch iterates against the closed-form
bilevel minimizer, oracle counts by hand, seeded reruns and refusals."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from hgbench.core.reference import reference
from hgbench.core.stochastic import Sampled, Sampling
from hgbench.estimators.bome import BOME, bome_multiplier
from hgbench.problems.bilevel_quadratic import BilevelQuadratic
from hgbench.solvers.base import Moving
from hgbench.solvers.bome import Bome
from conftest import draws
from test_bilevel_solvers import SMALL, _mode, full_batch, last, minimizer

EPS = torch.finfo(torch.float64).eps


@pytest.fixture(scope="module")
def small():
    return BilevelQuadratic(*SMALL)


@pytest.mark.parametrize(
    "grad_f, grad_q, eta, want",
    [
        # ‖∇q‖² = 2, φ = 0.5·2 = 1, ⟨∇f, ∇q⟩ = −1: μ = (1 + 1)/2 = 1, d = (0, 1), ⟨∇q, d⟩ = 1 = φ
        ([1.0, 0.0], [-1.0, 1.0], 0.5, 1.0),
        # ‖∇q‖² = 1, φ = 0.5, ⟨∇f, ∇q⟩ = 3: (0.5 − 3)/1 < 0, so μ = 0 (∇f alone decreases q̂ fast enough)
        ([3.0, 0.0], [1.0, 0.0], 0.5, 0.0),
        # ‖∇q‖² = 4·(1 + 1) = 8, φ = 0.25·8 = 2, ⟨∇f, ∇q⟩ = 2·1 + 2·(−2) = −2: μ = (2 + 2)/8 = 0.5
        ([1.0, -2.0], [2.0, 2.0], 0.25, 0.5),
        # ∇q = 0: every d satisfies ⟨∇q, d⟩ ≥ 0 = φ, so d = ∇f and μ = 0 (not 0/0)
        ([1.0, 2.0], [0.0, 0.0], 0.5, 0.0),
    ],
)
def test_multiplier_by_hand(grad_f, grad_q, eta, want):
    got = bome_multiplier(torch.tensor(grad_f, dtype=torch.float64), torch.tensor(grad_q, dtype=torch.float64), eta)
    assert got.item() == want


def test_direction_solves_its_quadratic_program():
    """d = ∇f + μ∇q̂ is the projection of ∇f onto {d : ⟨∇q̂, d⟩ ≥ φ}: feasible, with complementary
    slackness μ(⟨∇q̂, d⟩ − φ) = 0 and μ ≥ 0 (the KKT conditions of a convex QP, so sufficient),
    and no closer feasible point among random ones (to round-off of the inner products)."""
    gen = torch.Generator().manual_seed(3)
    for _ in range(50):
        f, q = torch.randn(7, generator=gen, dtype=torch.float64), torch.randn(7, generator=gen, dtype=torch.float64)
        eta = float(torch.rand((), generator=gen, dtype=torch.float64)) * 2
        mu = bome_multiplier(f, q, eta)
        d, phi, tol = f + mu * q, eta * q.square().sum(), 64 * EPS * (f.norm() + mu * q.norm()) * q.norm()
        assert mu >= 0 and (q @ d) >= phi - tol and abs(mu * (q @ d - phi)) <= mu * tol
        others = d + 0.5 * torch.randn(200, 7, generator=gen, dtype=torch.float64)
        feasible = others[others @ q >= phi]
        assert ((feasible - f).norm(dim=1) >= (d - f).norm() - tol).all()


def test_full_batch_bome_approaches_the_bilevel_minimizer(small):
    """At the full batch BOME with a constant step ξ has no fixed point at (z*(x*), x*) unless ∇f
    vanishes there jointly in (z, x) (hgbench.solvers.bome's docstring): it approaches x* and
    hovers at a distance that shrinks with ξ (and with the error of z_T, i.e. as T grows). Observed
    here (not a paper's number; T = 3, α = 1/L): from 1.21·‖x*‖ to 0.114·‖x*‖ at ξ = 0.5 (150
    iterations; 0.108 at 600) and 0.059·‖x*‖ at ξ = 0.2 (250 iterations; 0.056 at 600); with T = 1
    at ξ = 0.5, 0.24."""
    x_star, _ = minimizer(small)
    lam0 = draws(small, 1)[0]
    assert (lam0 - x_star).norm() > x_star.norm()
    gaps = {}
    for xi, iterations in ((0.5, 150), (0.2, 250)):
        solver = Bome("bome", inner_step=1.0, outer_step=xi, eta=0.5, inner_steps=3)
        gaps[xi] = ((last(solver, full_batch(small, lam0), lam0, iterations) - x_star).norm() / x_star.norm()).item()
    assert gaps[0.5] < 0.13 and gaps[0.2] < 0.07 and gaps[0.2] < gaps[0.5] / 1.5, gaps


def test_oracle_calls_per_sample(small):
    """b = 5, b' = 3, T = 2: per iteration T·b = 10 gradients for z_T, 2b = 10 for ∇q̂ (both partials
    at z and at z_T on one batch), b' = 3 outer gradients; no Hessian or cross product."""
    lam0 = draws(small, 1)[0]
    oracle = Moving(small, lam0, Sampling(5, 3, False), torch.Generator().manual_seed(1))
    last(Bome("bome", inner_step=0.1, outer_step=0.1, eta=0.5, inner_steps=2), oracle, lam0, 4)
    calls = oracle.oracles
    assert (calls.n_grad, calls.n_hvp, calls.n_jvp, calls.n_outer) == (4 * 20, 0, 0, 4 * 3)


def test_seeded_minibatch_rerun_is_bit_identical(small):
    lam0 = draws(small, 1)[0]
    runs = [
        last(
            Bome("bome", inner_step=0.3, outer_step=0.1, eta=0.5, inner_steps=3),
            Moving(small, lam0, Sampling(4, 3, True), torch.Generator().manual_seed(7)),
            lam0,
            20,
        )
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], lam0)


def test_mode_runs_bome(tmp_path, monkeypatch):
    """solver=bome in mode=bilevel: rows at 0, 10, 20, 30 with (T + 2)·b + b' = 12·4 + 4 calls per
    iteration (T = 10, b = b' = 4), every one ok."""
    code, out = _mode(tmp_path, monkeypatch, "b", "solver=bome")
    df = pd.read_csv(out / "bilevel.csv")
    assert code == 0 and (df["status"] == "ok").all() and set(df["solver"]) == {"bome"}
    assert list(df["oracle_calls"]) == [s * (12 * 4 + 4) for s in (0, 10, 20, 30)] and (df["n_hvp"] == 0).all()


@pytest.mark.parametrize("more, message", [(["solver.eta=0"], "solver.eta=0"), (["solver.inner_steps=0"], "solver.inner_steps=0")])
def test_bad_options_are_refused_in_one_line(tmp_path, monkeypatch, capsys, more, message):
    code, out = _mode(tmp_path, monkeypatch, "r", "solver=bome", *more)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (out / "bilevel.csv").exists()


# --- the fixed-λ direction (mode=stochastic) ------------------------------------------------------
def full(problem, lam):
    return Sampled(problem, lam, Sampling(problem.n_inner, problem.n_outer, False), torch.Generator().manual_seed(0))


def test_fixed_lambda_direction_is_neumann_at_its_fixed_point(small):
    """At a fixed point w̄ of BOME's frozen-λ w-update (full batch; ℓ quadratic, so ∇₂ℓ is affine
    in w), its direction equals T-term Neumann AID evaluated at w̄ (hgbench.estimators.bome's
    docstring): ∇₂E(w̄) − B α_T Σ_{j<T}(I − α_T H)^j ∇₁E(w̄), computed here by the series with
    Hessian–vector and cross products (another route than BOME's gradients). w̄ is not w*
    (∇₁ℓ(w̄) ≠ 0), so the direction stays away from ∇f: a surrogate. Away from w̄ the difference
    is B'H⁻¹r (r = ∇₁E + μ∇₁ℓ, the update's residual, → 0 geometrically): observed 1.9e-6 relative
    at t = 300 and 4e-8 at t = 400, hence 1e-5; ‖∇₁ℓ(w̄)‖ 0.27, relative error to ∇f 0.40 (T = 3, η = 0.5)."""
    lam = draws(small, 1)[0]
    truth = reference(small, lam).grad
    (est,) = BOME("bome", bome_step=0.05, eta=0.5, inner_steps=3).stochastic(full(small, lam), [(300, None)])
    sampled, inner, outer = full(small, lam), torch.arange(small.n_inner), torch.arange(small.n_outer)
    step = sampled.alpha  # inner_step 1: α_T = α
    e_w, e_lam = sampled.outer_grads(est.w, outer)
    term, series = e_w, torch.zeros_like(e_w)
    for _ in range(3):
        series, term = series + term, term - step * sampled.hvp(est.w, term, inner)
    neumann = e_lam - sampled.cross(est.w, step * series, inner)
    assert (est.grad - neumann).norm() <= 1e-5 * truth.norm()
    assert sampled.grad(est.w, inner).norm() > 0.1 and (est.grad - truth).norm() > 0.1 * truth.norm()


def test_fixed_lambda_offset_shrinks_with_eta(small):
    """The fixed point's offset from w*, measured by ‖∇₁ℓ(w_t)‖, shrinks as η grows (about 1/η
    asymptotically; observed 0.27 at η = 0.5 and 0.055 at η = 5, t = 400, T = 3)."""
    lam = draws(small, 1)[0]
    offsets = []
    for eta, xi in ((0.5, 0.05), (5.0, 0.02)):
        (est,) = BOME("bome", bome_step=xi, eta=eta, inner_steps=3).stochastic(full(small, lam), [(300, None)])
        offsets.append(full(small, lam).grad(est.w, torch.arange(small.n_inner)).norm().item())
    assert offsets[1] < offsets[0] / 3, offsets


def test_fixed_lambda_oracle_calls(small):
    """b = 5, b' = 3, T = 2, t = 4: (t + 1)(T + 2)·b = 100 sample gradients, (t + 1)·b' = 15 outer."""
    lam = draws(small, 1)[0]
    sampled = Sampled(small, lam, Sampling(5, 3, False), torch.Generator().manual_seed(2))
    (est,) = BOME("bome", bome_step=0.05, inner_steps=2).stochastic(sampled, [(4, None)])
    assert (est.oracles.n_grad, est.oracles.n_hvp, est.oracles.n_jvp, est.oracles.n_outer) == (100, 0, 0, 15)
