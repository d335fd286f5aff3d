"""Speed and memory of hgbench's estimators, measured side by side in one run.

    python scripts/bench.py [--repeats 5] [--out results/bench] [--problems ridge logistic ...]
                            [--parts anchors user grids]

Part "anchors" (writes OUT/README.md and OUT/anchors_raw.csv): issue 28's table, on the default
logistic problem, 10 λ draws × t = k ∈ {10, …, 100}, every side from one command with
interleaved repeats:
(A) the whole curve per estimator (itd, fp, cg), estimates only, in process: hgbench one draw
    after the other (`hgbench run`'s default) and hgbench with batch_lambdas=true, against three
    anchors that compute every grid point from scratch — the careful script
    (scripts/typical_user.py: closed-form ∇ℓ), the hypertorch-style script
    (scripts/hypertorch_style.py: ∇ℓ by autograd, products by double backward) and torchopt
    (scripts/torchopt_user.py: its unrolled SGD for itd, custom_root with its Neumann solve for
    fp and its CG for cg); ratios anchor time ÷ hgbench time, per repeat;
(B) end to end, fresh processes, references included: `hgbench run problem=logistic
    estimator=cg` against each script's own command line; process start to the first estimate;
    `hgbench run --help`.

Part "user": hgbench against a typical user's hand-written script (scripts/typical_user.py:
plain torch, one inner loop and one hypergradient per point, its own float64 reference by
Newton and a dense solve), on the default logistic problem, 10 λ draws × t = k ∈ {10, …, 100}:
(a) the whole curve per estimator, in process, estimates only (hgbench with `hgbench run`'s
    defaults vs the script's per-point loop), and a check that both compute the same ĝ;
(b) `hgbench run` end to end (a subprocess, default settings) vs the script as a subprocess
    (imports, references, estimates, printing: the same curve);
(c) start-up: process start to the first estimate, beside `import torch` alone and with
    torch._dynamo (which torch.func's reverse mode imports on its first call);
(d) the references' time as a share of a run;
(e) the cost of one step of each AID solver against one fixed-point step (and a hand-written one).
Part "grids", per problem:
(f) one pass over a grid vs recomputing every grid point from scratch, per estimator;
(g) all λ draws at once (torch.func.vmap) vs a loop over 10 draws, on every problem;
(h) each estimator's time for one point vs a hand-written twin in plain torch (its own Φ, E,
    inner loop, ITD, FP and CG, fed the problem's data tensors and step size, no hgbench code):
    hgbench's overhead, and a check that both compute the same ĝ; ITD again on a tape without its
    counting hooks (timing only), which measures what its exact counts cost;
(i) bytes saved for backward vs t, per estimator.
Ratios are computed per repeat (both sides timed back to back) and reported as min/median/max.
Problems and estimators are built from hgbench's own configs (conf/), as `hgbench run` builds them.
Writes results/bench/bench.md and the raw timings as CSV.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import hydra
import pandas as pd
import torch

from hgbench.core.bound import bind, estimate
from hgbench.core.reference import reference
from hgbench.estimators import itd
from hgbench.estimators.aid import AID
from hgbench.running.batch import estimate_batched
from hgbench.paths import conf_dir
from hgbench.running import schema

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))
import hypertorch_style  # noqa: E402  (scripts/hypertorch_style.py: the pattern of a hypertorch user, no hgbench code)
import typical_user  # noqa: E402  (scripts/typical_user.py: plain torch, no hgbench code; also the FP twin of (e), (h))

try:  # the torchopt anchor (scripts/torchopt_user.py) needs torchopt (installed by make setup)
    import torchopt_user
except ImportError:
    torchopt_user = None

# --- hgbench side: one small function per measure (adapt these when the estimator API changes) --


def compose(*overrides: str):
    """The configuration of `hgbench run OVERRIDES` (the config files name their schemas,
    which must be registered first)."""
    schema.register()
    with hydra.initialize_config_dir(str(conf_dir()), version_base=None):
        return hydra.compose("config", overrides=list(overrides))


def from_conf(group: str, *overrides: str):
    """conf/GROUP instantiated as `hgbench run OVERRIDES` would build it."""
    return hydra.utils.instantiate(compose(*overrides)[group])


def hg_run_curve(est, problem, lams, pairs) -> torch.Tensor:
    """(a) every draw's curve as `hgbench run` computes it with its defaults: all draws at once
    where the default ``batch_lambdas`` asks for it and the pair vectorizes, else one draw after
    the other (hgbench.running.runner)."""
    if compose().batch_lambdas and hg_batchable(est, problem):
        return hg_batched(est, problem, lams, pairs)
    return hg_loop(est, problem, lams, pairs)


def hg_reference(problem, lam) -> torch.Tensor:
    """(d) the float64 reference of one draw."""
    return reference(problem, lam).grad


def hg_solver_steps(est, problem, lam, t, k) -> None:
    """(e) k steps of an AID estimator's solver at w_t (nothing else timed)."""
    bound = bind(problem, lam)
    ((_, w, _),) = bound.iterates([t])
    lin = bound.linearize(w)
    b = torch.func.grad(bound.outer)(w, lam)
    steps = est.solver(lin, b)
    start = time.perf_counter()
    for _ in range(k):
        next(steps)
    return time.perf_counter() - start


def hg_cli(*overrides: str) -> list[str]:
    """(b) the command line of `hgbench run OVERRIDES` (the worktree's code)."""
    return [sys.executable, "-c", "from hgbench.running.cli import main; main()", "run", *overrides]


