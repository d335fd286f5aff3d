"""Ye, Peyré, Cremers, Ablin (AISTATS 2024) on their data and protocol: the LIBSVM loader and its
shipped files, the problems' draws and inner solvers, the level brackets of grid=levels, and the
reparameterized estimators against the authors' formula computed independently (full Jacobians by
forward mode, no linearization)."""

import numpy as np
import pytest
import torch

from hgbench.core.bound import bind
from hgbench.core.reference import reference
from hgbench.data import libsvm, shipped
from hgbench.estimators.reparam import Reparameterized
from hgbench.problems.ye import YeLogistic, YeRidge
from hgbench.running.levels import Levels, brackets

jf = torch.func.jacfwd


def test_shipped_files_keep_the_complete_rows():
    """Rows with an omitted (zero) feature are dropped, as the authors' code does."""
    x, y, xt, yt = libsvm.load("mpg")
    assert x.shape == (297, 7) and y.shape == (297,) and xt is None
    x, y, xt, yt = libsvm.load("liver", binary=True)
    assert x.shape == (144, 5) and xt.shape == (200, 5)
    assert set(y.tolist()) == {-1.0, 1.0} and set(yt.tolist()) == {-1.0, 1.0}


def test_parse_drops_incomplete_rows_and_refuses_malformed_lines():
    x, y = libsvm.parse("1 1:0.5 2:-1\n0 2:3\n-1 1:2 2:4\n")
    assert x.tolist() == [[0.5, -1.0], [2.0, 4.0]] and y.tolist() == [1.0, -1.0]
    with pytest.raises(ValueError, match="line 2"):
        libsvm.parse("1 1:0.5\n1 a:b\n", "f")


def test_a_damaged_shipped_file_is_refused(monkeypatch):
    monkeypatch.setitem(shipped.SHA256, "libsvm_files/mpg_scale", "0" * 64)
    with pytest.raises(ValueError, match="damaged"):
        libsvm.load("mpg")


def test_draws_are_the_authors_numpy_draws():
    """seed 0, draw i: numpy seed i draws A_out, b_out, x_init = 2·N(0, I), y ~ U[3, 6] in this order."""
    problem = YeRidge("r", 0, "quadratic", 3.0, 6.0)
    gen = np.random.RandomState(4)
    a, b, x, y = gen.randn(7, 7), gen.randn(7), gen.randn(7) * 2, gen.rand(7) * 3 + 3
    drawn = problem.draw(4)
    assert np.allclose(drawn.outer_a.numpy(), a, rtol=0, atol=0) and np.array_equal(drawn.outer_b.numpy(), b)
    assert np.array_equal(drawn.x_init.numpy(), x)
    assert np.allclose(problem.sample_lambdas(5, None)[4].numpy(), y, rtol=1e-15)


def test_ridge_energy_and_solution():
    """G = 1/(2n)‖Ax − b‖² + 1/(2d)Σ exp(y)x²: its gradient vanishes at the closed form, and Φ's step is 1.8/λ_max."""
    problem = YeRidge("r", 0, "linear", 3.0, 6.0)
    lam = problem.sample_lambdas(1, None)[0]
    w = problem.solve_inner(lam)
    assert torch.func.grad(problem.inner_loss)(w, lam).norm() < 1e-12
    x = torch.randn(7, dtype=torch.float64)
    a, b = problem.x_train, problem.b_train
    energy = 0.5 * ((a @ x - b) ** 2).sum() / a.shape[0] + 0.5 * (torch.exp(lam) * x**2).sum() / 7
    assert problem.inner_loss(x, lam).item() == pytest.approx(energy.item(), rel=1e-14)
    hess = torch.func.hessian(problem.inner_loss)(x, lam)
    assert problem.consts(lam)["alpha"].item() == pytest.approx(1.8 / torch.linalg.eigvalsh(hess)[-1].item(), rel=1e-12)


