"""``recede mbpo``: its files against :func:`recede.policy_learning.dyna.dyna` run directly with the
same config, resume and --force, the curve with --compare read back from the figure, offline
runs from a D4RL-style file, and bad input refused (exit 2, naming the argument) before
anything is written. Runs are tiny: 60 env steps, (16,) networks, one-episode evaluations."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import shlex
import shutil

import numpy as np
import pytest

from recede import plotting
from recede.cli import main
from recede.data import load_d4rl_hdf5, save_d4rl_hdf5
from recede.envs import get_task
from recede.policies import load_policy
from recede.policy_learning import collect
from recede.policy_learning import dyna as dyna_module
from recede.policy_learning.dyna import apply_options, dyna, mbpo_config

PNG = b"\x89PNG\r\n\x1a\n"
TASK = "pendulum-swingup"
TINY = {"sac.learning_starts": "20", "sac.hidden": "16", "sac.batch_size": "16", "sac.updates_per_step": "1",
        "model.members": "3", "model.elites": "2", "model.hidden": "16", "model.layers": "2",
        "train.epochs": "5", "train.patience": "2", "model_every": "20", "rollout_every": "10",
        "rollouts": "4", "rollout_schedule": "0,0,1,1", "epoch_length": "20", "eval_every": "30",
        "eval_episodes": "1", "checkpoint_every": "30"}
TINY_FLAGS = [a for k, v in TINY.items() for a in ("--option", f"{k}={v}")]
OUTPUTS = ["checkpoint", "curve.png", "evals.csv", "model", "policy"]


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def tiny_config(steps=60, **options):
    cfg = apply_options(mbpo_config(TASK), {**TINY, **options})
    return dataclasses.replace(cfg, steps=steps)


def read_evals(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def snapshot(folder) -> dict:
    """Every file under ``folder`` and its bytes."""
    files = {}
    for root, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                files[os.path.relpath(p, folder)] = f.read()
    return files


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished CLI run in the default --out (runs/mbpo-TASK-seed1 under a fresh working
    directory), drawn against a SAC run's evals.csv; plot_learning_curve spied on."""
    home = tmp_path_factory.mktemp("mbpo")
    sac = home / "sac-run"
    sac.mkdir()
    with open(sac / "evals.csv", "w", newline="") as f:
        f.write("seed,env_steps,return_mean,return_std,successes,episodes,wall_s\n"
                "0,30,-380.5,0.0,0,1,0.1\n1,30,-390.25,0.0,0,1,0.1\n0,60,-300.0,0.0,0,1,0.2\n"
                "1,60,-320.0,0.0,0,1,0.2\n")
    (sac / "summary.json").write_text(json.dumps({"algo": "sac"}))
    figures = []

    def spy(*args, **kwargs):
        figures.append((args, plotting_original(*args, **kwargs)))
        return figures[-1][1]

    plotting_original = plotting.plot_learning_curve
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)
        mp.setattr(plotting, "plot_learning_curve", spy)
        code, stdout, stderr = cli("mbpo", TASK, "--steps", 60, "--seed", 1, *TINY_FLAGS, "--no-progress",
                                   "--compare", sac / "evals.csv")
    assert code == 0, stderr
    return home / "runs" / f"mbpo-{TASK}-seed1", stdout, stderr, figures


@pytest.fixture(scope="module")
def oracle():
    return dyna(TASK, tiny_config(), seed=1)


def test_mbpo_writes_what_the_library_computes(finished, oracle):
    out, stdout, stderr, _ = finished
    assert stderr == ""  # --no-progress
    assert sorted(os.listdir(out)) == OUTPUTS  # no temporary files
    assert (out / "curve.png").read_bytes()[:8] == PNG
    rows = read_evals(out / "evals.csv")
    assert [(int(r["seed"]), int(r["env_steps"])) for r in rows] == [(1, 30), (1, 60)]
    assert [(e.seed, e.env_steps) for e in oracle.evals] == [(1, 30), (1, 60)]
    assert [float(r["return_mean"]) for r in rows] == [e.return_mean for e in oracle.evals]  # same seed, same run
    X = np.random.default_rng(3).normal(size=(9, 2)) * [3.0, 4.0]
    np.testing.assert_array_equal(load_policy(str(out / "policy"), get_task(TASK)).act_batch(X),
                                  oracle.policy.act_batch(X))
    assert (out / "model" / "model.json").is_file() and (out / "checkpoint" / "state.json").is_file()
    last = oracle.fits[-1]
    assert f"mbpo on {TASK}, seed 1: 60 env steps, " in stdout
    assert (f"model: {len(oracle.fits)} fits; the last at step {last.step} on {last.rows} transitions, "
            f"held-out MSE {last.holdout_mse:.4g}") in stdout
    assert f"evaluation: return {oracle.evals[-1].return_mean:.4f}" in stdout
    default = os.path.join("runs", f"mbpo-{TASK}-seed1")
    assert f"out: {default} (checkpoint/, policy/, model/, evals.csv, curve.png)" in stdout


