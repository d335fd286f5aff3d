"""The Python API, for notebooks and scripts: ``hgbench.evaluate`` runs what ``hgbench run``
runs and returns its rows as a pandas DataFrame; ``hgbench.plot`` draws their figures (error, cost, inner, bound, outer, train);
``hgbench.load`` reads the rows of CSVs written before.

    df = hgbench.evaluate("ridge", ["itd", "fp", "cg"], "diag", n_lambdas=3, seed=0)
    hgbench.plot(df)

``evaluate`` writes the command line ``hgbench run`` would take (``problem=ridge estimator=fp
grid=diag n_lambdas=3 seed=0``: one per estimator, as the jobs of ``hgbench run -m
estimator=itd,fp,cg …``, each override printed as Hydra prints a sweep job's), composes the configuration from it with Hydra's compose API and runs
it with the function ``hgbench run`` runs (hgbench.running.app.run_job). Its rows therefore have
the CSV's columns, values and identity (run_id, setting_id, overrides) of that command line; the
folder they were written to is a temporary one unless ``out_dir`` is given.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any, Union

import pandas as pd
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from hgbench.analysis import canvas
from hgbench.analysis.plot import KINDS, error_figure, figure
from hgbench.analysis.results import combine, load
from hgbench.options import Name, OwnProblemOptions
from hgbench.paths import conf_dir
from hgbench.problems.base import Problem
from hgbench.running import schema
from hgbench.running.app import run_job
from hgbench.running.errors import UserError

Settings = Union[dict, str]  # {"n_features": 8} or "n_features=8 cond=30"
Spec = Union[str, tuple]  # a config name, or (name, settings); a problem also a Problem subclass
SIMPLE = re.compile(r"[\w.+\-/:]+")  # a value Hydra's override grammar takes without quotes

__all__ = ["evaluate", "plot", "load"]


def evaluate(
    problem: Spec | type = "ridge",
    estimators: Spec | list = "cg",
    grid: Spec = "diag",
    *,
    n_lambdas: int | None = None,
    seed: int | None = None,
    config_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    **options: Any,
) -> pd.DataFrame:
    """Run ``problem`` × each of ``estimators`` × ``grid`` as ``hgbench run`` would and return
    the rows (one per λ draw and grid point; the CSV's columns).

    problem, each estimator, grid: a config name (``"ridge"``), or ``(name, settings)`` with the
    settings of that config file as a dict (``("ridge", {"n_features": 8})``) or as overrides
    (``("ridge", "n_features=8 cond=30")``). A problem may also be a subclass of
    hgbench.problems.base.Problem, or ``(cls, {constructor arguments})``: its configuration is
    then ``_target_`` = the class's import path, ``name`` (default: the class name in
    snake_case), ``seed: ${seed}`` and the arguments (an instance has no configuration to name
    the run by, hence a class).
    n_lambdas, seed: as ``n_lambdas=``, ``seed=`` (None: the config's defaults).
    config_dir: a folder of your own config files (``problem/NAME.yaml``, …), searched as
    ``hgbench run --config-dir`` does (examples/own_problem/README.md).
    out_dir: where the runs go (one folder per estimator, ``<i>_<problem>_<estimator>_<grid>``,
    and the combined CSV, as a sweep leaves them); None: a temporary folder, removed.
    options: any other key, top-level or dotted (``dtype="float32"``, ``**{"grid.t": [0, 10]}``);
    not Hydra's own (``hydra.run.dir``: use out_dir).

    Returns the rows as read back from the CSVs written (the dtypes of ``load``). A bad name or
    value raises hgbench.running.errors.UserError (a ValueError) with one line, before any work;
    so does an estimator refused by the problem (e.g. cg where ∂₁Φ is not symmetric), when its
    turn comes."""
    names = estimators if isinstance(estimators, list) else [estimators]
    placed = [key for key in options if key.lstrip("+~").split(".", 1)[0] == "hydra"]
    if placed:  # Hydra's own keys do nothing in a composed configuration: refused, not ignored
        raise UserError(
            f"{placed[0]}={options[placed[0]]!r}: hydra.* options do not apply to evaluate; give out_dir= for where the runs go"
        )
    if not names:
        raise UserError("estimators=[] names no estimator; give a name such as 'cg' or a list of them")
    own = None
    if isinstance(problem, type) or (isinstance(problem, tuple) and problem and isinstance(problem[0], type)):
        own, chosen = _own_problem(problem)
    elif isinstance(problem, Problem):
        raise UserError(
            f"problem={type(problem).__name__}(...) is an instance, which has no configuration to name the run by; "
            "give its class and constructor arguments: problem=(cls, {...})"
        )
    else:
        chosen = _choice("problem", problem)
    rest = _choice("grid", grid)
    rest += [f"n_lambdas={_value(n_lambdas)}"] * (n_lambdas is not None) + [f"seed={_value(seed)}"] * (seed is not None)
    rest += [f"{key}={_value(value)}" for key, value in options.items()]
    if own is not None and any(o.startswith("problem.") for o in rest):
        raise UserError("settings of a problem class go with it: problem=(cls, {...}), not problem.KEY= options")
    search = _search_path(config_dir)
    jobs = []  # every configuration composed (bad names and values refused) before any work
    for estimator in names:
        overrides = _canonical([*chosen, *_choice("estimator", estimator), *rest])
        jobs.append((overrides, _compose(overrides[len(chosen) :] if own is not None else overrides, search, own)))
    with tempfile.TemporaryDirectory(prefix="hgbench-") as scratch:
        root = Path(out_dir) if out_dir is not None else Path(scratch)
        frames = []
        for i, (overrides, cfg) in enumerate(jobs):
            job = root / f"{i}_{cfg.problem.name}_{cfg.estimator.name}_{cfg.grid.kind}"
            job.mkdir(parents=True, exist_ok=True)
            mode, _ = run_job(cfg, job, overrides, progress)
            frames.append(mode.load(job / mode.csv))
        combine(root, mode.csv)  # as a sweep leaves it: `hgbench plot OUT_DIR` draws every estimator
        return pd.concat(frames, ignore_index=True)


def plot(df: pd.DataFrame, out_dir: str | Path | None = None, *, kind: str = "error", theory: bool = False, **options):
    """Figure ``kind`` of rows from ``evaluate`` or ``load``: ``error`` (error vs iterations, the
    figure ``hgbench run`` draws), ``cost``, ``inner``, ``bound`` (rows with the bounds' constants,
    hgbench.analysis.plot.load_with_constants), ``outer`` or ``train`` (rows of mode=outer runs),
    as ``hgbench plot --kind`` draws them. Returns the matplotlib Figure; with ``out_dir``, it is
    also saved there (with the tables that kind writes, e.g. slopes.csv). ``theory``: overlay
    the predicted rates (kind ``error``); ``options``: the figure function's others (``eps`` for
    ``outer``)."""
    if kind not in KINDS:
        raise UserError(f"kind={kind!r} is not one of {', '.join(KINDS)}")
    if theory and kind != "error":
        raise UserError(f"theory=True applies to kind='error', not kind={kind!r}")
    if kind == "error" and not options:
        fig = error_figure(df, theory)
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            canvas.save(fig, Path(out_dir), "error_vs_iterations", close=False)
        return fig
    with tempfile.TemporaryDirectory(prefix="hgbench-") as scratch:
        target = Path(out_dir) if out_dir is not None else Path(scratch)
        target.mkdir(parents=True, exist_ok=True)
        return figure(df, kind, target, **options)


# --- from Python values to the command line's overrides -----------------------------------------
def _value(value) -> str:
    """A Python value as an override's value, typed as one would type it."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(_value, value)) + "]"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value if SIMPLE.fullmatch(value) else "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise UserError(f"{value!r} ({type(value).__name__}) cannot be a setting; use numbers, strings, booleans, None or lists of them")


