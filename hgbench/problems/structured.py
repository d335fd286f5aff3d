"""Structured parameters: problems whose w and λ are dicts of tensors (an ``nn.Module``'s
parameters, per-example weights, ...), seen by the rest of hgbench as flat vectors.

One adapter at the boundary. A ``StructuredProblem`` writes its math on dicts — Φ returns a
dict shaped like w, E and ℓ take dicts — and inherits the flat interface of
``hgbench.problems.base.Problem`` (``phi``, ``outer``, ``inner_loss``, ``w0``, ``w_dim``,
``lam_dim``), each a ravel → call → unravel around the structured function. Estimators, the
reference and the cost accounting are unchanged: a Φ evaluation is still one call, a VJP still
one pullback (the ravel is linear, so Jᵀ of the flat map is the ravel of the structured Jᵀ), and
every norm in the CSV (err_abs, inner_err) is the Euclidean norm over the whole structure.

``Ravel`` is pure tensor code (``torch.cat`` of flattened leaves, ``torch.split`` + ``reshape``
back), so torch.func's vjp, jvp, jacrev and vmap apply through it. A module's parameters enter
Φ through ``torch.func.functional_call(module, params, inputs)``; hgbench/problems/hyper_cleaning.py
is a worked example.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

from hgbench.problems.base import Problem


class Ravel:
    """A fixed layout: dict of tensors (names → shapes, in a fixed order) ↔ one flat vector.

    ``flat(tree)`` concatenates the leaves flattened row-major in the layout's order;
    ``tree(vec)`` splits the vector back into views of the leaves' shapes. Leaves missing from
    or extra to the layout are refused in one line."""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]]):
        self.shapes = {name: tuple(int(s) for s in shape) for name, shape in shapes.items()}
        self.sizes = [math.prod(shape) for shape in self.shapes.values()]
        self.size = sum(self.sizes)

    @classmethod
    def like(cls, tree: Mapping[str, torch.Tensor]) -> "Ravel":
        """The layout of an example dict (e.g. ``dict(module.named_parameters())``)."""
        return cls({name: tuple(leaf.shape) for name, leaf in tree.items()})

    def flat(self, tree: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if tree.keys() != self.shapes.keys():
            raise ValueError(f"a structured parameter has the keys {sorted(tree)}, its layout expects {sorted(self.shapes)}")
        return torch.cat([tree[name].reshape(-1) for name in self.shapes])

    def tree(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        pieces = torch.split(vec, self.sizes)
        return {name: piece.reshape(shape) for (name, shape), piece in zip(self.shapes.items(), pieces)}


class StructuredProblem(Problem):
    """A problem written on dicts of tensors; the flat interface comes from the two layouts.

    Subclasses give ``w_shapes`` and ``lam_shapes`` (name → shape) and implement
    ``phi_tree(w, lam, consts) -> dict like w`` and ``outer_tree(w, lam) -> scalar``; optionally
    ``inner_loss_tree`` (ℓ, when Φ is a gradient step on it) and ``w0_tree`` (default zeros).
    λ draws stay flat (``sample_lambdas``: (n, lam_dim), uniform on [lam_low, lam_high] by
    default); ``lam_tree(lam)`` and ``w_tree(w)`` give the dict views of flat vectors."""

    @property
    def w_shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    @property
    def lam_shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def phi_tree(self, w: dict, lam: dict, consts: dict) -> dict:
        raise NotImplementedError

    def outer_tree(self, w: dict, lam: dict) -> torch.Tensor:
        raise NotImplementedError

    def inner_loss_tree(self, w: dict, lam: dict) -> torch.Tensor:
        raise NotImplementedError(f"problem {self.name!r} has no inner loss")

    def w0_tree(self, lam: dict) -> dict:
        """The start of the inner iteration; default zeros (on λ's dtype and device)."""
        like = next(iter(lam.values()))
        return {name: like.new_zeros(shape) for name, shape in self.w_shapes.items()}

    # --- the flat interface, derived ---------------------------------------------------------------
    @property
    def w_ravel(self) -> Ravel:
        return Ravel(self.w_shapes)

    @property
    def lam_ravel(self) -> Ravel:
        return Ravel(self.lam_shapes)

    def w_tree(self, w: torch.Tensor) -> dict:
        return self.w_ravel.tree(w)

    def lam_tree(self, lam: torch.Tensor) -> dict:
        return self.lam_ravel.tree(lam)

    @property
    def w_dim(self) -> int:
        return self.w_ravel.size

    @property
    def lam_dim(self) -> int:
        return self.lam_ravel.size

    def phi(self, w, lam, consts):
        return self.w_ravel.flat(self.phi_tree(self.w_tree(w), self.lam_tree(lam), consts))

    def outer(self, w, lam):
        return self.outer_tree(self.w_tree(w), self.lam_tree(lam))

    def inner_loss(self, w, lam):
        return self.inner_loss_tree(self.w_tree(w), self.lam_tree(lam))

    def w0(self, lam):
        return self.w_ravel.flat(self.w0_tree(self.lam_tree(lam)))

    @classmethod
    def provides(cls) -> frozenset[str]:
        """As Problem's, with ℓ offered when ``inner_loss_tree`` is defined."""
        offered = super().provides() - {"inner_loss"}
        return offered | ({"inner_loss"} if cls.inner_loss_tree is not StructuredProblem.inner_loss_tree else set())
