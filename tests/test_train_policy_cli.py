"""``recede train-policy`` and ``recede run --policy``: outputs against the library, exact resumes,
and bad input refused before anything is written.

Oracles: the same config trained by :func:`recede.policy_learning.sac.sac` directly; a saved
policy rolled out with :func:`recede.experiments.run_controller`; an uninterrupted run for the
interrupted-and-resumed one. Training runs are tiny (tens of steps, (16, 16) networks).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import shlex
import shutil
import sys

import numpy as np
import pytest

from recede.cli import main
from recede.envs import get_task
from recede.experiments import run_controller
from recede.policies import GaussianPolicyNet, load_policy, policy_info, save_policy, task_sizes
from recede.policy_learning import sac as sac_module
from recede.policy_learning.sac import SACConfig, sac

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TASK = "pendulum-swingup"
SEEDS = (0, 1)
TINY = dict(learning_starts=20, hidden=(16, 16), batch_size=16, eval_every=30, eval_episodes=1)
TINY_FLAGS = ["--option", "learning_starts=20", "--option", "hidden=16,16", "--option", "batch_size=16",
              "--option", "eval_every=30", "--option", "eval_episodes=1"]


def cli(*argv) -> tuple[int, str, str]:
    """``recede ARGV`` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def train(out, *extra, steps=60, seeds="0,1"):
    return cli("train-policy", TASK, "--steps", steps, "--seeds", seeds, "--out", out, *TINY_FLAGS,
               "--no-progress", *extra)


