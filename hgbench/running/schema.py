"""The configuration's schema: one Hydra structured config (a dataclass in Hydra's ConfigStore)
per config file, used as the schema of its YAML file (``defaults: [/schema/GROUP/NAME@_here_,
_self_]``, Hydra 1.3's "Structured Configs as schema for YAML files").

Each field says, in its metadata, what it accepts (a ``Check``) and what it means (``doc``);
the YAML files give the values. OmegaConf enforces the field types while Hydra composes the
configuration (``problem.n_train=2.5`` is refused before the run starts; ``explain`` turns that
refusal into this module's one line), and ``validate`` checks, once and before any work, what
types alone cannot say: ranges, finiteness, choices, strict booleans (OmegaConf would read
``yes`` or ``1`` as true), non-empty names, and that no key was added (``+problem.bogus=1``).
Every refusal is one line naming the key, the bad value and what is allowed. Checks that
depend on data (sizes against a data set) or on several keys stay with the code that needs them.

A problem defined outside hgbench names the open schema ``/schema/problem/own`` (``OwnProblem``):
its ``_target_``, ``name`` and ``seed`` are checked here, and every other key is an argument of
its class's constructor, which refuses what it cannot use (one line, hgbench.running.runner).
A group option without a registered schema (e.g. a problem of a test's searchpath) is not
checked here either.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from hgbench.core.reference import REFERENCES
from hgbench.estimators.precond import KINDS, SOLVES
from hgbench.estimators.reparam import MAPS
from hgbench.estimators.torchopt_implicit import SOLVERS as TORCHOPT_SOLVERS
from hgbench.paths import conf_dir
from hgbench.problems.hyper_rep import HEADS, REPRESENTATIONS
from hgbench.problems.outer import OUTERS
from hgbench.problems.ye import YeLogistic as YeLogisticProblem, YeRidge as YeRidgeProblem
from hgbench.running.grids import GRID_KINDS

DTYPES = ("float64", "float32")
HELP_RESOLVER = "hgbench_help"


class ConfigError(ValueError):
    """A configuration value the schema refuses; its message is one line."""


# --- what a key accepts -----------------------------------------------------------------------
class Check:
    """What a key accepts: ``ok(value)`` and ``allowed``, the same in words."""

    allowed: str

    def ok(self, value) -> bool:
        raise NotImplementedError

    def refusal(self, key: str, value) -> str:
        return f"{key}={value!r} must be {self.allowed}"


INT64 = 2**63  # every integer setting ends up in a 64-bit integer (torch sizes, numpy seeds)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _too_big(key: str, value, allowed: str) -> str | None:
    """The refusal of an integer that no 64-bit integer holds (e.g. problem.rep_dim=1e20 typed
    as 100000000000000000000), None for any other value."""
    values = list(value) if OmegaConf.is_list(value) or isinstance(value, list) else [value]
    big = next((v for v in values if _is_int(v) and abs(v) >= INT64), None)
    return None if big is None else f"{key}={big} is too large for a 64-bit integer (below 2**63); it must be {allowed}"


@dataclass(frozen=True)
class Integer(Check):
    """An integer >= low (and < below, written ``below_text``); ``null``: what null means, when allowed."""

    low: int
    below: int | None = None
    below_text: str | None = None
    null: str | None = None

    def ok(self, value) -> bool:
        if value is None:
            return self.null is not None
        return _is_int(value) and value >= self.low and value < (INT64 if self.below is None else self.below)

    def refusal(self, key: str, value) -> str:
        return (self.below is None and _too_big(key, value, self.allowed)) or super().refusal(key, value)

    @property
    def allowed(self) -> str:
        if self.below is None:
            text = f"an integer >= {self.low}"
        else:
            text = f"an integer in [{self.low}, {self.below_text or self.below})"
        return text + (f", or null ({self.null})" if self.null else "")


@dataclass(frozen=True)
class Number(Check):
    """A finite number, optionally bounded (``low``/``high``, open or closed); ``null`` as for Integer."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    null: str | None = None

    def ok(self, value) -> bool:
        if value is None:
            return self.null is not None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    @property
    def allowed(self) -> str:
        if self.low is not None and self.high is not None:
            bounds = f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        elif self.low is not None:
            bounds = f" {'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            bounds = f" {'<' if self.high_open else '<='} {self.high:g}"
        else:
            bounds = ""
        return f"a finite number{bounds}" + (f", or null ({self.null})" if self.null else "")


