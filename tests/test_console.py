"""A quiet console: a sweep prints one progress bar at a time and one final table (each job's
table with verbose=true); CSVs are announced as tables, not figures; reproduce prints the short
verdict table and where the evidence is."""

from pathlib import Path

from tests.conftest import run_cli

SMALL = ["problem=ridge", "problem.n_features=4", "problem.n_train=20", "problem.n_val=20", "n_lambdas=2", "grid.t=[0,5]"]
HEADER = "median relative error over"


def test_a_sweep_prints_one_table_and_verbose_prints_each_jobs(tmp_path, monkeypatch, capsys):
    assert run_cli(monkeypatch, "run", "-m", *SMALL, "estimator=fp,cg", "plot=false", f"hydra.sweep.dir={tmp_path / 'quiet'}") == 0
    quiet = capsys.readouterr()
    assert quiet.out.count(HEADER) == 1 and quiet.out.count("results: ") == 1  # the combined table, not each job's
    assert "[HYDRA]" not in quiet.out + quiet.err  # no "Launching 2 jobs", no line per job
    # the rows also as typed Parquet beside each CSV, the sweep's combined one included
    assert len(list((tmp_path / "quiet").rglob("metrics.parquet"))) == len(list((tmp_path / "quiet").rglob("metrics.csv"))) == 3
    assert (
        run_cli(
            monkeypatch, "run", "-m", *SMALL, "estimator=fp,cg", "plot=false", "verbose=true", f"hydra.sweep.dir={tmp_path / 'verbose'}"
        )
        == 0
    )
    assert capsys.readouterr().out.count(HEADER) == 3  # each job's, then the combined one
    # CSV and Markdown files are announced as tables, not as figures
    assert run_cli(monkeypatch, "plot", tmp_path / "quiet", "--theory") == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"table: {tmp_path / 'quiet' / 'rates.csv'}" in lines and f"figure: {tmp_path / 'quiet' / 'error_vs_iterations.png'}" in lines
    assert not any(line.startswith("figure:") and not line.endswith((".png", ".pdf")) for line in lines)


def test_reproduce_prints_the_short_verdict_table():
    """One line per verdict of the committed claims.md, each cell short; none of its evidence."""
    from hgbench.running.reproduce import short_verdicts

    claims = Path(__file__).resolve().parent.parent / "results" / "claims.md"
    rows = [line for line in claims.read_text().splitlines() if line.startswith("| ") and line[2:3].isupper() and line[3:4].isdigit()]
    table = short_verdicts(claims).splitlines()
    assert len(table) == len(rows) + 1 and table[0].split() == ["id", "verdict", "preset", "statement"]
    assert all(len(line) <= 110 for line in table)
    assert table[1].split()[:3] == [rows[0].split("|")[1].strip(), rows[0].split("|")[-2].strip(), rows[0].split("|")[4].strip()]
