"""One Krylov solver per method (hgbench.core.krylov): the estimators' iterates and the
matrix-free reference's solves come from the same generator, bit for bit."""

from types import SimpleNamespace

import pytest
import torch
from conftest import draws

from hgbench.core import krylov, reference
from hgbench.estimators.cg import ConjugateGradient
from hgbench.estimators.gmres import GMRES


def system(symmetric: bool, d: int = 30, cond: float = 1e4):
    """Jᵀ = I − A for a seeded A with condition number ``cond``: symmetric positive definite, or
    that plus a non-symmetric part (GMRES). The estimators' product (I − Jᵀ)v = v − Jᵀv is then
    A v up to round-off; the reference is handed the very same function."""
    gen = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    a = q @ torch.diag(torch.logspace(0, torch.log10(torch.tensor(cond)).item(), d, dtype=torch.float64)) @ q.T
    if not symmetric:
        a = a + 0.3 * torch.randn(d, d, generator=gen, dtype=torch.float64)
    jt = torch.eye(d, dtype=torch.float64) - a
    lin = SimpleNamespace(jt=lambda v: jt @ v, functional=False)
    return lin, torch.randn(d, generator=gen, dtype=torch.float64)


@pytest.fixture
def deterministic_lstsq(monkeypatch):
    """torch.linalg.lstsq with the QR driver: the default CPU driver (gelsy) reads its pivot array
    uninitialized (pytorch/pytorch#187411), so two calls on the same input may differ in the last
    bits; GMRES's two runs below must see one and the same least-squares solve."""
    lstsq = torch.linalg.lstsq
    monkeypatch.setattr(torch.linalg, "lstsq", lambda a, b, **kw: lstsq(a, b, driver="gels"))


@pytest.mark.parametrize("estimator", [ConjugateGradient("cg"), GMRES("gmres")], ids=["cg", "gmres"])
def test_the_reference_solve_is_the_estimators_iterate(estimator, deterministic_lstsq):
    """``refine``'s first solve (the matrix-free reference's CG or GMRES, stopped by its tolerance
    test after n products) returns the estimator's n-th iterate, bit for bit, for several n; a
    second copy of the solver with any other order of operations would differ in the last bits
    on this ill-conditioned system (κ = 10⁴)."""
    symmetric = estimator.role == "cg"
    lin, b = system(symmetric)
    apply = lambda v: v - lin.jt(v)  # what AID's solvers multiply by
    seen = set()
    for tol in (1e-1, 1e-3, 1e-6, 1e-9):
        x, _, products = reference.refine(apply, b, symmetric, tol=tol, rounds=1)
        n = products - 1  # refine adds one product for the true residual
        assert n > 0 and (symmetric or n <= reference.RESTART)  # GMRES: one cycle, no restart
        steps = estimator.solver(lin, b)
        for _ in range(n):
            v = next(steps)
        assert torch.equal(x, v), (tol, n)
        seen.add(n)
    assert len(seen) >= 3  # the tolerances stop it at different n


def test_the_restarted_gmres_is_gmres_on_the_residual_system(deterministic_lstsq):
    """GMRES(m): after a cycle of m iterates, the next cycle is the same generator on b − M x."""
    lin, b = system(symmetric=False)
    apply = lambda v: v - lin.jt(v)
    m = 4
    x, products = krylov.solve_gmres(apply, b, tol=0.0, maxiter=m + 3, restart=m)
    assert products == m + 3
    cycle = krylov.iterates(krylov.gmres(apply, b))
    for _ in range(m):
        x1 = next(cycle)
    again = krylov.iterates(krylov.gmres(apply, b - apply(x1)))
    for _ in range(3):
        delta = next(again)
    assert torch.equal(x, x1 + delta)


def test_the_matrix_free_reference_runs_the_core_solvers(ridge, monkeypatch):
    """matrix_free_reference solves through hgbench.core.krylov (the estimators' generators): with
    CG replaced by a recording copy, the recording sees every product the reference reports."""
    calls = []
    original = krylov.conjugate_gradient

    def recording(matvec, b, batched=False):
        for step in original(matvec, b, batched):
            calls.append(step)
            yield step

    monkeypatch.setattr(krylov, "conjugate_gradient", recording)
    ref = reference.matrix_free_reference(ridge, draws(ridge, 1)[0], bound=False)
    facts = ref.matrix_free
    assert facts["solver"] == "cg"
    # refine counts one product per refinement round for the true residual, the solver the rest
    assert 0 < len(calls) < facts["adjoint_products"] + facts["newton_products"]


def test_gmres_is_reproducible_bit_for_bit():
    """The same system twice gives the same iterates, bit for bit (the least-squares solve of the
    Hessenberg system by QR; LAPACK's gelsy was seen to vary in the last bits)."""
    import torch

    from hgbench.core.krylov import iterates, gmres

    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 40, generator=g, dtype=torch.float64) / 8 + torch.eye(40, dtype=torch.float64)
    b = torch.randn(40, generator=g, dtype=torch.float64)
    runs = []
    for _ in range(20):
        it = iterates(gmres(lambda v: a @ v, b))
        runs.append(torch.stack([next(it) for _ in range(30)]))
    assert all(torch.equal(runs[0], run) for run in runs[1:])
