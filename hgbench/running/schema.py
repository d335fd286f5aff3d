"""The configuration's schema: one Hydra structured config (an options dataclass in Hydra's
ConfigStore) per config file, used as the schema of its YAML file (``defaults:
[/schema/GROUP/NAME@_here_, _self_]``, Hydra 1.3's "Structured Configs as schema for YAML files").

A problem or an estimator declares its options once, in its own file (``Options``, in the
vocabulary of hgbench.options); ``component_schemas`` stores them under the name of each preset
that uses the class (conf/problem/ridge.yaml → ``/schema/problem/ridge``), so that adding a
component is its file and its YAML preset (a solver of mode=bilevel likewise: conf/solver/). The
run's own options (``Config``, ``Grid``, ``Outer``, ``Stochastic``, ``Bilevel``) are declared here.

Each field says, in its metadata, what it accepts (a ``Check``) and what it means (``doc``);
the YAML files give the values. OmegaConf enforces the field types while Hydra composes the
configuration (``problem.n_train=2.5`` is refused before the run starts; ``explain`` turns that
refusal into this module's one line), and ``validate`` checks, once and before any work, what
types alone cannot say: ranges, finiteness, choices, strict booleans (OmegaConf would read
``yes`` or ``1`` as true), non-empty names, that no key was added (``+problem.bogus=1``), and
the relations between keys an ``Options`` class states (``relations``, e.g. lam_low <= lam_high).
Every refusal is one line naming the key as the user typed it (the group's prefix added here),
the bad value and what is allowed. Checks that depend on data (sizes against a data set) stay
with the code that needs them.

A problem defined outside hgbench names the open schema ``/schema/problem/own``
(``OwnProblemOptions``): its ``_target_``, ``name`` and ``seed`` are checked here, and every
other key is an argument of its class's constructor, which refuses what it cannot use (one
line, hgbench.running.runner). A group option without a registered schema (e.g. a problem of a
test's searchpath) is not checked here either.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from hydra.core.config_store import ConfigStore
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from hgbench.core.linearization import PATHS
from hgbench.core.reference import REFERENCES
from hgbench.options import (  # noqa: F401  (ConfigError and Check are this module's public names too)
    SEED,
    Check,
    Choice,
    ConfigError,
    Counts,
    Device,
    EstimatorOptions,
    Flag,
    Integer,
    Number,
    Options,
    OwnProblemOptions,
    Path,
    checked_fields,
    option,
)
from hgbench.paths import conf_dir
from hgbench.running.grids import GRID_KINDS

DTYPES = ("float64", "float32")
HELP_RESOLVER = "hgbench_help"


def _modes() -> tuple:
    from hgbench.running.modes import MODES

    return tuple(MODES)


def _outer(name: str) -> Callable[[], tuple]:
    """A choice list of hgbench.running.outer_loop, read when checking: the mode and its numerics
    are imported only by a run that needs them, not by `--help` or a refused configuration."""

    def values() -> tuple:
        from hgbench.running import outer_loop

        return getattr(outer_loop, name)

    return values


# --- the run's own options (the components' are declared in their files) -----------------------
@dataclass
class Data(Options):
    root: Optional[str] = option(Path("the 5k MNIST subset shipped with hgbench"), "folder of the MNIST IDX files")


@dataclass
class Config(Options):
    """hgbench run: the top-level options."""

    seed: int = option(SEED, "seeds the synthetic data and the λ draws")
    n_lambdas: int = option(Integer(1), "λ draws; each gets its own float64 reference hypergradient")
    dtype: str = option(Choice(DTYPES), "precision of the estimators; the reference is always float64")
    device: str = option(Device(), "where the estimators run")
    threads: Optional[int] = option(Integer(1, null="torch's default"), "torch intra-op threads, set before any work")
    batch_lambdas: Any = option(Flag(), "evaluate all λ draws at once with torch.func.vmap (time_s amortized per draw)")
    plot: Any = option(Flag(), "draw the figure at the end of a run (or of a sweep)")
    verbose: Any = option(Flag(), "a sweep prints each job's table, not only one progress bar and the final table")
    resume: Any = option(Flag(), "keep the complete λ draws already in the output folder, compute the others")
    guard: Any = option(Flag(), "estimate peak memory and time first: refuse a run too large for the machine, warn about a long one")
    mode: str = option(
        Choice(_modes),
        "error: estimator vs reference over a grid; outer: bilevel optimization / training (docs/outer.md); stochastic, bilevel: docs/stochastic.md",
    )
    reference: str = option(
        Choice(REFERENCES),
        "the float64 reference: dense Jacobian and LU, matrix-free Newton–Krylov (docs/reliability.md), or auto (matrix-free for large problems)",
    )
    linearization: str = option(
        Choice(PATHS),
        "error mode: products through Φ by VJPs/JVPs, or by a dense J built once per linearization (same counts; rows' time_kind ends in _dense), or auto (dense for dim w ≤ 300)",
    )
    data: Data = field(default_factory=Data)
    problem: Any = None
    estimator: Any = None
    grid: Any = None
    outer: Any = None
    stochastic: Any = None
    bilevel: Any = None
    solver: Any = None
    reproduce: Any = None  # a preset's block for `hgbench reproduce` (hgbench.running.reproduce); not a run option


@dataclass
class Grid(Options):
    kind: str = option(Choice(GRID_KINDS), "how t and k combine (diag: k = t; full: every pair; …)")
    t: Any = option(Counts(), "inner steps")
    k: Any = option(Counts(null="diag: k = t"), "linear-solver steps (ignored by diag, where k = t)")


@dataclass
class Levels(Grid):
    high: float = option(Number(), "log10 of the largest absolute inner error ‖w_t − w*‖ of the levels")
    low: float = option(Number(), "log10 of the smallest (< high)")
    n: int = option(Integer(2), "levels, log-spaced from 10^high down to 10^low")


@dataclass
class Outer(Options):
    t: int = option(Integer(0), "inner steps per hypergradient")
    k: int = option(Integer(0), "linear-solver steps (ignored by estimators without a solver)")
    steps: int = option(Integer(1), "outer steps")
    optimizer: str = option(Choice(_outer("OPTIMIZERS")), "sgd (heavy ball) or adam")
    lr: float = option(Number(0, low_open=True), "learning rate")
    momentum: float = option(Number(0, 1, high_open=True), "sgd only: m ← momentum·m + ĝ, λ ← λ − lr·m")
    warm_start: str = option(Choice(_outer("WARM_STARTS")), "none; inner (w₀ = previous w_t); inner+solver (also v₀ = previous v_k)")
    project: Any = option(Flag(), "apply the problem's projection after each step")
    clamp: Any = option(Flag(), "clamp λ to the problem's box after each step")
    eval_every: int = option(Integer(1), "f(λ), hypergradient error and the problem's metrics every N steps (and at the last)")
    test_t: int = option(Integer(0), "problems with metrics: Φ steps from 0 for the states of the evaluated model")
    checkpoint_every: int = option(Integer(0), "λ to checkpoints.pt and the resumable state every N steps (0: first and last only)")
    optimum_tol: float = option(
        Number(0, 1, low_open=True, high_open=True),
        "the certified optimum f*: stationarity ‖Π(λ − ∇f) − λ‖ ≤ optimum_tol × its value at λ₀",
    )
    optimum_evals: int = option(Integer(0), "float64 references the certified optimum may use (0: no f*, no ε-claim)")


@dataclass
class Stochastic(Options):
    batches: Any = option(Counts(), "inner minibatch sizes b (sample counts, each <= the training samples): the rows' axis")
    outer_batch: Optional[int] = option(
        Integer(1, null="the inner batch size b of the row"), "outer minibatch size b' (<= the outer samples)"
    )
    replace: Any = option(Flag(), "sample minibatches with replacement (i.i.d.); false: uniform subsets")
    repeats: int = option(Integer(2), "R: seeded repetitions of the estimator per λ draw and batch size")


@dataclass
class Bilevel(Options):
    iterations: int = option(Integer(1), "outer iterations of the solver (solver=NAME), at most")
    max_calls: Optional[int] = option(
        Integer(1, null="no budget: iterations decide"), "stop at the first iteration whose oracle calls reach this budget"
    )
    eval_every: int = option(
        Integer(1), "f(λ), ‖∇f(λ)‖² (certified reference) and the problem's metrics every N iterations (and at 0 and the last)"
    )
    batch: int = option(Integer(1), "inner minibatch size b (<= the training samples)")
    outer_batch: Optional[int] = option(Integer(1, null="the inner batch size b"), "outer minibatch size b' (<= the outer samples)")
    replace: Any = option(Flag(), "sample minibatches with replacement (i.i.d.); false: uniform subsets")
    test_t: int = option(
        Integer(0),
        "problems with metrics: Φ steps from 0 for the states of the evaluated model (0 on hyper_cleaning: its classifier w*(λ))",
    )


# (ConfigStore group, name) -> schema, for the run's own options; conf/GROUP/*.yaml name theirs in their defaults list.
RUN_SCHEMAS: dict[tuple[str, str], type] = {
    ("schema", "config"): Config,
    ("schema/grid", "grid"): Grid,
    ("schema/grid", "levels"): Levels,
    ("schema/outer", "outer"): Outer,
    ("schema/stochastic", "stochastic"): Stochastic,
    ("schema/bilevel", "bilevel"): Bilevel,
}
COMPONENT_GROUPS = ("problem", "estimator", "solver")


def component_schemas() -> dict[tuple[str, str], type]:
    """Per component preset conf/GROUP/NAME.yaml, the ``Options`` its ``_target_`` class declares,
    stored as ``schema/GROUP/NAME`` (the schema its defaults list names); plus the open schema of
    a user's own problem and the plain schema of an estimator without options of its own. The
    classes are found from the presets' ``_target_``, never named here."""
    found: dict[tuple[str, str], type] = {("schema/problem", "own"): OwnProblemOptions, ("schema/estimator", "estimator"): EstimatorOptions}
    for group in COMPONENT_GROUPS:
        for path in sorted((conf_dir() / group).glob("*.yaml")):
            found[(f"schema/{group}", path.stem)] = get_class(OmegaConf.load(path)["_target_"]).Options
    return found


