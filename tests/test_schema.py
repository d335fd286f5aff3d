"""The configuration's schema (hgbench/running/schema.py): every wrong value of every key is
refused before any work in one line naming the key, the value and what is allowed; nothing wrong
is accepted; help and refusals show resolved names."""

import dataclasses
import math

import pandas as pd
import pytest
import torch
from conftest import run_cli
from hydra import compose, initialize_config_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException, ValidationError

from hgbench.paths import conf_dir
from hgbench.running import prepare, schema
from hgbench.running.errors import UserError

GROUPS = ("problem", "estimator", "grid", "outer")


def _every_key() -> list[tuple[str | None, str, schema.Check]]:
    """(the group choice that has the key, or None; the dotted key; its check) for every checked
    key of every config file."""
    keys = [(None, f.name, f.metadata["check"]) for f in schema.checked_fields(schema.Config)]
    keys += [(None, f"data.{f.name}", f.metadata["check"]) for f in schema.checked_fields(schema.Data)]
    for group in GROUPS:
        for kind, users in schema.schema_users(group).items():
            for name in users:
                keys += [(f"{group}={name}", f"{group}.{f.name}", f.metadata["check"]) for f in schema.checked_fields(kind)]
    return keys


KEYS = _every_key()
ODD = [
    math.nan,
    math.inf,
    -math.inf,
    1e308,
    -1e308,
    10**30,
    -(10**30),
    2**63,
    -1,
    0,
    1,
    2,
    2.5,
    -0.5,
    "",
    " ",
    "abc",
    "yes",
    "1",
    "nan",
    True,
    False,
    None,
    [],
    [1, -1],
    [0, 3],
    {"a": 1},
]
VALUES = st.one_of(st.sampled_from(ODD), st.integers(), st.floats(), st.text(max_size=6), st.lists(st.integers(-2, 3), max_size=3))


def test_every_config_file_has_a_schema_and_every_key_is_covered():
    """Each problem, estimator, grid and outer option names its schema; the keys cover them all."""
    for group in GROUPS:
        used = {name for users in schema.schema_users(group).values() for name in users}
        assert used == {path.stem for path in (conf_dir() / group).glob("*.yaml")}, group
    assert len({key for _, key, _ in KEYS}) > 60


@pytest.fixture(scope="module")
def composed():
    """The composed configuration of every group choice (Hydra's compose API), by choice."""
    choices = {choice for choice, _, _ in KEYS}
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        return {choice: compose("config", overrides=[choice] if choice else []) for choice in choices}


def _sane(check: schema.Check, value) -> bool:
    """What an accepted value must be, whatever the key: no NaN or inf, no string for a flag."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(check, schema.Flag):
        return isinstance(value, bool)
    return True


@settings(max_examples=400, deadline=None)
@given(entry=st.sampled_from(KEYS), value=VALUES)
def test_every_key_refuses_wrong_values_in_one_line(composed, entry, value):
    """Set the value as Hydra merges an override, then check: either the schema's type refuses it
    (while composing) or ``validate`` does, in one line starting with the key; or it is accepted,
    and then it is sane."""
    choice, key, check = entry
    cfg = composed[choice].copy()
    try:
        OmegaConf.update(cfg, key, value, merge=True)
        schema.validate(cfg)
    except ValidationError as err:  # a type the schema's field cannot hold
        message = schema.explain(err)
    except schema.ConfigError as err:
        message = str(err)
    except OmegaConfBaseException as err:  # e.g. a dict merged into a list
        assert schema.explain(err).startswith(f"{key}: ") and "\n" not in schema.explain(err)
        return
    else:
        accepted = OmegaConf.select(cfg, key)
        assert check.ok(accepted) and _sane(check, accepted), (key, value, accepted)
        return
    if message.startswith(f"{key}=") and "\n" not in message and check.allowed in message:
        return
    # else the value passed its own check and a relation between keys (e.g. lam_low <= lam_high) refused it
    group = key.rsplit(".", 1)[0] if "." in key else ""
    node = OmegaConf.select(cfg, group) if group else cfg
    assert check.ok(node[key.rsplit(".", 1)[-1]]), message
    kind = OmegaConf.get_type(node)
    values = {f.name: node[f.name] for f in dataclasses.fields(kind)}
    assert message == kind.relations(values, lambda k: f"{group}.{k}") and f"{key}=" in message, message


def _render(value) -> str:
    """A value as typed on the command line (strings raw, as a user would type them)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list):
        return "[" + ",".join(map(_render, value)) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_render(v)}" for k, v in value.items()) + "}"
    return str(value)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entry=st.sampled_from(KEYS), value=VALUES)
