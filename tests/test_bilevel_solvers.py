"""mode=bilevel (issue 27, "End to end"): the stochastic bilevel solvers at the full batch against
the closed-form minimizer of a small quadratic bilevel problem, their oracle counts by hand,
seeded reruns, a diverging run flagged, refusals in one line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from hgbench.analysis.bilevel import plot_bilevel, reached
from hgbench.core.stochastic import Sampling
from hgbench.problems.bilevel_quadratic import BilevelQuadratic
from hgbench.solvers.amigo import Amigo
from hgbench.solvers.base import Moving, Solver
from hgbench.solvers.bsa import Bsa
from hgbench.solvers.f2sa import F2sa
from hgbench.solvers.fsla import Fsla
from hgbench.solvers.mrbo import Mrbo
from hgbench.solvers.saba import Saba
from hgbench.solvers.soba import Soba
from hgbench.solvers.srba import Srba
from hgbench.solvers.stocbio import Stocbio
from hgbench.solvers.ttsa import Ttsa
from hgbench.solvers.vrbo import Vrbo
from conftest import draws, run_cli

# n = 12 inner and m = 10 outer samples, dim z = 4, dim x = 3; spectra in [0.5, 1] (cross 0.3)
SMALL = ("q", 6, -1.0, 1.0, 12, 10, 4, 3, 0.5, 1.0, 1.0, 1.0, 1.0, 0.3, 0.3)
TINY = ["problem=bilevel_quadratic", "problem.n_inner=12", "problem.n_outer=10", "problem.dim_inner=4", "problem.dim_outer=3"]


@pytest.fixture(scope="module")
def small():
    return BilevelQuadratic(*SMALL)


def dense(problem: BilevelQuadratic) -> dict:
    """The means of the samples' factors (not hgbench's reference): g's Hessian H, cross C̄ and
    linear term ā; z*(x) = A x + c with A = −H⁻¹C̄ᵀ, c = −H⁻¹ā; f(z, x) = ½zᵀPz + ½xᵀRx + xᵀSz +
    aᵀz + bᵀx (P, R, S, a, b the outer means), so ∇₁f = Pz + Sᵀx + a and ∇₂f = Rx + Sz + b."""
    t, o = problem.inner_terms, problem.outer_terms
    n, m = len(t["p"]), len(o["p"])
    hess, cross, lin = t["p"].T @ t["p"] / n, t["s"].T @ t["u"] / n, t["a"].mean(0)
    return {
        "H": hess,
        "C": cross,
        "A": -torch.linalg.solve(hess, cross.T),
        "c": -torch.linalg.solve(hess, lin),
        "P": o["p"].T @ o["p"] / m,
        "R": o["r"].T @ o["r"] / m,
        "S": o["s"].T @ o["u"] / m,
        "a": o["a"].mean(0),
        "b": o["b"].mean(0),
    }


def fixed_point(problem: BilevelQuadratic, inverse: torch.Tensor) -> torch.Tensor:
    """The x̂ where ∇₂f − C̄ N ∇₁f = 0 at z = z*(x), N = ``inverse`` standing for H⁻¹ (N = H⁻¹:
    x*): [(R + SA) − C̄N(PA + Sᵀ)] x + (Sc + b) − C̄N(Pc + a) = 0, linear in x (``dense``)."""
    d = dense(problem)
    matrix = d["R"] + d["S"] @ d["A"] - d["C"] @ inverse @ (d["P"] @ d["A"] + d["S"].T)
    offset = d["S"] @ d["c"] + d["b"] - d["C"] @ inverse @ (d["P"] @ d["c"] + d["a"])
    return -torch.linalg.solve(matrix, offset)


def minimizer(problem: BilevelQuadratic) -> tuple[torch.Tensor, torch.Tensor]:
    """x* = argmin f(x) = E(z*(x), x) in closed form, and the Hessian of f (``dense``): f(x) is
    quadratic in x."""
    d = dense(problem)
    a_mat, c, p, s = d["A"], d["c"], d["P"], d["S"]
    curvature = a_mat.T @ p @ a_mat + a_mat.T @ s.T + s @ a_mat + d["R"]
    slope = a_mat.T @ (p @ c + d["a"]) + s @ c + d["b"]  # ∇f(0)
    return -torch.linalg.solve(curvature, slope), curvature


def full_batch(problem, lam, seed=0) -> Moving:
    return Moving(problem, lam, Sampling(problem.n_inner, problem.n_outer, False), torch.Generator().manual_seed(seed))


def last(solver, oracle, lam, iterations: int) -> torch.Tensor:
    steps = solver.run(oracle, lam)
    for _ in range(iterations):
        lam = next(steps)
    return lam


def test_the_closed_form_is_a_strict_minimum(small):
    """The test problem's f is strongly convex (so its stationary point is x*), and ∇f(x*) = 0 by
    hgbench's float64 reference too (two independent computations agree)."""
    from hgbench.core.reference import reference

    x_star, curvature = minimizer(small)
    assert torch.linalg.eigvalsh(curvature)[0] > 0.05
    assert reference(small, x_star).grad.norm() < 1e-12


