"""Sweeps: stable expansion and ids, validation before any trial, the local pool against serial
runs, and results that survive a cut-short write."""

import json
import os

import pytest

from recede.errors import InvalidArgumentError
from recede.sweeps import SweepSpec, TrialsFailedError, load_toml, run_sweep
from recede.sweeps import runner

FIXED = {"task": "pendulum-swingup", "steps": 8}


def _strip(rec):
    return {k: v for k, v in rec.items() if k != "timing"}


def test_expansion_order_and_stable_ids():
    s = SweepSpec.make("run", {"planner": ["cem", "mppi"], "samples": [50, 100]}, [0, 1], FIXED)
    trials = s.trials()
    assert [(t.planner, dict(t.options)["samples"], t.seed) for t in trials] == [
        ("cem", 50, 0), ("cem", 50, 1), ("cem", 100, 0), ("cem", 100, 1),
        ("mppi", 50, 0), ("mppi", 50, 1), ("mppi", 100, 0), ("mppi", 100, 1)]
    again = SweepSpec.make("run", {"planner": ["cem", "mppi"], "samples": [50, 100]}, [0, 1], FIXED)
    assert [t.id for t in trials] == [t.id for t in again.trials()] and s.id == again.id
    assert len({t.id for t in trials}) == 8
    assert trials[0].config_key == trials[1].config_key and trials[0].id != trials[1].id
    other = SweepSpec.make("run", {"planner": ["cem", "mppi"], "samples": [50, 200]}, [0, 1], FIXED)
    assert other.id != s.id


def test_bad_input_before_any_trial(tmp_path):
    path = str(tmp_path / "r.jsonl")
    s = SweepSpec.make("run", {"sampels": [50]}, [0], FIXED)
    with pytest.raises(InvalidArgumentError, match="sampels"):
        run_sweep(s, path, workers=1)
    assert not os.path.exists(path)  # nothing ran, nothing written
    with pytest.raises(InvalidArgumentError, match="no values"):
        SweepSpec.make("run", {"samples": []}, [0], FIXED)
    with pytest.raises(InvalidArgumentError, match="at least one seed"):
        SweepSpec.make("run", {"samples": [50]}, [], FIXED)
    with pytest.raises(InvalidArgumentError, match="distinct"):
        SweepSpec.make("run", {"samples": [50]}, [1, 1], FIXED)
    with pytest.raises(InvalidArgumentError, match="needs a task"):
        SweepSpec.make("run", {"samples": [50]}, [0], {})
    with pytest.raises(InvalidArgumentError, match="command"):
        SweepSpec.make("fly", {"samples": [50]}, [0], FIXED)
    with pytest.raises(InvalidArgumentError, match="grid is empty"):
        SweepSpec.make("run", {}, [0, 1], FIXED)
    with pytest.raises(InvalidArgumentError, match="'3..1' count down; write 1..3"):
        SweepSpec.make("run", {"samples": [50]}, "3..1", FIXED)
    assert SweepSpec.make("run", {"samples": [50]}, "1..3", FIXED).seeds == (1, 2, 3)
    # an option one planner of the grid lacks: named with that planner's options, before any trial
    s = SweepSpec.make("run", {"planner": ["cem", "mppi"], "init_std": [0.3]}, [0], FIXED)
    with pytest.raises(InvalidArgumentError, match="'mppi' has no option 'init_std'; its options: samples"):
        run_sweep(s, path, workers=2)
    assert not os.path.exists(path)
    with pytest.raises(InvalidArgumentError, match="backend"):
        run_sweep(SweepSpec.make("run", {"samples": [50]}, [0], FIXED), path, backend="slurm")
    with pytest.raises(InvalidArgumentError, match="address is for backend 'ray'"):
        run_sweep(SweepSpec.make("run", {"samples": [50]}, [0], FIXED), path, address="auto")


