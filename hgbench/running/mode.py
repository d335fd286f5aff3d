"""The base of a mode of ``hgbench run`` (the registry of modes is hgbench.running.modes).

A mode says what a run computes and everything that depends on it: its CSV, columns and row key,
its checks, how it runs a prepared plan, its summary and figures, and what the cost guard counts
of a run (``workload``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from hgbench.analysis import results
from hgbench.problems.base import Problem
from hgbench.running.errors import UserError
from hgbench.running.plan import Plan


@dataclass(frozen=True)
class Workload:
    """What the cost guard (hgbench.running.guard) counts of a run: ``runs`` repetitions (each
    one of ``unit``) of the estimator's work over the (t, k) ``pairs``, holding ``draws`` λ draws;
    ``on_grid``: the pairs are the run's grid, so that grid=levels and batch_lambdas apply."""

    draws: int
    runs: int
    pairs: list[tuple[int, int]]
    unit: str
    on_grid: bool


class Mode:
    """A mode of ``hgbench run``; see the module docstring."""

    name: str
    csv: str  # the file of its rows
    columns: list[str]
    key: list[str]  # a row's identity; starts with run_id, so rows of different runs never merge
    figures: tuple[str, ...]  # `hgbench plot --kind` values drawn from its rows; the first after every run
    options: str | None = None  # the config group of its own options (conf/<options>/), if any
    groups: tuple[str, ...] = ()  # further config groups only this mode reads (mode=bilevel: solver)
    unused: tuple[str, ...] = ()  # groups its rows do not depend on (mode=bilevel: estimator), left out of its configuration

    batches_lambdas: bool = False  # batch_lambdas=true applies (error mode); the others take one hypergradient per step

    def check(self, cfg: DictConfig) -> None:
        """What the mode refuses of the options, before the problem is built (each option's own
        values are checked by the schema, hgbench.running.schema); raises UserError."""
        if cfg.batch_lambdas and not self.batches_lambdas:
            raise UserError(
                f"batch_lambdas=true applies to mode=error; mode={self.name} computes one hypergradient per step: use batch_lambdas=false"
            )

    def check_problem(self, cfg: DictConfig, problem: Problem) -> None:
        """What the mode needs of the (built) problem; raises UserError."""

    def check_estimator(self, estimator) -> None:
        """What the mode needs of the (built) estimator; raises UserError. By default a
        deterministic one: a stochastic estimator (``Estimator.minibatch``) runs in mode=stochastic."""
        if estimator.minibatch:
            raise UserError(f"estimator {estimator.name!r} is stochastic: it runs in mode=stochastic, not mode={self.name}")

    def run(self, plan: Plan, out_dir: Path, progress: bool = True) -> pd.DataFrame:
        raise NotImplementedError

    def workload(self, cfg: DictConfig, pairs: list[tuple[int, int]] = ()) -> Workload:
        """What a run of ``cfg`` repeats, given the grid's (t, k) ``pairs`` (none before the grid is
        read: ``draws`` needs only ``cfg``)."""
        raise NotImplementedError

    def summarize(self, df: pd.DataFrame) -> str:
        raise NotImplementedError

    def load(self, path: Path) -> pd.DataFrame:
        """The rows of the CSV at path, or of every such CSV below a directory (hgbench.analysis.results.load)."""
        return results.load(path, self.csv, self.key)

    def drawn(self, path: Path) -> tuple[str, ...]:
        """The figures drawn after a run (or a sweep) whose rows are at path: the first by default."""
        return self.figures[:1]
