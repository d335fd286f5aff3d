"""The cost guard: before heavy work, estimate a run's peak memory and time; refuse a run whose
memory exceeds what the machine has, and say the time of a long one.

The estimate is rough by design (a factor of a few), built from the problem's sizes (d = dim w,
p = dim λ), the grid (T = the largest t, the (t, k) pairs), n = n_lambdas, the estimator's family,
and two numbers measured on one λ draw: the bytes one taped Φ step saves for backward (S) and the
time of one Φ step (τ):

    λ draws          n · p · 8                       (float64, all drawn up front)
    reference        problem.reference_bytes()       (dense: 4·d²·8; block solves where overridden;
                     matrix-free, hgbench.core.reference: its Krylov basis, (m + 20)·d·8)
    estimator        estimator.planned_cost(...)     (each estimator states its own, e.g.
                     itd: T · S, its tape; gmres: (max k + 4) · d · B + S; AID: 4 · d · B + S;
                     exact, precond, reparam: 4 · d² · B, dense d × d matrices)

with B the bytes of the run's dtype, multiplied by n for batch_lambdas=true (all draws at once);
the peak is taken as the sum of the draws, the reference and the estimator's part. Time per
draw, in Φ-step units (a VJP or JVP counted as 2): the estimator's own passes, again as it
states them (e.g. ITD: T steps and Σ_t 2t for the backward sweeps; AID: T steps and
Σ_t 2·(max k at t)), plus 2·d for a dense reference (MATRIX_FREE_UNITS for a matrix-free one: a few hundred products,
as measured on hyper_cleaning). Outer runs count outer.steps estimates at (outer.t, outer.k).

Each grid point (each level of grid=levels) also costs POINT_S of bookkeeping and ROW_BYTES of
memory for its row (its row, error norms, the journal), and a
dense reference of dim w = d also factors d × d matrices (an SVD of I − Jᵀ, one of J for q, an
LU): DENSE_SVDS SVD-equivalents, timed from one SVD of a 256 × 256 matrix scaled by (d/256)³,
measured only where d > 500 (smaller ones cost less than the rest).

Before the problem is built, ``precheck`` reads its sizes from the configuration alone
(``Problem.planned``, where the problem declares them): the data its constructor allocates,
the λ draws and a dense reference, and the float operations of its construction at
FLOPS per second; a problem whose construction alone exceeds the memory or MAX_S is refused
then, before anything is allocated.

A run whose peak exceeds the memory available (Linux MemAvailable; on CUDA the device's free
memory for the estimator's part) is refused in one line with the estimate; so is one estimated
to take more than MAX_S (a week: it cannot finish in any session; e.g. grid.t=1e12), and one
estimated to take more than LONG_S prints a one-line warning with the estimate and goes on.
``guard=false`` skips all of it. When the one-step measurement itself fails, the guard says
nothing: the run's own first estimate reports the failure.
"""

from __future__ import annotations

import functools
import os
import sys
import time

import torch
from omegaconf import DictConfig

from hgbench.core.cost import Tally, bytes_text, taped
from hgbench.core.reference import choose, matrix_free_bytes
from hgbench.problems.base import Problem
from hgbench.running import modes
from hgbench.running.errors import UserError

LONG_S = 120.0  # a run estimated to take longer gets a warning
MAX_S = 7 * 86400.0  # a run estimated to take longer is refused (guard=false runs it anyway)
ROW_BYTES = 1000  # a row held in memory (a dict of ~30 values, then a frame's), all of a run's rows at its end
POINT_S = 1.5e-4  # bookkeeping per grid point and draw: ridge, 100,000 draws × 17 points took 5 min (issue 24)
DENSE_SVDS = 3  # a dense reference: svdvals(I − Jᵀ), ‖J‖₂ (another SVD), the LU solve
FLOPS = 1e9  # float operations per second of a problem's construction (one core, conservative)
MATRIX_FREE_UNITS = 1000  # a matrix-free reference: ~250 VJPs/JVPs (hyper_cleaning: 182 + 41 + 100), 2 units each, doubled


