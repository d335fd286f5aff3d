"""Helpers for a user's own test suite (pytest or any other).

from hgbench.testing import assert_hypergradient

def test_my_hypergradient():
    assert_hypergradient(my_hypergradient, "ridge", dtype="float64")
"""

from __future__ import annotations

from typing import Any, Callable


def assert_hypergradient(hypergradient: Callable, problem: Any = None, **options: Any):
    """Run ``hgbench.check(hypergradient, problem, **options)`` and raise AssertionError with the
    printed report unless its verdict is ``ok`` (``wrong`` and ``undecided`` both fail: an
    uncertified reference never passes a test). Returns the report."""
    from hgbench.running.check import check

    report = check(hypergradient, problem, **options)
    if not report.ok:
        raise AssertionError(f"hypergradient check: {report.verdict}\n{report}")
    return report