def test_local_pool_equals_serial_and_resume_skips_finished(tmp_path):
    s = SweepSpec.make("run", {"planner": ["cem", "mppi"], "samples": [30]}, [0, 1], FIXED)
    serial = run_sweep(s, str(tmp_path / "a.jsonl"), workers=1)
    pooled = run_sweep(s, str(tmp_path / "b.jsonl"), workers=2)
    assert [_strip(r) for r in serial] == [_strip(r) for r in pooled]
    assert [r["id"] for r in serial] == [t.id for t in s.trials()]
    # a write cut short after two records: the partial line is dropped, only the rest rerun
    path = tmp_path / "b.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:3]) + lines[3][:25])
    seen = []
    again = run_sweep(s, str(path), workers=1, on_record=lambda rec, done, total: seen.append(rec["id"]))
    assert len(seen) == 2 and not set(seen) & {json.loads(x)["id"] for x in lines[1:3]}
    assert [_strip(r) for r in again] == [_strip(r) for r in serial]
    assert len(path.read_bytes().splitlines()) == 1 + 4
    # everything finished: nothing runs
    seen.clear()
    run_sweep(s, str(path), workers=2, on_record=lambda rec, done, total: seen.append(rec))
    assert seen == []


def test_results_of_another_sweep_refused_unless_forced(tmp_path):
    path = str(tmp_path / "r.jsonl")
    a = SweepSpec.make("run", {"samples": [30]}, [0], FIXED)
    run_sweep(a, path, workers=1)
    b = SweepSpec.make("run", {"samples": [40]}, [0], FIXED)
    with pytest.raises(InvalidArgumentError, match="--force"):
        run_sweep(b, path, workers=1)
    recs = run_sweep(b, path, workers=1, force=True)
    assert len(recs) == 1 and recs[0]["trial"]["options"] == {"samples": 40}


def test_sweep_killed_with_sigkill_resumes_without_loss_or_repeats(tmp_path):
    """SIGKILL the sweep's process group once two trials are on disk; the rerun runs only the
    rest, and the records equal an uninterrupted sweep's (timings aside)."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "recede", "sweep", "--task", "pendulum-swingup", "--steps", "40",
            "--grid", "samples=30,40,50,60,70,80", "--seeds", "0", "--workers", "1", "--no-progress",
            "--out", str(out)]
    proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    path = out / "results.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_bytes().splitlines()) >= 3:  # header + 2 records
            break
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = [json.loads(x)["id"] for x in path.read_bytes().splitlines()[1:] if x.endswith(b"}")]
    assert 2 <= len(before) < 6
    assert subprocess.run(argv, capture_output=True).returncode == 0
    ids = [json.loads(x)["id"] for x in path.read_bytes().splitlines()[1:]]
    assert len(ids) == len(set(ids)) == 6  # none lost, none run twice
    assert ids[:len(before)] == before
    whole = run_sweep(SweepSpec.make("run", {"samples": [30, 40, 50, 60, 70, 80]}, [0],
                                     {"task": "pendulum-swingup", "steps": 40}), str(tmp_path / "w.jsonl"),
                      workers=1)
    resumed = {r["id"]: _strip(r) for r in map(json.loads, path.read_bytes().splitlines()[1:])}
    assert {r["id"]: _strip(r) for r in whole} == resumed


@pytest.mark.heavy
def test_cold_cache_sweep_with_two_workers(tmp_path):
    """Two workers compiling the same kernels into an empty Numba cache at once: the sweep
    finishes, every trial recorded."""
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    argv = [sys.executable, "-m", "recede", "sweep", "--task", "double-integrator", "--steps", "5",
            "--grid", "planner=random", "--seeds", "0..1", "--workers", "2", "--no-progress",
            "--out", str(tmp_path / "out")]  # the fewest kernels to compile: 46 s here, 57 s for cem
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 2
    assert any((tmp_path / "cache").rglob("*.nbi"))


def test_random_search_draws_are_seeded_and_crossed_with_the_grid():
    import numpy as np

    space = {"init_std": {"uniform": [0.1, 1.0]}, "min_std": {"log_uniform": [1e-3, 1e-1]},
             "samples": {"int_uniform": [10, 20]}, "elite_fraction": {"choice": [0.1, 0.2]}}
    s = SweepSpec.make("run", {"planner": ["cem", "icem"]}, [0, 1], FIXED, {"trials": 3, "seed": 7, "space": space})
    trials = s.trials()
    assert len(trials) == 2 * 3 * 2
    # the oracle: the same draws by hand with numpy's generator, names in order, 4 significant digits
    rng = np.random.default_rng(7)
    want = []
    for _ in range(3):
        want.append({"init_std": float(f"{rng.uniform(0.1, 1.0):.4g}"),
                     "min_std": float(f"{np.exp(rng.uniform(np.log(1e-3), np.log(1e-1))):.4g}"),
                     "samples": int(rng.integers(10, 21)),
                     "elite_fraction": [0.1, 0.2][int(rng.integers(2))]})
    got = [dict(t.options) for t in trials]
    assert got == [w for p in range(2) for w in want for _ in range(2)]
    assert [t.planner for t in trials] == ["cem"] * 6 + ["icem"] * 6
    again = SweepSpec.make("run", {"planner": ["cem", "icem"]}, [0, 1], FIXED, {"trials": 3, "seed": 7, "space": space})
    assert again.id == s.id
    other = SweepSpec.make("run", {"planner": ["cem", "icem"]}, [0, 1], FIXED, {"trials": 3, "seed": 8, "space": space})
    assert other.id != s.id
    # a random search alone is a sweep; bad distributions name the option
    assert len(SweepSpec.make("run", {}, [0], FIXED, {"trials": 2, "seed": 0, "space": {"init_std": {"uniform": [0.1, 1]}}}).trials()) == 2
    for bad, msg in [({"init_std": {"uniform": [1.0, 0.1]}}, "'init_std'.*low < high"),
                     ({"min_std": {"log_uniform": [0.0, 1.0]}}, "'min_std'.*low > 0"),
                     ({"samples": {"gauss": [0, 1]}}, "unknown distribution 'gauss'"),
                     ({"samples": {"int_uniform": [1.5, 4]}}, "integer bounds")]:
        with pytest.raises(InvalidArgumentError, match=msg):
            SweepSpec.make("run", {}, [0], FIXED, {"trials": 2, "seed": 0, "space": bad})
    with pytest.raises(InvalidArgumentError, match="also in the grid"):
        SweepSpec.make("run", {"samples": [5]}, [0], FIXED, {"trials": 2, "space": {"samples": {"choice": [1]}}})


def test_toml_spec_equals_the_same_sweep_made_in_code(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text("""
task = "pendulum-swingup"
steps = 8
seeds = "0..2"

