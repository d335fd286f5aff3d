"""Estimators: one file per family, each with YAML files in conf/estimator/ whose ``_target_``
names its class. ``hypergradient`` runs one on a user's own tensors, in a user's own loop
(hgbench.estimators.own)."""

from hgbench.estimators.base import Estimate, Estimator

__all__ = ["Estimate", "Estimator", "hypergradient"]


def __getattr__(name: str):
    """``hypergradient``, imported on first use: it imports every estimator family."""
    if name == "hypergradient":
        from hgbench.estimators.own import hypergradient

        return hypergradient
    raise AttributeError(f"module 'hgbench.estimators' has no attribute {name!r}")
