"""Speed and memory of hgbench's estimators, measured side by side in one run.

    python scripts/bench.py [--repeats 5] [--out results/bench] [--problems ridge logistic ...]

(a) one pass over a grid vs recomputing every grid point from scratch, per estimator;
(b) all λ draws at once (torch.func.vmap) vs a loop over 10 draws, on every problem;
(c) each estimator's time for one point vs a hand-written twin in plain torch (its own Φ, E,
    inner loop, ITD, FP and CG, fed the problem's data tensors and step size, no hgbench code):
    hgbench's overhead, and a check that both compute the same ĝ;
(d) bytes saved for backward vs t, per estimator.
Ratios are computed per repeat (both sides timed back to back) and reported as min/median/max.
Problems and estimators are built from hgbench's own configs (conf/), as `hgbench run` builds them.
Writes results/bench/bench.md and the raw timings as CSV.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import hydra
import pandas as pd
import torch

from hgbench.core.bound import estimate
from hgbench.running.batch import estimate_batched
from hgbench.paths import conf_dir
from hgbench.running import schema

# --- hgbench side: one small function per measure (adapt these when the estimator API changes) --


def from_conf(group: str, *overrides: str):
    """conf/GROUP instantiated as `hgbench run OVERRIDES` would build it (the config files name
    their schemas, which must be registered first)."""
    schema.register()
    with hydra.initialize_config_dir(str(conf_dir()), version_base=None):
        cfg = hydra.compose("config", overrides=list(overrides))
    return hydra.utils.instantiate(cfg[group])


def hg_point(est, problem, lam, t, k) -> torch.Tensor:
    """(c) ĝ(t, k) at one draw."""
    (point,) = estimate(est, problem, lam, [(t, k)])
    return point.grad


def hg_curve(est, problem, lam, pairs) -> None:
    """(a) every point of a grid at one draw, in one pass."""
    list(estimate(est, problem, lam, pairs))


def hg_loop(est, problem, lams, pairs) -> torch.Tensor:
    """(b) ĝ of every draw and grid point, (draws, points, dim λ), one draw after the other."""
    return torch.stack([torch.stack([e.grad for e in estimate(est, problem, lam, pairs)]) for lam in lams])


def hg_batched(est, problem, lams, pairs) -> torch.Tensor:
    """(b) the same, all draws at once (vmap)."""
    return torch.stack([torch.stack([e.grad for e in curve]) for curve in estimate_batched(est, problem, lams, pairs)])


def hg_batchable(est, problem) -> bool:
    return est.batchable and problem.batchable


def hg_saved_bytes(est, problem, lam, pairs) -> dict[int, int]:
    """(d) bytes saved for backward, by t."""
    return {e.t: e.cost.saved_bytes for e in estimate(est, problem, lam, pairs)}


def twin_tensors(problem, lam, names) -> list[torch.Tensor]:
    """(c) what a twin reads, taken once outside the timed region: the problem's data tensors
    ``names`` and the draw's step size α, as plain tensors."""
    return [getattr(problem, name).detach().clone() for name in names] + [problem.consts(lam)["alpha"].detach().clone()]


def draws(problem, n, seed) -> torch.Tensor:
    return problem.sample_lambdas(n, torch.Generator().manual_seed(seed))


ESTIMATORS = {name: from_conf("estimator", f"estimator={name}") for name in ("itd", "itd_forward", "fp", "cg")}


# --- (c) hand-written twins: plain torch only; they receive tensors, never an hgbench object ----


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


def fixed_point(jt, b, k):
    """v_k of v ← Jᵀv + b from v = 0."""
    v = torch.zeros_like(b)
    for _ in range(k):
        v = jt(v) + b
    return v


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


TWINS = {"itd": itd_twin, "itd_forward": itd_forward_twin, "fp": aid_twin(fixed_point), "cg": aid_twin(conjugate_gradient)}


# --- the problems ------------------------------------------------------------------------------


def grid(ts, ks) -> list[tuple[int, int]]:
    return [(t, k) for t in ts for k in ks]


@dataclass(frozen=True)
class Case:
    label: str
    overrides: tuple[str, ...]  # of conf/: the problem as `hgbench run` would build it
    batched: dict[str, list[tuple[int, int]]]  # (b): estimator -> grid points
    not_batched: dict[str, str] = field(default_factory=dict)  # (b): estimator -> why it is left out
    # (a), (c), (d) run where set: the twin's builder and the problem's data tensors it takes
    twin: tuple[Callable[..., Twin], tuple[str, ...]] | None = None
    t_point: int = 0  # (c)
    t_big: int = 0  # (a): longest t of the grids
    t_forward: int = 0  # (a), (d): longest t for itd_forward (dim λ JVPs per step)


