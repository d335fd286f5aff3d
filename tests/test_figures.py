"""One visual language for every figure, read back from the figures themselves: each estimator in
its fixed colour (the same in the error, cost and bound figures; distinct between estimators, also
in the saved PNG's pixels), every panel titled, one legend, predicted rates in their estimator's
colour under one entry, round-off shown as round-off, and a cost figure with log axes."""

import re
from pathlib import Path

import matplotlib.colors as mcolors
import matplotlib.image as mimage
import numpy as np
import pandas as pd
import pytest

import hgbench.analysis.plot as plot_module
from hgbench.analysis import canvas
from hgbench.analysis.style import ROLES, estimator_style, palette

ESTIMATORS = {"itd": "itd", "itd_forward": "itd", "fp": "fp", "cg": "cg"}  # estimator -> role
Q = 0.8


def _rows(problem: str = "ridge", estimators=ESTIMATORS, grids=("diag", "k_sweep"), floor: float = 0.0, q: float = Q) -> pd.DataFrame:
    """Rows of a small sweep: err_rel = q^x with a small per-draw spread (x = t on diag, k on
    k_sweep at t = 40, ITD without k), never below ``floor``; costs growing with t and k."""
    out = []
    for name, role in estimators.items():
        for grid in grids:
            for lam in range(3):
                for x in range(0, 41, 5):
                    t, k = (x, x) if grid == "diag" else (40, x)
                    if role == "itd":
                        k = None
                        if grid == "k_sweep" and x:
                            continue
                    err = max(q ** (x if grid == "diag" else k or t) * (1 + 0.1 * lam), floor)
                    out.append(
                        {
                            "problem": problem,
                            "estimator": name,
                            "role": role,
                            "grid": grid,
                            "seed": 0,
                            "lam_id": lam,
                            "t": t,
                            "k": k,
                            "err_abs": err,
                            "err_rel": err,
                            "q": Q,
                            "kappa": 5.0,
                            "dtype": "float64",
                            "status": "ok",
                            "n_phi": t,
                            "n_vjp": t + (k or t),
                            "n_jvp": 0,
                            "time_s": 1e-3 * (1 + t + (k or t)),
                            "run_id": f"{name}_{grid}",
                            "setting_id": "s",
                            "overrides": f"estimator={name} grid={grid}",
                        }
                    )
    return pd.DataFrame(out)


def _curves(fig) -> dict[str, str]:
    """Label -> hex colour of every labelled data line of the figure (predicted rates excluded)."""
    out = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            label = line.get_label()
            if not label.startswith("_") and label != plot_module.PREDICTED_LABEL:
                out.setdefault(label, set()).add(mcolors.to_hex(line.get_color()))
    return {label: colours.pop() for label, colours in out.items() if len(colours) == 1}


def test_every_shipped_estimator_has_its_own_colour_and_marker():
    colours = [mcolors.to_hex(colour) for colour, _, _ in ROLES.values()]
    markers = [marker for _, marker, _ in ROLES.values()]
    assert len(set(colours)) == len(ROLES) and len(set(markers)) == len(ROLES)
    assert estimator_style("my_fp", role="fp") == estimator_style("fp")  # a renamed estimator keeps its role's style


def test_configurations_of_one_estimator_share_its_colour_and_differ_in_line_and_marker():
    styles = palette(["fp", "fp, dtype=float32", "fp, dtype=float64", "cg"])
    fps = [styles[label] for label in ("fp", "fp, dtype=float32", "fp, dtype=float64")]
    assert {s["color"] for s in fps} == {estimator_style("fp")["color"]}
    assert len({s["ls"] for s in fps}) == 3 and len({s["marker"] for s in fps}) == 3
    unknown = palette([f"name_{i}" for i in range(40)])
    assert len({s["color"] for s in unknown.values()}) == 10  # every colour of EXTRA used before any repeats
    assert len({(s["color"], s["marker"], s["ls"]) for s in unknown.values()}) == 40
    assert palette(reversed([f"name_{i}" for i in range(40)])) == unknown  # by name, not by order


def test_error_figure_colours_are_the_estimators_in_every_figure(tmp_path, figures):
    df = _rows()
    plot_module.plot_errors(df, tmp_path)
    plot_module.plot_cost(df, tmp_path)
    error, cost = figures
    expected = {name: mcolors.to_hex(estimator_style(name)["color"]) for name in ESTIMATORS}
    best = _curves(cost).pop("the best estimator at that budget")  # the legend entry of the winners' band
    assert _curves(error) == expected and _curves(cost) == {**expected, "the best estimator at that budget": best}
    assert len(set(expected.values())) == len(ESTIMATORS)
    for fig in figures:
        assert all(ax.get_title(loc="left") for ax in fig.axes)  # every panel titled
        assert len(fig.legends) == 1 and {t.get_text() for t in fig.legends[0].get_texts()} >= set(ESTIMATORS)
    assert all(ax.get_xscale() == "log" for ax in cost.axes)  # no symlog: no 0 next to 10⁰


def test_panels_form_a_grid_of_problems_and_grid_kinds(tmp_path, figures):
    df = pd.concat([_rows(problem=f"p{i}") for i in range(4)], ignore_index=True)
    plot_module.plot_errors(df, tmp_path)
    (fig,) = figures
    spec = fig.axes[0].get_subplotspec().get_gridspec()
    assert (spec.nrows, spec.ncols) == (2, 4)  # two problems of two panels per row, not one column of eight
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles[:2] == ["p0: cold start, k = t", "p0: solver steps k (t = 40)"] and len(set(titles)) == 8


