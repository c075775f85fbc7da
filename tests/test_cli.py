"""The ``recede`` command line: run/tasks/planners, JSON and PNG outputs, and bad arguments."""

from __future__ import annotations

import enum
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from recede.cli import build_parser, main
from recede.envs import get_task, list_tasks
from recede.planners.registry import PLANNERS, planner_options
from recede.problem import Problem

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Small and short, so every closed-loop run here takes well under a second once compiled.
FAST = ["--steps", "5", "--horizon", "8", "--samples", "16", "--iterations", "2", "--no-progress"]
SUMMARY_KEYS = {"task", "planner", "seed", "steps", "return", "success", "plan_ms_median",
                "plan_ms_p99", "options", "horizon", "log"}


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, tmp_path, *argv, name="run.json"):
    path = tmp_path / name
    code, out, err = run_cli(capsys, "run", *argv, "--json", str(path))
    assert code == 0, err
    return json.loads(path.read_text()), out


@pytest.mark.parametrize("task,planner", [("double-integrator", "random"), ("pendulum-swingup", "cem")])
def test_run_writes_json_and_plot(capsys, tmp_path, task, planner):
    json_path, png_path = tmp_path / "out.json", tmp_path / "out.png"
    code, out, err = run_cli(capsys, "run", task, "--planner", planner, *FAST, "--seed", "3",
                             "--json", str(json_path), "--plot", str(png_path))
    assert code == 0, err
    assert "Traceback" not in err

    record = json.loads(json_path.read_text())
    assert SUMMARY_KEYS <= set(record)
    assert record["task"] == task and record["planner"] == planner
    assert record["seed"] == 3 and record["horizon"] == 8
    assert record["options"]["samples"] == 16 and record["options"]["iterations"] == 2
    assert set(record["options"]) == set(planner_options(planner))
    log = record["log"]
    assert record["steps"] == 5 == len(log["actions"]) == len(log["rewards"]) == len(log["plan_ms"])
    assert len(log["states"]) == record["steps"] + 1
    assert record["return"] == pytest.approx(sum(log["rewards"]), rel=1e-12, abs=1e-12)
    assert record["success"] is None  # stopped before the end of the episode: not evaluated
    assert record["plan_ms_p99"] >= record["plan_ms_median"] > 0

    assert png_path.read_bytes()[:8] == PNG_SIGNATURE
    assert sorted(os.listdir(tmp_path)) == ["out.json", "out.png"]  # no temporary files left

    # the human summary on stdout
    lines = dict(line.split(None, 1) for line in out.splitlines() if not line.startswith("plan time"))
    assert lines["task"] == task and lines["seed"] == "3" and lines["steps"] == "5"
    assert lines["planner"].startswith(planner)
    assert float(lines["return"]) == pytest.approx(record["return"], abs=1e-4)
    assert lines["success"].startswith("n/a")
    assert "median" in out and "p99" in out and " ms" in out


def test_run_without_outputs_prints_summary(capsys):
    code, out, err = run_cli(capsys, "run", "double-integrator", "--planner", "cem", *FAST)
    assert code == 0, err
    assert out.splitlines()[0].split() == ["task", "double-integrator"]
    assert err == ""  # --no-progress


def test_progress_bar_goes_to_stderr(capsys):
    args = [a for a in FAST if a != "--no-progress"]
    code, out, err = run_cli(capsys, "run", "double-integrator", "--planner", "random", *args)
    assert code == 0
    assert "5/5" in err and "5/5" not in out


def test_full_episode_reports_success(capsys, tmp_path):
    task = get_task("double-integrator")
    record, out = run_json(capsys, tmp_path, "double-integrator", "--planner", "random",
                           "--steps", str(task.episode_steps + 50), "--horizon", "5",
                           "--samples", "8", "--no-progress")
    assert record["steps"] == task.episode_steps  # the episode truncates at its length
    assert isinstance(record["success"], bool)
    success_line = next(line for line in out.splitlines() if line.startswith("success"))
    assert success_line.split()[1] in ("yes", "no")


