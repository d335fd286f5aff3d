"""higher (Grefenstette et al., "Generalized Inner Loop Meta-Learning", arXiv:1910.01727, 2019)
driven as its documentation shows, as an estimator of hgbench's grid: an adapter, needing the
optional extra ``pip install 'hgbench[higher]'``.

    ĝ(t) = ∇λ E(w_t, λ), w_t = t steps of higher's differentiable SGD on ℓ, backpropagated

As higher's README shows: ``with higher.innerloop_ctx(model, opt) as (fmodel, diffopt)``, then
``diffopt.step(loss)`` t times on the inner loss computed by ``fmodel``, and the outer loss of
the final ``fmodel`` backpropagated through the steps. Here ``model`` is a module holding w
(its parameter, w₀) whose forward is ℓ(w, λ); ``opt`` is ``torch.optim.SGD(lr=α)`` with α read
off Φ = w − α∇₁ℓ (hgbench.estimators.libraries.gradient_step_size; a Φ that is not such a
step is refused). That is ITD (Grazzi et al. 2020, Alg. 1) by higher's steps instead of Φ: the
same ĝ(t) and w_t as hgbench's itd to round-off. Cost: time and the one Φ evaluation reading
α; higher's products are not counted (n_vjp empty).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from hgbench.estimators.base import Estimate, Estimator
from hgbench.estimators.libraries import gradient_step_size, load


class _InnerLoss(torch.nn.Module):
    """The module higher makes functional: its parameter is w (starting at w₀), its forward ℓ(w, λ)."""

    def __init__(self, w0: torch.Tensor, inner_loss):
        super().__init__()
        self.w = torch.nn.Parameter(w0.detach().clone())
        self.inner_loss = inner_loss

    def forward(self, lam: torch.Tensor) -> torch.Tensor:
        return self.inner_loss(self.w, lam)


class HigherUnrolled(Estimator):
    """higher's unrolled differentiation: t steps of its differentiable SGD on ℓ (step = Φ's α), backpropagated to λ."""

    role = "itd"
    batchable = False  # higher's functional modules run on the autograd tape
    needs = {"inner_loss": "higher's differentiable SGD steps on ℓ; use estimator=itd for Φ alone"}

    def check_ready(self) -> None:
        load("higher", "higher")

    def estimate(self, bound, pairs):
        higher = load("higher", "higher")
        alpha = gradient_step_size(bound, "higher_unrolled")
        for t in sorted({t for t, _ in pairs}):
            meter = bound.meter()
            with meter, torch.enable_grad():
                lam = bound.lam.detach().clone().requires_grad_(True)
                model = _InnerLoss(bound.w0, bound.inner_loss)
                with higher.innerloop_ctx(model, torch.optim.SGD(model.parameters(), lr=alpha)) as (fmodel, diffopt):
                    for _ in range(t):
                        diffopt.step(fmodel(lam))
                    w = fmodel.w
                    value = bound.outer(w, lam)
                    (grad,) = torch.autograd.grad(value, lam, allow_unused=True, materialize_grads=True)
            cost = replace(meter.cost, n_phi=1, n_vjp=None, saved_bytes=None)
            yield Estimate(t, None, grad.detach(), w.detach(), cost)
