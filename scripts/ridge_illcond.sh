#!/usr/bin/env bash
# The CG-vs-FP comparison on an ill-conditioned ridge (q ≈ 0.99), then the medians at k = 50.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${VENV:-.venv}/bin
time "$bin/hgbench" run -m +experiment=ridge_illcond
"$bin/python" - <<'PY'
import pandas as pd
df = pd.read_csv("results/sweeps/ridge_illcond/metrics.csv")
print(f"q over the λ draws: {df['q'].min():.4f} to {df['q'].max():.4f}")
at50 = df[(df["k"] == 50)].groupby("estimator")["err_rel"].median()
print("median err_rel at t = 6000, k = 50:")
print(at50.to_string(float_format=lambda x: f"{x:.2e}"))
PY
