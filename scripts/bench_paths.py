"""The paths of hgbench's estimates side by side: matrix-free products vs a dense J built once per
linearization (hgbench.core.linearization), looped over λ draws vs batched (torch.func.vmap;
itd by torch.func.grad per t), in one run.

    python scripts/bench_paths.py [--repeats 3] [--dims 20 100 300 500 1000 2000]

(a) the whole curve per estimator (cg, fp, itd) on the default logistic problem (d = 20),
    10 λ draws × t = k ∈ {10, 20, …, 100}, float64, estimates only: the time of each path and its
    ratio to the loop over matrix-free products (per repeat, interleaved; min/median/max), and the
    largest relative difference of the estimates from that path's;
(b) the threshold of linearization=auto: cg at one point t = k = 50, one λ draw, on ridge with
    n_features = d (n_train = n_val = 200): products vs dense, per d.
Prints markdown tables; run with 1 thread (set here).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hgbench.core.bound import estimate
from hgbench.estimators.cg import ConjugateGradient
from hgbench.estimators.fp import FixedPoint
from hgbench.estimators.itd import ITDReverse
from hgbench.problems.logistic import Logistic
from hgbench.problems.ridge import Ridge
from hgbench.running.batch import estimate_batched

PAIRS = [(t, t) for t in range(10, 101, 10)]


def loop(estimator, problem, lams, pairs, dense):
    return torch.stack([torch.stack([e.grad for e in estimate(estimator, problem, lam, pairs, dense=dense)]) for lam in lams])


def batched(estimator, problem, lams, pairs, dense):
    return torch.stack([torch.stack([e.grad for e in row]) for row in estimate_batched(estimator, problem, lams, pairs, dense)])


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def spread(values):
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def curves(repeats: int) -> None:
    problem = Logistic("logistic", seed=0, n_samples=1000, n_features=20, label_noise=0.1, lam_low=-5.0, lam_high=-1.0)
    lams = problem.sample_lambdas(10, torch.Generator().manual_seed(0))
    paths = {
        "loop, products": (loop, False),
        "loop, dense J": (loop, True),
        "batched, products": (batched, False),
        "batched, dense J": (batched, True),
    }
    print(f"(a) whole curve, logistic d = {problem.w_dim}, 10 λ draws × t = k ∈ {{10, …, 100}}, float64, 1 thread, {repeats} repeats")
    print("| estimator | path | time (s, median) | loop-products ÷ path (min / median / max) | max rel. diff of ĝ |")
    print("|---|---|---|---|---|")
    for estimator in (ConjugateGradient("cg"), FixedPoint("fp"), ITDReverse("itd")):
        chosen = {"loop, products": paths["loop, products"], "batched": paths["batched, products"]} if estimator.name == "itd" else paths
        for fn, dense in chosen.values():  # one-time set-up (torch.func's first call) outside the timing
            fn(estimator, problem, lams[:2], [(1, 1)], dense)
        times = {name: [] for name in chosen}
        outs = {}
        for _ in range(repeats):
            for name, (fn, dense) in chosen.items():
                seconds, outs[name] = timed(fn, estimator, problem, lams, PAIRS, dense)
                times[name].append(seconds)
        base = outs["loop, products"]
        for name in chosen:
            ratios = [a / b for a, b in zip(times["loop, products"], times[name])]
            diff = ((outs[name] - base).norm(dim=-1) / base.norm(dim=-1)).max().item()
            print(f"| {estimator.name} | {name} | {statistics.median(times[name]):.3f} | {spread(ratios)} | {diff:.1e} |")


def threshold(dims: list[int], repeats: int) -> None:
    print("\n(b) cg at t = k = 50, one λ draw, ridge with n_features = d: products vs dense J (median of repeats)")
    print("| d | products (s) | dense J (s) | products ÷ dense |")
    print("|---|---|---|---|")
    estimator = ConjugateGradient("cg")
    for d in dims:
        problem = Ridge("ridge", seed=0, n_train=200, n_val=200, n_features=d, cond=100.0, noise=0.1, lam_low=-4.0, lam_high=0.0)
        lam = problem.sample_lambdas(1, torch.Generator().manual_seed(0))
        loop(estimator, problem, lam, [(1, 1)], True)
        times = {False: [], True: []}
        for _ in range(repeats):
            for dense in (False, True):
                times[dense].append(timed(loop, estimator, problem, lam, [(50, 50)], dense)[0])
        products, dense = statistics.median(times[False]), statistics.median(times[True])
        print(f"| {d} | {products:.4f} | {dense:.4f} | {products / dense:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dims", type=int, nargs="+", default=[20, 100, 300, 500, 1000, 2000])
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    curves(args.repeats)
    threshold(args.dims, args.repeats)


if __name__ == "__main__":
    main()