# (c) a fresh process that does what `hgbench run` does up to its first estimate: import the
# command's modules, compose the configuration, build the problem and the estimator, estimate.
STARTUP = """
import sys, time
from hgbench.running import app  # what `hgbench run` imports (the whole running layer)
from hgbench.core.bound import estimate
import torch
from hydra.utils import instantiate
sys.path.insert(0, sys.argv[2])
from bench import compose
cfg = compose("problem=logistic", "estimator=" + sys.argv[3])
problem, est = instantiate(cfg.problem), instantiate(cfg.estimator)
lam = problem.sample_lambdas(1, torch.Generator().manual_seed(0))[0]
list(estimate(est, problem, lam, [(10, 10)]))
print(time.time() - float(sys.argv[1]))
"""


def hg_point(est, problem, lam, t, k) -> torch.Tensor:
    """(h) ĝ(t, k) at one draw."""
    (point,) = estimate(est, problem, lam, [(t, k)])
    return point.grad


@contextmanager
def uncounted_tape(tally):
    """(h) hgbench.core.cost.taped without its hooks (no saved bytes, no VJP count): what exact
    counting costs ITD, measured by difference."""
    with torch.enable_grad():
        yield lambda out: out


def hg_point_uncounted(est, problem, lam, t, k) -> torch.Tensor:
    """(h) ĝ(t, k) at one draw by ITD on a tape that counts nothing (timing only)."""
    counted, itd.taped = itd.taped, uncounted_tape
    try:
        return hg_point(est, problem, lam, t, k)
    finally:
        itd.taped = counted


def hg_curve(est, problem, lam, pairs) -> None:
    """(f) every point of a grid at one draw, in one pass."""
    list(estimate(est, problem, lam, pairs))


def hg_loop(est, problem, lams, pairs) -> torch.Tensor:
    """(g) ĝ of every draw and grid point, (draws, points, dim λ), one draw after the other."""
    return torch.stack([torch.stack([e.grad for e in estimate(est, problem, lam, pairs)]) for lam in lams])


def hg_batched(est, problem, lams, pairs) -> torch.Tensor:
    """(g) the same, all draws at once (vmap)."""
    return torch.stack([torch.stack([e.grad for e in curve]) for curve in estimate_batched(est, problem, lams, pairs)])


def hg_batchable(est, problem) -> bool:
    return est.batchable and problem.batchable


def hg_saved_bytes(est, problem, lam, pairs) -> dict[int, int]:
    """(i) bytes saved for backward, by t."""
    return {e.t: e.cost.saved_bytes for e in estimate(est, problem, lam, pairs)}


def twin_tensors(problem, lam, names) -> list[torch.Tensor]:
    """(h) what a twin reads, taken once outside the timed region: the problem's data tensors
    ``names`` and the draw's step size α, as plain tensors."""
    return [getattr(problem, name).detach().clone() for name in names] + [problem.consts(lam)["alpha"].detach().clone()]


def draws(problem, n, seed) -> torch.Tensor:
    return problem.sample_lambdas(n, torch.Generator().manual_seed(seed))


ESTIMATORS = {name: from_conf("estimator", f"estimator={name}") for name in ("itd", "itd_forward", "fp", "cg")}


# --- (h) hand-written twins: plain torch only; they receive tensors, never an hgbench object ----


class Twin(NamedTuple):
    phi: Callable  # Φ(w, λ)
    outer: Callable  # E(w, λ)
    w0: torch.Tensor


def ridge_twin(x, y, x_val, y_val, alpha) -> Twin:
    """Φ(w, λ) = w − α((XᵀX w − Xᵀy)/n + e^λ ⊙ w),  E(w) = ‖X_v w − y_v‖²/(2 n_v)."""
    gram, xty = x.T @ x / len(y), x.T @ y / len(y)
    return Twin(
        phi=lambda w, lam: w - alpha * (gram @ w - xty + lam.exp() * w),
        outer=lambda w, lam: 0.5 * (x_val @ w - y_val).square().mean(),
        w0=torch.zeros(x.shape[1], dtype=x.dtype),
    )


def logistic_twin(x, b, x_val, b_val, alpha) -> Twin:
    """Φ(w, λ) = w − α(−Xᵀ(b ⊙ σ(−b ⊙ Xw))/n + e^λ ⊙ w),  E(w) = mean log(1 + exp(−b_v ⊙ X_v w))."""
    return Twin(
        phi=lambda w, lam: w - alpha * (x.T @ (-b * torch.sigmoid(-b * (x @ w))) / len(b) + lam.exp() * w),
        outer=lambda w, lam: torch.nn.functional.softplus(-b_val * (x_val @ w)).mean(),
        w0=torch.zeros(x.shape[1], dtype=x.dtype),
    )


def unroll(twin, lam, t):
    """w_t: t steps of Φ from w₀."""
    w = twin.w0
    for _ in range(t):
        w = twin.phi(w, lam)
    return w


def itd_twin(twin, lam, t, k):
    """Reverse mode through the t steps: d/dλ E(w_t(λ), λ)."""
    lam = lam.detach().requires_grad_()
    with torch.enable_grad():
        return torch.autograd.grad(twin.outer(unroll(twin, lam, t), lam), lam)[0]


def itd_forward_twin(twin, lam, t, k):
    """Forward mode: Z ← ∂₁Φ Z + ∂₂Φ (Z = dw/dλ), one JVP per column of Z, vmapped; ĝ = Zᵀ∇₁E + ∇₂E."""

    def tangent(w, z_col, e_col):
        return torch.func.jvp(twin.phi, (w, lam), (z_col, e_col))

    push = torch.func.vmap(tangent, in_dims=(None, 1, 0), out_dims=(0, 1))
    columns = torch.eye(lam.numel(), dtype=lam.dtype)
    w, z = twin.w0, torch.zeros(twin.w0.numel(), lam.numel(), dtype=lam.dtype)
    for _ in range(t):
        w_copies, z = push(w, z, columns)
        w = w_copies[0]
    grad_w, grad_lam = torch.func.grad(twin.outer, argnums=(0, 1))(w, lam)
    return z.T @ grad_w + grad_lam