CASES = [
    Case("ridge d=200", ("problem=ridge", "problem.n_features=200", "problem.n_train=400"),
         batched={"itd_forward": grid((0, 20, 50), (10,)), "fp": grid((0, 100, 500), (10, 50)), "cg": grid((0, 100, 500), (10, 50))},
         twin=(ridge_twin, ("x_train", "y_train", "x_val", "y_val")), t_point=100, t_big=500, t_forward=100),
    Case("logistic d=20", ("problem=logistic",),
         batched={"itd_forward": grid((0, 20, 50), (10,)), "fp": grid((0, 100, 1000), (10, 50)), "cg": grid((0, 100, 1000), (10, 50))},
         twin=(logistic_twin, ("x_train", "b_train", "x_val", "b_val")), t_point=300, t_big=1000, t_forward=1000),
    Case("equilibrium_mnist d=100 n=1000", ("problem=equilibrium_mnist", "problem.state_dim=100", "problem.n_train=1000"),
         batched={"fp": [(20, 100)]},
         not_batched={"itd_forward": "dim λ = 89,510 JVPs per step", "cg": "∂₁Φ is not symmetric"}),
    Case("hyper_rep", ("problem=hyper_rep",),
         batched={"itd_forward": grid((0, 5, 10), (10,)), "fp": grid((0, 100, 500), (10, 50)), "cg": grid((0, 100, 500), (10, 50))}),
]  # fmt: skip


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
    """(c) one point: hgbench vs its hand-written twin."""
    build, names = case.twin
    twin = build(*twin_tensors(problem, lam, names))
    k = 50
    lines = [f"\n(c) one point (t = {case.t_point}, k = {k}): hgbench time / hand-written twin time\n",
             "| estimator | hgbench s (median) | by hand s (median) | ratio min / median / max | max abs diff of ĝ |\n|---|---|---|---|---|"]  # fmt: skip
    for name, est in ESTIMATORS.items():
        rows = []
        for _ in range(repeats):
            t_hg, g_hg = clock(lambda: hg_point(est, problem, lam, case.t_point, k))
            t_raw, g_raw = clock(lambda: TWINS[name](twin, lam, case.t_point, k))
            rows.append({"hg": t_hg, "raw": t_raw, "ratio": t_hg / t_raw, "diff": max_diff(g_hg, g_raw)})
            raw.append({"bench": "overhead", "problem": case.label, "estimator": name, **rows[-1]})
        med = pd.DataFrame(rows).median()
        lines.append(f"| {name} | {med.hg:.4f} | {med.raw:.4f} | {ratios(rows, 'ratio')} | {max(r['diff'] for r in rows):.1e} |")
    return lines


def one_pass(case, problem, lam, repeats, raw):
    """(a) a whole grid in one pass vs every point from scratch."""
    step = case.t_big // 10
    grids = {
        "itd": [(t, 0) for t in range(step, case.t_big + 1, step)],
        "itd_forward": [(t, 0) for t in range(case.t_forward // 10, case.t_forward + 1, case.t_forward // 10)],
        "fp": [(case.t_big, k) for k in range(50, 501, 50)],
        "cg": [(case.t_big, k) for k in range(5, 51, 5)],
    }
    lines = ["\n(a) a whole grid in one pass vs every point from scratch: time from scratch / time of one pass\n",
             "| estimator | grid | points | one pass s (median) | ratio min / median / max | target (≥ points/2) |\n|---|---|---|---|---|---|"]  # fmt: skip
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
    """(b) all λ draws at once vs a loop over the draws."""
    lams = draws(problem, 10, seed=1)
    lines = [f"\n(b) {len(lams)} λ draws: loop time / vmap time (same grid points, one curve per draw)\n",
             "| estimator | grid | loop s (median) | ratio min / median / max | max abs diff of ĝ |\n|---|---|---|---|---|"]  # fmt: skip
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
        lines.append(f"| {name} | {values(pairs)} | {pd.DataFrame(rows)['loop'].median():.4f} | {ratios(rows, 'ratio')} "
                     f"| {max(r['diff'] for r in rows):.1e} |")  # fmt: skip
    return lines


def memory(case, problem, lam):
    """(d) bytes saved for backward vs t."""
    ts = [10, 100, 1000]
    lines = ["\n(d) bytes saved for backward, per estimate (k = 20 for fp, cg)\n",
             "| estimator | " + " | ".join(f"t = {t}" for t in ts) + " |\n|---|" + "---|" * len(ts)]  # fmt: skip
    for name, est in ESTIMATORS.items():
        t_max = case.t_forward if name == "itd_forward" else max(ts)
        saved = hg_saved_bytes(est, problem, lam, [(t, 20) for t in ts if t <= t_max])
        lines.append(f"| {name} | " + " | ".join(f"{saved[t]:,}" if t in saved else "(skipped)" for t in ts) + " |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="results/bench")
    names = [case.label.split()[0] for case in CASES]
    parser.add_argument("--problems", nargs="+", choices=names, default=names, help="measure only these (default: all)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# hgbench benchmark\n\n`python scripts/bench.py --repeats {args.repeats}` — torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads, CPU, float64. Ratios: min / median / max over {args.repeats} repeats.\n"]  # fmt: skip
    print(lines[0], flush=True)
    raw = []

    def report(new):
        print("\n".join(new), flush=True)
        lines.extend(new)

    for case in (case for case in CASES if case.label.split()[0] in args.problems):
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
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    pd.DataFrame(raw).to_csv(out / "bench_raw.csv", index=False)
    print(f"written: {out / 'bench.md'}, {out / 'bench_raw.csv'}")


if __name__ == "__main__":
    main()
