"""Training mode (``hgbench run mode=train``): minimize f(λ) = E(w(λ), λ) with the chosen
estimator's hypergradient ĝ(T, K) (Grazzi et al. 2020, §5, equilibrium models).

Each step: ĝ = the estimator's estimate at (T, K) on the full training set (or a seeded random
minibatch), heavy-ball SGD  m ← μ m + ĝ,  λ ← λ − lr·m, then the problem's ``project`` (for the
equilibrium model: A onto the spectral ball of radius ρ). Logged to train.csv per step: the
training loss E(w_T(λ), λ) of the step's batch, ‖A‖₂-type contraction bound ``q_bound``,
cumulative wall time of the updates (evaluation and references excluded), every ``eval_every``
steps the loss and accuracy on train/validation/test (the problem's ``evaluate``), and every
``error_every`` steps the error of ĝ against the float64 reference hypergradient (same batch)
with the exact q. A non-finite hypergradient, loss or λ marks the run ``diverged`` and ends it
cleanly. λ at the first, every ``checkpoint_every``-th and the last step go to checkpoints.pt
(``problem.checkpoint=...`` then evaluates estimators there in error mode).

The problem must provide ``evaluate(lam, t) -> {split_loss, split_acc}``; ``project(lam)``,
``subset(rows)`` (minibatches) and ``a_norm(lam)`` are used when present.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from hgbench.core.bound import estimate
from hgbench.core.cost import Meter, Tally
from hgbench.core.reference import reference
from hgbench.analysis.results import TRAIN_COLUMNS as COLUMNS, TRAIN_CSV, combine, load_training, write_csv_atomic
from hgbench.running.runner import UserError, integer, prepare, write_run_info

def check(cfg: DictConfig, problem) -> None:
    """The training options and the problem's training hooks, before any heavy work."""
    for key, low in (("t", 0), ("k", 0), ("steps", 1), ("eval_every", 1), ("error_every", 0), ("checkpoint_every", 0)):
        integer(f"train.{key}", cfg.train[key], low)
    if cfg.train.batch_size is not None:
        integer("train.batch_size", cfg.train.batch_size, 1, " (or null)")
    for key in ("lr", "momentum"):
        value = cfg.train[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise UserError(f"train.{key}={value!r} must be a number >= 0")
    if not hasattr(problem, "evaluate"):
        raise UserError(f"mode=train needs a problem with evaluate(lam, t) (e.g. problem=equilibrium_mnist); {problem.name!r} has none")
    if cfg.train.batch_size is not None and not hasattr(problem, "subset"):
        raise UserError(f"train.batch_size={cfg.train.batch_size}: problem {problem.name!r} has no minibatches; use train.batch_size=null")


def _finite(*tensors: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(x).all()) for x in tensors)


