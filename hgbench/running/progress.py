"""Either mode's progress bar (tqdm), one per run; in a sweep's job, one at a time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from hgbench.running.plan import Plan


SWEEP_JOB: str | None = None  # in a sweep's job: its name ("job 3"), heading the bar, which then leaves no line


def progress_bar(plan: Plan, todo, total: int, unit: str, enabled: bool, what: str = "", name: str | None = None) -> tqdm:
    """A mode's progress bar over ``todo`` (of ``total``; the rest was resumed), named after the
    problem and ``name`` (default: the estimator's; mode=bilevel: the solver's). In a
    sweep's job (``SWEEP_JOB``) it names the job and is cleared when done, so that a sweep shows
    one bar at a time and no line per job."""
    job = f"{SWEEP_JOB} " if SWEEP_JOB else ""
    return tqdm(
        todo,
        total=total,
        initial=total - len(todo),
        unit=unit,
        leave=SWEEP_JOB is None,
        desc=f"{job}{what}{plan.problem.name}/{name or plan.estimator.name}",
        disable=not enabled,
    )
