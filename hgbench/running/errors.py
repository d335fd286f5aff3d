"""How hgbench run refuses and reports: ``UserError`` (a bad setting, one line, exit 2), the short
reason of an ``error`` row or a refusal (``reason``), and ``one_line`` (any other failure of a run,
one line and its exit code)."""

from __future__ import annotations

import sys


class UserError(ValueError):
    """A bad configuration: reported as one line, without a traceback."""


def reason_of(err: BaseException) -> str:
    """The short one-line reason of an ``error`` row (or of a refusal naming a failure)."""
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= 160 else text[:157] + "..."


def one_line(err: Exception) -> int:
    """Print any other failure of ``hgbench run`` as one line; returns the exit code: 2 for output
    paths that cannot be written, 1 for anything else (its traceback with HYDRA_FULL_ERROR=1)."""
    if isinstance(err, BrokenPipeError):  # stdout closed by the reader: main ends quietly
        raise err
    text = " ".join(str(err).split())
    if isinstance(err, OSError):
        print(f"hgbench: error: cannot write the output directory: {err.strerror}: {err.filename}", file=sys.stderr)
        return 2
    print(f"hgbench: error: {type(err).__name__}: {text} (rerun with HYDRA_FULL_ERROR=1 for the traceback)", file=sys.stderr)
    return 1
