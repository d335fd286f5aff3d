"""hgbench: accuracy and cost of hypergradient estimators in bilevel optimization.

The bilevel problem is  min_λ f(λ) = E(w(λ), λ)  with  w(λ) = Φ(w(λ), λ)
(Grazzi, Franceschi, Pontil, Salzo, "On the Iteration Complexity of Hypergradient
Computation", ICML 2020).
"""

from hgbench.version import __version__ as __version__  # the public hgbench.__version__


def __getattr__(name: str):
    """The Python API (hgbench.running.api: ``evaluate``, ``plot``, ``load``; hgbench.running.check:
    ``check``), imported on first use, so that ``import hgbench`` stays cheap."""
    if name in ("evaluate", "plot", "load"):
        from hgbench.running import api

        return getattr(api, name)
    if name == "check":
        from hgbench.running.check import check

        return check
    raise AttributeError(f"module 'hgbench' has no attribute {name!r}")
