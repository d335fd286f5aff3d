"""``hgbench reproduce``: run the papers' presets and regenerate results/ (CSVs, figures, rate
tables, the claims table).

A preset is a file conf/experiment/NAME.yaml with a ``reproduce`` block:

    reproduce:
      minutes: 4.5                  # measured on 2 CPU cores (the up-front estimate)
      quick_minutes: 0.5
      quick: [n_lambdas=3, ...]     # overrides of the --quick variant
      figures: [error]              # hgbench plot kinds to draw (error gets --theory)

Each preset runs as its own ``hgbench run -m +experiment=NAME`` process (as many at once as
``jobs``: by default one per usable core, each with one torch thread; a preset's problems are
too small for a thread team to pay off), forked from a server that imported torch, Hydra and
hgbench once (``Launcher``: no interpreter start-up and imports per preset, and still a fresh
process each, with its own Hydra and torch state, so that the outputs are those of a separate
``hgbench run``), into OUT/NAME.partial/, which replaces OUT/NAME/ only
when the preset finished: a killed reproduction never leaves a half-written results folder. Then its figures are drawn, the jobs' duplicate
files are dropped (the combined metrics.csv, or outer.csv for outer-loop presets, keeps every
row), its time and command are written to reproduce.json, and OUT/claims.md is rebuilt from
every preset found under OUT: first each preset's bounds.csv, the constants of Grazzi et al.'s
error bounds per λ draw for the problems that have them in closed form
(hgbench.problems.bounds; the bound-level claims read them), then the papers' claims and, in
a section of its own, this project's observations (hgbench.analysis.claims.observations).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tqdm.auto import tqdm

from hgbench.analysis.claims import evaluate
from hgbench.analysis.claims.observations import OBSERVATIONS
from hgbench.analysis.report import write_report
from hgbench.analysis.results import markdown, read_regular, write_csv_atomic, write_text_atomic
from hgbench.analysis.theory import BOUNDS, attach_constants, bounds_of, load_constants
from hgbench.problems.bounds import QUADRATIC, constants
from hgbench.running import lock, schema
from hgbench.running.identity import run_id
from hgbench.running.modes import MODES
from hgbench.paths import conf_dir

RESULTS = {mode.csv: mode.load for mode in MODES.values()}  # what a preset leaves: each mode's rows


def presets() -> dict[str, dict]:
    """Every experiment preset with a ``reproduce`` block: name -> that block."""
    out = {}
    for path in sorted((conf_dir() / "experiment").glob("*.yaml")):
        block = OmegaConf.load(path).get("reproduce")
        if block is not None:
            out[path.stem] = OmegaConf.to_container(block, resolve=False)
    return out


def _last(out: Path, name: str) -> dict:
    """OUT/NAME/reproduce.json as a dict; {} when it is absent or not a JSON object (a results
    file is data: whatever it holds is read, never trusted)."""
    try:
        info = json.loads(read_regular(out / name / "reproduce.json"))
    except (ValueError, OSError):
        return {}
    return info if isinstance(info, dict) else {}


def _estimate_s(name: str, block: dict, out: Path, quick: bool) -> float:
    """The last measured time of this preset under out (same quick-ness), else the preset's own."""
    last = _last(out, name)
    seconds = last.get("seconds")
    if last.get("quick") is quick and isinstance(seconds, (int, float)) and 0 < seconds < float("inf"):
        return float(seconds)
    return 60.0 * float(block["quick_minutes" if quick else "minutes"])


def command(name: str, block: dict, target: Path, quick: bool) -> list[str]:
    overrides = list(block.get("quick", [])) if quick else []
    return [
        sys.executable,
        "-c",
        "from hgbench.running.cli import main; main()",
        "run",
        "-m",
        f"+experiment={name}",
        f"hydra.sweep.dir={target}",
        "plot=false",
        *overrides,
    ]


class Launcher:
    """Starts ``[python, "-c", CODE, *ARGS]`` commands as processes that behave as that command
    does (``sys.argv`` = ["-c", *ARGS], CODE run as ``__main__``, stdout and stderr to a log file,
    the exit status of its SystemExit), forked from a multiprocessing forkserver that imported
    ``PRELOAD`` once: the interpreter's start-up and the imports (about a third of the CPU of a
    --quick reproduction) are paid once, not per preset. Where the platform has no forkserver
    (Windows), a plain subprocess. ``start`` returns a handle with ``poll()`` (None while
    running, else the exit status; -N when killed by signal N), ``terminate()`` and ``wait()``."""

    PRELOAD = ["torch", "pandas", "hgbench.running.cli", "hgbench.running.app", "hgbench.running.reproduce"]

    def __init__(self):
        import multiprocessing

        self.context = None
        if "forkserver" in multiprocessing.get_all_start_methods():
            self.context = multiprocessing.get_context("forkserver")
            self.context.set_forkserver_preload(self.PRELOAD)

    def start(self, cmd: list[str], log: Path):
        if self.context is None or cmd[:2] != [sys.executable, "-c"]:
            with open(log, "w") as sink:
                return subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
        process = self.context.Process(target=_as_command, args=(cmd[2], cmd[3:], str(log)), daemon=False)
        process.start()
        return _Handle(process)


