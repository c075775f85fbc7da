"""Checkpoints and outputs are never misused or clobbered silently: a model is refused for a task it
was not trained for, an existing checkpoint is replaced only on request, and ``compare`` and
``pets`` write files only where a flag asks."""

from __future__ import annotations

import json
import os

import pytest

from recede.cli import main
from recede.envs import get_task
from recede.models.ensemble import Ensemble
from recede.policy_learning import collect, model_for

TINY_MODEL = ["--members", "2", "--hidden", "8", "--layers", "1", "--epochs", "1", "--no-progress"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, *argv) -> str:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1, (code, out, err)
    return err


RUN_IP = ["run", "inverted-pendulum", "--steps", "1", "--no-progress"]  # dt 0.04, actions in [-3, 3]


def test_run_refuses_a_model_of_another_task(capsys, tmp_path):
    # the cart-pole's sizes are the inverted pendulum's (nx 4, nu 1): only the task tells them apart
    model_for(get_task("cartpole-swingup"), members=2, hidden=8, layers=1).save(tmp_path / "cp")
    assert json.loads((tmp_path / "cp" / "model.json").read_text())["task"] == "cartpole-swingup"
    err = refused(capsys, *RUN_IP, "--model", tmp_path / "cp")
    assert err == (f"recede: error: argument --model: {tmp_path / 'cp'} is a model of task "
                   f"'cartpole-swingup', not 'inverted-pendulum'\n")


def test_run_refuses_an_older_checkpoint_with_another_dt(capsys, tmp_path):
    model_for(get_task("cartpole-swingup"), members=2, hidden=8, layers=1).save(tmp_path / "cp")
    meta_path = tmp_path / "cp" / "model.json"
    meta = json.loads(meta_path.read_text())
    del meta["task"], meta["interrupted"]  # as written before the task was recorded
    meta_path.write_text(json.dumps(meta))
    assert Ensemble.load(tmp_path / "cp").task is None  # still loads
    err = refused(capsys, *RUN_IP, "--model", tmp_path / "cp")
    assert err == (f"recede: error: argument --model: {tmp_path / 'cp'} has dt=0.05 but task "
                   f"'inverted-pendulum' has dt=0.04 (retrain it with --task inverted-pendulum)\n")


def test_run_refuses_a_model_with_other_action_bounds(capsys, tmp_path):
    Ensemble(4, 1, dt=0.04, action_low=-10, action_high=10, members=2, hidden=8,
             layers=1).save(tmp_path / "wide")
    err = refused(capsys, *RUN_IP, "--model", tmp_path / "wide")
    assert err == (f"recede: error: argument --model: {tmp_path / 'wide'} has action_low=[-10] but "
                   f"task 'inverted-pendulum' has action_low=[-3] (retrain it with --task "
                   f"inverted-pendulum)\n")


@pytest.fixture()
def dataset(tmp_path):
    path = tmp_path / "d.npz"
    collect(get_task("double-integrator"), "random", 1, steps=12).save(path)
    return path


def test_train_model_refuses_to_overwrite_without_force(capsys, tmp_path, dataset):
    out = tmp_path / "m"
    code, _, err = run_cli(capsys, "train-model", dataset, "--out", out, "--task", "double-integrator",
                           *TINY_MODEL)
    assert code == 0, err
    before = (out / "weights.safetensors").read_bytes()
    err = refused(capsys, "train-model", dataset, "--out", out, *TINY_MODEL, "--seed", "5")
    assert err == (f"recede: error: argument --out: {str(out)!r} already exists; pass --resume to "
                   f"continue training it or --force to replace it\n")
    assert (out / "weights.safetensors").read_bytes() == before
    code, _, err = run_cli(capsys, "train-model", dataset, "--out", out, *TINY_MODEL, "--seed", "5",
                           "--force")
    assert code == 0, err
    assert Ensemble.load(out).seed == 5 and Ensemble.load(out).trained_epochs == 1
    # a directory that is not a checkpoint is never swapped out, --force or not
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    err = refused(capsys, "train-model", dataset, "--out", tmp_path / "notes", *TINY_MODEL, "--force")
    assert "is a directory that is not a model checkpoint" in err and "--out" in err
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_resume_refuses_a_checkpoint_of_another_task(capsys, tmp_path, dataset):
    out = tmp_path / "m"
    code, _, err = run_cli(capsys, "train-model", dataset, "--out", out, "--task", "double-integrator",
                           *TINY_MODEL)
    assert code == 0, err
    err = refused(capsys, "train-model", dataset, "--out", out, "--resume", "--task",
                  "pendulum-swingup", *TINY_MODEL)
    assert err == (f"recede: error: argument --task: {out} is a model of task 'double-integrator', "
                   f"not 'pendulum-swingup'\n")
    assert Ensemble.load(out).trained_epochs == 1
    code, _, err = run_cli(capsys, "train-model", dataset, "--out", out, "--resume", "--task",
                           "double-integrator", *TINY_MODEL)
    assert code == 0, err
    assert Ensemble.load(out).trained_epochs == 2


def test_compare_and_pets_write_only_where_asked(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "compare", "double-integrator", "--planners", "random",
                             "--seeds", "0", "--steps", "2", "--horizon", "3",
                             "--option", "random.samples=4", "--no-progress")
    assert code == 0, err
    assert "random" in out and "plot:" not in out
    code, out, err = run_cli(
        capsys, "pets", "double-integrator", "--trials", 1, "--steps", 3, "--horizon", 3,
        "--option", "samples=4", "--option", "iterations=1", "--model-option", "hidden=4",
        "--model-option", "layers=1", "--model-option", "members=2", "--model-option", "particles=2",
        "--train-option", "epochs=1")
    assert code == 0, err
    assert out.splitlines()[-1] == "first success: none"
    assert os.listdir(tmp_path) == []
