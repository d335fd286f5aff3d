"""Problems: one file each, each with a YAML file in conf/problem/ whose ``_target_`` names its class."""

from hgbench.problems.base import GradientStepProblem, Problem

__all__ = ["GradientStepProblem", "Problem"]
