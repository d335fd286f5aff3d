"""The dense linearization (hgbench.core.linearization: products by a dense J built once) and
batched ITD against the matrix-free products: the same estimates to round-off, the same counts,
and rows that say which path measured their time."""

import functools

import pytest
import torch
from conftest import draws
from toy import LinearMap

from hgbench.core.bound import estimate
from hgbench.core.linearization import DENSE_MAX_DIM, dense_path
from hgbench.core.reference import reference
from hgbench.estimators.cg import ConjugateGradient
from hgbench.estimators.cg_normal import NormalCG
from hgbench.estimators.fp import FixedPoint
from hgbench.estimators.gmres import GMRES
from hgbench.estimators.implicit import Exact
from hgbench.estimators.itd import ITDReverse
from hgbench.problems.kernel_ridge import KernelRidge
from hgbench.running.batch import estimate_batched
from hgbench.running.identity import run_id

PAIRS = [(0, 0), (5, 3), (20, 20)]


def kernel_ridge():
    return KernelRidge("kernel_ridge", 0, -2.0, 0.0, -0.5, 0.5, data="synthetic", n_samples=30, n_features=3)


def linear_map():  # J = A not symmetric: a transposed dense J would show
    return LinearMap("linear_map", seed=0, dim=6, q=0.5, lam_low=-1, lam_high=1)


@functools.cache
def kappa(problem, lam) -> float:
    return reference(problem, lam).kappa


def tolerance(problem, lam, k: int) -> float:
    """Relative distance allowed between the two paths' estimates after k solver steps: each
    product differs by round-off of a length-d inner product, ≤ d·ε relative (ε the dtype's
    machine epsilon), and a linear solver on (I − Jᵀ) carries a perturbation of each step into
    the iterate amplified by at most κ = cond(I − J) (the reference's, at w*); k such steps,
    with a factor 10 for the constants of both bounds."""
    return 10 * max(k, 1) * problem.w_dim * torch.finfo(torch.float64).eps * kappa(problem, lam)


def paths(estimator, problem, lam, pairs=PAIRS):
    products = list(estimate(estimator, problem, lam, pairs, dense=False))
    dense = list(estimate(estimator, problem, lam, pairs, dense=True))
    return products, dense


def counts(e):
    return e.cost.n_phi, e.cost.n_vjp, e.cost.n_jvp


@pytest.mark.parametrize(
    "name, estimator",
    [
        (name, estimator)
        for name in ("ridge", "logistic", "kernel_ridge", "linear_map")
        for estimator in (ConjugateGradient("cg"), FixedPoint("fp"), GMRES("gmres"), Exact("exact"))
        if not (name == "linear_map" and estimator.name == "cg")  # cg needs a symmetric J; linear_map's is not
    ],
)
def test_dense_path_agrees_with_products_and_counts_the_same(name, estimator, request):
    problem = kernel_ridge() if name == "kernel_ridge" else linear_map() if name == "linear_map" else request.getfixturevalue(name)
    lam = draws(problem, 1)[0]
    products, dense = paths(estimator, problem, lam)
    for a, b in zip(products, dense, strict=True):
        assert (a.t, a.k) == (b.t, b.k) and counts(a) == counts(b), (a.t, a.k)
        assert torch.linalg.vector_norm(a.grad - b.grad) <= tolerance(problem, lam, a.k or 0) * torch.linalg.vector_norm(a.grad)
        assert not a.cost.dense and b.cost.dense == (b.k != 0)  # the matrix is built only when a product is asked for


def test_normal_equations_use_j_and_jt_of_the_dense_matrix():
    """cg_normal asks for J u (a JVP and a Φ, counted so on the dense path too) and Jᵀv."""
    problem = linear_map()
    lam = draws(problem, 1)[0]
    products, dense = paths(NormalCG("cg_normal"), problem, lam)
    for a, b in zip(products, dense, strict=True):
        assert counts(a) == counts(b) and b.cost.n_jvp > 0 and b.cost.dense
        assert torch.linalg.vector_norm(a.grad - b.grad) <= tolerance(problem, lam, 2 * a.k) * torch.linalg.vector_norm(a.grad)


def test_dense_path_under_vmap_and_batched_itd_equal_the_loop(logistic):
    """Batched draws (torch.func): cg on the dense J against the loop's products (counts against
    the batched products', which build one more graph on λ: hgbench.running.batch), and itd by
    torch.func.grad against the loop's tape (the same counts)."""
    lams = draws(logistic, 3)
    for estimator in (ConjugateGradient("cg"), ITDReverse("itd")):
        batched = estimate_batched(estimator, logistic, lams, PAIRS, dense=True)
        same_counts = estimate_batched(estimator, logistic, lams, PAIRS) if estimator.name == "cg" else None
        for i, (lam, row) in enumerate(zip(lams, batched, strict=True)):
            twins = same_counts[i] if same_counts else list(estimate(estimator, logistic, lam, PAIRS))
            for a, b, c in zip(estimate(estimator, logistic, lam, PAIRS), row, twins, strict=True):
                assert (a.t, a.k) == (b.t, b.k) and counts(b) == counts(c), (estimator.name, a.t)
                assert torch.linalg.vector_norm(a.grad - b.grad) <= tolerance(logistic, lam, a.t) * torch.linalg.vector_norm(a.grad)
                assert b.cost.saved_bytes is None  # not observable under torch.func


def test_auto_is_dense_up_to_the_threshold_and_leaves_run_ids_unchanged():
    assert dense_path("auto", DENSE_MAX_DIM) and not dense_path("auto", DENSE_MAX_DIM + 1)
    assert dense_path("dense", 10**6) and not dense_path("products", 1)
    with pytest.raises(ValueError, match="linearization='fast' is not one of auto, dense, products"):
        dense_path("fast", 1)
    config = {"problem": {"name": "ridge"}, "seed": 0, "reference": "auto"}
    assert run_id({**config, "linearization": "auto"}) == run_id(config)  # the runs written before the option keep their ids
    forced = {run_id({**config, "linearization": path}) for path in ("dense", "products")}
    assert len(forced) == 2 and run_id(config) not in forced


def test_resumed_rows_keep_the_time_kind_of_the_path_that_timed_them(tmp_path, monkeypatch):
    import pandas as pd
    from conftest import run_cli

    args = [
        "run",
        "problem=ridge",
        "problem.n_features=8",
        "problem.n_train=40",
        "plot=false",
        "estimator=fp",
        "grid.t=[0,5]",
        f"hydra.run.dir={tmp_path}",
    ]
    assert run_cli(monkeypatch, *args, "n_lambdas=1") == 0
    assert run_cli(monkeypatch, *args, "n_lambdas=2", "resume=true") == 0
    rows = pd.read_csv(tmp_path / "metrics.csv")
    assert {(lam_id, t): kind for lam_id, t, kind in zip(rows["lam_id"], rows["t"], rows["time_kind"])} == {
        (0, 0): "per_point",
        (0, 5): "per_point_dense",
        (1, 0): "per_point",
        (1, 5): "per_point_dense",
    }
