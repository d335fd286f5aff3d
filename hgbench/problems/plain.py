"""A bilevel problem given as the plainest thing a user has: an inner loss ℓ(w, λ) (or a map
Φ(w, λ)), an outer loss E(w, λ), a start w₀ and one λ, each a tensor, a dict of tensors or an
``nn.Module`` (its parameters) — for ``hgbench check`` (hgbench.running.check) and anything else
that takes a ``Problem``.

    PlainProblem(outer=E, w0=w0, lam=lam, inner_loss=ℓ)           Φ(w, λ) = w − α ∇₁ℓ(w, λ)
    PlainProblem(outer=E, w0=w0, lam=lam, phi=Φ)                  Φ as given

With ℓ, the fixed point of Φ is the stationary point ∇₁ℓ(w*, λ) = 0 whatever α > 0, and so is
∇f(λ) = ∇₂E − ∇²₂₁ℓ (∇²₁₁ℓ)⁻¹ ∇₁E (Grazzi et al. 2020, eq. (3)); α only sets how fast Φ
contracts. ``step=None`` chooses α = 2/(L + μ) with L, μ the largest and smallest eigenvalues of
the dense Hessian ∇²₁₁ℓ(w*(λ), λ) (the optimal fixed step of a quadratic; Φ's contraction factor
at w* is then q = (L − μ)/(L + μ) < 1 when μ > 0); a number is taken as α.

The user's functions take and return what they were written for: tensors when w₀ (λ) is a
tensor, dicts of tensors of the same names and shapes when it is a dict or a module. Inside, the
problem is a ``StructuredProblem`` (hgbench.problems.structured), so the rest of hgbench sees
flat vectors.
"""

from __future__ import annotations

from typing import Callable, Mapping, Union

import torch

from hgbench.problems.base import damped_newton
from hgbench.problems.structured import StructuredProblem

Params = Union[torch.Tensor, Mapping[str, torch.Tensor], torch.nn.Module]
WHOLE = ""  # the one leaf's name when a parameter is a plain tensor


def as_dict(value: Params, what: str) -> tuple[dict[str, torch.Tensor], bool, torch.dtype]:
    """(the parameter as a dict of detached float64 tensors, whether it was a plain tensor, the
    dtype it came in: its first leaf's)."""
    if isinstance(value, torch.nn.Module):
        value = dict(value.named_parameters())
    if isinstance(value, torch.Tensor):
        return {WHOLE: value.detach().to(torch.float64)}, True, value.dtype
    if isinstance(value, Mapping) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
        return {str(k): v.detach().to(torch.float64) for k, v in value.items()}, False, next(iter(value.values())).dtype
    raise TypeError(f"{what} must be a tensor, a non-empty dict of tensors or an nn.Module, got {type(value).__name__}")