SCHEMAS: dict[tuple[str, str], type] = {**RUN_SCHEMAS, **component_schemas()}


def register() -> None:
    """Store the schemas in Hydra's ConfigStore (before Hydra composes a configuration)."""
    store = ConfigStore.instance()
    for (group, name), schema in SCHEMAS.items():
        store.store(group=group, name=name, node=structured(schema), provider="hgbench")


def structured(schema: type) -> DictConfig:
    """The schema as a typed config node; an open one (``open_keys``) takes keys beyond its fields
    (a problem's constructor arguments)."""
    node = OmegaConf.structured(schema)
    if getattr(schema, "open_keys", False):
        OmegaConf.set_struct(node, False)
    return node


# --- checking -----------------------------------------------------------------------------------
def _is_schema(kind) -> bool:
    """Whether ``kind`` is an options dataclass (a component's, the run's, or a nested one such as Data)."""
    return isinstance(kind, type) and dataclasses.is_dataclass(kind) and issubclass(kind, Options)


def _schema_of(node) -> type | None:
    kind = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
    return kind if _is_schema(kind) else None


def _unknown(path: str, schema: type, shown: str) -> str:
    """The refusal of a key the schema lacks (``shown``: the key, with its value when known)."""
    keys = ", ".join(f.name for f in dataclasses.fields(schema) if not f.name.startswith("_"))
    owner = path.rsplit(".", 1)[0] if "." in path else "hgbench run"
    return f"{shown} is not an option; the options of {owner} are {keys}"


