"""PETS and the learned-model commands: collect, train-model, run --model, pets.

Everything here is tiny (a few steps, one-layer networks): the loop's wiring, its files and its
refusals. Whether PETS learns is measured by ``recede pets`` itself (see the closing notes and
README), not in the test suite.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from recede.cli import main
from recede.data import TransitionDataset
from recede.envs import get_task
from recede.models.ensemble import Ensemble
from recede.policy_learning import collect, model_for, pets
from recede.experiments import env_bounds, problem_for

PNG = b"\x89PNG\r\n\x1a\n"
TINY_MODEL = ["--members", "2", "--hidden", "8", "--layers", "1", "--epochs", "2", "--no-progress"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_collect_random_logs_whole_episodes_reproducibly():
    task = get_task("double-integrator")
    a = collect(task, "random", 2, seed=3, steps=7)
    b = collect(task, "random", 2, seed=3, steps=7)
    assert len(a) == 14 and a.episodes() == [(0, 7), (7, 14)]
    assert list(a.truncated) == [False] * 6 + [True] + [False] * 6 + [True]
    assert not a.terminated.any()
    # consecutive transitions chain within an episode, and follow the task's own dynamics
    np.testing.assert_array_equal(a.next_observations[:6], a.observations[1:7])
    dyn = task.dynamics()
    np.testing.assert_allclose(a.next_observations, dyn.step(a.observations, a.actions), atol=1e-12)
    np.testing.assert_allclose(a.rewards, [-task.cost(dyn).stage(x, u) for x, u in
                                           zip(a.observations, a.actions)], rtol=1e-12)
    assert np.all((a.actions >= dyn.action_low) & (a.actions <= dyn.action_high))
    for f in ("observations", "actions", "rewards"):
        assert np.array_equal(getattr(a, f), getattr(b, f))


def test_collect_cli_mpc_and_train_model_and_run_model(capsys, tmp_path):
    data = tmp_path / "d.npz"
    code, out, err = run_cli(capsys, "collect", "double-integrator", "--policy", "mpc", "--episodes", 2,
                             "--steps", 4, "--out", data, "--no-progress")
    assert code == 0, err
    d = TransitionDataset.load(data)
    assert len(d) == 8 and "transitions   8" in out

    ck, metrics = tmp_path / "model", tmp_path / "m.csv"
    code, out, err = run_cli(capsys, "train-model", data, "--out", ck, "--task", "double-integrator",
                             *TINY_MODEL, "--holdout", "0.25", "--csv", metrics)
    assert code == 0, err
    model = Ensemble.load(ck)
    assert (model.nx, model.nu, model.config.members, model.config.hidden) == (2, 1, 2, 8)
    assert model.dt == get_task("double-integrator").dynamics().dt
    with open(metrics) as f:
        assert len(list(csv.DictReader(f))) == 2

    code, out, err = run_cli(capsys, "train-model", data, "--out", ck, "--resume", "--epochs", 1,
                             "--no-progress")
    assert code == 0, err
    assert Ensemble.load(ck).trained_epochs == 3

    code, out, err = run_cli(capsys, "run", "double-integrator", "--model", ck, "--steps", 3,
                             "--samples", 8, "--iterations", 1, "--horizon", 4, "--no-progress",
                             "--json", tmp_path / "run.json")
    assert code == 0, err
    assert "model" in out and str(ck) in out
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["steps"] == 3


def test_train_model_without_task_takes_sizes_and_bounds_from_the_data(capsys, tmp_path):
    d = collect(get_task("pendulum-swingup"), "random", 1, steps=20)
    d.save(tmp_path / "d.npz")
    code, out, err = run_cli(capsys, "train-model", tmp_path / "d.npz", "--out", tmp_path / "m", *TINY_MODEL)
    assert code == 0, err
    m = Ensemble.load(tmp_path / "m")
    assert (m.nx, m.nu) == (2, 1)
    np.testing.assert_array_equal(m.action_low, d.actions.min(0))


def test_model_commands_refuse_mismatches(capsys, tmp_path):
    d = collect(get_task("pendulum-swingup"), "random", 1, steps=10)  # nx = 2
    d.save(tmp_path / "d.npz")
    code, _, err = run_cli(capsys, "train-model", tmp_path / "d.npz", "--out", tmp_path / "m",
                           "--task", "cartpole-swingup", *TINY_MODEL)
    assert code == 2 and "size 2" in err and "size 4" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()
    run_cli(capsys, "train-model", tmp_path / "d.npz", "--out", tmp_path / "m", *TINY_MODEL)
    code, _, err = run_cli(capsys, "run", "cartpole-swingup", "--model", tmp_path / "m", "--steps", 2,
                           "--no-progress")
    assert code == 2 and "nx=2" in err and "nx=4" in err
    (tmp_path / "bad.npz").write_bytes(b"not a dataset")
    code, _, err = run_cli(capsys, "train-model", tmp_path / "bad.npz", "--out", tmp_path / "m2", *TINY_MODEL)
    assert code == 2 and "bad.npz" in err
    code, _, err = run_cli(capsys, "run", "double-integrator", "--model", tmp_path / "nowhere", "--steps", 2)
    assert code == 2 and "nowhere" in err
    code, _, err = run_cli(capsys, "collect", "double-integrator", "--out", tmp_path / "x.csv")
    assert code == 2 and ".npz" in err


def test_pets_loop_grows_the_data_and_is_reproducible():
    task = get_task("double-integrator")
    options = dict(model_options={"hidden": 8, "layers": 1, "members": 2, "particles": 4},
                   train_options={"epochs": 2}, planner_options_={"samples": 16, "iterations": 1},
                   horizon=5, steps=6, initial_episodes=2)
    a = pets(task, 2, seed=1, **options)
    b = pets(task, 2, seed=1, **options)
    assert [t.trial for t in a.trials] == [0, 1, 2]
    assert [t.policy for t in a.trials] == ["random", "pets", "pets"]
    assert [t.transitions for t in a.trials] == [12, 18, 24]
    assert len(a.data) == 24 and a.data.episodes() == [(i, i + 6) for i in range(0, 24, 6)]
    assert [t.episode_return for t in a.trials] == [t.episode_return for t in b.trials]
    assert a.trials[1].epochs == 2 and np.isfinite(a.trials[1].holdout_mse)
    # the returns are the env's: the sum of the logged rewards of each trial's episode
    r = a.data.episode_returns()
    assert a.trials[1].episode_return == pytest.approx(r[2]) and a.trials[2].episode_return == pytest.approx(r[3])


def test_pets_cli_writes_csv_plot_model_and_data(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(
        capsys, "pets", "double-integrator", "--trials", 1, "--steps", 4, "--horizon", 4,
        "--option", "samples=8", "--option", "iterations=1", "--model-option", "hidden=8",
        "--model-option", "layers=1", "--model-option", "particles=2", "--train-option", "epochs=1",
        "--out-model", "m", "--out-data", "all.npz", "--csv", "pets-double-integrator-s0.csv",
        "--plot", "pets-double-integrator-s0.png")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path)) == ["all.npz", "m", "pets-double-integrator-s0.csv",
                                           "pets-double-integrator-s0.png"]
    with open("pets-double-integrator-s0.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["trial"] for r in rows] == ["0", "1"] and rows[1]["policy"] == "pets"
    assert open("pets-double-integrator-s0.png", "rb").read(8) == PNG
    assert len(TransitionDataset.load("all.npz")) == 8
    assert Ensemble.load("m").config.hidden == 8
    code, _, err = run_cli(capsys, "pets", "double-integrator", "--model-option", "hidden=0")
    assert code == 2 and "hidden" in err


def test_problem_on_model_uses_the_tasks_cost_and_bounds():
    task = get_task("cartpole-swingup")
    m = Ensemble(4, 1, members=2, hidden=4, layers=1)  # no angle dims, no bounds of its own
    env = task.make_env()
    try:
        p = problem_for(task, 10, m, env_bounds(env))
    finally:
        env.close()
    assert p.cost.angle_dims == (1,)  # wrapped like the task's own cost
    np.testing.assert_array_equal(p.action_high, [10.0])
    assert model_for(task).angle_dims == (1,)


def test_run_on_a_learned_model_plots_the_tasks_names_and_says_so(capsys, tmp_path, monkeypatch):
    import matplotlib

    monkeypatch.setitem(matplotlib.rcParams, "svg.fonttype", "none")  # labels as <text>, searchable
    task = get_task("pendulum-swingup")
    model_for(task, members=2, hidden=8, layers=1, particles=2).save(tmp_path / "m")
    code, out, err = run_cli(capsys, "run", "pendulum-swingup", "--model", tmp_path / "m", "--planner",
                             "random", "--samples", 8, "--horizon", 4, "--steps", 3, "--no-progress",
                             "--plot", tmp_path / "run.svg")
    assert code == 0, err
    svg = (tmp_path / "run.svg").read_text()
    assert f"on learned model {tmp_path / 'm'}" in svg
    for label in ("theta [rad]", "theta_dot [rad/s]", "torque [N m]"):  # the task's names and units
        assert label in svg, label
    assert ">u0<" not in svg and ">x0<" not in svg


@pytest.mark.parametrize("ext, magic", [("png", PNG), ("pdf", b"%PDF-"), ("svg", b"<?xml")])
def test_plot_trials_writes_the_format_its_extension_names(tmp_path, ext, magic):
    from recede.errors import InvalidArgumentError
    from recede.policy_learning.pets import TrialLog, plot_trials

    trials = [TrialLog(trial=k, policy="pets", episode_return=-10.0 + k, success=k == 2, steps=5,
                       transitions=5 * (k + 1), epochs=1, holdout_mse=0.1, train_s=0.0,
                       plan_ms_median=1.0, seconds=0.1) for k in range(3)]
    plot_trials(tmp_path / f"curve.{ext}", trials, title="t")
    assert (tmp_path / f"curve.{ext}").read_bytes().startswith(magic)
    with pytest.raises(InvalidArgumentError, match=r"must end in \.png, \.pdf or \.svg, got '.*curve\.jpg'"):
        plot_trials(tmp_path / "curve.jpg", trials)
    assert os.listdir(tmp_path) == [f"curve.{ext}"]  # nothing written for the refused one
