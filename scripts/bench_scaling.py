"""Cost as the problem grows (issue 28): set-up, reference and estimate time per λ draw against
dim w, with the fitted exponent of each (the slope of log time against log d, least squares).

    OMP_NUM_THREADS=1 python scripts/bench_scaling.py [--out results/bench] [--quick]

Per problem and d, one λ draw (the run's first, seed 0): ``setup`` = building the problem
(its data, its constants), ``reference`` = the float64 reference with its certificate's norms
(hgbench.core.reference, ``dense`` or ``matrix_free``) and ``certify``, ``estimate`` = AID-CG's
estimate at t = k = 50 on the path `hgbench run` takes at that d (a dense J for d ≤ 300, products
otherwise; the median of 3 after one untimed warm-up). Problems: ridge (n = 200 + 200 samples;
its synthetic data draw a d × d orthogonal basis, so d stops at 3,000) and logistic (n = 400 +
400 samples; the dense reference to d = 1,000: its damped Newton steps each form and factor the
d × d Hessian, and with d ≫ n it takes tens of them — 44 at d = 1,000, 130 s at d = 3,000; the
matrix-free one to d = 10⁵). Writes scaling_raw.csv and scaling.md (the table, the exponents, the
machine and the command).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from hgbench.core.bound import estimate
from hgbench.core.linearization import DENSE_MAX_DIM
from hgbench.core.reference import certify, reference
from hgbench.estimators.cg import ConjugateGradient
from hgbench.problems.logistic import Logistic
from hgbench.problems.ridge import Ridge

PROBLEMS = {
    "ridge": lambda d: Ridge("ridge", 0, n_train=200, n_val=200, n_features=d, cond=100.0, noise=0.1, lam_low=-4.0, lam_high=0.0),
    "logistic": lambda d: Logistic("logistic", 0, n_samples=800, n_features=d, label_noise=0.1, lam_low=-5.0, lam_high=-1.0),
}
# (problem, reference method, dims)
CASES = [
    ("ridge", "dense", (100, 300, 1000, 3000)),
    ("ridge", "matrix_free", (100, 300, 1000, 3000)),
    ("logistic", "dense", (100, 300, 1000)),
    ("logistic", "matrix_free", (100, 1000, 10_000, 100_000)),
]


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(name: str, method: str, d: int) -> dict:
    built = {}
    setup = seconds(lambda: built.setdefault("p", PROBLEMS[name](d)))
    problem = built["p"]
    lam = problem.sample_lambdas(1, torch.Generator().manual_seed(0))[0]
    found = {}
    ref_time = seconds(lambda: found.update(ref=reference(problem, lam, method)))
    certificate = certify(found["ref"])
    cg, dense = ConjugateGradient("cg"), d <= DENSE_MAX_DIM
    list(estimate(cg, problem, lam, [(1, 1)], dense=dense))
    times = [seconds(lambda: list(estimate(cg, problem, lam, [(50, 50)], dense=dense))) for _ in range(3)]
    return {
        "problem": name,
        "reference_method": method,
        "d": d,
        "setup_s": setup,
        "reference_s": ref_time,
        "estimate_s": statistics.median(times),
        "estimate_path": "dense" if dense else "products",
        "certified": certificate["certified"],
        "norms_source": (found["ref"].norms or {}).get("source", ""),
    }


def exponent(ds, ts) -> float:
    """Least-squares slope of log t against log d."""
    x, y = [math.log(d) for d in ds], [math.log(t) for t in ts]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    parser.add_argument("--quick", action="store_true", help="d ≤ 1000 only (a check of the script)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip():
        commit += " with uncommitted changes"  # measured before this run writes its files
    for method in ("dense", "matrix_free"):  # one-time set-up (lazy imports, first vmap) lands in no row
        small = PROBLEMS["logistic"](10)
        reference(small, small.sample_lambdas(1, torch.Generator().manual_seed(0))[0], method)
    rows = []
    for name, method, dims in CASES:
        for d in dims:
            if args.quick and d > 1000:
                continue
            rows.append(measure(name, method, d))
            print({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
    frame = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "scaling_raw.csv", index=False)
    lines = [
        "# Cost as the problem grows (issue 28)",
        "",
        f"Written by `OMP_NUM_THREADS=1 python scripts/bench_scaling.py{' --quick' if args.quick else ''}` at commit {commit}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC — torch {torch.__version__}, 1 thread, float64, "
        f"{platform.machine()}, {os.cpu_count()} cores visible; load average at the start {load:.1f} (1 min). "
        "One λ draw per row (seed 0); see the script's docstring for what each time covers.",
        "",
        "| problem | reference | d | set-up s | reference s | estimate s (cg, t = k = 50; path) | reference ÷ estimate | certified | the certificate's norms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['problem']} | {row['reference_method']} | {row['d']:,} | {row['setup_s']:.3g} | {row['reference_s']:.3g} | "
            f"{row['estimate_s']:.3g} ({row['estimate_path']}) | {row['reference_s'] / row['estimate_s']:.3g} | "
            f"{row['certified']} | {row['norms_source']} |"
        )
    lines += ["", "Fitted exponents (time ∝ d^e, least squares over the rows' d):", ""]
    lines += ["| problem | reference | d range | set-up e | reference e | estimate e |", "|---|---|---|---|---|---|"]
    for (name, method), group in frame.groupby(["problem", "reference_method"], sort=False):
        if len(group) < 2:
            continue
        ds = group["d"].tolist()
        fit = [exponent(ds, group[col].tolist()) for col in ("setup_s", "reference_s", "estimate_s")]
        lines.append(f"| {name} | {method} | {min(ds):,}–{max(ds):,} | {fit[0]:.2f} | {fit[1]:.2f} | {fit[2]:.2f} |")
    (args.out / "scaling.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out / 'scaling.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
