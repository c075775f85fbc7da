"""``plot_learning_curve``: one run over seeds, or several runs' evals.csv overlaid (MBPO against
SAC). What it drew is read back from the returned figure and compared with the CSVs' numbers,
computed here by hand."""

from __future__ import annotations

import csv
import re

import pytest

from recede.errors import InvalidArgumentError
from recede.plotting import plot_learning_curve, read_evals_csv

PNG = b"\x89PNG\r\n\x1a\n"
HEADER = ["seed", "env_steps", "return_mean", "return_std", "successes", "episodes", "wall_s"]


def write_evals(path, rows, header=HEADER):
    """rows: (seed, env_steps, return_mean), in the layout of write_evals_csv."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for seed, steps, ret in rows:
            full = dict(seed=seed, env_steps=steps, return_mean=repr(ret), return_std="0.0",
                        successes="", episodes=1, wall_s="0.100")
            w.writerow([full[k] for k in header])
    return path


def lines_by_label(fig):
    ax = fig.axes[0]
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


def seed_lines(fig, color):
    """The thin per-seed lines drawn in ``color``, as (x, y) lists."""
    return [(list(line.get_xdata()), list(line.get_ydata())) for line in fig.axes[0].get_lines()
            if line.get_color() == color and line.get_linewidth() < 1]


def test_two_runs_evals_overlaid_with_their_labels(tmp_path):
    # SAC: seeds 0 and 1; seed 1 has one evaluation more (not in the mean, in its own line)
    sac = write_evals(tmp_path / "sac.csv", [(0, 100, -50.5), (1, 100, -70.25), (0, 200, -20.0),
                                             (1, 200, -10.0), (1, 300, -5.0)])
    mbpo = write_evals(tmp_path / "mbpo.csv", [(0, 50, -60.0), (0, 100, -15.125)])
    out = tmp_path / "curve.png"
    fig = plot_learning_curve([("MBPO", str(mbpo)), ("SAC", sac)], out, title="pendulum")
    assert out.read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png", "mbpo.csv", "sac.csv"]

    lines = lines_by_label(fig)
    assert lines["MBPO"] == ([50, 100], [-60.0, -15.125])
    assert lines["SAC (mean over 2 seeds)"] == ([100, 200], [(-50.5 - 70.25) / 2, (-20.0 - 10.0) / 2])
    # each run in its own colour; each seed's whole curve in a thin line of it
    assert seed_lines(fig, "C0") == [([50, 100], [-60.0, -15.125])]
    assert seed_lines(fig, "C1") == [([100, 200], [-50.5, -20.0]), ([100, 200, 300], [-70.25, -10.0, -5.0])]
    # the legend: the runs' means, and SAC's min-max band (MBPO has one seed: no band)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    assert labels == ["MBPO", "SAC: min–max", "SAC (mean over 2 seeds)"]
    band = fig.axes[0].collections[0].get_paths()[0].vertices
    assert {tuple(v) for v in band} >= {(100, -70.25), (100, -50.5), (200, -20.0), (200, -10.0)}
    assert fig.axes[0].get_title() == "pendulum"


def test_one_run_as_before(tmp_path):
    """The form train-policy uses: {seed: [(steps, return), ...]}, labelled by its seeds."""
    curves = {3: [(10, 1.0), (20, 2.0)], 4: [(10, 3.0), (20, 6.0)]}
    fig = plot_learning_curve(curves, tmp_path / "c.svg")
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")
    _, labels = fig.axes[0].get_legend_handles_labels()
    assert labels == ["min–max over 2 seeds", "mean over 2 seeds"]
    assert lines_by_label(fig)["mean over 2 seeds"] == ([10, 20], [2.0, 4.0])


def test_read_evals_csv(tmp_path):
    path = write_evals(tmp_path / "e.csv", [(2, 30, -1.5), (0, 30, 2.25), (2, 60, 0.1)])
    assert read_evals_csv(path) == {2: [(30, -1.5), (60, 0.1)], 0: [(30, 2.25)]}
    no_seed = write_evals(tmp_path / "n.csv", [(0, 5, 1.0), (0, 10, 2.0)],
                          header=["env_steps", "return_mean"])
    assert read_evals_csv(no_seed) == {0: [(5, 1.0), (10, 2.0)]}


def test_refusals_name_the_file_and_the_run(tmp_path):
    png = tmp_path / "c.png"
    with pytest.raises(InvalidArgumentError, match=re.escape(f"{tmp_path / 'nope.csv'}: no such file")):
        plot_learning_curve([("SAC", tmp_path / "nope.csv")], png)
    bad = tmp_path / "bad.csv"
    bad.write_text("seed,steps,return_mean\n0,10,1.0\n")
    with pytest.raises(InvalidArgumentError, match=re.escape(f"{bad}: missing columns ['env_steps']")):
        plot_learning_curve([("SAC", bad)], png)
    bad.write_text("seed,env_steps,return_mean\n0,10,1.0\n0,twenty,2.0\n")
    with pytest.raises(InvalidArgumentError, match=re.escape(f"{bad}: line 3: ")):
        read_evals_csv(bad)
    bad.write_text("seed,env_steps,return_mean\n")
    with pytest.raises(InvalidArgumentError, match=re.escape(f"{bad}: no evaluations")):
        read_evals_csv(bad)
    with pytest.raises(InvalidArgumentError, match=re.escape("curves[1]: the label must be a non-empty string")):
        plot_learning_curve([("MBPO", {0: [(1, 1.0)]}), ("", {0: [(1, 1.0)]})], png)
    with pytest.raises(InvalidArgumentError, match=re.escape("every seed of run 'SAC'")):
        plot_learning_curve([("SAC", {0: []})], png)
    with pytest.raises(InvalidArgumentError, match="non-empty list of"):
        plot_learning_curve([], png)
    assert not png.exists()
