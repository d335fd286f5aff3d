"""TTSA: Hong, Wai, Wang, Yang, "A two-timescale stochastic algorithm framework for bilevel
optimization: complexity analysis and application to actor-critic", SIAM J. Optim. 2023
(arXiv 2007.05170), Algorithm 1 (TTSA)."""

from __future__ import annotations

from dataclasses import dataclass

from hgbench.solvers.bsa import Bsa, HiaOptions


@dataclass
class TtsaOptions(HiaOptions):
    pass


class Ttsa(Bsa):
    """TTSA: one SGD step on z, then BSA's randomly truncated Neumann hypergradient step of x.

    Each iteration s at x, on fresh minibatches:

        z ← z − β_s ∇₁g_B(z, x)
        u = Q η ∏_{i=1..p} (I − η ∇₁²g_{B_i}(z, x)) ∇₁f_B'(z, x),  p uniform in {0, …, Q−1}
        x ← x − α_s (∇₂f_B'(z, x) − ∂²g_B''/∂x∂z (z, x) u)

    — BSA's iteration with T = 1 (hgbench.solvers.bsa.Bsa runs it); two timescales: α_s/β_s → 0.
    ``step_rule=paper``: β_s = β₀ s^{−2/5}, α_s = α₀ s^{−3/5}, benchmark_bilevel's defaults (its
    solvers/ttsa.py, read, not copied), NOT checked against the paper's theorem, whose abstract
    (verified with the search tool) says: "a stochastic gradient update with a larger step size is
    used for the inner problem, while a projected stochastic gradient update with a smaller step
    size is used for the outer problem" and, for a weakly convex outer problem, "finds an
    O(K_max^{-2/5})-stationary solution" (the theorem's steps, constant in a horizon K_max, were
    not read). No projection: x is unconstrained here. ``step_rule=constant``: constant steps.
    Oracle calls per iteration: b sample gradients, p·b HVPs (p random), b cross products, b'
    outer gradients."""

    Options = TtsaOptions
    paper = "Hong, Wai, Wang, Yang SIAM J. Optim. 2023, Algorithm 1"
    PAPER_EXPONENTS = {"inner": 0.4, "outer": 0.6}  # benchmark_bilevel's (class docstring: not checked)
    inner_steps = 1  # one z step per iteration: what makes BSA's iteration TTSA's
