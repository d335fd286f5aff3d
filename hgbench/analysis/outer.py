"""The rows of outer-loop runs (mode=outer, hgbench.running.outer): columns, loading, the
time-to-ε summary and the figures (suboptimality; training curves of problems with metrics).

Suboptimality. For the runs of one outer problem (the same ``problem_id``: same problem
configuration, data and seed, hence the same f), f* is the smallest f(λ_s) any of them reached,
and the gap of a run at step s is f(λ_s) − f*. A run reaches ε at the first evaluated step with

    f(λ_s) − f* ≤ ε · (f(λ_0) − f*)

(ε relative to the initial gap, so that it means the same on every problem and seed); its time
and VJP-equivalents to ε are the cumulative ``time_s`` and ``vjp_eq`` of that row (the work of
the steps 0, …, s − 1 that produced λ_s). f is evaluated every ``outer.eval_every`` steps, so the
step to ε is known to that resolution.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hgbench.analysis.results import IDENTITY, labels, load

OUTER_CSV = "outer.csv"
# what a problem with metrics (Problem.trainable) reports of the model at λ (Problem.evaluate)
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
COLUMNS = [
    "problem", "estimator", "role", "seed", "warm_start", "optimizer", "lr", "momentum", "t", "k", "step",
    "outer_value", "f", "err_abs", "err_rel", "q", "q_bound", *METRICS, "lam_norm",
    "time_s", "ref_time_s", "n_phi", "n_vjp", "n_jvp", "vjp_eq", "dtype", "device", "status", "reason",
    "problem_id", *IDENTITY,
]  # fmt: skip
KEY = ["run_id", "problem", "estimator", "warm_start", "seed", "step", "t", "k", "dtype", "device"]
EPS = 1e-3  # the default relative ε of the time-to-ε summary
FLOOR = 1e-8  # gaps of 0 (the best run's best step) and errors below this show at this value on the log axes


def load_outer(path: Path) -> pd.DataFrame:
    """The rows of an outer.csv, or of every outer.csv below a directory (a sweep's combined file
    and its jobs' files are not double counted)."""
    return load(path, OUTER_CSV, KEY)


def with_gaps(df: pd.DataFrame) -> pd.DataFrame:
    """df with ``run`` (the configuration's label: estimator, warm start and the overrides that
    tell runs apart, seeds pooled), ``f_star`` (the best f of its outer problem), ``gap``
    (f − f*) and ``gap0`` (the run's initial gap f(λ_0) − f*)."""
    names = df["estimator"].astype(str) + ", warm=" + df["warm_start"].astype(str)
    seedless = [" ".join(o for o in str(x).split() if not o.startswith("seed=")) for x in df["overrides"].fillna("")]
    configuration = pd.Series(seedless, index=df.index) + "|" + names  # one run per seed: the same configuration
    run = labels(df.assign(run_id=configuration, overrides=seedless), names)
    f_star = df.groupby("problem_id")["f"].transform("min")
    out = df.assign(run=run, f_star=f_star, gap=df["f"] - f_star)
    first = out[out["f"].notna()].sort_values("step").groupby("run_id")["gap"].first()
    return out.assign(gap0=out["run_id"].map(first))


def summary(df: pd.DataFrame, eps: float = EPS) -> pd.DataFrame:
    """Per problem and configuration (estimator × warm start, seeds pooled): how many seeds
    reached ε (module docstring), the median time and VJP-equivalents to ε over the seeds that
    did, and the median final relative gap (f − f*)/(f(λ_0) − f*), final f and test metric."""
    df = with_gaps(df)
    out = []
    for (problem, run), part in df.groupby(["problem", "run"], sort=True):
        reached, finals = [], []
        for _, rows in part.groupby("run_id"):
            rows = rows[rows["f"].notna()].sort_values("step")
            if rows.empty:
                continue
            scale = rows["gap0"].iloc[0]
            hit = rows[rows["gap"] <= eps * scale]
            if len(hit):
                reached.append(hit.iloc[0])
            last = rows.iloc[-1]
            finals.append({"f": last["f"], "test_acc": last["test_acc"], "rel_gap": last["gap"] / scale if scale > 0 else 0.0})
        final = pd.DataFrame(finals, columns=["f", "test_acc", "rel_gap"])  # none: a run that ended before its first evaluation
        hits = pd.DataFrame(reached)
        out.append({
            "problem": problem, "run": run, "seeds": len(finals), "reached": len(reached),
            "time_to_eps_s": hits["time_s"].median() if len(hits) else np.nan,
            "vjp_eq_to_eps": hits["vjp_eq"].median() if len(hits) else np.nan,
            "step_to_eps": hits["step"].median() if len(hits) else np.nan,
            "final_rel_gap": final["rel_gap"].median(), "final_f": final["f"].median(),
            "test_acc": final["test_acc"].median() if final["test_acc"].notna().any() else np.nan,
            "status": ",".join(sorted(set(part["status"]))),
        })  # fmt: skip
    return pd.DataFrame(out)


def summary_text(df: pd.DataFrame, eps: float = EPS) -> str:
    """``summary`` as text, one block per problem: most seeds to ε first, then the fastest."""
    table = summary(df, eps)
    blocks = []
    for problem, part in table.groupby("problem", sort=True):
        part = part.sort_values(["reached", "time_to_eps_s", "final_rel_gap"], ascending=[False, True, True]).drop(columns="problem")
        blocks.append(f"problem={problem}: to f − f* ≤ {eps:g}·(f(λ₀) − f*), medians over seeds\n"
                      + part.to_string(index=False, float_format=lambda x: f"{x:.3g}"))  # fmt: skip
    return "\n\n".join(blocks)


def plot_outer(df: pd.DataFrame, out_dir: Path, stem: str = "outer", eps: float = EPS) -> list[Path]:
    """Per problem (one row of panels): the relative gap (f(λ_s) − f*)/(f(λ_0) − f*) against the
    cumulative wall time and against the outer step, and the hypergradient's relative error
    along the run; one curve per configuration (estimator × warm start), the median over seeds
    with a band from the smallest to the largest seed (against time: the median time of each
    step). Writes the time-to-ε summary (module docstring) next to the figure as
    outer_summary.csv and outer_summary.md, and prints it."""
    from hgbench.analysis.plot import _save, _styles, plt
    from hgbench.analysis.results import markdown, write_text_atomic

    df = with_gaps(df)
    evaluated = df[df["f"].notna()].assign(rel=lambda d: (d["gap"] / d["gap0"].where(d["gap0"] > 0)).clip(lower=FLOOR))
    if evaluated.empty:
        raise ValueError("no evaluated outer steps to plot (rows with f)")
    problems = sorted(evaluated["problem"].unique())
    styles = _styles(evaluated["run"].unique())
    fig, axes = plt.subplots(len(problems), 3, figsize=(15, 3.8 * len(problems)), squeeze=False)
    for row, problem in enumerate(problems):
        part = evaluated[evaluated["problem"] == problem]
        for name, rows in part.groupby("run", sort=True):
            style = {**styles[name], "marker": None}
            stats = rows.groupby("step").agg(rel=("rel", "median"), low=("rel", "min"), high=("rel", "max"),
                                             time=("time_s", "median"), err=("err_rel", "median"))  # fmt: skip
            for col, x in ((0, stats["time"]), (1, stats.index)):
                axes[row][col].plot(x, stats["rel"], label=name, **style)
                axes[row][col].fill_between(x, stats["low"], stats["high"], color=style["color"], alpha=0.15, lw=0)
            errors = stats["err"].dropna()
            axes[row][2].plot(errors.index, errors.clip(lower=FLOOR), label=name, **style)
        titles = ("estimator wall time (s)", "outer step s", "outer step s")
        ylabels = ("(f(λ_s) − f*) / (f(λ_0) − f*)", "(f(λ_s) − f*) / (f(λ_0) − f*)", "‖ĝ − ∇f(λ_s)‖ / ‖∇f(λ_s)‖")
        for col in range(3):
            ax = axes[row][col]
            ax.set_yscale("log")
            ax.set_xlabel(titles[col])
            ax.set_ylabel(f"{problem}\n{ylabels[col]}" if col == 0 else ylabels[col])
            ax.grid(True, alpha=0.3)
            if col < 2:
                ax.axhline(eps, color="grey", lw=0.8, ls=":")
        axes[row][0].legend(fontsize=7)
    n_seeds = evaluated.groupby("run")["seed"].nunique().max()
    fig.suptitle(f"Outer loop: suboptimality and hypergradient error, median over {n_seeds} seed(s), band = min–max "
                 f"(f* = best f of any run; dotted: ε = {eps:g})", fontsize=11)  # fmt: skip
    fig.tight_layout()
    paths = _save(fig, out_dir, stem)
    table = summary(df, eps)
    print(summary_text(df, eps))
    csv, md = Path(out_dir) / "outer_summary.csv", Path(out_dir) / "outer_summary.md"
    write_text_atomic(csv, table.to_csv(index=False))
    write_text_atomic(md, markdown(table))
    return paths + [csv, md]


def plot_training(df: pd.DataFrame, out_dir: Path, stem: str = "training") -> list[Path]:
    """Training curves of outer runs on a problem with metrics (e.g. the equilibrium model,
    Grazzi et al. 2020, §5), against the outer step: the training loss E(w_t, λ_s) of every step
    (``outer_value``; the metrics' train_loss at test_t = t), the test accuracy, the
    problem's bound on q (``q_bound``: ‖A‖₂ on equilibrium_mnist) and the hypergradient's relative
    error; one curve per configuration (estimator × warm start and the overrides that tell runs
    apart, as in ``with_gaps``), the median over seeds with a min–max band; a cross at the last
    logged value of each seed that diverged."""
    from hgbench.analysis.plot import _figure, _legend, _save, _styles, _title

    df = with_gaps(df)
    if df["test_acc"].isna().all():
        raise ValueError("no training metrics to plot (rows with test_acc: problems with a test split)")
    measures = {"outer_value": ("training loss E(w_t, λ_s)", True), "test_acc": ("test accuracy", False),
                "q_bound": ("bound on q (‖A‖₂)", True), "err_rel": ("‖ĝ − ∇f‖ / ‖∇f‖", True)}  # fmt: skip
    styles = _styles(df["run"].unique())
    fig, axes = _figure(2, 2, 5, 3.3)
    for name, rows in df.groupby("run", sort=True):
        style = {**styles[name], "marker": None}
        for ax, (measure, (title, log)) in zip(axes.flat, measures.items()):
            values = rows[rows[measure].notna()]
            if values.empty:
                continue
            stats = values.groupby("step")[measure].agg(["median", "min", "max"])
            ax.plot(stats.index, stats["median"], label=name, **style)
            ax.fill_between(stats.index, stats["min"], stats["max"], color=style["color"], alpha=0.15, lw=0)
            ends = values[values["run_id"].isin(rows.loc[rows["status"] != "ok", "run_id"])].sort_values("step").groupby("run_id").tail(1)
            ax.plot(ends["step"], ends[measure], "x", color=style["color"], ms=8)
            ax.set_xlabel("outer step")
            ax.set_ylabel(title)
            ax.grid(True, alpha=0.3)
            if log:
                ax.set_yscale("log")
    _legend(fig)
    n_seeds = df.groupby("run")["seed"].nunique().max()
    _title(fig, f"Training with each estimator ({', '.join(sorted(df['problem'].unique()))}): median over {n_seeds} seed(s), "
                "band = min–max; × = a seed that diverged")  # fmt: skip
    return _save(fig, out_dir, stem)
