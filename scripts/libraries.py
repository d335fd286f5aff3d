"""The libraries beside hgbench's estimators (issue 26): every adapter (torchopt, higher, torchdeq,
jaxopt; the extras of `make setup`) and hgbench's estimator of the same role, over the built-in
problems where each applies, small sizes, a few λ draws; writes results/libraries/:

    <problem>.csv                 the rows (hgbench.evaluate's columns), one per λ draw × grid point × estimator
    <problem>_vs_k.png, _vs_time.png  median relative error vs k (t for the unrolled ones) and vs time per estimate
    tables.md                     per problem: library × solver → best error reached, error at k = 10 and 50,
                                  median time per estimate, and the same for hgbench's estimator of its role

Solvers (AID-like, torchdeq's phantom gradient) run at a solved inner problem (t = T below, the
k_sweep protocol); unrolled ones (itd, torchopt_unrolled, higher_unrolled) over t. Each library's
solver with an early stop runs twice: at its default tolerance and at 0 (``_tol0``: exactly k
iterations), so that a default tolerance is told apart from the method (not torchdeq's anderson nor
jaxopt's gmres, whose default tolerance never bound on these problems in a trial run; jaxopt's
normal_cg only at 0, its default tol = 1e-5 acting as its cg's does, to keep the run short).

    python scripts/libraries.py [results/libraries]      (≈ 5 min on 2 shared cores)
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore", message="We.ve integrated functorch", category=FutureWarning)  # torchopt 0.7.3 calls functorch.vjp

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

import hgbench  # noqa: E402
from hgbench.analysis.results import markdown, write_csv_atomic, write_text_atomic  # noqa: E402
from hgbench.running.runner import UserError  # noqa: E402

KS = [1, 2, 5, 10, 20, 50, 100]
TS = [1, 2, 5, 10, 20, 50, 100, 200, 500]
T = 500  # inner steps before the solvers: the inner problem solved (the k_sweep protocol)
N_LAMBDAS = 2
PROBLEMS = {
    "ridge": {"n_train": 100, "n_val": 100, "n_features": 20},
    "logistic": {"n_samples": 200, "n_features": 10},
    "kernel_ridge": {"data": "synthetic", "n_samples": 80, "n_features": 5},
    "meta_learning": {"n_tasks": 5, "n_features": 6},
    "hyper_rep": {"n_tasks": 3, "rep_dim": 4},
}
# (name in rows, preset, settings, library, hgbench's estimator of the same role)
SOLVERS = [
    ("fp", "fp", {}, "hgbench", None),
    ("neumann", "neumann", {}, "hgbench", None),
    ("cg", "cg", {}, "hgbench", None),
    ("cg_normal", "cg_normal", {}, "hgbench", None),
    ("gmres", "gmres", {}, "hgbench", None),
    ("itd_trunc", "itd_trunc", {}, "hgbench", None),
    ("torchopt_cg", "torchopt_cg", {}, "torchopt", "cg"),
    ("torchopt_cg_tol0", "torchopt_cg", {"rtol": 0.0}, "torchopt", "cg"),
    ("torchopt_neumann", "torchopt_neumann", {}, "torchopt", "neumann"),
    ("torchdeq_fp", "torchdeq_fp", {}, "torchdeq", "fp"),
    ("torchdeq_fp_tol0", "torchdeq_fp", {"tol": 0.0}, "torchdeq", "fp"),
    ("torchdeq_anderson", "torchdeq_anderson", {}, "torchdeq", "fp"),
    ("torchdeq_broyden", "torchdeq_broyden", {}, "torchdeq", "fp"),
    ("torchdeq_broyden_tol0", "torchdeq_broyden", {"tol": 0.0}, "torchdeq", "fp"),
    ("torchdeq_phantom", "torchdeq_phantom", {}, "torchdeq", "itd_trunc"),
    ("jaxopt_cg", "jaxopt_cg", {}, "jaxopt", "cg"),
    ("jaxopt_cg_tol0", "jaxopt_cg", {"tol": 0.0}, "jaxopt", "cg"),
    ("jaxopt_normal_cg_tol0", "jaxopt_normal_cg", {"tol": 0.0}, "jaxopt", "cg_normal"),
    ("jaxopt_gmres", "jaxopt_gmres", {}, "jaxopt", "gmres"),
]
UNROLLED = [
    ("itd", "itd", {}, "hgbench", None),
    ("torchopt_unrolled", "torchopt_unrolled", {}, "torchopt", "itd"),
    ("higher_unrolled", "higher_unrolled", {}, "higher", "itd"),
]
ALL = {name: (library, ours) for name, _, _, library, ours in SOLVERS + UNROLLED}


def run(problem: str, settings: dict, estimators: list, grid: dict) -> tuple[pd.DataFrame, list[str]]:
    """The rows of every estimator that applies to the problem, and the refusals (one line each)."""
    frames, refused = [], []
    for name, preset, options, _, _ in estimators:
        try:
            df = hgbench.evaluate(
                (problem, settings),
                [(preset, {**options, "name": name})],
                grid[0],
                n_lambdas=N_LAMBDAS,
                progress=False,
                plot=False,
                **grid[1],
            )
        except UserError as err:
            refused.append(f"{name}: {err}")
            continue
        frames.append(df)
    return pd.concat(frames, ignore_index=True), refused


def axis(df: pd.DataFrame) -> pd.Series:
    """The iteration count a row is plotted against: k for solvers, t for the unrolled ones (k empty)."""
    return df["k"].where(df["k"].notna(), df["t"])


def at(curve: pd.Series, n: int) -> float:
    return float(curve.get(n, float("nan")))


def table(df: pd.DataFrame) -> pd.DataFrame:
    """Per estimator: median over λ draws of err_rel at each k (t), then the best, the values at
    10 and 50, and the median time per estimate; beside it, the same of hgbench's estimator of its role."""
    ok = df[df["status"] == "ok"].assign(n=axis)
    curves = ok.groupby(["estimator", "n"])["err_rel"].median()
    times = ok.groupby("estimator")["time_s"].median()
    rows = []
    for name in ok["estimator"].unique():
        library, ours = ALL[name]
        if library == "hgbench":
            continue
        mine, theirs = curves[name], curves.get(ours) if ours in times.index else None
        rows.append(
            {
                "library": library,
                "estimator": name,
                "role of": ours,
                "best err": mine.min(),
                "err @10": at(mine, 10),
                "err @50": at(mine, 50),
                "time/est (ms)": 1e3 * times[name],
                "hgbench best": theirs.min() if theirs is not None else float("nan"),
                "hgbench @10": at(theirs, 10) if theirs is not None else float("nan"),
                "hgbench @50": at(theirs, 50) if theirs is not None else float("nan"),
                "hgbench time/est (ms)": 1e3 * times.get(ours, float("nan")),
            }
        )
    return pd.DataFrame(rows)


