"""The tables of results/outer/README.md, regenerated from the committed outer.csv files alone:
per outer problem its certified optima, then the time-to-ε table at ε = 1e-2 and 1e-3
(hgbench.analysis.outer_loop.optima and summary). Writes everything after the marker TABLES.

    python scripts/outer_tables.py [results/outer]
"""

from __future__ import annotations

import sys
from pathlib import Path

from hgbench.analysis.outer_loop import _formatted, load_outer, optima, summary
from hgbench.analysis.results import markdown, write_text_atomic

TABLES = "<!-- tables: written by scripts/outer_tables.py -->"


def tables(folder: Path) -> str:
    blocks = []
    for path in sorted(folder.glob("outer_*/outer.csv")):
        df, name = load_outer(path), path.parent.name
        best = optima(df)
        rows = [
            f"| {r.seed} | {r.f_star:.10g} | {r.f_star_stationarity:.3g} | {r.f_star_tol:.3g} | {r.f_star_evals:.0f} | {r.f_star_reason} |"
            for r in best.itertuples()
        ]
        blocks.append(
            f"#### {name}: certified optima\n\n| seed | f* | π(λ*) | tolerance | references | why none |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows).replace("| nan |", "| — |")
        )
        for eps in (1e-2, 1e-3):
            table = summary(df, eps)
            table = table.sort_values(["reached", "time_to_eps_s", "final_rel_gap"], ascending=[False, True, True])
            table = table.drop(columns=["problem", "status"] + (["test_acc"] if table["test_acc"].isna().all() else []))
            blocks.append(f"#### {name}, ε = {eps:g}\n\n" + markdown(_formatted(table)).rstrip())
    return "\n\n".join(blocks) + "\n"


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "results/outer")
    readme = folder / "README.md"
    head = readme.read_text().split(TABLES, 1)[0]
    write_text_atomic(readme, head + TABLES + "\n\n" + tables(folder))