def validate(cfg: DictConfig) -> None:
    """Check every key of the configuration that has a schema; raise ConfigError with one line
    for the first refused value (interpolations resolved; OmegaConf errors propagate)."""
    _validate(cfg, "")


def validate_node(node: DictConfig, prefix: str) -> None:
    """``validate`` for one group's node (its keys named ``prefix``KEY in the refusal)."""
    _validate(node, prefix)


def _validate(node: DictConfig, prefix: str) -> None:
    schema = _schema_of(node)
    if schema is None:
        return
    names = {f.name for f in dataclasses.fields(schema)}
    for key in node:
        if key not in names and not getattr(schema, "open_keys", False):
            value = OmegaConf.to_container(node, resolve=False)[key]
            raise ConfigError(_unknown(f"{prefix}{key}", schema, f"{prefix}{key}={value!r}"))
    # Values given directly first: a refused name like reparam_${.map} then blames map, not name.
    for f in sorted(dataclasses.fields(schema), key=lambda f: OmegaConf.is_interpolation(node, f.name)):
        value = node[f.name]
        check = f.metadata.get("check")
        if check is not None and not check.ok(value):
            raise ConfigError(check.refusal(f"{prefix}{f.name}", value))
        if isinstance(value, DictConfig):
            _validate(value, f"{prefix}{f.name}.")
    values = {f.name: node[f.name] for f in dataclasses.fields(schema)}
    refusal = schema.relations(values, lambda key: f"{prefix}{key}")
    if refusal is not None:
        raise ConfigError(refusal)


