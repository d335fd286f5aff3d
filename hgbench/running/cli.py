"""The ``hgbench`` command: a thin dispatcher over subcommands.

hgbench run [Hydra overrides]    one run, or a sweep with -m (see hgbench run --help)
hgbench plot PATH [--kind K] [--theory] [--eps E]
                                 redraw figures from a CSV or a run/sweep directory
hgbench aggregate DIR            rebuild a sweep's combined metrics.csv (outer.csv) from its jobs' files
hgbench list                     problems, estimators, grids, presets, and which estimators apply where
hgbench reproduce [NAME...]      run the papers' presets, regenerate results/ and its claims table
hgbench report DIR...            write DIR/report.html: figures, tables, verdicts, jobs, to open in a browser
hgbench --version                the installed version
hgbench check MODULE:FUNCTION [--problem P]
                                 check your hypergradient against the certified reference (docs/check.md)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import sys

from hgbench.paths import conf_dir
from hgbench.running import answers
from hgbench.running.interrupt import Interrupted, signal_of, terminable

USAGE = __doc__.split("\n\n", 1)[1]
HYDRA_SPECIAL = ",=[]{}()'\"\\$*?"  # characters of Hydra's override grammar (lists, sweeps, quotes, interpolation, globs)


def _complete(argv: list[str]) -> int:
    """Shell completion: from the schemas shipped with the package, without torch
    (hgbench.running.completion), where they are the installation's; else `hgbench run`'s own."""
    schemas = answers.shipped(answers.fingerprint(), "schemas") if os.environ.get("HGBENCH_NO_CACHE") != "1" else {}
    if not schemas:
        return _run(argv)
    from hgbench.running.completion import complete

    _hide_run_word()
    return complete(argv, schemas)


def _hide_run_word() -> None:
    """Hydra reads COMP_LINE for shell completion itself: the word "run" is not one of its overrides."""
    if "COMP_LINE" in os.environ:
        os.environ["COMP_LINE"] = re.sub(r"^(\S+)\s+run(\s|$)", r"\1\2", os.environ["COMP_LINE"])


def _run(argv: list[str]) -> int:
    # Hydra reads sys.argv (and COMP_LINE for shell completion) itself: hide the word "run".
    sys.argv = argv
    _hide_run_word()
    import yaml
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from hgbench.running.app import launch, refuse_curated, sweep_target
    from hgbench.running.errors import UserError, one_line
    from hgbench.running.schema import explain

    rerun = [a for a in argv[1:] if a.split("=", 1)[0] in ("--experimental-rerun", "--experimental_rerun")]
    if rerun:  # Hydra would unpickle the file it names: code from a results folder
        print(
            f"hgbench: error: {rerun[0]} is refused: it unpickles a file (code could run); rerun a run by its "
            "overrides, which its run.json records",
            file=sys.stderr,
        )
        return 2
    target = sweep_target(argv[1:]) if {"-m", "--multirun"} & set(argv[1:]) else None
    if target is not None:
        try:
            refuse_curated(*target)
        except UserError as err:
            print(f"hgbench: error: {err}", file=sys.stderr)
            return 2
    # Hydra prints its composition errors over several lines and exits 1; launch has it re-raise
    # them (and every other failure), and each becomes one line here, with its traceback only
    # when the user set HYDRA_FULL_ERROR=1.
    debug = os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        with terminable():
            failed = launch(tracebacks=debug)
    except Interrupted as err:
        print(f"{err.message}; to continue, run: {resume_command(argv, err)}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt as err:  # before or after the draws (e.g. while Hydra composes the config)
        signum = signal_of(err)
        print(f"hgbench: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    except (HydraException, OmegaConfBaseException) as err:  # composing the configuration failed
        if debug:
            raise
        print(f"hgbench: error: {explain(err)}", file=sys.stderr)
        return 2
    except yaml.YAMLError as err:  # a config file (e.g. one of --config-dir) that is not YAML
        if debug:
            raise
        print(f"hgbench: error: a config file is not valid YAML: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except ValueError as err:  # Hydra's own refusal of its flags, e.g. --cfg together with -m
        if debug:
            raise
        print(f"hgbench: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except Exception as err:  # every failure is one line; HYDRA_FULL_ERROR=1 shows the traceback
        if debug:
            raise
        return one_line(err)
    return 1 if failed else 0


def resume_command(argv: list[str], err: Interrupted) -> str:
    """The command that continues an interrupted ``hgbench run ARGS``: the same arguments with
    resume=true and the folder written (hydra.sweep.dir of a sweep, else hydra.run.dir), so that
    it composes the same configuration (a resume of another one is refused)."""
    folder = ("hydra.sweep.dir", err.sweep_dir) if err.sweep_dir is not None else ("hydra.run.dir", err.out_dir)
    kept = [a for a in argv[1:] if a.split("=", 1)[0].lstrip("+~") not in ("resume", folder[0])]
    return shlex.join(["hgbench", "run", *kept, "resume=true", *([f"{folder[0]}={folder[1]}"] if folder[1] is not None else [])])


def _plot(args: list[str]) -> int:
    from hgbench.analysis.plot import KINDS, announced, plot

    parser = argparse.ArgumentParser(prog="hgbench plot", description="Redraw figures from results, without recomputing.")
    parser.add_argument("path", help="a metrics.csv, or a run/sweep directory (every metrics.csv below it)")
    parser.add_argument("--kind", default="error", choices=sorted(KINDS), help="which figure (default: error)")
    parser.add_argument("--out", default=None, help="output directory (default: next to the data)")
    parser.add_argument(
        "--theory",
        action="store_true",
        help="error figure: overlay the predicted rates (dashed) and write the fitted-vs-predicted rate table (rates.csv, rates.md)",
    )
    parser.add_argument(
        "--eps",
        type=float,
        default=None,
        help="outer figure: the relative ε of the time-to-ε summary (f − f* ≤ ε·(f(λ₀) − f*); default 1e-3)",
    )
    ns = parser.parse_args(args)
    if ns.theory and ns.kind != "error":
        print(f"hgbench plot: error: --theory applies to --kind error, not --kind {ns.kind}", file=sys.stderr)
        return 2
    if ns.eps is not None and (ns.kind != "outer" or not ns.eps > 0):
        print(f"hgbench plot: error: --eps {ns.eps} needs --kind outer and a value > 0", file=sys.stderr)
        return 2
    options = {"theory": True} if ns.theory else {"eps": ns.eps} if ns.eps is not None else {}
    try:
        paths = plot(ns.path, ns.kind, ns.out, **options)
    except (FileNotFoundError, ValueError) as err:
        print(f"hgbench plot: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except OSError as err:  # --out onto a file, or a folder that cannot be written
        print(f"hgbench plot: error: cannot write the figures: {err.strerror}: {err.filename}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"{announced(path)}: {path}")
    return 0


def _report(args: list[str]) -> int:
    from hgbench.analysis.report import write_report

    parser = argparse.ArgumentParser(
        prog="hgbench report",
        description="Write DIR/report.html for each results folder: "
        "its figures, tables, verdicts with their evidence, jobs and configuration, to open in a browser.",
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="a results folder (e.g. results/grazzi2020)")
    ns = parser.parse_args(args)
    for folder in ns.dirs:
        try:
            path = write_report(folder)
        except (ValueError, OSError) as err:
            print(f"hgbench report: error: {' '.join(str(err).split())}", file=sys.stderr)
            return 2
        print(f"report: {path}")
    return 0


def _aggregate(args: list[str]) -> int:
    from hgbench.analysis.results import combine
    from hgbench.running.modes import MODES

    csvs = " or ".join(mode.csv for mode in MODES.values())
    parser = argparse.ArgumentParser(
        prog="hgbench aggregate",
        description=f"Rebuild DIR/{csvs} from the files of the same name of every job below DIR (e.g. after a "
        "sweep whose launcher died, or while its jobs still run), and print the summary.",
    )
    parser.add_argument("dir", help="a sweep directory")
    ns = parser.parse_args(args)
    found = False
    for mode in MODES.values():
        try:
            combined = combine(ns.dir, mode.csv, mode.key)
        except (ValueError, OSError) as err:  # missing, a file, an unreadable job CSV
            print(f"hgbench aggregate: error: {' '.join(str(err).split())}", file=sys.stderr)
            return 2
        if combined is not None:
            found = True
            print(mode.summarize(mode.load(combined)))
            print(f"results: {combined}")
    if not found:
        print(f"hgbench aggregate: error: no job's {csvs} below {ns.dir}", file=sys.stderr)
        return 2
    return 0


def _reproduce(args: list[str]) -> int:
    from hgbench.running.reproduce import presets, reproduce

    parser = argparse.ArgumentParser(
        prog="hgbench reproduce",
        description="Run the papers' presets (conf/experiment/ files with a `reproduce` block) and regenerate "
        "OUT/<preset>/ (metrics.csv, figures, rates) and OUT/claims.md.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"presets to run (default: all of {', '.join(presets())})")
    parser.add_argument("--quick", action="store_true", help="the presets' short variants (fewer draws and steps)")
    parser.add_argument("--out", default="results", help="where to write (default: results)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of each run (default: 1; the presets' "
        "problems are small, and a team of threads loses 2-3x to a shared core's other work; 0: torch's default)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="presets run at once (default: the usable cores divided by --threads, at least 1; 1 with --threads 0)",
    )
    parser.add_argument("--force", action="store_true", help="let --quick replace a preset's full results in OUT")
    ns = parser.parse_args(args)
    # Checked before any preset starts: each preset's command line carries hydra.sweep.dir=OUT/…
    # and threads=N, which Hydra's override grammar parses.
    special = sorted(set(ns.out) & set(HYDRA_SPECIAL))
    refusal = (
        f"--threads {ns.threads}: give 0 (torch's default) or a positive count"
        if ns.threads < 0
        else f"--out {ns.out!r} exists and is not a directory"
        if os.path.exists(ns.out) and not os.path.isdir(ns.out)
        else f"--out {ns.out!r} holds {' '.join(special)}, which Hydra's overrides would parse; choose a path without {HYDRA_SPECIAL}"
        if special
        else None
    )
    if refusal:
        print(f"hgbench reproduce: error: {refusal}", file=sys.stderr)
        return 2
    try:
        with terminable():
            failed = reproduce(ns.names, ns.out, ns.quick, ns.threads or None, ns.force, ns.jobs)
    except ValueError as err:
        print(f"hgbench reproduce: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # its presets are stopped and its lock released on the way out
        signum = signal_of(err)
        print(f"hgbench reproduce: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    return 1 if failed else 0


def _resolved(group: str, path) -> dict:
    """The option file at ``path`` of ``group`` with its ``${...}`` values resolved against the
    top-level values of conf/config.yaml (e.g. ``seed``, ``data.root``), its defaults list dropped."""
    from omegaconf import OmegaConf

    top = OmegaConf.load(conf_dir() / "config.yaml")
    node = OmegaConf.load(path)
    node.pop("defaults", None)
    root = OmegaConf.create({key: top[key] for key in top if key not in ("defaults", "hydra")} | {group: node})
    return OmegaConf.to_container(root, resolve=True)[group]


def _as_typed(value) -> str:
    """A setting as one would type it in an override (null, true, false; others as printed)."""
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def _first_doc_line(obj) -> str:
    lines = (obj.__doc__ or "").strip().splitlines()
    return lines[0] if lines else ""


def _preset_line(path) -> str:
    """A preset's description on one line: the comment that opens its file, up to its examples."""
    words = []
    for line in path.read_text().splitlines():
        if not line.startswith("#") or line.startswith("#  ") or line[1:].strip().startswith("hgbench ") or not line.strip("# "):
            break  # the end of the opening comment, or the start of its indented examples
        if not line.startswith("# @package"):
            words += line.lstrip("#").split()
    return " ".join(words)