class _Handle:
    """A forked command, with subprocess.Popen's poll / terminate / wait."""

    def __init__(self, process):
        self.process = process

    def poll(self) -> int | None:
        return self.process.exitcode

    def terminate(self) -> None:
        self.process.terminate()

    def wait(self) -> int:
        self.process.join()
        return self.process.exitcode


def _as_command(code: str, args: list[str], log: str) -> None:
    """In a forked process: run ``code`` as ``python -c code *args`` would, output to ``log``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.argv = ["-c", *args]
    try:
        exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102 — a command of hgbench reproduce, as `python -c` runs it
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _tidy(folder: Path) -> None:
    """Drop what duplicates the preset's combined results (the jobs' own CSVs, Parquet files and
    figures) and the outer runs' checkpoints and resume states (large; a rerun regenerates them)."""
    for job in [p for p in folder.iterdir() if p.is_dir()]:
        for path in job.iterdir():
            if path.name in RESULTS or path.name in ("checkpoints.pt", "outer_state.pt") or path.suffix in (".png", ".pdf", ".parquet"):
                path.unlink()
    for pdf in folder.glob("*.pdf"):
        pdf.unlink()


def closed_form_problems() -> dict[str, tuple[type, type]]:
    """``_target_`` -> (class, its Options) of hgbench's own problems with closed-form constants
    (hgbench.problems.bounds.QUADRATIC): the only problems ``write_bounds`` rebuilds."""
    return {f"{cls.__module__}.{cls.__qualname__}": (cls, cls.Options) for cls in QUADRATIC}


def rebuild(problem) -> object | None:
    """The problem a job's run.json describes, when it is one of ``closed_form_problems`` with
    settings its schema accepts (types, ranges, no other key; plain values only), built by its
    class's constructor; None for any other problem. Nothing a results file names is imported or
    instantiated: a run.json is data. Raises ValueError (one line) on refused settings."""
    allowed = closed_form_problems()
    if not isinstance(problem, dict) or problem.get("_target_") not in allowed:
        return None
    cls, kind = allowed[problem["_target_"]]
    plain = (str, int, float, bool, type(None))
    bad = [k for k, v in problem.items() if not isinstance(v, plain) or (isinstance(v, str) and "${" in v)]
    if bad:
        raise ValueError(f"problem.{bad[0]}={problem[bad[0]]!r} is not a plain value")
    try:
        node = OmegaConf.merge(schema.structured(kind), problem)
        schema.validate_node(node, "problem.")
    except (OmegaConfBaseException, schema.ConfigError) as err:
        raise ValueError(schema.explain(err) if isinstance(err, OmegaConfBaseException) else str(err)) from None
    settings = OmegaConf.to_container(node)
    settings.pop("_target_")
    return cls(**settings)


def write_bounds(folder: Path) -> pd.DataFrame | None:
    """folder/bounds.csv: per (problem, setting_id, λ draw) of the error-mode jobs under folder
    whose problem has closed-form constants, the constants of Grazzi et al.'s bounds
    (hgbench.problems.bounds.constants, at the λ of the job's run.json; the problem rebuilt by
    ``rebuild``); None (and no file) when no job has them. A run.json that cannot be used is
    skipped with a one-line warning. Each setting is computed once; a bounds.csv newer than the
    folder's metrics.csv is kept as it is (the constants depend only on the jobs' problems and
    λ draws)."""
    path, metrics = Path(folder) / BOUNDS, Path(folder) / MODES["error"].csv
    if path.is_file() and metrics.is_file() and path.stat().st_mtime >= metrics.stat().st_mtime:
        return load_constants(folder)
    rows, seen, built, known = [], set(), {}, {}
    for info in sorted(Path(folder).glob("*/run.json")):
        try:
            run = json.loads(read_regular(info))
            config = run["config"]
            if config.get("mode", "error") != "error":
                continue
            setting = run_id(config, "estimator")
            key = json.dumps(config["problem"], sort_keys=True)  # settings that differ only in the grid share the constants
            if key not in built:
                built[key] = rebuild(config["problem"])
            if setting in seen or built[key] is None:
                continue
            seen.add(setting)
            for ref in run["references"]:
                at = (key, tuple(ref["lam"]))
                if at not in known:
                    known[at] = constants(built[key], torch.tensor(ref["lam"], dtype=torch.float64))
                rows.append({"problem": built[key].name, "setting_id": setting, "lam_id": int(ref["lam_id"]), **known[at]})
        except (ValueError, TypeError, KeyError, AttributeError, RuntimeError, OSError) as err:
            tqdm.write(
                f"hgbench reproduce: warning: {info} skipped for the bounds ({type(err).__name__}: {' '.join(str(err).split())[:160]})",
                file=sys.stderr,
            )
    if not rows:
        return None
    table = pd.DataFrame(rows)
    write_csv_atomic(table, path)
    return table