def _duration(s: float) -> str:
    if s < 1:
        return f"{s * 1e3:.2g} ms"
    if s < 120:
        return f"{s:.3g} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.3g} h" if s < 86400 * 365 else f"{s / 86400 / 365:.3g} years"


def available_bytes(device: torch.device | None = None) -> int:
    """Free memory: the CUDA device's, or the machine's MemAvailable (its physical memory where
    /proc/meminfo is missing)."""
    if device is not None and device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def measure_step(problem: Problem) -> tuple[int, float] | None:
    """(S, τ): bytes one taped Φ step saves for backward, and the time of one Φ step (the median
    of five steps of the inner iteration, after one untimed), at the first λ draw of seed 0 from
    w₀; None when a step fails."""
    try:
        lam = problem.sample_lambdas(1, torch.Generator().manual_seed(0))[0]
        phi, w = problem.bound_phi(lam), problem.w0(lam)
        tally = Tally()
        with taped(tally):
            w = phi(w.requires_grad_(True), lam.detach().requires_grad_(True)).detach()
        times = []
        for _ in range(5):
            start = time.perf_counter()
            w = phi(w, lam)
            times.append(time.perf_counter() - start)
    except Exception:  # noqa: BLE001 — the run's first estimate reports it, with its own message
        return None
    return tally.saved_bytes, sorted(times)[2]


