"""The constants of Grazzi et al.'s error bounds, in closed form, for the quadratic problems.

Grazzi, Franceschi, Pontil, Salzo, "On the Iteration Complexity of Hypergradient Computation"
(ICML 2020) bound the hypergradient errors of ITD, AID-FP and AID-CG by

    ITD, t steps              (c₁ + c₂·t/q + c₃)·qᵗ
    AID-FP, t and k steps     (c₁ + c₂(1 − qᵏ)/(1 − q))·qᵗ + c₃·qᵏ
    AID-CG, t and k steps     (c₁ + c₂/(1 − q))·qᵗ + c₃·ĉ·pᵏ,   p = (√κ − 1)/(√κ + 1)

with q the contraction constant of Φ(·, λ), D = ‖w₀ − w(λ)‖ (so ‖w_t − w(λ)‖ ≤ qᵗD), and

    c₁ = (μ₂ + L_Φ μ₁/(1 − q))·D,   c₂ = L_E (ν₂ + ν₁ L_Φ/(1 − q))·D,   c₃ = L_E L_Φ/(1 − q)

where ν₁, ν₂ are Lipschitz constants of w ↦ ∂₁Φ(w, λ), ∂₂Φ(w, λ); μ₁, μ₂ those of
w ↦ ∇₁E(w, λ), ∇₂E(w, λ); L_Φ bounds ‖∂₂Φ(w, λ)‖ and L_E = ‖∇₁E(w(λ), λ)‖. The proofs use these
constants only at the iterates, which all lie in the ball B = {w : ‖w − w(λ)‖ ≤ D} (Φ is a
contraction with fixed point w(λ)), so here every "Lipschitz constant" and L_Φ is taken over B.

Derivation of the three forms (following the proofs; ρ = ‖w_t − w‖ ≤ qᵗD, A = ∂₁Φ, B = ∂₂Φ,
A_s, B_s at w_s, v = (I − Aᵀ)⁻¹∇₁E(w), ‖(I − A)⁻¹‖ ≤ 1/(1 − q)):

- ITD: w'_t = A_{t−1}w'_{t−1} + B_{t−1}, w'₀ = 0, so ‖w'_t‖ ≤ L_Φ/(1 − q) and Δ_t = w'_t − w'
  obeys ‖Δ_t‖ ≤ q‖Δ_{t−1}‖ + (ν₁‖w'‖ + ν₂)q^{t−1}D, ‖Δ₀‖ = ‖w'‖ ≤ L_Φ/(1 − q), hence
  ‖Δ_t‖ ≤ qᵗL_Φ/(1 − q) + t q^{t−1}(ν₂ + ν₁L_Φ/(1 − q))D. The error
  ∇₂E(w_t) − ∇₂E(w) + w'_tᵀ(∇₁E(w_t) − ∇₁E(w)) + Δ_tᵀ∇₁E(w) is at most
  μ₂ρ + L_Φμ₁ρ/(1 − q) + L_E‖Δ_t‖ = (c₁ + c₂t/q + c₃)qᵗ.
- AID-FP: v_{t,k} = Σ_{i<k}(A_tᵀ)ⁱ∇₁E(w_t); against v_k = Σ_{i<k}(Aᵀ)ⁱ∇₁E(w) the error splits
  into μ₂ρ + L_Φ‖v_{t,k} − v_k‖ + ν₂ρ‖v_k‖ + L_Φ‖v_k − v‖, with ‖v_k‖ ≤ L_E(1 − qᵏ)/(1 − q),
  ‖v − v_k‖ ≤ L_E qᵏ/(1 − q) and ‖v_{t,k} − v_k‖ ≤ ρ(μ₁(1 − qᵏ)/(1 − q) + ν₁L_E Σ_{i<k} i q^{i−1}),
  Σ_{i<k} i q^{i−1} ≤ (1 − qᵏ)/(1 − q)²: the FP form above.
- AID-CG: with v_t = (I − A_tᵀ)⁻¹∇₁E(w_t), ‖v_t − v‖ ≤ ρ(μ₁/(1 − q) + ν₁L_E/(1 − q)²) and k CG
  steps from 0 on the symmetric positive definite I − A_tᵀ (condition number κ) leave
  ‖v_{t,k} − v_t‖ ≤ 2√κ pᵏ‖v_t‖ ≤ 2√κ pᵏ (L_E + μ₁ρ)/(1 − q) (the energy-norm bound of CG, moved
  to the Euclidean norm): the CG form with c₃ĉ = 2√κ L_Φ (L_E + μ₁Dqᵗ)/(1 − q), i.e.
  ĉ = 2√κ (1 + μ₁Dqᵗ/L_E).

Closed form, here: Φ affine in w (∂₁Φ = A constant: ν₁ = 0, and q = ‖A‖₂ is the global
contraction constant, equal to the local ‖∂₁Φ(w*)‖), ∂₂Φ(w) affine in w (a constant 3-tensor
T = ∂₁∂₂Φ), E quadratic in w (constant ∇₁²E; ∂₁∇₂E(w) affine in w with a constant 3-tensor U).
Then, exactly or as upper bounds,

    q = ‖A‖₂,  κ = cond(I − A),  μ₁ = ‖∇₁²E‖₂,  L_E = ‖∇₁E(w(λ))‖
    ν₂ = ‖T‖ as the (d·p × d) unfolding: ‖(∂₂Φ(w) − ∂₂Φ(w'))‖₂ ≤ ‖·‖_F = ‖T(w − w')‖_F ≤ ν₂‖w − w'‖
    L_Φ = ‖∂₂Φ(w(λ))‖₂ + ν₂D,   μ₂ = ‖∂₁∇₂E(w(λ))‖₂ + ‖U‖·D   (sup over B)

(on ridge ν₂ = α·max exp(λⱼ) and on kernel ridge α(ρ² + ‖∂K/∂log σ‖²)^½, exactly; on biased
regularization ∂₂Φ = αγI is constant, so ν₂ = 0 and c₂ = 0). The problems of this class are
``QUADRATIC``: ridge (every outer objective), kernel ridge, biased regularization. Logistic
regression and hyper-representation have no closed-form constants (Φ is not affine in w).
"""