def figures(df: pd.DataFrame, problem: str, out: Path) -> None:
    ok = df[df["status"] == "ok"].assign(n=axis)
    med = ok.groupby(["estimator", "n"]).agg(err=("err_rel", "median"), time=("time_s", "median")).reset_index()
    for x, label in (("n", "k (t for unrolled)"), ("time", "time per estimate (s)")):
        fig, ax = plt.subplots(figsize=(8, 5))
        for name, part in med.groupby("estimator"):
            library = ALL[name][0]
            ax.loglog(
                part[x],
                part["err"].clip(lower=1e-17),
                marker="o",
                ms=3,
                lw=1.2 if library == "hgbench" else 0.9,
                ls="-" if library == "hgbench" else "--",
                label=f"{name}",
            )
        ax.set_xlabel(label)
        ax.set_ylabel("median ‖ĝ − ∇f‖ / ‖∇f‖ (clipped at 1e-17)")
        ax.set_title(f"{problem}: libraries (dashed) and hgbench (solid), {N_LAMBDAS} λ draws")
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(out / f"{problem}_vs_{'k' if x == 'n' else 'time'}.png", dpi=110)
        plt.close(fig)


def fmt(value) -> str:
    return "—" if isinstance(value, float) and value != value else (f"{value:.2e}" if isinstance(value, float) else str(value))


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    blocks = []
    for problem, settings in PROBLEMS.items():
        solvers, refused = run(problem, settings, SOLVERS, ("k_sweep", {"grid.t": T, "grid.k": KS}))
        unrolled, refused_u = run(problem, settings, UNROLLED, ("t_sweep", {"grid.t": TS, "grid.k": 1}))
        df = pd.concat([solvers, unrolled], ignore_index=True)
        write_csv_atomic(df, out / f"{problem}.csv")
        figures(df, problem, out)
        shown = table(df).map(fmt)
        blocks.append(f"### {problem}\n\n{markdown(shown).rstrip()}\n" + "".join(f"\n- refused: {line}" for line in refused + refused_u))
        print(f"{problem}: {len(df)} rows, {df['status'].ne('ok').sum()} not ok", flush=True)
    write_text_atomic(
        out / "tables.md",
        "# Libraries beside hgbench's estimators (scripts/libraries.py)\n\n"
        "Median over λ draws of ‖ĝ − ∇f‖/‖∇f‖; time: median per estimate (ms).\n\n" + "\n".join(blocks),
    )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results/libraries"))