def aid_twin(solve):
    """ĝ = ∇₂E + ∂₂Φᵀv at w_t, where v = solve(Jᵀ·, ∇₁E, k) approximates (I − Jᵀ)⁻¹∇₁E,
    J = ∂₁Φ(w_t, λ); products with Jᵀ and ∂₂Φᵀ by autograd through one evaluation of Φ."""

    def twin_estimate(twin, lam, t, k):
        w = unroll(twin, lam, t)
        grad_w, grad_lam = torch.func.grad(twin.outer, argnums=(0, 1))(w, lam)
        w, lam = w.detach().requires_grad_(), lam.detach().requires_grad_()
        with torch.enable_grad():
            out = twin.phi(w, lam)
        v = solve(lambda u: torch.autograd.grad(out, w, u, retain_graph=True)[0], grad_w, k)
        return grad_lam + torch.autograd.grad(out, lam, v)[0]

    return twin_estimate


def conjugate_gradient(jt, b, k):
    """k steps of CG on A v = b, A = I − Jᵀ symmetric positive definite, from v = 0: one product
    with A per step. Once ‖r‖ ≤ ε‖b‖ (round-off) the steps are zero and v stays where it is."""
    v, r = torch.zeros_like(b), b.clone()
    d = r.clone()  # search direction
    rho, floor = r @ r, (torch.finfo(b.dtype).eps * torch.linalg.vector_norm(b)) ** 2
    for _ in range(k):
        ad = d - jt(d)
        done = rho <= floor
        step = torch.where(done, 0.0, rho / (d @ ad))
        v, r = v + step * d, r - step * ad
        rho_next = r @ r
        d = r + torch.where(done, 0.0, rho_next / rho) * d
        rho = rho_next
    return v


TWINS = {"itd": itd_twin, "itd_forward": itd_forward_twin, "fp": aid_twin(typical_user.fixed_point), "cg": aid_twin(conjugate_gradient)}


# --- the problems ------------------------------------------------------------------------------


def grid(ts, ks) -> list[tuple[int, int]]:
    return [(t, k) for t in ts for k in ks]


@dataclass(frozen=True)
class Case:
    label: str
    overrides: tuple[str, ...]  # of conf/: the problem as `hgbench run` would build it
    batched: dict[str, list[tuple[int, int]]]  # (g): estimator -> grid points
    not_batched: dict[str, str] = field(default_factory=dict)  # (g): estimator -> why it is left out
    # (f), (h), (i) run where set: the twin's builder and the problem's data tensors it takes
    twin: tuple[Callable[..., Twin], tuple[str, ...]] | None = None
    t_point: int = 0  # (h)
    t_big: int = 0  # (f): longest t of the grids
    t_forward: int = 0  # (f), (i): longest t for itd_forward (dim λ JVPs per step)


CASES = [
    Case(
        "ridge d=200",
        ("problem=ridge", "problem.n_features=200", "problem.n_train=400"),
        batched={"itd_forward": grid((0, 20, 50), (10,)), "fp": grid((0, 100, 500), (10, 50)), "cg": grid((0, 100, 500), (10, 50))},
        twin=(ridge_twin, ("x_train", "y_train", "x_val", "y_val")),
        t_point=100,
        t_big=500,
        t_forward=100,
    ),
    Case(
        "logistic d=20",
        ("problem=logistic",),
        batched={"itd_forward": grid((0, 20, 50), (10,)), "fp": grid((0, 100, 1000), (10, 50)), "cg": grid((0, 100, 1000), (10, 50))},
        twin=(logistic_twin, ("x_train", "b_train", "x_val", "b_val")),
        t_point=300,
        t_big=1000,
        t_forward=1000,
    ),
    Case(
        "equilibrium_mnist d=100 n=1000",
        ("problem=equilibrium_mnist", "problem.state_dim=100", "problem.n_train=1000"),
        batched={"fp": [(20, 100)]},
        not_batched={"itd_forward": "dim λ = 89,510 JVPs per step", "cg": "∂₁Φ is not symmetric"},
    ),
    Case(
        "hyper_rep",
        ("problem=hyper_rep",),
        batched={"itd_forward": grid((0, 5, 10), (10,)), "fp": grid((0, 100, 500), (10, 50)), "cg": grid((0, 100, 500), (10, 50))},
    ),
]


# --- measuring ---------------------------------------------------------------------------------