def claims_table(out: Path) -> Path:
    """Rebuild out/claims.md from the results of every preset under out (each preset's
    bounds.csv first, see ``write_bounds``, and its error-against-bound figure): the papers'
    claims, then this project's observations."""
    from hgbench.analysis.plot import plot

    found = [p for name in RESULTS for p in Path(out).glob(f"*/{name}") if not p.parent.name.endswith(".partial")]
    results = {}
    for p in found:
        rows = RESULTS[p.name](p)
        if p.name == MODES["error"].csv:
            constants = write_bounds(p.parent)
            rows = attach_constants(rows, constants)
            drawn = bounds_of(rows)
            if len(drawn[drawn["role"].isin(["itd", "fp", "cg"])]):
                plot(p, "bound")  # error against bound, every draw
                (p.parent / "error_vs_bound.pdf").unlink(missing_ok=True)  # the png is kept, as _tidy keeps
        results[p.parent.name] = rows
    results = dict(sorted(results.items()))
    claims, observations = evaluate(results), evaluate(results, OBSERVATIONS)
    path = Path(out) / "claims.md"
    write_text_atomic(
        path,
        "# Claims of the papers, decided by the data\n\n"
        f"Regenerated by `hgbench reproduce` from {', '.join(f'`{n}/`' for n in results) or 'no results'}. "
        "Each claim quotes its source; the criterion states the statistic, its threshold and when the rows "
        "cannot decide (undecided).\n\n"
        + markdown(claims)
        + "\n\n## Observations\n\nThis project's own findings on its presets: not claims of the papers.\n\n"
        + markdown(observations),
    )
    _write_verdicts(Path(out) / "README.md", claims, observations)
    return path


VERDICTS = ("<!-- verdicts: written by hgbench reproduce -->", "<!-- /verdicts -->")


def verdicts(claims: pd.DataFrame, observations: pd.DataFrame) -> pd.DataFrame:
    """The short table of claims and observations: id, source, statement, preset, verdict (the
    criterion and the measured evidence are claims.md's)."""
    both = pd.concat([claims, observations.assign(source="observation (this project)")], ignore_index=True)
    return both[["id", "source", "claim", "preset", "verdict"]].rename(columns={"claim": "statement"})


def short_verdicts(path: Path, width: int = 60) -> str:
    """The verdict table of a claims.md for the console: id, preset, verdict and the statement cut
    to ``width`` characters; one line each."""
    rows = []
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]  # escaped pipes stay in a cell
        if len(cells) >= 5 and re.fullmatch(r"[A-Z]+\d+[a-z]?", cells[0]):
            rows.append((cells[0], cells[-1], cells[3] if len(cells) > 5 else "", cells[2]))
    lines = [f"{'id':<4} {'verdict':<13} {'preset':<21} statement"]
    lines += [f"{i:<4} {verdict:<13} {preset:<21} {text[:width] + ('…' if len(text) > width else '')}" for i, verdict, preset, text in rows]
    return "\n".join(lines)


def _write_verdicts(readme: Path, claims: pd.DataFrame, observations: pd.DataFrame) -> None:
    """Between the VERDICTS markers of ``readme`` (when it has them), the short table source →
    statement → preset → verdict of every claim and observation in claims.md (its evidence stays
    there)."""
    text = readme.read_text() if readme.is_file() else ""
    if not all(marker in text for marker in VERDICTS):
        return
    table = markdown(verdicts(claims, observations))
    head, rest = text.split(VERDICTS[0], 1)
    write_text_atomic(readme, head + VERDICTS[0] + "\n" + table + VERDICTS[1] + rest.split(VERDICTS[1], 1)[1])


def _full_results(out: Path, names) -> list[str]:
    """The presets among ``names`` with results under out that are not known to be --quick ones:
    only ``"quick": true`` in its reproduce.json marks a quick one (a folder without a readable
    reproduce.json, or with any other value, counts as full)."""
    return [name for name in names if (out / name).exists() and _last(out, name).get("quick") is not True]


