"""Draw docs/figures/*.png, the gallery of every figure kind (docs/figures.md), from committed
results only (nothing is recomputed): each figure as ``hgbench plot DIR --kind K`` draws it.

    .venv/bin/python scripts/gallery.py
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path

import hgbench
from hgbench.analysis.bilevel import load_bilevel
from hgbench.analysis.outer_loop import load_outer
from hgbench.analysis.stochastic import load_stochastic
from hgbench.analysis.canvas import plt
from hgbench.analysis.plot import load_with_constants

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "figures"
# gallery file -> (the results folder, how its rows are loaded, figure kind, options)
GALLERY = {
    "error.png": ("results/ridge_illcond_cold", hgbench.load, "error", {"theory": True}),
    "error_grazzi2020.png": ("results/grazzi2020", hgbench.load, "error", {"theory": True}),
    "cost.png": ("results/grazzi2020", hgbench.load, "cost", {}),
    "bound.png": ("results/grazzi2020", load_with_constants, "bound", {}),
    "inner.png": ("results/ye2024_logistic", hgbench.load, "inner", {}),
    "inner_levels.png": ("results/ye2024_fig3a", hgbench.load, "inner", {}),
    "inner_roundoff.png": ("results/ye2024_fig1a", hgbench.load, "inner", {}),
    "outer.png": ("results/outer/outer_ridge", load_outer, "outer", {}),
    "train.png": ("results/deq_small", load_outer, "train", {}),
    "stochastic.png": ("results/stochastic", load_stochastic, "stochastic", {}),
    "bilevel.png": ("results/bilevel", load_bilevel, "bilevel", {}),
}


def main(names: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (folder, load, kind, options) in GALLERY.items():
        if names and name not in names:
            continue
        # the tables the figure functions write and print go to a scratch folder and nowhere
        with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(io.StringIO()):
            fig = hgbench.plot(load(ROOT / folder), scratch, kind=kind, **options)
        fig.savefig(OUT / name, dpi=80, bbox_inches="tight")
        plt.close(fig)
        print(f"{OUT / name}  <- hgbench plot {folder} --kind {kind}{' --theory' if options.get('theory') else ''}")


if __name__ == "__main__":
    main(sys.argv[1:])
