"""One run: validate the configuration, draw λ values, compute the float64 references, run the
estimator over the grid, and write metrics.csv and run.json (error mode; hgbench.running.modes). Also what
both modes share: ``prepare``, the run's identity (``run_id``), the progress bar, crash-safe
writing of the rows and run.json (``save``), and the resume check (``previous_info``).

Reliability contract: every bad setting, and a run too large for the machine
(hgbench.running.guard), is refused by ``prepare`` with one line before heavy work; a λ draw
whose estimate is NaN/inf gives rows with status ``diverged`` and one whose reference is not
certified (hgbench.core.reference.certify) or whose reference or estimator raises gives rows
with status ``error`` (the reason in ``reason``), and the run goes on; each λ draw is appended
to metrics.csv and the journal as it finishes (hgbench.running.journal), so a run killed at any
moment leaves only complete draws, and ``resume=true`` computes only the draws that are missing
(or ended in ``error``) and never deletes finished ones.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
import numpy as np
import pandas as pd
import torch
from hydra._internal.utils import _locate
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tqdm.auto import tqdm

import hgbench
from hgbench.core.bound import check_applies, estimate
from hgbench.estimators.base import Estimator
from hgbench.options import TARGET_FILE, Target
from hgbench.running import guard
from hgbench.running.batch import estimate_batched
from hgbench.running import schema
from hgbench.running.grids import grid_pairs
from hgbench.problems.base import Problem
from hgbench.core.reference import certify, choose, reference
from hgbench.analysis.results import COLUMNS, METRICS, RESUME_FREE, RUN_INFO, atomic, frame, read_regular, strict_json, write_csv_atomic
from hgbench.running.interrupt import interruptible
from hgbench.running.journal import Journal, read_previous
from hgbench.running.levels import Levels, brackets, estimates as level_estimates

if TYPE_CHECKING:
    from hgbench.running.modes import Mode

DTYPES = {name: getattr(torch, name) for name in schema.DTYPES}


class UserError(ValueError):
    """A bad configuration: reported as one line, without a traceback."""


class UncertifiedReference(ArithmeticError):
    """A draw's reference fails its certificate (hgbench.core.reference.certify): its rows are ``error``."""


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
    config: dict  # the resolved configuration, for run.json and the resume check
    resume: bool
    overrides: str  # the run's Hydra task overrides, space-joined ("" for none)
    reference: str = "dense"  # the reference's method, resolved from cfg.reference (hgbench.core.reference.choose)
    levels: Levels | None = None  # grid=levels: the inner-error levels (hgbench.running.levels)

    @functools.cached_property
    def identity(self) -> dict:
        """The identity columns of every row this run writes (hgbench.analysis.results.IDENTITY)."""
        return {"run_id": run_id(self.config), "setting_id": run_id(self.config, "estimator"), "overrides": self.overrides}


def target_class(target, what: str, base: type) -> type:
    """The class a config's ``_target_`` names (its form checked by hgbench.running.schema.Target):
    ``pkg.module.Class``, imported from sys.path, or ``path/to/file.py:Class``, loaded from that
    file (a relative path from the working directory), once per file and process, as a module
    named after the file. It must be a subclass of ``base``; else one UserError line."""
    text = f"{what}._target_={target!r}"
    found = TARGET_FILE.fullmatch(target) if isinstance(target, str) else None
    try:
        if found:
            cls = getattr(_module_of_file(Path(found["file"])), found["name"])
        else:
            cls = _locate(target)  # what hydra.utils.get_class does, without logging the failure too
    except Exception as err:  # noqa: BLE001 — any failure to import the user's code is one line
        cause = err.__cause__ or err
        raise UserError(f"{text} cannot be loaded ({_reason(cause)}); it must be {Target.allowed}") from err
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise UserError(f"{text} is not a subclass of {base.__module__}.{base.__qualname__}")
    return cls


