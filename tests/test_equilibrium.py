"""The equilibrium model on MNIST: data loaders, the block-diagonal reference, the estimators for a
non-symmetric ∂₁Φ, and its training (mode=outer)."""

import gzip
import signal

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TESTS, run_cli, signal_when_paused

from hgbench.core.bound import bind, check_applies, estimate
from hgbench.core.krylov import gmres, iterates
from hgbench.estimators.cg import ConjugateGradient
from hgbench.estimators.cg_normal import NormalCG
from hgbench.estimators.fp import FixedPoint
from hgbench.estimators.gmres import GMRES
from hgbench.estimators.itd import ITDForward, ITDReverse
from hgbench.data.mnist import IDX_FILES, load_mnist, read_idx
from hgbench.problems.equilibrium import EquilibriumMNIST
from hgbench.core.reference import reference


def rel(a, b):
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item()


@pytest.fixture(scope="module")
def deq():
    """6 images, d = 4, A rescaled to ‖A‖₂ = 0.9 and larger weights: a far-from-linear map."""
    return EquilibriumMNIST("equilibrium_mnist", seed=0, state_dim=4, n_train=6, n_val=5, n_test=5, init_scale=0.3, init_a_norm=0.9)


@pytest.fixture(scope="module")
def lam(deq):
    return deq.sample_lambdas(1, torch.Generator().manual_seed(0))[0]


@pytest.fixture(scope="module")
def ref(deq, lam):
    return reference(deq, lam)


# --- data ---------------------------------------------------------------------------------------
def write_idx(path, array, gz=False):
    codes = {np.uint8: 0x08, np.int32: 0x0C}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def test_idx_loader_reads_files_the_test_writes(tmp_path):
    rng = np.random.default_rng(0)
    train_x = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    train_y = rng.integers(0, 10, size=12).astype(np.uint8)
    test_x = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    test_y = rng.integers(0, 10, size=5).astype(np.uint8)
    write_idx(tmp_path / IDX_FILES["train_images"], train_x)
    write_idx(tmp_path / (IDX_FILES["train_labels"] + ".gz"), train_y, gz=True)
    write_idx(tmp_path / IDX_FILES["test_images"], test_x)
    write_idx(tmp_path / IDX_FILES["test_labels"], test_y)
    wide = np.arange(6, dtype=np.int32).reshape(2, 3) - 2
    write_idx(tmp_path / "wide", wide)
    assert np.array_equal(read_idx(tmp_path / "wide"), wide)

    splits = load_mnist(7, 4, 3, seed=1, root=tmp_path)
    flat = train_x.reshape(12, -1) / 255.0
    rows = [int(np.flatnonzero((flat == x.numpy()).all(1))[0]) for x in torch.cat([splits["train"].images, splits["val"].images])]
    assert sorted(rows) == sorted(set(rows)) and len(rows) == 11  # disjoint, from the training file
    assert torch.equal(torch.cat([splits["train"].labels, splits["val"].labels]), torch.from_numpy(train_y[rows].astype(np.int64)))
    assert torch.allclose(splits["test"].images, torch.from_numpy(test_x[:3].reshape(3, -1) / 255.0))
    assert splits["test"].labels.tolist() == test_y[:3].tolist()