def _list(args: list[str]) -> int:
    from hydra.utils import get_class, instantiate

    from hgbench.core.bound import NEEDS
    from hgbench.problems.finite_sum import FiniteSum

    argparse.ArgumentParser(
        prog="hgbench list",
        description="List the problems (what they provide), estimators (what they need), grids, solvers (mode=bilevel), presets, and which "
        "estimators apply to which problem.",
    ).parse_args(args)
    problems, estimators = {}, {}
    for group in ("problem", "estimator", "grid", "solver"):
        print(f"{group}s ({group}=NAME):")
        for path in sorted((conf_dir() / group).glob("*.yaml")):
            node = _resolved(group, path)
            settings = {k: v for k, v in node.items() if k not in ("_target_", "name", "seed")}
            doc, extra = "", ""
            if group == "problem":
                problems[path.stem] = cls = get_class(node["_target_"])
                doc = _first_doc_line(cls)
                extra = f" (provides: {', '.join(sorted(cls.provides())) or '—'})"
            elif group == "estimator":
                estimators[path.stem] = estimator = instantiate(node)
                doc = _first_doc_line(type(estimator))
                extra = f" (needs: {', '.join(sorted(estimator.needs))})" if estimator.needs else ""
                extra += " (finite-sum problems only)" if estimator.minibatch else ""
            elif group == "solver":  # mode=bilevel's stochastic bilevel solvers (hgbench/solvers/)
                cls = get_class(node["_target_"])
                doc, extra = _first_doc_line(cls), f" ({cls.paper}; mode=bilevel, finite-sum problems)"
            shown = ", ".join(f"{k}={_as_typed(v)}" for k, v in settings.items())
            print(f"  {path.stem:<18}{doc}{extra}" + (f"  [{shown}]" if shown else ""))
    print("presets (+experiment=NAME; those marked * are run by `hgbench reproduce`):")
    for path in sorted((conf_dir() / "experiment").glob("*.yaml")):
        mark = "*" if "\nreproduce:" in path.read_text() else " "
        print(f"  {path.stem:<22}{mark} {_preset_line(path)}")
    minibatch = [e for e, estimator in estimators.items() if estimator.minibatch]
    print(
        "which estimators apply (needs: "
        + "; ".join(f"{need} = {what}" for need, what in NEEDS.items())
        + f"; the minibatch estimators ({', '.join(minibatch)}; mode=stochastic) and the solvers (mode=bilevel) need a finite-sum "
        "problem, hgbench/problems/finite_sum.py):"
    )
    for name, cls in problems.items():
        finite = issubclass(cls, FiniteSum)
        considered = {e: estimator for e, estimator in estimators.items() if finite or not estimator.minibatch}
        refused = [e for e, estimator in considered.items() if not set(estimator.needs) <= cls.provides()]
        line = f"all but {', '.join(refused)}" if refused else "all"
        if not finite:
            line = f"{'all deterministic' if line == 'all' else line}; no minibatch estimator, no solver (not a finite sum)"
        print(f"  {name:<18}{line}")
    return 0


