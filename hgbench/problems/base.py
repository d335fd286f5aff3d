"""The problem interface: a bilevel problem with a fixed-point lower level.

    min_λ f(λ) = E(w(λ), λ),      w(λ) = Φ(w(λ), λ)

A problem is a set of pure functions of tensors (so torch.func's vjp/jvp/vmap/jacrev apply)
plus the data they close over:

    phi(w, lam, consts) -> w'      Φ, shape (d,) -> (d,)
    outer(w, lam)       -> scalar  E
    w0(lam)             -> (d,)    start of the inner iteration
    consts(lam)         -> dict    per-draw constants of Φ (e.g. the step size α(λ)), computed
                                   once per λ draw and treated as constants by every derivative
    sample_lambdas(n, generator) -> (n, p)

and, where it knows them exactly: ``inner_loss`` (when Φ is a gradient step on ℓ, which gives the
reference inner solution by Newton's method), ``solve_inner`` (override with a closed form), and
``symmetric_jacobian`` (True when ∂₁Φ is symmetric, e.g. Φ = w − α∇ℓ; AID-CG needs it).

Data are created in float64 on the CPU; ``to(dtype, device)`` returns a copy for the estimators.
The reference hypergradient always uses the float64 copy.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch

from hgbench.options import UniformOptions
from hgbench.problems import autodiff

# dim w up to which the dense reference's spectra and norms are exact SVDs (the default dense
# linearization's threshold too); above it (hyper_rep, d = 400, among the committed results), the
# eigenvalues of a symmetric J
# (Problem.adjoint_system) and cheap upper bounds of the certificate's norms
# (hgbench.core.reference.sensitivities): an SVD of d = 3000 takes about 8 s on one core, the
# estimate it certifies 0.3 s
SPECTRUM_BY_SVD_MAX = 300


@dataclass(frozen=True)
class Planned:
    """A problem's sizes before it is built (``Problem.planned``): dim w, dim λ, the bytes its
    constructor allocates (data and the matrices derived from them) and the float operations it
    performs (e.g. a QR of a d × d matrix: (4/3)·d³)."""

    w_dim: int
    lam_dim: int
    data_bytes: float
    setup_flops: float


class Problem:
    """Base class of the problems. Subclasses set ``data`` tensors in ``__init__`` and implement
    ``phi``, ``outer``, ``lam_dim``; see the module docstring for the contract."""

    symmetric_jacobian: bool = False
    dense_jacobian: bool = True  # dense dim w × dim w matrices are affordable (False: only matrix-free estimators apply)
    min_min: bool = False  # E is the inner loss ℓ (Ye et al. 2024's min–min case); the CSV's ``min_min`` column
    batchable: bool = True  # Φ, E and consts vectorize over λ with torch.func.vmap
    Options = UniformOptions  # the options a subclass's constructor takes (hgbench.options), declared in its file

    def __init__(self, name: str, seed: int, lam_low: float, lam_high: float):
        self.name = name
        self.seed = int(seed)
        self.lam_low = float(lam_low)
        self.lam_high = float(lam_high)

    # --- the math; subclasses implement these -------------------------------------------------
    @property
    def lam_dim(self) -> int:
        raise NotImplementedError

    @property
    def w_dim(self) -> int:
        raise NotImplementedError

    def phi(self, w: torch.Tensor, lam: torch.Tensor, consts: dict) -> torch.Tensor:
        raise NotImplementedError

    def outer(self, w: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def inner_loss(self, w: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """ℓ(w, λ) when Φ is a gradient step on it; problems without one leave this undefined."""
        raise NotImplementedError(f"problem {self.name!r} has no inner loss")

    def inner_hessian(self, w: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """∇₁²ℓ(w, λ), dense (d × d): by autodiff (torch.func.hessian, forward over reverse, which
        imports torch._dynamo on first use), unless a problem gives it in closed form (logistic)."""
        return torch.func.hessian(self.inner_loss)(w, lam)

    def newton_direction(self, w: torch.Tensor, g: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """∇₁²ℓ(w, λ)⁻¹ g for Newton's method: the dense Hessian (``inner_hessian``) and LU, unless a
        problem overrides it with its structure (e.g. a block-diagonal Hessian)."""
        return torch.linalg.solve(self.inner_hessian(w, lam), g)

    def consts(self, lam: torch.Tensor) -> dict:
        return {}

    def w0(self, lam: torch.Tensor) -> torch.Tensor:
        return torch.zeros(self.w_dim, dtype=lam.dtype, device=lam.device)

    def draw(self, i: int) -> "Problem":
        """The problem as λ draw i sees it: by default itself. A problem whose draws also redraw
        other random terms — E's, or the start w₀ (Ye et al. 2024's protocol: each seed redraws
        the outer objective, the start and y) — returns a copy holding draw i's terms; the
        runner asks for it before the draw's reference and estimates."""
        return self

    def inner_step(self, phi: Callable, w: torch.Tensor, lam: torch.Tensor, state):
        """One step of the inner solver from w: (w_next, state), ``phi`` the counted Φ and
        ``state`` what the previous step returned (None at w₀). Problems that do not override
        it iterate Φ itself (hgbench.core.bound.BoundProblem.iterates calls Φ directly then); one
        whose solver adapts its step (Ye et al.'s backtracking) overrides it, computing each
        step from Φ so that Φ evaluations are counted."""
        return phi(w, lam), state

    def sample_lambdas(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n draws of λ, i.i.d. uniform on [lam_low, lam_high]^p, float64, shape (n, p)."""
        u = torch.rand(n, self.lam_dim, generator=generator, dtype=torch.float64)
        return self.lam_low + (self.lam_high - self.lam_low) * u

    def box(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(low, high), each (p,) float64: the box λ is drawn from, which an outer loop may clamp
        λ to (mode=outer, ``outer.clamp``); [lam_low, lam_high]^p with the default draws, None
        for a problem that draws λ otherwise and does not override this (no box)."""
        if type(self).sample_lambdas is not Problem.sample_lambdas:
            return None
        return (
            torch.full((self.lam_dim,), self.lam_low, dtype=torch.float64),
            torch.full((self.lam_dim,), self.lam_high, dtype=torch.float64),
        )

    # --- derived ------------------------------------------------------------------------------
    def phi_function(self, lam: torch.Tensor, consts: dict) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """Φ(w, l) with the constants of the draw λ bound; a problem may override it to reuse
        work across the inner steps of one λ."""
        return lambda w, l: self.phi(w, l, consts)

    def bound_phi(self, lam: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """Φ(w, l) at the draw λ: its constants computed once from λ's value and detached, so
        that derivatives with respect to λ see λ only through the explicit argument, as the
        theory assumes (hgbench.core.bound.bind counts the calls for the estimators)."""
        return self.phi_function(lam, self.draw_consts(lam))

    def draw_consts(self, lam: torch.Tensor) -> dict:
        """``consts(λ)``, detached, computed once per value of λ: a draw binds Φ four times or
        more (the reference, its adjoint system and error bound, then the estimator), and the
        constants may cost a d × d eigendecomposition (ridge's α). Cached by λ's dtype, device,
        shape and values, together with the problem's tensors (as objects, holding them, and
        their in-place version counters): an entry is reused only by a problem whose tensors are
        the very ones it was computed from, unchanged (a copy cast by ``to``, a draw with its own
        terms or data modified in place computes afresh). consts depend on λ and the problem's
        tensors only (the contract of ``consts``). Not cached under a torch.func transform
        (batched λ has no concrete values) nor beyond the last CONSTS_KEPT values of λ."""
        key = _values_key(lam)
        tensors = tuple((name, value, value._version) for name, value in vars(self).items() if isinstance(value, torch.Tensor))
        cache = self.__dict__.setdefault("_consts_cache", {})
        hit = cache.get(key) if key is not None else None
        if (
            hit is not None
            and len(hit[0]) == len(tensors)
            and all(
                name == old_name and value is old and version == old_version
                for (name, value, version), (old_name, old, old_version) in zip(tensors, hit[0])
            )
        ):
            return dict(hit[1])
        consts = self.consts(lam.detach())
        for name, value in consts.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(
                    f"{type(self).__name__}.consts returned {name!r} = {value!r} ({type(value).__name__}); "
                    "each constant must be a torch.Tensor, e.g. torch.as_tensor(value, dtype=lam.dtype)"
                )
        consts = {name: value.detach() for name, value in consts.items()}
        if key is not None:
            cache.pop(key, None)
            cache[key] = (tensors, consts)
            while len(cache) > CONSTS_KEPT:
                cache.pop(next(iter(cache)))
        return dict(consts)

    @classmethod
    def provides(cls) -> frozenset[str]:
        """What this kind of problem offers the estimators that need it (keys of
        hgbench.core.bound.NEEDS): ``symmetric`` (∂₁Φ symmetric), ``inner_loss`` (ℓ defined) and
        ``dense`` (dense dim w × dim w matrices affordable);
        declared by the class, so that `hgbench list` can tell without building the problem."""
        offered = {"symmetric": cls.symmetric_jacobian, "inner_loss": cls.inner_loss is not Problem.inner_loss, "dense": cls.dense_jacobian}
        return frozenset(name for name, given in offered.items() if given)

    @property
    def has_inner_loss(self) -> bool:
        """Whether the problem defines ℓ (estimators that need it declare so)."""
        return "inner_loss" in self.provides()

    def solve_inner(self, lam: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """w*(λ) to round-off by damped Newton on ℓ(·, λ) (needs ``inner_loss``), from ``start``
        (default w₀(λ)).

        Stops when no step along the Newton direction decreases ‖∇ℓ‖ (round-off reached), or
        after 100 steps.
        """
        grad = lambda w: autodiff.gradient(self.inner_loss, (w, lam))
        return damped_newton(grad, lambda w, g: self.newton_direction(w, g, lam), self.w0(lam) if start is None else start)

    def adjoint_system(self, lam: torch.Tensor, w_star: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, float, float]:
        """(v, q, κ) for the reference: v solves (I − Jᵀ)v = b with J = ∂₁Φ(w*, λ), q = ‖J‖₂ and
        κ = cond(I − Jᵀ). By default J is formed densely (reverse mode, autodiff.jacobian) and the system solved by LU;
        a problem too large for a dense J overrides this with its own exact solve."""
        phi = self.bound_phi(lam)
        jac = autodiff.jacobian(lambda w: phi(w, lam), (w_star,))
        system = torch.eye(jac.shape[0], dtype=jac.dtype, device=jac.device) - jac.T
        if self.symmetric_jacobian and jac.shape[0] > SPECTRUM_BY_SVD_MAX:
            # J symmetric: its eigenvalues e give q = max |e| and the singular values |1 − e| of
            # I − J, by one symmetric eigensolve, about 4× faster than the two SVDs at d = 2000
            eig = torch.linalg.eigvalsh(jac)
            singular = (1 - eig).abs()
            return torch.linalg.solve(system, b), eig.abs().max().item(), (singular.max() / singular.min()).item()
        singular = torch.linalg.svdvals(system)
        q = torch.linalg.matrix_norm(jac, ord=2).item()
        return torch.linalg.solve(system, b), q, (singular[0] / singular[-1]).item()

    def inverse_norm(self, lam: torch.Tensor, w_star: torch.Tensor) -> float | None:
        """‖(I − ∂₁Φ(w*, λ))⁻¹‖₂, where a problem that solves its adjoint system its own way
        (``adjoint_system`` overridden) can compute it exactly, e.g. block by block; None (the
        default): the reference's certificate bounds it by 1/(1 − q), which needs q < 1."""
        return None

    @classmethod
    def planned(cls, settings: dict) -> "Planned | None":
        """The sizes a problem built from ``settings`` (its config's constructor arguments) will
        have, computed without building it (hgbench.running.guard.precheck refuses a problem whose
        construction cannot fit before it allocates anything); None where they are unknown (the
        default: a problem defined elsewhere, or one whose data set bounds its sizes)."""
        return None

    def reference_bytes(self) -> int:
        """Roughly the peak memory of one reference (hgbench.running.guard): by default the dense
        float64 J, I − Jᵀ and the SVD's and LU's copies of it, 4·d² · 8 bytes. A problem that
        overrides ``adjoint_system`` overrides this too."""
        return 4 * self.w_dim**2 * 8

    def to(self, dtype: torch.dtype, device: torch.device | str) -> "Problem":
        """A copy whose floating-point tensors are cast to dtype and moved to device."""
        other = copy.copy(self)
        for key, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                cast = value.to(dtype) if value.is_floating_point() else value
                setattr(other, key, cast.to(device))
        return other

    # --- the outer loop (mode=outer, hgbench.running.outer_loop): declared capabilities --------------
    trainable: bool = False  # implements ``evaluate``: mode=outer logs its metrics

    def evaluate(self, lam: torch.Tensor, t: int) -> dict[str, float]:
        """For trainable problems: ``{split}_loss`` and ``{split}_acc`` for the splits train, val
        and test of the model at λ whose states are t steps of Φ from w₀."""
        raise NotImplementedError(f"problem {self.name!r} has no metrics (evaluate)")

    def metrics(self, w: torch.Tensor, lam: torch.Tensor) -> dict[str, float] | None:
        """For trainable problems whose model is the inner variable w itself (hyper_cleaning's
        classifier): ``evaluate``'s metrics of the model w at λ, so that mode=bilevel can score
        the certified w*(λ) (``bilevel.test_t = 0``); None (the default) where the model is not w alone."""
        return None

    def project(self, lam: torch.Tensor) -> torch.Tensor:
        """λ after an outer step, moved into its feasible set (``outer.project``); by default λ itself (no constraint)."""
        return lam

    def contraction_bound(self, lam: torch.Tensor) -> float:
        """A cheap upper bound on q = ‖∂₁Φ(w*, λ)‖₂ that mode=outer logs every step (``q_bound``); NaN
        when none is known (the default)."""
        return math.nan


class GradientStepProblem(Problem):
    """Φ(w, λ) = w − α(λ) ∇₁ℓ(w, λ): one gradient step on a strongly convex inner loss ℓ.

    ∂₁Φ = I − α∇₁²ℓ is symmetric, so AID-CG applies. If ℓ(·, λ) is μ-strongly convex and
    L-smooth, α = 2/(L + μ) makes Φ a contraction with q = (κ − 1)/(κ + 1), κ = L/μ; the fixed
    point (∇₁ℓ = 0) does not depend on α. Subclasses give ``inner_loss``, its gradient
    ``inner_grad`` in closed form (cheaper than autodiff inside every step), and
    ``curvature_bounds(lam) -> (L, μ)``.
    """

    symmetric_jacobian = True

    def inner_grad(self, w: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def curvature_bounds(self, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def consts(self, lam: torch.Tensor) -> dict:
        big, small = self.curvature_bounds(lam)
        return {"alpha": 2.0 / (big + small)}

    def phi(self, w: torch.Tensor, lam: torch.Tensor, consts: dict) -> torch.Tensor:
        return w - consts["alpha"] * self.inner_grad(w, lam)


class PerFeatureProblem(GradientStepProblem):
    """A gradient step on a linear model's loss with one regularization weight per feature:
    w, λ ∈ ℝ^d, d = the number of columns of the training inputs ``x_train`` (n × d)."""

    @property
    def lam_dim(self) -> int:
        return self.x_train.shape[1]

    @property
    def w_dim(self) -> int:
        return self.x_train.shape[1]


CONSTS_KEPT = 16  # values of λ whose constants a problem keeps (mode=outer moves λ every step)


def _values_key(lam: torch.Tensor):
    """(dtype, device, shape, the bytes of the values) of λ; None where λ has no concrete values
    (a batched tensor under torch.func.vmap)."""
    try:  # the raw bytes, any dtype: exact (−0.0 is not 0.0), and NaN equals itself
        values = lam.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    except RuntimeError:
        return None
    return lam.dtype, str(lam.device), tuple(lam.shape), values


def damped_newton(residual, direction, w: torch.Tensor, steps: int = 100) -> torch.Tensor:
    """A root of ``residual`` (F: (d,) → (d,)) from ``w``: w ← w − γ·s with s = ``direction``(w, F(w))
    (a Newton step, e.g. J_F(w)⁻¹F(w)) and γ halved from 1 until ‖F‖ decreases; stops when no γ
    above 1e-8 decreases it (‖F‖ at round-off) or after ``steps`` steps."""
    f = residual(w)
    for _ in range(steps):
        step = direction(w, f)
        size = 1.0
        while size > 1e-8:
            w_new = w - size * step
            f_new = residual(w_new)
            if torch.linalg.vector_norm(f_new) < torch.linalg.vector_norm(f):
                break
            size /= 2
        else:
            break  # no decrease possible: ‖F‖ is at round-off
        w, f = w_new, f_new
    return w