def explain(err: BaseException) -> str:
    """One line for an error Hydra (or OmegaConf) raised while composing the configuration: a
    type refused by a schema in the schema's words, an unknown key with the options there are,
    anything else (unknown config choice, bad override syntax, …) as the message on one line."""
    chain = [err]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    for located in chain:
        kind, key = getattr(located, "object_type", None), getattr(located, "key", None)
        if _is_schema(kind) and isinstance(key, str):
            full_key = located.full_key or key
            fields = {f.name: f for f in dataclasses.fields(kind)}
            if key not in fields:
                return _unknown(full_key, kind, full_key)
            check = fields[key].metadata.get("check")
            if check is not None:
                return check.refusal(full_key, located.value)
    text = str(err).split("\nConfig search path:")[0]
    launcher = re.search(r"Could not load 'hydra/launcher/(\w+)'", text)
    if launcher:  # the launcher's Hydra plugin is not installed
        return (
            f"the {launcher.group(1)} launcher is not installed (hydra/launcher/{launcher.group(1)}); "
            "install the launchers extra: pip install 'hgbench[launchers]'"
        )
    if len(chain) > 1:
        text += " (" + str(chain[1]).split("\n    full_key:")[0] + ")"
    where = next((e.full_key for e in chain if getattr(e, "full_key", None)), None)
    text = text.split("\n    full_key:")[0]
    return " ".join(f"{where}: {text}".split() if where else text.split())


# --- help ----------------------------------------------------------------------------------------
def schema_users(group: str) -> dict[type, list[str]]:
    """Per schema, the options of conf/``group``/ that use it (their defaults list names it)."""
    users: dict[type, list[str]] = {}
    for path in sorted((conf_dir() / group).glob("*.yaml")):
        defaults = OmegaConf.load(path).get("defaults") or []
        for entry in defaults:
            ref = str(entry).split("@", 1)[0].lstrip("/")
            schema = SCHEMAS.get(tuple(ref.rsplit("/", 1)))
            if schema is not None:
                users.setdefault(schema, []).append(path.stem)
    return users


def _lines(schema: type, prefix: str) -> list[str]:
    return [f"  {prefix + f.name:<32} {f.metadata['check'].allowed} — {f.metadata['doc']}" for f in checked_fields(schema)]


def help_text() -> str:
    """``hgbench run --help`` after its header: the config groups and their options, and every
    option with its allowed values and meaning, from the schemas; then Hydra's flags."""
    groups = ["problem", "estimator", "grid", "outer", "stochastic", "solver", "bilevel"]
    out = ["Config groups (GROUP=OPTION; `hgbench list` describes them):"]
    for group in [*groups, "experiment", "hydra/launcher"]:
        names = ", ".join(path.stem for path in sorted((conf_dir() / group).glob("*.yaml")))
        out.append(f"  {'+' if group == 'experiment' else ''}{group}: {names}")
    out += ["", "Options (KEY=VALUE: allowed values — meaning; `--cfg job` shows the values):"]
    out += _lines(Config, "") + _lines(Data, "data.")
    for group in groups:
        for schema, users in schema_users(group).items():
            out += ["", f"{group}={', '.join(users)}:"] + _lines(schema, f"{group}.")
    out += ["", "problem=your own (its YAML file names /schema/problem/own; --config-dir DIR finds it; examples/own_problem/README.md):"]
    out += _lines(OwnProblemOptions, "problem.") + [f"  {'problem.*':<32} the other keys: arguments of its class's constructor"]
    out += ["", "Flags:", "$FLAGS_HELP"]
    return "\n".join(line.replace("$", "$$") if line != "$FLAGS_HELP" else line for line in out)


register()
OmegaConf.register_new_resolver(HELP_RESOLVER, help_text, replace=True)
