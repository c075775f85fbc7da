"""Sweep reports (recede.sweeps.report) on hand-made results.jsonl files: no planner runs."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest
import scipy.stats

from recede.errors import InvalidArgumentError
from recede.plotting import plot_sweep_vs
from recede.sweeps.report import (choose_x, format_table, load_results, mean_ci95, report, return_curves,
                                  series_vs, summarize, summarize_all, write_csv)

PNG = b"\x89PNG\r\n\x1a\n"
PLANNERS = ("cem", "mppi")
SAMPLES = (10, 20, 80)  # spans 8x: a log2 axis
SEEDS = (0, 1, 2, 3)


def _record(planner, samples, seed, rewards, *, success=True, task="cartpole-swingup", horizon=None, **timing):
    trial = {"command": "run", "task": task, "planner": planner, "options": {"iterations": 4, "samples": samples},
             "seed": seed, "steps": None, "horizon": horizon}
    return {"id": f"{planner}-{samples}-{seed}-{task}-{horizon}", "trial": trial,
            "summary": {"return": float(np.sum(rewards)), "success": success, "steps": len(rewards),
                        "terminated": False},
            "curve": {"rewards": [float(r) for r in rewards]},
            "timing": {"wall_s": timing.get("wall_s", 0.1 + seed), "plan_ms_median": timing.get("plan_ms", 1.0 + seed),
                       "plan_ms_p99": 2.0},
            "version": "0", "git": None}


def _header(grid=None, fixed=None):
    return {"format": "recede.sweep/1", "sweep": "abc", "command": "run",
            "grid": grid or {"planner": list(PLANNERS), "samples": list(SAMPLES)}, "seeds": list(SEEDS),
            "fixed": fixed or {"iterations": 4, "task": "cartpole-swingup"}}


def _grid_records(rng, T=6):
    recs = []
    for p in PLANNERS:
        for s in SAMPLES:
            for seed in SEEDS:
                recs.append(_record(p, s, seed, rng.normal(-1.0, 1.0, T), success=bool(rng.random() < 0.5)))
    return recs


def _write(path, header, records, tail=""):
    with open(path, "w") as f:
        f.write(json.dumps(header) + "\n")
        for r in records:
            f.write(json.dumps(r) + "\n")
        f.write(tail)
    return path


def _oracle(values):
    x = np.asarray(values, dtype=float)
    n = len(x)
    sem = scipy.stats.sem(x)  # std(ddof=1) / sqrt(n)
    low, high = scipy.stats.t.interval(0.95, n - 1, loc=x.mean(), scale=sem)
    return x.mean(), x.std(ddof=1), low, high


def test_mean_ci95_matches_scipy_t_interval():
    rng = np.random.default_rng(1)
    for n in (2, 3, 5, 11):
        x = rng.normal(3.0, 2.0, n)
        n_, mean, std, ci = mean_ci95(x)
        m, s, low, high = _oracle(x)
        assert n_ == n
        assert mean == pytest.approx(m, rel=1e-12)
        assert std == pytest.approx(s, rel=1e-12)
        assert mean - ci == pytest.approx(low, rel=1e-10)
        assert mean + ci == pytest.approx(high, rel=1e-10)
    n_, mean, std, ci = mean_ci95([4.5])
    assert (n_, mean) == (1, 4.5) and math.isnan(std) and math.isnan(ci)
    assert mean_ci95([])[0] == 0 and math.isnan(mean_ci95([])[1])


def test_summarize_groups_by_config_ignoring_seed(tmp_path):
    rng = np.random.default_rng(2)
    recs = _grid_records(rng)
    order = rng.permutation(len(recs))
    shuffled = [recs[i] for i in order]
    path = _write(tmp_path / "results.jsonl", _header(), shuffled)
    header, loaded = load_results(path)
    assert header["sweep"] == "abc" and loaded == shuffled

    sums = summarize(loaded)
    # configs in the order they first appear in the file
    first_seen = []
    for r in shuffled:
        key = (r["trial"]["planner"], r["trial"]["options"]["samples"])
        if key not in first_seen:
            first_seen.append(key)
    assert [(s.varying["planner"], s.varying["samples"]) for s in sums] == first_seen
    assert len(sums) == len(PLANNERS) * len(SAMPLES)
    for s in sums:
        mine = [r for r in recs if (r["trial"]["planner"], r["trial"]["options"]["samples"])
                == (s.varying["planner"], s.varying["samples"])]
        assert s.n == len(SEEDS) and sorted(s.values) == sorted(r["summary"]["return"] for r in mine)
        m, sd, low, high = _oracle([r["summary"]["return"] for r in mine])
        assert s.mean == pytest.approx(m, rel=1e-12) and s.std == pytest.approx(sd, rel=1e-12)
        assert s.ci95_low == pytest.approx(low, rel=1e-10) and s.ci95_high == pytest.approx(high, rel=1e-10)
        assert "seed" not in s.config and s.config["options"] == {"iterations": 4, "samples": s.varying["samples"]}


def test_label_names_only_the_varying_settings():
    rng = np.random.default_rng(3)
    sums = summarize(_grid_records(rng))
    assert sums[0].label == "planner=cem samples=10"
    assert all(set(s.varying) == {"planner", "samples"} for s in sums)
    assert not any("iterations" in s.label or "task" in s.label or "horizon" in s.label for s in sums)
    # one planner only: the planner is fixed, so it leaves the label
    only = summarize([r for r in _grid_records(rng) if r["trial"]["planner"] == "mppi"])
    assert [s.label for s in only] == [f"samples={v}" for v in SAMPLES]
    # a varying trial key (task) is named too
    two = [_record("cem", 10, 0, [1.0], task="a"), _record("cem", 10, 0, [2.0], task="b")]
    assert [s.label for s in summarize(two)] == ["task=a", "task=b"]


def test_other_metrics_and_success_rate():
    recs = [_record("cem", 10, i, [0.0], success=s, plan_ms=p, wall_s=w)
            for i, (s, p, w) in enumerate([(True, 1.0, 3.0), (False, 2.0, 5.0), (None, 4.0, 7.0), (True, 3.0, 9.0)])]
    recs.append(_record("mppi", 10, 0, [0.0], success=None))
    by = summarize_all(recs)
    succ = by["success"][0]
    assert succ.n == 3 and succ.mean == pytest.approx(2 / 3)  # the null one is left out
    assert by["success"][1].n == 0 and math.isnan(by["success"][1].mean)
    assert by["plan_ms_median"][0].mean == pytest.approx(np.mean([1.0, 2.0, 4.0, 3.0]))
    assert by["wall_s"][0].std == pytest.approx(np.std([3.0, 5.0, 7.0, 9.0], ddof=1))
    table = format_table(by)
    assert "2/3 (67%)" in table
    # mppi has one seed: its CI is n/a
    mppi_row = [line for line in table.splitlines() if line.startswith("mppi")][0]
    assert "n/a" in mppi_row
    with pytest.raises(InvalidArgumentError, match=r"metric must be one of \[.*'return'.*\], got 'retrun'"):
        summarize(recs, "retrun")


def test_table_has_varying_columns_and_no_success_column_without_success():
    recs = [_record(p, s, seed, [float(seed)], success=None) for p in PLANNERS for s in SAMPLES for seed in SEEDS]
    table = format_table({m: summarize(recs, m) for m in ("return", "success", "plan_ms_median")})
    head = table.splitlines()[0].split()
    assert head[:3] == ["planner", "samples", "n"]
    assert "success" not in table
    assert len(table.splitlines()) == 2 + len(PLANNERS) * len(SAMPLES)
    # mean of seeds 0..3 is 1.5, CI by t
    _, _, low, high = _oracle([0.0, 1.0, 2.0, 3.0])
    assert f"1.500 ± {(high - low) / 2:.3f}" in table.splitlines()[2]


def test_csv_round_trips_the_summaries(tmp_path):
    rng = np.random.default_rng(4)
    recs = _grid_records(rng)
    recs.append(_record("icem", 10, 0, [1.5]))  # one seed: empty CI cells
    by = summarize_all(recs, ["return", "success", "wall_s"])
    path = write_csv(by, tmp_path / "summary.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(by["return"])
    assert list(rows[0])[:5] == ["label", "planner", "samples", "return_n", "return_mean"]
    for row, i in zip(rows, range(len(rows))):
        s = by["return"][i]
        assert row["label"] == s.label and row["planner"] == s.varying["planner"]
        assert int(row["samples"]) == s.varying["samples"]
        for m in by:
            t = by[m][i]
            assert int(row[f"{m}_n"]) == t.n
            assert float(row[f"{m}_mean"]) == t.mean
            for col, val in (("std", t.std), ("ci95_low", t.ci95_low), ("ci95_high", t.ci95_high)):
                assert (row[f"{m}_{col}"] == "") if math.isnan(val) else float(row[f"{m}_{col}"]) == val
    assert rows[-1]["return_ci95_low"] == "" and float(rows[-1]["return_mean"]) == 1.5
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_cut_short_last_line_is_dropped_and_the_file_left_alone(tmp_path):
    rng = np.random.default_rng(5)
    recs = _grid_records(rng)[:5]
    tail = json.dumps(_record("cem", 99, 0, [1.0]))[:40]  # a write cut short by a kill
    path = _write(tmp_path / "results.jsonl", _header(), recs, tail=tail)
    before = path.read_bytes()
    _, loaded = load_results(path)
    assert loaded == recs
    assert path.read_bytes() == before
    # a directory holding results.jsonl is read the same
    assert load_results(tmp_path)[1] == recs


def test_load_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(InvalidArgumentError, match=rf"results file '{re.escape(str(missing))}' does not exist"):
        load_results(missing)
    other = tmp_path / "other.jsonl"
    other.write_text('{"format": "something/2"}\n')
    with pytest.raises(InvalidArgumentError,
                       match=rf"results file '{re.escape(str(other))}' is not a sweep's results.*recede.sweep/1"):
        load_results(other)
    empty = _write(tmp_path / "empty.jsonl", _header(), [])
    with pytest.raises(InvalidArgumentError, match=rf"results file '{re.escape(str(empty))}' holds no finished trials"):
        load_results(empty)
    only_partial = _write(tmp_path / "partial.jsonl", _header(), [], tail='{"id": "x", "tri')
    with pytest.raises(InvalidArgumentError, match="holds no finished trials"):
        load_results(only_partial)
    bad = _write(tmp_path / "bad.jsonl", _header(), [], tail="{not json\n")
    with pytest.raises(InvalidArgumentError, match=rf"'{re.escape(str(bad))}': line 2 is not JSON"):
        load_results(bad)


def test_bad_x_and_metric_name_the_argument_value_and_choices(tmp_path):
    rng = np.random.default_rng(6)
    path = _write(tmp_path / "results.jsonl", _header(), _grid_records(rng))
    with pytest.raises(InvalidArgumentError, match=r"one of \['samples'\]; got x='horizon', which is not a setting"):
        report(path, tmp_path / "out", x="horizon")
    with pytest.raises(InvalidArgumentError, match=r"one of \['samples'\]; got x='planner', which is not numeric"):
        report(path, tmp_path / "out", x="planner")
    with pytest.raises(InvalidArgumentError, match=r"metric must be one of \[.*\], got 'score'"):
        report(path, tmp_path / "out", metric="score")
    assert not (tmp_path / "out").exists()  # nothing written before the arguments are checked


def test_choose_x_picks_the_numeric_setting_with_most_values():
    recs = [_record("cem", s, 0, [1.0], horizon=h) for s in (10, 20, 40) for h in (5, 10)]
    sums = summarize(recs)
    assert choose_x(sums) == "samples"
    assert choose_x(sums, "horizon") == "horizon"
    assert choose_x(summarize([_record(p, 10, 0, [1.0]) for p in PLANNERS])) is None


def test_report_writes_pngs_and_the_vs_x_lines_are_the_summary_means(tmp_path):
    rng = np.random.default_rng(7)
    recs = _grid_records(rng)
    path = _write(tmp_path / "results.jsonl", _header(), recs)
    out = report(path)  # out_dir defaults to the results file's directory
    assert out["x"] == "samples"
    assert out["csv"] == str(tmp_path / "summary.csv")
    assert [p.rsplit("/", 1)[1] for p in out["plots"]] == ["return-bars.png", "return-curves.png",
                                                           "return-vs-samples.png"]
    for p in out["plots"]:
        with open(p, "rb") as f:
            assert f.read(8) == PNG
    assert out["table"] == format_table({m: summarize(recs, m) for m in ("return", "success", "plan_ms_median")})

    sums = summarize(recs)
    series = series_vs(sums, "samples")
    fig = plot_sweep_vs(series, tmp_path / "vs.png", xlabel="samples")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == [f"planner={p}" for p in PLANNERS]
    for p, ln in zip(PLANNERS, lines):
        expect = {s.varying["samples"]: s.mean for s in sums if s.varying["planner"] == p}
        assert list(ln.get_xdata()) == sorted(expect)
        np.testing.assert_array_equal(ln.get_ydata(), [expect[v] for v in sorted(expect)])
    # values spanning less than 4x: a linear axis
    fig = plot_sweep_vs(series_vs(summarize([r for r in recs if r["trial"]["options"]["samples"] != 80]), "samples"),
                        tmp_path / "lin.png", xlabel="samples")
    assert fig.axes[0].get_xscale() == "linear"


def test_report_without_a_numeric_setting_skips_the_vs_plot(tmp_path):
    recs = [_record(p, 10, seed, [1.0, float(seed)]) for p in PLANNERS for seed in SEEDS]
    path = _write(tmp_path / "results.jsonl", _header(grid={"planner": list(PLANNERS)}), recs)
    out = report(path, tmp_path / "rep")
    assert out["x"] is None
    assert [p.rsplit("/", 1)[1] for p in out["plots"]] == ["return-bars.png", "return-curves.png"]
    with pytest.raises(InvalidArgumentError, match=r"one of \[\]; got x='samples'"):
        report(path, tmp_path / "rep", x="samples")


def test_return_curves_are_mean_cumulative_returns_with_t_band():
    rng = np.random.default_rng(8)
    recs = _grid_records(rng, T=7)
    curves = return_curves(recs)
    sums = summarize(recs)
    assert [c.label for c in curves] == [s.label for s in sums]
    for c, s in zip(curves, sums):
        mine = [r for r in recs if r["trial"]["planner"] == s.varying["planner"]
                and r["trial"]["options"]["samples"] == s.varying["samples"]]
        C = np.cumsum([r["curve"]["rewards"] for r in mine], axis=1)
        np.testing.assert_allclose(c.mean, C.mean(axis=0), rtol=1e-12)
        assert c.mean[-1] == pytest.approx(s.mean, rel=1e-12)  # the curve ends at the mean return
        _, _, low, high = _oracle(C[:, 3])
        assert c.mean[3] - c.ci95[3] == pytest.approx(low, rel=1e-10)
        np.testing.assert_array_equal(c.x, np.arange(1, 8))
    # an episode that ended early keeps its final return
    short = return_curves([_record("cem", 10, 0, [1.0, 1.0, 1.0]), _record("cem", 10, 1, [2.0])])
    np.testing.assert_allclose(short[0].mean, [1.5, 2.0, 2.5])


def test_records_appended_out_of_order_come_back_in_the_sweeps_order(tmp_path):
    from recede.sweeps import SweepSpec
    from recede.sweeps import store

    sweep = SweepSpec.make("run", {"planner": ["mppi", "cem"], "samples": [50, 10]}, [0, 1],
                           {"task": "pendulum-swingup"})
    path = str(tmp_path / "results.jsonl")
    store.load(path, sweep)
    trials = sweep.trials()
    for i in [5, 0, 7, 2, 1, 6, 3, 4]:  # as a pool might finish them
        t = trials[i]
        store.append(path, {"id": t.id, "trial": t.as_dict(), "summary": {"return": float(i), "success": None},
                            "curve": {"rewards": []}, "timing": {"wall_s": 1.0}})
    _, records = load_results(path)
    assert [r["id"] for r in records] == [t.id for t in trials]
    labels = [s.label for s in summarize(records)]
    assert labels == ["planner=mppi samples=50", "planner=mppi samples=10", "planner=cem samples=50",
                      "planner=cem samples=10"]
