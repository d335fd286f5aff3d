"""Training mode (``hgbench run mode=train``, hgbench.running.modes): minimize f(λ) = E(w(λ), λ) with the
chosen estimator's hypergradient ĝ(T, K) (Grazzi et al. 2020, §5, equilibrium models).

Each step: ĝ = the estimator's estimate at (T, K) on the full training set (or a seeded random
minibatch), heavy-ball SGD  m ← μ m + ĝ,  λ ← λ − lr·m, then the problem's ``project`` (for the
equilibrium model: A onto the spectral ball of radius ρ). Logged to train.csv per step: the
training loss E(w_T(λ), λ) of the step's batch, the problem's cheap bound on q ``q_bound``,
cumulative wall time of the updates (evaluation and references excluded), every ``eval_every``
steps the loss and accuracy on train/validation/test (the problem's ``evaluate``), and every
``error_every`` steps the error of ĝ against the float64 reference hypergradient (same batch)
with the exact q. A non-finite hypergradient, loss or λ marks the run ``diverged`` and ends it
cleanly.

The problem declares what training needs (hgbench.problems.base): ``trainable`` (it implements
``evaluate``), ``project`` and ``contraction_bound`` (defaults: no constraint, NaN), and for
minibatches ``n_train`` and ``subset``. ``batch_lambdas=true`` is refused: training computes one
hypergradient per step, there is no batch of λ draws to vectorize.

Checkpoints and resume. At step 0, every ``checkpoint_every``-th step and the last step, λ is
appended to checkpoints.pt (``{"steps": [...], "lams": (m, p) float64}``; ``problem.checkpoint=``
then evaluates estimators at these λ in error mode), and the training state at the start of that
step goes to train_state.pt: the step, λ, the momentum buffer, the minibatch generator's state,
the rows and reference facts so far, the saved λ's and the training time so far. Both files,
train.csv and run.json are written atomically (train.csv and run.json also every 10 steps), so a
killed run leaves complete files. ``resume=true`` continues from train_state.pt when run.json
holds the same configuration (RESUME_FREE keys aside; another one is refused in one line) and
ends with exactly the rows of an uninterrupted run (``time_s``, a measurement, aside); a finished
run is not recomputed. With ``checkpoint_every=0`` the only states are those of step 0 and of the
last step, so a resumed unfinished run starts over.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig

from hgbench.analysis.results import TRAIN_COLUMNS, TRAIN_CSV, atomic
from hgbench.core.bound import estimate
from hgbench.core.cost import Meter, Tally
from hgbench.core.reference import reference
from hgbench.problems.base import Problem
from hgbench.running.runner import Plan, UserError, previous_info, progress_bar, save, unreadable

CHECKPOINTS = "checkpoints.pt"
STATE = "train_state.pt"


def check_problem(cfg: DictConfig, problem: Problem) -> None:
    """What training needs of the problem, by its declared capabilities."""
    if not problem.trainable:
        raise UserError(f"mode=train needs a problem with evaluate(lam, t) (trainable, e.g. problem=equilibrium_mnist); {problem.name!r} has none")
    size = cfg.train.batch_size
    if size is not None and problem.n_train is None:
        raise UserError(f"train.batch_size={size}: problem {problem.name!r} has no minibatches; use train.batch_size=null")
    if size is not None and size > problem.n_train:
        raise UserError(f"train.batch_size={size} exceeds the {problem.n_train} training examples of problem {problem.name!r}")


def finite(*tensors: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(x).all()) for x in tensors)


def save_torch(obj, path: Path) -> None:
    """torch.save through an atomic rename (hgbench.analysis.results.atomic)."""
    with atomic(path) as tmp:
        torch.save(obj, tmp)


def resumed_state(plan: Plan, out_dir: Path, csv: str = TRAIN_CSV, state: str = STATE) -> dict | None:
    """For resume=true: the state (file ``state``) that out_dir holds for this configuration
    (its ``csv`` and run.json: runner.previous_info), else None; training and mode=outer."""
    if previous_info(plan, out_dir, csv) is None or not (out_dir / state).is_file():
        return None
    try:
        return torch.load(out_dir / state, weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:
        raise unreadable(out_dir, err) from err


def train(plan: Plan, out_dir: Path, progress: bool = True) -> pd.DataFrame:
    """One training run (or the rest of one, see the module docstring); writes train.csv,
    run.json, checkpoints.pt and train_state.pt into out_dir and returns the rows."""
    opts = plan.config["train"]
    t, k, steps, every, size = opts["t"], opts["k"], opts["steps"], opts["checkpoint_every"], opts["batch_size"]
    work = plan.problem.to(plan.dtype, plan.device)
    batches = torch.Generator().manual_seed(plan.seed)
    state = resumed_state(plan, out_dir)
    if state is None:
        lam = work.project(plan.lams[0].to(plan.dtype).to(plan.device))
        state = {"step": 0, "lam": lam, "momentum": torch.zeros_like(lam), "generator": batches.get_state(), "rows": [],
                 "facts": [], "saved_steps": [], "saved_lams": [], "time_s": 0.0, "done": False}  # fmt: skip
        resumed_at = None
    else:
        resumed_at = state["step"]
    lam, momentum = state["lam"].to(plan.device), state["momentum"].to(plan.device)
    batches.set_state(state["generator"])
    rows, facts, saved_steps, saved, elapsed = state["rows"], state["facts"], state["saved_steps"], state["saved_lams"], state["time_s"]
    clock = Meter(Tally(), plan.device)

    def checkpoint(step: int, done: bool) -> None:
        save_torch({"steps": saved_steps, "lams": torch.stack(saved)}, out_dir / CHECKPOINTS)
        save_torch({"step": step, "lam": lam, "momentum": momentum, "generator": batches.get_state(), "rows": rows,
                     "facts": facts, "saved_steps": saved_steps, "saved_lams": saved,
                     "time_s": elapsed + clock.cost.time_s, "done": done}, out_dir / STATE)  # fmt: skip
        save(plan, rows, TRAIN_COLUMNS, TRAIN_CSV, facts, out_dir)

    if state["done"]:
        return save(plan, rows, TRAIN_COLUMNS, TRAIN_CSV, facts, out_dir)
    base = {
        "problem": plan.problem.name, "estimator": plan.estimator.name, "label": opts["label"], "seed": plan.seed,
        "t": t, "k": k, "lr": opts["lr"], "momentum": opts["momentum"], "batch_size": size,
        "dtype": str(plan.dtype).removeprefix("torch."), "device": str(plan.device), **plan.identity,
    }  # fmt: skip
    # One untimed estimate: one-time framework setup must not land in the first step's time.
    list(estimate(plan.estimator, work, lam, [(1, 1)]))
    for step in progress_bar(plan, range(resumed_at or 0, steps + 1), steps + 1, "step", progress, "train "):
        if (step == 0 or step == steps or (every and step % every == 0)) and step != resumed_at:
            saved_steps.append(step)
            saved.append(lam.detach().to("cpu", torch.float64))
            checkpoint(step, done=False)
        row = {**base, "step": step, "time_s": elapsed + clock.cost.time_s, "q_bound": work.contraction_bound(lam), "status": "ok", "reason": ""}
        if step % opts["eval_every"] == 0 or step == steps:
            row.update(work.evaluate(lam, t))
        if step == steps:
            rows.append(row)
            break
        rows_idx = None if size is None else torch.randperm(work.n_train, generator=batches)[:size]
        batch = work if rows_idx is None else work.subset(rows_idx.to(plan.device))
        with clock:
            (est,) = estimate(plan.estimator, batch, lam, [(t, k)])
            loss = batch.outer(est.w, lam)
            ok = finite(est.grad, loss)
            if ok:
                new_momentum = opts["momentum"] * momentum + est.grad
                new_lam = lam - opts["lr"] * new_momentum
                ok = finite(new_lam)  # an overflowing step is divergence too (and SVD rejects inf)
                if ok:
                    new_lam = work.project(new_lam)
        row["batch_loss"] = loss.item()
        if ok and opts["error_every"] and step % opts["error_every"] == 0:
            exact = plan.problem if rows_idx is None else plan.problem.subset(rows_idx)
            ref = reference(exact, lam.detach().to("cpu", torch.float64), plan.reference)
            facts.append({"step": step, **ref.summary()})
            err = torch.linalg.vector_norm(est.grad.detach().to("cpu", torch.float64) - ref.grad).item()
            row.update(q=ref.q, err_abs=err, err_rel=err / torch.linalg.vector_norm(ref.grad).item())
        rows.append(row)
        if not ok:
            row.update(status="diverged", reason="non-finite hypergradient, loss or λ")
            print(f"hgbench: {plan.estimator.name} diverged at step {step} (non-finite hypergradient, loss or λ)")
            break
        lam, momentum = new_lam, new_momentum
        if step % 10 == 0:
            save(plan, rows, TRAIN_COLUMNS, TRAIN_CSV, facts, out_dir)
    checkpoint(step, done=True)
    return pd.DataFrame(rows, columns=TRAIN_COLUMNS)
