"""Test problems that misbehave on purpose, each a variant of toy.LinearMap (Φ(w, λ) = A w + Bλ,
w* in closed form), used through tests/conf/problem/*.yaml with ``hydra.searchpath``.

FaultyMap   NaN injected into Φ for chosen λ draws (config ``nan_above``); and, driven by the
            environment so that the run's configuration stays the same across a test's runs:
            HGBENCH_TEST_FAIL_ABOVE=x   the inner solve (of the reference) raises for λ₀ > x
            HGBENCH_TEST_PAUSE=N:PATH   at the reference of the (N+1)-th λ draw, create PATH and
                                        sleep (the SIGKILL test kills the run there, mid-way)
            HGBENCH_TEST_PAUSE_PHI=N:PATH   the same at the (N+1)-th evaluation of Φ (N = 0: the
                                        untimed warm-up estimate, before any draw)
            HGBENCH_TEST_EXIT=init|draw sys.exit(0) in the constructor, or at the second λ draw's
                                        reference (an own problem's code that ends the process)
DataFileMap the target c read from a text file, like a problem built from a data set file.
PausingMNIST the equilibrium model whose ``evaluate`` pauses like FaultyMap's reference
            (HGBENCH_TEST_PAUSE=N:PATH, at the (N+1)-th evaluation), to kill a training run mid-way.
"""

import os
import sys
import time
from pathlib import Path

import torch
from toy import LinearMap

from hgbench.problems.equilibrium import EquilibriumMNIST


def pause_at(count: int, variable: str = "HGBENCH_TEST_PAUSE") -> None:
    """With ``variable``=N:PATH, when ``count`` is N: create PATH and sleep (to be killed)."""
    pause = os.environ.get(variable)
    if pause:
        after, path = pause.split(":", 1)
        if count == int(after):
            Path(path).touch()
            time.sleep(300)


class FaultyMap(LinearMap):
    """LinearMap whose Φ is NaN (every entry) at λ draws with λ₀ > ``nan_above``, except at its
    fixed point (where ‖A w + Bλ − w‖ ≤ 1e-12·(1 + ‖w‖), i.e. at w* to round-off).

    The NaN term is a constant of (w, λ) (it depends on them only through comparisons), so
    ∂₁Φ = A, ∂₂Φ = B, and Φ(w*) = w*: the float64 reference ∇f(λ) stays finite, exact and
    certified; every estimate that applies Φ at least once (t ≥ 1) away from w* is NaN.
    """

    def __init__(self, name, seed, dim, q, lam_low, lam_high, nan_above=None):
        super().__init__(name, seed, dim, q, lam_low, lam_high)
        self.nan_above = nan_above
        self.solves = self.phis = 0
        if os.environ.get("HGBENCH_TEST_EXIT") == "init":
            sys.exit(0)

    def phi(self, w, lam, consts):
        pause_at(self.phis, "HGBENCH_TEST_PAUSE_PHI")
        self.phis += 1
        out = super().phi(w, lam, consts)
        if self.nan_above is None:
            return out
        away = torch.linalg.vector_norm(out - w) > 1e-12 * (1 + torch.linalg.vector_norm(w))
        return out + torch.where((lam[0] > self.nan_above) & away, torch.nan, 0.0)

    def solve_inner(self, lam):
        fail_above = os.environ.get("HGBENCH_TEST_FAIL_ABOVE")
        if fail_above is not None and lam[0] > float(fail_above):
            raise RuntimeError(f"injected failure at λ₀ = {lam[0].item():.3f}")
        pause_at(self.solves)
        if self.solves == 1 and os.environ.get("HGBENCH_TEST_EXIT") == "draw":
            sys.exit(0)
        self.solves += 1
        return super().solve_inner(lam)


class DataFileMap(LinearMap):
    """LinearMap whose target c (E = ½‖w − c‖² + ½ρ‖λ‖²) is read from ``path``: whitespace-
    separated numbers, exactly ``dim`` of them."""

    def __init__(self, name, seed, dim, q, lam_low, lam_high, path):
        super().__init__(name, seed, dim, q, lam_low, lam_high)
        values = [float(x) for x in Path(path).read_text().split()]
        if len(values) != dim:
            raise ValueError(f"{path} holds {len(values)} numbers; problem.dim={dim} needs {dim}")
        self.c = torch.tensor(values, dtype=torch.float64)


class PausingMNIST(EquilibriumMNIST):
    """EquilibriumMNIST whose ``evaluate`` pauses at the (N+1)-th call (HGBENCH_TEST_PAUSE=N:PATH)."""

    evaluations = 0

    def evaluate(self, lam, t):
        pause_at(self.evaluations)
        self.evaluations += 1
        return super().evaluate(lam, t)
