"""SABA: Dagréou, Ablin, Vaiter, Moreau, NeurIPS 2022, Algorithm 2 (SABA): SOBA's directions with
SAGA's memory (Defazio, Bach, Lacoste-Julien, NeurIPS 2014)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from hgbench.solvers.base import Moving, Solver, SolverOptions


@dataclass
class SabaOptions(SolverOptions):
    pass


class Memory:
    """SAGA's memory of one direction over a fixed partition of the samples into batches
    B_1 … B_K (weights ω_j = |B_j| / n): the last value y_j seen on each batch and their mean
    ȳ = Σ_j ω_j y_j. ``update(j, y)`` returns the variance-reduced direction y − y_j + ȳ, then
    stores ȳ ← ȳ + ω_j (y − y_j) and y_j ← y. With j drawn with probability ω_j it is unbiased
    for the full-batch value Σ_j ω_j y(B_j) (E y(B_j) = that, E y_j = ȳ). All memories start at 0
    (benchmark_bilevel's init_memory="zero")."""

    def __init__(self, weights: torch.Tensor, like: torch.Tensor):
        self.weights = weights
        self.values = torch.zeros(len(weights), *like.shape, dtype=like.dtype, device=like.device)
        self.mean = torch.zeros_like(like)

    def update(self, j: int, value: torch.Tensor) -> torch.Tensor:
        change = value - self.values[j]
        direction = change + self.mean
        self.mean = self.mean + self.weights[j] * change
        self.values[j] = value
        return direction


def partition(n: int, batch: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A seeded random partition of range(n) into ⌈n / batch⌉ batches of ``batch`` samples (the
    last smaller when batch does not divide n), each sorted; one batch of all samples in order
    when batch = n."""
    order = torch.randperm(n, generator=generator) if batch < n else torch.arange(n)
    return [part.sort().values for part in order.split(batch)]


class Saba(Solver):
    """SABA: SOBA's iteration with SAGA's variance reduction.

    SOBA's iteration with each of the five
    minibatch quantities ∇₁g, ∇₁²g·v, ∂²g/∂x∂z·v (inner) and ∇₁f, ∇₂f (outer) replaced by its
    SAGA estimate (``Memory``), then D_z, D_v, D_x and the steps as SOBA's. As in
    benchmark_bilevel's solvers/saba.py, the memory is kept per batch of a fixed partition of the
    samples (``partition``, seeded) and an iteration draws one inner and one outer batch j with
    probability ω_j (uniformly when the batch size divides n); the paper's SABA has a memory per sample (batch size 1). Steps: constant
    under either ``step_rule`` (ρ = ``inner_step``, γ = ``outer_step``). The paper's abstract (verified
    with the search tool): SABA "has O(1/T) convergence rate, and ... achieves linear convergence
    under Polyak-Łojasiewicz assumption" — rates of constant-step methods; that its theorems take
    constant steps scaled as (n + m)^{−2/3} is this project's recollection of §3, NOT VERIFIED
    against the theorems' text (not stored for the search tool); the scaling is not applied here. At
    the full batch (one batch) every SAGA estimate is the full-batch value (up to round-off):
    SABA is then SOBA's deterministic method. ``replace`` of the sampling does not apply."""

    Options = SabaOptions
    paper = "Dagréou, Ablin, Vaiter, Moreau NeurIPS 2022, Algorithm 2"

    def run(self, oracle: Moving, lam: torch.Tensor) -> Iterator[torch.Tensor]:
        problem, sampling = oracle.problem, oracle.sampling
        inner = partition(problem.n_inner, sampling.batch, oracle.generator)
        outer = partition(problem.n_outer, sampling.outer_batch, oracle.generator)
        weights_in = torch.tensor([len(b) / problem.n_inner for b in inner], dtype=lam.dtype, device=lam.device)
        weights_out = torch.tensor([len(b) / problem.n_outer for b in outer], dtype=lam.dtype, device=lam.device)
        z, v = oracle.w0, torch.zeros_like(oracle.w0)
        grad_m, hvp_m, cross_m = Memory(weights_in, z), Memory(weights_in, z), Memory(weights_in, lam)
        outer_z_m, outer_x_m = Memory(weights_out, z), Memory(weights_out, lam)
        s = 0
        while True:
            s += 1
            oracle.at(lam)
            i = int(torch.multinomial(weights_in, 1, generator=oracle.generator))
            j = int(torch.multinomial(weights_out, 1, generator=oracle.generator))
            grad, hvp, cross = oracle.oracles_at(z, v, inner[i])
            outer_z, outer_x = oracle.outer_grads(z, outer[j])
            d_z = grad_m.update(i, grad)
            d_v = hvp_m.update(i, hvp) + outer_z_m.update(j, outer_z)
            d_x = cross_m.update(i, cross) + outer_x_m.update(j, outer_x)
            z, v, lam = z - self.inner_step * d_z, v - self.inner_step * d_v, lam - self.outer_step * d_x
            yield lam