@dataclass(frozen=True)
class Choice(Check):
    """One of ``values`` (a tuple, or a function giving it: a registry read when checking)."""

    values: tuple | Callable[[], tuple]

    @property
    def choices(self) -> tuple:
        return self.values() if callable(self.values) else self.values

    def ok(self, value) -> bool:
        return any(type(value) is type(choice) and value == choice for choice in self.choices)

    @property
    def allowed(self) -> str:
        return "one of " + ", ".join(map(str, self.choices))

    def refusal(self, key: str, value) -> str:
        return f"{key}={value!r} is not {self.allowed}"


@dataclass(frozen=True)
class Flag(Check):
    allowed = "true or false"

    def ok(self, value) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class Name(Check):
    """A name that goes into CSV columns and folder names."""

    allowed = "a non-empty name of letters, digits and _ . + -"

    def ok(self, value) -> bool:
        return isinstance(value, str) and re.fullmatch(r"[\w.+-]+", value) is not None


@dataclass(frozen=True)
class Text(Check):
    allowed = "a string"

    def ok(self, value) -> bool:
        return isinstance(value, str)


TARGET_FILE = re.compile(r"(?P<file>.+\.py):(?P<name>[A-Za-z_]\w*)")  # path/to/file.py:Class
TARGET_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")  # pkg.module.Class


@dataclass(frozen=True)
class Target(Check):
    """The class a ``_target_`` names: importable from sys.path, or defined in a Python file."""

    allowed = "a class path pkg.module.Class (its module on sys.path) or a file path/to/file.py:Class"

    def ok(self, value) -> bool:
        return isinstance(value, str) and (TARGET_PATH.fullmatch(value) or TARGET_FILE.fullmatch(value)) is not None


@dataclass(frozen=True)
class Path(Check):
    null: str

    def ok(self, value) -> bool:
        return value is None or (isinstance(value, str) and value.strip() != "")

    @property
    def allowed(self) -> str:
        return f"a path, or null ({self.null})"


@dataclass(frozen=True)
class Device(Check):
    allowed = "cpu, cuda or cuda:N (N a device index below 2**31)"

    def ok(self, value) -> bool:
        found = re.fullmatch(r"cpu|cuda(:(\d+))?", value) if isinstance(value, str) else None
        return found is not None and (found[2] is None or int(found[2]) < 2**31)


@dataclass(frozen=True)
class Counts(Check):
    """Iteration counts: an integer >= 0 or a non-empty list of them; ``null`` as for Integer."""

    null: str | None = None

    def ok(self, value) -> bool:
        if value is None:
            return self.null is not None
        values = list(value) if OmegaConf.is_list(value) or isinstance(value, list) else [value]
        return bool(values) and all(_is_int(v) and 0 <= v < INT64 for v in values)

    @property
    def allowed(self) -> str:
        return "an integer >= 0 or a non-empty list of them" + (f", or null ({self.null})" if self.null else "")

    def refusal(self, key: str, value) -> str:
        shown = OmegaConf.to_container(value) if OmegaConf.is_list(value) else value
        return _too_big(key, value, self.allowed) or f"{key}={shown!r} must be {self.allowed}"


def option(check: Check, doc: str):
    """A schema field: its value comes from the YAML file (MISSING here), ``check`` says what it
    accepts and ``doc`` what it means (``hgbench run --help``)."""
    return field(default=MISSING, metadata={"check": check, "doc": doc})


def _modes() -> tuple:
    from hgbench.running.modes import MODES

    return tuple(MODES)


def _outer(name: str) -> Callable[[], tuple]:
    """A choice list of hgbench.running.outer, read when checking (it imports the runner, which
    imports this module)."""

    def values() -> tuple:
        from hgbench.running import outer

        return getattr(outer, name)

    return values


# --- the schemas ----------------------------------------------------------------------------
SEED = Integer(0, 2**63, "2**63")  # torch's and numpy's generators take 64-bit seeds


@dataclass
class Data:
    root: Optional[str] = option(Path("the 5k MNIST subset shipped with hgbench"), "folder of the MNIST IDX files")


