"""Preparing a run, for either mode: validate the configuration, build the problem and the
estimator from their ``_target_`` (``target_class``, ``build``), check that the estimator applies,
that the mode accepts the problem and that the run fits the machine (hgbench.running.guard), and
draw λ: ``prepare`` gives the Plan (hgbench.running.plan) or refuses in one line (UserError)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from hydra._internal.utils import _locate
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hgbench.core.bound import check_applies
from hgbench.core.linearization import dense_path
from hgbench.core.reference import choose
from hgbench.estimators.base import Estimator
from hgbench.options import TARGET_FILE, Target
from hgbench.problems.base import Problem
from hgbench.running import guard, modes, schema
from hgbench.running.errors import UserError, reason_of
from hgbench.running.grids import grid_pairs
from hgbench.running.levels import Levels
from hgbench.running.plan import Plan
from hgbench.solvers.base import Solver

if TYPE_CHECKING:
    from hgbench.running.mode import Mode

DTYPES = {name: getattr(torch, name) for name in schema.DTYPES}


def target_class(target, what: str, base: type) -> type:
    """The class a config's ``_target_`` names (its form checked by hgbench.options.Target):
    ``pkg.module.Class``, imported from sys.path, or ``path/to/file.py:Class``, loaded from that
    file (a relative path from the working directory), once per file and process, as a module
    named after the file. It must be a subclass of ``base``; else one UserError line."""
    text = f"{what}._target_={target!r}"
    found = TARGET_FILE.fullmatch(target) if isinstance(target, str) else None
    try:
        if found:
            cls = getattr(module_of_file(Path(found["file"])), found["name"])
        else:
            cls = _locate(target)  # what hydra.utils.get_class does, without logging the failure too
    except Exception as err:  # any failure to import the user's code is one line
        cause = err.__cause__ or err
        raise UserError(f"{text} cannot be loaded ({reason_of(cause)}); it must be {Target.allowed}") from err
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise UserError(f"{text} is not a subclass of {base.__module__}.{base.__qualname__}")
    return cls


def module_of_file(path: Path):
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


def build(node, what: str):
    """Build the ``what`` (problem, estimator, or solver: a group of ``Mode.groups``) from its config node: its class found by
    ``target_class``; a failing constructor (bad setting, missing or malformed data file)
    becomes one UserError line naming it."""
    cls = target_class(node.get("_target_"), what, {"problem": Problem, "estimator": Estimator, "solver": Solver}[what])
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
        raise UserError(
            f"device={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )
    return device


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
            raise UserError(f"threads={cfg.threads} is refused by torch ({reason_of(err)})") from err
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
    problem = build(cfg.problem, "problem")
    estimator = build(cfg.estimator, "estimator")
    components = {group: build(cfg[group], group) for group in mode.groups}  # mode=bilevel: its solver
    try:
        mode.check_estimator(estimator)
        check_applies(estimator, problem)
        method = choose(problem, cfg.get("reference", "auto"))
        dense = dense_path(cfg.get("linearization", "auto"), problem.w_dim)
        mode.check_problem(cfg, problem)
        guard.check(cfg, problem, estimator, pairs, device)  # memory and time, before drawing λ
        lams = problem.sample_lambdas(n, torch.Generator().manual_seed(seed))
    except ValueError as err:
        raise UserError(str(err)) from err
    batched = cfg.batch_lambdas and estimator.batchable and problem.batchable and levels is None
    if cfg.batch_lambdas and not batched:
        why = (
            "grid=levels finds its grid points per λ draw"
            if levels is not None
            else f"{estimator.name} on {problem.name} does not vectorize"
        )
        print(f"hgbench: batch_lambdas=true: {why}; looping over λ draws")
    config = OmegaConf.to_container(cfg, resolve=True)
    for group in (*modes.foreign_groups(mode), *mode.unused):
        config.pop(group, None)
    return Plan(
        problem,
        estimator,
        grid["kind"],
        pairs,
        DTYPES[cfg.dtype],
        device,
        lams,
        seed,
        batched,
        config,
        cfg.resume,
        overrides,
        method,
        levels,
        dense,
        components,
    )
