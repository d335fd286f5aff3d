"""Figures read well: a distinct style per estimator, a legend outside the axes, titles inside
the figure, and never one curve from rows of different configurations."""

import pandas as pd

import hgbench.analysis.plot as plot_module

RUNS = {  # run_id -> (overrides, the error of its rows)
    "run_f64": ("estimator=fp dtype=float64 batch_lambdas=false", 1e-12),
    "run_f32": ("estimator=fp dtype=float32 batch_lambdas=false", 1e-6),
    "run_batch": ("estimator=fp dtype=float64 batch_lambdas=true", 1e-9),
}


def _rows(run: str, overrides: str, err: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "problem": "ridge",
            "estimator": "fp",
            "grid": "diag",
            "lam_id": [0, 1, 0, 1],
            "t": [0, 0, 10, 10],
            "k": [0, 0, 10, 10],
            "err_rel": [1.0, 1.0, err, err],
            "status": "ok",
            "run_id": run,
            "overrides": overrides,
        }
    )


def test_dtype_and_batch_runs_are_separate_curves_and_legend_entries(tmp_path, figures):
    df = pd.concat([_rows(run, *facts) for run, facts in RUNS.items()], ignore_index=True)
    plot_module.plot_errors(df, tmp_path)
    (fig,) = figures
    expected = {
        "fp, batch_lambdas=false, dtype=float64": 1e-12,
        "fp, batch_lambdas=false, dtype=float32": 1e-6,
        "fp, batch_lambdas=true, dtype=float64": 1e-9,
    }
    entries = [text.get_text() for text in fig.legends[0].get_texts()]
    assert [e for e in entries if not e.startswith("round-off")] == sorted(expected)
    curves = {line.get_label(): list(line.get_ydata()) for line in fig.axes[0].get_lines()}
    assert curves == {label: [1.0, err] for label, err in expected.items()}  # each curve its own run's rows


def test_legend_outside_the_axes_and_title_inside_the_figure(tmp_path, figures):
    names = [f"estimator_{i}" for i in range(18)]
    df = pd.concat([_rows(f"run{i}", "", 10.0**-i).assign(estimator=name) for i, name in enumerate(names)], ignore_index=True)
    plot_module.plot_errors(df, tmp_path)
    (fig,) = figures
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    title = fig._suptitle.get_window_extent(renderer)
    assert len([t for t in fig.legends[0].get_texts() if t.get_text().startswith("estimator_")]) == 18
    assert all(ax.get_window_extent(renderer).x1 <= legend.x0 for ax in fig.axes)
    assert not title.overlaps(legend)
    inside = fig.bbox
    for box in (legend, title):
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