@pytest.mark.parametrize(
    "solver, iterations, tol",
    [
        (Soba("soba", inner_step=0.5, outer_step=0.5, step_rule="constant"), 400, 1e-9),
        (Saba("saba", inner_step=0.5, outer_step=0.5, step_rule="paper"), 400, 1e-9),
        (Amigo("amigo", inner_step=0.5, solver_step=0.5, outer_step=1.0, inner_steps=3, solver_steps=3, step_rule="paper"), 150, 1e-9),
        (Stocbio("stocbio", inner_step=0.5, solver_step=0.85, outer_step=1.0, inner_steps=3, solver_steps=30, step_rule="paper"), 50, 2e-4),
        (Fsla("fsla", inner_step=0.5, outer_step=0.5, momentum=0.3, step_rule="constant"), 400, 1e-9),
        (Srba("srba", inner_step=0.5, outer_step=0.5, period=7, step_rule="paper"), 400, 1e-9),
    ],
    ids=lambda x: getattr(x, "name", ""),
)
def test_full_batch_solvers_converge_to_the_closed_form_minimizer(small, solver, iterations, tol):
    """At the full batch and constant steps each solver is a deterministic method whose fixed
    point is x*; StocBiO's is x* up to its Neumann truncation: its u is off by a factor
    (I − ηH)^{Q+1} of H⁻¹∇₁f, norm (1 − 0.85·μ_H)^{31} ≈ 2e-4 with μ_H ≈ 0.29 here, hence its tolerance."""
    x_star, _ = minimizer(small)
    assert 0.28 < torch.linalg.eigvalsh(small.hess)[0] < 0.3
    lam = last(solver, full_batch(small, draws(small, 1)[0]), draws(small, 1)[0], iterations)
    assert (lam - x_star).norm() <= tol * x_star.norm()


def test_full_batch_saba_is_soba(small):
    """One SAGA batch holding every sample: SABA's estimates are the full-batch values, so its
    iterates are SOBA's with constant steps (up to round-off)."""
    lam0 = draws(small, 1)[0]
    soba = last(Soba("soba", inner_step=0.5, outer_step=0.5, step_rule="constant"), full_batch(small, lam0), lam0, 30)
    saba = last(Saba("saba", inner_step=0.5, outer_step=0.5, step_rule="paper"), full_batch(small, lam0), lam0, 30)
    assert (soba - saba).norm() <= 1e-13 * soba.norm()


def test_full_batch_fsla_momentum_vanishes(small):
    """At the full batch the recursive momentum's correction d⁻ − h⁻ is zero (h⁻ recomputes the
    previous h on the same inputs): FSLA's iterates with η₀ = 0.3 (paper's decay) are those
    without momentum (η₀ = 1), to round-off."""
    lam0 = draws(small, 1)[0]
    runs = [
        last(Fsla("fsla", inner_step=0.5, outer_step=0.5, momentum=eta, step_rule="paper"), full_batch(small, lam0), lam0, 30)
        for eta in (0.3, 1.0)
    ]
    assert (runs[0] - runs[1]).norm() <= 1e-13 * runs[1].norm()


