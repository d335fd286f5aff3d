"""Stochastic AID with a minibatch Neumann series: StocBiO's hypergradient (Ji, Yang, Liang,
"Bilevel Optimization: Convergence Analysis and Enhanced Design", ICML 2021, Alg. 2–3)."""

from __future__ import annotations

from hgbench.core.stochastic import StochasticEstimate, total
from hgbench.estimators.stochastic import DecreasingSolverOptions, SGDEstimator, ks_by_t


class StocBiO(SGDEstimator):
    """StocBiO: stochastic AID with a minibatch Neumann series (Ji, Yang, Liang ICML 2021); mode=stochastic.

    StocBiO's hypergradient estimate at a fixed λ:

        w_t:  t steps of minibatch SGD on ℓ from w₀ (step γ = inner_step·α, a fresh batch per step;
              vanishing with ``step_halflife``; η stays constant: a Neumann series)
        r₀ = η ∇₁E_D(w_t),  r_q = (I − η ∇₁²ℓ_{B_q}(w_t)) r_{q−1},  v_k = Σ_{q=0..k} r_q
        ĝ(t, k) = ∇₂E_D(w_t) − ∂²ℓ_{B'}/∂λ∂w (w_t) v_k

    i.e. η Σ_{q≤k} Π_{j≤q}(I − ηH_{B_j}) ∇₁E_D, the Neumann series of H⁻¹∇₁E with an independent
    minibatch B_j in each factor (one chain shared by the terms), D the outer minibatch (both
    partials of E on it), B' a fresh inner minibatch for the cross product (fresh for every k of
    the grid). η = solver_step·α. k counts the Hessian–vector products, as for every solver here.

    Full batch, η = γ = α: J = I − αH, ∂₂Φᵀu = −α ∂²ℓ/∂λ∂w u, so v_k = α Σ_{q≤k} (Jᵀ)^q ∇₁E and
    ĝ is hgbench's neumann(t, k) (AID with the truncated Neumann series), up to round-off.
    Oracle calls of (t, k): t·b sample gradients, k·b Hessian–vector, b cross products, b' outer.
    """

    role = "stocbio"
    Options = DecreasingSolverOptions
    has_k = True

    def __init__(self, name, inner_step=1.0, solver_step=1.0, step_halflife=None):
        super().__init__(name, inner_step, step_halflife)
        self.solver_step = solver_step

    def stochastic(self, sampled, pairs):
        eta = self.solver_step * sampled.alpha
        ks_at = ks_by_t(pairs)
        for t, w, inner in self.inner_sgd(sampled, ks_at):
            solve = sampled.segment()
            with solve:
                grad_w, grad_lam = sampled.outer_grads(w, sampled.outer_batch())
                term = eta * grad_w
                v, done = term, 0
            for k in ks_at[t]:
                with solve:
                    while done < k:
                        term = term - eta * sampled.hvp(w, term, sampled.inner_batch())
                        v = v + term
                        done += 1
                final = sampled.segment()
                with final:
                    grad = grad_lam - sampled.cross(w, v, sampled.inner_batch())
                yield StochasticEstimate(t, k, grad, w, *total(inner, solve, final))
