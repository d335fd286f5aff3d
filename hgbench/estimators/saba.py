"""The direction of SABA at a fixed λ (Dagréou, Ablin, Vaiter, Moreau, "A framework for bilevel
optimization that enables stochastic and global variance reduction algorithms", NeurIPS 2022,
SABA: SOBA's directions with SAGA's variance reduction, Defazio, Bach, Lacoste-Julien NeurIPS 2014)."""

from __future__ import annotations

import torch

from hgbench.core.stochastic import StochasticEstimate, total
from hgbench.estimators.stochastic import StochasticEstimator


def saga(values: torch.Tensor, memory: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SAGA's estimate of the mean over all samples of a product, and the updated memory.

    ``values`` (b × …): the product's per-sample values Pᵢ at the current point, i ∈ B = ``idx``;
    ``memory`` (N × …): the value Mᵢ last stored for every sample i. Returns

        P̂_B = (1/b) Σ_{i∈B} (Pᵢ − Mᵢ) + (1/N) Σ_{i<N} Mᵢ,   and M with Mᵢ ← Pᵢ for i ∈ B.

    P̂_B is unbiased for (1/N) Σᵢ Pᵢ over a uniform B whatever M holds; with B every sample, P̂_B is
    that mean exactly (up to round-off). A sample drawn twice (with replacement) stores the same
    value twice."""
    estimate = (values - memory[idx]).mean(0) + memory.mean(0)
    return estimate, memory.index_put((idx,), values)


class SABA(StochasticEstimator):
    """SABA's direction at a frozen λ after t joint SAGA steps of z and v (Dagréou et al. NeurIPS 2022); mode=stochastic.

    SOBA's iteration (hgbench.estimators.soba) with every minibatch mean replaced by SAGA's
    estimate P̂ (``saga``), one memory table per product, over the n inner or m outer samples:

        D_z = ∇̂₁ℓ(z),  D_v = ∇̂₁²ℓ(z) v + ∇̂₁E(z),  z ← z − ρ D_z,  v ← v − ρ D_v
        ĝ(t) = D_λ = ∂̂²ℓ/∂λ∂w(z_t) v_t + ∇̂₂E(z_t)

    each step on one inner minibatch B (the three ℓ-products: per-sample gradients, Hessian–vector
    and cross products, whose memories it updates; the cross memory is what SABA's D_λ reads)
    and one outer minibatch D (∇₁Eⱼ and ∇₂Eⱼ); the direction at every t of the grid on a fresh
    B, D, leaving the memories as they are. ρ = inner_step·α. Memories start at 0 (benchmark_bilevel's
    default ``init_memory="zero"``, no oracle call): P̂ is unbiased for any memory. As z and v
    converge the memories converge to the products at the limit and P̂'s variance vanishes (the
    variance reduction of Dagréou et al.; SOBA's minibatch means keep theirs).
    Full batch (b = n, b' = m, without replacement): P̂ is the full mean, so SABA = SOBA up to
    round-off (tested); → ∇f(λ) as t → ∞. Oracle calls of t: t·b sample gradients, t·b
    Hessian–vector and (t + 1)·b cross products, (t + 1)·b' outer gradients. k is not used (None).
    """

    role = "saba"

    def stochastic(self, sampled, pairs):
        rho = self.inner_step * sampled.alpha
        problem, lam = sampled.problem, sampled.lam
        z, v = sampled.w0, torch.zeros_like(sampled.w0)
        inner = {
            name: torch.zeros(problem.n_inner, *shape, dtype=z.dtype, device=z.device)
            for name, shape in (("grad", z.shape), ("hvp", z.shape), ("cross", lam.shape))
        }
        outer = {
            name: torch.zeros(problem.n_outer, *shape, dtype=z.dtype, device=z.device)
            for name, shape in (("w", z.shape), ("lam", lam.shape))
        }
        steps, done = sampled.segment(), 0
        for t in sorted({t for t, _ in pairs}):
            with steps:
                while done < t:
                    batch, outer_batch = sampled.inner_batch(), sampled.outer_batch()
                    d_z, inner["grad"] = saga(sampled.each(sampled.grad, z, idx=batch), inner["grad"], batch)
                    d_hvp, inner["hvp"] = saga(sampled.each(sampled.hvp, z, v, idx=batch), inner["hvp"], batch)
                    _, inner["cross"] = saga(sampled.each(sampled.cross, z, v, idx=batch), inner["cross"], batch)
                    grad_w, grad_lam = sampled.each(sampled.outer_grads, z, idx=outer_batch)
                    d_e, outer["w"] = saga(grad_w, outer["w"], outer_batch)
                    _, outer["lam"] = saga(grad_lam, outer["lam"], outer_batch)
                    z, v = z - rho * d_z, v - rho * (d_hvp + d_e)
                    done += 1
            final = sampled.segment()
            with final:
                batch, outer_batch = sampled.inner_batch(), sampled.outer_batch()
                cross, _ = saga(sampled.each(sampled.cross, z, v, idx=batch), inner["cross"], batch)
                _, grad_lam = sampled.each(sampled.outer_grads, z, idx=outer_batch)
                e_lam, _ = saga(grad_lam, outer["lam"], outer_batch)
                grad = cross + e_lam
            yield StochasticEstimate(t, None, grad, z, *total(steps, final))
