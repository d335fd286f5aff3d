"""Every problem on the GPU: each problem × itd, fp, cg on cuda and on cpu in float64.

    python scripts/gpu_check.py [--out results/gpu] [--problems ridge ...] [--against cuda]

(a) the estimates ĝ(t, k) at t = k = 10 and 50 of one λ draw, computed on the cpu and on the
    device, must agree to 1e-10 relative (float64 on both: only the order of float sums differs);
    records the wall time on each (after one untimed warm-up estimate), their ratio device/cpu,
    and the device's peak memory (torch.cuda.max_memory_allocated, reset before each estimator);
(b) one `hgbench run device=cuda` per problem (fp, one λ draw, t = 5): the whole runner —
    reference on the cpu in float64, estimates on the device, rows written.
Writes results/gpu/gpu_check.csv and results/gpu/gpu_check.md; exits 1 if any estimate disagrees
or a run fails. On a machine without a CUDA device it prints "no cuda device" and exits 0
without running anything. ``--against cpu`` runs the same comparison cpu against cpu (what a
test can check of this script on a machine without a GPU). Problems come from conf/ with the
overrides in SMALL (sizes that keep the whole check under 5 minutes on one GPU).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import hydra
import pandas as pd
import torch

from hgbench.core.bound import check_applies, estimate
from hgbench.paths import conf_dir
from hgbench.running import schema

ESTIMATORS = ("itd", "fp", "cg")
PAIRS = [(10, 10), (50, 50)]
TOL = 1e-10
SMALL = {"equilibrium_mnist": ["problem.n_train=500", "problem.n_val=100", "problem.n_test=100"]}


def build(group: str, *overrides: str):
    """conf/GROUP instantiated as `hgbench run OVERRIDES` would build it."""
    schema.register()
    with hydra.initialize_config_dir(str(conf_dir()), version_base=None):
        cfg = hydra.compose("config", overrides=list(overrides))
    return hydra.utils.instantiate(cfg[group])


def timed(estimator, problem, lam, device) -> tuple[torch.Tensor, float]:
    """The estimates at PAIRS, stacked, and the wall time of computing them (after a warm-up)."""
    list(estimate(estimator, problem, lam, [(1, 1)]))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    grads = torch.stack([e.grad for e in estimate(estimator, problem, lam, PAIRS)])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return grads.to("cpu"), time.perf_counter() - start


def compare(name: str, against: torch.device) -> list[dict]:
    problem = build("problem", f"problem={name}", *SMALL.get(name, []))
    lam = problem.sample_lambdas(1, torch.Generator().manual_seed(0))[0]
    sides = {"cpu": problem.to(torch.float64, "cpu"), "other": problem.to(torch.float64, against)}
    rows = []
    for est_name in ESTIMATORS:
        estimator = build("estimator", f"estimator={est_name}")
        row = {"problem": name, "estimator": est_name, "w_dim": problem.w_dim, "lam_dim": problem.lam_dim, "device": str(against)}
        try:
            check_applies(estimator, problem)
        except ValueError as err:
            rows.append({**row, "status": "refused", "reason": str(err)})
            continue
        cpu, cpu_s = timed(estimator, sides["cpu"], lam, torch.device("cpu"))
        if against.type == "cuda":
            torch.cuda.reset_peak_memory_stats(against)
        other, other_s = timed(estimator, sides["other"], lam.to(against), against)
        diff = (torch.linalg.vector_norm(other - cpu, dim=1) / torch.linalg.vector_norm(cpu, dim=1)).max().item()
        rows.append(
            {
                **row,
                "status": "ok" if diff <= TOL else "disagree",
                "max_rel_diff": diff,
                "cpu_s": cpu_s,
                "device_s": other_s,
                "device_over_cpu": other_s / cpu_s,
                "peak_bytes": torch.cuda.max_memory_allocated(against) if against.type == "cuda" else None,
            }
        )
        print(f"{name:<18} {est_name:<4} rel diff {diff:.1e}  cpu {cpu_s:.3f} s  {against} {other_s:.3f} s", flush=True)
    return rows


def run_on_device(name: str, device: str, out: Path) -> dict:
    """(b): the runner end to end on the device."""
    cmd = [
        sys.executable,
        "-c",
        "from hgbench.running.cli import main; main()",
        "run",
        f"problem={name}",
        *SMALL.get(name, []),
        "estimator=fp",
        f"device={device}",
        "n_lambdas=1",
        "grid.t=[5]",
        "plot=false",
        f"hydra.run.dir={out / 'runs' / name}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    ok = done.returncode == 0 and (out / "runs" / name / "metrics.csv").is_file()
    return {
        "problem": name,
        "estimator": "fp (hgbench run)",
        "device": device,
        "status": "ok" if ok else "run failed",
        "reason": "" if ok else (done.stderr.strip().splitlines() or ["?"])[-1],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/gpu")
    parser.add_argument("--problems", nargs="*", default=sorted(p.stem for p in (conf_dir() / "problem").glob("*.yaml")))
    parser.add_argument("--against", default="cuda", help="the device compared with the cpu (cuda, cuda:N; cpu for a dry run)")
    args = parser.parse_args()
    against = torch.device(args.against)
    if against.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no cuda device on this machine (torch.cuda.is_available() is False); nothing was run")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    rows = [row for name in args.problems for row in compare(name, against)]
    rows += [run_on_device(name, str(against), out) for name in args.problems]
    df = pd.DataFrame(rows)
    df.to_csv(out / "gpu_check.csv", index=False)
    name = torch.cuda.get_device_name(against) if against.type == "cuda" else "cpu"
    (out / "gpu_check.md").write_text(f"# gpu_check on {name} (torch {torch.__version__})\n\n```\n{df.to_string(index=False)}\n```\n")
    print(df.to_string(index=False))
    bad = df[~df["status"].isin(["ok", "refused"])]
    if len(bad):
        print(f"gpu_check: {len(bad)} failure(s): " + "; ".join(f"{r.problem}/{r.estimator}: {r.status}" for r in bad.itertuples()))
        return 1
    print(f"gpu_check: every estimate agrees to {TOL:g} between cpu and {against}; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