class PlainProblem(StructuredProblem):
    """The problem of the user's ℓ or Φ, E, w₀ at one λ (see the module docstring).

    ``symmetric`` (∂₁Φ symmetric; AID-CG needs it): True for the ℓ form, as given for the Φ form
    (default False). ``sample_lambdas`` returns the given λ (the problem is posed at it)."""

    def __init__(
        self,
        outer: Callable,
        w0: Params,
        lam: Params,
        inner_loss: Callable | None = None,
        phi: Callable | None = None,
        step: float | None = None,
        symmetric: bool | None = None,
        name: str = "plain",
        seed: int = 0,
    ):
        if (inner_loss is None) == (phi is None):
            raise ValueError("give exactly one of inner_loss (ℓ: Φ is a gradient step on it) and phi (the map Φ)")
        if step is not None and not (phi is None and step > 0):
            raise ValueError(f"step={step!r}: a step α > 0 goes with inner_loss (Φ = w − α∇₁ℓ), not with phi")
        if symmetric and phi is None:
            raise ValueError("symmetric= is for the phi form; Φ = w − α∇₁ℓ is symmetric already")
        super().__init__(name, seed, 0.0, 0.0)
        w_tree, self._w_plain, _ = as_dict(w0, "w0")
        lam_tree, self._lam_plain, self.user_dtype = as_dict(lam, "lam")  # user_dtype: λ's as given (hgbench check's default)
        self._w_shapes = {k: tuple(v.shape) for k, v in w_tree.items()}
        self._lam_shapes = {k: tuple(v.shape) for k, v in lam_tree.items()}
        self.start = self.w_ravel.flat(w_tree)
        self.lam = self.lam_ravel.flat(lam_tree)
        self._outer, self._inner, self._phi, self.step = outer, inner_loss, phi, step
        self.symmetric_jacobian = phi is None or bool(symmetric)
        self._alphas = {}  # α by λ (dtype, device, values): the rule's Newton solve and Hessian, once per λ

    # --- the user's functions on the user's types ------------------------------------------------
    @property
    def w_shapes(self):
        return self._w_shapes

    @property
    def lam_shapes(self):
        return self._lam_shapes

    def user_lam(self, lam: torch.Tensor):
        """λ (flat) as the user's functions take it: a tensor of λ's shape, or a dict."""
        return self._user(self.lam_tree(lam), self._lam_plain)

    @staticmethod
    def _user(tree: dict, plain: bool):
        return tree[WHOLE] if plain else tree

    @staticmethod
    def _ours(value, plain: bool, what: str) -> dict:
        if plain:
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{what} returned {type(value).__name__}, expected a tensor")
            return {WHOLE: value}
        return dict(value)

    def outer_tree(self, w, lam):
        return self._outer(self._user(w, self._w_plain), self._user(lam, self._lam_plain))

    def inner_loss_tree(self, w, lam):
        if self._inner is None:
            return StructuredProblem.inner_loss_tree(self, w, lam)
        return self._inner(self._user(w, self._w_plain), self._user(lam, self._lam_plain))

    def phi_tree(self, w, lam, consts):
        if self._phi is not None:
            return self._ours(self._phi(self._user(w, self._w_plain), self._user(lam, self._lam_plain)), self._w_plain, "phi")
        grad = torch.func.grad(self.inner_loss_tree)(w, lam)
        return {name: w[name] - consts["alpha"] * grad[name] for name in w}

    def w0_tree(self, lam):
        return {k: v.to(dtype=next(iter(lam.values())).dtype) for k, v in self.w_ravel.tree(self.start).items()}

    # --- the step and the inner solution ---------------------------------------------------------
    def consts(self, lam: torch.Tensor) -> dict:
        """{"alpha": α}: the given step, else 2/(L + μ) from the Hessian of ℓ at w*(λ)."""
        if self._phi is not None:
            return {}
        if self.step is not None:
            return {"alpha": torch.tensor(self.step, dtype=lam.dtype, device=lam.device)}
        key = (lam.dtype, lam.device, tuple(lam.tolist()))
        if key not in self._alphas:  # the reference asks twice per λ (Φ, then the adjoint system's Φ)
            self._alphas[key] = self._alpha(lam)
        return {"alpha": self._alphas[key]}

    def _alpha(self, lam: torch.Tensor) -> torch.Tensor:
        w_star = self.solve_inner(lam)
        eig = torch.linalg.eigvalsh(torch.func.hessian(self.inner_loss)(w_star, lam))
        if not eig[0] > 0:
            raise ValueError(
                f"the Hessian of ℓ at w*(λ) has smallest eigenvalue {eig[0].item():.3g} ≤ 0: w* is not a strict "
                "minimum; give step= (α) only if Φ = w − α∇ℓ still contracts there"
            )
        return 2.0 / (eig[-1] + eig[0])

    def solve_inner(self, lam: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """w*(λ): damped Newton on ℓ (Problem.solve_inner) for the ℓ form; for the Φ form damped
        Newton on F(w) = w − Φ(w, λ), w ← w − γ(I − ∂₁Φ)⁻¹F(w) with the dense Jacobian and γ
        halved until ‖F‖ decreases, until no step decreases it (round-off) or 100 steps. Both from
        ``start`` (default w₀)."""
        if self._inner is not None:
            return super().solve_inner(lam, start)
        phi = self.bound_phi(lam)
        residual = lambda x: x - phi(x, lam)
        newton = lambda x, f: torch.linalg.solve(torch.func.jacrev(residual)(x), f)
        return damped_newton(residual, newton, self.w0(lam) if start is None else start)

    def sample_lambdas(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.lam.expand(n, -1).clone()

    def provides(self) -> frozenset[str]:  # type: ignore[override]
        """As Problem.provides, but of the instance: ℓ and a symmetric ∂₁Φ depend on the form given."""
        offered = {"symmetric": self.symmetric_jacobian, "inner_loss": self._inner is not None, "dense": self.dense_jacobian}
        return frozenset(name for name, given in offered.items() if given)
