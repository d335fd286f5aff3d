"""Estimators: one file per family, each with YAML files in conf/estimator/ whose ``_target_``
names its class."""

from hgbench.estimators.base import Estimate, Estimator, inner_iterates

__all__ = ["Estimate", "Estimator", "inner_iterates"]
