"""One writer per output folder: ``held(out_dir)`` locks a run folder while a run writes it.

The lock is the file ``.hgbench.lock`` in the folder, created with O_CREAT | O_EXCL (atomic on
POSIX, also on NFS v3+), holding the holder's pid, host and start time as JSON. A second writer
is refused with one line naming the holder. A lock whose holder is on this host and no longer
runs (a run killed with SIGKILL, or a crashed machine's reboot) is stale: it is taken over. A
lock of another host is never taken over (its pid cannot be checked from here); the message says
which file to delete once that run is known to be dead. On taking the folder, the temporary files
that dead writers left (``.NAME.hgbench-PID.tmp``, hgbench.analysis.results.atomic) are deleted:
only those (a user's ``.notes.123.tmp`` stays), and a name whose PID cannot be one (too many
digits) is left alone, never a failure that would leave the lock behind.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from hgbench.analysis.results import TEMPORARY as MARK, read_regular
from hgbench.running.errors import UserError

LOCK = ".hgbench.lock"
TEMPORARY = re.compile(rf"^\..+\.{MARK}(\d{{1,9}})\.tmp$")  # hgbench.analysis.results.atomic's names; PIDs < 2**30


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _holder(path: Path) -> dict | None:
    """The lock's content, or None when it is unreadable or half-written (a writer killed between
    creating and filling it): such a lock is stale too."""
    try:
        holder = json.loads(read_regular(path))  # not a regular file (a FIFO planted there): stale, never a hang
    except (ValueError, OSError):
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


def _stale(holder: dict | None) -> bool:
    return holder is None or (holder.get("host") == socket.gethostname() and not _alive(holder["pid"]))


def clean_temporaries(out_dir: Path) -> list[Path]:
    """Delete the temporary files of writers that no longer run; returns them."""
    removed = []
    for path in Path(out_dir).iterdir():
        match = TEMPORARY.match(path.name)
        if match and path.is_file() and (int(match.group(1)) == os.getpid() or not _alive(int(match.group(1)))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def acquire(out_dir: Path) -> Path:
    """Take the folder's lock (taking over a stale one) or raise UserError naming the holder."""
    path = Path(out_dir) / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    for _ in range(3):  # a stale lock removed by us may be re-created by another writer meanwhile
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if not _stale(holder):
                raise UserError(
                    f"{out_dir} is being written by another hgbench run (pid {holder['pid']} on {holder.get('host')}, "
                    f"started {holder.get('started')}); wait for it, choose another output directory, or delete {path} "
                    "if that run is dead"
                ) from None
            path.unlink(missing_ok=True)
            continue
        except OSError as err:
            raise UserError(f"cannot write in the output directory {out_dir} ({err.strerror}: {err.filename})") from err
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me))
            clean_temporaries(out_dir)
        except BaseException:  # a full disk, a signal: the lock is not left behind
            path.unlink(missing_ok=True)
            raise
        return path
    raise UserError(f"cannot lock {out_dir}: its lock {path} keeps being re-created; is another run starting there?")


@contextmanager
def held(out_dir: Path) -> Iterator[Path]:
    """Hold out_dir's lock for the block (released also when the block raises)."""
    path = acquire(out_dir)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