def test_planner_options_default_to_the_task_then_flags(capsys, tmp_path):
    task = get_task("double-integrator")
    base = ["double-integrator", "--planner", "cem", "--steps", "1", "--horizon", "3", "--no-progress"]
    record, _ = run_json(capsys, tmp_path, *base)
    expected = {**planner_options("cem"), **task.planner_defaults.get("cem", {})}
    assert record["options"] == pytest.approx(expected)
    assert record["horizon"] == 3

    record, _ = run_json(capsys, tmp_path, *base, "--samples", "7", "--elite-fraction", "0.5")
    assert record["options"] == pytest.approx({**expected, "samples": 7, "elite_fraction": 0.5})


def test_default_horizon_is_the_tasks(capsys, tmp_path):
    record, _ = run_json(capsys, tmp_path, "double-integrator", "--planner", "random",
                         "--steps", "1", "--samples", "4", "--no-progress")
    assert record["horizon"] == get_task("double-integrator").horizon
    # a planner with its own default horizon on this task gets it
    task = get_task("pendulum-swingup")
    assert task.planner_horizons["mppi"] != task.horizon
    record, _ = run_json(capsys, tmp_path, "pendulum-swingup", "--planner", "mppi",
                         "--steps", "1", "--samples", "4", "--no-progress")
    assert record["horizon"] == task.horizon_for("mppi") == task.planner_horizons["mppi"]


def test_same_seed_same_run(capsys, tmp_path):
    args = ["pendulum-swingup", "--planner", "cem", *FAST, "--replan-every", "2"]
    a, _ = run_json(capsys, tmp_path, *args, "--seed", "7", name="a.json")
    b, _ = run_json(capsys, tmp_path, *args, "--seed", "7", name="b.json")
    c, _ = run_json(capsys, tmp_path, *args, "--seed", "8", name="c.json")
    assert a["log"]["actions"] == b["log"]["actions"]
    assert a["log"]["states"] == b["log"]["states"]
    assert a["log"]["states"][0] != c["log"]["states"][0]  # the seed also draws the initial state
    # replanning every 2 steps: the steps in between apply the stored plan (no planning time)
    assert [t is None for t in a["log"]["plan_ms"]] == [False, True, False, True, False]


def test_tasks_lists_every_task(capsys):
    code, out, err = run_cli(capsys, "tasks")
    assert code == 0 and err == ""
    for name in list_tasks():
        task = get_task(name)
        d = task.dynamics()
        assert name in out and task.gym_id in out and task.description in out
        assert task.describe_success(d.state_names) in out
    assert "episode: " in out and "horizon" in out


def test_planners_lists_every_planner_and_option(capsys):
    code, out, err = run_cli(capsys, "planners")
    assert code == 0 and err == ""
    for name in PLANNERS:
        assert any(line.startswith(name + " ") for line in out.splitlines())
        for option, default in planner_options(name).items():
            shown = repr(default.value if isinstance(default, enum.Enum) else default)
            assert any(option in line and shown in line for line in out.splitlines())


def test_planners_listing_is_plain_text(capsys):
    code, out, err = run_cli(capsys, "planners")
    assert code == 0 and err == ""
    assert "`" not in out and ":class:" not in out  # no reST markup
    assert not re.search(r"<\w+\.\w+: ", out)  # no enum reprs such as <Mode.DDP: 'ddp'>
    modes = [line.split("=", 1)[1].strip() for line in out.splitlines() if line.split()[:1] == ["mode"]]
    assert modes == ["'ddp'  (one of 'ilqr', 'ddp')", "'ilqr'  (one of 'ilqr', 'ddp')"]  # ddp, ilqr
    heads = [line for line in out.splitlines() if line.split(None, 1)[:1] and line.split()[0] in PLANNERS]
    assert len(heads) == len(PLANNERS)
    assert all(line.endswith(".") for line in heads)  # whole first sentences, none cut mid-way
    assert "recede tasks" in out.split("\n\n")[0]  # says where the tasks' own defaults are


