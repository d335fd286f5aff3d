"""Grids of (t, k) points: t inner steps, k linear-solver steps.

diag     k = t for every t               (cold start, the paper's usual x-axis)
k_sweep  t fixed (large), k varies       (isolates the linear solver)
t_sweep  k fixed (large), t varies       (isolates the inner solver)
full     every pair of the t and k lists
inner    k fixed, a dense list of t: estimates at the exact inner iterates, for the error vs
         inner error analysis (hgbench.analysis.inner_error; ``hgbench plot --kind inner``)
levels   estimates interpolated to fixed absolute inner errors (Ye et al. 2024's protocol,
         hgbench.running.levels): t is the cap on inner steps, k the solver steps; the
         grid points are found per λ draw, so this gives the single pair (t, k)
"""

from __future__ import annotations

from itertools import product

GRID_KINDS = ("diag", "k_sweep", "t_sweep", "full", "inner", "levels")


def _counts(value) -> list[int]:
    """An iteration count or a list of them, as a sorted list without repeats."""
    return sorted(set(value if isinstance(value, (list, tuple)) else [value]))


def grid_pairs(kind: str, t, k=None) -> list[tuple[int, int]]:
    """The (t, k) pairs of a grid, sorted. ``t`` and ``k``: iteration counts >= 0, each one or a
    non-empty list (the schema, hgbench.running.schema.Grid, checks them); ``k`` is ignored (may
    be None) for ``diag``."""
    if kind not in GRID_KINDS:
        raise ValueError(f"grid.kind={kind!r} is not one of {', '.join(GRID_KINDS)}")
    ts = _counts(t)
    if kind == "diag":
        return [(v, v) for v in ts]
    if k is None:
        raise ValueError(f"grid.kind={kind} needs grid.k (iteration counts >= 0); only diag has none")
    ks = _counts(k)
    if kind == "k_sweep" and len(ts) != 1:
        raise ValueError(f"grid.kind=k_sweep needs a single t, got t={ts}")
    if kind in ("t_sweep", "inner", "levels") and len(ks) != 1:
        raise ValueError(f"grid.kind={kind} needs a single k, got k={ks}")
    if kind == "levels" and len(ts) != 1:
        raise ValueError(f"grid.kind=levels needs a single t (the cap on inner steps), got t={ts}")
    return sorted(product(ts, ks))