def train_one(cfg: DictConfig, out_dir: Path, progress: bool = True) -> pd.DataFrame:
    """One training run; writes train.csv (atomically, every few steps), checkpoints.pt and
    run.json into out_dir and returns the rows."""
    plan = prepare(cfg)
    check(cfg, plan.problem)
    opts = cfg.train
    t, k, steps = opts.t, opts.k, opts.steps
    work = plan.problem.to(plan.dtype, plan.device)
    project = getattr(work, "project", lambda lam: lam)
    bound_q = getattr(work, "a_norm", lambda lam: math.nan)
    lam = project(plan.lams[0].to(plan.dtype).to(plan.device))
    momentum = torch.zeros_like(lam)
    batches = torch.Generator().manual_seed(plan.seed)
    n_train = plan.problem.x.shape[0] if opts.batch_size is not None else None
    if n_train is not None and opts.batch_size > n_train:
        raise UserError(f"train.batch_size={opts.batch_size} exceeds the {n_train} training images")
    base = {
        "problem": plan.problem.name, "estimator": plan.estimator.name, "label": opts.label, "seed": plan.seed,
        "t": t, "k": k, "lr": opts.lr, "momentum": opts.momentum, "batch_size": opts.batch_size,
        "dtype": str(plan.dtype).removeprefix("torch."), "device": str(plan.device),
    }  # fmt: skip
    rows, facts, saved, saved_steps = [], [], [], []
    clock = Meter(Tally(), plan.device)
    # One untimed estimate: one-time framework setup must not land in the first step's time.
    list(estimate(plan.estimator, work, lam, [(1, 1)]))
    bar = tqdm(range(steps + 1), desc=f"train {plan.problem.name}/{plan.estimator.name}", unit="step", disable=not progress)
    for step in bar:
        row = {**base, "step": step, "time_s": clock.cost.time_s, "q_bound": bound_q(lam), "status": "ok"}
        if step % opts.eval_every == 0 or step == steps:
            row.update(work.evaluate(lam, t))
            bar.set_postfix(loss=f"{row['train_loss']:.3g}", val_acc=f"{row['val_acc']:.3f}")
        if step == 0 or step == steps or (opts.checkpoint_every and step % opts.checkpoint_every == 0):
            saved.append(lam.detach().to("cpu", torch.float64))
            saved_steps.append(step)
        if step == steps:
            rows.append(row)
            break
        rows_idx = None if opts.batch_size is None else torch.randperm(n_train, generator=batches)[: opts.batch_size]
        batch = work if rows_idx is None else work.subset(rows_idx.to(plan.device))
        with clock:
            (est,) = estimate(plan.estimator, batch, lam, [(t, k)])
            loss = batch.outer(est.w, lam)
            ok = _finite(est.grad, loss)
            if ok:
                momentum = opts.momentum * momentum + est.grad
                new_lam = lam - opts.lr * momentum
                ok = _finite(new_lam)  # an overflowing step is divergence too (and SVD rejects inf)
                if ok:
                    new_lam = project(new_lam)
        row["batch_loss"] = loss.item()
        if ok and opts.error_every and step % opts.error_every == 0:
            exact = plan.problem if rows_idx is None else plan.problem.subset(rows_idx)
            ref = reference(exact, lam.detach().to("cpu", torch.float64))
            facts.append({"step": step, **ref.summary()})
            err = torch.linalg.vector_norm(est.grad.detach().to("cpu", torch.float64) - ref.grad).item()
            row.update(q=ref.q, err_abs=err, err_rel=err / torch.linalg.vector_norm(ref.grad).item())
        rows.append(row)
        if not ok:
            row["status"] = "diverged"
            print(f"hgbench: {plan.estimator.name} diverged at step {step} (non-finite hypergradient, loss or λ)")
            break
        lam = new_lam
        if step % 10 == 0:
            write_csv_atomic(pd.DataFrame(rows, columns=COLUMNS), out_dir / TRAIN_CSV)
    df = pd.DataFrame(rows, columns=COLUMNS)
    write_csv_atomic(df, out_dir / TRAIN_CSV)
    torch.save({"steps": saved_steps, "lams": torch.stack(saved)}, out_dir / "checkpoints.pt")
    write_run_info(plan, facts, out_dir)
    print(summary(df))
    print(f"results: {out_dir / TRAIN_CSV}")
    return df


def summary(df: pd.DataFrame) -> str:
    """One line per run: its last evaluated step, final accuracies and training time."""
    out = []
    for (estimator, label), run in df.groupby(["estimator", "label"], sort=True):
        last = run.sort_values("step").iloc[-1]
        evaluated = run[run["val_acc"].notna()].sort_values("step").iloc[-1]
        out.append({
            "estimator": estimator, "label": label, "steps": int(last["step"]), "status": last["status"],
            "train_acc": evaluated["train_acc"], "val_acc": evaluated["val_acc"], "test_acc": evaluated["test_acc"],
            "train_loss": evaluated["train_loss"], "time_s": last["time_s"], "q_bound": last["q_bound"],
        })  # fmt: skip
    return pd.DataFrame(out).to_string(index=False, float_format=lambda x: f"{x:.4g}")


def sweep_report(sweep_dir: Path, plot: bool) -> None:
    """At the end of a training sweep: the jobs' rows combined into sweep_dir/train.csv, the
    summary, the figure."""
    combined = combine(sweep_dir, TRAIN_CSV)
    if combined is None:
        print(f"hgbench: no job of the sweep wrote {TRAIN_CSV} under {sweep_dir}", file=sys.stderr)
        return
    print(summary(load_training(combined)))
    print(f"results: {combined}")
    if plot:
        from hgbench.analysis.plot import plot as draw

        for figure in draw(combined, "train"):
            print(f"figure: {figure}")
