"""Ctrl-C keeps what was done: the Python API raises ``Interrupted`` (a KeyboardInterrupt) carrying
the partial result, and the command line reports and writes it, then exits with status 130.

``run`` and ``train-model`` get a real SIGINT in a ``python -m recede`` subprocess once its
progress output shows it is running (a task whose kernels are cached, a tiny model); ``pets`` and
``compare`` run in-process with a KeyboardInterrupt raised at a known point, so the oracle is
exact (which trials or runs completed).
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import recede
from recede._io import atomic_directory, deferred_interrupt
from recede.controllers import RandomPolicy, run_closed_loop
from recede.data import TransitionDataset
from recede.envs import get_task
from recede.errors import Interrupted
from recede.models.ensemble import Ensemble
from recede.policy_learning import collect

PNG = b"\x89PNG\r\n\x1a\n"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(recede.__file__)))


# --------------------------------------------------------------------------- the Python API


class _StopAt:
    """A controller that acts like ``inner`` and raises KeyboardInterrupt at its call ``at``."""

    def __init__(self, inner, at: int):
        self.inner, self.at, self.calls = inner, at, 0

    def act(self, x):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.inner.act(x)


def test_run_closed_loop_raises_the_steps_completed():
    task = get_task("double-integrator")
    env = task.make_env()
    try:
        with pytest.raises(KeyboardInterrupt) as info:  # still a KeyboardInterrupt to callers
            run_closed_loop(env, _StopAt(RandomPolicy([-1.0], [1.0], rng=3), 5), seed=7,
                            state_fn=task.state_of)
        whole = run_closed_loop(env, RandomPolicy([-1.0], [1.0], rng=3), seed=7, steps=4,
                                state_fn=task.state_of)
    finally:
        env.close()
    assert isinstance(info.value, Interrupted)
    log = info.value.partial
    assert log.interrupted and not whole.interrupted
    assert log.steps == 4 and log.states.shape == (5, 2) and log.plan_times.shape == (4,)
    # the partial log is the uninterrupted run's first four steps
    np.testing.assert_array_equal(log.states, whole.states)
    np.testing.assert_array_equal(log.actions, whole.actions)
    np.testing.assert_array_equal(log.rewards, whole.rewards)
    assert log.summary()["interrupted"] is True and whole.summary()["interrupted"] is False


def _linear_data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    u = rng.uniform(-1, 1, size=(n, 1))
    nxt = x @ np.array([[1.0, 0.1], [0.0, 1.0]]).T + u @ np.array([[0.0, 0.1]])
    return TransitionDataset(observations=x, actions=u, next_observations=nxt, rewards=np.zeros(n),
                             terminated=np.zeros(n, bool), truncated=np.zeros(n, bool),
                             episode_ids=np.zeros(n, np.int64))


def test_interrupted_fit_keeps_the_best_weights_of_the_epochs_completed(monkeypatch):
    data = _linear_data(120)
    options = dict(epochs=50, patience=50, batch_size=64, seed=4)
    whole = Ensemble(2, 1, members=3, hidden=8, layers=1, elites=2)
    done = whole.fit(data, **{**options, "epochs": 3})

    cut = Ensemble(2, 1, members=3, hidden=8, layers=1, elites=2)
    evals = {"n": 0}
    member_mse = Ensemble._member_mse

    def fourth_epoch_interrupted(self, X, Y):  # called once before training, then per epoch
        evals["n"] += 1
        if evals["n"] == 5:
            raise KeyboardInterrupt
        return member_mse(self, X, Y)

    monkeypatch.setattr(Ensemble, "_member_mse", fourth_epoch_interrupted)
    with pytest.raises(Interrupted) as info:
        cut.fit(data, **options)
    monkeypatch.undo()
    result = info.value.partial
    assert result.interrupted and len(result.epochs) == 3 and cut.interrupted
    assert cut.trained_epochs == 3 and not whole.interrupted
    # each member's best of the three completed epochs, exactly as a fit of three epochs ends
    assert result.elites == done.elites and result.best_holdout_mse == done.best_holdout_mse
    for a, b in zip(cut.net.parameters(), whole.net.parameters()):
        assert torch_equal(a, b)
    X = data.observations[:20]
    np.testing.assert_array_equal(cut.step(X, data.actions[:20]), whole.step(X, data.actions[:20]))


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a.detach(), b.detach()))


def test_interrupted_flag_is_saved_and_cleared_by_a_finished_fit(tmp_path):
    m = Ensemble(2, 1, members=2, hidden=8, layers=1, task="double-integrator")
    m.interrupted = True
    m.save(tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "model.json").read_text())
    assert meta["interrupted"] is True and meta["task"] == "double-integrator"
    back = Ensemble.load(tmp_path / "ck")
    assert back.interrupted and back.task == "double-integrator"
    back.fit(_linear_data(50), epochs=1)
    assert not back.interrupted


def test_deferred_interrupt_lets_the_block_finish_then_raises():
    # deferred_interrupt only acts under Python's own SIGINT handler: install it for this test,
    # whatever an earlier test in the same process left behind
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _check_deferred_interrupt()
    finally:
        signal.signal(signal.SIGINT, previous)


def _check_deferred_interrupt():
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs here, and only records the signal
            steps.append("finished")
    assert steps == ["finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_checkpoint_swap_failing_midway_puts_the_old_one_back(tmp_path, monkeypatch):
    path = tmp_path / "ck"
    path.mkdir()
    (path / "model.json").write_text("old")
    real = os.replace
    calls = []

    def second_rename_fails(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # old moved aside, new not yet in place
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(os, "replace", second_rename_fails)
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(str(path)) as tmp:
            with open(os.path.join(tmp, "model.json"), "w") as f:
                f.write("new")
    monkeypatch.undo()
    assert (path / "model.json").read_text() == "old"
    assert os.listdir(tmp_path) == ["ck"]  # neither the new one nor the moved-aside one is left


# --------------------------------------------------------------------------- the command line


class _Running:
    """``python -m recede ARGV`` with both streams read as they come."""

    def __init__(self, argv, cwd):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        env.setdefault("MUJOCO_GL", "egl")
        # SIGINT back to its default in the child even if this process ignores it (a background
        # job), so that Python installs its KeyboardInterrupt handler there
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recede", *map(str, argv)], cwd=cwd, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.out, self.err = [], []
        self.readers = [threading.Thread(target=self._read, args=(s, b), daemon=True)
                        for s, b in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for r in self.readers:
            r.start()

    @staticmethod
    def _read(stream, buf):
        while chunk := os.read(stream.fileno(), 4096):
            buf.append(chunk)

    def text(self, which) -> str:
        return b"".join(list(which)).decode(errors="replace")

    def interrupt_when(self, ready, timeout=120.0) -> tuple[int, str, str]:
        """SIGINT once ``ready(stdout, stderr)`` holds; then the exit status and both streams."""
        end = time.monotonic() + timeout
        while not ready(self.text(self.out), self.text(self.err)):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"never got ready; stdout: {self.text(self.out)!r} "
                            f"stderr: {self.text(self.err)[-2000:]!r}")
            time.sleep(0.05)
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        for r in self.readers:
            r.join(timeout=10)
        return code, self.text(self.out), self.text(self.err)


def _progress(err: str, unit_total: str) -> int:
    """The last count a tqdm bar printed, as in '37/100'."""
    counts = re.findall(rf"(\d+)/{unit_total}\b", err)
    return int(counts[-1]) if counts else 0


def test_interrupted_run_prints_and_writes_the_steps_completed(tmp_path):
    # --realtime holds each step to dt = 0.1 s: the 100-step episode is still running at step 3
    run = _Running(["run", "double-integrator", "--samples", 16, "--iterations", 1, "--horizon", 6,
                    "--realtime", "--json", "run.json", "--plot", "run.png"], tmp_path)
    code, out, err = run.interrupt_when(lambda out, err: _progress(err, "100") >= 3)
    assert code == 130, err
    record = json.loads((tmp_path / "run.json").read_text())
    steps = record["steps"]
    assert record["interrupted"] is True and 3 <= steps < 100
    assert len(record["log"]["actions"]) == len(record["log"]["rewards"]) == steps
    assert len(record["log"]["states"]) == steps + 1 and len(record["plan_status"]) == steps
    assert record["return"] == pytest.approx(sum(record["log"]["rewards"]))
    assert (tmp_path / "run.png").read_bytes()[:8] == PNG
    assert re.search(rf"^steps\s+{steps} \(interrupted\)$", out, re.M), out
    assert err.rstrip().endswith(f"recede: interrupted after {steps} steps")
    assert sorted(os.listdir(tmp_path)) == ["run.json", "run.png"]  # no temporary file left


def test_interrupted_train_model_saves_the_best_checkpoint_so_far(tmp_path):
    collect(get_task("double-integrator"), "random", 1, steps=60).save(tmp_path / "d.npz")
    run = _Running(["train-model", "d.npz", "--out", "m", "--task", "double-integrator",
                    "--members", 2, "--hidden", 8, "--layers", 1,
                    "--epochs", 100000, "--patience", 100000, "--csv", "m.csv"], tmp_path)
    code, out, err = run.interrupt_when(lambda out, err: _progress(err, "100000") >= 3)
    assert code == 130, err
    model = Ensemble.load(tmp_path / "m")  # valid: checksum, shapes, finiteness
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    with open(tmp_path / "m.csv") as f:
        epochs = [int(r["epoch"]) for r in csv.DictReader(f)]
    assert model.interrupted and meta["interrupted"] is True and model.task == "double-integrator"
    assert model.trained_epochs >= 3 and epochs == list(range(1, model.trained_epochs + 1))
    assert re.search(rf"^epochs\s+{model.trained_epochs} \(interrupted\)", out, re.M), out
    assert f"interrupted after {model.trained_epochs} epochs" in err and "saved the best" in err
    assert sorted(os.listdir(tmp_path)) == ["d.npz", "m", "m.csv"]


class _InterruptOnCall:
    """Wraps ``fn``; its call ``at`` raises KeyboardInterrupt (Ctrl-C at a known point)."""

    def __init__(self, fn, at: int):
        self.fn, self.at, self.calls = fn, at, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.fn(*args, **kwargs)


def test_interrupted_pets_writes_the_trials_completed(capsys, tmp_path, monkeypatch):
    import importlib

    from recede.cli import main

    pets_module = importlib.import_module("recede.policy_learning.pets")  # not the function pets

    # two random episodes (trial 0), then trials 1 and 2; Ctrl-C in trial 3's episode
    monkeypatch.setattr(pets_module, "episode", _InterruptOnCall(pets_module.episode, 5))
    monkeypatch.chdir(tmp_path)
    code = main(["pets", "double-integrator", "--trials", "10", "--steps", "4", "--horizon", "4",
                 "--initial-episodes", "2", "--option", "samples=8", "--option", "iterations=1",
                 "--model-option", "hidden=8", "--model-option", "layers=1",
                 "--model-option", "members=2", "--model-option", "particles=2",
                 "--train-option", "epochs=1", "--csv", "t.csv", "--out-model", "m",
                 "--out-data", "all.npz", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 130, err
    with open(tmp_path / "t.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["trial"]) for r in rows] == [0, 1, 2]
    data = TransitionDataset.load(tmp_path / "all.npz")
    assert len(data) == int(rows[-1]["transitions"]) == 4 * 4  # the episodes of those trials
    model = Ensemble.load(tmp_path / "m")
    # refit before trial 3 ran (one epoch per fit) before its episode was interrupted
    assert model.task == "double-integrator" and model.trained_epochs == 3
    assert err == "recede: interrupted after trial 2; wrote csv t.csv, model m, data all.npz " \
                  "for the trials completed\n"
    assert sorted(os.listdir(tmp_path)) == ["all.npz", "m", "t.csv"]


def test_interrupted_compare_tabulates_the_runs_completed(capsys, tmp_path, monkeypatch):
    import recede.experiments
    from recede.cli import main

    monkeypatch.setattr(recede.experiments, "run_episode",
                        _InterruptOnCall(recede.experiments.run_episode, 4))
    code = main(["compare", "double-integrator", "--planners", "random,cem", "--seeds", "0..2",
                 "--steps", "3", "--horizon", "4", "--option", "cem.samples=8",
                 "--option", "random.samples=8", "--json", str(tmp_path / "c.json"),
                 "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 130, err
    record = json.loads((tmp_path / "c.json").read_text())
    assert record["interrupted"] is True and list(record["runs"]) == ["random"]
    runs = record["runs"]["random"]
    assert [r["seed"] for r in runs] == [0, 1, 2] and len(record["table"]) == 1
    assert record["table"][0]["runs"] == 3
    assert record["table"][0]["return_mean"] == pytest.approx(np.mean([r["return"] for r in runs]))
    assert "interrupted during cem seed 0: the table covers the 3 of 6 runs completed" in out
    assert "random (3 of 3 seeds): samples=8" in out and "\ncem" not in out
    assert err == "recede: interrupted\n"
    assert os.listdir(tmp_path) == ["c.json"]


@pytest.mark.parametrize("which", ["atomic_file", "atomic_directory"])
def test_ctrl_c_while_the_temporary_is_being_made_leaves_nothing(tmp_path, monkeypatch, which):
    """A Ctrl-C just after the temporary file (or directory) exists, before it is handed out,
    removes it: nothing half-made is left next to the target (a CI run once found
    '.m.csv.XXXX.tmp' after an interrupted train-model)."""
    import recede._io as io

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "_umask", interrupted)  # runs between mkstemp/mkdtemp and the yield
    with pytest.raises(KeyboardInterrupt):
        with getattr(io, which)(str(tmp_path / "target")):
            pytest.fail("the body must not run")
    assert os.listdir(tmp_path) == []