from __future__ import annotations

import math

import torch
from torch.func import grad, jacfwd, jacrev, jvp

from hgbench.problems.base import Problem
from hgbench.problems.kernel_ridge import KernelRidge
from hgbench.problems.meta_learning import MetaLearning
from hgbench.problems.ridge import Ridge

QUADRATIC = (Ridge, KernelRidge, MetaLearning)
NAMES = ["q", "kappa", "D", "L_phi", "nu2", "L_E", "mu1", "mu2", "c1", "c2", "c3"]


def _norm2(m: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(m, ord=2)) if m.numel() else 0.0


def computable(problem: Problem) -> bool:
    """Whether the bounds' constants of ``problem`` are known in closed form (module docstring)."""
    return isinstance(problem, QUADRATIC)


def constants(problem: Problem, lam: torch.Tensor) -> dict[str, float]:
    """The constants of the bounds at the draw λ (float64): NAMES, from the module docstring's
    closed forms. Raises ValueError for a problem outside ``QUADRATIC``."""
    if not computable(problem):
        raise ValueError(
            f"problem {problem.name!r}: the bounds' constants are not computable in closed form "
            f"(only for {', '.join(c.__name__ for c in QUADRATIC)})"
        )
    lam = lam.detach().to(torch.float64)
    phi = problem.bound_phi(lam)
    w = problem.solve_inner(lam)
    d = w.numel()
    dist = float(torch.linalg.vector_norm(problem.w0(lam) - w))
    a = jacrev(phi, 0)(w, lam)
    eig = torch.linalg.eigvalsh(torch.eye(d, dtype=w.dtype) - 0.5 * (a + a.T))
    q = _norm2(a)
    # One λ direction eⱼ at a time (a d×d slice each; batching all would hold d²·p kernel-sized
    # intermediates): Tⱼ = ∂₁(∂Φ/∂λⱼ), and for E the gradient and Hessian in w of ∂E/∂λⱼ.
    gram_t = torch.zeros(d, d, dtype=w.dtype)  # Σⱼ TⱼᵀTⱼ: ν₂² is its largest eigenvalue
    gram_u = torch.zeros(d, d, dtype=w.dtype)  # Σⱼ UⱼᵀUⱼ, Uⱼ = ∇₁²(∂E/∂λⱼ)
    cross = torch.zeros(lam.numel(), d, dtype=w.dtype)  # ∂₁∇₂E(w*)
    b = torch.zeros(d, lam.numel(), dtype=w.dtype)  # ∂₂Φ(w*)
    for j in range(lam.numel()):
        e = torch.zeros_like(lam)
        e[j] = 1.0

        def dphi(v, e=e):
            return jvp(lambda l: phi(v, l), (lam,), (e,))[1]

        def de(v, e=e):
            return jvp(lambda l: problem.outer(v, l), (lam,), (e,))[1]

        t_j = jacrev(dphi)(w)
        gram_t += t_j.T @ t_j
        u_j = jacfwd(grad(de))(w)
        gram_u += u_j.T @ u_j
        cross[j] = grad(de)(w)
        b[:, j] = dphi(w)
    nu2 = float(torch.linalg.eigvalsh(gram_t)[-1].clamp(min=0).sqrt())
    grad_w = grad(problem.outer, 0)
    l_e = float(torch.linalg.vector_norm(grad_w(w, lam)))
    mu1 = _norm2(jacfwd(grad_w)(w, lam))
    mu2 = _norm2(cross) + float(torch.linalg.eigvalsh(gram_u)[-1].clamp(min=0).sqrt()) * dist
    l_phi = _norm2(b) + nu2 * dist
    return {
        "q": q,
        "kappa": float(eig[-1] / eig[0]),
        "D": dist,
        "L_phi": l_phi,
        "nu2": nu2,
        "L_E": l_e,
        "mu1": mu1,
        "mu2": mu2,
        "c1": (mu2 + l_phi * mu1 / (1 - q)) * dist,
        "c2": l_e * nu2 * dist,
        "c3": l_e * l_phi / (1 - q),
    }


def bound(role: str, t, k, c: dict) -> float:
    """Grazzi et al.'s bound on ‖ĝ − ∇f(λ)‖ for ``role`` (itd, fp or cg) after t inner and k solver
    steps, from the constants ``c`` of ``constants`` (module docstring); NaN for another role.
    Works elementwise on numpy arrays or pandas Series of t, k and the constants."""
    q, kappa = c["q"], c["kappa"]
    if role == "itd":
        return (c["c1"] + c["c2"] * t / q + c["c3"]) * q**t
    if role == "fp":
        return (c["c1"] + c["c2"] * (1 - q**k) / (1 - q)) * q**t + c["c3"] * q**k
    if role == "cg":
        root = kappa**0.5
        p = (root - 1) / (root + 1)
        return (c["c1"] + c["c2"] / (1 - q)) * q**t + 2 * root * p**k * c["L_phi"] * (c["L_E"] + c["mu1"] * c["D"] * q**t) / (1 - q)
    return math.nan
