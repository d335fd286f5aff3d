"""The certified optimum of an outer problem: the f* that mode=outer measures suboptimality against.

    min_{λ ∈ C} f(λ) = E(w*(λ), λ),   w*(λ) = Φ(w*(λ), λ)

driven from λ₀ by a deterministic first-order method on the EXACT hypergradient, the float64
reference ∇f(λ) of hgbench.core.reference (every reference certified by ``certify``), until the
stationarity measure

    π(λ) = ‖Π(λ − ∇f(λ)) − λ‖₂

(the projected gradient with unit step, Π the projection onto C; π(λ) = ‖∇f(λ)‖ when C is the
whole space; π(λ) = 0 exactly at a first-order stationary point of f on a closed convex C,
Nocedal & Wright, Numerical Optimization, 2nd ed., §16.7 and §18) is at most

    tol = TOL_REL · π(λ₀)   (TOL_REL = 1e-6).

The method: the nonmonotone spectral projected gradient of Birgin, Martínez & Raydan (SIAM J.
Optim. 10(4), 2000, algorithm SPG2): λ⁺ = λ + γ d with d = Π(λ − α∇f(λ)) − λ, α the
Barzilai–Borwein step sᵀs/sᵀy (s = λ⁺ − λ, y = ∇f(λ⁺) − ∇f(λ)) clipped to [ALPHA_MIN, ALPHA_MAX],
and γ halved from 1 until f(λ + γd) ≤ max of the last MEMORY values of f + 1e-4·γ·∇f(λ)ᵀd. No
randomness: the same problem (configuration and seed) and λ₀ give the same f*.

The optimum is certified when the reference at λ₀ is certified (``certify``) and, at the last
iterate, the reference's residuals pass and π + b ≤ tol, with b ≥ ‖ĝ − ∇f‖ the certificate's
absolute error bound on the hypergradient (``stationarity_uncertified``); else it is not,
with a one-line reason (not stationary within MAX_EVALS references, a reference not certified, a
step that left the domain), and no ε-claim may be made against it. The iterates in between only
steer the path: their references skip the bound's norms (``reference(..., bound=False)``; ∇f
and f are bit-for-bit the same either way), which cost 10–80× the reference itself on kernel ridge
and the equilibrium model; f* and π(λ*) are read from the certified reference at the end.
f* is the value at a stationary point reached from λ₀: the minimum where f is convex on C, a
local one otherwise (a run that ends below it found a lower basin, and shows a negative gap).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import torch

from hgbench.core.reference import certify, reference

if TYPE_CHECKING:
    from hgbench.problems.base import Problem

TOL_REL = 1e-6  # π(λ*) ≤ TOL_REL · π(λ₀)
MAX_EVALS = 400  # references (f and ∇f) per solve, line-search trials included
MEMORY = 10  # the nonmonotone line search compares with the largest of the last MEMORY values of f
ALPHA_MIN, ALPHA_MAX = 1e-30, 1e30  # the BB step's safeguards (Birgin et al. 2000)
SUFFICIENT = 1e-4  # Armijo's constant
MIN_STEP = 1e-12  # γ below this: no decrease found along d (f is flat to round-off there)


def stationarity(lam: torch.Tensor, grad: torch.Tensor, project: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """π(λ) = ‖Π(λ − ∇f(λ)) − λ‖₂ (module docstring); λ, ∇f (p,) float64."""
    return torch.linalg.vector_norm(project(lam - grad) - lam).item()


def evaluate(problem: "Problem", lam: torch.Tensor, method: str = "dense", bound: bool = True) -> tuple[float, torch.Tensor, dict | None]:
    """(f(λ), ∇f(λ), certificate) from one float64 reference: f = E(w*, λ), ∇f the reference's
    hypergradient, the certificate hgbench.core.reference.certify's (None without ``bound``)."""
    ref = reference(problem, lam, method, bound=bound)
    value = problem.outer(ref.w_star, lam).item()
    return value, ref.grad, certify(ref) if bound else None