[options]
iterations = 2

[grid]
planner = ["cem", "icem"]
samples = [20, 40]

[random]
trials = 2
seed = 3
[random.space]
init_std = {uniform = [0.1, 1.0]}
""")
    got = load_toml(str(path))
    want = SweepSpec.make("run", {"planner": ["cem", "icem"], "samples": [20, 40]}, [0, 1, 2],
                          {"task": "pendulum-swingup", "steps": 8, "iterations": 2},
                          {"trials": 2, "seed": 3, "space": {"init_std": {"uniform": [0.1, 1.0]}}})
    assert [t.id for t in got.trials()] == [t.id for t in want.trials()] and got.id == want.id
    path.write_text('task = "pendulum-swingup"\nsamples = [1, 2]\n')
    with pytest.raises(InvalidArgumentError, match=r"unknown key\(s\) \['samples'\]; known: \['command'"):
        load_toml(str(path))
    path.write_text('task = "pendulum-swingup"\n[grid\n')
    with pytest.raises(InvalidArgumentError, match="not valid TOML"):
        load_toml(str(path))
    with pytest.raises(InvalidArgumentError, match="no such file"):
        load_toml(str(tmp_path / "missing.toml"))


def test_a_failing_trial_is_reported_after_the_others_finish(tmp_path, monkeypatch):
    s = SweepSpec.make("run", {"samples": [20, 30, 40]}, [0], FIXED)
    bad = s.trials()[1].id
    real = runner.run_trial

    def flaky(trial):
        if trial.id == bad:
            raise RuntimeError("boom")
        return real(trial)

    monkeypatch.setattr(runner, "run_trial", flaky)
    path = str(tmp_path / "r.jsonl")
    with pytest.raises(TrialsFailedError, match=f"1 of 3 trials failed: {bad}.*RuntimeError: boom") as info:
        run_sweep(s, path, workers=1)
    assert [t.id for t, _ in info.value.failures] == [bad]
    ids = [json.loads(x)["id"] for x in open(path).read().splitlines()[1:]]
    assert ids == [s.trials()[0].id, s.trials()[2].id]
    monkeypatch.setattr(runner, "run_trial", real)
    seen = []
    run_sweep(s, path, workers=1, on_record=lambda rec, done, total: seen.append(rec["id"]))
    assert seen == [bad]  # the rerun retries only the failed trial


@pytest.mark.heavy
def test_ray_backend_records_equal_the_local_pool(tmp_path, monkeypatch):
    """Four trials (an analytic task and a MuJoCo robot, two seeds each) on a local Ray instance
    and on the local pool: the same records, timings aside; no MUJOCO_LOG.TXT from any worker."""
    import ray  # noqa: F401 - in the test extra; the test fails, not skips, without it

    monkeypatch.chdir(tmp_path)  # the workers' working directory: the suite's shared one may hold a log already

    s = SweepSpec.make("run", {"task": ["pendulum-swingup", "HalfCheetah-v5"]}, [0, 1],
                       {"steps": 3, "samples": 8, "iterations": 2})
    local = run_sweep(s, str(tmp_path / "local.jsonl"), workers=2)
    on_ray = run_sweep(s, str(tmp_path / "ray.jsonl"), backend="ray", workers=2)
    assert [r["id"] for r in on_ray] == [t.id for t in s.trials()]
    assert [_strip(r) for r in on_ray] == [_strip(r) for r in local]
    assert all(len(r["curve"]["rewards"]) == 3 for r in on_ray)
    assert not os.path.exists("MUJOCO_LOG.TXT")
    # the same file resumed on the other backend: nothing left to run
    seen = []
    run_sweep(s, str(tmp_path / "ray.jsonl"), workers=2, on_record=lambda *a: seen.append(a))
    assert seen == []


def test_train_policy_trials_equal_the_learner_called_directly(tmp_path):
    """A train-policy sweep's record holds what ``sac`` returns for that seed (the final
    evaluation's return, the learning curve); an unknown learner option is named before any
    trial runs."""
    from recede.envs import get_task
    from recede.policy_learning.sac import SACConfig, sac

    opts = {"learning_starts": 50, "eval_every": 100, "eval_episodes": 1, "hidden": "16x16"}
    s = SweepSpec.make("train-policy", {"batch_size": [32]}, [3], {"task": "pendulum-swingup", "steps": 200, **opts})
    (rec,) = run_sweep(s, str(tmp_path / "r.jsonl"), workers=1)
    assert rec["trial"]["algo"] == "sac" and "planner" not in rec["trial"]
    cfg = SACConfig(steps=200, batch_size=32, learning_starts=50, eval_every=100, eval_episodes=1, hidden=(16, 16))
    direct = sac(get_task("pendulum-swingup"), cfg, seeds=[3])
    assert rec["curve"]["env_steps"] == [e.env_steps for e in direct.evals] == [100, 200]
    assert rec["curve"]["returns"] == [e.return_mean for e in direct.evals]
    assert rec["summary"]["return"] == direct.evals[-1].return_mean and rec["summary"]["steps"] == 200
    bad = SweepSpec.make("train-policy", {"batch_sze": [32]}, [0], {"task": "pendulum-swingup"})
    with pytest.raises(InvalidArgumentError, match="sac has no option 'batch_sze'; its options: learning_starts"):
        run_sweep(bad, str(tmp_path / "bad.jsonl"))
    assert not (tmp_path / "bad.jsonl").exists()
    with pytest.raises(InvalidArgumentError, match="algo must be one of"):
        run_sweep(SweepSpec.make("train-policy", {"algo": ["dqn"]}, [0], {"task": "pendulum-swingup"}),
                  str(tmp_path / "bad.jsonl"))


def test_command_line_spec_file_and_report(tmp_path, capsys):
    """`recede sweep --spec` then `recede sweep-report`: the table's rows are the configs in the
    sweep's order, with the mean over seeds of the records' returns; bad flags exit 2 naming
    themselves before anything runs."""
    import numpy as np

    from recede.cli import main

    spec = tmp_path / "s.toml"
    spec.write_text('task = "pendulum-swingup"\nsteps = 6\nseeds = "0..1"\n[grid]\nsamples = [20, 30]\n')
    out = tmp_path / "out"
    assert main(["sweep", "--spec", str(spec), "--workers", "1", "--no-progress", "--out", str(out)]) == 0
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()[1:]]
    capsys.readouterr()
    assert main(["sweep-report", str(out / "results.jsonl")]) == 0
    text = capsys.readouterr().out
    rows = [line.split() for line in text.splitlines() if line.split() and line.split()[0] in ("20", "30")]
    for row, samples in zip(rows, (20, 30)):
        mean = np.mean([r["summary"]["return"] for r in recs if r["trial"]["options"]["samples"] == samples])
        assert row[0] == str(samples) and row[1] == "2" and abs(float(row[2]) - mean) <= 0.5 * 10 ** -2 + 1e-3 * abs(mean)
    assert len(rows) == 2
    for name in ("summary.csv", "return-bars.png", "return-curves.png", "return-vs-samples.png"):
        assert (out / name).read_bytes()[:4] in (b"labe", b"\x89PNG")
    for argv, msg in [(["--spec", str(spec), "--grid", "samples=5"], "--spec: the file gives the sweep; drop --grid"),
                      (["--task", "pendulum-swingup", "--grid", "samples=5", "--seeds", "3..1"], "count down; write 1..3"),
                      (["--task", "pendulum-swingup"], "grid is empty"),
                      (["--task", "pendulum-swingup", "--grid", "sampels=5"],
                       "no option 'sampels'; its options: samples, iterations"),
                      (["--task", "pendulum-swingup", "--grid", "samples=5", "--address", "auto"],
                       "--address: only with --backend ray"),
                      (["--task", "pendulum-swingup", "--random", "init_std=gauss:0,1"], "unknown distribution 'gauss'")]:
        assert main(["sweep", *argv, "--out", str(tmp_path / "bad")]) == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "bad" / "results.jsonl").exists()


@pytest.mark.heavy
def test_ctrl_c_stops_the_pool_and_keeps_the_finished_trials(tmp_path):
    """SIGINT to a 2-worker sweep's process group once a trial is on disk: the sweep exits 130
    with no worker left behind (the pool does not wait for the running trials) and the finished
    records stay whole (resuming is the SIGKILL test's)."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "int"
    argv = [sys.executable, "-m", "recede", "sweep", "--task", "pendulum-swingup", "--steps", "200",
            "--grid", "samples=100,200,300", "--seeds", "0..1", "--workers", "2",
            "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    path = out / "results.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (path.exists() and len(path.read_bytes().splitlines()) >= 2):
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended before it could be interrupted: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        rc = proc.wait(timeout=120)  # a hang guard, not a timing
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the sweep did not stop on SIGINT")
    assert rc == 130, proc.stderr.read().decode()[-2000:]
    assert "run the same command again to resume" in proc.stderr.read().decode()
    def group():
        ps = subprocess.run(["ps", "-eo", "pgid=,stat=,args="], capture_output=True, text=True).stdout
        return [line for line in ps.splitlines() if line.split()[0] == str(proc.pid) and "Z" not in line.split()[1]]

    deadline = time.monotonic() + 30  # the resource tracker exits once it sees its pipe close
    while group() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group() == []  # no worker outlived the sweep
    ids = [json.loads(x)["id"] for x in path.read_bytes().splitlines()[1:]]  # whole lines only
    assert 1 <= len(ids) < 6 and len(set(ids)) == len(ids)


def test_run_records_count_the_rollouts_each_plan_evaluates():
    """``samples_per_plan``: CEM evaluates samples x iterations sequences per step; iCEM the sum of
    its decaying populations (its config's own formula)."""
    from recede.planners.icem import ICEMConfig
    from recede.sweeps import run_trial

    s = SweepSpec.make("run", {"planner": ["cem", "icem"]}, [0], {**FIXED, "steps": 3, "samples": 25, "iterations": 4})
    cem, icem = (run_trial(t)["summary"]["samples_per_plan"] for t in s.trials())
    assert cem == 25 * 4
    cfg = ICEMConfig(samples=25, iterations=4)
    assert icem == sum(cfg.population(i) for i in range(4)) < cem


def test_mujoco_rollout_threads_follow_recede_num_threads(monkeypatch):
    """Sweep workers set RECEDE_NUM_THREADS=1 (with Numba's and OpenMP's limits): a MuJoCo model
    built there runs its rollouts on the calling thread instead of one thread per core."""
    from recede.envs import get_task
    from recede.models import mujoco as mj
    from recede.sweeps.runner import ONE_THREAD

    assert ONE_THREAD[mj.THREADS_ENV] == "1"
    monkeypatch.setenv(mj.THREADS_ENV, "1")
    assert mj.default_threads() == 1
    assert get_task("inverted-pendulum").problem().dynamics.nthread == 1
    monkeypatch.setenv(mj.THREADS_ENV, "1000")
    assert mj.default_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv(mj.THREADS_ENV, "zero")
    with pytest.raises(InvalidArgumentError, match="RECEDE_NUM_THREADS must be an integer >= 1, got 'zero'"):
        mj.default_threads()