def test_the_curve_overlays_the_compared_run(finished, oracle):
    *_, figures = finished
    (args, fig), = figures
    assert os.path.basename(args[1]) == "curve.png"
    ax = fig.axes[0]
    means = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()
             if not line.get_label().startswith("_")}
    assert means == {"mbpo": ([30, 60], [e.return_mean for e in oracle.evals]),
                     "sac (sac-run) (mean over 2 seeds)": ([30, 60], [(-380.5 - 390.25) / 2, -310.0])}
    assert ax.get_title() == f"MBPO on {TASK} (seed 1)"


def test_resume_of_a_finished_run(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished[0], run)
    before = snapshot(run)
    # nothing left to do: refused, nothing touched
    code, stdout, stderr = cli("mbpo", TASK, "--out", run, "--resume", "--no-progress")
    assert code == 2 and stdout == ""
    assert stderr == (f"recede: error: argument --steps: the checkpoint in {str(run)!r} has run 60 env steps "
                      f"of its 60; pass --steps above 60 to train on\n")
    assert snapshot(run) == before
    # --steps above: trains on with the checkpoint's seed and options, evaluations appended
    code, stdout, stderr = cli("mbpo", TASK, "--out", run, "--resume", "--steps", 90, "--no-progress")
    assert code == 0, stderr
    assert f"mbpo on {TASK}, seed 1: 90 env steps (resumed from 60)" in stdout
    rows = read_evals(run / "evals.csv")
    old = read_evals(finished[0] / "evals.csv")
    assert [{k: v for k, v in r.items() if k != "wall_s"} for r in rows[:2]] == \
        [{k: v for k, v in r.items() if k != "wall_s"} for r in old]
    assert [(r["seed"], r["env_steps"]) for r in rows] == [("1", "30"), ("1", "60"), ("1", "90")]
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 90

    # --force starts over: the old outputs go, the new run's come
    code, stdout, stderr = cli("mbpo", TASK, "--out", run, "--force", "--steps", 30, "--seed", 2, *TINY_FLAGS,
                               "--no-progress")
    assert code == 0, stderr
    assert sorted(os.listdir(run)) == OUTPUTS
    assert [(r["seed"], r["env_steps"]) for r in read_evals(run / "evals.csv")] == [("2", "30")]


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(finished, tmp_path, monkeypatch):
    out = tmp_path / "run"

    def interrupted_at_40(*args, on_step=None, **kwargs):  # Ctrl-C between two steps
        def step(t, info):
            on_step(t, info)
            if t == 40:
                raise KeyboardInterrupt
        return dyna(*args, on_step=step, **kwargs)

    monkeypatch.setattr(dyna_module, "dyna", interrupted_at_40)
    code, stdout, stderr = cli("mbpo", TASK, "--steps", 60, "--seed", 1, *TINY_FLAGS, "--out", out,
                               "--no-progress")
    monkeypatch.undo()
    assert code == 130, stderr
    assert f"mbpo on {TASK}, seed 1: 40 env steps (interrupted)" in stdout
    assert sorted(os.listdir(out)) == OUTPUTS
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 40
    assert [r["env_steps"] for r in read_evals(out / "evals.csv")] == ["30"]
    # the message says how to resume; that command (seed, options and steps from the checkpoint) works
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("recede: interrupted at env step 40 of 60; the checkpoint is in ")
    command = shlex.split(message.split("resume with: ", 1)[1])
    assert command == ["recede", "mbpo", TASK, "--out", str(out), "--resume"]
    code, stdout, stderr = cli(*command[1:], "--no-progress")
    assert code == 0, stderr
    assert "(resumed from 40)" in stdout

    def without_wall(rows):
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]

    assert without_wall(read_evals(out / "evals.csv")) == without_wall(read_evals(finished[0] / "evals.csv"))
    X = np.random.default_rng(4).normal(size=(9, 2)) * [3.0, 4.0]
    task = get_task(TASK)
    np.testing.assert_array_equal(load_policy(str(out / "policy"), task).act_batch(X),
                                  load_policy(str(finished[0] / "policy"), task).act_batch(X))


