"""The modes of ``hgbench run`` (``mode=NAME``): one registry, ``MODES``.

A mode (a subclass of hgbench.running.mode.Mode, in a module of its own when it is new: CONTRIBUTING.md)
says what a run computes and everything that depends on it: the CSV its rows go to (in a
run folder, and combined at a sweep root), the row columns and the key of a row within one run,
its own checks (options before the problem is built, the problem's capabilities once built), how
it runs a prepared plan, how its rows are summarized and which figures (``hgbench plot --kind``)
are drawn from them, the first after every run, and what the cost guard counts of a run
(``workload``). What both modes share lives in modules of its own: validation (hgbench.running.prepare,
giving a hgbench.running.plan.Plan), the run identity (hgbench.running.identity: run_id), the
progress bar (hgbench.running.progress), crash-safe writing of the rows and run.json and the
resume check (hgbench.running.storage), and the refusals (hgbench.running.errors).

    error   the estimator's error against the float64 reference over a grid of (t, k), per λ draw
            (hgbench.running.runner.execute): metrics.csv
    outer   bilevel optimization of any problem with the estimator's hypergradients, optionally
            warm-started (hgbench.running.outer_loop): outer.csv, checkpoints.pt, outer_state.pt; on a
            problem with metrics (train/validation/test accuracy) this is training, e.g. the
            equilibrium model of Grazzi et al. 2020, §5 (presets deq_*)
    stochastic  bias and variance of a minibatch estimator over R seeded repetitions per batch size,
            against the certified reference (hgbench.running.stochastic_mode): stochastic.csv
    bilevel a stochastic bilevel solver (solver=NAME: SOBA, SABA, AmIGO, StocBiO, F2SA, BOME, TTSA, BSA,
            FSLA, MRBO, VRBO, SRBA) end to end on a finite-sum problem, its exact f and ‖∇f‖² from the
            certified reference against oracle calls and time (hgbench.running.bilevel_mode): bilevel.csv
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from hgbench.analysis import outer_loop as outer_rows, results
from hgbench.problems.base import Problem
from hgbench.running import outer_loop, runner
from hgbench.running.errors import UserError
from hgbench.running.mode import Mode, Workload
from hgbench.running.plan import Plan
from hgbench.running.bilevel_mode import BilevelMode
from hgbench.running.stochastic_mode import StochasticMode


class ErrorMode(Mode):
    name, csv, columns, key = "error", results.METRICS, results.COLUMNS, results.KEY
    figures = ("error", "cost", "inner")
    batches_lambdas = True

    def run(self, plan: Plan, out_dir: Path, progress: bool = True) -> pd.DataFrame:
        return runner.execute(plan, out_dir, progress)[0]

    def workload(self, cfg: DictConfig, pairs: list[tuple[int, int]] = ()) -> Workload:
        """Every grid point at every λ draw."""
        return Workload(cfg.n_lambdas, cfg.n_lambdas, list(pairs), "λ draws", True)

    def summarize(self, df: pd.DataFrame) -> str:
        return results.summary_table(df)


class OuterMode(Mode):
    name, csv, columns, key = "outer", outer_rows.OUTER_CSV, outer_rows.COLUMNS, outer_rows.KEY
    options = "outer"
    figures = ("outer", "train")

    def check_problem(self, cfg: DictConfig, problem: Problem) -> None:
        outer_loop.check_problem(cfg, problem)

    def run(self, plan: Plan, out_dir: Path, progress: bool = True) -> pd.DataFrame:
        return outer_loop.run(plan, out_dir, progress)

    def workload(self, cfg: DictConfig, pairs: list[tuple[int, int]] = ()) -> Workload:
        """One estimate at (outer.t, outer.k) per outer step, at one λ at a time."""
        return Workload(1, cfg.outer.steps, [(cfg.outer.t, cfg.outer.k)], "outer steps", False)

    def summarize(self, df: pd.DataFrame) -> str:
        return outer_rows.summary_text(df)

    def drawn(self, path: Path) -> tuple[str, ...]:
        """Also the training curves where the problem reports metrics (the equilibrium model)."""
        return self.figures if self.load(path)["test_acc"].notna().any() else self.figures[:1]


MODES: dict[str, Mode] = {mode.name: mode for mode in (ErrorMode(), OuterMode(), StochasticMode(), BilevelMode())}


def foreign_groups(mode: Mode) -> tuple[str, ...]:
    """The other modes' option groups (``options`` and ``groups``): they do not change ``mode``'s
    rows, so they are left out of its run's configuration (run.json, run_id, the resume check)."""
    return tuple(group for other in MODES.values() if other is not mode for group in (other.options, *other.groups) if group)


def find(name) -> Mode | None:
    """The mode called ``name``, or None."""
    return MODES.get(name) if isinstance(name, str) else None


def get(name) -> Mode:
    """The mode called ``name``; anything else is refused in one line naming the modes."""
    mode = find(name)
    if mode is None:
        raise UserError(f"mode={name!r} is not one of {', '.join(MODES)}")
    return mode