def test_logistic_backtracking_never_raises_the_energy_and_keeps_the_halved_step():
    problem = YeLogistic("l", 0, "logistic", 3.0, 6.0)
    lam = problem.sample_lambdas(1, None)[0]
    bound = bind(problem, lam)
    energies, w, state, steps = [], bound.w0, None, []
    for _ in range(30):
        energies.append(problem.inner_loss(w, lam).item())
        w, state = bound.step(w, lam, state)
        steps.append(state[0])
    assert all(b <= a for a, b in zip(energies, energies[1:]))
    assert steps[0] < 1.0 and all(b <= a for a, b in zip(steps, steps[1:]))  # halved from 1.0, never raised
    assert [t for t, *_ in bound.iterates([3])] == [3]


def test_brackets_interpolate_to_the_level():
    """(1 − a)·d_t + a·d_{t−1} = e_j with d_{t−1} ≥ e_j > d_t, on the real trajectory."""
    problem = YeRidge("r", 0, "linear", 3.0, 6.0)
    lam = problem.sample_lambdas(1, None)[0]
    w_star = problem.solve_inner(lam)
    levels = Levels(1.5, -3.5, 40, 2000, None)
    found = brackets(problem, lam, w_star, levels)
    dist = [torch.linalg.vector_norm(w - w_star).item() for _, w, _ in bind(problem, lam).iterates(range(max(b.t for b in found) + 1))]
    assert len(found) == 40 and all(b.t is not None for b in found)
    for b in found:
        assert dist[b.t - 1] >= b.level > dist[b.t]
        assert (1 - b.weight) * dist[b.t] + b.weight * dist[b.t - 1] == pytest.approx(b.level, rel=1e-12)


def _authors(problem, lam, x, map_):
    """Their reparameterized hypergradient at x: z = φ⁻¹(x), dz*/dy = −F_yᵀF_z⁻¹ by full forward-mode
    Jacobians of G(φ(z, y), y), mapped back by ∂_zφ and ∂_yφ, contracted with ∇f at x."""
    grad, xc, yc = jf(problem.inner_loss), x.clone(), lam.clone()
    hess = jf(grad)
    if map_ == "exp":
        phi, z = (lambda z, y: torch.sign(xc) * torch.exp(z)), torch.log(torch.abs(x))
    elif map_ == "diag":
        phi, z = (lambda z, y: z / torch.diagonal(hess(xc, y))), torch.diagonal(hess(xc, lam)) * x
    else:
        phi, z = (lambda z, y: torch.linalg.inv(hess(xc, y)) @ grad(z, yc) + xc), problem.solve_inner(yc)
    energy = jf(lambda z, y: problem.inner_loss(phi(z, y), y))
    fz, fy = jf(energy)(z, lam), jf(energy, argnums=1)(z, lam)
    jac = -fy.T @ torch.linalg.inv(fz) @ jf(phi)(z, lam).T + jf(phi, argnums=1)(z, lam).T
    gx, gy = torch.func.grad(problem.outer, argnums=(0, 1))(x, lam)
    return jac @ gx + gy


@pytest.mark.parametrize("map_", ["exp", "diag", "opt"])
@pytest.mark.parametrize("outer", ["linear", "quadratic"])
def test_reparameterizations_are_the_authors_formula(map_, outer):
    """ExpPhi x = sign(x_c)·exp(z), PzPhi x = diag(H(x_c, y))⁻¹z, OptPhi x = H(x_c, y)⁻¹∇G(z, y_c) + x_c."""
    problem = YeRidge("r", 0, outer, 3.0, 6.0).draw(1)
    lam = problem.sample_lambdas(2, None)[1]
    ref = reference(problem, lam)
    u = torch.linspace(-1, 1, 7, dtype=torch.float64)
    bound, est = bind(problem, lam), Reparameterized("r", map_)
    for e in (1e-1, 1e-3):
        x = ref.w_star + e * u
        assert torch.allclose(est.at(bound, x), _authors(problem, lam, x, map_), rtol=1e-9, atol=1e-11)
    assert (est.at(bound, ref.w_star) - ref.grad).norm() < 1e-10 * ref.grad.norm()