def test_every_planner_the_tasks_listing_advertises_builds(capsys):
    """`recede tasks` lists a planner's defaults for a task exactly when that planner can be
    built on the task's problem with them (what `recede run` does first)."""
    from recede.errors import InvalidArgumentError
    from recede.planners.registry import make_planner

    code, out, err = run_cli(capsys, "tasks")
    assert code == 0 and err == ""
    blocks = {block.splitlines()[0].split()[0]: block for block in out.strip().split("\n\n")}
    refused = set()
    for name in list_tasks():
        task = get_task(name)
        d = task.dynamics()
        cost = task.cost(d)
        for planner, options in task.planner_defaults.items():
            advertised = f"\n  {planner} defaults: " in blocks[name]
            try:
                make_planner(planner, Problem(d, cost, task.horizon_for(planner)), **options)
                builds = True
            except InvalidArgumentError:
                builds = False
                refused.add((name, planner))
            assert advertised == builds, (name, planner)
            if not builds:
                assert planner in blocks[name] and "cannot plan this task" in blocks[name]
    # the robots whose rewards read MuJoCo sensors: iLQR and DDP cannot differentiate them
    assert {(t, p) for t in ("reacher", "ant", "humanoid") for p in ("ilqr", "ddp")} <= refused


def test_gradient_planner_on_a_sensor_cost_says_why(capsys):
    code, out, err = run_cli(capsys, "run", "reacher", "--planner", "ilqr", "--steps", "1",
                             "--no-progress")
    assert code == 2 and out == ""
    assert err.startswith("recede: error: iLQR/DDP need the cost's derivatives")
    assert "reads sensor data" in err and "sampling planner" in err and err.count("\n") == 1


@pytest.mark.parametrize("planner, flags, expected", [
    ("icem", ["--beta", "1.5", "--option", "execute=mean", "--option", "decay=1.1"],
     {"beta": 1.5, "execute": "mean", "decay": 1.1}),
    ("mppi", ["--temperature", "0.2", "--noise-std", "0.3", "--option", "filter_window=3"],
     {"temperature": 0.2, "noise_std": 0.3, "filter_window": 3}),
])
def test_new_planners_and_their_options(capsys, tmp_path, planner, flags, expected):
    record, out = run_json(capsys, tmp_path, "pendulum-swingup", "--planner", planner, *FAST, *flags)
    for key, value in expected.items():
        assert record["options"][key] == value
    assert set(record["options"]) == set(planner_options(planner))
    assert record["steps"] == 5 and all(t is not None for t in record["log"]["plan_ms"])


def test_deadline_makes_anytime_plans(capsys, tmp_path):
    # 1000 iterations could never finish in 5 ms: every plan stops at its deadline
    record, out = run_json(capsys, tmp_path, "pendulum-swingup", "--planner", "cem", "--steps", "3",
                           "--samples", "50", "--iterations", "1000", "--deadline-ms", "5",
                           "--no-progress")
    assert record["deadline_ms"] == 5
    assert record["plan_status"] == ["deadline"] * 3
    assert "deadline" in out and "3 of 3 plans" in out


