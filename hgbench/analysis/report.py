"""``hgbench report DIR``: one self-contained HTML page per results folder, to open in a browser.

The page (DIR/report.html) shows what the folder holds, read from its files alone (nothing is
executed, instantiated or unpickled): how it was produced (reproduce.json: the command, time,
--quick), its figures (every PNG of the folder, linked relatively, with the PDF beside it), its
tables (every Markdown table of the folder: rates, slopes, outer summaries), the verdicts of the
claims decided on it with their criterion and evidence (the claims.md of the folder or of its
parent, rows whose preset is the folder's name), its jobs (each job folder's run.json: overrides,
run_id, device, dtype, code revision) and its sweep configuration (multirun.yaml). Every link is
relative, so the folder can be moved or served as it is; the page has no script and no external
resource.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from hgbench.analysis.results import RUN_INFO, atomic

REPORT = "report.html"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 75em; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } figure { margin: 1em 0; } img { max-width: 100%; height: auto; border: 1px solid #eee; }
pre { background: #f6f6f6; padding: 0.75em; overflow-x: auto; font-size: 0.85em; }
.holds { color: #006d2c; font-weight: bold; } .does-not-hold { color: #b2182b; font-weight: bold; }
.undecided { color: #8c6d00; font-weight: bold; }
"""


def _e(text) -> str:
    return html.escape(str(text))


def _markdown_tables(text: str) -> list[list[list[str]]]:
    """The tables of a Markdown text: lists of rows of cells (the header first, the rule left out)."""
    tables, rows = [], []
    for line in text.splitlines() + [""]:
        if line.strip().startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif rows:
            tables.append(rows)
            rows = []
    return tables


def _table(rows: list[list[str]], classes: dict[int, bool] | None = None) -> str:
    """An HTML table of rows of cells (the first row the header); ``classes``: the columns whose
    cells also become the cell's class (a verdict coloured by its value)."""
    head = "".join(f"<th>{_e(c)}</th>" for c in rows[0])
    body = []
    for row in rows[1:]:
        cells = []
        for i, cell in enumerate(row):
            css = f' class="{cell.replace(" ", "-")}"' if classes and i in classes else ""
            cells.append(f"<td{css}>{_e(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _verdicts(folder: Path) -> str:
    """The rows of the claims.md beside or above the folder whose preset is the folder's name."""
    for claims in (folder / "claims.md", folder.parent / "claims.md"):
        if not claims.is_file():
            continue
        out = []
        for rows in _markdown_tables(claims.read_text()):
            if "preset" not in rows[0] or "verdict" not in rows[0]:
                continue
            mine = [r for r in rows[1:] if len(r) == len(rows[0]) and r[rows[0].index("preset")] == folder.name]
            if mine:
                out.append(_table([rows[0], *mine], {rows[0].index("verdict"): True}))
        if out:
            return f'<p>From <a href="{_e(_relative(claims, folder))}">{_e(claims.name)}</a>.</p>' + "".join(out)
    return "<p>No claim is decided on this folder.</p>"


def _relative(path: Path, folder: Path) -> str:
    """path relative to folder, as a URL path ("../claims.md")."""
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return "../" + path.relative_to(folder.parent).as_posix()


def _jobs(folder: Path) -> str:
    rows = [["job", "overrides", "run_id", "device", "dtype", "code revision"]]
    for info in sorted(folder.glob(f"*/{RUN_INFO}"), key=lambda p: (len(p.parent.name), p.parent.name)):
        try:
            facts = json.loads(info.read_text())
        except (ValueError, OSError):
            continue
        rows.append(
            [
                info.parent.name,
                facts.get("overrides", ""),
                facts.get("run_id", ""),
                facts.get("device", ""),
                facts.get("dtype", ""),
                facts.get("code_revision", ""),
            ]
        )
    if len(rows) == 1:
        return "<p>No job folder with a run.json.</p>"
    links = "".join(f'<li><a href="{_e(r[0])}/{RUN_INFO}">{_e(r[0])}/{RUN_INFO}</a></li>' for r in rows[1:])
    return _table(rows) + f"<details><summary>run.json of each job</summary><ul>{links}</ul></details>"


def write_report(folder: Path) -> Path:
    """Write folder/report.html (module docstring) and return its path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a directory (give a results folder, e.g. results/grazzi2020)")
    parts = [f"<h1>{_e(folder.name)}</h1>"]
    info = folder / "reproduce.json"
    if info.is_file():
        facts = json.loads(info.read_text())
        parts.append(
            _table(
                [
                    ["produced by", "seconds", "quick", "finished"],
                    [facts.get("command", ""), facts.get("seconds", ""), facts.get("quick", ""), facts.get("finished", "")],
                ]
            )
        )
    files = sorted(p for p in folder.iterdir() if p.is_file())
    data = [p for p in files if p.suffix in (".csv", ".md", ".txt", ".json", ".yaml")]
    if data:
        parts.append("<p>Files: " + ", ".join(f'<a href="{_e(p.name)}">{_e(p.name)}</a>' for p in data) + "</p>")
    parts.append("<h2>Verdicts</h2>" + _verdicts(folder))
    figures = [p for p in files if p.suffix == ".png"]
    parts.append("<h2>Figures</h2>")
    for png in figures:
        pdf = png.with_suffix(".pdf")
        also = f' (<a href="{_e(pdf.name)}">PDF</a>)' if pdf.is_file() else ""
        parts.append(f'<figure><img src="{_e(png.name)}" alt="{_e(png.stem)}"><figcaption>{_e(png.name)}{also}</figcaption></figure>')
    if not figures:
        parts.append("<p>No figure in this folder (draw them with <code>hgbench plot</code>).</p>")
    parts.append("<h2>Tables</h2>")
    for md in (p for p in files if p.suffix == ".md"):
        for rows in _markdown_tables(md.read_text()):
            parts.append(f'<h3><a href="{_e(md.name)}">{_e(md.name)}</a></h3>' + _table(rows))
    parts.append("<h2>Jobs</h2>" + _jobs(folder))
    sweep = folder / "multirun.yaml"
    if sweep.is_file():
        parts.append("<h2>Configuration</h2><pre>" + _e(sweep.read_text()) + "</pre>")
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>hgbench: {_e(folder.name)}</title>'
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
    path = folder / REPORT
    with atomic(path) as tmp:
        tmp.write_text(page)
    return path