@dataclass
class Config:
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
    mode: str = option(Choice(_modes), "error: estimator vs reference over a grid; outer: bilevel optimization / training (docs/outer.md)")
    reference: str = option(Choice(REFERENCES), "the float64 reference: dense Jacobian and LU, matrix-free Newton–Krylov (docs/reliability.md), or auto (matrix-free for large problems)")
    data: Data = field(default_factory=Data)
    problem: Any = None
    estimator: Any = None
    grid: Any = None
    outer: Any = None
    reproduce: Any = None  # a preset's block for `hgbench reproduce` (hgbench.running.reproduce); not a run option


@dataclass
class ProblemBase:
    _target_: str = MISSING
    name: str = option(Name(), "the problem's name in rows, figures and folder names")
    seed: int = option(SEED, "seeds the problem's data (default: the top-level seed)")


@dataclass
class UniformProblem(ProblemBase):
    lam_low: float = option(Number(), "λ draws ~ U[lam_low, lam_high] (per coordinate unless said otherwise)")
    lam_high: float = option(Number(), "upper end of the λ draws (>= lam_low)")


@dataclass
class OwnProblem(ProblemBase):
    """A problem defined outside hgbench (examples/own_problem/README.md): its class and name checked here;
    its other keys are open, the arguments of its constructor."""

    open_keys: ClassVar[bool] = True  # keys beyond these fields go to the constructor unchecked
    _target_: str = option(Target(), "the problem's class (a subclass of hgbench.problems.base.Problem)")


VAL_FRACTION = Number(0, 1, low_open=True, high_open=True)
SIZE = Integer(1)


@dataclass
class Ridge(UniformProblem):
    n_train: int = option(SIZE, "training rows (synthetic data)")
    n_val: int = option(SIZE, "validation rows (synthetic data)")
    n_features: int = option(SIZE, "features = dim(w) = dim(λ) (synthetic data)")
    cond: float = option(Number(1), "condition number of the feature covariance (synthetic data)")
    noise: float = option(Number(0), "label noise standard deviation (synthetic data)")
    data: str = option(Choice(("synthetic", "diabetes")), "synthetic, or scikit-learn's diabetes set")
    val_fraction: float = option(VAL_FRACTION, "share of a real data set held out for validation")
    outer: str = option(Choice(OUTERS), "the outer objective E (inner: E = ℓ, the min–min case)")


@dataclass
class Logistic(UniformProblem):
    n_samples: int = option(Integer(2), "rows, split half/half into train and validation (synthetic data)")
    n_features: int = option(SIZE, "features = dim(w) = dim(λ) (synthetic data)")
    label_noise: float = option(Number(0), "standard deviation of the noise added to the logit before the sign")
    data: str = option(Choice(("synthetic", "breast_cancer")), "synthetic, or scikit-learn's breast-cancer set")
    val_fraction: float = option(VAL_FRACTION, "share of a real data set held out for validation")
    outer: str = option(Choice(OUTERS), "the outer objective E (inner: E = ℓ, the min–min case)")


@dataclass
class YeRidge(UniformProblem):
    data: str = option(Text(), "mpg (Auto MPG, shipped) or the path of a LIBSVM file (regression)")
    test: Optional[str] = option(Path("none (a shipped set brings its own)"), "a held-out LIBSVM file")
    outer: str = option(Choice(YeRidgeProblem.OUTERS), "linear bᵀx + ‖y‖², quadratic ½‖Ax − b‖², or inner (E = G)")
    far: float = option(Number(0), "start w₀ = x_init + far·(x_init − x*)")


@dataclass
class YeLogistic(YeRidge):
    data: str = option(Text(), "liver (BUPA Liver Disorders, shipped, with its test file) or the path of a LIBSVM file (labels 0/1 or ±1)")
    outer: str = option(Choice(YeLogisticProblem.OUTERS), "logistic (test-file loss), linear, quadratic, or inner (E = G)")


