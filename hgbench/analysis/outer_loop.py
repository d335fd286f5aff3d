"""The rows of outer-loop runs (mode=outer, hgbench.running.outer_loop): columns, loading, the
time-to-ε summary and the figures (suboptimality and stationarity; training curves of problems
with metrics).

Suboptimality. Each run's rows carry the certified optimum of its outer problem (``f_star``,
hgbench.core.optimum: f at a point λ* where the exact hypergradient's stationarity π(λ*) =
‖Π(λ* − ∇f(λ*)) − λ*‖ is at most ``f_star_tol``, computed by the running layer once per outer
problem: the same ``problem_id`` and λ₀). The gap of a run at step s is f(λ_s) − f*, and a run
reaches ε at the first evaluated step with

    f(λ_s) − f* ≤ ε · (f(λ_0) − f*)

(ε relative to the initial gap, so that it means the same on every problem and seed); its time
and VJP-equivalents to ε are the cumulative ``time_s`` and ``vjp_eq`` of that row (the work of
the steps 0, …, s − 1 that produced λ_s). f is evaluated every ``outer.eval_every`` steps, so the
step to ε is known to that resolution. A gap is never measured against the runs themselves: where
f* is not certified (``f_star`` empty, ``f_star_reason`` says why; e.g. no stationary point
within the solve's budget) there is no gap and no ε-claim, only f and the stationarity π(λ_s).
A negative gap is a run that ended below f* (f* is a stationary value, a local minimum where f
is not convex). Rows whose reference was not certified (status ``error``) have no f and count
for nothing here.
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
    "problem",
    "estimator",
    "role",
    "seed",
    "warm_start",
    "optimizer",
    "lr",
    "momentum",
    "t",
    "k",
    "step",
    "outer_value",
    "f",
    "grad_norm",
    "stationarity",
    "f_star",
    "f_star_stationarity",
    "f_star_tol",
    "f_star_evals",
    "f_star_reason",
    "err_abs",
    "err_rel",
    "q",
    "q_bound",
    *METRICS,
    "lam_norm",
    "time_s",
    "ref_time_s",
    "n_phi",
    "n_vjp",
    "n_jvp",
    "vjp_eq",
    "dtype",
    "device",
    "status",
    "reason",
    "problem_id",
    *IDENTITY,
]
KEY = ["run_id", "problem", "estimator", "warm_start", "seed", "step", "t", "k", "dtype", "device"]
EPS = 1e-3  # the default relative ε of the time-to-ε summary
FLOOR = 1e-8  # gaps of 0 (the best run's best step) and errors below this show at this value on the log axes


def load_outer(path: Path) -> pd.DataFrame:
    """The rows of an outer.csv, or of every outer.csv below a directory (a sweep's combined file
    and its jobs' files are not double counted)."""
    return load(path, OUTER_CSV, KEY)


def with_gaps(df: pd.DataFrame) -> pd.DataFrame:
    """df with ``run`` (the configuration's label: estimator, warm start and the overrides that
    tell runs apart, seeds pooled), ``gap`` (f − f*, NaN where f* is not certified), ``gap0`` (the
    run's initial gap f(λ_0) − f*), ``rel_gap`` = gap/gap0 and ``pi_rel`` (the stationarity π(λ_s)
    over the run's first π(λ_0)). f* is the row's certified ``f_star``, never a value of the runs
    (rows from before the certified optimum have none: no gap)."""
    df = df.copy()
    for column in ("f_star", "stationarity"):
        if column not in df:
            df[column] = np.nan
    names = df["estimator"].astype(str) + ", warm=" + df["warm_start"].astype(str)
    seedless = [" ".join(o for o in str(x).split() if not o.startswith("seed=")) for x in df["overrides"].fillna("")]
    configuration = pd.Series(seedless, index=df.index) + "|" + names  # one run per seed: the same configuration
    run = labels(df.assign(run_id=configuration, overrides=seedless), names)
    out = df.assign(run=run, gap=df["f"] - df["f_star"])
    first = out[out["f"].notna()].sort_values("step").groupby("run_id")[["gap", "stationarity"]].first()
    out = out.assign(gap0=out["run_id"].map(first["gap"]), pi0=out["run_id"].map(first["stationarity"]))
    return out.assign(
        rel_gap=out["gap"] / out["gap0"].where(out["gap0"] > 0), pi_rel=out["stationarity"] / out["pi0"].where(out["pi0"] > 0)
    )


def optima(df: pd.DataFrame) -> pd.DataFrame:
    """One row per outer problem (``problem_id``; its seed): the certified optimum the runs were
    measured against (f*, its stationarity π(λ*) and the target tolerance, the references the
    solve used) or why there is none."""
    df = df.copy()
    for column in ("f_star", "f_star_stationarity", "f_star_tol", "f_star_evals", "f_star_reason"):
        if column not in df:
            df[column] = np.nan if column != "f_star_reason" else "no certified optimum: rows from before it was computed"
    columns = ["problem", "seed", "problem_id", "f_star", "f_star_stationarity", "f_star_tol", "f_star_evals", "f_star_reason"]
    table = df[columns].drop_duplicates(["problem_id", "f_star", "f_star_reason"]).sort_values(["problem", "seed"])
    return table.assign(f_star_reason=table["f_star_reason"].astype(object).fillna("")).reset_index(drop=True)


def summary(df: pd.DataFrame, eps: float = EPS) -> pd.DataFrame:
    """Per problem and configuration (estimator × warm start, seeds pooled): ``certified`` how
    many seeds have a certified f*, ``reached`` how many of those reached ε (module docstring;
    NaN where none has: no ε-claim), the median time, VJP-equivalents and step to ε over the
    seeds that did, and the medians of the final relative gap (f − f*)/(f(λ_0) − f*) (negative:
    below f*), the final stationarity π(λ_last)/π(λ_0), final f and test metric."""
    df = with_gaps(df)
    out = []
    for (problem, run), part in df.groupby(["problem", "run"], sort=True):
        reached, finals, certified = [], [], 0
        for _, rows in part.groupby("run_id"):
            rows = rows[rows["f"].notna()].sort_values("step")
            if rows.empty:
                continue
            last = rows.iloc[-1]
            finals.append({"f": last["f"], "test_acc": last["test_acc"], "rel_gap": last["rel_gap"], "pi_rel": last["pi_rel"]})
            if rows["gap0"].notna().iloc[0]:
                certified += 1
                hit = rows[rows["gap"] <= eps * rows["gap0"].iloc[0]]
                if len(hit):
                    reached.append(hit.iloc[0])
        final = pd.DataFrame(finals, columns=["f", "test_acc", "rel_gap", "pi_rel"])
        hits = pd.DataFrame(reached, columns=["time_s", "vjp_eq", "step"])
        out.append(
            {
                "problem": problem,
                "run": run,
                "seeds": part["run_id"].nunique(),
                "certified": certified,
                "reached": len(reached) if certified else np.nan,
                "time_to_eps_s": hits["time_s"].median(),
                "vjp_eq_to_eps": hits["vjp_eq"].median(),
                "step_to_eps": hits["step"].median(),
                "final_rel_gap": final["rel_gap"].median(),
                "final_pi_rel": final["pi_rel"].median(),
                "final_f": final["f"].median(),
                "test_acc": final["test_acc"].median() if final["test_acc"].notna().any() else np.nan,
                "status": ",".join(sorted(set(part["status"].astype(str)))),
            }
        )
    return pd.DataFrame(out)


def _formatted(table: pd.DataFrame) -> pd.DataFrame:
    """Floats to 3 significant digits (NaN as —), for text and markdown."""
    return table.apply(lambda col: col.map(lambda x: "—" if pd.isna(x) else f"{x:.3g}") if col.dtype.kind == "f" else col)


def summary_text(df: pd.DataFrame, eps: float = EPS) -> str:
    """``summary`` as text, one block per problem: its certified optima, then the runs, most
    seeds to ε first, then the fastest; a problem without any certified f* says so."""
    table = summary(df, eps)
    best = optima(df)
    blocks = []
    for problem, part in table.groupby("problem", sort=True):
        part = part.sort_values(["reached", "time_to_eps_s", "final_rel_gap"], ascending=[False, True, True]).drop(columns="problem")
        own = best[best["problem"] == problem]
        lines = [f"problem={problem}: certified optimum per seed (stationarity π = ‖Π(λ − ∇f) − λ‖ ≤ tol)"]
        lines += [
            f"  seed {r.seed}: f* = {r.f_star:.10g}, π = {r.f_star_stationarity:.3g} ≤ {r.f_star_tol:.3g}, {r.f_star_evals:.0f} references"
            if not r.f_star_reason
            else f"  seed {r.seed}: {r.f_star_reason}; no ε-claim"
            for r in own.itertuples()
        ]
        lines.append(f"to f − f* ≤ {eps:g}·(f(λ₀) − f*), medians over seeds")
        blocks.append("\n".join(lines) + "\n" + _formatted(part).to_string(index=False))
    return "\n\n".join(blocks)


def plot_outer(df: pd.DataFrame, out_dir: Path, stem: str = "outer", eps: float = EPS) -> list[Path]:
    """Per problem (one row of panels): the relative gap (f(λ_s) − f*)/(f(λ_0) − f*) against the
    cumulative wall time and against the outer step (where f* is certified; else f itself, and
    the title says there is no ε-claim), the stationarity π(λ_s)/π(λ_0) of the exact
    hypergradient (dotted: f*'s own), and the hypergradient's relative error along the run; one
    curve per configuration (estimator × warm start), the median over seeds with a band from the
    smallest to the largest seed (against time: the median time of each step). Writes the
    time-to-ε summary (module docstring) and the optima next to the figure as outer_summary.csv /
    .md and outer_optima.csv, and prints them."""
    from hgbench.analysis import canvas
    from hgbench.analysis.results import markdown, write_text_atomic
    from hgbench.analysis.style import palette

    df = with_gaps(df)
    evaluated = df[df["f"].notna()]
    if evaluated.empty:
        raise ValueError("no evaluated outer steps to plot (rows with f)")
    problems = sorted(evaluated["problem"].unique())
    styles = palette(evaluated["run"].unique())
    fig, axes = canvas.plt.subplots(len(problems), 4, figsize=(20, 3.8 * len(problems)), squeeze=False)
    for row, problem in enumerate(problems):
        part = evaluated[evaluated["problem"] == problem]
        has_star = bool(part["gap0"].notna().any())
        value = part["rel_gap"].clip(lower=FLOOR) if has_star else part["f"]
        part = part.assign(value=value, pi=part["pi_rel"].clip(lower=FLOOR))
        for name, rows in part.groupby("run", sort=True):
            style = {**styles[name], "marker": None}
            stats = rows.groupby("step").agg(
                value=("value", "median"),
                low=("value", "min"),
                high=("value", "max"),
                time=("time_s", "median"),
                pi=("pi", "median"),
                err=("err_rel", "median"),
            )
            for col, x in ((0, stats["time"]), (1, stats.index)):
                axes[row][col].plot(x, stats["value"], label=name, **style)
                axes[row][col].fill_between(x, stats["low"], stats["high"], color=style["color"], alpha=0.15, lw=0)
            axes[row][2].plot(stats.index, stats["pi"], label=name, **style)
            errors = stats["err"].dropna()
            axes[row][3].plot(errors.index, errors.clip(lower=FLOOR), label=name, **style)
        gap_label = "(f(λ_s) − f*) / (f(λ_0) − f*)" if has_star else "f(λ_s)  (no certified f*: no ε-claim)"
        titles = ("estimator wall time (s)", "outer step s", "outer step s", "outer step s")
        ylabels = (gap_label, gap_label, "stationarity π(λ_s) / π(λ_0)", "‖ĝ − ∇f(λ_s)‖ / ‖∇f(λ_s)‖")
        for col in range(4):
            ax = axes[row][col]
            ax.set_yscale("log")
            ax.set_xlabel(titles[col])
            ax.set_ylabel(f"{problem}\n{ylabels[col]}" if col == 0 else ylabels[col])
            ax.grid(True, alpha=0.3)
            if col < 2 and has_star:
                ax.axhline(eps, color="grey", lw=0.8, ls=":")
        star = (part["f_star_stationarity"] / part["pi0"]).dropna() if "f_star_stationarity" in part else pd.Series(dtype=float)
        if len(star):
            axes[row][2].axhline(max(star.median(), FLOOR), color="grey", lw=0.8, ls=":")
        axes[row][0].legend(fontsize=7)
    n_seeds = evaluated.groupby("run")["seed"].nunique().max()
    fig.suptitle(
        f"Outer loop: suboptimality against the certified f*, stationarity and hypergradient error, median over "
        f"{n_seeds} seed(s), band = min–max (dotted: ε = {eps:g}; f*'s own stationarity)",
        fontsize=11,
    )
    fig.tight_layout()
    paths = canvas.save(fig, out_dir, stem)
    table = summary(df, eps)
    print(summary_text(df, eps))
    csv, md, best = Path(out_dir) / "outer_summary.csv", Path(out_dir) / "outer_summary.md", Path(out_dir) / "outer_optima.csv"
    write_text_atomic(csv, table.to_csv(index=False))
    write_text_atomic(md, markdown(_formatted(table)))
    write_text_atomic(best, optima(df).to_csv(index=False))
    return paths + [csv, md, best]


def plot_training(df: pd.DataFrame, out_dir: Path, stem: str = "training") -> list[Path]:
    """Training curves of outer runs on a problem with metrics (e.g. the equilibrium model,
    Grazzi et al. 2020, §5), against the outer step: the training loss E(w_t, λ_s) of every step
    (``outer_value``; the metrics' train_loss at test_t = t), the test accuracy, the
    problem's bound on q (``q_bound``: ‖A‖₂ on equilibrium_mnist) and the hypergradient's relative
    error; one curve per configuration (estimator × warm start and the overrides that tell runs
    apart, as in ``with_gaps``), the median over seeds with a min–max band; a cross at the last
    logged value of each seed that diverged."""
    from hgbench.analysis import canvas
    from hgbench.analysis.style import palette

    df = with_gaps(df)
    if df["test_acc"].isna().all():
        raise ValueError("no training metrics to plot (rows with test_acc: problems with a test split)")
    measures = {
        "outer_value": ("training loss E(w_t, λ_s)", True),
        "test_acc": ("test accuracy", False),
        "q_bound": ("bound on q (‖A‖₂)", True),
        "err_rel": ("‖ĝ − ∇f‖ / ‖∇f‖", True),
    }
    styles = palette(df["run"].unique())
    fig, axes = canvas.subplots(2, 2, 5, 3.3)
    for name, rows in df.groupby("run", sort=True):
        style = {**styles[name], "marker": None}
        for ax, (measure, (title, log)) in zip(axes.flat, measures.items()):
            values = rows[rows[measure].notna()]
            if values.empty:
                continue
            stats = values.groupby("step")[measure].agg(["median", "min", "max"])
            alone = {"marker": styles[name]["marker"]} if len(stats) == 1 else {}  # one point: a marker, not an invisible line
            ax.plot(stats.index, stats["median"], label=name, **{**style, **alone})
            ax.fill_between(stats.index, stats["min"], stats["max"], color=style["color"], alpha=0.15, lw=0)
            ends = values[values["run_id"].isin(rows.loc[rows["status"] != "ok", "run_id"])].sort_values("step").groupby("run_id").tail(1)
            ax.plot(ends["step"], ends[measure], "x", color=style["color"], ms=8)
            ax.set_xlabel("outer step")
            ax.set_ylabel(title)
            ax.grid(True, alpha=0.3)
            if log:
                ax.set_yscale("log")
    canvas.legend(fig)
    n_seeds = df.groupby("run")["seed"].nunique().max()
    canvas.title(
        fig,
        f"Training with each estimator ({', '.join(sorted(df['problem'].unique()))}): median over {n_seeds} seed(s), "
        "band = min–max; × = a seed that diverged",
    )
    return canvas.save(fig, out_dir, stem)
