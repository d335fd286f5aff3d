"""BSA: Ghadimi & Wang, "Approximation methods for bilevel programming", arXiv 1802.02246 (2018),
its bilevel stochastic approximation method (BSA; Algorithm 3 by this project's recollection,
not checked), with its randomly truncated Neumann estimate of the Hessian inverse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from hgbench.options import option
from hgbench.solvers.base import POSITIVE, STEPS, Moving, Solver, SolverOptions


@dataclass
class HiaOptions(SolverOptions):
    """What BSA and TTSA share: the Hessian-inverse approximation's step and length."""

    solver_step: float = option(POSITIVE, "η: the step of the Hessian-inverse approximation (η ≤ 1/L: Solver.hia)")
    solver_steps: int = option(STEPS, "Q: p is drawn uniformly in {0, …, Q−1} (benchmark_bilevel: 10)")


@dataclass
class BsaOptions(HiaOptions):
    inner_steps: int = option(STEPS, "T: warm-started SGD steps on z per iteration (benchmark_bilevel: 10)")


class Bsa(Solver):
    """BSA: warm-started SGD on z, a randomly truncated Neumann hypergradient, a step of x.

    Each iteration s at x, on fresh minibatches:

        z ← T steps of SGD on g(·, x) from the previous z (step β_s, a fresh batch each)
        (∇₁f_B', ∇₂f_B') on a fresh outer batch at (z, x)
        u = Q η ∏_{i=1..p} (I − η ∇₁²g_{B_i}(z, x)) ∇₁f_B',  p uniform in {0, …, Q−1}  (Solver.hia)
        x ← x − α_s (∇₂f_B' − ∂²g_B''/∂x∂z (z, x) u)     (B'' a fresh inner batch)

    β_s = β₀ s^{−a}, α_s = α₀ s^{−c} (β₀ = ``inner_step``, α₀ = ``outer_step``).
    ``step_rule=paper``: a = c = 1/2, benchmark_bilevel's defaults (its solvers/bsa.py, read, not
    copied), NOT checked against the paper's theorem (the search tool stores its abstract only:
    "we generalize our results under stochastic setting where only noisy information of both
    objective functions is available"); the paper's own inner loop lengthens with the iteration,
    here T is fixed as in benchmark_bilevel. ``step_rule=constant``: a = c = 0. benchmark_bilevel
    steps x before z (after one warm-up of z); here z moves first, as in the description above.

    E_p u is the truncated Neumann series η Σ_{q<Q} (I − ηH)^q ∇₁f: at the full batch the
    expected direction is a hypergradient with StocBiO's truncation, O((1 − ημ)^Q); with Q = 1,
    u = η∇₁f_B' exactly (p = 0) and the method is deterministic at the full batch, with the fixed
    point where ∇₂f − η ∂²g/∂x∂z ∇₁f = 0 at z*(x) (tests/test_bilevel_solvers.py).
    Oracle calls per iteration: T·b sample gradients, p·b HVPs (p random), b cross products,
    b' outer gradients."""

    Options = BsaOptions
    paper = "Ghadimi, Wang arXiv 1802.02246 (2018), BSA"
    PAPER_EXPONENTS = {"inner": 0.5, "outer": 0.5}  # benchmark_bilevel's (class docstring: not checked)

    def run(self, oracle: Moving, lam: torch.Tensor) -> Iterator[torch.Tensor]:
        z, s = oracle.w0, 0
        while True:
            s += 1
            oracle.at(lam)
            z = self.sgd(oracle, z, self.step("inner", self.inner_step, s), self.inner_steps)
            outer_z, outer_x = oracle.outer_grads(z, oracle.outer_batch())
            u = self.hia(oracle, z, outer_z, self.solver_step, self.solver_steps)
            lam = lam - self.step("outer", self.outer_step, s) * (outer_x - oracle.cross(z, u, oracle.inner_batch()))
            yield lam