def test_hia_is_unbiased_for_the_truncated_neumann_series(small):
    """Solver.hia averaged over its random truncation p ∈ {0, …, Q−1} at the full batch equals
    the truncated Neumann series H⁻¹(I − (I − ηH)^Q) r, from the dense Hessian (closed form)."""
    lam0 = draws(small, 1)[0]
    oracle, r = full_batch(small, lam0), torch.linspace(-1.0, 2.0, small.w_dim, dtype=torch.float64)
    z, step, steps = oracle.w0 + 0.3, 0.7, 6
    mean = sum(Solver("s").hia(oracle, z, r, step, steps, p) for p in range(steps)) / steps
    hess = dense(small)["H"]
    power = torch.linalg.matrix_power(torch.eye(small.w_dim, dtype=torch.float64) - step * hess, steps)
    exact = torch.linalg.solve(hess, r - power @ r)
    assert (mean - exact).norm() <= 1e-13 * exact.norm()
    assert oracle.oracles.n_hvp == sum(range(steps)) * small.n_inner


@pytest.mark.parametrize(
    "solver",
    [
        Bsa("bsa", inner_step=0.5, outer_step=1.0, solver_step=0.5, solver_steps=1, inner_steps=3, step_rule="constant"),
        Ttsa("ttsa", inner_step=0.5, outer_step=0.5, solver_step=0.5, solver_steps=1, step_rule="constant"),
    ],
    ids=lambda x: x.name,
)
def test_full_batch_bsa_and_ttsa_with_one_term_reach_their_closed_form_fixed_point(small, solver):
    """Q = 1: p = 0 always, u = η∇₁f exactly; at the full batch and constant steps BSA and TTSA
    are deterministic, their fixed point x̂ solves ∇₂f − ηC̄∇₁f = 0 at z = z*(x), linear in x:
    [(R + SA) − ηC̄(PA + Sᵀ)] x + (Sc + b) − ηC̄(Pc + a) = 0 (``dense``; x̂ ≠ x*, 0.26‖x*‖ away here)."""
    fixed = fixed_point(small, solver.solver_step * torch.eye(small.w_dim, dtype=torch.float64))
    assert (fixed - minimizer(small)[0]).norm() > 0.1 * fixed.norm()
    lam0 = draws(small, 1)[0]
    lam = last(solver, full_batch(small, lam0), lam0, 600)
    assert (lam - fixed).norm() <= 1e-9 * fixed.norm()


def truncated_fixed_point(problem: BilevelQuadratic, eta: float, q: int) -> torch.Tensor:
    """``fixed_point`` with the dense truncated Neumann inverse H⁻¹(I − (I − ηH)^{Q+1})."""
    hess = dense(problem)["H"]
    eye = torch.eye(problem.w_dim, dtype=torch.float64)
    return fixed_point(problem, torch.linalg.solve(hess, eye - torch.linalg.matrix_power(eye - eta * hess, q + 1)))


NEUMANN = dict(solver_step=0.6, solver_steps=4)


@pytest.mark.parametrize(
    "solver, iterations",
    [
        (Stocbio("stocbio", inner_step=0.5, outer_step=1.0, inner_steps=3, step_rule="paper", **NEUMANN), 200),
        (Mrbo("mrbo", inner_step=0.5, outer_step=0.5, momentum=0.5, step_rule="constant", **NEUMANN), 400),
        (Vrbo("vrbo", inner_step=0.5, outer_step=0.5, inner_steps=2, period=1, step_rule="paper", **NEUMANN), 300),
        (Vrbo("vrbo", inner_step=0.5, outer_step=0.5, inner_steps=2, period=3, step_rule="paper", **NEUMANN), 300),
    ],
    ids=lambda x: f"{x.name}{getattr(x, 'period', '')}" if isinstance(x, Solver) else "",
)
def test_full_batch_neumann_solvers_reach_their_closed_form_fixed_point(small, solver, iterations):
    """StocBiO, MRBO and VRBO (restarts every iteration or every third) at the full batch: the
    recursive estimates' differences are exact, their fixed point is where ∇₂f = C̄ H⁻¹(I −
    (I − ηH)^{Q+1}) ∇₁f at z*(x) (``truncated_fixed_point``), 2e-2·‖x*‖ from x* at Q = 4, η = 0.6."""
    fixed, x_star = truncated_fixed_point(small, 0.6, 4), minimizer(small)[0]
    assert 1e-3 * x_star.norm() < (fixed - x_star).norm() < 0.1 * x_star.norm()
    lam0 = draws(small, 1)[0]
    lam = last(solver, full_batch(small, lam0), lam0, iterations)
    assert (lam - fixed).norm() <= 1e-9 * fixed.norm()


