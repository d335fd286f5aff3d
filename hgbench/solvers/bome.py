"""BOME: Liu, Ye, Wright, Stone, Liu, "BOME! Bilevel Optimization Made Easy: A Simple First-Order
Approach", NeurIPS 2022 (arXiv 2209.08709), Algorithm 1."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from hgbench.estimators.bome import bome_multiplier
from hgbench.options import option
from hgbench.solvers.base import POSITIVE, STEPS, Moving, Solver, SolverOptions


@dataclass
class BomeOptions(SolverOptions):
    eta: float = option(POSITIVE, "η in the control φ = η‖∇q̂‖² (benchmark_bilevel's default 0.5)")
    inner_steps: int = option(STEPS, "T: gradient steps on z ↦ g(z, x) from z that give z_T in q̂ (benchmark_bilevel: 10)")


class Bome(Solver):
    """BOME: first-order only, a value-function constraint with a multiplier set at every step.

    The value-function reformulation min_{z,x} f(z, x) s.t. q(z, x) = g(z, x) − min_z' g(z', x) ≤ 0
    with q approximated by q̂(z, x) = g(z, x) − g(z_T, x), z_T = T gradient steps on z' ↦ g(z', x)
    from z (z_T held fixed: ∇q̂ = (∇₁g(z, x), ∇₂g(z, x) − ∇₂g(z_T, x)), no differentiation through
    the steps). Each iteration, on fresh minibatches (B_1 … B_T, B inner, B' outer):

        z_T = z − α Σ ∇₁g_{B_t}(z_t, x)                           (T SGD steps from z; α = ``inner_step``)
        ∇q̂ = (∇₁g_B(z, x), ∇₂g_B(z, x) − ∇₂g_B(z_T, x))          (one batch B for both points)
        ∇f = (∇₁f_B'(z, x), ∇₂f_B'(z, x))
        μ = max((η‖∇q̂‖² − ⟨∇f, ∇q̂⟩)/‖∇q̂‖², 0)                    (hgbench.estimators.bome.bome_multiplier)
        (z, x) ← (z, x) − ξ (∇f + μ∇q̂)                            (ξ = ``outer_step``)

    Only z and x persist across iterations (z_T restarts from the current z). φ = η‖∇q̂‖² is the
    control benchmark_bilevel's solvers/bome.py (read, not copied) uses by default (its other
    choice, φ = η q̂, is not offered here); its defaults are η = 0.5, T = 10 and one step 0.1 for
    the inner steps and the joint update, and it runs BOME at the FULL batch ("It is a
    deterministic method"): here the batches are the mode's option, and at b = n, b' = m this is
    that deterministic method. The paper's own Algorithm 1 and theorem text were not read for
    this file (its abstract: a "non-asymptotic convergence analysis of the proposed method to
    stationary points"). With a constant ξ and η > 0 a fixed point of the iteration needs ∇q̂ = 0
    and then ∇f = 0 jointly in (z, x) (if d = 0, ⟨∇q̂, d⟩ = 0 ≥ η‖∇q̂‖²), which the bilevel
    minimizer does not satisfy in general: the iterates approach x* and then hover near it, the
    closer the smaller ξ and the larger T (tests/test_bome.py).
    Oracle calls per iteration: (T + 2)·b sample gradients (∇₁g at T points; both partials at z
    and at z_T on B count once each), b' outer gradients; no Hessian or cross product."""

    Options = BomeOptions
    paper = "Liu, Ye, Wright, Stone, Liu NeurIPS 2022, Algorithm 1"

    def run(self, oracle: Moving, lam: torch.Tensor) -> Iterator[torch.Tensor]:
        z = oracle.w0
        while True:
            oracle.at(lam)
            z_t = self.sgd(oracle, z, self.inner_step, self.inner_steps)
            batch = oracle.inner_batch()
            q_z, q_x = oracle.inner_grads(z, batch)
            q_x = q_x - oracle.inner_grads(z_t, batch)[1]
            f_z, f_x = oracle.outer_grads(z, oracle.outer_batch())
            mu = bome_multiplier(torch.cat([f_z.ravel(), f_x.ravel()]), torch.cat([q_z.ravel(), q_x.ravel()]), self.eta)
            z, lam = z - self.outer_step * (f_z + mu * q_z), lam - self.outer_step * (f_x + mu * q_x)
            yield lam