def test_compare_prints_a_table_and_draws_a_chart(capsys, tmp_path):
    png, js = tmp_path / "bars.png", tmp_path / "cmp.json"
    code, out, err = run_cli(capsys, "compare", "pendulum-swingup", "--planners", "cem,icem,mppi",
                             "--seeds", "0..1", "--steps", "4", "--horizon", "6",
                             "--option", "cem.samples=20", "--option", "icem.samples=20",
                             "--option", "mppi.samples=20", "--plot", str(png), "--json", str(js),
                             "--no-progress")
    assert code == 0, err
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    record = json.loads(js.read_text())
    assert [r["planner"] for r in record["table"]] == ["cem", "icem", "mppi"]
    for row in record["table"]:
        runs = record["runs"][row["planner"]]
        assert [r["seed"] for r in runs] == [0, 1]
        assert row["return_mean"] == pytest.approx(sum(r["return"] for r in runs) / 2)
        assert row["runs"] == 2 and row["success_rate"] is None  # 4 steps: not judged
    # each planner ran on the same seeds: the same initial states, so cem run alone agrees
    solo = tmp_path / "solo.json"
    code, _, err = run_cli(capsys, "run", "pendulum-swingup", "--planner", "cem", "--seed", "1",
                           "--steps", "4", "--horizon", "6", "--samples", "20", "--no-progress",
                           "--json", str(solo))
    assert code == 0, err
    assert json.loads(solo.read_text())["return"] == pytest.approx(record["runs"]["cem"][1]["return"])
    header = next(line for line in out.splitlines() if line.startswith("planner"))
    assert "success" in header and "plan ms median" in header and "plan ms p99" in header
    assert [r["horizon"] for r in record["table"]] == [6, 6, 6] and record["horizons"]["mppi"] == 6
    assert sum(line.split()[0] in ("cem", "icem", "mppi") for line in out.splitlines()) == 3
    assert sorted(os.listdir(tmp_path)) == ["bars.png", "cmp.json", "solo.json"]


def test_help_exits_zero(capsys):
    code, out, _ = run_cli(capsys, "run", "--help")
    assert code == 0 and "--planner" in out
    beta = " ".join(out.split("  --beta BETA  ", 1)[1].split("--option")[0].split())
    assert "icem" in beta and "mppi" in beta  # both sample coloured noise (see 'recede planners')
    assert "beta" in planner_options("icem") and "beta" in planner_options("mppi")


def test_bare_command_prints_the_usage_and_the_commands(capsys):
    code, out, err = run_cli(capsys)
    assert code == 2 and out == ""
    assert err.startswith("usage: recede")
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in commands.items():
        assert re.search(rf"^ +{re.escape(name)}\b", err, re.M), name


KNOWN_TASKS = ", ".join(list_tasks()) + " (or their Gymnasium ids)"
KNOWN_PLANNERS = ", ".join(sorted(PLANNERS))
RUN = ["run", "double-integrator", "--planner"]