def test_full_batch_mrbo_momentum_vanishes(small):
    """At the full batch MRBO's recursive momentum corrections are zero: η₀ = 0.5 and η₀ = 1 (no
    momentum) give the same iterates, to round-off."""
    lam0 = draws(small, 1)[0]
    runs = [
        last(Mrbo("mrbo", inner_step=0.5, outer_step=0.5, momentum=m, step_rule="paper", **NEUMANN), full_batch(small, lam0), lam0, 30)
        for m in (0.5, 1.0)
    ]
    assert (runs[0] - runs[1]).norm() <= 1e-13 * runs[1].norm()


def test_ttsa_is_bsa_with_one_inner_step(small):
    """TTSA's iteration is BSA's with T = 1 (same stream, same draws of p; constant steps, their
    papers' exponents differ): the same iterates."""
    lam0, oracles = (
        draws(small, 1)[0],
        [Moving(small, draws(small, 1)[0], Sampling(5, 3, False), torch.Generator().manual_seed(2)) for _ in range(2)],
    )
    options = dict(inner_step=0.3, outer_step=0.3, solver_step=0.5, solver_steps=4, step_rule="constant")
    ttsa = last(Ttsa("ttsa", **options), oracles[0], lam0, 10)
    bsa = last(Bsa("bsa", inner_steps=1, **options), oracles[1], lam0, 10)
    assert torch.equal(ttsa, bsa) and oracles[0].oracles == oracles[1].oracles


def test_full_batch_srba_is_soba(small):
    """At the full batch SARAH's differences are exact: SRBA's iterates (restarts every 7
    iterations) are SOBA's with constant steps, to round-off."""
    lam0 = draws(small, 1)[0]
    soba = last(Soba("soba", inner_step=0.5, outer_step=0.5, step_rule="constant"), full_batch(small, lam0), lam0, 30)
    srba = last(Srba("srba", inner_step=0.5, outer_step=0.5, period=7, step_rule="paper"), full_batch(small, lam0), lam0, 30)
    assert (soba - srba).norm() <= 1e-13 * soba.norm()


def test_srba_oracle_calls(small):
    """SRBA, 5 iterations with restarts at s = 1 and 4 (q = 3) on all n = 12, m = 10 samples, and
    3 recursive iterations on two points with b = 5, b' = 3, by hand."""
    lam0 = draws(small, 1)[0]
    oracle = Moving(small, lam0, Sampling(5, 3, False), torch.Generator().manual_seed(1))
    last(Srba("srba", inner_step=0.1, outer_step=0.1, period=3, step_rule="paper"), oracle, lam0, 5)
    inner = 2 * 12 + 3 * 2 * 5
    assert (oracle.oracles.n_grad, oracle.oracles.n_hvp, oracle.oracles.n_jvp) == (inner, inner, inner)
    assert oracle.oracles.n_outer == 2 * 10 + 3 * 2 * 3


def test_f2sa_bias_shrinks_as_one_over_the_penalty(small):
    """F2SA at the full batch with a constant penalty ν converges to the minimizer of its penalty
    surrogate, O(1/ν) from x*: ten times the penalty, about a tenth of the distance."""
    x_star, _ = minimizer(small)
    lam0 = draws(small, 1)[0]
    gaps = []
    for nu in (10.0, 100.0):
        solver = F2sa(
            "f2sa",
            inner_step=0.5,
            outer_step=0.5,
            penalty_step=0.5 / nu,
            step_rule="constant",
            penalty0=nu,
            inner_steps=2,
        )
        gaps.append((last(solver, full_batch(small, lam0), lam0, 150) - x_star).norm().item())
    assert gaps[1] < gaps[0] / 5 and gaps[1] < 0.01 * x_star.norm().item()


