"""Stochastic ITD: reverse-mode differentiation through minibatch SGD (Franceschi, Donini,
Frasconi, Pontil ICML 2017, reverse-mode hypergradient with minibatch steps; analysed by Grazzi,
Pontil, Salzo AISTATS 2021 as stochastic ITD)."""

from __future__ import annotations

import torch

from hgbench.core.stochastic import StochasticEstimate, total
from hgbench.estimators.base import GridShape, tape_text
from hgbench.estimators.stochastic import SGDEstimator


class StochasticITD(SGDEstimator):
    """Stochastic ITD: backprop through t minibatch SGD steps (Franceschi et al. 2017; Grazzi et al. 2021); mode=stochastic.

    ĝ(t) = d/dλ E_D(w_t(λ), λ), w_{i+1}(λ) = w_i(λ) − γ∇₁ℓ_{B_i}(w_i(λ), λ) from w₀, the
    minibatches B_i (and the outer minibatch D, fresh for every t) held fixed: the exact
    gradient of the sampled t-step objective, by backpropagation through the taped trajectory.
    γ = inner_step·α, or the vanishing γᵢ = γ·h/(h + i) with h = ``step_halflife`` (the regime in
    which Iutzeler, Pauwels, Vaiter, NeurIPS 2024, prove the derivatives of SGD converge in mean
    square; claim S3). Full batch, γ = α: hgbench's itd(t) (the trajectory of Φ), up to
    round-off. One taped trajectory serves every t of the grid; each t has its own backward
    sweep. Oracle calls of t: t·b sample gradients forward, t·b Hessian–vector and t·b cross
    products backward (one VJP through each step), b' outer gradients. k is not used (None).
    """

    role = "stoch_itd"

    def planned_cost(self, d, p, pairs, step_bytes, itemsize):
        """The tape of the longest trajectory, T·S bytes; T steps and 2t units per t."""
        grid = GridShape.of(pairs)
        return grid.big_t * step_bytes, grid.big_t + sum(2 * t for t in grid.ts), f"the tape: {tape_text(grid.big_t, step_bytes)}"

    def stochastic(self, sampled, pairs):
        lam = sampled.lam.detach().requires_grad_(True)
        with torch.enable_grad():
            for t, w, inner in self.inner_sgd(sampled, {t for t, _ in pairs}, lam=lam):
                backward = sampled.segment()
                with backward:
                    value = sampled.outer_on(w, lam, sampled.outer_batch())
                    if value.requires_grad:
                        (grad,) = torch.autograd.grad(value, lam, retain_graph=True, allow_unused=True, materialize_grads=True)
                    else:  # E_D(w₀) need not involve λ
                        grad = torch.zeros_like(lam)
                    size = t * sampled.sampling.batch  # one VJP through each of the t steps: b HVPs and b cross products
                    sampled.oracles.n_hvp += size
                    sampled.oracles.n_jvp += size
                yield StochasticEstimate(t, None, grad.detach(), w.detach(), *total(inner, backward))
