"""A prepared run (hgbench.running.prepare): what both modes (hgbench.running.modes) run."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch

from hgbench.estimators.base import Estimator
from hgbench.problems.base import Problem
from hgbench.running.identity import run_id
from hgbench.running.levels import Levels


@dataclass
class Plan:
    problem: Problem
    estimator: Estimator
    grid: str
    pairs: list[tuple[int, int]]
    dtype: torch.dtype
    device: torch.device
    lams: torch.Tensor
    seed: int
    batched: bool
    config: dict  # the resolved configuration, for run.json and the resume check
    resume: bool
    overrides: str  # the run's Hydra task overrides, space-joined ("" for none)
    reference: str = "dense"  # the reference's method, resolved from cfg.reference (hgbench.core.reference.choose)
    levels: Levels | None = None  # grid=levels: the inner-error levels (hgbench.running.levels)
    dense: bool = False  # products by a dense J, resolved from cfg.linearization (hgbench.core.linearization.dense_path)
    components: dict = field(default_factory=dict)  # the mode's own groups built (Mode.groups; mode=bilevel: {"solver": Solver})

    @functools.cached_property
    def identity(self) -> dict:
        """The identity columns of every row this run writes (hgbench.analysis.results.IDENTITY)."""
        return {"run_id": run_id(self.config), "setting_id": run_id(self.config, "estimator"), "overrides": self.overrides}