def certified_optimum(
    problem: "Problem",
    lam0: torch.Tensor,
    project: Callable[[torch.Tensor], torch.Tensor],
    method: str = "dense",
    tol_rel: float = TOL_REL,
    max_evals: int = MAX_EVALS,
) -> dict:
    """SPG2 from Π(λ₀) on the exact hypergradient (module docstring). ``problem`` holds float64
    data; ``project`` is Π on float64 (p,) tensors. Returns ``f_star`` (f at the last iterate),
    ``stationarity`` π there, ``grad_norm`` ‖∇f‖ there, ``tol`` the target, ``pi0`` π(λ₀),
    ``evals`` and ``iterations`` used, ``lam_star`` (a list), ``certified`` and ``reason``
    ("" when certified)."""
    lam = project(lam0.to(torch.float64))
    evals, iterations = 0, 0

    def fail(reason: str) -> dict:
        return {
            "f_star": math.nan,
            "stationarity": math.nan,
            "grad_norm": math.nan,
            "tol": math.nan,
            "pi0": math.nan,
            "evals": evals,
            "iterations": iterations,
            "lam_star": None,
            "certified": False,
            "reason": f"no certified optimum: {reason}",
        }

    if max_evals < 1:
        return fail("not computed (a budget of 0 references)")
    try:
        value, grad, cert = evaluate(problem, lam, method)
    except (RuntimeError, ValueError, ArithmeticError) as err:
        return fail(f"the reference fails at λ₀ ({type(err).__name__}: {err})")
    evals = 1
    if not cert["certified"]:
        return fail(f"at λ₀, {cert['reason']}")
    if not (math.isfinite(value) and bool(torch.isfinite(grad).all())):
        return fail("f or ∇f is not finite at λ₀")
    pi = pi0 = stationarity(lam, grad, project)
    tol = tol_rel * pi0
    history = [value]
    alpha = min(ALPHA_MAX, max(ALPHA_MIN, 1.0 / max(torch.linalg.vector_norm(grad, math.inf).item(), 1e-300)))
    reason = ""
    while pi > tol:
        if evals >= max_evals:
            reason = f"π = {pi:.3g} > tol = {tol:.3g} after {evals} references"
            break
        d = project(lam - alpha * grad) - lam
        slope = grad.dot(d).item()
        step, reference_value, reason_fail = 1.0, max(history[-MEMORY:]), "a non-finite f or ∇f"
        while True:
            trial = lam + step * d
            try:
                new_value, new_grad, _ = evaluate(problem, trial, method, bound=False)
            except (RuntimeError, ValueError, ArithmeticError) as err:
                new_value, new_grad = math.inf, None  # outside the domain: shorten the step
                reason_fail = f"{type(err).__name__}: {err}"
            evals += 1
            finite = math.isfinite(new_value) and new_grad is not None and bool(torch.isfinite(new_grad).all())
            if finite and new_value <= reference_value + SUFFICIENT * step * slope:
                break
            step /= 2
            if step < MIN_STEP or evals >= max_evals:
                new_grad = None
                break
        if new_grad is None:
            why = "no decrease along the projected-gradient direction" if step < MIN_STEP else f"{evals} references used"
            if not finite and step < MIN_STEP:
                why += f" (last trial: {reason_fail})"
            reason = f"π = {pi:.3g} > tol = {tol:.3g}: {why}"
            break
        s, y = trial - lam, new_grad - grad
        sy = s.dot(y).item()
        alpha = ALPHA_MAX if sy <= 0 else min(ALPHA_MAX, max(ALPHA_MIN, s.dot(s).item() / sy))
        lam, value, grad = trial, new_value, new_grad
        history.append(value)
        iterations += 1
        pi = stationarity(lam, grad, project)
    out = {
        "f_star": value,
        "stationarity": pi,
        "grad_norm": torch.linalg.vector_norm(grad).item(),
        "tol": tol,
        "pi0": pi0,
        "evals": evals,
        "iterations": iterations,
        "lam_star": lam.tolist(),
    }
    if reason:
        return {**out, "f_star": math.nan, "certified": False, "reason": f"no certified optimum: {reason}"}
    if iterations:  # λ* was reached through references without norms: certify the one f* and π are read from
        cert = certify(reference(problem, lam, method))
        out["evals"] += 1
    why = stationarity_uncertified(cert, pi, tol)
    if why:
        return {**out, "f_star": math.nan, "certified": False, "reason": f"no certified optimum: at λ*, {why}"}
    return {**out, "certified": True, "reason": ""}


def stationarity_uncertified(cert: dict, pi: float, tol: float) -> str:
    """Why π(λ*) ≤ tol is not certified by the reference's certificate ``cert`` at λ* ("" when it
    is). Both residuals must pass ``certify``'s tolerances and the absolute bound b ≥ ‖ĝ − ∇f‖
    (``grad_error_bound``) must be finite; then the true π differs from the computed one by at most
    b (Π is nonexpansive, so g ↦ ‖Π(λ − g) − λ‖ is 1-Lipschitz) and π + b ≤ tol certifies the
    stationarity. ``certify``'s own gate, b/‖ĝ‖ ≤ 1e-6, asks the wrong question here: at a
    stationary point ‖ĝ‖ → 0, and a bound of 1e-12 on a gradient of 1e-7 is a relative 1e-5."""
    tolerances = cert["tolerances"]
    for check in ("fixed_point_rel", "linear_rel"):
        if not cert[check] <= tolerances[check]:
            return cert.get("reason") or f"{check} {cert[check]:.2g} > {tolerances[check]:g}"
    bound = cert.get("grad_error_bound", math.nan)
    if not math.isfinite(bound):
        return cert.get("reason") or "no finite error bound on ∇f"
    if not pi + bound <= tol:
        return f"π + the reference's error bound = {pi:.3g} + {bound:.2g} > tol = {tol:.3g}"
    return ""
