#!/usr/bin/env bash
# Data hyper-cleaning at scale (dim w = 7,850, dim λ = 2,500): itd, fp, cg and gmres at
# t = k = 10, 50, 200 against the matrix-free reference, 2 λ draws, one thread per process (the machine's 2 cores are shared); then the error
# table (median err_rel), wall times and the reference's certificate; then fp and cg with the
# inner problem nearly solved (t = 2000), k = 10, 50, 200. About 8 minutes on a shared 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
out=results/hyper_cleaning
rm -rf "$out" && mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1  # the log, committed with the results
for est in itd fp cg gmres; do
  /usr/bin/time -f "$est: %e s wall, %M KB peak RSS" "$py" -c "from hgbench.running.cli import main; main()" run \
    problem=hyper_cleaning estimator=$est grid=diag "grid.t=[10,50,200]" n_lambdas=2 threads=1 plot=false \
    "hydra.run.dir=$out/$est"
done
# The adjoint solvers alone: the inner problem nearly solved (t = 2000, qᵗ ≈ 1e-9), k swept.
for est in fp cg; do
  "$py" -c "from hgbench.running.cli import main; main()" run problem=hyper_cleaning estimator=$est grid=full \
    "grid.t=[2000]" "grid.k=[10,50,200]" n_lambdas=1 threads=1 plot=false "hydra.run.dir=$out/solved_$est"
done
"$py" - <<'PY'
import json, pandas as pd
out = "results/hyper_cleaning"
df = pd.concat([pd.read_csv(f"{out}/{e}/metrics.csv") for e in ("itd", "fp", "cg", "gmres")])
print("median err_rel over the λ draws (rows: t = k; columns: estimator):")
print(df.pivot_table(index="t", columns="estimator", values="err_rel", aggfunc="median").to_string(float_format=lambda x: f"{x:.3e}"))
print("median time_s of one point:")
print(df.pivot_table(index="t", columns="estimator", values="time_s", aggfunc="median").to_string(float_format=lambda x: f"{x:.3f}"))
solved = pd.concat([pd.read_csv(f"{out}/solved_{e}/metrics.csv") for e in ("fp", "cg")])
print("err_rel at t = 2000 (inner problem nearly solved), k swept:")
print(solved.pivot_table(index="k", columns="estimator", values="err_rel").to_string(float_format=lambda x: f"{x:.3e}"))
for ref in json.load(open(f"{out}/cg/run.json"))["references"]:
    mf, cert = ref["matrix_free"], ref["certificate"]
    print(f"λ draw {ref['lam_id']}: ‖Φ(w)−w‖ = {ref['fixed_point_residual']:.2e} (rel {cert['fixed_point_rel']:.2e}), "
          f"adjoint residual {ref['linear_residual']:.2e} (rel {cert['linear_rel']:.2e}), q ≈ {ref['q']:.5f}, "
          f"q bound {mf['q_used']:.5f}; ‖w−w*‖ ≤ {mf['w_error_bound']:.2e}, ‖v−v*‖ ≤ {mf['v_error_bound']:.2e}; "
          f"Newton {mf['newton_steps']} steps / {mf['newton_products']} products, adjoint {mf['adjoint_products']}; "
          f"certified {cert['certified']}")
PY