@dataclass
class KernelRidge(UniformProblem):
    log_bandwidth_low: float = option(Number(), "log σ ~ U[low, high], σ in units of √(n_features)")
    log_bandwidth_high: float = option(Number(), "upper end of the log σ draws (>= log_bandwidth_low)")
    per_feature_bandwidth: Any = option(Flag(), "one log σ per feature: dim(λ) = 1 + n_features")
    data: str = option(Choice(("diabetes", "synthetic")), "scikit-learn's diabetes set, or synthetic")
    val_fraction: float = option(VAL_FRACTION, "share held out for validation")
    n_samples: int = option(Integer(4), "rows (synthetic data)")
    n_features: int = option(SIZE, "features (synthetic data)")
    noise: float = option(Number(0), "label noise standard deviation (synthetic data)")


@dataclass
class MetaLearning(UniformProblem):
    n_tasks: int = option(SIZE, "tasks T; dim(w) = n_tasks · n_features")
    n_features: int = option(SIZE, "d = dim(h) = dim(λ) (+1 with learn_gamma)")
    n_train: int = option(SIZE, "training examples per task (inner loss)")
    n_val: int = option(SIZE, "validation examples per task (E)")
    task_spread: float = option(Number(0), "task weights = common mean + task_spread · N(0, I)")
    noise: float = option(Number(0), "label noise standard deviation")
    gamma: float = option(Number(0, low_open=True), "strength γ of the bias ½γ‖wᵢ − h‖²")
    learn_gamma: Any = option(Flag(), "λ = (h, log γ), log γ ~ U[log gamma − 1, log gamma + 1]")


@dataclass
class HyperRep(UniformProblem):
    n_tasks: int = option(SIZE, "few-shot tasks from scikit-learn's digits")
    ways: int = option(Integer(2, 11), "classes per task")
    shots: int = option(SIZE, "training images per class (inner loss)")
    val_shots: int = option(SIZE, "validation images per class (E)")
    pool: int = option(Choice((1, 2, 4, 8)), "8×8 digits average-pooled pool×pool")
    rep_dim: int = option(SIZE, "r: λ = P ∈ ℝ^{r×p}")
    representation: str = option(Choice(REPRESENTATIONS), "features x Pᵀ (linear) or tanh(x Pᵀ)")
    head: str = option(Choice(HEADS), "multinomial cross-entropy (logistic) or squared loss on one-hot labels (ridge)")
    beta: float = option(Number(0, low_open=True), "L2 weight ½β‖Hᵢ‖² of the heads")
    lam_low: float = option(Number(0, low_open=True), "P = s·G/√p with the scale s ~ U[lam_low, lam_high]")


@dataclass
class Equilibrium(ProblemBase):
    state_dim: int = option(SIZE, "d: one state of size d per image")
    n_train: int = option(SIZE, "training images (seeded shuffle of the data)")
    n_val: int = option(SIZE, "validation images")
    n_test: int = option(SIZE, "test images")
    radius: Optional[float] = option(Number(0, low_open=True, null="no projection"), "training projects A onto ‖A‖₂ <= radius")
    init_scale: float = option(Number(0, low_open=True), "A, B, c, W ~ init_scale·N(0, 1)")
    init_a_norm: Optional[float] = option(Number(0, low_open=True, null="A as drawn"), "rescale the initial A to this spectral norm")
    data_root: Optional[str] = option(Path("the 5k MNIST subset"), "folder of the MNIST IDX files")
    checkpoint: Optional[str] = option(Path("λ drawn at initialization"), "a checkpoints.pt of a training run: its λ become the draws")


@dataclass
class HyperCleaning(UniformProblem):
    n_train: int = option(SIZE, "training images = dim(λ), one weight σ(λᵢ) each; dim(w) = 7,850")
    n_val: int = option(SIZE, "validation images (clean labels; E)")
    flip: float = option(Number(0, 1), "share of training labels replaced by another class (seeded)")
    reg: float = option(Number(0, low_open=True), "L2 weight μ of the classifier (makes Φ a contraction)")
    data_root: Optional[str] = option(Path("the 5k MNIST subset"), "folder of the MNIST IDX files")


@dataclass
class Estimator:
    _target_: str = MISSING
    name: str = option(Name(), "the estimator's name in rows, figures and folder names")


@dataclass
class Precond(Estimator):
    kind: str = option(Choice(KINDS), "P = the inner Hessian (newton) or its diagonal (jacobi)")
    solve: str = option(Choice(SOLVES), "direct (LU; no k) or cg (k CG steps from the grid)")
    precond_steps: int = option(Integer(0), "CG steps for P⁻¹ when solve=cg (Newton only)")


