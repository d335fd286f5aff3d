"""Speed and memory of hgbench's estimators, measured side by side in one run.

    python scripts/bench.py [--repeats 5] [--out results/bench]

(a) one pass over a grid vs recomputing every grid point from scratch, per estimator;
(b) all λ draws at once (torch.func.vmap) vs a loop over 10 draws;
(c) each estimator's time for one point vs a minimal hand-written loop of the same tensor
    operations (same Φ steps, same autograd VJPs / vmapped JVPs): hgbench's overhead;
(d) bytes saved for backward vs t, per estimator.
Ratios are computed per repeat (both sides timed back to back) and reported as min/median/max.
Writes results/bench/bench.md and the raw timings as CSV.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from hgbench.core.batch import estimate_batched
from hgbench.estimators.cg import ConjugateGradient, conjugate_gradient
from hgbench.estimators.fp import FixedPoint
from hgbench.estimators.itd import ITDForward, ITDReverse
from hgbench.problems.logistic import Logistic
from hgbench.problems.ridge import Ridge

ESTIMATORS = {"itd": ITDReverse("itd"), "itd_forward": ITDForward("itd_forward"), "fp": FixedPoint("fp"), "cg": ConjugateGradient("cg")}


def problems():
    return {
        "ridge d=200": Ridge("ridge", seed=0, n_train=400, n_val=200, n_features=200, cond=100.0, noise=0.1, lam_low=-4.0, lam_high=0.0),
        "logistic d=20": Logistic("logistic", seed=0, n_samples=1000, n_features=20, label_noise=0.1, lam_low=-5.0, lam_high=-1.0),
    }


# --- (c) the same tensor operations, written out by hand ----------------------------------------
def _setup(problem, lam, t):
    consts = problem.consts(lam.detach())  # per-draw constants are not differentiated
    phi = lambda w, l: problem.phi(w, l, consts)  # noqa: E731
    w = problem.w0(lam)
    for _ in range(t):
        w = phi(w, lam)
    return phi, w


def _aid_by_hand(problem, lam, t, k, solve):
    phi, w = _setup(problem, lam, t)
    grad_w, grad_lam = torch.func.grad(problem.outer, argnums=(0, 1))(w, lam)
    w_leaf, lam_leaf = w.detach().requires_grad_(), lam.detach().requires_grad_()
    with torch.enable_grad():
        out = phi(w_leaf, lam_leaf)
    jtv = lambda v: torch.autograd.grad(out, w_leaf, v, retain_graph=True)[0]  # noqa: E731
    v = solve(jtv, grad_w, k)
    return grad_lam + torch.autograd.grad(out, lam_leaf, v, retain_graph=True)[0]


def fp_by_hand(problem, lam, t, k):
    def solve(jtv, b, k):
        v = torch.zeros_like(b)
        for _ in range(k):
            v = jtv(v) + b
        return v

    return _aid_by_hand(problem, lam, t, k, solve)


def cg_by_hand(problem, lam, t, k):
    def solve(jtv, b, k):
        iterates = conjugate_gradient(lambda v: v - jtv(v), b)
        v = torch.zeros_like(b)
        for _ in range(k):
            v = next(iterates)
        return v

    return _aid_by_hand(problem, lam, t, k, solve)


def itd_by_hand(problem, lam, t, k):
    lam_leaf = lam.detach().requires_grad_()
    with torch.enable_grad():
        _, w = _setup(problem, lam_leaf, t)
        return torch.autograd.grad(problem.outer(w, lam_leaf), lam_leaf)[0]


def itd_forward_by_hand(problem, lam, t, k):
    consts = problem.consts(lam)
    eye = torch.eye(lam.numel(), dtype=lam.dtype)
    push = lambda w, dw, dl: torch.func.jvp(lambda u, l: problem.phi(u, l, consts), (w, lam), (dw, dl))  # noqa: E731
    step = torch.func.vmap(push, in_dims=(None, 1, 0), out_dims=(0, 1))
    w, jac = problem.w0(lam), torch.zeros(problem.w_dim, lam.numel(), dtype=lam.dtype)
    for _ in range(t):
        w_batch, jac = step(w, jac, eye)
        w = w_batch[0]
    grad_w, grad_lam = torch.func.grad(problem.outer, argnums=(0, 1))(w, lam)
    return jac.T @ grad_w + grad_lam


BY_HAND = {"itd": itd_by_hand, "itd_forward": itd_forward_by_hand, "fp": fp_by_hand, "cg": cg_by_hand}


def clock(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def ratios(rows, key):
    s = pd.Series([r[key] for r in rows])
    return f"{s.min():.2f} / {s.median():.2f} / {s.max():.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="results/bench")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# hgbench benchmark\n\n`python scripts/bench.py --repeats {args.repeats}` — torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads, CPU, float64. Ratios: min / median / max over {args.repeats} repeats.\n"]  # fmt: skip
    raw = []
    for pname, problem in problems().items():
        lam = problem.sample_lambdas(1, torch.Generator().manual_seed(0))[0]
        for est in ESTIMATORS.values():  # warm-up: one-time framework setup
            list(est.estimate(problem, lam, [(1, 1)]))
        t_point = 100 if pname.startswith("ridge") else 300
        # (c) overhead vs a hand-written loop
        lines.append(f"\n## {pname}\n\n(c) one point (t = {t_point}, k = 50): hgbench time / hand-written loop time\n")
        lines.append("| estimator | hgbench s (median) | by hand s (median) | ratio min / median / max | max abs diff of ĝ |\n|---|---|---|---|---|")
        for name, est in ESTIMATORS.items():
            rows = []
            for _ in range(args.repeats):
                t_hg, (e,) = clock(lambda: list(est.estimate(problem, lam, [(t_point, 50)])))
                t_raw, g = clock(lambda: BY_HAND[name](problem, lam, t_point, 50))
                rows.append({"hg": t_hg, "raw": t_raw, "ratio": t_hg / t_raw, "diff": (e.grad - g).abs().max().item()})
                raw.append({"bench": "overhead", "problem": pname, "estimator": name, **rows[-1]})
            med = pd.DataFrame(rows).median()
            lines.append(f"| {name} | {med.hg:.4f} | {med.raw:.4f} | {ratios(rows, 'ratio')} | {max(r['diff'] for r in rows):.1e} |")
        # (a) one pass vs each point from scratch
        t_big = 500 if pname.startswith("ridge") else 1000
        grids = {
            "itd": [(t, None) for t in range(t_big // 10, t_big + 1, t_big // 10)],
            "itd_forward": [(t, None) for t in range(t_big // 10, t_big + 1, t_big // 10)],
            "fp": [(t_big, k) for k in range(50, 501, 50)],
            "cg": [(t_big, k) for k in range(5, 51, 5)],
        }
        if pname.startswith("ridge"):  # itd_forward's 200 JVPs per step: keep its grid short
            grids["itd_forward"] = [(t, None) for t in range(10, 101, 10)]
        lines.append("\n(a) a whole grid in one pass vs every point from scratch: time from scratch / time of one pass\n")
        lines.append("| estimator | grid | points | one pass s (median) | ratio min / median / max | target (≥ points/2) |\n|---|---|---|---|---|---|")
        for name, est in ESTIMATORS.items():
            pairs = [(t, k if k is not None else 0) for t, k in grids[name]]
            rows = []
            for _ in range(args.repeats):
                t_one, _ = clock(lambda: list(est.estimate(problem, lam, pairs)))
                t_all, _ = clock(lambda: [list(est.estimate(problem, lam, [p])) for p in pairs])
                rows.append({"one": t_one, "all": t_all, "ratio": t_all / t_one})
                raw.append({"bench": "one_pass", "problem": pname, "estimator": name, **rows[-1]})
            ts = sorted({t for t, _ in pairs})
            label = f"t = {ts[0]}..{ts[-1]}" if len(ts) > 1 else f"t = {ts[0]}, k = {pairs[0][1]}..{pairs[-1][1]}"
            target = "—" if name == "itd" else f"{len(pairs) / 2:.0f}"
            lines.append(f"| {name} | {label} | {len(pairs)} | {pd.DataFrame(rows)['one'].median():.4f} | {ratios(rows, 'ratio')} | {target} |")
        # (b) all λ draws at once (torch.func.vmap) vs a loop over the draws
        lams = problem.sample_lambdas(10, torch.Generator().manual_seed(1))
        lines.append("\n(b) 10 λ draws: loop time / vmap time (same grid points, one curve per draw)\n")
        lines.append("| estimator | grid | loop s (median) | ratio min / median / max |\n|---|---|---|---|")
        for name, est in ESTIMATORS.items():
            if not est.batchable:
                lines.append(f"| {name} | — | — | does not vectorize (autograd tape) |")
                continue
            pairs = [(t, 10) for t in (0, 20, 50)] if name == "itd_forward" else [(t, k) for t in (0, 100, t_big) for k in (10, 50)]
            estimate_batched(est, problem, lams[:2], pairs)  # warm-up of the vmapped path
            rows = []
            for _ in range(args.repeats):
                t_loop, _ = clock(lambda: [list(est.estimate(problem, lam, pairs)) for lam in lams])
                t_vmap, _ = clock(lambda: estimate_batched(est, problem, lams, pairs))
                rows.append({"loop": t_loop, "vmap": t_vmap, "ratio": t_loop / t_vmap})
                raw.append({"bench": "vmap", "problem": pname, "estimator": name, **rows[-1]})
            label = f"t ∈ {{{', '.join(str(t) for t in sorted({t for t, _ in pairs}))}}}"
            lines.append(f"| {name} | {label} | {pd.DataFrame(rows)['loop'].median():.4f} | {ratios(rows, 'ratio')} |")
        # (d) memory vs t
        ts = [10, 100, 1000]
        lines.append("\n(d) bytes saved for backward, per estimate (k = 20 for fp, cg)\n")
        lines.append("| estimator | " + " | ".join(f"t = {t}" for t in ts) + " |\n|---|" + "---|" * len(ts))
        for name, est in ESTIMATORS.items():
            if name == "itd_forward" and pname.startswith("ridge"):
                grid = [(t, 20) for t in ts[:2]]
            else:
                grid = [(t, 20) for t in ts]
            saved = {e.t: e.cost.saved_bytes for e in est.estimate(problem, lam, grid)}
            lines.append(f"| {name} | " + " | ".join(f"{saved[t]:,}" if t in saved else "(skipped)" for t in ts) + " |")
    text = "\n".join(lines) + "\n"
    (out / "bench.md").write_text(text)
    pd.DataFrame(raw).to_csv(out / "bench_raw.csv", index=False)
    print(text)
    print(f"written: {out / 'bench.md'}, {out / 'bench_raw.csv'}")


if __name__ == "__main__":
    main()