# the papers' schedules as docs/stochastic.md records them (exponents written here as fractions,
# independently of the solvers' PAPER_EXPONENTS): (solver, schedule, exponent of s)
PAPER_SCHEDULES = [
    (Soba("soba", inner_step=0.3, outer_step=0.2, step_rule="paper"), "inner", -2 / 5),
    (Soba("soba", inner_step=0.3, outer_step=0.2, step_rule="paper"), "outer", -3 / 5),
    (F2sa("f2sa", inner_step=0.3, outer_step=0.2, penalty_step=0.1, penalty0=2.0, inner_steps=1, step_rule="paper"), "outer", -5 / 7),
    (F2sa("f2sa", inner_step=0.3, outer_step=0.2, penalty_step=0.1, penalty0=2.0, inner_steps=1, step_rule="paper"), "inner", -4 / 7),
    (F2sa("f2sa", inner_step=0.3, outer_step=0.2, penalty_step=0.1, penalty0=2.0, inner_steps=1, step_rule="paper"), "penalty", 2 / 7),
    (Bsa("bsa", inner_step=0.3, outer_step=0.2, solver_step=0.1, solver_steps=2, inner_steps=2, step_rule="paper"), "inner", -1 / 2),
    (Bsa("bsa", inner_step=0.3, outer_step=0.2, solver_step=0.1, solver_steps=2, inner_steps=2, step_rule="paper"), "outer", -1 / 2),
    (Ttsa("ttsa", inner_step=0.3, outer_step=0.2, solver_step=0.1, solver_steps=2, step_rule="paper"), "inner", -2 / 5),
    (Ttsa("ttsa", inner_step=0.3, outer_step=0.2, solver_step=0.1, solver_steps=2, step_rule="paper"), "outer", -3 / 5),
    (Fsla("fsla", inner_step=0.3, outer_step=0.2, momentum=0.5, step_rule="paper"), "inner", -1 / 2),
    (Fsla("fsla", inner_step=0.3, outer_step=0.2, momentum=0.5, step_rule="paper"), "momentum", -1 / 2),
    (Fsla("fsla", inner_step=0.3, outer_step=0.2, momentum=0.5, step_rule="paper"), "outer", -1 / 2),
    (Mrbo("mrbo", inner_step=0.3, outer_step=0.2, solver_step=0.1, solver_steps=2, momentum=0.5, step_rule="paper"), "inner", -1 / 3),
    (Mrbo("mrbo", inner_step=0.3, outer_step=0.2, solver_step=0.1, solver_steps=2, momentum=0.5, step_rule="paper"), "outer", -1 / 3),
    (Mrbo("mrbo", inner_step=0.3, outer_step=0.2, solver_step=0.1, solver_steps=2, momentum=0.5, step_rule="paper"), "momentum", -2 / 3),
]


@pytest.mark.parametrize("solver, schedule, power", PAPER_SCHEDULES, ids=lambda x: getattr(x, "name", str(x)))
def test_paper_step_rule_is_the_papers_schedule(solver, schedule, power):
    """step_rule=paper: the step (F2SA's penalty: the growing ν) at s = 1, 2, 10, 1000 is first·s^power;
    step_rule=constant: first at every s."""
    for s in (1, 2, 10, 1000):
        assert solver.step(schedule, 0.7, s) == pytest.approx(0.7 * s**power, rel=1e-14)
    constant = type(solver)(**{**vars(solver), "step_rule": "constant"})
    assert [constant.step(schedule, 0.7, s) for s in (1, 2, 1000)] == [0.7, 0.7, 0.7]


def test_step_rules_agree_at_the_first_iteration_only(small):
    """SOBA's and F2SA's runs read the rule: with equal first steps, paper and constant give the same
    x_1 (s = 1: s^{-a} = 1) and different x_2. SABA, AmIGO and StocBiO's papers take constant steps:
    their two rules are one run."""
    lam0 = draws(small, 1)[0]
    for make in (
        lambda rule: Soba("soba", inner_step=0.5, outer_step=0.5, step_rule=rule),
        lambda rule: F2sa("f2sa", inner_step=0.5, outer_step=0.5, penalty_step=0.05, penalty0=1.0, inner_steps=2, step_rule=rule),
    ):
        x1 = [last(make(rule), full_batch(small, lam0), lam0, 1) for rule in ("paper", "constant")]
        x2 = [last(make(rule), full_batch(small, lam0), lam0, 2) for rule in ("paper", "constant")]
        assert torch.equal(x1[0], x1[1]) and (x2[0] - x2[1]).norm() > 1e-6 * x2[1].norm()
    saba = [
        last(Saba("saba", inner_step=0.5, outer_step=0.5, step_rule=rule), full_batch(small, lam0), lam0, 5)
        for rule in ("paper", "constant")
    ]
    assert torch.equal(*saba)


