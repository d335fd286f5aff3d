#!/usr/bin/env bash
# Every problem × itd, fp, cg on cuda and on cpu in float64 (scripts/gpu_check.py): agreement to
# 1e-10, peak GPU memory, the cuda/cpu time ratio, and one `hgbench run device=cuda` per problem.
# Writes results/gpu/. Under 5 minutes on one GPU; prints "no cuda device" and exits 0 without one.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "$py" scripts/gpu_check.py "$@"
