"""Where the time of one `hgbench run` goes: a cProfile of the command, in process, and the
shares of its parts.

    OMP_NUM_THREADS=1 python scripts/profile_run.py [--out results/bench/profile_run_cg.txt] [OVERRIDES...]

Default overrides: `problem=logistic estimator=cg` (the command's defaults otherwise: grid=diag,
10 λ draws, the figure drawn) into a temporary folder. The process starts with nothing of
hgbench, Hydra, pandas or torch imported, so imports count as they do for a user. Writes the
share table (each part's cumulative time over the whole run's) and the 60 most expensive calls
by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import sys
import tempfile
import time
from pathlib import Path

# (label, part of the file's path, function): the parts whose cumulative times are reported; they
# overlap where a part imports modules (torch._dynamo where a path still imports it, the figure
# matplotlib)
PARTS = [
    ("imports (every module loaded, torch._dynamo included)", "<frozen importlib._bootstrap>", "_find_and_load"),
    ("  of which torch._dynamo (imported by torch.func's first reverse-mode call)", "torch/_dynamo/__init__.py", "<module>"),
    ("references (float64, every λ draw)", "hgbench/core/reference.py", "reference"),
    ("estimators (every grid point, every draw)", "hgbench/estimators/", "estimate"),
    ("figure", "hgbench/analysis/plot.py", "plot"),
    ("writing the CSV", "hgbench/analysis/results.py", "write_csv_atomic"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="write the report here too")
    parser.add_argument("overrides", nargs="*", default=["problem=logistic", "estimator=cg"])
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        sys.argv = ["hgbench", "run", *ns.overrides, f"hydra.run.dir={scratch}"]
        profile = cProfile.Profile()
        began = time.perf_counter()
        profile.enable()
        try:
            from hgbench.running.cli import main as hgbench

            hgbench()
        except SystemExit as done:
            if done.code not in (0, None):
                raise
        finally:
            profile.disable()
        wall = time.perf_counter() - began
    stats = pstats.Stats(profile)
    total = {}
    for (path, _, name), (_, _, _, cumulative, _) in stats.stats.items():
        for label, where, function in PARTS:
            if where in path and name == function:
                total[label] = max(total.get(label, 0.0), cumulative)  # the outermost call holds the whole
    lines = [
        f"cProfile of `hgbench run {' '.join(ns.overrides)}` (its defaults otherwise), in process, from a fresh interpreter;",
        f"python scripts/profile_run.py {' '.join(ns.overrides)}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')};",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average at the end {os.getloadavg()[0]:.1f}.",
        f"Wall time under the profiler: {wall:.2f} s (profiling slows Python-heavy parts; read the shares).",
        "Parts overlap where one imports modules (the figure imports matplotlib; torch._dynamo, when a path imports it).",
        "",
        "| part | s (cumulative) | share of the run |",
        "|---|---|---|",
    ]
    for label, _, _ in PARTS:
        seconds = total.get(label, 0.0)
        lines.append(f"| {label} | {seconds:.2f} | {100 * seconds / wall:.1f}% |")
    listing = io.StringIO()
    pstats.Stats(profile, stream=listing).sort_stats("cumulative").print_stats(60)
    report = "\n".join(lines) + "\n\n" + listing.getvalue()
    print(report)
    if ns.out:
        Path(ns.out).write_text(report)


if __name__ == "__main__":
    main()