@dataclass
class Reparam(Estimator):
    map: str = option(Choice(MAPS), "x = P(λ)⁻¹z with P the Hessian's diagonal (diag), x = sign(w_t)·exp(z) (exp), or x = H(w_t, λ)⁻¹∇ℓ(z, λ_c) + w_t (opt)")


@dataclass
class TorchoptImplicit(Estimator):
    solver: str = option(Choice(TORCHOPT_SOLVERS), "torchopt's linear solve: cg (solve_cg) or neumann (solve_inv with ns=True), k iterations at most")
    rtol: float = option(Number(0), "cg only: torchopt's early stop ‖r‖ ≤ rtol·‖b‖ (its default 1e-5; 0: exactly k iterations)")


@dataclass
class Grid:
    kind: str = option(Choice(GRID_KINDS), "how t and k combine (diag: k = t; full: every pair; …)")
    t: Any = option(Counts(), "inner steps")
    k: Any = option(Counts(null="diag: k = t"), "linear-solver steps (ignored by diag, where k = t)")


@dataclass
class Levels(Grid):
    high: float = option(Number(), "log10 of the largest absolute inner error ‖w_t − w*‖ of the levels")
    low: float = option(Number(), "log10 of the smallest (< high)")
    n: int = option(Integer(2), "levels, log-spaced from 10^high down to 10^low")


@dataclass
class Outer:
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
    optimum_tol: float = option(Number(0, 1, low_open=True, high_open=True),
                                "the certified optimum f*: stationarity ‖Π(λ − ∇f) − λ‖ ≤ optimum_tol × its value at λ₀")
    optimum_evals: int = option(Integer(0), "float64 references the certified optimum may use (0: no f*, no ε-claim)")


# (ConfigStore group, name) -> schema; conf/GROUP/*.yaml name theirs in their defaults list.
SCHEMAS: dict[tuple[str, str], type] = {
    ("schema", "config"): Config,
    ("schema/problem", "ridge"): Ridge,
    ("schema/problem", "logistic"): Logistic,
    ("schema/problem", "kernel_ridge"): KernelRidge,
    ("schema/problem", "ye_ridge"): YeRidge,
    ("schema/problem", "ye_logistic"): YeLogistic,
    ("schema/problem", "meta_learning"): MetaLearning,
    ("schema/problem", "hyper_rep"): HyperRep,
    ("schema/problem", "equilibrium_mnist"): Equilibrium,
    ("schema/problem", "own"): OwnProblem,
    ("schema/problem", "hyper_cleaning"): HyperCleaning,
    ("schema/estimator", "estimator"): Estimator,
    ("schema/estimator", "precond"): Precond,
    ("schema/estimator", "reparam"): Reparam,
    ("schema/estimator", "torchopt_implicit"): TorchoptImplicit,
    ("schema/grid", "grid"): Grid,
    ("schema/grid", "levels"): Levels,
    ("schema/outer", "outer"): Outer,
}


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
def checked_fields(schema: type) -> list[dataclasses.Field]:
    """The fields of a schema that carry a check, in order."""
    return [f for f in dataclasses.fields(schema) if "check" in f.metadata]


def _is_schema(kind) -> bool:
    """Whether ``kind`` is one of this module's schemas (including nested ones such as Data)."""
    return isinstance(kind, type) and dataclasses.is_dataclass(kind) and kind.__module__ == __name__


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
        return (f"the {launcher.group(1)} launcher is not installed (hydra/launcher/{launcher.group(1)}); "
                "install the launchers extra: pip install 'hgbench[launchers]'")  # fmt: skip
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
    groups = ["problem", "estimator", "grid", "outer"]
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
    out += _lines(OwnProblem, "problem.") + [f"  {'problem.*':<32} the other keys: arguments of its class's constructor"]
    out += ["", "Flags:", "$FLAGS_HELP"]
    return "\n".join(line.replace("$", "$$") if line != "$FLAGS_HELP" else line for line in out)


register()
OmegaConf.register_new_resolver(HELP_RESOLVER, help_text, replace=True)