@pytest.mark.parametrize(
    "solver, per_iteration",
    [
        (
            Soba("soba", inner_step=0.1, outer_step=0.1, step_rule="paper"),
            {"n_grad": 5, "n_hvp": 5, "n_jvp": 5, "n_outer": 3},
        ),
        (Saba("saba", inner_step=0.1, outer_step=0.1, step_rule="paper"), {"n_grad": 5, "n_hvp": 5, "n_jvp": 5, "n_outer": 3}),
        (
            Amigo("amigo", inner_step=0.1, solver_step=0.1, outer_step=0.1, inner_steps=2, solver_steps=3, step_rule="paper"),
            {"n_grad": 2 * 5, "n_hvp": 3 * 5, "n_jvp": 5, "n_outer": 3},
        ),
        (
            Stocbio("stocbio", inner_step=0.1, solver_step=0.1, outer_step=0.1, inner_steps=2, solver_steps=3, step_rule="paper"),
            {"n_grad": 2 * 5, "n_hvp": 3 * 5, "n_jvp": 5, "n_outer": 3},
        ),
        (
            F2sa(
                "f2sa",
                inner_step=0.1,
                outer_step=0.1,
                penalty_step=0.1,
                step_rule="paper",
                penalty0=1.0,
                inner_steps=2,
            ),
            {"n_grad": 2 * (5 + 5) + 5 + 5, "n_hvp": 0, "n_jvp": 0, "n_outer": 2 * 3 + 3},
        ),
        (
            Bsa("bsa", inner_step=0.1, outer_step=0.1, solver_step=0.1, solver_steps=1, inner_steps=2, step_rule="paper"),
            {"n_grad": 2 * 5, "n_hvp": 0, "n_jvp": 5, "n_outer": 3},
        ),
        (
            Ttsa("ttsa", inner_step=0.1, outer_step=0.1, solver_step=0.1, solver_steps=1, step_rule="paper"),
            {"n_grad": 5, "n_hvp": 0, "n_jvp": 5, "n_outer": 3},
        ),
        (
            Fsla("fsla", inner_step=0.1, outer_step=0.1, momentum=0.5, step_rule="paper"),
            # the first iteration has no previous point: b cross products and 2b' outer gradients fewer
            {"n_grad": 5, "n_hvp": 5, "n_jvp": 2 * 5 - 5 / 4, "n_outer": 3 * 3 - 3 / 4},
        ),
        (
            Mrbo("mrbo", inner_step=0.1, outer_step=0.1, solver_step=0.1, solver_steps=3, momentum=0.5, step_rule="paper"),
            # two points (current and previous) but one at the first iteration
            {"n_grad": 2 * 5 - 5 / 4, "n_hvp": 2 * 3 * 5 - 3 * 5 / 4, "n_jvp": 2 * 5 - 5 / 4, "n_outer": 2 * 3 - 3 / 4},
        ),
    ],
    ids=lambda x: getattr(x, "name", ""),
)
def test_oracle_calls_per_sample(small, solver, per_iteration):
    """b = 5 inner and b' = 3 outer samples per batch: the counts after 4 iterations, by hand
    from each algorithm (SABA's batches: 12 = 5 + 5 + 2, one of them drawn per iteration, counted
    by its size)."""
    lam0 = draws(small, 1)[0]
    oracle = Moving(small, lam0, Sampling(5, 3, False), torch.Generator().manual_seed(1))
    if solver.name == "saba":  # a partition into equal batches: 12 = 3 × 4 and 10 = 2 × 5 would not be 5 and 3
        oracle = Moving(small, lam0, Sampling(4, 5, False), torch.Generator().manual_seed(1))
        per_iteration = {"n_grad": 4, "n_hvp": 4, "n_jvp": 4, "n_outer": 5}
    last(solver, oracle, lam0, 4)
    got = {key: getattr(oracle.oracles, key) for key in per_iteration}
    assert got == {key: 4 * value for key, value in per_iteration.items()}


