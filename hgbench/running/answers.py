"""Answers that depend only on hgbench's code and its config tree — `hgbench run --help` and
`hgbench list` — answered without importing torch, pandas or Hydra, from their first call on.

An answer is the command's exact output, stored under a key: the command's words and a
fingerprint of everything the output can depend on (the content of every .py file of the package
and every .yaml of the config tree, by relative path; the major and minor versions of Python, and
the versions of Hydra and OmegaConf). Any change to the code or the configuration changes the
key, and the answer is computed afresh; only an answer of a command that succeeded is kept.

Two stores, read in this order:

- the shipped answers, ``shipped_answers.json`` beside this module: ``SHIPPED`` commands' answers
  (and the schemas shell completion needs: hgbench.running.completion) as computed at commit time (``make answers``, i.e. ``python -m hgbench.running.answers``), with
  the fingerprint they were computed under; used only where it equals the installation's, so
  that a fresh install answers its first ``run --help`` at once, and an edited checkout or
  another Hydra version computes instead (tests/test_cli.py checks that the shipped answers are
  the current code's);
- the user's store, ``$XDG_CACHE_HOME/hgbench/answers`` (default ``~/.cache``), where every other
  answer is kept after its first computation; a store that cannot be written is simply not used.

``HGBENCH_NO_CACHE=1`` bypasses both.

Standard library only: this module is imported before anything heavy.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable

from hgbench.paths import conf_dir


def store() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hgbench" / "answers"


SHIPPED = (["run", "--help"], ["list"])
SHIPPED_FILE = Path(__file__).resolve().with_name("shipped_answers.json")


def fingerprint() -> str:
    """The state the answers depend on (module docstring), as a hex digest."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent
    for root, pattern in ((package, "*.py"), (conf_dir(), "*.yaml")):
        for path in sorted(root.rglob(pattern)):
            digest.update(f"{path.relative_to(root).as_posix()}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    for name in ("hydra-core", "omegaconf"):
        try:
            digest.update(f"{name}={metadata.version(name)}\n".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name}=none\n".encode())
    digest.update(f"python={sys.version_info[0]}.{sys.version_info[1]}".encode())
    return digest.hexdigest()


def _key(words: list[str]) -> str:
    return "\0".join(words)


def shipped(current: str, part: str = "answers") -> dict:
    """The shipped answers by key (``part`` "answers"), or the configuration's schemas for shell
    completion (``part`` "schemas": hgbench.running.completion), if they were computed under the
    fingerprint ``current``; else empty."""
    try:
        found = json.loads(SHIPPED_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found.get(part, {}) if found.get("fingerprint") == current else {}


def compute(words: list[str]) -> str:
    """The output of ``hgbench WORDS``, computed in a fresh process with both stores bypassed
    (what the shipped answers must equal)."""
    env = {**os.environ, "HGBENCH_NO_CACHE": "1"}
    code = "import sys; from hgbench.running.cli import main; sys.argv = ['hgbench', *sys.argv[1:]]; main()"
    done = subprocess.run([sys.executable, "-c", code, *words], env=env, capture_output=True, text=True, check=True)
    return done.stdout


def ship() -> None:
    """Write shipped_answers.json: the ``SHIPPED`` commands' answers and the schemas of shell
    completion (hgbench.running.completion.snapshot) under the current fingerprint."""
    from hgbench.running.completion import snapshot

    answers = {_key(words): compute(words) for words in SHIPPED}
    content = {"fingerprint": fingerprint(), "answers": answers, "schemas": snapshot()}
    SHIPPED_FILE.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {SHIPPED_FILE}")


def answer(words: list[str], compute: Callable[[], int]) -> int:
    """The exit status of ``compute`` (which prints the answer to ``words``), its output
    printed; from the store when the same words were answered for the same fingerprint."""
    if os.environ.get("HGBENCH_NO_CACHE") == "1":
        return compute()
    current = fingerprint()
    if _key(words) in (found := shipped(current)):
        sys.stdout.write(found[_key(words)])
        return 0
    key = hashlib.sha256((_key(words) + "\0" + current).encode()).hexdigest()[:32]
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


if __name__ == "__main__":
    ship()
