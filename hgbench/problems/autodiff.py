"""Derivatives of pure functions of tensors by plain reverse-mode autograd (torch.autograd.grad),
for the float64 reference and the problems' own solvers.

Why not torch.func: its first grad/vjp/jacrev call imports torch._dynamo (about 1.2 s of a
run's start-up, issue 28), which nothing else on a default run needs. These functions compute
the same numbers by the same backward passes, bit for bit (tests/test_autodiff.py compares them
with torch.func on every problem's reference quantities):

    gradient(f, xs, argnums)  ∇ of a scalar f(*xs) with respect to xs[i], i in argnums
    vjp(f, xs)                (f(*xs), u ↦ (∂f/∂xsᵢ)ᵀu for every i)
    jacobian(f, xs, argnums)  ∂f/∂xsᵢ as dense matrices of shape f.shape + xsᵢ.shape, one row per
                              output element: the VJPs with the unit vectors, vectorized by
                              torch.func.vmap over torch.autograd.grad (what torch.func.jacrev
                              computes; vmap alone does not import torch._dynamo, and autograd's
                              own is_grads_batched differs from jacrev in round-off on some problems)

``f`` may return a tensor or a tuple of tensors (``jacobian``: one tuple of matrices per output).
The inputs are detached: these are derivatives of f at a point, not through it (no graph is
kept to the callers' tensors), as torch.func.grad's of a function of its explicit arguments —
except ``gradient(..., create_graph=True)``, which keeps the inputs that require grad (so that
``jacobian`` can differentiate it again: a Hessian, reverse over reverse as jacrev(grad)).
Inputs f does not use get zero derivatives, as with torch.func.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch


def _leaves(xs: Sequence[torch.Tensor], keep: bool = False) -> list[torch.Tensor]:
    """Fresh leaves requiring grad; with ``keep``, the inputs that require grad already are kept."""
    return [x if keep and x.requires_grad else x.detach().requires_grad_() for x in xs]


def _pick(argnums: int | tuple[int, ...]) -> tuple[int, ...]:
    return (argnums,) if isinstance(argnums, int) else tuple(argnums)


def gradient(f: Callable[..., torch.Tensor], xs: Sequence[torch.Tensor], argnums: int | tuple[int, ...] = 0, create_graph: bool = False):
    """∇_{xsᵢ} f(*xs) for the scalar f: one tensor for an int ``argnums``, a tuple for a tuple.
    ``create_graph``: the result stays differentiable in the inputs that require grad."""
    leaves = _leaves(xs, keep=create_graph)
    with torch.enable_grad():
        value = f(*leaves)
        grads = torch.autograd.grad(value, [leaves[i] for i in _pick(argnums)], create_graph=create_graph, materialize_grads=True)
    return grads[0] if isinstance(argnums, int) else grads


def vjp(f: Callable[..., torch.Tensor], xs: Sequence[torch.Tensor]):
    """(f(*xs) detached, pullback u ↦ tuple of (∂f/∂xsᵢ)ᵀu over all i); the graph of f is kept
    for repeated pullbacks."""
    leaves = _leaves(xs)
    with torch.enable_grad():
        value = f(*leaves)

    def pullback(u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(value, leaves, u, retain_graph=True, materialize_grads=True)

    return value.detach(), pullback


def jacobian(f: Callable, xs: Sequence[torch.Tensor], argnums: int | tuple[int, ...] = 0):
    """The dense Jacobians of f at xs: ∂f/∂xsᵢ of shape f.shape + xsᵢ.shape. For a tensor f: one
    matrix (int ``argnums``) or a tuple over ``argnums``; for a tuple f: a tuple over its outputs of
    those. The rows are the VJPs with the unit vectors of the (concatenated) outputs, vmapped."""
    leaves = _leaves(xs)
    with torch.enable_grad():
        value = f(*leaves)
    outputs = value if isinstance(value, tuple) else (value,)
    sizes = [out.numel() for out in outputs]
    basis = torch.eye(sum(sizes), dtype=outputs[0].dtype, device=outputs[0].device)
    seeds = tuple(block.reshape(-1, *out.shape) for block, out in zip(basis.split(sizes, dim=1), outputs))
    wrt = [leaves[i] for i in _pick(argnums)]

    live = [i for i, out in enumerate(outputs) if out.requires_grad]  # an output without a graph (constant in xs) has zero rows

    def row(*units):
        if not live:
            return tuple(torch.zeros_like(x) for x in wrt)
        return torch.autograd.grad([outputs[i] for i in live], wrt, [units[i] for i in live], retain_graph=True, materialize_grads=True)

    rows = torch.func.vmap(row)(*seeds)
    per_output = []
    for block_rows, out in zip(zip(*(r.split(sizes, dim=0) for r in rows)), outputs):
        mats = tuple(r.reshape(*out.shape, *x.shape) for r, x in zip(block_rows, wrt))
        per_output.append(mats[0] if isinstance(argnums, int) else mats)
    return tuple(per_output) if isinstance(value, tuple) else per_output[0]