def test_vrbo_oracle_calls(small):
    """VRBO, 4 iterations with restarts at s = 1 and 3 (q = 2) on all n = 12, m = 10 samples and
    m = 2 z steps each on two points with b = 5, b' = 3, Q = 3, by hand."""
    lam0 = draws(small, 1)[0]
    oracle = Moving(small, lam0, Sampling(5, 3, False), torch.Generator().manual_seed(1))
    solver = Vrbo("vrbo", inner_step=0.1, outer_step=0.1, solver_step=0.1, solver_steps=3, inner_steps=2, period=2, step_rule="paper")
    last(solver, oracle, lam0, 4)
    restarts, steps = 2, 4 * 2
    assert oracle.oracles.n_grad == restarts * 12 + steps * 2 * 5
    assert oracle.oracles.n_hvp == restarts * 3 * 12 + steps * 2 * 3 * 5
    assert oracle.oracles.n_jvp == restarts * 12 + steps * 2 * 5
    assert oracle.oracles.n_outer == restarts * 10 + steps * 2 * 3


def test_hia_oracle_calls_are_p_batches(small):
    """BSA with Q = 4: each iteration's HVPs are p·b with p ∈ {0, 1, 2, 3} drawn afresh: after 20
    iterations a multiple of b = 5 between 0 and 20·3·5, not always 0 and not always the most; the
    other counts are those of Q = 1."""
    lam0 = draws(small, 1)[0]
    oracle = Moving(small, lam0, Sampling(5, 3, False), torch.Generator().manual_seed(1))
    last(Bsa("bsa", inner_step=0.1, outer_step=0.1, solver_step=0.1, solver_steps=4, inner_steps=2, step_rule="paper"), oracle, lam0, 20)
    calls = oracle.oracles
    assert calls.n_hvp % 5 == 0 and 0 < calls.n_hvp < 20 * 3 * 5
    assert (calls.n_grad, calls.n_jvp, calls.n_outer) == (20 * 2 * 5, 20 * 5, 20 * 3)


def _mode(tmp_path, monkeypatch, name, *more) -> tuple[int, Path]:
    out = tmp_path / name
    code = run_cli(
        monkeypatch,
        "run",
        "mode=bilevel",
        *TINY,
        "bilevel.batch=4",
        "bilevel.iterations=30",
        "bilevel.eval_every=10",
        "threads=1",
        "plot=false",
        *more,
        f"hydra.run.dir={out}",
    )
    return code, out


def test_mode_rows_rerun_bit_identical(tmp_path, monkeypatch, figures):
    """Two runs of one configuration (SABA: its seeded partition and draws): the same rows but for
    the measured seconds; evaluated rows at 0, 10, 20, 30 with the exact ‖∇f‖² (ratio 1 at
    iteration 0) and the cumulative oracle calls, 3·4 inner and 5 outer per iteration (b = 4, b' = 5)."""
    frames = []
    for name in ("a", "b"):
        code, out = _mode(tmp_path, monkeypatch, name, "solver=saba", "bilevel.outer_batch=5")
        assert code == 0
        frames.append(pd.read_csv(out / "bilevel.csv").drop(columns=["time_s", "ref_time_s"]))
    pd.testing.assert_frame_equal(frames[0], frames[1])
    df = frames[0]
    assert list(df["iteration"]) == [0, 10, 20, 30] and (df["status"] == "ok").all()
    assert df["grad_norm2_rel"].iloc[0] == 1.0 and list(df["oracle_calls"]) == [0, *(s * (3 * 4 + 5) for s in (10, 20, 30))]
    plot_bilevel(pd.read_csv(tmp_path / "a" / "bilevel.csv"), tmp_path)
    assert len(figures) == 1 and [len(ax.lines) for ax in figures[0].axes] == [2, 2]  # one solver line + the target line
    assert "| bilevel_quadratic | saba | 4 |" in (tmp_path / "bilevel_summary.md").read_text()