@functools.lru_cache(maxsize=1)
def svd_seconds_per_cube() -> float:
    """Seconds of one float64 SVD (singular values) per d³, from a 256 × 256 matrix (median of 3)."""
    a = torch.randn(256, 256, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        torch.linalg.svdvals(a)
        times.append(time.perf_counter() - start)
    return sorted(times)[1] / 256**3


def estimate(cfg: DictConfig, problem: Problem, estimator, pairs: list[tuple[int, int]]) -> dict | None:
    """The run's estimate: peak bytes (and their parts), seconds, and the words for them; None
    when the one-step measurement fails."""
    measured = measure_step(problem)
    if measured is None:
        return None
    step_bytes, tau = measured
    work = modes.get(cfg.mode).workload(cfg, pairs)  # e.g. outer: one estimate per outer step at (outer.t, outer.k)
    n, runs, pairs = work.draws, work.runs, work.pairs
    itemsize = 4 if cfg.dtype == "float32" else 8
    d, p = problem.w_dim, problem.lam_dim
    est_bytes, units, what = estimator.planned_cost(d, p, pairs, step_bytes * itemsize // 8, itemsize)
    points = len(pairs)
    if work.on_grid and cfg.grid.get("kind") == "levels":  # one estimate per level, each at most the grid's cost
        points = cfg.grid.n
        units *= points / len(pairs)
    if cfg.batch_lambdas and work.on_grid:
        est_bytes, what = est_bytes * n, f"{what}, for {n} draws at once"
    method = choose(problem, cfg.get("reference", "auto"))
    dense_reference = type(problem).adjoint_system is Problem.adjoint_system and method == "dense"
    units += 2 * d if dense_reference else MATRIX_FREE_UNITS if method == "matrix_free" else 0
    ref_bytes = matrix_free_bytes(problem) if method == "matrix_free" else problem.reference_bytes()
    parts = {"λ draws": n * p * 8, "reference": ref_bytes, f"estimator ({what})": est_bytes, "rows": runs * points * ROW_BYTES}
    per_run = units * tau + points * POINT_S
    if dense_reference and d > 500:
        per_run += DENSE_SVDS * svd_seconds_per_cube() * float(d) ** 3
    return {
        "bytes": sum(parts.values()),
        "parts": parts,
        "estimator_bytes": est_bytes,
        "seconds": runs * per_run,
        "tau": tau,
        "units": units,
        "runs": runs,
        "unit": work.unit,
        "per_run": per_run,
    }


def precheck(cfg: DictConfig, cls: type, settings: dict) -> None:
    """Before the problem of class ``cls`` is built from ``settings``: refuse (UserError) one
    whose declared sizes (``Problem.planned``) need more memory than is available for its data,
    the λ draws and a dense reference, or whose construction alone is estimated to take more than
    MAX_S; warn about a construction estimated over LONG_S. Nothing when ``cfg.guard`` is false
    or the class declares no sizes."""
    from hgbench.core.reference import MATRIX_FREE_ABOVE

    if not cfg.get("guard", True):
        return
    try:
        planned = cls.planned(settings)
    except (KeyError, TypeError, ValueError):  # settings the constructor will refuse in its own words
        return
    if planned is None:
        return
    d, p = planned.w_dim, planned.lam_dim
    option = cfg.get("reference", "auto")
    default_solve = cls.adjoint_system is Problem.adjoint_system
    dense = cls.dense_jacobian and (option == "dense" or (option == "auto" and not (default_solve and d > MATRIX_FREE_ABOVE)))
    n = modes.get(cfg.mode).workload(cfg).draws
    parts = {"the problem's data": planned.data_bytes, "λ draws": 8.0 * n * p}
    if dense and default_solve:
        parts[f"a dense reference, 4 × {d} × {d}"] = 32.0 * d * d
    host, total = available_bytes(), sum(parts.values())
    if total > host:
        biggest = max(parts, key=parts.get)
        raise UserError(
            f"the problem {settings.get('name')!r} would need about {bytes_text(total)} (mostly {biggest}: {bytes_text(parts[biggest])}; "
            f"dim w = {d}, dim λ = {p}), more than the {bytes_text(host)} available; lower its sizes (guard=false builds it anyway)"
        )
    seconds = planned.setup_flops / FLOPS
    if seconds > MAX_S:
        raise UserError(
            f"building the problem {settings.get('name')!r} would take roughly {_duration(seconds)} (dim w = {d}, dim λ = {p}); "
            "lower its sizes (guard=false builds it anyway)"
        )
    if seconds > LONG_S:
        print(
            f"hgbench: warning: building the problem {settings.get('name')!r} will take roughly {_duration(seconds)} "
            f"(dim w = {d}, dim λ = {p}); guard=false skips this estimate",
            file=sys.stderr,
        )


def check(cfg: DictConfig, problem: Problem, estimator, pairs: list[tuple[int, int]], device: torch.device) -> None:
    """Refuse (UserError) a run whose estimated peak memory exceeds what is available; warn about
    one estimated to take longer than LONG_S. Nothing when ``cfg.guard`` is false."""
    if not cfg.get("guard", True):
        return
    found = estimate(cfg, problem, estimator, pairs)
    if found is None:
        return
    host = available_bytes()
    on_device = available_bytes(device) if device.type == "cuda" else None
    biggest = max(found["parts"], key=found["parts"].get)
    if found["bytes"] > host or (on_device is not None and found["estimator_bytes"] > on_device):
        limit = (
            f"{bytes_text(on_device)} free on {device}"
            if on_device is not None and found["estimator_bytes"] > on_device
            else f"{bytes_text(host)} available"
        )
        raise UserError(
            f"estimated peak memory {bytes_text(found['bytes'])} (mostly {biggest}: {bytes_text(found['parts'][biggest])}) exceeds the "
            f"{limit}; lower n_lambdas or the grid, or choose another estimator (guard=false runs it anyway)"
        )
    how = (
        f"{found['runs']} {found['unit']} × {_duration(found['per_run'])} each: {found['units']:.3g} Φ-step units × "
        f"{found['tau'] * 1e3:.2g} ms measured, and bookkeeping; peak memory about {bytes_text(found['bytes'])}"
    )
    if found["seconds"] > MAX_S:
        raise UserError(
            f"this run would take roughly {_duration(found['seconds'])} ({how}), more than the {_duration(MAX_S)} hgbench "
            "runs; lower n_lambdas, the grid or outer.steps (guard=false runs it anyway)"
        )
    if found["seconds"] > LONG_S:
        print(
            f"hgbench: warning: this run will take roughly {_duration(found['seconds'])} ({how}); guard=false skips this estimate",
            file=sys.stderr,
        )
