"""Grids of (t, k) points: t inner steps, k linear-solver steps.

    diag     k = t for every t               (cold start, the paper's usual x-axis)
    k_sweep  t fixed (large), k varies       (isolates the linear solver)
    t_sweep  k fixed (large), t varies       (isolates the inner solver)
    full     every pair of the t and k lists
    inner    k fixed, a dense list of t: estimates at the exact inner iterates, for the error vs
             inner error analysis (hgbench.analysis.inner_error; ``hgbench plot --kind inner``)
"""

from __future__ import annotations

from itertools import product

GRID_KINDS = ("diag", "k_sweep", "t_sweep", "full", "inner")


def _counts(name: str, value) -> list[int]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ValueError(f"grid.{name} is empty; give one or more iteration counts >= 0")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"grid.{name} contains {v!r}; iteration counts must be integers >= 0")
        out.append(v)
    return sorted(set(out))


def grid_pairs(kind: str, t, k=None) -> list[tuple[int, int]]:
    """The (t, k) pairs of a grid, sorted. ``k`` is ignored (may be None) for ``diag``."""
    if kind not in GRID_KINDS:
        raise ValueError(f"grid.kind={kind!r} is not one of {', '.join(GRID_KINDS)}")
    ts = _counts("t", t)
    if kind == "diag":
        return [(v, v) for v in ts]
    ks = _counts("k", k if k is not None else [])
    if kind == "k_sweep" and len(ts) != 1:
        raise ValueError(f"grid.kind=k_sweep needs a single t, got t={ts}")
    if kind in ("t_sweep", "inner") and len(ks) != 1:
        raise ValueError(f"grid.kind={kind} needs a single k, got k={ks}")
    return sorted(product(ts, ks))