def test_predicted_rates_are_drawn_in_their_estimators_colour_under_one_entry(tmp_path, figures):
    plot_module.plot_errors(_rows(estimators={"fp": "fp", "cg": "cg"}), tmp_path, theory=True)
    (fig,) = figures
    predicted = [line for ax in fig.axes for line in ax.get_lines() if line.get_label() == plot_module.PREDICTED_LABEL]
    assert {mcolors.to_hex(line.get_color()) for line in predicted} == {estimator_style(n)["color"].lower() for n in ("fp", "cg")}
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts.count(plot_module.PREDICTED_LABEL) == 1
    outside_math = [part for text in texts for part in text.split("$")[::2]]
    assert not any("^" in part for part in outside_math)  # exponents typeset by mathtext, not a literal caret


def test_saved_png_shows_every_estimator_in_its_own_colour(tmp_path):
    paths = plot_module.plot_errors(_rows(), tmp_path)
    pixels = mimage.imread(paths[0])[..., :3].reshape(-1, 3)
    for name in ESTIMATORS:
        rgb = np.array(mcolors.to_rgb(estimator_style(name)["color"]))
        close = np.abs(pixels - rgb).max(axis=1) < 0.02
        assert close.sum() > 50, name  # the median line in its colour, not only a faint band


def test_x_axis_is_cut_where_every_curve_is_at_round_off(tmp_path, figures):
    plot_module.plot_errors(_rows(estimators={"fp": "fp"}, grids=("diag",), floor=1e-16, q=0.2), tmp_path)
    (fig,) = figures
    (ax,) = fig.axes
    assert ax.get_xlim()[1] < 0.7 * 40  # 0.2^t is below 1e-12 from t = 20 on: the rest is round-off
    assert any(p.get_label().startswith("round-off") for p in ax.patches)


def _inner_rows() -> pd.DataFrame:
    """Rows of a grid=levels run: precond_newton at round-off, reparam_opt linear in the level."""
    levels = np.geomspace(10, 1e-3, 12)
    return pd.DataFrame(
        [
            {
                "problem": "ye",
                "estimator": name,
                "role": name,
                "grid": "levels",
                "seed": 0,
                "lam_id": lam,
                "t": i,
                "k": None,
                "level": level,
                "err_abs": (3e-15 if name == "precond_newton" else level) * (1 + 0.5 * lam),
                "err_rel": 1e-16,
                "inner_err": level,
                "status": "ok",
                "run_id": name,
                "setting_id": "s",
                "overrides": f"estimator={name}",
            }
            for name in ("precond_newton", "reparam_opt")
            for lam in range(3)
            for i, level in enumerate(levels)
        ]
    )


def test_inner_figure_shows_round_off_as_round_off(tmp_path, figures):
    plot_module.plot_inner(_inner_rows(), tmp_path)
    (fig,) = figures
    (ax,) = fig.axes
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "precond_newton: at round-off" in texts and any(t.startswith("reparam_opt: slope 1.0") for t in texts)
    assert not any("n/a" in t for t in texts)
    assert ax.get_ylim()[0] >= 1e-12 * 1e-5  # no std band reaching down to 1e-21
    assert any(p.get_label() == "round-off" for p in ax.patches)


ROOT = Path(__file__).resolve().parent.parent


def test_hgbench_plot_draws_every_kind(tmp_path, monkeypatch):
    """hgbench.plot(df, out, kind=K) returns figure K for every kind, from synthetic rows or
    committed results (drawn, not written: saving is ``canvas.save``'s, exercised by the error kind)."""
    import hgbench
    from hgbench.analysis.bilevel import load_bilevel
    from hgbench.analysis.outer_loop import load_outer
    from hgbench.analysis.stochastic import load_stochastic

    fig = hgbench.plot(_rows(), tmp_path, kind="error")
    assert (tmp_path / "error_vs_iterations.png").is_file()
    canvas.plt.close(fig)
    monkeypatch.setattr(canvas, "save", lambda fig, out_dir, stem, close=True: canvas._KEPT.append(fig) or [])
    rows = {
        "cost": _rows(),
        "inner": _inner_rows(),
        "bound": plot_module.load_with_constants(ROOT / "results" / "ridge_illcond_cold"),
        "outer": load_outer(ROOT / "results" / "outer" / "outer_ridge"),
        "train": load_outer(ROOT / "results" / "deq_small"),
        "stochastic": load_stochastic(ROOT / "results" / "stochastic"),
        "bilevel": load_bilevel(ROOT / "results" / "bilevel"),
    }
    assert set(rows) | {"error"} == set(plot_module.KINDS)
    for kind, df in rows.items():
        fig = hgbench.plot(df, tmp_path / kind, kind=kind)
        assert fig.axes and fig.axes[0].has_data(), kind
        canvas.plt.close(fig)
    with pytest.raises(Exception, match="kind='nope' is not one of error"):
        hgbench.plot(rows["cost"], kind="nope")


def test_gallery_shows_every_kind_and_its_images_exist():
    """docs/figures.md: every figure kind, each image committed (scripts/gallery.py draws them)."""
    text = (ROOT / "docs" / "figures.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", text)
    assert images and all((ROOT / "docs" / image).is_file() for image in images)
    assert all(f"--kind {kind}" in text for kind in plot_module.KINDS if kind != "error")
