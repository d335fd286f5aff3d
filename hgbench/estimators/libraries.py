"""What the adapters of hypergradient libraries share (torchopt, higher, torchdeq, jaxopt: each
an optional extra, pip install 'hgbench[NAME]'): loading the library with a one-line refusal that
says how to install it, and reading the step size α off a Φ that is a gradient step on ℓ (the
unrolled adapters drive the library's own optimizer on ℓ with that step)."""

from __future__ import annotations

import importlib

import torch


def load(module: str, extra: str):
    """The imported ``module``, or one ValueError line saying how to install the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ValueError(f"this estimator needs {module}, which is not installed ({err}): pip install 'hgbench[{extra}]'") from err


def gradient_step_size(bound, who: str) -> float:
    """α such that Φ(w₀, λ) = w₀ − α∇₁ℓ(w₀, λ): the least-squares
    α = ⟨w₀ − Φ(w₀), ∇₁ℓ(w₀)⟩ / ‖∇₁ℓ(w₀)‖² (one Φ evaluation), refused (ValueError naming
    ``who``) when the residual ‖w₀ − Φ(w₀) − α∇₁ℓ(w₀)‖ exceeds 1e-8 relative: Φ is then not a
    gradient step with a constant α and the library's optimizer on ℓ would compute the ITD of
    another map."""
    with torch.enable_grad():
        w0 = bound.w0.detach()
        step = w0 - bound.phi(w0, bound.lam)
        grad0 = torch.func.grad(bound.inner_loss)(w0, bound.lam)
        alpha = (step @ grad0 / (grad0 @ grad0)).item() if (grad0 @ grad0) > 0 else 0.0
        if torch.linalg.vector_norm(step - alpha * grad0) > 1e-8 * torch.linalg.vector_norm(step):
            raise ValueError(f"Φ is not a gradient step w − α∇₁ℓ with a constant α at w₀; {who} does not apply")
    return alpha
