"""Do two results trees hold the same numbers, times aside? For refactors that must keep every
committed number (e.g. `hgbench reproduce --out /tmp/again`, then
`python scripts/same_results.py results /tmp/again`).

Compares every CSV the first tree has (metrics.csv, outer.csv, bounds.csv, rates.csv, slopes.csv,
…) with the second tree's file of the same path: the same columns, the same rows in the same
order, every cell equal (NaN equals NaN; numbers as parsed from the CSV text, i.e. bit for bit)
except the time columns (``time_s``, ``ref_time_s`` and any column ending in ``_seconds``), and
claims.md's table cells except its first line. Prints one line per file that differs, with the
columns and the largest relative difference; exits 1 if any does, 0 otherwise. Jobs' folders of
a sweep are compared where both trees have them.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

TIME = ("time_s", "ref_time_s")


def is_time(column: str) -> bool:
    return column in TIME or column.endswith("_seconds")


def compare(a: Path, b: Path) -> str | None:
    """None when the two CSVs agree (times aside), else what differs."""
    left, right = pd.read_csv(a, keep_default_na=False, dtype=str), pd.read_csv(b, keep_default_na=False, dtype=str)
    if list(left.columns) != list(right.columns):
        return f"columns differ: {sorted(set(left.columns) ^ set(right.columns))}"
    if len(left) != len(right):
        return f"{len(left)} rows vs {len(right)}"
    differing, largest = [], 0.0
    for column in (c for c in left.columns if not is_time(c)):
        x, y = left[column], right[column]
        if x.equals(y):
            continue
        try:
            xf, yf = pd.to_numeric(x), pd.to_numeric(y)
        except ValueError:
            differing.append(column)
            continue
        same = (xf == yf) | (xf.isna() & yf.isna())
        if not same.all():
            differing.append(column)
            gap = ((xf - yf).abs() / yf.abs().where(yf != 0, 1.0))[~same]
            largest = max(largest, float(gap.max()) if len(gap) else math.inf)
    return f"columns {differing} differ (largest relative difference {largest:.3g})" if differing else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args()
    bad = checked = 0
    for a in sorted(args.first.rglob("*.csv")):
        b = args.second / a.relative_to(args.first)
        if not b.is_file():
            continue
        checked += 1
        found = compare(a, b)
        if found:
            bad += 1
            print(f"{a.relative_to(args.first)}: {found}")
    claims = [args.first / "claims.md", args.second / "claims.md"]
    if all(p.is_file() for p in claims) and claims[0].read_text().splitlines()[1:] != claims[1].read_text().splitlines()[1:]:
        bad += 1
        print("claims.md differs")
    print(f"{checked} CSV files compared, {bad} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