def _module_of_file(path: Path):
    """The module defined by the Python file at ``path``, executed once per process and kept in
    sys.modules under a name unique to the file's absolute path (so that Hydra can locate it)."""
    path = path.resolve()
    name = f"hgbench_own_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    if name not in sys.modules:
        if not path.is_file():
            raise FileNotFoundError(f"no file {path}")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: its classes name this module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def _instantiate(node, what: str):
    """Build the ``what`` (problem or estimator) from its config node: its class found by
    ``target_class``; a failing constructor (bad setting, missing or malformed data file)
    becomes one UserError line naming it."""
    cls = target_class(node.get("_target_"), what, {"problem": Problem, "estimator": Estimator}[what])
    try:
        return instantiate(node, _target_=f"{cls.__module__}.{cls.__qualname__}")
    except (InstantiationException, FileNotFoundError, ValueError, TypeError, OmegaConfBaseException) as err:
        cause = (err.__cause__ or err) if isinstance(err, InstantiationException) else err
        raw = OmegaConf.to_container(node)  # unresolved: the interpolation may be what failed
        try:
            name = node.name  # resolved: precond_${.kind} is precond_newton
        except OmegaConfBaseException:
            name = raw.get("name")
        target = raw.get("_target_")
        raise UserError(f"cannot build the {what} {name!r} ({target}): {type(cause).__name__}: {cause}") from err


