"""One visual language for every figure: a fixed colour, marker and line style per estimator.

Every shipped estimator has its own entry in ``ROLES``, the same in every figure (error, cost,
inner error, bound, outer, training). The colours are the Okabe–Ito palette (Okabe & Ito, "Color
Universal Design", 2008: told apart under the common colour-vision deficiencies) extended by Paul
Tol's "muted" scheme for the estimators beyond its eight colours; every entry also has its own
marker, so two curves never differ by colour alone, and estimators of one family (itd and its
variants, the preconditioned and reparametrized ones of Ye et al. 2024) share a hue family.

A curve's label is its estimator's name, possibly followed by the settings that tell
configurations apart (``fp, dtype=float32``; ``itd, warm=True``: hgbench.analysis.results.labels).
All configurations of one estimator keep its colour and differ by line style and marker
(``palette``). A name that is not shipped takes its ``role``'s style where it declares one (a
renamed fp looks like fp), else a colour of ``EXTRA`` chosen by the name itself (crc32), so it too
keeps its colour across figures.
"""

from __future__ import annotations

import zlib

# Okabe–Ito: the first eight; Paul Tol's muted: the rest.
BLUE, SKY, GREEN, ORANGE, VERMILION, PURPLE, YELLOW, BLACK = (
    "#0072B2",
    "#56B4E9",
    "#009E73",
    "#E69F00",
    "#D55E00",
    "#CC79A7",
    "#F0E442",
    "#000000",
)
INDIGO, TEAL, WINE, OLIVE, ROSE, SAND, GREY = "#332288", "#44AA99", "#882255", "#999933", "#CC6677", "#DDCC77", "#777777"

# estimator (or role) -> (colour, marker, line style)
ROLES: dict[str, tuple[str, str, str]] = {
    "itd": (BLUE, "o", "-"),
    "itd_forward": (SKY, "s", "--"),
    "itd_trunc": (INDIGO, "v", "-."),
    "fp": (ORANGE, "^", "-"),
    "neumann": (VERMILION, "D", "--"),
    "cg": (GREEN, "P", "-"),
    "cg_normal": (TEAL, "X", "--"),
    "gmres": (PURPLE, "*", "-."),
    "jfb": (BLACK, "x", ":"),
    "exact": (GREY, "h", "-"),
    "precond_newton": (WINE, "<", "-"),
    "precond_jacobi": (ROSE, ">", "--"),
    "reparam_opt": (OLIVE, "p", "-"),
    "reparam_exp": ("#997700", "d", "--"),
    "reparam_diag": (SAND, "8", "-."),
}
# names that are neither shipped nor declare a shipped role: colours of tab10 that ROLES lacks
EXTRA = ("#8C564B", "#7F7F7F", "#BCBD22", "#17BECF", "#9467BD", "#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#E377C2")
EXTRA_MARKERS = "os^vD"
LINES = ("-", "--", "-.", ":")
MARKERS = "os^vDPX*<>hpd8"
PREDICTED = dict(lw=1.0, ls=(0, (2, 2)), alpha=0.9)  # a predicted rate: thin, short dashes, the estimator's colour


def base(label: str) -> str:
    """The estimator's name at the head of a curve's label (``fp, dtype=float32`` -> ``fp``)."""
    return str(label).split(",")[0].strip()


def estimator_style(name: str, role: str | None = None) -> dict:
    """The style of estimator ``name`` (a shipped name, or one that declares ``role``): matplotlib
    keyword arguments color, marker and ls, the same in every figure."""
    entry = ROLES.get(name) or ROLES.get(role or "")
    if entry is None:
        i = zlib.crc32(name.encode())
        entry = (EXTRA[i % len(EXTRA)], EXTRA_MARKERS[i % len(EXTRA_MARKERS)], LINES[i % len(LINES)])
    colour, marker, ls = entry
    return {"color": colour, "marker": marker, "ls": ls}


def palette(labels, roles: dict | None = None) -> dict:
    """A style per curve label: its estimator's (``estimator_style`` of the label's ``base``, or of
    its role in ``roles``, a mapping label or base -> role). Several labels of one estimator (its
    configurations) keep its colour; in sorted order, the first has the estimator's own line style
    and marker, the next ones the following line styles and markers (``LINES``, ``MARKERS``).
    Unknown names that land on a taken colour move to the next free colour of ``EXTRA`` (so up to
    len(EXTRA) of them have their own colours), then to free (colour, marker, line style) triples."""
    roles = roles or {}
    labels = sorted({str(label) for label in labels})
    by_base: dict[str, list[str]] = {}
    for label in labels:
        by_base.setdefault(base(label), []).append(label)
    out, taken = {}, set()
    for name, group in sorted(by_base.items()):
        style = estimator_style(name, roles.get(name) or roles.get(group[0]))
        known = name in ROLES or (roles.get(name) or roles.get(group[0])) in ROLES
        if not known:  # the first free (colour, marker, line style) from the name's own
            start = EXTRA.index(style["color"])
            free = (
                (EXTRA[(start + j) % len(EXTRA)], MARKERS[m % len(MARKERS)], LINES[m % len(LINES)])
                for m in range(len(MARKERS) * len(LINES))
                for j in range(len(EXTRA))
            )
            free = list(free)
            own = (style["color"], style["marker"], style["ls"])
            style["color"], style["marker"], style["ls"] = next(
                (c for c in free if c[0] not in taken), next((c for c in free if c not in taken), own)
            )
        taken.update([style["color"], (style["color"], style["marker"], style["ls"])])
        first_ls, first_marker = LINES.index(style["ls"]), MARKERS.find(style["marker"])
        for j, label in enumerate(group):
            out[label] = dict(style)
            if j:
                out[label]["ls"] = LINES[(first_ls + j) % len(LINES)]
                out[label]["marker"] = MARKERS[(max(first_marker, 0) + j) % len(MARKERS)]
    return out