def read_evals(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def without_wall(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def assert_same_policies(a, b):
    """The seeds' policies in run directories ``a`` and ``b`` act alike, bit for bit."""
    task = get_task(TASK)
    X = np.random.default_rng(7).normal(size=(9, 2)) * [3.0, 4.0]
    for s in SEEDS:
        np.testing.assert_array_equal(load_policy(a / f"seed_{s}", task).act_batch(X),
                                      load_policy(b / f"seed_{s}", task).act_batch(X))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An uninterrupted CLI run: its directory, stdout and stderr."""
    out = tmp_path_factory.mktemp("trained") / "run"
    code, stdout, stderr = train(out)
    assert code == 0, stderr
    return out, stdout, stderr


@pytest.fixture(scope="module")
def oracle():
    """The same training through the library, nothing written."""
    return sac(TASK, SACConfig(steps=60, **TINY), seeds=SEEDS)


# --------------------------------------------------------------------------- train-policy


def test_train_policy_writes_what_the_library_computes(trained, oracle):
    out, stdout, stderr = trained
    assert stderr == ""  # --no-progress
    assert sorted(os.listdir(out)) == ["checkpoint", "curve.png", "evals.csv", "seed_0", "seed_1",
                                       "summary.json"]  # no temporary files
    assert (out / "curve.png").read_bytes()[:8] == PNG_SIGNATURE

    # evals.csv: one row per seed and evaluation, as the library evaluated them
    rows = read_evals(out / "evals.csv")
    assert len(rows) == len(SEEDS) * 2 == len(oracle.evals)  # evaluations at 30 and 60 steps
    for row, e in zip(rows, oracle.evals):
        assert (int(row["seed"]), int(row["env_steps"])) == (e.seed, e.env_steps)
        assert float(row["return_mean"]) == e.return_mean  # full precision
        assert float(row["return_std"]) == e.return_std
        assert int(row["episodes"]) == len(e.returns) == 1
        assert row["successes"] == ("" if e.successes is None else str(e.successes))

    # summary.json: the final evaluation per seed, their mean and std over seeds, the config
    summary = json.loads((out / "summary.json").read_text())
    last = {e.seed: e for e in oracle.evals}
    assert summary["task"] == TASK and summary["algo"] == "sac" and summary["seeds"] == list(SEEDS)
    assert summary["env_steps"] == oracle.env_steps == 60
    assert summary["interrupted"] is False and summary["resumed_from"] == 0
    assert summary["evaluations"] == len(oracle.evals)
    expected_config = dataclasses.asdict(SACConfig(steps=60, **TINY))
    assert summary["config"] == {k: list(v) if isinstance(v, tuple) else v for k, v in expected_config.items()}
    final = summary["final"]
    means = np.array([last[s].return_mean for s in SEEDS])
    assert [r["seed"] for r in final["per_seed"]] == list(SEEDS)
    for r in final["per_seed"]:
        assert r["return_mean"] == last[r["seed"]].return_mean
        assert r["returns"] == list(last[r["seed"]].returns)
        assert r["env_steps"] == 60
        csv_last = [row for row in rows if int(row["seed"]) == r["seed"]][-1]
        assert float(csv_last["return_mean"]) == r["return_mean"]  # the CSV agrees with the JSON
    assert final["return_mean"] == pytest.approx(means.mean(), rel=1e-15)
    assert final["return_std"] == pytest.approx(means.std(), rel=1e-12, abs=1e-15)
    assert summary["wall_s"] > 0

    # the printed summary: one row per seed, then the mean and std over seeds
    lines = stdout.splitlines()
    for s in SEEDS:
        row = next(line for line in lines if line.split()[0] == str(s))
        assert row.split()[1:4] == ["60", "steps", f"{last[s].return_mean:.4f}"]
    assert (f"mean ± std over 2 seeds: {means.mean():.4f} ± {means.std():.4f} (final evaluation, "
            f"60 env steps per seed, wall ") in stdout

    # each seed's policy is the library's: same checkpoint facts, same actions
    X = np.random.default_rng(5).normal(size=(7, 2)) * [3.0, 4.0]
    task = get_task(TASK)
    for k, s in enumerate(SEEDS):
        info = policy_info(out / f"seed_{s}")
        assert info["task"] == TASK and info["meta"]["seed"] == s and info["meta"]["env_steps"] == 60
        mine = load_policy(out / f"seed_{s}", task)
        np.testing.assert_allclose(mine.act_batch(X), oracle.policies[k].act_batch(X), rtol=1e-6, atol=1e-7)


def test_interrupted_run_resumes_to_the_uninterrupted_result(trained, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = sac_module.sac

    def interrupted_at_40(*args, on_step=None, **kwargs):  # Ctrl-C between two steps
        def step(t):
            on_step(t)
            if t == 40:
                raise KeyboardInterrupt
        return real(*args, on_step=step, **kwargs)

    monkeypatch.setattr(sac_module, "sac", interrupted_at_40)
    code, stdout, stderr = train(out)
    monkeypatch.undo()
    assert code == 130, stderr
    assert os.path.isdir(out / "checkpoint")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["env_steps"] == 40
    assert summary["final"]["env_steps"] == 30  # the evaluations completed: those at step 30
    assert [int(r["env_steps"]) for r in read_evals(out / "evals.csv")] == [30, 30]
    assert "(interrupted)" in stdout
    # the message says how to resume; that command (seeds, config and steps from the checkpoint) works
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("recede: interrupted at env step 40 of 60; the checkpoint is in ")
    command = shlex.split(message.split("resume with: ", 1)[1])
    assert command[:2] == ["recede", "train-policy"] and "--resume" in command
    code, stdout, stderr = cli(*command[1:], "--no-progress")
    assert code == 0, stderr

    assert without_wall(read_evals(out / "evals.csv")) == without_wall(read_evals(trained[0] / "evals.csv"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from"] == 40 and summary["interrupted"] is False and summary["env_steps"] == 60
    assert summary["final"] == json.loads((trained[0] / "summary.json").read_text())["final"]
    assert_same_policies(out, trained[0])


def test_resume_with_more_steps_matches_one_longer_run(trained, tmp_path):
    out = tmp_path / "run"
    code, _, stderr = train(out, steps=30)
    assert code == 0, stderr
    assert [int(r["env_steps"]) for r in read_evals(out / "evals.csv")] == [30, 30]
    code, stdout, stderr = train(out, "--resume", steps=60)  # the same options again: accepted
    assert code == 0, stderr
    assert "(resumed from 30)" in stdout
    assert without_wall(read_evals(out / "evals.csv")) == without_wall(read_evals(trained[0] / "evals.csv"))
    final = json.loads((out / "summary.json").read_text())["final"]
    assert final == json.loads((trained[0] / "summary.json").read_text())["final"]
    assert_same_policies(out, trained[0])


# --------------------------------------------------------------------------- run --policy


def test_run_policy_equals_rolling_out_the_loaded_policy(trained, tmp_path):
    policy_dir = trained[0] / "seed_0"
    json_path, png_path = tmp_path / "run.json", tmp_path / "run.png"
    code, stdout, stderr = cli("run", TASK, "--policy", policy_dir, "--seed", "3", "--json", json_path,
                               "--plot", png_path, "--no-progress")
    assert code == 0, stderr

    task = get_task(TASK)
    env = task.make_env()
    try:
        log = run_controller(task, env, load_policy(policy_dir, task), seed=3)
    finally:
        env.close()

    record = json.loads(json_path.read_text())
    assert record["planner"] == "policy:sac" and record["task"] == TASK and record["seed"] == 3
    assert record["policy"] == str(policy_dir) and record["policy_meta"]["seed"] == 0
    assert record["steps"] == log.steps == task.episode_steps
    assert record["return"] == log.total_return
    assert record["log"]["actions"] == log.actions.tolist()
    assert record["log"]["states"] == log.states.tolist()
    assert record["success"] == log.success
    assert png_path.read_bytes()[:8] == PNG_SIGNATURE
    assert sorted(os.listdir(tmp_path)) == ["run.json", "run.png"]

    rows = dict(line.split(None, 1) for line in stdout.splitlines() if not line.startswith("act time"))
    assert rows["planner"] == "policy:sac"
    assert rows["return"] == f"{log.total_return:.4f}"
    assert rows["steps"] == str(log.steps)
    assert rows["success"] == ("yes" if log.success else "no")


def test_run_policy_films_a_mujoco_task(tmp_path):
    task = get_task("cartpole-swingup-mj")
    _, nobs, nu = task_sizes(task)
    d = task.dynamics()
    net = GaussianPolicyNet(1, nobs, nu, d.action_low, d.action_high, hidden=(8,), seeds=[0])
    save_policy(net, tmp_path / "policy", task=task, meta={"algo": "sac", "seed": 0})
    json_path, mp4 = tmp_path / "run.json", tmp_path / "run.mp4"
    code, stdout, stderr = cli("run", task.name, "--policy", tmp_path / "policy", "--steps", "4",
                               "--json", json_path, "--video", mp4, "--no-progress")
    assert code == 0, stderr
    record = json.loads(json_path.read_text())
    env = task.make_env()
    try:
        log = run_controller(task, env, load_policy(tmp_path / "policy", task), seed=0, steps=4)
    finally:
        env.close()
    assert record["return"] == log.total_return and record["steps"] == 4
    assert mp4.stat().st_size > 1000 and b"ftyp" in mp4.read_bytes()[:64]
    assert "video" in stdout


# --------------------------------------------------------------------------- bad input


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recede: error: "), err
    assert "Traceback" not in err
    return lines[0][len("recede: error: "):]


def _small_model(path, task_name=None):
    from recede.models.ensemble import Ensemble
    from recede.policy_learning.pets import model_for

    if task_name is None:  # no task recorded: sizes of another system
        model = Ensemble(4, 1, members=1, hidden=8, layers=1)
    else:
        model = model_for(get_task(task_name), members=1, hidden=8, layers=1)
    model.save(path)
    return path


@pytest.mark.parametrize("argv,message", [
    (["--algo", "nope"], "argument --algo: invalid choice: 'nope' (choose from 'ppo', 'sac')"),
    (["--steps", "0"], "argument --steps: must be an integer >= 1, got 0"),
    (["--steps", "-3"], "argument --steps: must be an integer >= 1, got -3"),
    (["--option", "nope=1"], "argument --option: sac has no option 'nope'; its options: learning_starts, "
                             "batch_size, buffer_size, gamma, tau, policy_lr, q_lr, alpha, initial_alpha, "
                             "target_entropy, updates_per_step, hidden, eval_every, eval_episodes, "
                             "checkpoint_every, threads"),
    (["--option", "hidden=16,x"], "argument --option: hidden=16,x: expected comma-separated integers "
                                  "(e.g. 64,64), got '16,x'"),
    (["--option", "gamma=high"], "argument --option: gamma=high: expected a number, got 'high'"),
    (["--option", "learning_starts=-1"], "argument --option: learning_starts=-1: learning_starts must be an "
                                         "int >= 0, got -1"),
    (["--option", "steps=5"], "argument --option: set steps with --steps, got 'steps=5'"),
    (["--option", "hidden"], "argument --option: expected NAME=VALUE, got 'hidden'"),
    (["--resume"], "argument --resume: no checkpoint to resume in '{out}' (no {out}/checkpoint); "
                   "train without --resume first"),
    (["--resume", "--force"], "argument --force: not with --resume (--force starts a new run)"),
    (["--seeds", "0,0"], "argument --seeds: seeds must be distinct, got 0,0"),
    (["--seeds", "2..1"], "argument --seeds: must name at least one seed, all >= 0, got '2..1'"),
    (["--device", "nowhere"], "argument --device: "),
    (["--model", "{other_sizes}"], "argument --model: {other_sizes} has nx=4, nu=1 but task "
                                   "'pendulum-swingup' has nx=2, nu=1"),
    (["--model", "{other_task}"], "argument --model: {other_task} is a model of task 'cartpole-swingup', "
                                  "not 'pendulum-swingup'"),
])
def test_train_policy_refuses_bad_input_and_writes_nothing(argv, message, tmp_path, tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    paths = {"out": str(tmp_path / "out")}
    if any("{other_sizes}" in a for a in argv):
        paths["other_sizes"] = str(_small_model(models / "other_sizes"))
    if any("{other_task}" in a for a in argv):
        paths["other_task"] = str(_small_model(models / "other_task", "cartpole-swingup"))
    argv = [a.format(**paths) for a in argv]
    code, stdout, stderr = cli("train-policy", TASK, "--steps", "60", "--out", paths["out"], *argv)
    assert code == 2
    assert _one_error_line(stderr).startswith(message.format(**paths))
    assert stdout == ""
    assert os.listdir(tmp_path) == []  # nothing written, not even the output directory


def test_train_policy_ppo_is_reported_when_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "recede.policy_learning.ppo", None)  # as if not installed
    code, _, stderr = cli("train-policy", TASK, "--algo", "ppo", "--out", tmp_path / "out")
    assert code == 2
    assert _one_error_line(stderr) == ("argument --algo: ppo is not available yet (this recede has no "
                                       "recede.policy_learning.ppo)")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("argv,message", [
    ([], "argument --out: '{out}' already holds a training run; pass --resume to continue it or --force "
         "to start a new one there"),
    (["--resume", "--steps", "60"], "argument --steps: the checkpoint in '{out}' has trained 60 env steps "
                                    "of its 60; pass --steps above 60 to train on, got 60"),
    (["--resume"], "argument --steps: the checkpoint in '{out}' has trained 60 env steps of its 60; pass "
                   "--steps above 60 to train on"),
    (["--resume", "--steps", "90", "--option", "hidden=32,32"],
     "resume: the checkpoint was trained with other options: hidden=(16, 16) (now (32, 32))"),
    (["--resume", "--steps", "90", "--seeds", "0"], "resume: the checkpoint is for seeds [0, 1], not [0]"),
])
def test_train_policy_leaves_an_existing_run_alone(argv, message, trained, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained[0], out)
    before = {p: os.stat(os.path.join(out, p)).st_mtime_ns for p in os.listdir(out)}
    code, _, stderr = cli("train-policy", TASK, "--out", out, "--no-progress", *argv)
    assert code == 2
    assert _one_error_line(stderr) == message.format(out=out)
    assert {p: os.stat(os.path.join(out, p)).st_mtime_ns for p in os.listdir(out)} == before


def test_train_policy_resume_refuses_another_task(trained, tmp_path):
    code, _, stderr = cli("train-policy", "cartpole-swingup", "--out", trained[0], "--resume")
    assert code == 2
    assert _one_error_line(stderr) == (f"argument TASK: the checkpoint in '{trained[0]}' is for task "
                                       f"'pendulum-swingup', not 'cartpole-swingup'")


def test_train_policy_in_a_model_equals_the_library(tmp_path, tmp_path_factory):
    from recede.models.ensemble import Ensemble

    model = _small_model(tmp_path_factory.mktemp("models") / "m", TASK)
    code, _, stderr = train(tmp_path / "out", "--model", model, steps=40, seeds="0")
    assert code == 0, stderr
    want = sac(TASK, SACConfig(steps=40, **TINY), seeds=(0,), model=Ensemble.load(model))
    rows = read_evals(tmp_path / "out" / "evals.csv")
    assert [(int(r["env_steps"]), float(r["return_mean"])) for r in rows] == \
        [(e.env_steps, e.return_mean) for e in want.evals]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["model"] == os.path.abspath(model)


# --------------------------------------------------------------------------- run --policy: bad input


def _corrupt_weights(d):
    p = d / "policy.safetensors"
    blob = bytearray(p.read_bytes())
    blob[-1] ^= 0xFF
    p.write_bytes(bytes(blob))


def _truncate_json(d):
    p = d / "policy.json"
    p.write_text(p.read_text()[:40])


@pytest.mark.parametrize("task,extra,damage,message", [
    (TASK, ["--planner", "cem"], None, "argument --policy: not allowed with --planner: a policy acts on its "
                                       "own, without a planner or a planning model"),
    (TASK, ["--model", "somewhere"], None, "argument --policy: not allowed with --model: "),
    (TASK, ["--samples", "10"], None, "argument --policy: not allowed with --samples: "),
    (TASK, ["--option", "iterations=2"], None, "argument --policy: not allowed with --option: "),
    ("cartpole-swingup", [], None, "argument --policy: policy '{policy}' acts on {nobs} observations with "
                                   "{nu} actions (task 'pendulum-swingup'), but task 'cartpole-swingup' has "
                                   "{nobs2} observations and {nu2} actions"),
    (TASK, [], _corrupt_weights, "argument --policy: {policy}/policy.safetensors: checksum does not match "
                                 "policy.json"),
    (TASK, [], _truncate_json, "argument --policy: {policy}/policy.json: not valid JSON"),
])
def test_run_policy_refuses_bad_input_and_writes_nothing(task, extra, damage, message, trained, tmp_path):
    policy = tmp_path / "policy"
    shutil.copytree(trained[0] / "seed_0", policy)
    if damage is not None:
        damage(policy)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    code, stdout, stderr = cli("run", task, "--policy", policy, *extra, "--json", outputs / "run.json",
                               "--plot", outputs / "run.png", "--no-progress")
    assert code == 2
    _, nobs, nu = task_sizes(get_task(TASK))
    _, nobs2, nu2 = task_sizes(get_task("cartpole-swingup"))
    assert _one_error_line(stderr).startswith(message.format(policy=policy, nobs=nobs, nu=nu, nobs2=nobs2,
                                                             nu2=nu2))
    assert stdout == "" and os.listdir(outputs) == []


def test_run_policy_points_from_a_training_directory_to_its_policies(trained):
    out = trained[0]
    code, _, stderr = cli("run", TASK, "--policy", out, "--no-progress")
    assert code == 2
    assert _one_error_line(stderr) == (f"argument --policy: policy checkpoint '{out}' has no policy.json; "
                                       f"'{out}' is the output of 'recede train-policy': pass one of its "
                                       f"policies, e.g. --policy {out / 'seed_0'}")