@pytest.mark.parametrize("argv,message", [
    (["run", "nope", "--planner", "cem"], f"unknown task 'nope'; known tasks: {KNOWN_TASKS}"),
    (RUN + ["nope"], f"unknown planner 'nope'; known planners: {KNOWN_PLANNERS}"),
    (RUN + ["cem", "--steps", "0"], "steps must be an integer >= 1, got 0"),
    (RUN + ["cem", "--steps", "-4"], "steps must be an integer >= 1, got -4"),
    (RUN + ["cem", "--samples", "0"], "samples must be an integer >= 1, got 0"),
    (RUN + ["random", "--samples", "-1"], "samples must be an integer >= 1, got -1"),
    (RUN + ["cem", "--iterations", "0"], "iterations must be an integer >= 1, got 0"),
    (RUN + ["cem", "--elite-fraction", "0"], "elite_fraction must be in (0, 1], got 0.0"),
    (RUN + ["cem", "--elite-fraction", "1.5"], "elite_fraction must be in (0, 1], got 1.5"),
    (RUN + ["cem", "--elite-fraction", "-0.1"], "elite_fraction must be in (0, 1], got -0.1"),
    (RUN + ["cem", "--horizon", "0"], "horizon must be >= 1, got 0"),
    (RUN + ["cem", "--replan-every", "0"], "replan_every must be an integer >= 1, got 0"),
    (RUN + ["random", "--elite-fraction", "0.2"],
     "planner 'random' has no option 'elite_fraction'; its options: samples, iterations"),
    (RUN + ["cem", "--seed", "-1"], "argument --seed: must be an integer >= 0, got -1"),
    (RUN + ["cem", "--steps", "abc"], "argument --steps: invalid int value: 'abc'"),
    (["run"], "the following arguments are required: TASK"),
    (["bogus"], "argument COMMAND: invalid choice: 'bogus' (choose from 'run', 'compare', 'collect', "
                "'train-model', 'pets', 'train-policy', 'mbpo', 'fit-value', 'imitate', 'gps', 'sweep', 'sweep-report', 'tasks', 'planners')"),
    (RUN + ["mppi", "--temperature", "0"], "temperature must be a finite number > 0, got 0.0"),
    (RUN + ["icem", "--beta", "-2"], "beta must be a finite number >= 0, got -2.0"),
    (RUN + ["cem", "--beta", "2"], "planner 'cem' has no option 'beta'; its options: samples, "
                                   "iterations, elite_fraction, init_std, min_std, smoothing, "
                                   "proposal_share, proposal_std"),
    (RUN + ["icem", "--option", "execute"], "argument --option: expected NAME=VALUE, got 'execute'"),
    (RUN + ["icem", "--option", "execute=median"],
     "execute must be one of ['best', 'mean'], got 'median'"),
    (RUN + ["cem", "--option", "colour=2"], "planner 'cem' has no option 'colour'; its options: "
                                           "samples, iterations, elite_fraction, init_std, min_std, "
                                           "smoothing, proposal_share, proposal_std"),
    (RUN + ["cem", "--deadline-ms", "0"], "argument --deadline-ms: must be a number > 0, got 0"),
    (["compare", "double-integrator", "--planners", "cem,nope"],
     f"unknown planner 'nope'; known planners: {KNOWN_PLANNERS}"),
    (["compare", "double-integrator", "--seeds", "4..x"],
     "argument --seeds: must be A..B or a comma list of integers, got '4..x'"),
    (["compare", "double-integrator", "--seeds", "3..1"],
     "argument --seeds: must name at least one seed, all >= 0, got '3..1'"),
    (["compare", "double-integrator", "--planners", "cem", "--option", "mppi.temperature=1"],
     "argument --option: planner 'mppi' is not among --planners (cem)"),
    (["compare", "double-integrator", "--planners", "cem", "--option", "cem.samples=0"],
     "samples must be an integer >= 1, got 0"),
    (["compare", "double-integrator", "--plot", "chart.jpg"],
     "argument --plot: the path must end in .png, .pdf or .svg, got 'chart.jpg'"),
    (RUN + ["random", "--plot", "run.jpg"],
     "argument --plot: the path must end in .png, .pdf or .svg, got 'run.jpg'"),
    (RUN + ["random", "--plot", "run"], "argument --plot: the path must end in .png, .pdf or .svg, got 'run'"),
    (["pets", "double-integrator", "--plot", "curve.gif"],
     "argument --plot: the path must end in .png, .pdf or .svg, got 'curve.gif'"),
    (["train-model", "no-such-data.npz", "--out", "m"], "argument DATA: no such file: 'no-such-data.npz'"),
    (RUN + ["mppi", "--option", "covariance=abc"],
     "argument --option: covariance=abc: could not convert string to float: 'abc'"),
    (["compare", "double-integrator", "--planners", "cem,mppi", "--option", "mppi.covariance=abc"],
     "argument --option: mppi.covariance=abc: could not convert string to float: 'abc'"),
])
def test_bad_arguments(capsys, tmp_path, argv, message):
    json_path = tmp_path / "out.json"
    code, out, err = run_cli(capsys, *argv, *(["--json", str(json_path)] if argv[:1] == ["run"] else []))
    assert code == 2
    assert err == f"recede: error: {message}\n"
    assert out == ""
    assert os.listdir(tmp_path) == []  # neither the JSON file nor a temporary file


@pytest.mark.parametrize("flag", ["--json", "--plot"])
def test_unwritable_output_path(capsys, tmp_path, flag):
    name = "out.png" if flag == "--plot" else "out.file"  # a plot's extension names its format
    missing = tmp_path / "no-such-dir" / name
    code, out, err = run_cli(capsys, *RUN, "random", *FAST, flag, str(missing))
    assert code == 2 and out == ""
    assert err == f"recede: error: argument {flag}: cannot write {str(missing)!r}: No such file or directory\n"

    directory = tmp_path / "dir.png"
    directory.mkdir()
    code, out, err = run_cli(capsys, *RUN, "random", *FAST, flag, str(directory))
    assert code == 2 and out == ""
    assert err == f"recede: error: argument {flag}: cannot write {str(directory)!r}: it is a directory\n"
    assert os.listdir(tmp_path) == ["dir.png"] and os.listdir(directory) == []