def _settings(group: str, settings: Settings) -> list[str]:
    """``group.key=value`` overrides from a dict, or from ``"key=value key=value"``."""
    if isinstance(settings, dict):
        return [f"{group}.{key}={_value(value)}" for key, value in settings.items()]
    if isinstance(settings, str) and all("=" in word for word in settings.split()):
        return [f"{group}.{word}" for word in settings.split()]
    raise UserError(f"{group} settings {settings!r} must be a dict or a string 'key=value key=value'")


def _canonical(overrides: list[str]) -> list[str]:
    """The overrides as ``hgbench run -m`` records each job's (Hydra's basic sweeper: values
    re-printed from the parsed override, e.g. ``plot=False``, ``grid.t=[0,10]``), so that the
    rows' ``overrides`` are those of the equivalent command line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise UserError(" ".join(str(err).split())) from err
    return [f"{o.get_key_element()}={o.get_value_element_as_str()}" for o in parsed]


def _choice(group: str, spec: Spec) -> list[str]:
    """The overrides choosing the config file ``spec`` of ``group`` and its settings."""
    name, settings = spec if isinstance(spec, tuple) and len(spec) == 2 else (spec, {})
    if not (isinstance(name, str) and Name().ok(name)):
        raise UserError(f"{group}={spec!r} must be a config name (see `hgbench list`) or (name, settings)")
    return [f"{group}={name}", *_settings(group, settings)]


def _own_problem(spec) -> tuple[dict, list[str]]:
    """A problem class (with its constructor's arguments): its configuration node and the
    overrides that name it in the rows' identity (``problem=pkg.module.Class problem.key=value``)."""
    cls, settings = spec if isinstance(spec, tuple) else (spec, {})
    if not (issubclass(cls, Problem) and isinstance(settings, dict)):
        raise UserError(f"problem={spec!r}: a class must be a subclass of hgbench.problems.base.Problem, its settings a dict")
    target = f"{cls.__module__}.{cls.__qualname__}"
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
    node = {"_target_": target, "name": name, "seed": "${seed}", **settings}
    return node, [f"problem={target}", *_settings("problem", settings)]


def _search_path(config_dir) -> list[str]:
    if config_dir is None:
        return []
    folder = Path(config_dir).expanduser().resolve()
    if not folder.is_dir():
        raise UserError(f"config_dir={str(config_dir)!r} is not a folder; give the folder that holds problem/NAME.yaml")
    return [f"hydra.searchpath=[file://{folder}]"]


def _compose(overrides: list[str], search: list[str], own: dict | None) -> DictConfig:
    """The configuration ``hgbench run OVERRIDES`` composes (with ``own``: the configuration of
    a problem given as a class, in place of the default problem); composition errors become one
    UserError line."""
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose("config", overrides=[*search, *overrides])
        if own is not None:
            node = OmegaConf.merge(schema.structured(OwnProblemOptions), own)  # its schema, as its YAML file would name
            with open_dict(cfg):
                cfg.problem = node
    except (HydraException, OmegaConfBaseException) as err:
        raise UserError(schema.explain(err)) from err
    except yaml.YAMLError as err:  # a file of config_dir that is not YAML
        raise UserError(f"a config file is not valid YAML: {' '.join(str(err).split())}") from err
    return cfg
