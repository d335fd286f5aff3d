"""One run: validate the configuration, draw λ values, compute the float64 references, run the
estimator over the grid, and write metrics.csv and run.json."""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

import hgbench
from hgbench.batch import estimate_batched
from hgbench.estimators.base import Estimator
from hgbench.grids import grid_pairs
from hgbench.problems.base import Problem
from hgbench.reference import reference
from hgbench.results import COLUMNS, METRICS, write_csv_atomic

DTYPES = {"float64": torch.float64, "float32": torch.float32}


class UserError(ValueError):
    """A bad configuration: reported as one line, without a traceback."""


@dataclass
class Plan:
    problem: Problem
    estimator: Estimator
    grid: str
    pairs: list[tuple[int, int]]
    dtype: torch.dtype
    device: torch.device
    lams: torch.Tensor
    seed: int
    batched: bool


def _instantiate(node, what: str):
    try:
        return instantiate(node)
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise UserError(f"cannot build {what} from {OmegaConf.to_container(node)}: {cause}") from err


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserError(f"device={name!r} is not a torch device; use cpu or cuda[:N]") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name!r} asked for, but this machine has no CUDA device; use device=cpu")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device={name!r} is not supported; use cpu or cuda[:N]")
    return device


def prepare(cfg: DictConfig) -> Plan:
    """Everything that can be checked before heavy work; raises UserError with one clear line."""
    if cfg.dtype not in DTYPES:
        raise UserError(f"dtype={cfg.dtype!r} is not one of {', '.join(DTYPES)}")
    device = _device(str(cfg.device))
    n = cfg.n_lambdas
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"n_lambdas={n!r} must be an integer >= 1")
    if cfg.threads is not None:
        if isinstance(cfg.threads, bool) or not isinstance(cfg.threads, int) or cfg.threads < 1:
            raise UserError(f"threads={cfg.threads!r} must be an integer >= 1 (or null for torch's default)")
        torch.set_num_threads(cfg.threads)
    grid = OmegaConf.to_container(cfg.grid, resolve=True)
    try:
        pairs = grid_pairs(grid["kind"], grid.get("t"), grid.get("k"))
    except ValueError as err:
        raise UserError(str(err)) from err
    problem = _instantiate(cfg.problem, "the problem")
    estimator = _instantiate(cfg.estimator, "the estimator")
    try:
        estimator.check(problem)
        lams = problem.sample_lambdas(n, torch.Generator().manual_seed(int(cfg.seed)))
    except ValueError as err:
        raise UserError(str(err)) from err
    batched = bool(cfg.batch_lambdas) and estimator.batchable and problem.batchable
    if cfg.batch_lambdas and not batched:
        print(f"hgbench: batch_lambdas=true: {estimator.name} on {problem.name} does not vectorize; looping over λ draws")
    return Plan(problem, estimator, grid["kind"], pairs, DTYPES[cfg.dtype], device, lams, int(cfg.seed), batched)


def _norm(x: torch.Tensor) -> float:
    return torch.linalg.vector_norm(x).item()


def execute(plan: Plan, out_dir: Path, progress: bool = True) -> tuple[pd.DataFrame, list[dict]]:
    """Run the plan; rewrite out_dir/metrics.csv atomically after every λ draw (a killed run
    leaves only complete rows). Returns the rows and the per-draw reference facts."""
    work = plan.problem.to(plan.dtype, plan.device)
    lams = plan.lams.to(plan.dtype).to(plan.device)
    # One untimed estimate first: one-time framework setup (lazy imports, forward-AD
    # decompositions, ~1 s for jvp) must not land in the first row's time.
    if plan.batched:
        estimate_batched(plan.estimator, work, lams[:1], [(1, 1)])
    else:
        list(plan.estimator.estimate(work, lams[0], [(1, 1)]))
    batch = estimate_batched(plan.estimator, work, lams, plan.pairs) if plan.batched else None
    rows, facts = [], []
    bar = tqdm(plan.lams, desc=f"{plan.problem.name}/{plan.estimator.name}", unit="λ", disable=not progress)
    for lam_id, lam in enumerate(bar):
        ref = reference(plan.problem, lam)
        facts.append({"lam_id": lam_id, "lam": lam.tolist(), **ref.summary()})
        grad_norm, w_norm = _norm(ref.grad), _norm(ref.w_star)
        estimates = batch[lam_id] if batch else plan.estimator.estimate(work, lams[lam_id], plan.pairs)
        for est in estimates:
            grad = est.grad.detach().to("cpu", torch.float64)
            err = _norm(grad - ref.grad)
            finite = bool(torch.isfinite(grad).all())
            rows.append({
                "problem": plan.problem.name, "estimator": plan.estimator.name, "grid": plan.grid,
                "seed": plan.seed, "lam_id": lam_id, "t": est.t, "k": est.k,
                "err_abs": err, "err_rel": err / grad_norm,
                "inner_err": _norm(est.w.detach().to("cpu", torch.float64) - ref.w_star) / w_norm,
                **asdict(est.cost), "q": ref.q, "dtype": str(plan.dtype).removeprefix("torch."),
                "device": str(plan.device), "status": "ok" if finite else "diverged",
            })  # fmt: skip
        write_csv_atomic(pd.DataFrame(rows, columns=COLUMNS), out_dir / METRICS)
    return pd.DataFrame(rows, columns=COLUMNS), facts


def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=Path(hgbench.__file__).parent, capture_output=True, text=True, timeout=5,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_run_info(cfg: DictConfig, plan: Plan, facts: list[dict], out_dir: Path) -> Path:
    info = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "versions": {"hgbench": hgbench.__version__, "torch": torch.__version__, "python": platform.python_version()},
        "code_revision": _git_revision(),
        "threads": torch.get_num_threads(),
        "device": str(plan.device),
        "device_name": torch.cuda.get_device_name(plan.device) if plan.device.type == "cuda" else platform.processor(),
        "dtype": str(plan.dtype).removeprefix("torch."),
        "references": facts,
    }
    path = out_dir / "run.json"
    tmp = path.with_name(".run.json.tmp")
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(path)
    return path
