"""hgbench.estimators.hypergradient on a user's own tensors: the documented example runs, and its
estimates agree with ridge regression's closed-form hypergradient."""

import re
from pathlib import Path

import pytest
import torch

from hgbench.estimators import hypergradient

ROOT = Path(__file__).resolve().parent.parent


def _closed_form(X, y, Xv, yv, lam):
    """∇f(λ) for w*(λ) = (XᵀX + e^λ I)⁻¹Xᵀy, E = ½‖Xv w − yv‖²: ∇E(w*)ᵀ dw*/dλ, dw*/dλ = −(XᵀX + e^λ I)⁻¹ e^λ w*."""
    system = X.T @ X + lam.exp() * torch.eye(X.shape[1], dtype=X.dtype)
    w = torch.linalg.solve(system, X.T @ y)
    return (Xv.T @ (Xv @ w - yv)) @ -torch.linalg.solve(system, lam.exp() * w)


def test_the_documented_example_runs_and_its_estimates_are_the_hypergradient(capsys):
    text = (ROOT / "docs" / "estimators.md").read_text()
    code = re.search(r"## In your own loop.*?```python\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 14
    scope = {}
    exec(code, scope)  # noqa: S102 — the documentation's own example
    assert "log λ = " in capsys.readouterr().out
    X, y, Xv, yv, lam = (scope[n] for n in ("X", "y", "Xv", "yv", "lam"))
    start = torch.zeros(1, dtype=torch.float64)
    f = lambda l: 0.5 * (Xv @ torch.linalg.solve(X.T @ X + l.exp() * torch.eye(5, dtype=l.dtype), X.T @ y) - yv).square().sum()
    assert f(lam) < f(start)  # the loop tuned λ
    truth = _closed_form(X, y, Xv, yv, lam)
    for method in ("itd", "fp", "cg"):
        grad, cost = hypergradient(method, scope["outer"], scope["w0"], lam, inner_loss=scope["inner"], step_size=0.01, t=400, k=200)
        assert torch.allclose(grad, truth.reshape(1), rtol=1e-8, atol=1e-12), method  # q ≈ 0.8: 0.8^200 is round-off
        assert cost.n_phi >= 400 and cost.n_vjp > 0


def test_bad_arguments_are_refused_in_one_line():
    w, lam = torch.zeros(2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    outer = lambda w, l: w.square().sum()
    phi = lambda w, l: 0.5 * w + l
    with pytest.raises(ValueError, match="method 'nope' is not one of itd"):
        hypergradient("nope", outer, w, lam, phi=phi)
    with pytest.raises(ValueError, match="give either phi"):
        hypergradient("fp", outer, w, lam)
    with pytest.raises(ValueError, match="needs a symmetric"):
        hypergradient("cg", outer, w, lam, phi=phi)
    grad, _ = hypergradient("cg", outer, w, lam, phi=phi, symmetric=True, t=60, k=5)  # w* = 2λ: ∇f = 8λ = 0
    assert torch.allclose(grad, torch.zeros(1, dtype=torch.float64), atol=1e-12)
