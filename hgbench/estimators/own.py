"""The estimators on a user's own tensors, in a user's own loop (as hypertorch's hypergradient
functions are called inside one's training code):

    grad, cost = hypergradient("cg", outer, w, lam, inner_loss=inner, step_size=0.01, t=100, k=20)

is the estimator's ĝ(t, k) ≈ ∇f(λ) of f(λ) = E(w(λ), λ), with w(λ) the fixed point of
Φ(w, λ) (given as ``phi``) or, from the inner loss ℓ (``inner_loss``), of the gradient step
Φ(w, λ) = w − α ∇₁ℓ(w, λ), α = ``step_size`` (Grazzi et al. 2020, §2); ``w`` is w₀, the start of
the t inner steps (e.g. the previous outer step's w_t: a warm start), and ``cost`` is the
hgbench.core.cost.Cost of that estimate (time, Φ evaluations, VJPs, JVPs). The estimate is the
very computation ``hgbench run`` measures (the same classes, through the same
hgbench.core.bound.BoundProblem).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from hgbench.core.bound import NEEDS, BoundProblem
from hgbench.core.cost import Cost, Tally
from hgbench.estimators.base import Estimator
from hgbench.estimators.cg import ConjugateGradient
from hgbench.estimators.cg_normal import NormalCG
from hgbench.estimators.fp import FixedPoint
from hgbench.estimators.gmres import GMRES
from hgbench.estimators.implicit import Exact, JacobianFree
from hgbench.estimators.itd import ITDForward, ITDReverse
from hgbench.estimators.neumann import Neumann

Fn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# the methods by the names of their shipped configurations (conf/estimator/)
METHODS: dict[str, type[Estimator]] = {
    "itd": ITDReverse,
    "itd_forward": ITDForward,
    "fp": FixedPoint,
    "neumann": Neumann,
    "cg": ConjugateGradient,
    "cg_normal": NormalCG,
    "gmres": GMRES,
    "jfb": JacobianFree,
    "exact": Exact,
}


def hypergradient(
    method: str,
    outer: Fn,
    w: torch.Tensor,
    lam: torch.Tensor,
    *,
    phi: Optional[Fn] = None,
    inner_loss: Optional[Fn] = None,
    step_size: Optional[float] = None,
    t: int = 100,
    k: Optional[int] = None,
    symmetric: bool = False,
) -> tuple[torch.Tensor, Cost]:
    """(ĝ(t, k), its cost) of estimator ``method`` (a key of METHODS) for E = ``outer`` and Φ =
    ``phi``, or the gradient step on ``inner_loss`` with ``step_size`` (module docstring); t inner
    steps from ``w``, k solver steps (default t; ITD has none). ``symmetric``: ∂₁Φ is symmetric
    (always so for a gradient step on ℓ; CG needs it). Shapes: w (dim w,), λ (dim λ,), ĝ like λ.
    Bad arguments raise ValueError in one line, before any work."""
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
    if (phi is None) == (inner_loss is None):
        raise ValueError("give either phi (Φ(w, λ)) or inner_loss (ℓ(w, λ)) with step_size")
    if inner_loss is not None:
        if step_size is None or not step_size > 0:
            raise ValueError(f"step_size={step_size!r}: inner_loss needs the step α > 0 of Φ(w, λ) = w − α ∇₁ℓ(w, λ)")

        def phi(w, l):  # Φ of the gradient step on ℓ
            # ∇₁ℓ by autograd with its graph kept (so that Φ can be differentiated again), not by
            # torch.func.grad, which refuses the saved-tensor hooks that count ITD's tape
            # (hgbench.core.cost.taped)
            with torch.enable_grad():
                point = w if w.requires_grad else w.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(inner_loss(point, l), point, create_graph=True)
            return point - step_size * grad

        symmetric = True  # ∂₁Φ = I − α∇²₁ℓ
    estimator = METHODS[method](method)
    have = {"symmetric": symmetric, "inner_loss": inner_loss is not None, "dense": True}
    missing = [need for need in estimator.needs if not have[need]]
    if missing:
        raise ValueError(f"method {method!r} needs {NEEDS[missing[0]]}: {estimator.needs[missing[0]]}")
    tally = Tally()
    pure = phi

    def counted(w, l):
        tally.n_phi += 1
        return pure(w, l)

    bound = BoundProblem(phi=counted, outer=outer, lam=lam.detach(), w0=w.detach(), inner_loss=inner_loss, symmetric=symmetric, tally=tally)
    result = next(iter(estimator.estimate(bound, [(t, t if k is None else k)])))
    return result.grad, result.cost
