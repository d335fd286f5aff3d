"""What every figure shares (hgbench.analysis.plot's and hgbench.analysis.outer_loop's): matplotlib
without a display, panels with constrained layout (``subplots``), the title over the panels
(``title``), one legend for the figure (``legend``) and crash-safe saving as PNG and PDF
(``save``, and ``kept`` to collect the saved figures instead of closing them)."""

from __future__ import annotations

import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D

from hgbench.analysis.results import atomic
from hgbench.analysis.style import PREDICTED

FONT = 9  # legend and panel titles: readable when the figure is printed at a column's width
LEGEND_ROW = 0.22  # inches per legend entry at font size FONT
LEGEND_CHAR = 0.07  # inches per character of a label, about
PREDICTED_LABEL = r"predicted rate: $q^t$ (ITD: $t\,q^t$), $q^k$ or $p^k$"


def subplots(rows: int, cols: int, width: float, height: float):
    """A figure of rows × cols panels with constrained layout, which keeps the title, the axis
    labels and a legend outside the axes inside the figure."""
    return plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")


def title(fig, text: str) -> None:
    """The figure's title, aligned left over the panels, clear of the legend on the right: called
    before ``legend`` widens the figure, it is wrapped to the panels' width."""
    chars = max(30, int(fig.get_size_inches()[0] * 72 / (0.55 * (FONT + 2))))  # about 0.55 em per character
    fig.suptitle("\n".join(textwrap.fill(line, chars) for line in text.split("\n")), x=0.01, ha="left", fontsize=FONT + 2)


def legend(fig) -> None:
    """One legend for the whole figure, outside the axes on the right: every label once, in the
    order first drawn, in as many columns as keep it no taller than the panels; the figure is
    widened by the legend's width so that the panels keep theirs. The predicted-rate lines, one per
    estimator in its colour, share one entry drawn in grey."""
    entries = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if not entries:
        return
    if PREDICTED_LABEL in entries:
        entries[PREDICTED_LABEL] = Line2D([], [], color="0.3", **PREDICTED)
    width, height = fig.get_size_inches()
    rows = max(3, int((height - 1.2) / LEGEND_ROW))
    ncols = -(-len(entries) // rows)
    fig.set_size_inches(width + ncols * (1.0 + LEGEND_CHAR * max(map(len, entries))), height)
    fig.legend(entries.values(), entries.keys(), loc="outside right upper", fontsize=FONT, ncols=ncols, handlelength=3.2)


_KEPT: list | None = None  # while ``kept`` collects: the figures saved, left open for the caller
_FORMATS: tuple[str, ...] = ("png", "pdf")  # what ``save`` writes; ``formats`` narrows it


@contextmanager
def formats(*extensions: str) -> Iterator[None]:
    """Within the block, ``save`` writes only these formats: the figure drawn at the end of a run
    is a PNG (its PDF costs as much again: `hgbench plot` writes both)."""
    global _FORMATS
    saved, _FORMATS = _FORMATS, extensions
    try:
        yield
    finally:
        _FORMATS = saved


def save(fig, out_dir: Path, stem: str, close: bool = True) -> list[Path]:
    """The figure as out_dir/``stem``.png and .pdf (the ``formats`` in force), each through a
    temporary file (hgbench.analysis.results.atomic: a link in its place is replaced, never
    written through); closed afterwards unless ``close`` is false (or ``kept`` is collecting it)."""
    paths = [Path(out_dir) / f"{stem}.{extension}" for extension in _FORMATS]
    for path in paths:
        with atomic(path) as tmp:
            fig.savefig(tmp, dpi=130, bbox_inches="tight", format=path.suffix[1:])
    if _KEPT is not None:
        _KEPT.append(fig)
    elif close:
        plt.close(fig)
    return paths


@contextmanager
def kept() -> Iterator[list]:
    """The figures ``save`` saves meanwhile, collected in the list yielded and left open for the
    caller (hgbench.analysis.plot.figure)."""
    global _KEPT
    _KEPT = []
    try:
        yield _KEPT
    finally:
        _KEPT = None
