"""Vanishing steps for the stochastic estimators (``step_halflife``, hgbench.core.stochastic.step_at):
at the full batch, stochastic ITD with γᵢ = γ·h/(h + i) is the exact derivative of that t-step
gradient descent (central finite differences in float64), and linear_sgd is the same GD followed
by the fixed-point iteration z ← z − ηⱼ(Hz − ∇₁E) on dense matrices; a run without the option
keeps its identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hgbench.core.stochastic import Sampled, Sampling, step_at
from hgbench.estimators.linear_sgd import LinearSGD
from hgbench.estimators.stoch_itd import StochasticITD
from hgbench.running.identity import run_id
from conftest import draws, refusal

EPS = torch.finfo(torch.float64).eps
HALFLIFE = 4.0


def full(problem, lam):
    return Sampled(problem, lam, Sampling(problem.n_inner, problem.n_outer, replace=False), torch.Generator().manual_seed(0))


def gd(problem, lam, w, gamma, t):
    """t steps of full-batch gradient descent with the vanishing steps, written out."""
    grad = torch.func.grad(problem.inner_loss)
    for i in range(t):
        w = w - gamma * HALFLIFE / (HALFLIFE + i) * grad(w, lam)
    return w


def test_step_at():
    assert step_at(0.3, 7, None) == 0.3
    assert [step_at(2.0, i, 4.0) for i in (0, 4, 12)] == [2.0, 1.0, 0.5]


def test_stoch_itd_with_vanishing_steps_is_the_derivative_of_its_trajectory(ridge):
    """ĝ(t) = d/dλ E(w_t(λ), λ) for w_t the t-step GD with steps α·h/(h + i) (α held at its value at
    λ, as the estimator holds it): against central differences, whose error is O(δ²) + O(eps/δ)."""
    lam = draws(ridge, 1)[0]
    sampled, t = full(ridge, lam), 25
    (got,) = StochasticITD("stoch_itd", step_halflife=HALFLIFE).stochastic(sampled, [(t, None)])
    (constant,) = StochasticITD("stoch_itd").stochastic(full(ridge, lam), [(t, None)])
    alpha, w0 = sampled.alpha, ridge.w0(lam)

    def f(x):
        return ridge.outer(gd(ridge, x, w0, alpha, t), x)

    delta = 1e-5
    fd = torch.stack([(f(lam + delta * e) - f(lam - delta * e)) / (2 * delta) for e in torch.eye(lam.numel(), dtype=lam.dtype)])
    assert (got.grad - fd).norm() <= 1e-7 * fd.norm()
    assert (constant.grad - got.grad).norm() > 1e-3 * got.grad.norm()  # the option changes the steps


def test_linear_sgd_with_vanishing_steps_at_the_full_batch(ridge):
    """ĝ(t, k) = ∇₂E(w_t) − (∂²ℓ/∂λ∂w) z_k with z_{j+1} = z_j − η·h/(h + j)·(H z_j − ∇₁E(w_t)), from dense
    H and cross-derivative matrices, to 1e4 ulps of the scale."""
    lam = draws(ridge, 1)[0]
    sampled, (t, k) = full(ridge, lam), (12, 9)
    (got,) = LinearSGD("linear_sgd", inner_step=0.8, solver_step=0.6, step_halflife=HALFLIFE).stochastic(sampled, [(t, k)])
    alpha = sampled.alpha
    w = gd(ridge, lam, ridge.w0(lam), 0.8 * alpha, t)
    hessian = torch.autograd.functional.hessian(lambda v: ridge.inner_loss(v, lam), w)
    cross = torch.autograd.functional.jacobian(lambda x: torch.func.grad(ridge.inner_loss)(w, x), lam)  # ∂(∇₁ℓ)/∂λ: d × p
    grad_w, grad_lam = torch.func.grad(ridge.outer, argnums=(0, 1))(w, lam)
    z = torch.zeros_like(w)
    for j in range(k):
        z = z - 0.6 * alpha * HALFLIFE / (HALFLIFE + j) * (hessian @ z - grad_w)
    want = grad_lam - cross.T @ z
    assert (got.grad - want).norm() <= 1e4 * EPS * (want.norm() + grad_lam.norm())


def test_runs_without_the_option_keep_their_identity():
    """A committed run of a stochastic estimator, written before step_halflife existed: the same
    run_id with step_halflife null; a different one when it is set."""
    path = next(p for p in sorted(Path("results/stochastic").glob("*/run.json")) if "stoch_itd" in p.read_text())
    recorded = json.loads(path.read_text())
    config = recorded["config"]
    assert "step_halflife" not in config["estimator"]
    assert run_id({**config, "estimator": {**config["estimator"], "step_halflife": None}}) == recorded["run_id"]
    assert run_id({**config, "estimator": {**config["estimator"], "step_halflife": 30.0}}) != recorded["run_id"]


@pytest.mark.parametrize("bad", ["0", "-1.0"])
def test_bad_halflife_is_refused(bad):
    message = refusal("mode=stochastic", "estimator=stoch_itd", f"estimator.step_halflife={bad}")
    assert message and "step_halflife" in message and "null (constant steps)" in message
    assert refusal("mode=stochastic", "estimator=linear_sgd", "estimator.step_halflife=30") is None
