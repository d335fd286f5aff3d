"""jaxopt (Blondel et al., "Efficient and Modular Implicit Differentiation", NeurIPS 2022)
driven as its documentation shows, as estimators of hgbench's grid: an adapter, needing the
optional extra ``pip install 'hgbench[jaxopt]'`` (jax and jaxlib for CPU, jaxopt).

    ĝ(t, k) = ∇₂E(w_t) + jaxopt.implicit_diff.root_vjp(F, w_t, (λ,), ∇₁E(w_t), solve)

``root_vjp`` solves (∂₁F)ᵀ u = ∇₁E by ``solve`` and returns −(∂₂F)ᵀ u; with F(w, λ) = w − Φ(w, λ)
that is ∂₂Φᵀ (I − Jᵀ)⁻¹ ∇₁E at w_t: the implicit function theorem (AID, Grazzi et al. 2020,
Alg. 2). ``solver`` (jaxopt.linear_solve, over jax.scipy.sparse.linalg): ``cg``
(``solve_cg(maxiter=k, tol=tol)``, role cg), ``normal_cg`` (``solve_normal_cg``: CG on the
normal equations, role cg_normal), ``gmres`` (``solve_gmres(restart=k, maxiter=1, tol=tol)``: k
Arnoldi steps, no restart, role gmres). jax stops early once ‖r‖ ≤ max(tol·‖b‖, 0) (its
default tol 1e-5); ``tol=0``: k iterations.

The boundary is numpy: Φ is the problem's torch function, which JAX cannot trace. F enters JAX
as its linearization at (w_t, λ), F(w, λ′) = (I − J)(w − w_t) − B(λ′ − λ) with J = ∂₁Φ and
B = ∂₂Φ formed densely by torch (jacrev; dim w VJPs) and handed over as numpy arrays: the
same first derivatives at the root, which is all implicit differentiation uses. (A matrix-free F
through ``jax.pure_callback`` works for ``cg`` only: ``normal_cg`` and ``gmres`` transpose the
matvec with ``jax.linear_transpose``, which a callback has no rule for.) Needs dense matrices
(``dense``). JAX computes in float64 only with ``jax_enable_x64``, which this adapter sets
(otherwise everything is float32). The t inner steps are hgbench's. Cost: time and the Φ
evaluation of the Jacobian; jaxopt's products are not counted (n_vjp empty).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch

from hgbench.estimators.base import Estimate, Estimator, dense_cost
from hgbench.estimators.libraries import load
from hgbench.options import Choice, EstimatorOptions, Number, option


def load_jaxopt():
    """(jax, jaxopt) with float64 enabled in JAX, or one ValueError line saying how to install them."""
    jax = load("jax", "jaxopt")
    jaxopt = load("jaxopt", "jaxopt")
    jax.config.update("jax_enable_x64", True)  # JAX's default is float32, whatever numpy hands it
    return jax, jaxopt


@dataclass
class JaxoptImplicitOptions(EstimatorOptions):
    solver: str = option(Choice(("cg", "normal_cg", "gmres")), "jaxopt's linear solve (jaxopt.linear_solve.solve_*), k iterations at most")
    tol: float = option(Number(0), "jax's early stop ‖r‖ ≤ tol·‖b‖ (its default 1e-5; 0: exactly k iterations)")


ROLES = {"cg": "cg", "normal_cg": "cg_normal", "gmres": "gmres"}


class JaxoptImplicit(Estimator):
    """jaxopt's implicit differentiation (root_vjp) with its cg, normal_cg or gmres solve, k iterations at most."""

    Options = JaxoptImplicitOptions

    batchable = False  # the products cross into JAX as numpy arrays

    def __init__(self, name: str, solver: str = "cg", tol: float = 1e-5):
        super().__init__(name)
        self.solver, self.tol = solver, float(tol)
        self.role = ROLES[solver]
        self._jitted = {}  # k → the jitted root_vjp (self.root_vjp)
        self.needs = {"dense": "jaxopt is handed the dense ∂Φ through numpy; use hgbench's own estimator of this role"}
        if solver == "cg":
            self.needs["symmetric"] = "jaxopt's cg needs I − ∂₁Φ symmetric; use solver=normal_cg or gmres"

    def check_ready(self) -> None:
        load_jaxopt()

    def planned_cost(self, d, p, pairs, step_bytes, itemsize):
        """As every estimator forming dense d × d matrices once per t (base.dense_cost): jacrev's
        d VJPs, 2 units each; jaxopt's products are dense matrix-vector products, not Φ units."""
        return dense_cost(2, d, pairs, itemsize)

    def linear_solve(self, jaxopt, k: int):
        if self.solver == "gmres":
            return functools.partial(jaxopt.linear_solve.solve_gmres, restart=k, maxiter=1, tol=self.tol)
        solve = jaxopt.linear_solve.solve_cg if self.solver == "cg" else jaxopt.linear_solve.solve_normal_cg
        return functools.partial(solve, maxiter=k, tol=self.tol)

    def root_vjp(self, jax, jaxopt, k: int):
        """(A, B, w_t, λ, ∇₁E) ↦ root_vjp(F, w_t, (λ,), ∇₁E, solve) for F(w, λ′) = A(w − w_t) − B(λ′ − λ),
        jitted once per k (jax.jit: JAX compiles once per shape and k, as its users call it; the
        first call of each includes the compilation, in its row's time)."""
        if k not in self._jitted:

            def vjp(a, b, w0, lam0, cotangent):
                def optimality(w, lam):  # F linearized at (w_t, λ): its derivatives there are F's
                    return a @ (w - w0) - b @ (lam - lam0)

                return jaxopt.implicit_diff.root_vjp(optimality, w0, (lam0,), cotangent, solve=self.linear_solve(jaxopt, k))[0]

            self._jitted[k] = jax.jit(vjp)
        return self._jitted[k]

    def estimate(self, bound, pairs):
        jax, jaxopt = load_jaxopt()
        jnp = jax.numpy
        ks_at = {}
        for t, k in pairs:
            if k >= 1 or self.solver != "gmres":  # jax's gmres needs restart >= 1: k = 0 gives no row
                ks_at.setdefault(t, set()).add(k)
        for t, w_t, inner_cost in bound.iterates(ks_at):
            meter = bound.meter()
            with meter:
                w_t = w_t.detach()
                jac_w, jac_lam = torch.func.jacrev(bound.phi, argnums=(0, 1))(w_t, bound.lam)  # one Φ call, vmapped VJPs
                grad_w, grad_lam = bound.outer_grads(w_t)
                a = jnp.asarray((torch.eye(w_t.numel(), dtype=w_t.dtype) - jac_w).numpy(force=True))
                b = jnp.asarray(jac_lam.numpy(force=True))
                w0, lam0 = jnp.asarray(w_t.numpy(force=True)), jnp.asarray(bound.lam.numpy(force=True))
                cotangent = jnp.asarray(grad_w.numpy(force=True))
            for k in sorted(ks_at[t]):
                solve_meter = bound.meter()
                with solve_meter:
                    vjp = self.root_vjp(jax, jaxopt, k)(a, b, w0, lam0, cotangent)
                    grad = grad_lam + torch.tensor(
                        jax.device_get(vjp), dtype=grad_lam.dtype, device=grad_lam.device
                    )  # a copy: JAX's array is read-only
                cost = inner_cost + meter.cost + solve_meter.cost
                yield Estimate(t, k, grad, w_t, replace(cost, n_vjp=None, saved_bytes=None))