def test_failure_during_run_leaves_no_partial_outputs(capsys, tmp_path, monkeypatch):
    import recede.experiments.episode
    from recede.errors import PlanningError

    def fail(*args, **kwargs):
        raise PlanningError("every candidate diverged")

    monkeypatch.setattr(recede.experiments.episode, "run_closed_loop", fail)
    code, out, err = run_cli(capsys, *RUN, "random", *FAST, "--json", str(tmp_path / "a.json"),
                             "--plot", str(tmp_path / "a.png"))
    assert code == 1
    assert err == "recede: error: every candidate diverged\n" and out == ""
    assert os.listdir(tmp_path) == []


def test_existing_json_is_replaced_whole(capsys, tmp_path):
    path = tmp_path / "run.json"
    path.write_text("old contents")
    code, _, err = run_cli(capsys, *RUN, "random", *FAST, "--json", str(path))
    assert code == 0, err
    assert json.loads(path.read_text())["task"] == "double-integrator"
    # a failing run leaves the previous file untouched
    code, _, _ = run_cli(capsys, *RUN, "random", *FAST, "--samples", "0", "--json", str(path))
    assert code == 2
    assert json.loads(path.read_text())["task"] == "double-integrator"
    assert os.listdir(tmp_path) == ["run.json"]


def _console_script() -> list[str]:
    exe = shutil.which("recede")
    if exe is None:
        pytest.skip("the recede console script is not installed (pip install -e .)")
    return [exe]