def test_cli_refusals_are_one_line_without_traceback(tmp_path, monkeypatch, capsys, entry, value):
    """`hgbench run KEY=VALUE` for any key and value: refused in exactly one line `hgbench: error:`
    with exit code 2 (beside the guard's warnings, one line each), never a traceback. The run stops where the problem would be built (every
    check of the configuration is done by then)."""
    choice, key, _ = entry

    def stop(node, what):
        raise UserError("stopped before building the problem (test)")

    monkeypatch.setattr(prepare, "build", stop)
    threads = torch.get_num_threads()
    try:
        code = run_cli(monkeypatch, "run", *([choice] if choice else []), f"{key}={_render(value)}", f"hydra.run.dir={tmp_path}")
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    # an accepted value may first draw the guard's one-line warning (e.g. a large problem); the refusal is one line
    lines = [line for line in err.strip().splitlines() if not line.startswith("hgbench: warning: ")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("hgbench: error: "), (code, err)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["mode=foo"], "mode='foo' is not one of error, outer"),
        (["problem=kernel_ridge", "problem.per_feature_bandwidth=abc"], "problem.per_feature_bandwidth='abc' must be true or false"),
        (["problem=meta_learning", "problem.learn_gamma=yes"], "problem.learn_gamma='yes' must be true or false"),
        (["problem=logistic", "problem.label_noise=nan"], "problem.label_noise=nan must be a finite number >= 0"),
        (["problem=kernel_ridge", "problem.log_bandwidth_high=inf"], "problem.log_bandwidth_high=inf must be a finite number"),
        (["problem.noise=nan"], "problem.noise=nan must be a finite number >= 0"),
        (["problem.noise=inf"], "problem.noise=inf must be a finite number >= 0"),
        (["problem=meta_learning", "problem.task_spread=nan"], "problem.task_spread=nan must be a finite number >= 0"),
        (["problem=meta_learning", "problem.gamma=inf"], "problem.gamma=inf must be a finite number > 0"),
        (["problem=hyper_rep", "problem.beta=inf"], "problem.beta=inf must be a finite number > 0"),
        (["problem.n_train=2.5"], "problem.n_train=2.5 must be an integer >= 1"),
        (["estimator.name="], "estimator.name='' must be a non-empty name of letters, digits and _ . + -"),
        (["problem=logistic", "problem.outer=val"], "problem.outer='val' is not one of validation, linear, quadratic, inner"),
        (["estimator=precond", "estimator.kind=lu"], "estimator.kind='lu' is not one of newton, jacobi"),
        (["estimator=precond", "estimator.precond_steps=-1"], "estimator.precond_steps=-1 must be an integer >= 0"),
        (["problem=meta_learning", "problem.gamma=0"], "problem.gamma=0.0 must be a finite number > 0"),
        (["mode=outer", "outer.momentum=1"], "outer.momentum=1.0 must be a finite number in [0, 1)"),
        (["grid=full", "grid.k=[1.5]"], "grid.k=[1.5] must be an integer >= 0 or a non-empty list of them"),
        (["+grid.bogus=1"], "grid.bogus=1 is not an option; the options of grid are kind, t, k"),
        (["problem.bogus=1"], "problem.bogus is not an option; the options of problem are name, seed, lam_low, lam_high"),
    ],
)
def test_wrong_values_are_refused_in_one_line(tmp_path, monkeypatch, capsys, overrides, message):
    code = run_cli(monkeypatch, "run", *overrides, f"hydra.run.dir={tmp_path}")
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"hgbench: error: {message}"), err
    assert len(err.splitlines()) == 1 and not (tmp_path / "metrics.csv").exists()


SMALL = ["problem.n_features=4", "problem.n_train=20", "problem.n_val=20", "n_lambdas=1", "plot=false"]


@pytest.mark.parametrize("k", ["grid.k=[5,50]", "+grid.k=[5,50]"])
def test_readme_grid_override_works_on_the_default_diag_grid(tmp_path, monkeypatch, capsys, k):
    """The README's `hgbench run grid.t=[0,10,100] grid.k=[5,50]` on diag runs k = t and says that
    grid.k is ignored (Hydra's `+grid.k=` advice likewise: never silently)."""
    out = tmp_path / "run"
    assert run_cli(monkeypatch, "run", "grid.t=[0,10,100]", k, *SMALL, f"hydra.run.dir={out}") == 0
    assert "grid.kind=diag computes k = t; grid.k=[5, 50] is ignored" in capsys.readouterr().out
    df = pd.read_csv(out / "metrics.csv")
    assert list(df["t"]) == [0, 10, 100] and list(df["k"]) == [0, 10, 100]


def test_refusal_names_the_estimator_resolved(tmp_path, monkeypatch, capsys):
    """A failing constructor is reported under the estimator's resolved name (precond_newton), not
    its interpolation (precond_${.kind})."""
    from hgbench.estimators.precond import Preconditioned

    def fail(self, *args, **kwargs):
        raise ValueError("refused (test)")

    monkeypatch.setattr(Preconditioned, "__init__", fail)
    code = run_cli(monkeypatch, "run", "estimator=precond", f"hydra.run.dir={tmp_path}")
    err = capsys.readouterr().err
    assert code == 2 and "cannot build the estimator 'precond_newton'" in err and "${" not in err


def test_help_lists_every_key_with_allowed_values(monkeypatch, capsys):
    assert run_cli(monkeypatch, "run", "--help") == 0
    lines = capsys.readouterr().out.splitlines()
    for choice, key, check in KEYS:
        assert any(line.split()[:1] == [key] and check.allowed in line for line in lines), key
    assert any(line.startswith("estimator=precond, precond_jacobi:") for line in lines)


def test_every_preset_passes_its_schemas():
    """Every conf/experiment preset composes (Hydra applies the schemas' types) and validates."""
    presets = sorted(path.stem for path in (conf_dir() / "experiment").glob("*.yaml"))
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        for name in presets:
            schema.validate(compose("config", overrides=[f"+experiment={name}"]))


def test_each_component_declares_its_options_once_in_its_own_file():
    """Every preset's class declares ``Options`` in its own module (not inherited from a module of
    the running layer), and its fields are exactly the constructor's parameters: an option added
    to one and not the other fails here."""
    import inspect

    from hydra.utils import get_class

    for group in ("problem", "estimator"):
        for path in sorted((conf_dir() / group).glob("*.yaml")):
            cls = get_class(OmegaConf.load(path)["_target_"])
            options = cls.Options
            assert not options.__module__.startswith("hgbench.running"), (path.stem, options)
            fields = {f.name for f in dataclasses.fields(options)} - {"_target_"}
            parameters = set(inspect.signature(cls.__init__).parameters) - {"self"}
            assert fields == parameters, (path.stem, fields ^ parameters)
            assert schema.SCHEMAS[(f"schema/{group}", path.stem)] is options
