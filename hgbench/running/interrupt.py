"""Ctrl-C (SIGINT) and SIGTERM during a run: one line, exit 130 / 143, nothing half-written.

``interruptible`` installs handlers for both signals (in the main thread; elsewhere the defaults
stay) for the duration of the work. A signal that arrives inside ``critical()`` (the append of
one draw's rows and facts) is held until that block ends, so an interrupted run leaves complete
draws only; atomic rewrites (hgbench.analysis.results.atomic) delete their temporary file when
interrupted. The work then stops with ``Interrupted``, which carries the one-line message
(how many draws are complete, and the command that continues) and the exit code 128 + signal.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


class Interrupted(KeyboardInterrupt):
    """The run stopped on a signal; ``message`` (one line) and ``code`` (128 + the signal)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.message, self.code = message, code


class _Signal(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextmanager
def interruptible(done: Callable[[], int], total: int, out_dir: Path) -> Iterator[Callable]:
    """Run the block with SIGINT and SIGTERM turned into ``Interrupted`` (see the module
    docstring); yields ``critical``, a context manager that defers both signals. ``done()``
    counts the complete draws when the signal comes; ``total`` is the run's number of draws."""
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
    except KeyboardInterrupt as err:
        signum = err.signum if isinstance(err, _Signal) else signal.SIGINT
        raise Interrupted(
            f"hgbench: interrupted ({signal.Signals(signum).name}) after draw {done()} of {total}; rerun with "
            f"resume=true hydra.run.dir={out_dir} to continue", 128 + signum,
        ) from None  # fmt: skip
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
