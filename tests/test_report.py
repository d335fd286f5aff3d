"""`hgbench report DIR`: a self-contained HTML page per results folder, checked in a real headless
browser (Debian's chromium; .ci/run installs it): it renders, its images load and its links
resolve. Without a chromium on PATH (or $HGBENCH_CHROMIUM) the browser test is skipped."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
PRESET = "ridge_illcond_cold"
CHROMIUM = os.environ.get("HGBENCH_CHROMIUM") or shutil.which("chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-file-access-from-files",
    "--virtual-time-budget=5000",
]
# appended to a copy of the page: after load, what the browser made of the images and links
PROBE = """<script>addEventListener("load", () => {
  document.body.dataset.images = JSON.stringify([...document.images].map(i => [i.getAttribute("src"), i.complete, i.naturalWidth]));
  document.body.dataset.links = JSON.stringify([...document.links].map(a => a.href));
});</script></body>"""


@pytest.fixture
def report(tmp_path, monkeypatch, capsys):
    """A copy of a committed results folder (and claims.md beside it) with its report.html."""
    folder = tmp_path / "results" / PRESET
    shutil.copytree(ROOT / "results" / PRESET, folder)
    shutil.copy(ROOT / "results" / "claims.md", tmp_path / "results" / "claims.md")
    assert run_cli(monkeypatch, "report", folder) == 0
    assert capsys.readouterr().out == f"report: {folder / 'report.html'}\n"
    return folder / "report.html"


def test_the_report_holds_figures_tables_verdicts_and_jobs(report):
    page = report.read_text()
    assert page.count("<img ") == len(list(report.parent.glob("*.png"))) >= 2
    claims = [line for line in (ROOT / "results" / "claims.md").read_text().splitlines() if f"| {PRESET} |" in line]
    assert claims and page.count('class="holds"') + page.count('class="does-not-hold"') + page.count('class="undecided"') == len(claims)
    assert "rates.md" in page and "0_ridge_itd_diag" in page and "reproduce" in page
    assert not re.search(r'(src|href)="(/|[a-z]+:)', page)  # relative links only: the folder can move
    assert "<script" not in page


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium; .ci/run does)")
def test_the_report_renders_in_a_headless_browser(report, tmp_path):
    probe = report.with_name("report_probe.html")  # beside it, so that its relative links are the page's
    probe.write_text(report.read_text().replace("</body>", PROBE))
    proc = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=30,
    )
    body = re.search(r"<body([^>]*)>", proc.stdout)
    assert body, proc.stderr[-2000:]
    attributes = dict(re.findall(r'data-(\w+)="([^"]*)"', body.group(1)))
    images = json.loads(attributes["images"].replace("&quot;", '"'))
    links = json.loads(attributes["links"].replace("&quot;", '"'))
    assert "<h1>" + PRESET + "</h1>" in proc.stdout  # rendered
    assert len(images) >= 2 and all(complete and width > 0 for _, complete, width in images), images
    assert links and all(Path(unquote(urlparse(link).path)).exists() for link in links), links
