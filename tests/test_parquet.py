"""Results also as Parquet, typed: the file beside every CSV keeps nullable integers and text,
and hgbench.load reads it back to the very frame it reads from the CSV."""

from pathlib import Path

import pandas as pd

import hgbench
from hgbench.analysis.results import read_csv, write_csv_atomic

ROOT = Path(__file__).resolve().parent.parent


def test_parquet_beside_the_csv_is_typed_and_loads_as_the_csv(tmp_path):
    rows = read_csv(ROOT / "results" / "grazzi2020" / "metrics.csv")  # itd rows have no k
    write_csv_atomic(rows, tmp_path / "metrics.csv")
    raw = pd.read_parquet(tmp_path / "metrics.parquet")
    assert str(raw["k"].dtype) == "Int64" and raw["k"].isna().any() and str(raw["seed"].dtype) == "Int64"
    assert raw["status"].map(type).eq(str).all() and raw["run_id"].map(type).eq(str).all()
    assert str(raw["err_rel"].dtype) == "float64" and len(raw) == len(rows)
    pd.testing.assert_frame_equal(hgbench.load(tmp_path / "metrics.parquet"), hgbench.load(tmp_path / "metrics.csv"))
    pd.testing.assert_frame_equal(hgbench.load(tmp_path / "metrics.csv"), hgbench.load(ROOT / "results" / "grazzi2020" / "metrics.csv"))