def test_console_script_tasks():
    res = subprocess.run(_console_script() + ["tasks"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for name in list_tasks():
        assert get_task(name).gym_id in res.stdout


def test_console_script_bad_argument_is_one_line():
    res = subprocess.run(_console_script() + ["run", "nope", "--planner", "cem"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr == f"recede: error: unknown task 'nope'; known tasks: {KNOWN_TASKS}\n"
    assert res.stdout == ""


def test_python_dash_m():
    res = subprocess.run([sys.executable, "-m", "recede", "planners"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert all(name in res.stdout for name in PLANNERS)


@pytest.mark.parametrize("planner", ["ilqr", "ddp", "lqr"])
def test_run_gradient_planners(capsys, tmp_path, planner):
    task = get_task("double-integrator")
    record, out = run_json(capsys, tmp_path, "double-integrator", "--planner", planner,
                           "--steps", str(task.episode_steps), "--no-progress")
    assert record["planner"] == planner and record["success"] is True
    if planner != "lqr":
        assert record["options"]["mode"] == ("ddp" if planner == "ddp" else "ilqr")
    code, out, err = run_cli(capsys, "run", "double-integrator", "--planner", "ilqr", "--steps", "2",
                             "--option", "mode=newton", "--no-progress")
    assert code != 0 and "mode must be one of" in err


def test_run_mcts_with_its_options(capsys, tmp_path):
    """--planner mcts with discrete primitives through --option; the JSON keeps the options."""
    record, out = run_json(capsys, tmp_path, "double-integrator", "--planner", "mcts", "--steps", "6",
                           "--option", "levels=5", "--option", "simulations=300",
                           "--option", "backup=best", "--no-progress")
    assert record["planner"] == "mcts"
    assert record["options"]["levels"] == 5 and record["options"]["backup"] == "best"
    assert record["steps"] == 6 and set(record["plan_samples"]) == {300}
    code, out, err = run_cli(capsys, "run", "double-integrator", "--planner", "mcts", "--steps", "2",
                             "--option", "widening_alpha=1.5", "--no-progress")
    assert code != 0 and "widening_alpha must be in (0, 1), got 1.5" in err
    code, out, err = run_cli(capsys, "run", "double-integrator", "--planner", "mcts", "--steps", "2",
                             "--option", "actions=[]", "--no-progress")
    assert code != 0 and "actions must be a non-empty sequence" in err


MAGIC = {"png": PNG_SIGNATURE, "pdf": b"%PDF-", "svg": b"<?xml"}


@pytest.mark.parametrize("ext", ["png", "pdf", "svg"])
def test_plots_are_written_in_the_format_their_extension_names(capsys, tmp_path, ext):
    run_plot, bars = tmp_path / f"run.{ext.upper() if ext == 'pdf' else ext}", tmp_path / f"bars.{ext}"
    code, _, err = run_cli(capsys, *RUN, "random", *FAST, "--plot", str(run_plot))
    assert code == 0, err
    code, _, err = run_cli(capsys, "compare", "double-integrator", "--planners", "random", "--seeds", "0",
                           "--steps", "2", "--horizon", "4", "--option", "random.samples=8",
                           "--plot", str(bars), "--no-progress")
    assert code == 0, err
    for path in (run_plot, bars):
        data = path.read_bytes()
        assert data.startswith(MAGIC[ext]), (path, data[:16])
        if ext == "svg":
            assert b"<svg" in data[:1000]
    assert sorted(os.listdir(tmp_path)) == sorted([run_plot.name, bars.name])  # no temporary files


def test_run_plot_names_units_and_draws_the_success_band(capsys, tmp_path, monkeypatch):
    import matplotlib
    from matplotlib.axes import Axes

    monkeypatch.setitem(matplotlib.rcParams, "svg.fonttype", "none")  # labels as <text>, searchable
    bands = []
    fill_between = Axes.fill_between

    def spy(self, x, y1, y2=0, **kwargs):
        bands.append((self, list(x), y1, y2))
        return fill_between(self, x, y1, y2, **kwargs)

    monkeypatch.setattr(Axes, "fill_between", spy)
    task = get_task("pendulum-swingup")
    path = tmp_path / "run.svg"
    record, _ = run_json(capsys, tmp_path, "pendulum-swingup", "--planner", "random", "--samples", "8",
                         "--horizon", "4", "--no-progress", "--plot", str(path))
    assert record["steps"] == task.episode_steps  # the whole episode: its final window is judged
    svg = path.read_text()
    for label in ("theta [rad]", "theta_dot [rad/s]", "torque [N m]", "time [s]", "success band"):
        assert label in svg, label
    # the band of the task's hold criterion: |theta - 0| <= tol (wrapped) over the final hold_time
    crit, dt = task.success, task.dynamics().dt
    (axes, x, low, high), = bands  # one judged state
    assert axes.get_ylabel() == "theta [rad]"
    assert x[0] == pytest.approx((task.episode_steps - crit.hold_steps(dt)) * dt)
    assert x[1] == pytest.approx(task.episode_steps * dt)
    centre, final = 0.5 * (low + high), record["log"]["states"][-1][0]
    assert high - low == pytest.approx(2 * crit.tolerances[0])
    assert centre / (2 * np.pi) == pytest.approx(round(centre / (2 * np.pi)), abs=1e-12)  # 0 + 2 pi k
    assert abs(centre - final) <= np.pi  # the copy of the target nearest the final angle


def test_diverged_line_only_when_a_rollout_diverged(capsys, monkeypatch):
    import recede.experiments

    argv = ["run", "cartpole-swingup-mj", "--planner", "random", "--steps", "2", "--horizon", "4",
            "--samples", "8", "--no-progress"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "diverged" not in out  # the model counted no diverged rollout
    run_episode = recede.experiments.run_episode

    def diverging(*args, **kwargs):  # the same run, with the model reporting 3 diverged rollouts
        episode = run_episode(*args, **kwargs)
        episode.problem.dynamics.diverged_total = 3
        return episode

    monkeypatch.setattr(recede.experiments, "run_episode", diverging)
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("diverged"))
    assert line.split()[1:3] == ["3", "of"]