def test_mode_stops_at_the_oracle_budget(tmp_path, monkeypatch):
    """bilevel.max_calls=100 with SOBA at b = 4 (3·4 inner + 4 outer calls per iteration): the run
    ends at iteration 7, the first with 112 ≥ 100 calls, evaluated there."""
    code, out = _mode(tmp_path, monkeypatch, "m", "solver=soba", "bilevel.max_calls=100")
    df = pd.read_csv(out / "bilevel.csv")
    assert code == 0 and list(df["iteration"]) == [0, 7] and list(df["oracle_calls"]) == [0, 112]


def test_mode_diverging_run_is_a_flagged_row(tmp_path, monkeypatch):
    """A step 1e4 times too large: λ overflows; the run ends with a diverged row, exit 0."""
    code, out = _mode(
        tmp_path, monkeypatch, "d", "solver=soba", "solver.inner_step=3000", "solver.outer_step=3000", "bilevel.iterations=400"
    )
    df = pd.read_csv(out / "bilevel.csv")
    assert code == 0 and df["status"].iloc[-1] == "diverged" and df["iteration"].iloc[-1] < 400
    assert reached(df)["diverged"].item()


@pytest.mark.parametrize(
    "more, message",
    [
        (
            ["bilevel.batch=13"],
            "hgbench: error: bilevel.batch=13 and bilevel.outer_batch=None ask for minibatches of 13 and 13; problem 'bilevel_quadratic' has 12 training and 10 outer samples",
        ),
        (["solver.inner_step=-1"], "solver.inner_step=-1"),
        (["solver=bogus"], "solver"),
        (["resume=true"], "resume=true applies to mode=error and mode=outer"),
        (["solver=fsla", "solver.momentum=0"], "solver.momentum=0"),
        (["solver=fsla", "solver.momentum=1.5"], "solver.momentum=1.5"),
        (["solver=bsa", "solver.solver_steps=0"], "solver.solver_steps=0"),
        (["solver=ttsa", "solver.inner_steps=3"], "inner_steps"),
        (["solver=mrbo", "solver.momentum=-0.5"], "solver.momentum=-0.5"),
        (["solver=vrbo", "solver.period=0"], "solver.period=0"),
        (["solver=srba", "solver.period=-2"], "solver.period=-2"),
    ],
)
def test_mode_refusals_are_one_line(tmp_path, monkeypatch, capsys, more, message):
    code, out = _mode(tmp_path, monkeypatch, "r", *more)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (out / "bilevel.csv").exists()


def test_mode_refuses_a_problem_without_finite_sums(tmp_path, monkeypatch, capsys):
    code = run_cli(monkeypatch, "run", "mode=bilevel", "problem=kernel_ridge", f"hydra.run.dir={tmp_path}")
    err = capsys.readouterr().err.strip()
    assert (
        code == 2
        and err
        == "hgbench: error: mode=bilevel needs a finite-sum problem (hgbench/problems/finite_sum.py); problem 'kernel_ridge' is not one"
    )


def test_figure_tells_twelve_solvers_apart(tmp_path, figures):
    """More solvers than colours (twelve names, ten colours for unshipped names): every line of
    the bilevel figure has its own (colour, marker, line style)."""
    names = ["soba", "saba", "amigo", "stocbio", "f2sa", "bome", "ttsa", "bsa", "fsla", "mrbo", "vrbo", "srba"]
    rows = pd.DataFrame(
        [
            {
                "problem": "q",
                "setting_id": "s",
                "solver": name,
                "batch": 4,
                "outer_batch": 4,
                "replace": False,
                "iteration": s,
                "status": "ok",
                "grad_norm2_rel": 0.5**s,
                "oracle_calls": 10 * s,
                "time_s": 0.1 * s,
                "test_acc": float("nan"),
            }
            for name in names
            for s in range(3)
        ]
    )
    plot_bilevel(rows, tmp_path)
    lines = figures[0].axes[0].lines
    styles = {(line.get_color(), line.get_marker(), line.get_linestyle()) for line in lines}
    assert len(lines) == len(names) + 1 and len(styles) == len(names) + 1  # and the dotted target line
