"""All λ draws at once: an estimator's whole curve, vectorized over the draws by torch.func.vmap.

The estimator's code runs once, on batched tensors, so the Python-side bookkeeping runs once:
the operation counts it records are per draw (as in a loop), the measured time is the batch's
and is divided by the number of draws (amortized per draw), and bytes saved for backward are
not observable under torch.func (left empty). The bound problem's products are built with
torch.func (``functional=True``): a VJP graph is then built on w and, where ∂₂Φᵀ-products are
needed, another on λ (one more Φ evaluation per point than in the loop, counted; see
hgbench.core.linearization). Estimators that build an autograd tape (``batchable = False``,
e.g. ITD reverse) and problems whose Φ does not vectorize use the loop.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from hgbench.core.bound import estimate
from hgbench.estimators.base import Estimate, Estimator
from hgbench.problems.base import Problem


def estimate_batched(estimator: Estimator, problem: Problem, lams: torch.Tensor, pairs, dense: bool = False) -> list[list[Estimate]]:
    """[[Estimate per grid point] per λ draw], as ``estimator.estimate`` would give one by one;
    ``dense``: the linearizations' path (hgbench.core.linearization)."""
    metas = []

    def curve(lam):
        estimates = list(estimate(estimator, problem, lam, pairs, functional=True, dense=dense))
        metas.extend((e.t, e.k, e.cost) for e in estimates)
        return torch.stack([e.grad for e in estimates]), torch.stack([e.w for e in estimates])

    grads, ws = torch.func.vmap(curve)(lams)
    n = lams.shape[0]
    return [
        [
            Estimate(t, k, grads[i, j], ws[i, j], replace(cost, time_s=cost.time_s / n, saved_bytes=None))
            for j, (t, k, cost) in enumerate(metas)
        ]
        for i in range(n)
    ]
