"""Estimators: one file per family, each with YAML files in conf/estimator/ whose ``_target_``
names its class."""

from hgbench.estimators.base import Estimate, Estimator

__all__ = ["Estimate", "Estimator"]
