"""The float64 reference hypergradient, by the implicit function theorem with a direct solve,
and its certificate (``certify``): the facts that must hold before any row is compared with it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Optional

import torch

from hgbench.core.krylov import solve_cg, solve_gmres
from hgbench.problems import autodiff
from hgbench.problems.base import SPECTRUM_BY_SVD_MAX

if TYPE_CHECKING:
    from hgbench.problems.base import Problem


@dataclass
class Reference:
    """Everything known exactly about one λ draw (all tensors float64, on the CPU).

    w_star: the inner fixed point; grad: ∇f(λ); q: ‖∂₁Φ(w*, λ)‖₂ (the local contraction
    constant); kappa: the condition number of I − ∂₁Φᵀ (the linear system of AID);
    fixed_point_residual: ‖Φ(w*) − w*‖; linear_residual: ‖(I − Jᵀ)v − ∇₁E‖; rhs_norm: ‖∇₁E(w*, λ)‖,
    the right-hand side of that system; matrix_free: the matrix-free reference's facts
    (``matrix_free_reference``: solver, products, q used and the bounds on its own error), None
    for the dense one; norms: the norms measured at (w*, v) that the error bound needs
    (``sensitivities``; ``error_bound`` turns them into the bound), None where not measured.
    """

    w_star: torch.Tensor
    grad: torch.Tensor
    q: float
    kappa: float
    fixed_point_residual: float
    linear_residual: float
    rhs_norm: float
    matrix_free: Optional[dict] = None
    norms: Optional[dict] = None

    def summary(self) -> dict:
        """The scalar facts, for run.json."""
        out = {k: v for k, v in asdict(self).items() if not isinstance(v, torch.Tensor) and v is not None}
        out["grad_norm"] = torch.linalg.vector_norm(self.grad).item()
        out["w_star_norm"] = torch.linalg.vector_norm(self.w_star).item()
        return out


def reference(problem: "Problem", lam: torch.Tensor, method: str = "dense", bound: bool = True) -> Reference:
    """∇f(λ) = ∇₂E(w*, λ) + ∂₂Φ(w*, λ)ᵀ v,  (I − Jᵀ) v = ∇₁E(w*, λ),  J = ∂₁Φ(w*, λ).

    ``method``: dense (below) or matrix_free (``matrix_free_reference``; ``choose`` picks one).

    ``problem`` must hold float64 data. w* comes from ``problem.solve_inner`` (closed form or
    Newton) and v from ``problem.adjoint_system`` (by default LU on the dense J formed by
    reverse-mode autodiff; a large problem solves it its own exact way, e.g. block by block), so
    the only errors are round-off. Both residuals are recorded, the linear one measured by one VJP,
    and, with ``bound``, the norms the error bound needs (``sensitivities``: dense matrices and
    their 2-norms where the problem uses the default dense solve, power iteration otherwise; on
    the equilibrium model about as long again as the reference itself). Computing them does not
    touch w*, v or ∇f; without them (``bound=False``: a caller that only reads ∇f or w*)
    ``certify`` does not certify.
    """
    if method == "matrix_free":
        return matrix_free_reference(problem, lam, bound=bound)
    if lam.dtype != torch.float64:
        raise TypeError(f"the reference is computed in float64, got λ of dtype {lam.dtype}")
    from hgbench.problems.base import Problem

    phi = problem.bound_phi(lam)
    w_star = problem.solve_inner(lam)
    grad_w, grad_lam = autodiff.gradient(problem.outer, (w_star, lam), argnums=(0, 1))
    v, q, kappa = problem.adjoint_system(lam, w_star, grad_w)
    phi_w_star, pullback = autodiff.vjp(phi, (w_star, lam))
    jtv, phi_t_v = pullback(v)
    grad = grad_lam + phi_t_v
    dense = type(problem).adjoint_system is Problem.adjoint_system  # J affordable as a dense matrix
    # ‖(I − J)⁻¹‖₂: 1/σ_min from the dense matrix; else the problem's own exact value (block by
    # block: defined without a contraction), else 1/(1 − q) ≥ it (σ_min(I − J) ≥ 1 − ‖J‖₂)
    inverse = None if dense else problem.inverse_norm(lam, w_star) if bound else None
    if not dense and inverse is None:
        inverse = 1 / (1 - q) if q < 1 else math.inf
    measured = dict(phi_w_star=_norm(phi_w_star), jtv=_norm(jtv), grad_lam=_norm(grad_lam), phi_t_v=_norm(phi_t_v), jacobian=q)
    ref = Reference(
        w_star=w_star,
        grad=grad,
        q=q,
        kappa=kappa,
        fixed_point_residual=_norm(phi_w_star - w_star),
        linear_residual=_norm(v - jtv - grad_w),
        rhs_norm=_norm(grad_w),
        norms={**sensitivities(problem, lam, w_star, v, inverse, q), **measured} if bound else None,
    )
    if bound and dense and ref.norms["source"] != "dense" and not certify(ref)["certified"]:
        # the cheap bounds of a large d are too loose to certify (ill-conditioned): the exact norms
        ref.norms = {**sensitivities(problem, lam, w_star, v, inverse), **measured}
    return ref


def _norm(x: torch.Tensor) -> float:
    return torch.linalg.vector_norm(x).item()


def norm_above(m: torch.Tensor) -> float:
    """An upper bound of ‖m‖₂ in O(size) operations: min(‖m‖_F, √(‖m‖₁‖m‖_∞)) (Golub & Van Loan,
    "Matrix Computations", 4th ed., §2.3.2: ‖m‖₂ ≤ ‖m‖_F and ‖m‖₂² ≤ ‖m‖₁‖m‖_∞), inflated by
    ROUNDOFF_ULPS·eps for the round-off of the sums. Exact for a diagonal m."""
    if not m.numel():
        return 0.0
    m = m.reshape(m.shape[0], -1)
    frobenius = torch.linalg.matrix_norm(m, ord="fro").item()
    product = math.sqrt(torch.linalg.matrix_norm(m, ord=1).item() * torch.linalg.matrix_norm(m, ord=math.inf).item())
    return min(frobenius, product) * (1 + ROUNDOFF_ULPS * EPS)


def sensitivities(
    problem: "Problem", lam: torch.Tensor, w: torch.Tensor, v: torch.Tensor, inverse: Optional[float], q: float = math.inf
) -> dict:
    """The operator norms that carry the errors of (w, v) into ∇f, at the computed (w, v), with
    J = ∂₁Φ(w, λ), A = ∂₂Φ(w, λ) (d × p), 𝓛(w, λ) = E(w, λ) + vᵀΦ(w, λ) (v held fixed),
    M = ∇²_ww 𝓛 (d × d) and N = ∇²_λw 𝓛 (p × d):

        inverse = ‖(I − J)⁻¹‖₂,  phi_lam = ‖A‖₂,  hess_ww = ‖M‖₂,  hess_lw = ‖N‖₂,
        from_v  ≥ ‖Z‖₂,  Z = (I − J)⁻¹A                  (an adjoint residual → ∇f)
        from_w  ≥ ‖(N + ZᵀM)(I − J)⁻¹‖₂                 (a fixed-point residual → ∇f)

    ``inverse`` None: the dense path: J, A, M, N formed by reverse-mode autodiff
    (hgbench.problems.autodiff: M, N reverse over reverse, as torch.func.jacrev of its grad), Z and the
    product by LU solves, every norm an exact 2-norm (``inverse`` = 1/σ_min(I − J) from the
    singular values); for dim w > SPECTRUM_BY_SVD_MAX and ``q`` = ‖J‖₂ < 1, no SVD and no J:
    the 2-norms bounded above (``norm_above``), ``inverse`` ≤ 1/(1 − q) and the composites by
    products, as below (``reference`` takes the exact ones where these do not certify). Else ``inverse`` is the caller's bound (1/(1 − q)); phi_lam, hess_ww and
    hess_lw come from POWER_STEPS steps of power iteration with JVPs and VJPs (``norm_estimate``:
    estimates from below), and from_v = inverse·phi_lam, from_w = inverse·(hess_lw +
    inverse·hess_ww·phi_lam) bound the composite norms by products. ``source`` says which.
    Also the vector norms ‖w‖ and ‖v‖."""
    phi = problem.bound_phi(lam)
    lagrangian = lambda x, l: problem.outer(x, l) + v @ phi(x, l)
    gradients = lambda x: torch.func.grad(lagrangian, argnums=(0, 1))(x, lam)  # (∇₁𝓛, ∇₂𝓛)
    out = {"w": _norm(w), "v": _norm(v)}
    if inverse is None:
        two = lambda m: torch.linalg.matrix_norm(m, ord=2).item() if m.numel() else 0.0
        hess_ww, hess_lw = autodiff.jacobian(lambda x: autodiff.gradient(lagrangian, (x, lam), argnums=(0, 1), create_graph=True), (w,))
        if w.numel() > SPECTRUM_BY_SVD_MAX and q < 1:
            # no SVD and no J: ‖(I − J)⁻¹‖₂ ≤ 1/(1 − q) (Neumann series, q = ‖J‖₂ exact), each
            # 2-norm by ``norm_above`` and the composites by products, as on the matrix-free path
            jac_lam = autodiff.jacobian(phi, (w, lam), argnums=1)
            inverse, phi_lam, hess_ww, hess_lw = 1 / (1 - q), norm_above(jac_lam), norm_above(hess_ww), norm_above(hess_lw)
            return {
                **out,
                "phi_lam": phi_lam,
                "hess_ww": hess_ww,
                "hess_lw": hess_lw,
                "inverse": inverse,
                "from_v": inverse * phi_lam,
                "from_w": inverse * (hess_lw + inverse * hess_ww * phi_lam),
                "source": f"dense, d > {SPECTRUM_BY_SVD_MAX}: 2-norms bounded above by min(‖·‖_F, √(‖·‖₁‖·‖_∞)), 1/(1 − q)",
            }
        jac_w, jac_lam = autodiff.jacobian(phi, (w, lam), argnums=(0, 1))
        system = torch.eye(jac_w.shape[0], dtype=jac_w.dtype, device=jac_w.device) - jac_w
        smallest = torch.linalg.svdvals(system)[-1].item()
        if not smallest > 0:
            return {
                **out,
                "phi_lam": two(jac_lam),
                "hess_ww": two(hess_ww),
                "hess_lw": two(hess_lw),
                "inverse": math.inf,
                "from_v": math.inf,
                "from_w": math.inf,
                "source": "dense",
            }
        z = torch.linalg.solve(system, jac_lam)
        to_grad = torch.linalg.solve(system.T, (hess_lw + z.T @ hess_ww).T).T  # (N + ZᵀM)(I − J)⁻¹
        return {
            **out,
            "phi_lam": two(jac_lam),
            "hess_ww": two(hess_ww),
            "hess_lw": two(hess_lw),
            "inverse": 1 / smallest,
            "from_v": two(z),
            "from_w": two(to_grad),
            "source": "dense",
        }
    seed = lambda: torch.Generator().manual_seed(0)
    lam_part = lambda x: gradients(x)[1]
    phi_lam = norm_estimate(
        lambda u: torch.func.jvp(lambda l: phi(w, l), (lam,), (u,))[1],
        lambda z: torch.func.vjp(lambda l: phi(w, l), lam)[1](z)[0],
        lam,
        seed(),
    )
    hvp = lambda u: torch.func.jvp(lambda x: gradients(x)[0], (w,), (u,))[1]  # (symmetric)
    hess_ww = norm_estimate(hvp, None, w, seed())
    hess_lw = norm_estimate(lambda u: torch.func.jvp(lam_part, (w,), (u,))[1], lambda z: torch.func.vjp(lam_part, w)[1](z)[0], w, seed())
    return {
        **out,
        "phi_lam": phi_lam,
        "hess_ww": hess_ww,
        "hess_lw": hess_lw,
        "inverse": inverse,
        "from_v": inverse * phi_lam,
        "from_w": inverse * (hess_lw + inverse * hess_ww * phi_lam),
        "source": f"power iteration, {POWER_STEPS} steps (estimates from below)",
    }


# The round-off model of ``error_bound``: a float64 evaluation of Φ, ∇E or a VJP is taken to be
# exact at inputs moved by ROUNDOFF_ULPS·eps relative, plus ROUNDOFF_ULPS·eps relative on its
# output and on each summed term (a backward-stable evaluation; Higham 2002, "Accuracy and
# Stability of Numerical Algorithms", §3.1–3.5). The constant stands in for the length factors
# of the sums (γ_n = n·u in the worst case, ~√n·u in practice), and is checked against
# extended-precision references in tests/test_certificate.py.
ROUNDOFF_ULPS = 32
EPS = torch.finfo(torch.float64).eps  # 2⁻⁵², twice the unit round-off


def error_bound(ref: Reference) -> dict:
    """A bound on ‖ĝ − ∇f(λ)‖ for the reference's ĝ, from its residuals and ``norms``.

    With ŵ, v̂ the computed solutions, r_w = ‖Φ(ŵ) − ŵ‖ and r_v = ‖(I − Ĵᵀ)v̂ − ∇₁E(ŵ)‖ their
    measured residuals, the norms of ``sensitivities`` (s ≥ ‖(I − J)⁻¹‖₂, A = ∂₂Φ,
    M = ∇²_ww 𝓛, N = ∇²_λw 𝓛, 𝓛 = E + v̂ᵀΦ, Z = (I − J)⁻¹A) and c = ROUNDOFF_ULPS·eps:

        a_w = c·((1 + ‖J‖)‖ŵ‖ + ‖Φ(ŵ)‖)                       round-off of the measured r_w
        a_v = c·((1 + ‖J‖)‖v̂‖ + ‖Ĵᵀv̂‖ + ‖∇₁E‖ + ‖M‖‖ŵ‖)     round-off of the measured r_v
        floor = c·(‖ĝ‖ + ‖∇₂E‖ + ‖∂₂Φᵀv̂‖ + ‖A‖‖v̂‖ + ‖N‖‖ŵ‖)   round-off of ĝ's own evaluation
        ‖ĝ − ∇f‖ ≤ ‖(N + ZᵀM)(I − J)⁻¹‖·(r_w + a_w) + ‖Z‖·(r_v + a_v) + floor
        ‖ŵ − w*‖ ≤ ε_w = s·(r_w + a_w),   ‖v̂ − v*‖ ≤ ε_v = s·(r_v + a_v + ‖M‖·ε_w)

    Derivation (δw = ŵ − w*, δv = v̂ − v*): (I − J̄)δw = ŵ − Φ(ŵ), J̄ the mean of J on the
    segment [w*, ŵ]; with B(w) = ∇₁E(w) + ∂₁Φ(w)ᵀv̂, (I − J*ᵀ)δv = [(I − Ĵᵀ)v̂ − ∇₁E(ŵ)] + B(ŵ) −
    B(w*); with G(w) = ∇₂E(w) + ∂₂Φ(w)ᵀv̂, G(ŵ) − ∇f = G(ŵ) − G(w*) + ∂₂Φ(w*)ᵀδv. To first order
    δg = Nδw + Aᵀδv = −(N + ZᵀM)(I − J)⁻¹(Φ(ŵ) − ŵ) + Zᵀ((I − Ĵᵀ)v̂ − ∇₁E(ŵ)).
    Rigorous: ε_w where s comes from a contraction constant valid on the segment (the matrix-free
    reference with the problem's ``contraction_bound``). First-order (terms O(ε_w·(ε_w + ε_v))
    dropped, J, A, M, N taken at ŵ instead of along the segment or at w*): the rest, and ε_w
    where s is 1/σ_min(I − Ĵ) or 1/(1 − ‖Ĵ‖) at ŵ. The round-off terms follow the model above
    (ROUNDOFF_ULPS). The dense path measures the composite norms exactly; the power-iteration
    path bounds them by products of estimated norms (``sensitivities``).

    Returns the allowances, ε_w, ε_v, the floor and ``grad_error_bound`` (absolute), all inf
    when s is (I − J singular, or q ≥ 1 without a dense σ_min)."""
    n, c = ref.norms, ROUNDOFF_ULPS * EPS
    a_w = c * ((1 + n["jacobian"]) * n["w"] + n["phi_w_star"])
    a_v = c * ((1 + n["jacobian"]) * n["v"] + n["jtv"] + ref.rhs_norm + n["hess_ww"] * n["w"])
    eps_w = n["inverse"] * (ref.fixed_point_residual + a_w)
    eps_v = n["inverse"] * (ref.linear_residual + a_v + n["hess_ww"] * eps_w)
    floor = c * (_norm(ref.grad) + n["grad_lam"] + n["phi_t_v"] + n["phi_lam"] * n["v"] + n["hess_lw"] * n["w"])
    total = n["from_w"] * (ref.fixed_point_residual + a_w) + n["from_v"] * (ref.linear_residual + a_v) + floor
    return {
        "fixed_point_allowance": a_w,
        "linear_allowance": a_v,
        "w_error": eps_w,
        "v_error": eps_v,
        "roundoff_floor": floor,
        "grad_error_bound": total,
    }


# The tolerances a reference must meet (``certify``).
FIXED_POINT_TOL = 1e-10  # ‖Φ(w*) − w*‖ / ‖w*‖ (absolute when w* = 0)
LINEAR_TOL = 1e-10  # ‖(I − Jᵀ)v − ∇₁E‖ / ‖∇₁E‖ (absolute when ∇₁E = 0)
BOUND_TOL = 1e-6  # ``error_bound``'s bound on ‖ĝ − ∇f‖ / ‖ĝ‖


def _relative(residual: float, scale: float) -> float:
    return residual / scale if scale > 0 else residual


def certify(ref: Reference) -> dict:
    """The certificate of one reference: whether it may be compared with estimates.

    Three checks, on numbers measured on the reference itself: the relative fixed-point residual
    ‖Φ(w*) − w*‖/‖w*‖ ≤ FIXED_POINT_TOL (1e-10); the relative adjoint residual
    ‖(I − Jᵀ)v − ∇₁E‖/‖∇₁E‖ ≤ LINEAR_TOL (1e-10); and the bound of ``error_bound`` on the
    relative error of the hypergradient, ‖ĝ − ∇f‖/‖ĝ‖ ≤ BOUND_TOL (1e-6) (absolute when ĝ = 0).
    An infinite bound (I − J singular, or q ≥ 1 where only q bounds ‖(I − J)⁻¹‖) is not certified.
    Returns the measured ratios, the bound's terms (``error_bound``), ``error_bound`` (the
    relative bound), the tolerances, ``certified`` and, when not, ``reason`` (one line naming the
    failed check and its numbers)."""
    fixed = _relative(ref.fixed_point_residual, torch.linalg.vector_norm(ref.w_star).item())
    linear = _relative(ref.linear_residual, ref.rhs_norm)
    measured = ref.norms is not None
    terms = error_bound(ref) if measured else {"grad_error_bound": math.nan}
    grad = _norm(ref.grad)
    bound = _relative(terms["grad_error_bound"], grad)
    out = {
        "fixed_point_rel": fixed,
        "linear_rel": linear,
        **terms,
        "error_bound": bound,
        "tolerances": {"fixed_point_rel": FIXED_POINT_TOL, "linear_rel": LINEAR_TOL, "error_bound": BOUND_TOL},
    }
    if not fixed <= FIXED_POINT_TOL:
        reason = (
            f"fixed-point residual {ref.fixed_point_residual:.2g} vs ‖w*‖ {torch.linalg.vector_norm(ref.w_star).item():.2g} "
            f"(relative {fixed:.2g} > {FIXED_POINT_TOL:g})"
        )
    elif not linear <= LINEAR_TOL:
        reason = f"linear residual {ref.linear_residual:.2g} vs ‖∇₁E‖ {ref.rhs_norm:.2g} (relative {linear:.2g} > {LINEAR_TOL:g})"
    elif not measured:
        reason = "no error bound: the reference was computed without its norms (bound=False)"
    elif not math.isfinite(terms["grad_error_bound"]):
        reason = f"‖(I − J)⁻¹‖ is not bounded (q = {ref.q:.17g}, κ = {ref.kappa:.2g}): no bound on the reference's error"
    elif not bound <= BOUND_TOL:
        reason = f"error bound ‖ĝ − ∇f‖ ≤ {terms['grad_error_bound']:.2g} vs ‖ĝ‖ {grad:.2g} (relative {bound:.2g} > {BOUND_TOL:g})"
    else:
        return {**out, "certified": True}
    return {**out, "certified": False, "reason": f"reference not certified: {reason}"}


# --- the matrix-free reference ------------------------------------------------------------------
# For problems too large for a dense ∂₁Φ (hgbench.problems.base.Problem.dense_jacobian, or
# dim w above MATRIX_FREE_ABOVE with the default dense adjoint solve): Newton–Krylov on the fixed
# point and a Krylov solve of the adjoint system, products with J by VJP/JVP only, in float64.
REFERENCES = ("auto", "dense", "matrix_free")
MATRIX_FREE_ABOVE = 3000  # auto: the dense Jacobian's 4·d²·8 bytes pass 288 MB above this d
TARGET = 1e-13  # the relative residuals the matrix-free solves aim for (fixed point and adjoint)
KRYLOV_MAX = 5000  # products per Krylov solve, at most
RESTART = 50  # GMRES(m): the Krylov basis kept, d·m·8 bytes
POWER_STEPS = 30  # power-iteration steps estimating ‖J‖₂ when the problem gives no bound


def choose(problem: "Problem", option: str = "auto") -> str:
    """The reference a run uses: ``option`` (dense | matrix_free), or for ``auto`` matrix_free
    where the problem forbids dense matrices, or uses the default dense adjoint solve with
    dim w > MATRIX_FREE_ABOVE; dense otherwise (also for problems with their own exact solve,
    such as the block-diagonal equilibrium model)."""
    from hgbench.problems.base import Problem

    if option not in REFERENCES:
        raise ValueError(f"reference={option!r} is not one of {', '.join(REFERENCES)}")
    if option != "auto":
        return option
    default_solve = type(problem).adjoint_system is Problem.adjoint_system
    return "matrix_free" if not problem.dense_jacobian or (default_solve and problem.w_dim > MATRIX_FREE_ABOVE) else "dense"


def matrix_free_bytes(problem: "Problem") -> int:
    """Roughly the peak memory of a matrix-free reference: the GMRES basis and a few vectors of
    dim w, plus the graph of one Φ evaluation (not known here: taken as 10 vectors)."""
    return (RESTART + 20) * problem.w_dim * 8 + 4 * problem.lam_dim * 8


def refine(apply, b: torch.Tensor, symmetric: bool, tol: float = TARGET, rounds: int = 5) -> tuple[torch.Tensor, float, int]:
    """Solve A x = b by CG (``symmetric``) or GMRES(RESTART): hgbench.core.krylov's generators,
    the estimators' own, driven to the relative residual ``tol`` in at most KRYLOV_MAX products
    per solve (``solve_cg``, ``solve_gmres``); then iterative refinement on the true residual:
    while ‖b − Ax‖ > tol·‖b‖ and it decreases, solve A δ = b − Ax and add δ (at most ``rounds``
    solves). Returns (x, ‖b − Ax‖ measured, products)."""

    def solve(rhs):
        if symmetric:
            return solve_cg(apply, rhs, tol, KRYLOV_MAX)
        return solve_gmres(apply, rhs, tol, KRYLOV_MAX, RESTART)

    x, products = torch.zeros_like(b), 0
    residual = b
    best = torch.linalg.vector_norm(b).item()
    goal = tol * best
    for _ in range(rounds):
        if best <= goal:
            break
        delta, used = solve(residual)
        candidate = x + delta
        new_residual = b - apply(candidate)
        products += used + 1
        norm = torch.linalg.vector_norm(new_residual).item()
        if not norm < best:
            break
        x, residual, best = candidate, new_residual, norm
    return x, best, products


def norm_estimate(jvp, vjp, w: torch.Tensor, generator: torch.Generator, steps: int = POWER_STEPS) -> float:
    """An estimate of ‖J‖₂ from below: √ of the Rayleigh quotient of JᵀJ after ``steps``
    power-iteration steps u ← JᵀJu/‖JᵀJu‖ from a seeded random u of w's shape (one JVP and one
    VJP each; ``jvp`` u ↦ Ju, ``vjp`` z ↦ Jᵀz). ``vjp`` None: J is symmetric, and the steps are
    u ← Ju/‖Ju‖ (one product each), the estimate ‖Ju‖ for the last unit u."""
    u = torch.randn(w.shape, generator=generator, dtype=torch.float64).to(w.device)
    u = u / torch.linalg.vector_norm(u)
    value = 0.0
    for _ in range(steps):
        ju = jvp(u)
        value = torch.linalg.vector_norm(ju).item()
        nxt = ju if vjp is None else vjp(ju)
        size = torch.linalg.vector_norm(nxt)
        if size == 0:
            return 0.0
        u = nxt / size
    return value


def matrix_free_reference(problem: "Problem", lam: torch.Tensor, max_newton: int = 50, bound: bool = True) -> Reference:
    """The reference of ``reference`` without any dense matrix: products with J by VJP/JVP only.

    Inner solution: the problem's own ``solve_inner`` where it overrides the default (dense)
    Newton, else w₀; then Newton–Krylov on F(w) = w − Φ(w, λ): (I − J)s = F by CG (J symmetric,
    VJPs) or GMRES (JVPs) to the relative tolerance η = min(10⁻², ‖F(w)‖/‖F(w₀)‖) (at least
    TARGET; Dembo, Eisenstat & Steihaug 1982's inexact Newton), w ← w − γs with γ halved until ‖F‖ decreases (Kelley 2003,
    "Solving nonlinear equations with Newton's method"), until ‖F(w)‖ ≤ TARGET·‖w‖ or no step
    decreases it. Adjoint: (I − Jᵀ)v = ∇₁E(w, λ) by CG or GMRES with VJPs and refinement, to
    TARGET·‖b‖. Both residuals are measured, not taken from the recursions.

    The bounds on its own error (``matrix_free`` facts ``w_error_bound`` ≥ ‖w − w*‖ and
    ``v_error_bound`` ≥ ‖v − v*‖: ε_w and ε_v of ``error_bound``) take ‖(I − J)⁻¹‖₂ ≤ 1/(1 − q):
    for a contraction with ‖J‖₂ ≤ q < 1 on the segment from w to w*, ‖w − w*‖ ≤ (‖Φ(w) − w‖
    + its round-off allowance)/(1 − q) (w − w* = (w − Φ(w)) + (Φ(w) − Φ(w*))). q is the problem's
    ``contraction_bound`` where it gives one (an upper bound: ε_w is then rigorous up to the
    round-off model), else a power-iteration estimate of ‖J(w)‖₂ (from below, so the bounds are
    estimates; said in ``q_source``). ``q`` of the reference is the power-iteration estimate of
    ‖J(w*)‖₂ (the rows' q column); κ is NaN. The norms of ``sensitivities`` come from power
    iteration.
    """
    from hgbench.problems.base import Problem

    if lam.dtype != torch.float64:
        raise TypeError(f"the reference is computed in float64, got λ of dtype {lam.dtype}")
    phi = problem.bound_phi(lam)
    fixed = lambda x: phi(x, lam)
    own = type(problem).solve_inner is not Problem.solve_inner
    w = problem.solve_inner(lam) if own else problem.w0(lam)
    symmetric = problem.symmetric_jacobian
    norm = lambda x: torch.linalg.vector_norm(x).item()
    residual = w - fixed(w)
    first = norm(residual)
    products, newton = 0, 0
    for _ in range(max_newton):
        if norm(residual) <= TARGET * norm(w):
            break
        if symmetric:
            pull = torch.func.vjp(fixed, w)[1]
            apply = lambda s: s - pull(s)[0]  # (I − J)s = (I − Jᵀ)s
        else:
            apply = lambda s: s - torch.func.jvp(fixed, (w,), (s,))[1]
        forcing = max(TARGET, min(1e-2, norm(residual) / first))  # inexact Newton: looser solves far from w*
        step, _, used = refine(apply, residual, symmetric, tol=forcing, rounds=1)
        products += used
        size, best = 1.0, None
        while size > 1e-8:
            candidate = w - size * step
            new_residual = candidate - fixed(candidate)
            if norm(new_residual) < norm(residual):
                best = (candidate, new_residual)
                break
            size /= 2
        if best is None:
            break  # no decrease along the Newton direction: ‖F‖ is at round-off
        w, residual = best
        newton += 1
    grad_w, grad_lam = torch.func.grad(problem.outer, argnums=(0, 1))(w, lam)
    _, pull_both = torch.func.vjp(phi, w, lam)
    adjoint = lambda v: v - pull_both(v)[0]
    v, _, used = refine(adjoint, grad_w, symmetric)
    jtv, phi_t_v = pull_both(v)
    linear_residual = norm(v - jtv - grad_w)
    q_est = norm_estimate(lambda u: torch.func.jvp(fixed, (w,), (u,))[1], lambda u: pull_both(u)[0], w, torch.Generator().manual_seed(0))
    q_bound = problem.contraction_bound(lam)
    q_used, source = (
        (q_bound, "contraction_bound (an upper bound)")
        if math.isfinite(q_bound)
        else (q_est, f"power iteration, {POWER_STEPS} steps (an estimate from below)")
    )
    fixed_residual = norm(residual)
    inverse = 1 / (1 - q_used) if q_used < 1 else math.inf
    norms = None
    if bound:
        norms = sensitivities(problem, lam, w, v, inverse)
        norms.update(
            phi_w_star=norm(w - residual), jtv=norm(jtv), grad_lam=norm(grad_lam), phi_t_v=norm(phi_t_v), jacobian=max(q_est, q_used)
        )
    facts = {
        "method": "matrix_free",
        "newton_steps": newton,
        "newton_products": products,
        "adjoint_products": used,
        "solver": "cg" if symmetric else f"gmres({RESTART})",
        "q_used": q_used,
        "q_source": source,
    }
    ref = Reference(
        w_star=w,
        grad=grad_lam + phi_t_v,
        q=q_est,
        kappa=math.nan,
        fixed_point_residual=fixed_residual,
        linear_residual=linear_residual,
        rhs_norm=norm(grad_w),
        matrix_free=facts,
        norms=norms,
    )
    if bound:
        errors = error_bound(ref)
        facts.update(w_error_bound=errors["w_error"], v_error_bound=errors["v_error"])
    return ref
