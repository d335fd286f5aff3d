"""What an option accepts and what it means: the bottom-layer vocabulary in which every component
(problem, estimator) declares its options once, in its own file, and the run declares its own
(hgbench.running.schema).

A component's options are a dataclass deriving from ``Options``, set as the class attribute
``Options`` of the component; each field is ``option(check, doc)``: a ``Check`` (what the key
accepts, in code and in words) and a one-line meaning. The values come from the component's YAML
preset under conf/ (MISSING here). From these declarations hgbench.running.schema derives
Hydra's structured configs, the one-line refusals, ``hgbench run --help`` and ``hgbench list``.

Refusals name the key the user typed (``problem.n_train``): the prefix is added by the caller
(``refusals``), never written in a component's own messages.

Imports neither torch nor any other part of hgbench, so that every layer may use it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Optional

from omegaconf import MISSING, OmegaConf


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
    """A field of an Options dataclass: its value comes from the YAML file (MISSING here),
    ``check`` says what it accepts and ``doc`` what it means (``hgbench run --help``)."""
    return field(default=MISSING, metadata={"check": check, "doc": doc})


SEED = Integer(0, 2**63, "2**63")  # torch's and numpy's generators take 64-bit seeds
SIZE = Integer(1)
SHARE = Number(0, 1, low_open=True, high_open=True)  # a share of a data set, e.g. held out


@dataclass
class Options:
    """Base of every options dataclass. ``relations`` refuses what no single key's check can see
    (e.g. lam_low > lam_high): given the values and ``key`` (a key's name as the user typed
    it), the one-line refusal, or None."""

    open_keys: ClassVar[bool] = False  # True: keys beyond the fields are accepted (a user's own class)

    @classmethod
    def relations(cls, values: dict, key: Callable[[str], str]) -> Optional[str]:
        return None


def checked_fields(schema: type) -> list[dataclasses.Field]:
    """The fields of an options dataclass that carry a check, in order."""
    return [f for f in dataclasses.fields(schema) if "check" in f.metadata]


@dataclass
class ComponentOptions(Options):
    """What every problem and estimator has: the class Hydra builds, and its name in rows."""

    _target_: str = MISSING
    name: str = option(Name(), "the name in rows, figures and folder names")


@dataclass
class ProblemOptions(ComponentOptions):
    seed: int = option(SEED, "seeds the problem's data (default: the top-level seed)")


@dataclass
class UniformOptions(ProblemOptions):
    """A problem whose λ draws are uniform in a box."""

    lam_low: float = option(Number(), "λ draws ~ U[lam_low, lam_high] (per coordinate unless said otherwise)")
    lam_high: float = option(Number(), "upper end of the λ draws (>= lam_low)")

    @classmethod
    def relations(cls, values: dict, key: Callable[[str], str]) -> Optional[str]:
        low, high = values.get("lam_low"), values.get("lam_high")
        if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low > high:
            return f"{key('lam_low')}={low} must be <= {key('lam_high')}={high}"
        return None


@dataclass
class OwnProblemOptions(ProblemOptions):
    """A problem defined outside hgbench (examples/own_problem/README.md): its class and name
    checked here; its other keys are open, the arguments of its constructor."""

    open_keys: ClassVar[bool] = True
    _target_: str = option(Target(), "the problem's class (a subclass of hgbench.problems.base.Problem)")


@dataclass
class EstimatorOptions(ComponentOptions):
    """An estimator without options of its own."""