def _device(name: str) -> torch.device:
    """The device (its name checked by the schema), if this machine has it."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name!r} asked for, but this machine has no CUDA device; use device=cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"device={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def run_id(config: dict, *leave_out: str) -> str:
    """12 hex characters of the sha256 of the resolved configuration as canonical JSON (sorted
    keys, no spaces), less what does not change a row: ``hydra`` (where outputs go; absent from a
    job's configuration anyway) and RESUME_FREE (hgbench.analysis.results: ``plot`` draws a
    figure; ``resume`` reuses rows already computed; ``n_lambdas`` only extends the prefix of
    one stream of λ draws; ``threads`` changes float sums at ~1e-13 only and is recorded in
    run.json), ``reproduce`` (a preset's note to `hgbench reproduce`: its measured minutes and
    quick variant, which a row does not depend on), and the top-level groups in ``leave_out``:
    the rows' ``setting_id`` leaves out ``estimator``, so that the estimators run on one setting share it and are compared within
    it. ``reference`` counts only when set to a method: ``auto`` (its default) resolves to what
    every run did before the option existed, so their ids stay. Equal configurations give equal
    ids on every machine and Python version."""
    kept = {key: value for key, value in config.items() if key not in ("hydra", "reproduce", *RESUME_FREE, *leave_out)}
    if kept.get("reference") == "auto":
        del kept["reference"]
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def prepare(cfg: DictConfig, mode: Mode, overrides: str = "") -> Plan:
    """Everything that can be checked before heavy work, for either mode (``mode.check`` before
    the problem is built, ``mode.check_problem`` once it is); raises UserError with one clear
    line. ``overrides``: the run's Hydra task overrides, space-joined (the rows' identity)."""
    try:
        return _prepare(cfg, mode, overrides)
    except OmegaConfBaseException as err:  # e.g. an override interpolating a missing key
        raise UserError(f"bad configuration: {type(err).__name__}: {err}") from err


def _prepare(cfg: DictConfig, mode: Mode, overrides: str) -> Plan:
    try:  # types, ranges and choices of every key with a schema (hgbench.running.schema)
        schema.validate(cfg)
    except schema.ConfigError as err:
        raise UserError(str(err)) from err
    # Threads first: torch's thread count must be fixed before any tensor work (it changes
    # float sums at ~1e-13, and run.json records it).
    if cfg.threads is not None:
        try:
            torch.set_num_threads(cfg.threads)
        except (ValueError, RuntimeError) as err:
            raise UserError(f"threads={cfg.threads} is refused by torch ({_reason(err)})") from err
    device = _device(cfg.device)
    n, seed = cfg.n_lambdas, cfg.seed
    mode.check(cfg)
    grid = OmegaConf.to_container(cfg.grid, resolve=True)
    try:
        pairs = grid_pairs(grid.get("kind"), grid.get("t"), grid.get("k"))
    except (ValueError, TypeError) as err:
        raise UserError(str(err)) from err
    levels = None
    if grid.get("kind") == "levels":
        if not {"high", "low", "n"} <= set(grid):
            raise UserError("grid.kind=levels needs grid.high, grid.low and grid.n (the inner-error levels): use grid=levels")
        levels = Levels(grid["high"], grid["low"], grid["n"], max(t for t, _ in pairs), grid.get("k"))
        try:
            levels.check()
        except ValueError as err:
            raise UserError(str(err)) from err
    if grid.get("kind") == "diag" and grid.get("k") is not None:
        print(f"hgbench: note: grid.kind=diag computes k = t; grid.k={grid['k']} is ignored (grid=full runs every (t, k) pair)")
    problem_class = target_class(cfg.problem.get("_target_"), "problem", Problem)
    settings = {key: value for key, value in OmegaConf.to_container(cfg.problem, resolve=True).items() if key != "_target_"}
    guard.precheck(cfg, problem_class, settings)  # the problem's own sizes, before it allocates anything
    problem = _instantiate(cfg.problem, "problem")
    estimator = _instantiate(cfg.estimator, "estimator")
    try:
        check_applies(estimator, problem)
        method = choose(problem, cfg.get("reference", "auto"))
        mode.check_problem(cfg, problem)
        guard.check(cfg, problem, estimator, pairs, device)  # memory and time, before drawing λ
        lams = problem.sample_lambdas(n, torch.Generator().manual_seed(seed))
    except ValueError as err:
        raise UserError(str(err)) from err
    batched = cfg.batch_lambdas and estimator.batchable and problem.batchable and levels is None
    if cfg.batch_lambdas and not batched:
        why = "grid=levels finds its grid points per λ draw" if levels is not None else f"{estimator.name} on {problem.name} does not vectorize"
        print(f"hgbench: batch_lambdas=true: {why}; looping over λ draws")
    config = OmegaConf.to_container(cfg, resolve=True)
    for group in mode.foreign_groups():
        config.pop(group, None)
    return Plan(problem, estimator, grid["kind"], pairs, DTYPES[cfg.dtype], device, lams, seed, batched, config,
                cfg.resume, overrides, method, levels)  # fmt: skip


def _norm(x: torch.Tensor) -> float:
    return torch.linalg.vector_norm(x).item()


def relative(err: float, scale: float) -> float:
    """err / scale, the relative error of a row; NaN where scale = 0 (e.g. ∇f = 0 or w* = 0 at
    the draw: a relative error is undefined there, and the row's absolute error says it all)."""
    return err / scale if scale != 0 else math.nan


def _reason(err: BaseException) -> str:
    """The short one-line reason of an ``error`` row."""
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= 160 else text[:157] + "..."


def _run_facts(plan: Plan) -> dict:
    """The run's facts every error-mode row repeats: its identity, the estimator's ``role`` and
    the problem's ``min_min`` (claims select rows by them), and ``time_kind``: ``per_point``
    (time_s of one grid point computed alone) or ``batch_mean`` (batch_lambdas: the batch's time
    divided by the number of draws)."""
    return {
        "role": plan.estimator.role, "min_min": plan.problem.min_min,
        "time_kind": "batch_mean" if plan.batched else "per_point", **plan.identity,
    }  # fmt: skip


def _key(plan: Plan, lam_id: int, t: int | None, k: int | None, level: float | None = None) -> dict:
    """What identifies an error-mode row, with the run's facts (``level``: grid=levels only)."""
    return {
        "problem": plan.problem.name, "estimator": plan.estimator.name, "grid": plan.grid, "seed": plan.seed,
        "lam_id": lam_id, "t": t, "k": k, "level": level, "dtype": str(plan.dtype).removeprefix("torch."),
        "device": str(plan.device), **_run_facts(plan),
    }  # fmt: skip


def _estimate_row(plan: Plan, lam_id: int, est, ref, level: float | None = None) -> dict:
    """One grid point's row; NaN/inf (or an error norm that overflows) makes it ``diverged``.
    ``level`` (grid=levels): the absolute inner error the estimate is interpolated to; the row's
    inner_err is then level/‖w*‖."""
    grad = est.grad.detach().to("cpu", torch.float64)
    w = est.w.detach().to("cpu", torch.float64)
    err = _norm(grad - ref.grad)
    if not torch.isfinite(grad).all():
        reason = "the estimate is NaN or inf"
    elif not torch.isfinite(w).all():
        reason = "the inner iterate w_t is NaN or inf"
    elif not math.isfinite(err):
        reason = "the error norm overflows"
    else:
        reason = ""
    inner = _norm(w - ref.w_star) if level is None else level
    return {
        **_key(plan, lam_id, est.t, est.k, level), "err_abs": err, "err_rel": relative(err, _norm(ref.grad)),
        "inner_err": relative(inner, _norm(ref.w_star)), **asdict(est.cost), "q": ref.q, "kappa": ref.kappa,
        "status": "diverged" if reason else "ok", "reason": reason,
    }  # fmt: skip


def _differences(old, new, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two resolved configurations (RESUME_FREE
    keys excepted)."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for key in keys if f"{prefix}{key}" not in RESUME_FREE for d in _differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".")]


def check_outputs(out_dir: Path, csv: str) -> None:
    """Before any work: the files a run will write must be regular files or absent."""
    for name in (csv, RUN_INFO):
        path = out_dir / name
        if path.exists() and not path.is_file():
            raise UserError(f"{path} exists and is not a file; remove it or choose another output directory")


def unreadable(out_dir: Path, err: BaseException) -> UserError:
    return UserError(f"resume=true: cannot read the results in {out_dir} ({_reason(err)}); rerun with resume=false")


def previous_info(plan: Plan, out_dir: Path, csv: str) -> dict | None:
    """For resume=true, either mode: out_dir's run.json when out_dir holds results (``csv`` and
    run.json) of this configuration (equal but for RESUME_FREE keys); None when there is nothing
    to resume (resume=false, or no results). Results of another configuration, or unreadable
    ones, are refused in one line."""
    info_path = out_dir / RUN_INFO
    check_outputs(out_dir, csv)
    if not (plan.resume and (out_dir / csv).is_file() and info_path.is_file()):
        return None
    try:
        info = json.loads(read_regular(info_path))
    except (ValueError, OSError) as err:
        raise unreadable(out_dir, err) from err
    if not (isinstance(info, dict) and isinstance(info.get("config"), dict) and isinstance(info.get("references", []), list)):
        raise unreadable(out_dir, ValueError(f"{RUN_INFO} is not an hgbench run.json (an object with config and references)"))
    changed = _differences(info.get("config", {}), plan.config)
    if changed:
        raise UserError(
            f"resume=true: {out_dir} holds results of another configuration (differing in {', '.join(changed)}); "
            "rerun with resume=false to overwrite them, or choose another output directory"
        )
    return info


def _previous(plan: Plan, out_dir: Path) -> tuple[dict[int, list[dict]], dict[int, dict]]:
    """For resume=true: the rows and reference facts of the λ draws that out_dir already holds
    complete and valid (same configuration, same λ value, no ``error`` row; hgbench.running.journal
    reads what a killed run left). Draws beyond this run's n_lambdas are kept too (a smaller
    n_lambdas never deletes finished draws). Kept rows take this run's facts (its overrides may
    differ in RESUME_FREE keys; an older file may lack columns)."""
    info = previous_info(plan, out_dir, METRICS)
    if info is None:
        return {}, {}
    try:
        old, found = read_previous(out_dir, METRICS, info)
    except (ValueError, OSError) as err:
        raise unreadable(out_dir, err) from err
    lams = plan.lams
    if found and max(found) >= len(lams):  # the same stream, drawn further: its prefix is plan.lams
        lams = plan.problem.sample_lambdas(max(found) + 1, torch.Generator().manual_seed(plan.seed))
    rows, facts = {}, {}
    for i, fact in found.items():
        part = old[old["lam_id"] == i]
        valid = 0 <= i < len(lams) and "error" not in fact and fact["lam"] == lams[i].tolist()
        if valid and len(part) and (part["status"] != "error").all():
            rows[i], facts[i] = [{**row, **_run_facts(plan)} for row in part.to_dict("records")], fact
    return rows, facts


def save(plan: Plan, rows: list[dict], columns: list[str], csv: str, facts: list[dict], out_dir: Path) -> pd.DataFrame:
    """Training: write the rows to out_dir/``csv`` and then run.json, each atomically, and
    return the rows as a frame."""
    df = frame(rows, columns)
    write_csv_atomic(df, out_dir / csv)
    write_run_info(plan, facts, out_dir)
    return df


SWEEP_JOB: str | None = None  # in a sweep's job: its name ("job 3"), heading the bar, which then leaves no line


def progress_bar(plan: Plan, todo, total: int, unit: str, enabled: bool, what: str = "") -> tqdm:
    """Either mode's progress bar over ``todo`` (of ``total``; the rest was resumed). In a
    sweep's job (``SWEEP_JOB``) it names the job and is cleared when done, so that a sweep shows
    one bar at a time and no line per job."""
    job = f"{SWEEP_JOB} " if SWEEP_JOB else ""
    return tqdm(todo, total=total, initial=total - len(todo), unit=unit, leave=SWEEP_JOB is None,
                desc=f"{job}{what}{plan.problem.name}/{plan.estimator.name}", disable=not enabled)  # fmt: skip


def execute(plan: Plan, out_dir: Path, progress: bool = True) -> tuple[pd.DataFrame, list[dict]]:
    """Run the plan; append each λ draw's rows to out_dir/metrics.csv and its reference facts to
    the journal as it finishes, merged into run.json at the end (hgbench.running.journal: constant
    cost per draw; a killed run leaves only complete draws). With ``plan.resume``, draws already
    in out_dir are kept and only the others computed. A draw whose reference is not certified
    (hgbench.core.reference.certify) or whose reference or estimator raises gets ``error`` rows
    for the grid points it did not reach; the run goes on. Ctrl-C or SIGTERM raises
    hgbench.running.interrupt.Interrupted with the number of complete draws. Returns the rows
    and the per-draw reference facts."""
    rows, facts = _previous(plan, out_dir)
    todo = [i for i in range(len(plan.lams)) if i not in facts]
    work = plan.problem.to(plan.dtype, plan.device)
    lams = plan.lams.to(plan.dtype).to(plan.device)
    journal = Journal(out_dir, METRICS, COLUMNS, functools.partial(run_info, plan))
    with interruptible(lambda: sum(i in facts for i in range(len(plan.lams))), len(plan.lams), out_dir) as critical:
        has_k = _warm_up(plan, work, lams) if todo else True  # before anything is written
        try:
            with critical():
                journal.start([row for i in sorted(rows) for row in rows[i]], [facts[i] for i in sorted(facts)])
        except OSError as err:
            raise UserError(f"cannot write the results in {out_dir} ({_reason(err)})") from err
        _compute(plan, work, lams, todo, has_k, progress, lambda draw, fact: _append(journal, critical, rows, facts, draw, fact))
        ordered = [facts[i] for i in sorted(facts)]
        with critical():
            journal.finish(ordered)
    return frame([row for i in sorted(rows) for row in rows[i]], COLUMNS), ordered


def _append(journal: Journal, critical, rows: dict, facts: dict, draw: list[dict], fact: dict) -> None:
    """One finished draw: to the journal and to ``rows``/``facts``, with signals held meanwhile."""
    with critical():
        journal.append(draw, fact)
        rows[fact["lam_id"]], facts[fact["lam_id"]] = draw, fact


def _warm_up(plan: Plan, work: Problem, lams: torch.Tensor) -> bool:
    """One untimed estimate first: one-time framework setup (lazy imports, forward-AD
    decompositions, ~1 s for jvp) must not land in the first row's time. An estimator that fails
    there is refused in one line. Returns whether the estimator has a k (ITD yields k = None
    once per t), for ``error`` rows."""
    try:
        if plan.batched:
            warm = estimate_batched(plan.estimator, work, lams[:1], [(1, 1)])[0]
        else:
            warm = list(estimate(plan.estimator, work, lams[0], [(1, 1)]))
    except Exception as err:  # noqa: BLE001 — nothing can run: refuse in one line, before the draws
        raise UserError(
            f"estimator {plan.estimator.name!r} fails on problem {plan.problem.name!r} at the first λ draw "
            f"with t = k = 1 ({_reason(err)}); check the problem's settings"
        ) from err
    return warm[0].k is not None


def _compute(plan: Plan, work: Problem, lams: torch.Tensor, todo: list[int], has_k: bool, progress: bool, done) -> None:
    """execute's work: the draws ``todo``, each passed to ``done(rows, fact)`` when finished."""
    if not todo:
        return
    keys = plan.pairs if has_k else [(t, None) for t in sorted({t for t, _ in plan.pairs})]
    keys = [(t, k, None) for t, k in keys]
    if plan.levels is not None:
        keys = [(None, plan.levels.k if has_k else None, float(level)) for level in plan.levels.values()]
    batch = {}
    if plan.batched:
        try:
            batch = dict(zip(todo, estimate_batched(plan.estimator, work, lams[todo], plan.pairs)))
        except Exception as err:  # noqa: BLE001 — becomes every draw's error rows
            batch = dict.fromkeys(todo, err)
    warned = False
    bar = progress_bar(plan, todo, len(plan.lams), "λ", progress)
    for lam_id in bar:
        lam, draw, q, kappa = plan.lams[lam_id], [], None, None
        fact = {"lam_id": lam_id, "lam": lam.tolist()}
        try:
            problem, own = plan.problem.draw(lam_id), work.draw(lam_id)  # the draw's own terms, if any
            ref = reference(problem, lam, plan.reference)
            q, kappa = ref.q, ref.kappa
            fact.update(ref.summary(), certificate=certify(ref))
            if not (torch.isfinite(ref.grad).all() and torch.isfinite(ref.w_star).all()):
                raise FloatingPointError("the float64 reference is NaN or inf")
            if q >= 1 and not warned:
                warned = True
                tqdm.write(  # above the progress bar, not through it
                    f"hgbench: warning: Φ of {plan.problem.name} is not a contraction at λ draw {lam_id}: "
                    f"q = ‖∂₁Φ(w*, λ)‖₂ = {q:.6g} >= 1; iterations may diverge (a row whose estimate is NaN or inf gets "
                    "status diverged; the others stay ok)",
                    file=sys.stderr,
                )  # fmt: skip
            if not fact["certificate"]["certified"]:
                raise UncertifiedReference(fact["certificate"]["reason"])
            if plan.levels is not None:
                found = brackets(own, lams[lam_id], ref.w_star, plan.levels)
                for bracket, est in level_estimates(plan.estimator, own, lams[lam_id], found, plan.levels):
                    if est is None:
                        draw.append({**_key(plan, lam_id, None, keys[0][1], bracket.level), "q": q, "kappa": kappa,
                                     "status": "error", "reason": bracket.reason})  # fmt: skip
                    else:
                        draw.append(_estimate_row(plan, lam_id, est, ref, bracket.level))
            else:
                estimates = batch.get(lam_id) if plan.batched else estimate(plan.estimator, own, lams[lam_id], plan.pairs)
                if isinstance(estimates, Exception):
                    raise estimates
                for est in estimates:
                    draw.append(_estimate_row(plan, lam_id, est, ref))
        except Exception as err:  # noqa: BLE001 — a failing draw is data (status error), not the end of the run
            reached = {(row["t"], row["k"], row["level"]) for row in draw}
            if plan.levels is not None:
                reached = {(None, k, level) for _, k, level in reached}
            reason = str(err) if isinstance(err, UncertifiedReference) else _reason(err)
            draw += [{**_key(plan, lam_id, t, k, level), "q": q, "kappa": kappa, "status": "error", "reason": reason}
                     for t, k, level in keys if (t, k, level) not in reached]  # fmt: skip
            fact["error"] = reason
        done(draw, fact)


@functools.lru_cache(maxsize=1)
def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=Path(hgbench.__file__).parent, capture_output=True, text=True, timeout=5,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_info(plan: Plan, facts: list[dict]) -> dict:
    """run.json's content: the run's identity (run_id, overrides: as in its rows), the resolved
    configuration, versions, threads, device, code revision and the reference facts of every λ
    draw (training: every step with an error) done so far."""
    return {
        **plan.identity,
        "config": plan.config,
        "versions": {
            "hgbench": hgbench.__version__, "torch": torch.__version__, "hydra": hydra.__version__,
            "numpy": np.__version__, "python": platform.python_version(),
        },
        "code_revision": _git_revision(),
        "threads": torch.get_num_threads(),
        "device": str(plan.device),
        "device_name": torch.cuda.get_device_name(plan.device) if plan.device.type == "cuda" else platform.processor(),
        "dtype": str(plan.dtype).removeprefix("torch."),
        "references": facts,
    }  # fmt: skip


def write_run_info(plan: Plan, facts: list[dict], out_dir: Path) -> Path:
    """Write run.json (``run_info``) atomically, as strict JSON (NaN and infinities as null)."""
    path = out_dir / RUN_INFO
    with atomic(path) as tmp:
        tmp.write_text(strict_json(run_info(plan, facts), indent=2))
    return path