def test_optphi_on_ridge_gets_the_jacobian_exactly():
    """OptPhi's dx*/dy is exact at any x_c on ridge, so its error is ∇ₓf(x_c) − ∇ₓf(x*) pushed
    through it: round-off for the linear outer (∇ₓf constant), linear in ‖x − x*‖ for the
    quadratic one (fitted slope 1, not 2)."""
    errors = {}
    for outer in ("linear", "quadratic"):
        problem = YeRidge("r", 0, outer, 3.0, 6.0)
        lam = problem.sample_lambdas(1, None)[0]
        ref = reference(problem, lam)
        bound, est = bind(problem, lam), Reparameterized("o", "opt")
        u = torch.linspace(-1, 1, 7, dtype=torch.float64)
        errors[outer] = [(est.at(bound, ref.w_star + e * u) - ref.grad).norm().item() for e in (1e-1, 1e-2, 1e-3)]
    assert max(errors["linear"]) < 1e-12
    slope = np.polyfit([-1, -2, -3], np.log10(errors["quadratic"]), 1)[0]
    assert slope == pytest.approx(1.0, abs=0.02)


def test_levels_run_rows_per_level_and_unreached_levels_are_error_rows(tmp_path, monkeypatch):
    """grid=levels end to end: one row per (draw, level), identified by ``level``, inner_err =
    level/‖w*‖, the figure drawn (the error-vs-inner-error one); a cap too small leaves the lower
    levels as ``error`` rows saying they were not reached."""
    import pandas as pd

    from conftest import run_cli

    out = tmp_path / "run"
    args = ["run", "problem=ye_ridge", "estimator=exact", "grid=levels", "grid.n=8", "n_lambdas=2"]
    assert run_cli(monkeypatch, *args, f"hydra.run.dir={out}") == 0
    df = pd.read_csv(out / "metrics.csv")
    assert len(df) == 16 and (df["status"] == "ok").all() and (df["grid"] == "levels").all()
    assert np.allclose(sorted(set(df["level"])), np.logspace(-3.5, 1.5, 8))
    problem = YeRidge("r", 0, "linear", 3.0, 6.0)
    w_star = problem.solve_inner(problem.sample_lambdas(1, None)[0])
    first = df[df["lam_id"] == 0]
    assert np.allclose(first["inner_err"], first["level"] / w_star.norm().item(), rtol=1e-12)
    assert (out / "error_vs_inner_error.png").exists()
    capped = tmp_path / "capped"
    assert run_cli(monkeypatch, *args, "grid.t=20", "plot=false", f"hydra.run.dir={capped}") == 0
    df = pd.read_csv(capped / "metrics.csv")
    missed = df[df["status"] == "error"]
    assert len(missed) > 0 and missed["reason"].str.contains("not reached within t = 20").all()
    for _, draw in df.groupby("lam_id"):  # per draw, the reached levels lie above the missed ones
        assert draw.loc[draw["status"] == "ok", "level"].min() > draw.loc[draw["status"] == "error", "level"].max()


@pytest.mark.parametrize(
    "override, message",
    [
        (["grid=levels", "grid.high=-4"], "grid.high=-4.0 must be > grid.low=-3.5"),
        (["grid=inner", "grid.kind=levels", "grid.t=5", "grid.k=3"], "grid.kind=levels needs grid.high, grid.low and grid.n"),
        (["problem=ye_ridge", "problem.outer=logistic"], "problem.outer='logistic' is not one of linear, quadratic, inner"),
        (["problem=ye_ridge", "problem.data=/no/such/file"], "LIBSVM file /no/such/file does not exist"),
    ],
)
def test_bad_levels_and_ye_settings_are_one_line(tmp_path, monkeypatch, capsys, override, message):
    from conftest import run_cli

    assert run_cli(monkeypatch, "run", *override, f"hydra.run.dir={tmp_path}") == 2
    err = capsys.readouterr().err
    assert err.startswith("hgbench: error: ") and message in err and "Traceback" not in err
