"""Stochastic bilevel solvers run end to end (issue 27, "End to end"; docs/stochastic.md): the
inner variable z (hgbench's w), the linear-system variable v and the outer variable x (hgbench's
λ) move together, every product taken on a minibatch of a finite-sum problem
(hgbench.problems.finite_sum) and counted per sample (hgbench.core.stochastic.Oracles).

Notation (Dagréou et al. NeurIPS 2022, §2): g = ℓ (inner, n samples), f = E (outer, m samples),

    ∇f(x) = ∇₂f(z*, x) + ∂²g/∂x∂z (z*, x) v*,   v* = −[∇₁²g(z*, x)]⁻¹ ∇₁f(z*, x),

so that each solver tracks z ≈ z*(x), either tracks v ≈ v*(x) (SOBA, SABA, AmIGO, FSLA, SRBA)
or estimates it afresh each iteration (StocBiO, BSA, TTSA, MRBO, VRBO: Neumann series) or not at all
(the first-order F2SA and BOME), and steps x along an estimate of ∇f. A solver is a generator (``Solver.run``) of the outer iterates x_1, x_2, … from x_0: the
caller (hgbench.running.bilevel_mode) times each ``next`` as the algorithm's time and evaluates
the exact f(x_s) and ∇f(x_s) while the generator is paused, apart.

Step sizes: every solver has ``step_rule`` (``STEP_RULES``): ``paper``, the schedule of the
method's convergence theorem, ρ_s = ρ₀ s^{−a} (s = 1, 2, …: the outer iteration) with the
exponents a of its paper (``Solver.PAPER_EXPONENTS``; a = 0: the paper's steps are constant), or
``constant``, every exponent 0. The first values ρ₀, γ₀, … are options (the theorems bound them by
problem constants that are not computed here). Each solver's docstring names the theorem and
says whether its text was checked; docs/stochastic.md has the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from hgbench.core.stochastic import Sampled
from hgbench.options import Choice, ComponentOptions, Integer, Number, option

POSITIVE = Number(0, low_open=True)
STEPS = Integer(1)
STEP_RULES = ("paper", "constant")


@dataclass
class SolverOptions(ComponentOptions):
    """What every solver has: the step of z (and v) and the step of x, each ρ₀ s^{−a}."""

    inner_step: float = option(POSITIVE, "ρ₀: the step of z and v at the first iteration")
    outer_step: float = option(POSITIVE, "γ₀: the step of x at the first iteration")
    step_rule: str = option(
        Choice(STEP_RULES),
        "paper: the step schedule of the method's convergence theorem (its exponents: docs/stochastic.md); constant: no decay",
    )


def decayed(step: float, exponent: float, s: int) -> float:
    """ρ₀ s^{−a}: a step at outer iteration s ≥ 1 (a constant step for a = 0)."""
    return step * s ** (-exponent)


class Moving(Sampled):
    """``Sampled`` at a λ that moves: ``at(lam)`` sets the λ at which every product is taken
    (``Sampled``'s products read ``self.lam`` at each call, ``inner_grads`` too), and the product a
    solver needs beyond a fixed-λ estimator's, exact on its minibatch and counted per sample:

        oracles_at(z, v, B)  (∇₁g_B(z, x), ∇₁²g_B(z, x) v, ∂²g_B/∂x∂z (z, x) v)   from one VJP of ∇₁g_B
                             (counted: b sample gradients, b HVPs, b cross JVPs)

    ``alpha`` and ``w0`` stay those of the λ it was built at (x_0): a solver's steps are absolute."""

    def at(self, lam: torch.Tensor) -> None:
        self.lam = lam

    def oracles_at(self, z: torch.Tensor, v: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = idx.numel()
        self.oracles.n_grad += b
        self.oracles.n_hvp += b
        self.oracles.n_jvp += b
        grad, pullback = torch.func.vjp(lambda w, lam: self._grad(w, lam, idx), z, self.lam)
        hvp, cross = pullback(v)
        return grad, hvp, cross


class Solver:
    """A stochastic bilevel solver (module docstring). Subclasses set ``Options``, ``paper``
    (the method's paper and algorithm, shown by `hgbench list`) and ``run``."""

    Options = SolverOptions
    paper = ""
    PAPER_EXPONENTS: dict[str, float] = {}  # the exponent a of each decaying step under step_rule=paper (absent: constant)

    def __init__(self, name: str, **options):
        self.name = name
        for key, value in options.items():
            setattr(self, key, value)

    def exponent(self, name: str) -> float:
        """The exponent a of the schedule ``name`` (a key of PAPER_EXPONENTS) under ``step_rule``:
        the paper's, or 0 for ``constant``."""
        return self.PAPER_EXPONENTS[name] if self.step_rule == "paper" else 0.0

    def step(self, name: str, first: float, s: int) -> float:
        """The step (or, for a negative exponent, the growing penalty) ``name`` at outer iteration
        s ≥ 1: ``first``·s^{−a}, a = ``exponent(name)``."""
        return decayed(first, self.exponent(name), s)

    def run(self, oracle: Moving, lam: torch.Tensor) -> Iterator[torch.Tensor]:
        """x_1, x_2, …: the outer iterate after each iteration, from x_0 = ``lam``, z_0 = the
        problem's w₀(x_0), v_0 = 0; minibatches from ``oracle``'s seeded generator."""
        raise NotImplementedError

    def sgd(self, oracle: Moving, z: torch.Tensor, step: float, steps: int) -> torch.Tensor:
        """``steps`` minibatch SGD steps on z ↦ g(z, x) from z, a fresh batch each (warm-started inner solver)."""
        for _ in range(steps):
            z = z - step * oracle.grad(z, oracle.inner_batch())
        return z

    def neumann(
        self, oracle: Moving, points: list, rhs: list, step: float, steps: int, batch: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """The truncated Neumann series of [∇₁²g(z, x)]⁻¹ r at each (z, x) of ``points``, r its
        entry of ``rhs`` (Ji, Yang, Liang ICML 2021, Algorithm 3; StocBiO and MRBO):

            u = η Σ_{q=0..Q} ∏_{i=1..q} (I − η ∇₁²g_{B_i}(z, x)) r     (η = ``step``, Q = ``steps``)

        a fresh inner batch B_i per product (or ``batch`` for every product), the SAME B_i at every
        point (MRBO's and VRBO's current and previous iterates); Q·b sample HVPs per point. At the
        full batch u = H⁻¹(I − (I − ηH)^{Q+1}) r. The oracle is left at the last point's x."""
        terms = [step * r for r in rhs]
        sums = list(terms)
        for _ in range(steps):
            product_batch = oracle.inner_batch() if batch is None else batch
            for k, (z, x) in enumerate(points):
                oracle.at(x)
                terms[k] = terms[k] - step * oracle.hvp(z, terms[k], product_batch)
                sums[k] = sums[k] + terms[k]
        return sums

    def estimates(self, oracle: Moving, points: list, step: float, steps: int, full: bool = False) -> tuple[list, list]:
        """StocBiO's two estimates at each (z, x) of ``points`` on ONE set of batches shared by
        the points (MRBO, VRBO): an inner batch B, an outer batch B' and the Neumann series'
        B_1 … B_Q drawn afresh, or every sample for each (``full``):

            g = ∇₁g_B(z, x),   h = ∇₂f_B'(z, x) − ∂²g_B/∂x∂z (z, x) u,   u = ``neumann``(∇₁f_B'(z, x))

        per point: b sample gradients, Q·b HVPs, b cross products, b' outer gradients (n, Qn, n, m
        with ``full``). Returns ([g per point], [h per point]); the oracle is left at the last point's x."""
        problem, device = oracle.problem, oracle.w0.device
        if full:
            inner, outer = torch.arange(problem.n_inner, device=device), torch.arange(problem.n_outer, device=device)
        else:
            inner, outer = oracle.inner_batch(), oracle.outer_batch()
        grads, outers = [], []
        for z, x in points:
            oracle.at(x)
            grads.append(oracle.grad(z, inner))
            outers.append(oracle.outer_grads(z, outer))
        us = self.neumann(oracle, points, [outer_z for outer_z, _ in outers], step, steps, inner if full else None)
        hypers = []
        for (z, x), (_, outer_x), u in zip(points, outers, us):
            oracle.at(x)
            hypers.append(outer_x - oracle.cross(z, u, inner))
        return grads, hypers

    def hia(self, oracle: Moving, z: torch.Tensor, rhs: torch.Tensor, step: float, steps: int, p: int | None = None) -> torch.Tensor:
        """Ghadimi & Wang's randomly truncated Neumann estimate of [∇₁²g(z, x)]⁻¹ rhs (arXiv
        1802.02246, the Hessian-inverse approximation of its stochastic method; used by BSA and
        TTSA, Hong et al. SIAM J. Optim. 2023):

            u = Q η ∏_{i=1..p} (I − η ∇₁²g_{B_i}(z, x)) rhs,   p uniform in {0, …, Q−1}

        (η = ``step``, Q = ``steps``, a fresh inner batch B_i per factor; p drawn from the oracle's
        generator unless given). Averaged over p, at the full batch (H = ∇₁²g):

            E_p u = η Σ_{q<Q} (I − ηH)^q rhs = H⁻¹ (I − (I − ηH)^Q) rhs,

        the truncated Neumann series (StocBiO's u with Q − 1 products) without its cost: p·b
        sample HVPs, (Q − 1)b/2 on average, instead of (Q − 1)b; the price is the variance of p."""
        if p is None:
            p = int(torch.randint(steps, (1,), generator=oracle.generator))
        for _ in range(p):
            rhs = rhs - step * oracle.hvp(z, rhs, oracle.inner_batch())
        return steps * step * rhs


def recursive(new: torch.Tensor, old: torch.Tensor, previous: torch.Tensor, momentum: float) -> torch.Tensor:
    """The recursive momentum (STORM: Cutkosky & Orabona, NeurIPS 2019) of FSLA and MRBO:

        d_s = h(θ_s; ξ_s) + (1 − η) (d_{s−1} − h(θ_{s−1}; ξ_s))

    with ``new`` = h(θ_s; ξ_s) and ``old`` = h(θ_{s−1}; ξ_s) the same estimate on the SAME fresh
    samples ξ_s at the current and the previous iterate, ``previous`` = d_{s−1}, η = ``momentum``
    ∈ (0, 1]: η = 1 is the plain estimate h; if h is exact (the full batch), d_s − h_s =
    (1 − η)(d_{s−1} − h_{s−1}) and d_1 = h_1 make d_s = h_s for every s."""
    return new + (1 - momentum) * (previous - old)