def test_missing_data_root_names_the_expected_files(tmp_path, monkeypatch, capsys):
    (tmp_path / IDX_FILES["train_images"]).write_bytes(b"")
    with pytest.raises(
        ValueError, match=r"lacks the MNIST file\(s\) train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"
    ):
        load_mnist(10, 10, 10, seed=0, root=tmp_path)
    code = run_cli(
        monkeypatch,
        "run",
        "problem=equilibrium_mnist",
        "estimator=fp",
        f"data.root={tmp_path / 'nowhere'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    err = capsys.readouterr().err
    assert code == 2 and "is not a folder" in err and "train-images-idx3-ubyte" in err and "Traceback" not in err


def test_shipped_subset_split_is_seeded_disjoint_and_mixed():
    a, b = load_mnist(300, 100, 100, seed=3), load_mnist(300, 100, 100, seed=3)
    assert torch.equal(a["val"].images, b["val"].images)
    assert not torch.equal(a["train"].images, load_mnist(300, 100, 100, seed=4)["train"].images)
    assert a["train"].labels.unique().numel() == 10  # the file is sorted by label: shuffled first
    images = torch.cat([a[s].images for s in ("train", "val", "test")])
    assert images.unique(dim=0).shape[0] == 500 and images.min() == 0 and images.max() == 1
    with pytest.raises(ValueError, match="exceeds the 5000 images"):
        load_mnist(4000, 1000, 1000, seed=0)


def test_a_damaged_shipped_mnist_file_is_refused(monkeypatch):
    from hgbench.data import mnist, shipped

    monkeypatch.setitem(shipped.SHA256, "mnist_files/mnist_5k.csv.gz", "0" * 64)
    mnist._load_subset.cache_clear()
    try:
        with pytest.raises(ValueError, match="mnist_5k.csv.gz has sha256 846f6cad.*it is damaged"):
            load_mnist(300, 100, 100, seed=0)
    finally:
        mnist._load_subset.cache_clear()


# --- the reference --------------------------------------------------------------------------
def test_the_certificate_needs_no_contraction():
    """‖A‖₂ = 1.5 (the unprojected model of deq_small_free): q ≥ 1, so 1/(1 − q) bounds nothing,
    but J is block diagonal and ``inverse_norm`` gives ‖(I − J)⁻¹‖₂ block by block: it equals
    1/σ_min of the dense I − J formed by autodiff, and the reference is certified with it."""
    from hgbench.core.reference import certify

    model = EquilibriumMNIST(
        "equilibrium_mnist", seed=0, state_dim=4, n_train=6, n_val=5, n_test=5, init_scale=0.3, init_a_norm=1.5, radius=None
    )
    lam = model.sample_lambdas(1, torch.Generator().manual_seed(0))[0]
    ref = reference(model, lam)
    assert ref.q > 1
    jac = torch.func.jacrev(lambda w: model.bound_phi(lam)(w, lam))(ref.w_star)
    dense = 1 / torch.linalg.svdvals(torch.eye(len(ref.w_star), dtype=torch.float64) - jac)[-1].item()
    assert model.inverse_norm(lam, ref.w_star) == pytest.approx(dense, rel=1e-10)
    assert ref.norms["inverse"] == pytest.approx(dense, rel=1e-10) and certify(ref)["certified"]


def test_reference_matches_finite_differences(deq, lam, ref):
    """Central differences of f(λ) = E(w*(λ), λ) along random directions (λ has 3,200 entries)."""
    f = lambda l: deq.outer(deq.solve_inner(l), l).item()
    gen = torch.Generator().manual_seed(1)
    h = 1e-5
    for _ in range(3):
        u = torch.randn(deq.lam_dim, generator=gen, dtype=torch.float64)
        fd = (f(lam + h * u) - f(lam - h * u)) / (2 * h)
        assert (ref.grad @ u).item() == pytest.approx(fd, rel=1e-7)
    assert ref.fixed_point_residual < 1e-12 and ref.linear_residual < 1e-12


def test_block_solve_matches_dense_jacobian(deq, lam, ref):
    """The per-image solve and q against the dense ∂₁Φ formed by autodiff."""
    bound = bind(deq, lam)
    jac = torch.func.jacrev(lambda u: bound.phi(u, lam))(ref.w_star)
    b = torch.randn(deq.w_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    v, q, _ = deq.adjoint_system(lam, ref.w_star, b)
    assert rel(v, torch.linalg.solve(torch.eye(deq.w_dim, dtype=torch.float64) - jac.T, b)) < 1e-12
    assert q == pytest.approx(torch.linalg.matrix_norm(jac, ord=2).item(), rel=1e-10)
    assert 0.3 < q < deq.a_norm(lam) <= 0.9 + 1e-12
    assert not torch.allclose(jac, jac.T)  # the reason cg does not apply


def test_newton_reaches_the_fixed_point_when_iteration_is_cut_short(deq, lam, ref):
    assert rel(deq.solve_inner(lam, max_fp=3), ref.w_star) < 1e-12


def test_projection_clips_the_spectral_norm(deq):
    big = EquilibriumMNIST("e", seed=0, state_dim=4, n_train=6, n_val=5, n_test=5, radius=0.7, init_scale=0.3, init_a_norm=1.5)
    lam = big.sample_lambdas(2, torch.Generator().manual_seed(0))
    for one in lam:
        assert big.a_norm(one) == pytest.approx(0.7, rel=1e-12)
        singular = torch.linalg.svdvals(big.parts(one)["A"])
        assert (singular <= 0.7 + 1e-12).all() and singular[-1] < 0.7  # only the large ones clipped
    free = EquilibriumMNIST("e", seed=0, state_dim=4, n_train=6, n_val=5, n_test=5, radius=None, init_scale=0.3, init_a_norm=1.5)
    assert free.a_norm(free.sample_lambdas(1, torch.Generator().manual_seed(0))[0]) == pytest.approx(1.5, rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_projection_keeps_its_promise_in_the_run_dtype(dtype):
    """‖A‖₂ ≤ ρ holds for the stored A in the run's dtype, checked against the singular values in
    60-digit arithmetic (mpmath): the SVD's product U·S·Vᵀ rounded to float32 alone may exceed ρ
    by ~1e-6 (results/deq_small's q_bound reached 0.5000006 with ρ = 0.5 before), and ρ is not
    given up by more than the projection's margins, (√d + 2)·eps and d·eps64, and the round-off of
    one rescaling."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60
    d, rho = 12, 0.5
    deq = EquilibriumMNIST("e", seed=0, state_dim=d, n_train=6, n_val=5, n_test=5, radius=rho, init_scale=0.3)
    eps = torch.finfo(dtype).eps
    gen = torch.Generator().manual_seed(1)
    for _ in range(12):
        lam = torch.randn(deq.lam_dim, generator=gen, dtype=torch.float64).to(dtype)
        a = deq.parts(deq.project(lam))["A"]
        top = max(mpmath.svd_r(mpmath.matrix(a.double().tolist()), compute_uv=False))
        assert top <= rho and top >= rho * (1 - 3 * (d**0.5 + 2) * eps - d * torch.finfo(torch.float64).eps)
        assert deq.a_norm(deq.project(lam)) <= rho


# --- the estimators ---------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", [FixedPoint("fp"), NormalCG("cg_normal"), GMRES("gmres"), ITDReverse("itd")])
def test_estimators_converge_to_reference(deq, lam, ref, estimator):
    (last,) = estimate(estimator, deq, lam, [(300, 300)])
    assert rel(last.grad, ref.grad) < 1e-10


def test_krylov_solvers_are_exact_after_dim_w_steps(deq, lam, ref):
    """At the fixed point (t large), GMRES and CG on the normal equations terminate at k = dim w
    (24), to round-off; FP, whose rate is q^k with q ≈ 0.7, is orders of magnitude off."""
    pairs = [(300, deq.w_dim)]
    errs = []
    for estimator in (GMRES("gmres"), NormalCG("cg_normal")):
        (point,) = estimate(estimator, deq, lam, pairs)
        errs.append(rel(point.grad, ref.grad))
    (fp,) = estimate(FixedPoint("fp"), deq, lam, pairs)
    assert max(errs) < 1e-12 and rel(fp.grad, ref.grad) > 1000 * max(errs)


def test_itd_reverse_equals_forward(deq, lam):
    pairs = [(t, None) for t in (0, 1, 4, 15)]
    for a, b in zip(estimate(ITDReverse("itd"), deq, lam, pairs), estimate(ITDForward("itd_forward"), deq, lam, pairs)):
        assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-14), a.t


def test_gmres_iterates_minimize_the_residual_over_the_krylov_space():
    gen = torch.Generator().manual_seed(0)
    m = torch.eye(7, dtype=torch.float64) + 0.6 * torch.randn(7, 7, generator=gen, dtype=torch.float64)
    b = torch.randn(7, generator=gen, dtype=torch.float64)
    steps = iterates(gmres(lambda v: m @ v, b))
    for k in range(1, 10):
        v = next(steps)
        residual = torch.linalg.vector_norm(m @ v - b).item()
        if k >= 7:  # the Krylov space is the whole space: exact (the monomial basis is too ill-conditioned to compare)
            assert residual < 1e-10
            continue
        krylov = torch.stack([torch.linalg.matrix_power(m, i) @ b for i in range(k)], dim=1)
        best = krylov @ torch.linalg.lstsq(m @ krylov, b[:, None]).solution[:, 0]
        assert residual == pytest.approx(torch.linalg.vector_norm(m @ best - b).item(), rel=1e-7)


def test_cg_normal_costs_one_vjp_and_one_jvp_per_step(deq, lam):
    (point,) = estimate(NormalCG("cg_normal"), deq, lam, [(3, 5)])
    # VJPs: 5 steps + the final ∂₂Φᵀv; JVPs: the right-hand side + 5 steps (each also evaluates Φ)
    assert (point.cost.n_vjp, point.cost.n_jvp, point.cost.n_phi) == (6, 6, 3 + 1 + 6)
    (gm,) = estimate(GMRES("gmres"), deq, lam, [(3, 5)])
    assert (gm.cost.n_vjp, gm.cost.n_jvp, gm.cost.n_phi) == (6, 0, 4)


def test_cg_refuses_the_equilibrium_model(deq):
    with pytest.raises(ValueError, match=r"'cg' needs a symmetric .*'equilibrium_mnist'"):
        check_applies(ConjugateGradient("cg"), deq)


# --- the command line: error mode and training (mode=outer on the equilibrium model) ------------
SMALL = ["problem=equilibrium_mnist", "problem.state_dim=8", "problem.n_train=40", "problem.n_val=10", "problem.n_test=10"]


def test_error_mode_and_training_checkpoints(tmp_path, monkeypatch):
    """A short training run (mode=outer, preset deq_test) lowers the loss, logs accuracies, ‖A‖₂
    and the hypergradient error against the reference, and its checkpoints feed error mode (the
    same `hgbench run`)."""
    train = tmp_path / "train"
    code = run_cli(monkeypatch, "run", "+experiment=deq_test", "estimator=cg_normal", "outer.checkpoint_every=20", f"hydra.run.dir={train}")
    assert code == 0
    df = pd.read_csv(train / "outer.csv")
    assert list(df["step"]) == list(range(41)) and (df["status"] == "ok").all()
    evaluated = df[df["val_acc"].notna()]
    assert list(evaluated["step"]) == [0, 20, 40] and evaluated["test_acc"].between(0, 1).all()
    assert evaluated["train_loss"].iloc[-1] < 0.5 * evaluated["train_loss"].iloc[0]
    # q_bound is ‖A‖₂ in float64 of the float32 A, the very number the projection checks against ρ
    # (EquilibriumMNIST.project): ρ holds up to a rerun's float64 ulps (LAPACK's SVD, 4·eps64)
    eps64 = torch.finfo(torch.float64).eps
    assert evaluated["val_acc"].iloc[-1] > 0.5 and (df["q_bound"] <= 0.99 * (1 + 4 * eps64)).all()
    # the logged training loss is E(w_T, λ), the outer value of the step's estimate (T = test_t = t)
    assert evaluated["train_loss"].iloc[:-1].to_numpy() == pytest.approx(evaluated["outer_value"].iloc[:-1].to_numpy(), rel=1e-5)
    errors = df[df["err_rel"].notna()]
    assert (
        list(errors["step"]) == [0, 20]
        and (errors["err_rel"] < 1e-2).all()
        and (errors["q"] <= errors["q_bound"] * (1 + 10 * 8 * eps64)).all()
    )
    assert (train / "training.png").exists() and (train / "outer.png").exists()
    assert torch.load(train / "checkpoints.pt", weights_only=True)["steps"] == [0, 20, 40]

    run = tmp_path / "error"
    overrides = ["problem=equilibrium_mnist", "problem.state_dim=20", "problem.n_train=300", "problem.n_val=100", "problem.n_test=100"]
    code = run_cli(
        monkeypatch,
        "run",
        *overrides,
        f"problem.checkpoint={train / 'checkpoints.pt'}",
        "estimator=gmres",
        "n_lambdas=3",
        "grid=k_sweep",
        "grid.t=60",
        "grid.k=[0,5,30]",
        f"hydra.run.dir={run}",
        "plot=false",
    )
    assert code == 0
    err = pd.read_csv(run / "metrics.csv")
    assert len(err) == 9 and (err["status"] == "ok").all()
    last = err[err["k"] == 30]
    assert (last["err_rel"] < 1e-5).all() and last["q"].nunique() == 3  # three different checkpoints
    too_many = run_cli(
        monkeypatch, "run", *overrides, f"problem.checkpoint={train / 'checkpoints.pt'}", "n_lambdas=4", f"hydra.run.dir={tmp_path / 'x'}"
    )
    assert too_many == 2


def test_training_divergence_is_a_row(tmp_path, monkeypatch):
    out = tmp_path / "train"
    # a step that overflows float32 (lr = 1e39 is inf there) ends the run at step 0 with a flagged row
    code = run_cli(monkeypatch, "run", "+experiment=deq_test", "estimator=fp", "outer.lr=1e39", "outer.steps=10", f"hydra.run.dir={out}")
    assert code == 0
    df = pd.read_csv(out / "outer.csv")
    assert list(df["status"]) == ["diverged"] and df["reason"].iloc[0] and df["test_acc"].notna().all()
    assert (out / "training.png").exists()


def test_training_sweep_plots_and_rejects_bad_options(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "sweep"
    code = run_cli(
        monkeypatch, "run", "-m", "+experiment=deq_test", "estimator=itd,gmres", "seed=0,1", "outer.steps=3", f"hydra.sweep.dir={sweep}"
    )
    assert code == 0
    combined = pd.read_csv(sweep / "outer.csv")
    assert sorted(combined["estimator"].unique()) == ["gmres", "itd"] and sorted(combined["seed"].unique()) == [0, 1]
    assert combined["run_id"].nunique() == 4 and (sweep / "training.png").exists()
    (sweep / "training.png").unlink()
    assert run_cli(monkeypatch, "plot", sweep, "--kind", "train") == 0 and (sweep / "training.png").exists()
    capsys.readouterr()
    assert run_cli(monkeypatch, "run", "+experiment=deq_test", "outer.steps=0", f"hydra.run.dir={tmp_path / 'bad'}") == 2
    assert "outer.steps=0 must be an integer >= 1" in capsys.readouterr().err
    assert run_cli(monkeypatch, "run", "mode=train", "problem=ridge", f"hydra.run.dir={tmp_path / 'bad2'}") == 2
    assert "mode='train' is not one of error, outer" in capsys.readouterr().err


def test_the_papers_configuration_composes_and_refuses_without_the_idx_files(tmp_path, monkeypatch, capsys):
    """deq_train (5,000 / 5,000 / 10,000 images of the full MNIST) stops before any work without
    data.root, and names the missing file with a data.root that lacks the IDX files."""
    assert run_cli(monkeypatch, "run", "+experiment=deq_train", f"hydra.run.dir={tmp_path / 'a'}") == 2
    assert "exceeds the 5000 images of the shipped MNIST subset" in capsys.readouterr().err
    assert run_cli(monkeypatch, "run", "+experiment=deq_train", f"data.root={tmp_path}", f"hydra.run.dir={tmp_path / 'b'}") == 2
    assert "train-images-idx3-ubyte" in capsys.readouterr().err


TRAIN = [
    "mode=outer",
    "problem=pausing_mnist",
    f"hydra.searchpath=[file://{TESTS / 'conf'}]",
    "estimator=fp",
    "dtype=float32",
    "outer.t=5",
    "outer.k=5",
    "outer.steps=12",
    "outer.lr=0.5",
    "outer.momentum=0.9",
    "outer.test_t=5",
    "outer.eval_every=3",
    "outer.checkpoint_every=4",
    "resume=true",
    "plot=false",
]


def test_killed_training_resumes_to_the_uninterrupted_rows(tmp_path, monkeypatch):
    """A training run killed (SIGKILL) at the evaluation of step 9 leaves complete files; resume=true
    continues from the checkpoint of step 8 (λ, momentum, rows, saved λ) and ends with exactly the
    rows and checkpoints of an uninterrupted run (measured times aside)."""
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert run_cli(monkeypatch, "run", *TRAIN, f"hydra.run.dir={full}") == 0
    assert signal_when_paused(tmp_path, 3, *TRAIN, f"hydra.run.dir={killed}")[0] == -signal.SIGKILL
    assert torch.load(killed / "outer_state.pt", weights_only=True)["step"] == 8
    assert list(pd.read_csv(killed / "outer.csv")["step"]) == list(range(8)) and not list(killed.glob(".*.tmp"))
    assert run_cli(monkeypatch, "run", *TRAIN, f"hydra.run.dir={killed}") == 0
    done, reference = pd.read_csv(killed / "outer.csv"), pd.read_csv(full / "outer.csv")
    numbers = [c for c in reference.columns if c not in ("time_s", "ref_time_s")]
    pd.testing.assert_frame_equal(done[numbers], reference[numbers])
    assert list(done["step"]) == list(range(13)) and done["err_rel"].notna().sum() == 4 and done["val_acc"].notna().sum() == 5
    assert done["q_bound"].notna().all()
    saved, expected = (torch.load(d / "checkpoints.pt", weights_only=True) for d in (killed, full))
    assert saved["steps"] == expected["steps"] == [0, 4, 8, 12] and torch.equal(saved["lams"], expected["lams"])
    assert run_cli(monkeypatch, "run", *TRAIN, f"hydra.run.dir={killed}") == 0  # finished: kept, not recomputed
    assert pd.read_csv(killed / "outer.csv")["time_s"].tolist() == done["time_s"].tolist()


def test_training_refuses_batch_lambdas_and_another_configuration(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert run_cli(monkeypatch, "run", *TRAIN, "batch_lambdas=true", f"hydra.run.dir={out}") == 2
    assert "batch_lambdas=true applies to mode=error" in capsys.readouterr().err
    assert run_cli(monkeypatch, "run", *TRAIN, "outer.steps=2", f"hydra.run.dir={out}") == 0
    capsys.readouterr()
    assert run_cli(monkeypatch, "run", *TRAIN, "outer.steps=3", f"hydra.run.dir={out}") == 2
    assert "holds results of another configuration (differing in outer.steps)" in capsys.readouterr().err