def main() -> None:
    """The ``hgbench`` command. A closed stdout (``hgbench … | head``) ends it quietly, exit 141
    (128 + SIGPIPE, as a shell reports a process killed by a broken pipe)."""
    try:
        _main()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's final flush of stdout must not fail again
        sys.exit(141)


def _main() -> None:
    argv = list(sys.argv)
    command = argv[1] if len(argv) > 1 else None
    if command == "run" and argv[2:] in (["--help"], ["-h"]):  # depends on the code and the config tree alone
        sys.exit(answers.answer(argv[1:], lambda: _run([argv[0]] + argv[2:])))
    if command == "run":
        sys.exit(_run([argv[0]] + argv[2:]))
    if command in ("-sc", "--shell-completion"):  # the completion script calls `hgbench -sc query=bash`
        # a completion depends on the line typed so far, the cursor and (for paths) the directory
        line = [f"{name}={os.environ.get(name, '')}" for name in ("COMP_LINE", "COMP_POINT")]
        sys.exit(answers.answer([*argv[1:], *line, f"cwd={os.getcwd()}"], lambda: _complete(argv)))
    if command == "plot":
        sys.exit(_plot(argv[2:]))
    if command == "report":
        sys.exit(_report(argv[2:]))
    if command == "aggregate":
        sys.exit(_aggregate(argv[2:]))
    if command == "list":
        sys.exit(answers.answer(argv[1:], lambda: _list(argv[2:])) if argv[2:] == [] else _list(argv[2:]))
    if command == "reproduce":
        sys.exit(_reproduce(argv[2:]))
    if command == "check":
        from hgbench.running.check import main as check

        sys.exit(check(argv[2:]))
    if command in ("-V", "--version"):
        from hgbench.version import __version__

        print(f"hgbench {__version__}")
        sys.exit(0)
    if command in ("-h", "--help", None):
        print(f"usage: hgbench COMMAND ...\n\n{USAGE}")
        sys.exit(0 if command else 2)
    print(
        f"hgbench: error: unknown command {command!r}; use run, plot, aggregate, report, reproduce, check or list\n\n{USAGE}",
        file=sys.stderr,
    )
    sys.exit(2)
