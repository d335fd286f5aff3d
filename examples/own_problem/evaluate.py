"""Compare hypergradient estimators on your own problem from Python (examples/own_problem/README.md).

    python evaluate.py

Runs what `hgbench run -m --config-dir conf problem=robust_regression estimator=itd,fp,cg
grid=diag grid.t=[0,10,20,50,100,200] n_lambdas=3 seed=0` runs (same rows, same run_id), prints the
median relative error per estimator and inner step t, and draws the error figure.
"""

import os
from pathlib import Path

import hgbench

os.chdir(Path(__file__).resolve().parent)  # the config folder and the problem's file are named relative to here

df = hgbench.evaluate(
    "robust_regression",  # conf/problem/robust_regression.yaml
    ["itd", "fp", "cg"],
    ("diag", {"t": [0, 10, 20, 50, 100, 200]}),  # k = t
    n_lambdas=3,
    seed=0,
    config_dir="conf",
    out_dir="results/evaluate",  # keep the runs' folders (metrics.csv, run.json per estimator)
    progress=False,
)
print(df.pivot_table(index="t", columns="estimator", values="err_rel", aggfunc="median").to_string(float_format="{:.2e}".format))
hgbench.plot(df, "results/evaluate")
print("figure: results/evaluate/error_vs_iterations.png")
