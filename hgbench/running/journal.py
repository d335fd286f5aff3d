"""Error mode's crash-safe output at a constant cost per λ draw.

``Journal.start`` writes the draws kept from an earlier run once (metrics.csv and run.json, each
atomically: temporary file + rename). Each finished draw is then appended: its rows to
metrics.csv as ONE ``os.write`` of complete lines, then its reference facts as one JSON line to
``references.jsonl``, each followed by fsync. ``Journal.finish`` merges the facts into run.json
(atomically) and deletes references.jsonl. Nothing already written is rewritten per draw, so a
draw costs the same at draw 10 as at draw 10,000.

What a kill leaves (SIGKILL included, at any moment): a write(2) to a regular file is not cut
short by a signal, so metrics.csv holds complete draws, in order, plus at most the rows of one
draw whose facts line is missing; ``read_previous`` keeps only draws that have both (and drops a
final line without its newline, which only a full disk or a power cut can leave). References
facts live in run.json (draws up to the last ``start`` or ``finish``) and references.jsonl (the
rest); ``read_previous`` reads both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from hgbench.analysis.results import RUN_INFO, atomic, csv_text, frame, read_csv, read_regular, strict_json, write_csv_atomic

FACTS = "references.jsonl"


def _append(path: Path, text: str) -> None:
    """Append text with one write(2) (looping only on a short write), then fsync."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # never through a link
    try:
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_previous(out_dir: Path, csv: str, info: dict) -> tuple[pd.DataFrame, dict[int, dict]]:
    """The rows of out_dir/``csv`` (a final line without its newline dropped) and the facts of
    every draw by lam_id: run.json's ``references`` (``info``), then references.jsonl's lines
    (later lines win). Raises ValueError on malformed content."""
    text = read_regular(out_dir / csv)
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = read_csv(out_dir / csv, text)
    facts = list(info.get("references", []))
    journal = out_dir / FACTS
    if os.path.lexists(journal):
        lines = read_regular(journal).split("\n")
        facts += [json.loads(line) for line in lines[:-1] if line]  # the last piece lacks its newline
    by_id = {}
    for fact in facts:
        if not (isinstance(fact, dict) and isinstance(fact.get("lam_id"), int) and isinstance(fact.get("lam"), list)):
            raise ValueError(f"a reference entry without an integer lam_id and a list lam: {str(fact)[:80]}")
        by_id[fact["lam_id"]] = fact
    return rows, by_id


class Journal:
    """Writes one error-mode run's metrics.csv and run.json; see the module docstring.
    ``info(facts)`` returns the run.json content for a list of facts."""

    def __init__(self, out_dir: Path, csv: str, columns: list[str], info):
        self.out_dir, self.csv, self.columns, self.info = Path(out_dir), csv, columns, info

    def _write_info(self, facts: list[dict]) -> None:
        with atomic(self.out_dir / RUN_INFO) as tmp:
            tmp.write_text(strict_json(self.info(facts), indent=2))

    def start(self, rows: list[dict], facts: list[dict]) -> None:
        """Write the kept draws' rows and facts whole (once), and an empty journal."""
        write_csv_atomic(frame(rows, self.columns), self.out_dir / self.csv)
        self._write_info(facts)
        (self.out_dir / FACTS).unlink(missing_ok=True)

    def append(self, rows: list[dict], fact: dict) -> None:
        """One finished draw: its rows, then its facts line."""
        _append(self.out_dir / self.csv, csv_text(rows, self.columns, header=False))
        _append(self.out_dir / FACTS, strict_json(fact) + "\n")

    def finish(self, facts: list[dict]) -> None:
        """Merge every draw's facts into run.json; delete the journal."""
        self._write_info(facts)
        (self.out_dir / FACTS).unlink(missing_ok=True)