def test_offline_from_a_d4rl_file_is_the_librarys_offline_run(tmp_path):
    task = get_task(TASK)
    data = tmp_path / "d.hdf5"
    save_d4rl_hdf5(collect(task, "random", 2, seed=5, steps=40), data)
    offline = {"eval_every": "10", "rollout_schedule": "0,0,2,2"}
    flags = [a for k, v in offline.items() for a in ("--option", f"{k}={v}")]
    code, stdout, stderr = cli("mbpo", TASK, "--offline", data, "--penalty", 0.5, "--steps", 20, *TINY_FLAGS,
                               *flags, "--out", tmp_path / "off", "--no-progress")
    assert code == 0, stderr
    assert f"mbpo on {TASK} (offline), seed 0: 20 iterations, " in stdout
    cfg = dataclasses.replace(tiny_config(steps=20, **offline), penalty=0.5)
    ref = dyna(task, cfg, seed=0, dataset=load_d4rl_hdf5(data))
    rows = read_evals(tmp_path / "off" / "evals.csv")
    assert [(int(r["env_steps"]), float(r["return_mean"])) for r in rows] == \
        [(e.env_steps, e.return_mean) for e in ref.evals] and len(rows) == 2
    state = json.loads((tmp_path / "off" / "checkpoint" / "state.json").read_text())
    assert state["offline"] is True and state["config"]["penalty"] == 0.5


@pytest.fixture(scope="module")
def other_task_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "cartpole.npz"
    collect(get_task("cartpole-swingup"), "random", 1, steps=5).save(path)
    return path


@pytest.mark.parametrize("extra, message", [
    (["--penalty", "-1"], "argument --penalty: penalty must be a finite number >= 0 (the pessimism λ), got -1.0"),
    (["--option", "rollout=3"], "argument --option: unknown option 'rollout'; options: action_source,"),
    (["--option", "sac.gama=0.9"], "argument --option: option 'sac.gama': SACConfig has no field 'gama'"),
    (["--option", "real_ratio"], "argument --option: expected NAME=VALUE, got 'real_ratio'"),
    (["--offline", "{data}"], "argument --offline: {data}: its transitions have states of size 4 and actions of "
                              "size 1, but task 'pendulum-swingup' has model states of size 2 and 1 actions"),
    (["--compare", "{tmp}/nope.csv"], "argument --compare: {tmp}/nope.csv: no such file"),
    (["--resume"], "argument --resume: no checkpoint to resume in '{tmp}/out'"),
    (["--resume", "--force"], "argument --force: not with --resume (--force starts a new run)"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, other_task_data, extra, message):
    fill = dict(tmp=tmp_path, data=other_task_data)
    code, stdout, stderr = cli("mbpo", TASK, "--steps", 10, "--out", tmp_path / "out", "--no-progress",
                               *[e.format(**fill) for e in extra])
    assert code == 2 and stdout == ""
    assert stderr.startswith("recede: error: " + message.format(**fill)), stderr
    assert stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["cartpole-swingup", "--resume"], "argument TASK: the checkpoint in '{run}' is for task 'pendulum-swingup', "
                                       "not 'cartpole-swingup'"),
    ([TASK, "--resume", "--seed", "4"], "argument --seed: the checkpoint in '{run}' is for seed 1, not 4"),
    ([TASK, "--resume", "--steps", "90", "--option", "real_ratio=0.5"],
     "argument --option: the checkpoint in '{run}' was made with other options; a resumed run may change only "
     "steps, eval_every, checkpoint_every, got real_ratio=0.5 (checkpoint: 0.05)"),
    ([TASK, "--resume", "--steps", "90", "--penalty", "1"],
     "argument --penalty: the checkpoint in '{run}' was made with other options"),
    ([TASK, "--resume", "--steps", "90", "--offline", "{data}"],
     "argument --offline: the checkpoint in '{run}' is of an online run: resume it without --offline"),
    ([TASK, "--steps", "30"], "argument --out: '{run}' already holds an MBPO run; pass --resume to continue it "
                              "or --force to start a new one there"),
])
def test_a_run_is_not_resumed_or_replaced_by_mistake(finished, other_task_data, argv, message):
    run = str(finished[0])
    before = snapshot(run)
    code, stdout, stderr = cli("mbpo", *[a.format(data=other_task_data) for a in argv], "--out", run,
                               "--no-progress")
    assert code == 2 and stdout == ""
    assert stderr.startswith("recede: error: " + message.format(run=run)), stderr
    assert snapshot(run) == before