def clock(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def ratios(rows, key):
    s = pd.Series([r[key] for r in rows])
    return f"{s.min():.2f} / {s.median():.2f} / {s.max():.2f}"


def max_diff(a, b) -> float:
    """max |a − b|, after checking that it is round-off (amplified by conditioning): at most 1e-7 · max |b|."""
    diff = (a - b).abs().max().item()
    if not diff <= 1e-7 * b.abs().max().item():
        raise AssertionError(f"the two sides disagree: max abs diff {diff:.3e}, max abs value {b.abs().max().item():.3e}")
    return diff


def values(pairs) -> str:
    ts, ks = sorted({t for t, _ in pairs}), sorted({k for _, k in pairs})
    return f"t ∈ {{{', '.join(map(str, ts))}}}, k ∈ {{{', '.join(map(str, ks))}}}"


def overhead(case, problem, lam, repeats, raw):
    """(h) one point: hgbench vs its hand-written twin."""
    build, names = case.twin
    twin = build(*twin_tensors(problem, lam, names))
    k = 50
    lines = [
        f"\n(h) one point (t = {case.t_point}, k = {k}): hgbench time / hand-written twin time\n",
        "| estimator | hgbench s (median) | by hand s (median) | ratio min / median / max | max abs diff of ĝ |\n|---|---|---|---|---|",
    ]
    for name, est in ESTIMATORS.items():
        rows = []
        for _ in range(repeats):
            t_hg, g_hg = clock(lambda: hg_point(est, problem, lam, case.t_point, k))
            t_raw, g_raw = clock(lambda: TWINS[name](twin, lam, case.t_point, k))
            rows.append({"hg": t_hg, "raw": t_raw, "ratio": t_hg / t_raw, "diff": max_diff(g_hg, g_raw)})
            raw.append({"bench": "overhead", "problem": case.label, "estimator": name, **rows[-1]})
        med = pd.DataFrame(rows).median()
        lines.append(f"| {name} | {med.hg:.4f} | {med.raw:.4f} | {ratios(rows, 'ratio')} | {max(r['diff'] for r in rows):.1e} |")
    rows = []  # ITD's exact counting (a Python hook per saved tensor and per backward step), by difference
    for _ in range(repeats):
        t_hg, g_hg = clock(lambda: hg_point_uncounted(ESTIMATORS["itd"], problem, lam, case.t_point, k))
        t_raw, g_raw = clock(lambda: TWINS["itd"](twin, lam, case.t_point, k))
        rows.append({"hg": t_hg, "raw": t_raw, "ratio": t_hg / t_raw, "diff": max_diff(g_hg, g_raw)})
        raw.append({"bench": "overhead", "problem": case.label, "estimator": "itd, counting off", **rows[-1]})
    med = pd.DataFrame(rows).median()
    lines.append(
        f"| itd, counting off (timing only) | {med.hg:.4f} | {med.raw:.4f} | {ratios(rows, 'ratio')} | {max(r['diff'] for r in rows):.1e} |"
    )
    return lines


def one_pass(case, problem, lam, repeats, raw):
    """(f) a whole grid in one pass vs every point from scratch."""
    step = case.t_big // 10
    grids = {
        "itd": [(t, 0) for t in range(step, case.t_big + 1, step)],
        "itd_forward": [(t, 0) for t in range(case.t_forward // 10, case.t_forward + 1, case.t_forward // 10)],
        "fp": [(case.t_big, k) for k in range(50, 501, 50)],
        "cg": [(case.t_big, k) for k in range(5, 51, 5)],
    }
    lines = [
        "\n(f) a whole grid in one pass vs every point from scratch: time from scratch / time of one pass\n",
        "| estimator | grid | points | one pass s (median) | ratio min / median / max | target (≥ points/2) |\n|---|---|---|---|---|---|",
    ]
    for name, est in ESTIMATORS.items():
        pairs = grids[name]
        rows = []
        for _ in range(repeats):
            t_one, _ = clock(lambda: hg_curve(est, problem, lam, pairs))
            t_all, _ = clock(lambda: [hg_curve(est, problem, lam, [p]) for p in pairs])
            rows.append({"one": t_one, "all": t_all, "ratio": t_all / t_one})
            raw.append({"bench": "one_pass", "problem": case.label, "estimator": name, **rows[-1]})
        ts = sorted({t for t, _ in pairs})
        label = f"t = {ts[0]}..{ts[-1]}" if len(ts) > 1 else f"t = {ts[0]}, k = {pairs[0][1]}..{pairs[-1][1]}"
        target = "—" if name == "itd" else f"{len(pairs) / 2:.0f}"
        lines.append(f"| {name} | {label} | {len(pairs)} | {pd.DataFrame(rows)['one'].median():.4f} | {ratios(rows, 'ratio')} | {target} |")
    return lines


def batched(case, problem, repeats, raw):
    """(g) all λ draws at once vs a loop over the draws."""
    lams = draws(problem, 10, seed=1)
    lines = [
        f"\n(g) {len(lams)} λ draws: loop time / vmap time (same grid points, one curve per draw)\n",
        "| estimator | grid | loop s (median) | ratio min / median / max | max abs diff of ĝ |\n|---|---|---|---|---|",
    ]
    for name, est in ESTIMATORS.items():
        if name not in case.batched:
            reason = "does not vectorize (autograd tape)" if not hg_batchable(est, problem) else f"not run: {case.not_batched[name]}"
            lines.append(f"| {name} | — | — | {reason} | — |")
            continue
        pairs = case.batched[name]
        hg_batched(est, problem, lams[:2], pairs)  # warm-up of the vmapped path
        rows = []
        for _ in range(repeats):
            t_loop, g_loop = clock(lambda: hg_loop(est, problem, lams, pairs))
            t_vmap, g_vmap = clock(lambda: hg_batched(est, problem, lams, pairs))
            rows.append({"loop": t_loop, "vmap": t_vmap, "ratio": t_loop / t_vmap, "diff": max_diff(g_loop, g_vmap)})
            raw.append({"bench": "vmap", "problem": case.label, "estimator": name, **rows[-1]})
        lines.append(
            f"| {name} | {values(pairs)} | {pd.DataFrame(rows)['loop'].median():.4f} | {ratios(rows, 'ratio')} "
            f"| {max(r['diff'] for r in rows):.1e} |"
        )
    return lines


def memory(case, problem, lam):
    """(i) bytes saved for backward vs t."""
    ts = [10, 100, 1000]
    lines = [
        "\n(i) bytes saved for backward, per estimate (k = 20 for fp, cg)\n",
        "| estimator | " + " | ".join(f"t = {t}" for t in ts) + " |\n|---|" + "---|" * len(ts),
    ]
    for name, est in ESTIMATORS.items():
        t_max = case.t_forward if name == "itd_forward" else max(ts)
        saved = hg_saved_bytes(est, problem, lam, [(t, 20) for t in ts if t <= t_max])
        lines.append(f"| {name} | " + " | ".join(f"{saved[t]:,}" if t in saved else "(skipped)" for t in ts) + " |")
    return lines


# --- part "user": against a typical user's hand-written script ----------------------------------

CURVE_TS = list(range(10, 101, 10))  # t = k, the default diag grid's kind
CURVE_ESTIMATORS = ("itd", "fp", "cg")  # what the script implements
CURVE_CLI = ("problem=logistic", f"grid.t=[{','.join(map(str, CURVE_TS))}]")


def user_curve(repeats, raw):
    """(a) 10 draws × t = k ∈ CURVE_TS, estimates only, in process: hgbench's default path (and,
    for the record, the batched one) vs the script's loop over points."""
    problem = from_conf("problem", "problem=logistic")
    lams = draws(problem, 10, seed=0)
    data = typical_user.logistic_data()
    pairs = [(t, t) for t in CURVE_TS]
    default = "batched" if compose().batch_lambdas else "loop"
    lines = [
        f"\n(a) a whole curve, logistic, {len(lams)} λ draws × t = k ∈ {{{CURVE_TS[0]}, …, {CURVE_TS[-1]}}}, estimates only "
        f"(no reference), in process: script time / hgbench time (default path: {default})\n",
        "| estimator | hgbench s (median) | script s (median) | ratio min / median / max | batched: ratio min / median / max "
        "| max abs diff of ĝ | target |\n|---|---|---|---|---|---|---|",
    ]

    def script():
        points = typical_user.curve(data, lams, name, CURVE_TS, with_reference=False)
        return torch.stack([torch.stack([points[i, t][0] for t in CURVE_TS]) for i in range(len(lams))])

    for name in CURVE_ESTIMATORS:
        est = ESTIMATORS[name]
        batchable = hg_batchable(est, problem)
        hg_run_curve(est, problem, lams[:1], pairs[:1])  # warm-up
        if batchable:
            hg_batched(est, problem, lams[:2], pairs[:1])
        rows = []
        for _ in range(repeats):
            t_hg, g_hg = clock(lambda: hg_run_curve(est, problem, lams, pairs))
            t_user, g_user = clock(script)
            t_batch = clock(lambda: hg_batched(est, problem, lams, pairs))[0] if batchable else float("nan")
            rows.append(
                {
                    "hg": t_hg,
                    "user": t_user,
                    "ratio": t_user / t_hg,
                    "batched": t_batch,
                    "ratio_batched": t_user / t_batch,
                    "diff": max_diff(g_hg, g_user),
                }
            )
            raw.append({"bench": "user_curve", "problem": "logistic", "estimator": name, **rows[-1]})
        med = pd.DataFrame(rows).median()
        batched_cell = ratios(rows, "ratio_batched") if batchable else "does not vectorize"
        lines.append(
            f"| {name} | {med.hg:.3f} | {med.user:.3f} | {ratios(rows, 'ratio')} | {batched_cell} "
            f"| {max(r['diff'] for r in rows):.1e} | ≥ 5 |"
        )
    return lines


def subprocess_time(command, env) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def subprocess_cpu(command, env) -> tuple[float, float]:
    """(wall s, CPU s: user + system of the child and its children) of one fresh process; the
    CPU time is what a loaded machine (other jobs on the cores) inflates least."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = subprocess_time(command, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def user_cli(repeats, raw, env) -> dict[str, float]:
    """(b) `hgbench run` end to end (defaults: plot, progress bar, references, run.json) vs the
    script for the same curve, each a fresh process; returns the median hgbench time per estimator."""
    lines = [
        "\n(b) end to end, fresh processes, the same curve with references: `hgbench run "
        f"{' '.join(CURVE_CLI)} estimator=E` (its defaults) vs `python scripts/typical_user.py --estimator E`: "
        "hgbench time / script time\n",
        "| estimator | hgbench run s (median) | script s (median) | ratio min / median / max | target |\n|---|---|---|---|---|",
    ]
    medians = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in CURVE_ESTIMATORS:
            rows = []
            for i in range(repeats):
                t_hg = subprocess_time(hg_cli(*CURVE_CLI, f"estimator={name}", f"hydra.run.dir={tmp}/{name}{i}"), env)
                t_user = subprocess_time([sys.executable, str(SCRIPTS / "typical_user.py"), "--estimator", name], env)
                rows.append({"hg": t_hg, "user": t_user, "ratio": t_hg / t_user})
                raw.append({"bench": "user_cli", "problem": "logistic", "estimator": name, **rows[-1]})
            med = pd.DataFrame(rows).median()
            medians[name] = med.hg
            lines.append(f"| {name} | {med.hg:.2f} | {med.user:.2f} | {ratios(rows, 'ratio')} | ≤ 1 |")
    return lines, medians


def startup(repeats, raw, env):
    """(c) process start to the first estimate (one point, t = k = 10, logistic, cg), beside
    the floors: an empty interpreter, `import torch`, and the command's imports alone."""
    steps = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import torch": [sys.executable, "-c", "import torch"],
        "import torch, torch._dynamo (torch.func's reverse mode imports it)": [sys.executable, "-c", "import torch, torch._dynamo"],
        "import hgbench.running.app (the command's modules)": [sys.executable, "-c", "import hgbench.running.app"],
    }
    rows = {name: [] for name in [*steps, "start to first estimate (cg)"]}
    for _ in range(repeats):
        for name, command in steps.items():
            rows[name].append(subprocess_time(command, env))
        start = time.time()
        out = subprocess.run(
            [sys.executable, "-c", STARTUP, str(start), str(SCRIPTS), "cg"], env=env, check=True, capture_output=True, text=True
        ).stdout
        rows["start to first estimate (cg)"].append(float(out.split()[-1]))
    lines = [
        "\n(c) start-up, fresh processes (s): process start to the first estimate, and its floors\n",
        "| step | s min / median / max | target |\n|---|---|---|",
    ]
    for name, times in rows.items():
        raw.extend({"bench": "startup", "problem": "logistic", "estimator": name, "hg": t} for t in times)
        s = pd.Series(times)
        target = "≤ 1.5" if name.startswith("start") else ""
        lines.append(f"| {name} | {s.min():.2f} / {s.median():.2f} / {s.max():.2f} | {target} |")
    return lines


def reference_share(repeats, raw, run_times):
    """(d) the 10 draws' references (warm: after one reference in this process) as a share of
    the median `hgbench run` time of (b)."""
    problem = from_conf("problem", "problem=logistic")
    lams = draws(problem, 10, seed=0)
    hg_reference(problem, lams[0])
    times = []
    for _ in range(repeats):
        times.append(clock(lambda: [hg_reference(problem, lam) for lam in lams])[0])
        raw.append({"bench": "reference", "problem": "logistic", "estimator": "", "hg": times[-1]})
    s = pd.Series(times)
    lines = [
        "\n(d) the references of the 10 λ draws (in process, warm) and their share of `hgbench run`'s time in (b)\n",
        "| references s min / median / max | " + " | ".join(f"share of {name}'s run (median)" for name in run_times) + " | target |",
        "|---|" + "---|" * len(run_times) + "---|",
        f"| {s.min():.3f} / {s.median():.3f} / {s.max():.3f} | "
        + " | ".join(f"{s.median() / t:.1%}" for t in run_times.values())
        + " | ≤ 10% |",
    ]
    return lines


def solver_steps(repeats, raw, steps=200, t=100):
    """(e) one solver step, logistic, at w_100: each AID solver against the fixed-point
    iteration, timed back to back; and a hand-written fixed-point step (plain autograd)."""
    problem = from_conf("problem", "problem=logistic")
    lam = draws(problem, 1, seed=0)[0]
    solvers = {name: from_conf("estimator", f"estimator={name}") for name in ("fp", "cg", "neumann", "cg_normal", "gmres")}
    twin = logistic_twin(*twin_tensors(problem, lam, ("x_train", "b_train", "x_val", "b_val")))

    def by_hand(solve):
        w = unroll(twin, lam, t).requires_grad_()
        with torch.enable_grad():
            out = twin.phi(w, lam)
            b = torch.autograd.grad(twin.outer(w, lam), w)[0]
        start = time.perf_counter()
        solve(lambda u: torch.autograd.grad(out, w, u, retain_graph=True)[0], b, steps)
        return time.perf_counter() - start

    for est in solvers.values():
        assert isinstance(est, AID)
        hg_solver_steps(est, problem, lam, t, 2)  # warm-up
    lines = [
        f"\n(e) one solver step (µs), logistic, at w_{t}, {steps} steps timed: each solver / hgbench's fp step\n",
        "| solver | µs per step (median) | ratio to fp min / median / max | target |\n|---|---|---|---|",
    ]
    rows = {name: [] for name in [*solvers, "fp by hand", "cg by hand"]}
    for _ in range(repeats):
        fp = hg_solver_steps(solvers["fp"], problem, lam, t, steps) / steps
        rows["fp"].append({"step": fp, "ratio": 1.0})
        for name, est in solvers.items():
            if name != "fp":
                step = hg_solver_steps(est, problem, lam, t, steps) / steps
                rows[name].append({"step": step, "ratio": step / fp})
        for name, solve in (("fp by hand", typical_user.fixed_point), ("cg by hand", conjugate_gradient)):
            step = by_hand(solve) / steps
            rows[name].append({"step": step, "ratio": step / fp})
    for name, rs in rows.items():
        raw.extend({"bench": "solver_step", "problem": "logistic", "estimator": name, **r} for r in rs)
        target = {"cg": "≤ 1.1", "gmres": "(grows with k)"}.get(name, "")
        lines.append(f"| {name} | {pd.DataFrame(rs)['step'].median() * 1e6:.0f} | {ratios(rs, 'ratio')} | {target} |")
    return lines


# --- part "anchors": issue 28's table -----------------------------------------------------------

TORCHOPT = {"itd": "unrolled", "fp": "implicit_neumann", "cg": "implicit_cg"}  # estimator -> torchopt's path in scripts/torchopt_user.py
ANCHORS = {  # estimator -> {anchor label: the script's hypergradient}
    name: {
        "careful script": typical_user.HYPERGRADS[name],
        "hypertorch-style script": hypertorch_style.HYPERGRADS[name],
        **({"torchopt": torchopt_user.HYPERGRADS[which]} if torchopt_user else {}),
    }
    for name, which in TORCHOPT.items()
}
HG_PATHS = ("hgbench loop", "hgbench batch_lambdas")


def anchor_curve(hypergrads, name, data, lams) -> torch.Tensor:
    """(A) an anchor's whole curve, (draws, points, dim λ)."""
    points = typical_user.curve(data, lams, name, CURVE_TS, with_reference=False, hypergrads={name: hypergrads})
    return torch.stack([torch.stack([points[i, t][0] for t in CURVE_TS]) for i in range(len(lams))])


def anchors_curve(repeats, raw):
    """(A) per estimator, every side timed back to back in each repeat; the ratios anchor ÷
    hgbench path are per repeat. ĝ of every side is compared with hgbench's loop: the scripts'
    and batch_lambdas' must agree to round-off (``max_diff``); torchopt's difference is reported,
    not checked (its Neumann solve is not fp's k steps: ``solve_inv(ns=True, maxiter=k)`` sums
    a different number of terms)."""
    problem = from_conf("problem", "problem=logistic")
    lams = draws(problem, 10, seed=0)
    data = typical_user.logistic_data()
    pairs = [(t, t) for t in CURVE_TS]
    times, ratio_lines = [], []
    for name in CURVE_ESTIMATORS:
        est = ESTIMATORS[name]
        batchable = hg_batchable(est, problem)
        sides = {"hgbench loop": lambda: hg_loop(est, problem, lams, pairs)}
        if batchable:
            sides["hgbench batch_lambdas"] = lambda: hg_batched(est, problem, lams, pairs)
        for label, fn in ANCHORS[name].items():
            sides[label] = lambda fn=fn: anchor_curve(fn, name, data, lams)
        for label, fn in sides.items():  # warm-up: one point of one draw
            if label.startswith("hgbench"):
                (hg_loop if label == "hgbench loop" else hg_batched)(est, problem, lams[:2], pairs[:1])
            else:
                typical_user.curve(data, lams[:1], name, CURVE_TS[:1], with_reference=False, hypergrads={name: ANCHORS[name][label]})
        rows = []
        for _ in range(repeats):
            row, grads = {}, {}
            for label, fn in sides.items():
                row[label], grads[label] = clock(fn)
            for label in grads:
                exact = label != "torchopt"
                row[f"diff {label}"] = (
                    max_diff(grads[label], grads["hgbench loop"]) if exact else (grads[label] - grads["hgbench loop"]).abs().max().item()
                )
            rows.append(row)
            raw.append({"bench": "anchors_curve", "problem": "logistic", "estimator": name, **row})
        frame = pd.DataFrame(rows)
        cells = [f"{frame[label].median():.3f}" if label in frame else "— (no batched path)" for label in (*HG_PATHS, *ANCHORS["cg"])]
        diff = max(frame[[c for c in frame if c.startswith("diff") and c != "diff torchopt"]].max())
        torchopt_diff = f"{frame['diff torchopt'].max():.1e}" if "diff torchopt" in frame else "—"
        times.append(f"| {name} | " + " | ".join(cells) + f" | {diff:.1e} | {torchopt_diff} |")
        for label in ANCHORS[name]:
            what = f"torchopt {TORCHOPT[name]}" if label == "torchopt" else label
            cells = [ratios([{"r": r[label] / r[path]} for r in rows], "r") if path in frame else "—" for path in HG_PATHS]
            ratio_lines.append(f"| {name} | {what} | " + " | ".join(cells) + " |")
    head = [
        f"\n(A) a whole curve, logistic, {len(lams)} λ draws × t = k ∈ {{{CURVE_TS[0]}, …, {CURVE_TS[-1]}}}, estimates only (no reference), "
        "in process; median seconds over the repeats\n",
        "| estimator | " + " | ".join((*HG_PATHS, *ANCHORS["cg"])) + " | max abs diff of ĝ vs hgbench loop: hgbench batch_lambdas, scripts "
        "| torchopt's |",
        "|---|" + "---|" * (len(HG_PATHS) + len(ANCHORS["cg"]) + 2),
    ]
    torchopt_names = (
        "; torchopt: unrolled for itd, implicit Neumann for fp, implicit CG for cg" if torchopt_user else " (torchopt not installed)"
    )
    mid = [
        f"\nanchor time ÷ hgbench time (min / median / max over the repeats; target ≥ 5 against the hypertorch-style script and torchopt, "
        f"≥ 2 against the careful script{torchopt_names})\n",
        "| estimator | anchor | ÷ hgbench loop | ÷ hgbench batch_lambdas |",
        "|---|---|---|---|",
    ]
    return head + times + mid + ratio_lines


def anchors_cli(repeats, raw, env):
    """(B) fresh processes: `hgbench run` (its defaults, cg) against each script's command line
    (the same curve, each with its own references); process start to the first estimate (cg);
    `hgbench run --help`."""
    scripts = {
        "careful script": [sys.executable, str(SCRIPTS / "typical_user.py"), "--estimator", "cg"],
        "hypertorch-style script": [sys.executable, str(SCRIPTS / "hypertorch_style.py"), "--estimator", "cg"],
    }
    if torchopt_user:
        scripts["torchopt implicit_cg"] = [sys.executable, "-W", "ignore", str(SCRIPTS / "torchopt_user.py"), "--estimator", "implicit_cg"]
    commands = {"hgbench run": None, **scripts, "hgbench run --help": hg_cli("--help")}
    rows, walls = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            commands["hgbench run"] = hg_cli(*CURVE_CLI, "estimator=cg", f"hydra.run.dir={tmp}/{i}")
            measured = {label: subprocess_cpu(command, env) for label, command in commands.items()}
            row, wall = {label: cpu for label, (_, cpu) in measured.items()}, {label: w for label, (w, _) in measured.items()}
            start = time.time()
            out = subprocess.run(
                [sys.executable, "-c", STARTUP, str(start), str(SCRIPTS), "cg"], env=env, check=True, capture_output=True, text=True
            ).stdout
            wall["start to first estimate"] = float(out.split()[-1])
            rows.append(row)
            walls.append(wall)
            raw.append(
                {
                    "bench": "anchors_cli",
                    "problem": "logistic",
                    "estimator": "cg",
                    **{f"cpu {k}": v for k, v in row.items()},
                    **{f"wall {k}": v for k, v in wall.items()},
                }
            )
    lines = [
        f"\n(B) end to end, fresh processes, the same curve with references: `hgbench run {' '.join(CURVE_CLI)} estimator=cg` "
        "(its defaults: plot, references, run.json) vs each script's own command line; CPU s (user + system) and wall s\n",
        "| command | CPU s min / median / max | hgbench run ÷ it, CPU (min / median / max) | wall s median | target |",
        "|---|---|---|---|---|",
    ]
    targets = {
        "hypertorch-style script": "hgbench run ÷ it ≤ 1",
        "start to first estimate": "≤ 1.5 s (wall)",
        "hgbench run --help": "≤ 0.5 s",
    }
    for label in walls[0]:
        cpu = pd.Series([r[label] for r in rows]) if label in rows[0] else None
        cells = f"{cpu.min():.2f} / {cpu.median():.2f} / {cpu.max():.2f}" if cpu is not None else "—"
        vs = ratios([{"r": r["hgbench run"] / r[label]} for r in rows], "r") if label in scripts else ""
        lines.append(f"| {label} | {cells} | {vs} | {pd.Series([w[label] for w in walls]).median():.2f} | {targets.get(label, '')} |")
    return lines


def git_state() -> str:
    """The commit measured (and whether the tree had changes)."""

    def git(*args):
        return subprocess.run(["git", *args], cwd=SCRIPTS, capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (
        " with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    )


def machine() -> str:
    """The CPU's model and core count, from /proc/cpuinfo where there is one."""
    try:
        model = next(
            line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores visible"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="results/bench")
    names = [case.label.split()[0] for case in CASES]
    parser.add_argument("--problems", nargs="+", choices=names, default=names, help="part grids: only these problems (default: all)")
    parser.add_argument(
        "--parts", nargs="+", choices=("anchors", "user", "grids"), default=["anchors", "user", "grids"], help="measure only these parts"
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = []

    def report(new):
        print("\n".join(new), flush=True)
        lines.extend(new)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPTS.parent), os.environ.get("PYTHONPATH", "")])}
    if "anchors" in args.parts:
        anchor_lines = [
            f"# hgbench against three anchors (issue 28)\n\nWritten by `python scripts/bench.py {' '.join(sys.argv[1:])}` at commit "
            f"{git_state()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} — torch {torch.__version__}, {torch.get_num_threads()} "
            f"thread(s) (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), CPU, float64; {args.repeats} interleaved repeats. "
            f"Machine: {machine()}; load average at the start {os.getloadavg()[0]:.1f} (1 min).\n\n"
            "Anchors (no hgbench code, every grid point from scratch): the careful script scripts/typical_user.py "
            "(closed-form ∇ℓ, one backward over a kept tape), the hypertorch-style script scripts/hypertorch_style.py "
            "(∇ℓ by autograd, products by double backward, as a hypertorch user writes it), torchopt scripts/torchopt_user.py "
            "(its documented unrolled and implicit paths)."
            + (
                " The same command before issue 28's changes (at 9ffe37d): [anchors_before.md](anchors_before.md). "
                "Cost as the problem grows: [scaling.md](scaling.md) (`scripts/bench_scaling.py`)."
                if (out / "anchors_before.md").exists()
                else ""
            )
        ]
        print(anchor_lines[0], flush=True)
        for part in (anchors_curve(args.repeats, raw), anchors_cli(args.repeats, raw, env)):
            print("\n".join(part), flush=True)
            anchor_lines.extend(part)
        (out / "README.md").write_text("\n".join(anchor_lines) + "\n")
        pd.DataFrame([r for r in raw if r["bench"].startswith("anchors")]).to_csv(out / "anchors_raw.csv", index=False)
        print(f"written: {out / 'README.md'}, {out / 'anchors_raw.csv'}")
        if set(args.parts) == {"anchors"}:
            return
    lines = [
        f"# hgbench benchmark\n\n`python scripts/bench.py {' '.join(sys.argv[1:])}` — torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), CPU, float64. "
        f"Ratios: min / median / max over {args.repeats} repeats.\n\nMachine: {machine()}; load average at the start "
        f"{os.getloadavg()[0]:.1f} (1 min).\n"
    ]
    print(lines[0], flush=True)
    if "user" in args.parts:
        report(["\n## Against a typical user's script (scripts/typical_user.py)\n"])
        report(user_curve(args.repeats, raw))
        cli_lines, run_times = user_cli(args.repeats, raw, env)
        report(cli_lines)
        report(startup(args.repeats, raw, env))
        report(reference_share(args.repeats, raw, run_times))
        report(solver_steps(args.repeats, raw))
    for case in (case for case in CASES if "grids" in args.parts and case.label.split()[0] in args.problems):
        problem = from_conf("problem", *case.overrides)
        lam = draws(problem, 1, seed=0)[0]
        used = ESTIMATORS if case.twin else {name: ESTIMATORS[name] for name in case.batched}
        for est in used.values():  # warm-up: one-time framework setup
            hg_curve(est, problem, lam, [(1, 1)])
        report([f"\n## {case.label}\n"])
        if case.twin:
            report(overhead(case, problem, lam, args.repeats, raw))
            report(one_pass(case, problem, lam, args.repeats, raw))
        report(batched(case, problem, args.repeats, raw))
        if case.twin:
            report(memory(case, problem, lam))
    report([f"\nLoad average at the end: {os.getloadavg()[0]:.1f} (1 min)."])
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    pd.DataFrame(raw).to_csv(out / "bench_raw.csv", index=False)
    print(f"written: {out / 'bench.md'}, {out / 'bench_raw.csv'}")


if __name__ == "__main__":
    main()
