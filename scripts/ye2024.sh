#!/usr/bin/env bash
# Ye et al. (AISTATS 2024): error vs inner error of every estimator on the three presets, then
# the figures and the fitted slopes (printed, and written as slopes.csv / slopes.md per sweep).
#   bash scripts/ye2024.sh                 # all three presets
#   bash scripts/ye2024.sh ye2024_ridge    # one of them
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${VENV:-.venv}/bin
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(ye2024_ridge ye2024_logistic ye2024_logistic_weak)
for preset in "${presets[@]}"; do
    time "$bin/hgbench" run -m "+experiment=$preset" plot=false
    "$bin/hgbench" plot "results/sweeps/$preset" --kind inner
done
