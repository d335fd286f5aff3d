"""Ctrl-C (SIGINT) and SIGTERM during a run: one line, exit 130 / 143, nothing half-written.

``interruptible`` installs handlers for both signals (in the main thread; elsewhere the defaults
stay) for the duration of the work. A signal that arrives inside ``critical()`` (the append of
one draw's rows and facts) is held until that block ends, so an interrupted run leaves complete
draws only; atomic rewrites (hgbench.analysis.results.atomic) delete their temporary file when
interrupted. The work then stops with ``Interrupted``, which carries the one-line message
(how many draws, or outer steps, are complete, and the folder) and the exit code 128 + signal;
``hgbench run`` adds the command that continues (hgbench.running.cli: the same arguments with
resume=true). An ``Interrupted`` raised by an inner block passes an outer one unchanged, so a run
can be interruptible as a whole (its lock held: hgbench.running.app.run_job) and per draw.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


class Interrupted(KeyboardInterrupt):
    """The run stopped on a signal; ``message`` (one line), ``code`` (128 + the signal) and
    ``out_dir`` (the run folder; ``sweep_dir``: the sweep's, set by a sweep's job)."""

    def __init__(self, message: str, code: int, out_dir: Path | None = None):
        super().__init__(message)
        self.message, self.code, self.out_dir, self.sweep_dir = message, code, out_dir, None


class _Signal(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextmanager
def terminable() -> Iterator[None]:
    """SIGTERM raised as a KeyboardInterrupt for the block (in the main thread), as SIGINT is:
    the finally blocks run (a lock is released) and the command ends in one line, exit 143."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Signal(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def signal_of(err: KeyboardInterrupt) -> int:
    """The signal a KeyboardInterrupt stands for (SIGINT unless it came from ``terminable``)."""
    return err.signum if isinstance(err, _Signal) else signal.SIGINT


@contextmanager
def interruptible(done: Callable[[], int] | None, total: int, out_dir: Path, unit: str = "draw") -> Iterator[Callable]:
    """Run the block with SIGINT and SIGTERM turned into ``Interrupted`` (see the module
    docstring); yields ``critical``, a context manager that defers both signals. ``done()``
    counts the complete ``unit``s (λ draws, outer steps) when the signal comes; ``total`` is the
    run's number of them (``done`` None: before the first)."""
    state = {"critical": False, "pending": None}

    def handler(signum, frame):
        if state["critical"]:
            state["pending"] = signum
            return
        raise _Signal(signum)

    @contextmanager
    def critical():
        state["critical"] = True
        try:
            yield
        finally:
            state["critical"] = False
        if state["pending"] is not None:
            raise _Signal(state["pending"])

    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        yield critical
    except Interrupted:
        raise
    except KeyboardInterrupt as err:
        signum = signal_of(err)
        where = f"after {unit} {done()} of {total}" if done is not None else f"before the first {unit}"
        raise Interrupted(f"hgbench: interrupted ({signal.Signals(signum).name}) {where} in {out_dir}", 128 + signum, out_dir) from None
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