def reproduce(
    names: list[str], out: Path, quick: bool = False, threads: int | None = None, force: bool = False, jobs: int | None = None
) -> int:
    """Run the named presets (all when empty), ``jobs`` of them at a time (None: the usable
    cores divided by ``threads``, at least 1; 1 when ``threads`` is None, torch's default of a
    thread per core; longest first, by their estimates); returns the number that failed. With
    ``quick``, presets whose results under out are full ones are refused (ValueError, before
    any run) unless ``force``."""
    available = presets()
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"unknown preset(s) {', '.join(unknown)}; available: {', '.join(available)}")
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs {jobs}: give at least 1 (presets run at once)")
    chosen = {n: available[n] for n in (names or available)}
    out = Path(out)
    kept = _full_results(out, chosen) if quick and not force else []
    if kept:
        raise ValueError(
            f"--quick would replace the full results of {', '.join(kept)} in {out}; "
            "use --out DIR for quick results elsewhere, or --force to replace them"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out {out}: cannot make the folder ({err.strerror})") from None
    with lock.held(out):  # one reproduction per folder: a second would delete the first's running presets
        return _reproduce(chosen, out, quick, threads, jobs)


def _reproduce(chosen: dict, out: Path, quick: bool, threads: int | None, jobs: int | None) -> int:
    """``reproduce``'s work, its folder locked."""
    jobs = jobs or (max(1, usable_cores() // threads) if threads else 1)  # torch's default threads use every core
    estimates = {n: _estimate_s(n, b, out, quick) for n, b in chosen.items()}
    print(
        f"hgbench reproduce: {len(chosen)} preset(s){' (--quick)' if quick else ''}, {jobs} at a time, "
        f"about {sum(estimates.values()) / 60 / min(jobs, len(chosen)):.1f} min in all: "
        + ", ".join(f"{n} ~{s / 60:.1f} min" for n, s in estimates.items())
    )
    waiting = sorted(chosen, key=lambda n: -estimates[n])  # longest first: the last to start are short
    running: dict[str, tuple[object, float, list[str]]] = {}  # name -> (its process handle, start, command)
    launcher = Launcher()
    done_s, failed = 0.0, 0
    bar = tqdm(total=sum(estimates.values()), unit="s", desc="reproduce", bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s est.{postfix}")
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                name = waiting.pop(0)
                target = out / f"{name}.partial"
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True)
                cmd = command(name, chosen[name], target, quick) + ([f"threads={threads}"] if threads else [])
                running[name] = (launcher.start(cmd, target / "log.txt"), time.perf_counter(), cmd)
            time.sleep(0.5)
            now = time.perf_counter()
            for name in [n for n, (proc, _, _) in running.items() if proc.poll() is not None]:
                proc, began, cmd = running.pop(name)
                failed += not _finish(name, chosen[name], out, proc.poll(), now - began, cmd, quick)
                done_s += estimates[name]
            bar.n = done_s + sum(min(now - began, estimates[n]) for n, (_, began, _) in running.items())
            bar.set_postfix_str("running " + ", ".join(running) if running else "")
            bar.refresh()
    finally:  # interrupted (Ctrl-C, an error): no preset run is left behind on its own
        for proc, _, _ in running.values():
            proc.terminate()
            proc.wait()
        bar.close()
    path = claims_table(out)
    pages = [write_report(out / name) for name in chosen if (out / name).is_dir()]  # after claims.md: its verdicts
    print(short_verdicts(path))
    print(f"claims, with each verdict's criterion and evidence: {path}")
    if pages:
        print(f"reports (open in a browser): {pages[0]}" + (f" and {len(pages) - 1} more" if len(pages) > 1 else ""))
    return failed


def _finish(name: str, block: dict, out: Path, code: int, seconds: float, cmd: list[str], quick: bool) -> bool:
    """After a preset's run ended (exit ``code``): its figures, the tidy-up, reproduce.json, and
    OUT/NAME.partial/ renamed to OUT/NAME/. Returns whether it succeeded."""
    from hgbench.analysis.plot import plot

    target = out / f"{name}.partial"
    produced = [target / f for f in RESULTS if (target / f).is_file()]
    if code != 0 or not produced:
        tqdm.write(f"hgbench reproduce: {name} failed (exit {code}); see {target / 'log.txt'}")
        return False
    for kind in block.get("figures", ["error"]):
        with contextlib.redirect_stdout(io.StringIO()):  # the rate and slope tables are written beside the figure
            plot(produced[0], kind, **({"theory": True} if kind == "error" else {}))
    _tidy(target)
    shown = ["hgbench", *cmd[3:]]
    write_text_atomic(
        target / "reproduce.json",
        json.dumps(
            {
                "command": " ".join(shown).replace(str(target), str(out / name)),
                "seconds": round(seconds, 1),
                "quick": quick,
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            },
            indent=2,
        ),
    )
    shutil.rmtree(out / name, ignore_errors=True)
    target.rename(out / name)
    tqdm.write(f"hgbench reproduce: {name} done in {seconds / 60:.1f} min -> {out / name}")
    return True
