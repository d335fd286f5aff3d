"""Answers that depend only on hgbench's code and its config tree — `hgbench run --help` and
`hgbench list` — kept after their first computation, so that asking again costs no import of
torch, pandas or Hydra.

An answer is the command's exact output, stored under a key: the command's words and a
fingerprint of everything the output can depend on (every .py file of the package and every
.yaml of the config tree, by path, size and modification time; hgbench's, Python's, Hydra's and
OmegaConf's versions). Any change to the code or the configuration changes the key, and the
answer is computed afresh; only an answer of a command that succeeded is kept. The store is
``$XDG_CACHE_HOME/hgbench/answers`` (default ``~/.cache``); ``HGBENCH_NO_CACHE=1`` bypasses it,
and a store that cannot be written is simply not used.

Standard library only: this module is imported before anything heavy.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable

from hgbench.paths import conf_dir


def store() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hgbench" / "answers"


def fingerprint() -> str:
    """The state the answers depend on (module docstring), as a hex digest."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent
    files = sorted(package.rglob("*.py")) + sorted(conf_dir().rglob("*.yaml"))
    for path in files:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    for name in ("hgbench", "hydra-core", "omegaconf"):
        try:
            digest.update(f"{name}={metadata.version(name)}\n".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name}=none\n".encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def answer(words: list[str], compute: Callable[[], int]) -> int:
    """The exit status of ``compute`` (which prints the answer to ``words``), its output
    printed; from the store when the same words were answered for the same fingerprint."""
    if os.environ.get("HGBENCH_NO_CACHE") == "1":
        return compute()
    key = hashlib.sha256(("\0".join(words) + "\0" + fingerprint()).encode()).hexdigest()[:32]
    path = store() / f"{key}.txt"
    try:
        sys.stdout.write(path.read_text(encoding="utf-8"))
        return 0
    except OSError:
        pass
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            status = compute()
    except SystemExit as done:
        status = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    sys.stdout.write(out.getvalue())
    if status == 0 and out.getvalue():
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temporary.write_text(out.getvalue(), encoding="utf-8")
            temporary.replace(path)
    return status
