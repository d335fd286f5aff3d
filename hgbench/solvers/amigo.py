"""AmIGO: Arbel & Mairal, "Amortized implicit differentiation for stochastic bilevel
optimization", ICLR 2022, Algorithm 1 (AmIGO) with its warm-started inner SGD and SGD on the
linear system (Algorithms 2 and 3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from hgbench.options import option
from hgbench.solvers.base import POSITIVE, STEPS, Moving, Solver, SolverOptions


@dataclass
class AmigoOptions(SolverOptions):
    solver_step: float = option(POSITIVE, "η: the step of SGD on the linear system in v")
    inner_steps: int = option(STEPS, "T: warm-started SGD steps on z per iteration (benchmark_bilevel: 10)")
    solver_steps: int = option(STEPS, "M: warm-started SGD steps on v per iteration (benchmark_bilevel: 10)")


class Amigo(Solver):
    """AmIGO: warm-started SGD on z and on the linear system in v, then a step of x.

    Algorithm 1 of the paper, each iteration at x:

        z ← T steps of SGD on g(·, x) from the previous z (step ρ = ``inner_step``, a fresh batch each)
        (∇₁f_B', ∇₂f_B') on a fresh outer batch at (z, x)
        v ← M steps of SGD on ½ vᵀ∇₁²g v + vᵀ∇₁f_B' from the previous v:
            v ← v − η (∇₁²g_B(z, x) v + ∇₁f_B'), a fresh inner batch B each, ∇₁f_B' fixed
        x ← x − γ (∇₂f_B' + ∂²g_B''/∂x∂z (z, x) v)   (B'' a fresh inner batch)

    Constant steps under either ``step_rule``, as in benchmark_bilevel's solvers/amigo.py; that the
    paper's stochastic analysis (§4) takes constant steps bounded by the problem's constants is this
    project's reading, NOT VERIFIED against its text (the search tool stores the paper's opening
    only). benchmark_bilevel's solvers/amigo.py
    runs the same three parts with its z steps after the x step, and one warm-up of z first. At the
    full batch this is the deterministic two-loop method with warm starts (T gradient steps,
    M steps of Richardson's iteration on the linear system, a hypergradient step)."""

    Options = AmigoOptions
    paper = "Arbel, Mairal ICLR 2022, Algorithms 1–3"

    def run(self, oracle: Moving, lam: torch.Tensor) -> Iterator[torch.Tensor]:
        z, v = oracle.w0, torch.zeros_like(oracle.w0)
        while True:
            oracle.at(lam)
            z = self.sgd(oracle, z, self.inner_step, self.inner_steps)
            outer_z, outer_x = oracle.outer_grads(z, oracle.outer_batch())
            for _ in range(self.solver_steps):
                v = v - self.solver_step * (oracle.hvp(z, v, oracle.inner_batch()) + outer_z)
            lam = lam - self.outer_step * (outer_x + oracle.cross(z, v, oracle.inner_batch()))
            yield lam
