"""``recede collect TASK --policy DIR [--noise STD]``: a trained policy's data, as .npz or as a
D4RL-style HDF5 file.

Oracles: the saved policy itself acting on the recorded states (noise 0); the noise formula
replayed from its documented generator on those states (noise > 0); the library's ``collect``
for the file the CLI wrote.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from recede.cli import main
from recede.data import TransitionDataset, load_d4rl_hdf5
from recede.envs import get_task
from recede.policies import GaussianPolicyNet, load_policy, save_policy, task_sizes
from recede.policy_learning import collect

TASK = "pendulum-swingup"


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def tiny_policy(path, task_name=TASK, seed=0):
    """An untrained (random-weight) Gaussian policy of ``task_name`` saved at ``path``."""
    task = get_task(task_name)
    _, nobs, nu = task_sizes(task)
    d = task.dynamics()
    net = GaussianPolicyNet(1, nobs, nu, np.array(d.action_low), np.array(d.action_high), hidden=(16,),
                            seeds=[seed])
    save_policy(net, str(path), task=task, meta={"algo": "sac", "seed": seed})
    return path


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    return tiny_policy(tmp_path_factory.mktemp("policy") / "p")


def test_collect_records_the_policys_own_actions(tmp_path, policy_dir):
    out = tmp_path / "d.npz"
    code, stdout, stderr = cli("collect", TASK, "--policy", policy_dir, "--episodes", 2, "--steps", 15,
                               "--seed", 4, "--out", out, "--no-progress")
    assert code == 0, stderr
    assert f"policy:sac {policy_dir}" in stdout and "transitions   30" in stdout
    d = TransitionDataset.load(out)
    assert len(d) == 30 and d.episodes() == [(0, 15), (15, 30)]
    assert d.truncated[[14, 29]].all() and not d.terminated.any()
    pol = load_policy(str(policy_dir), get_task(TASK))
    # the loop asks for one state at a time: exactly act(x); the batched forward agrees to float32
    np.testing.assert_array_equal(d.actions, np.stack([pol.act(x) for x in d.observations]))
    np.testing.assert_allclose(d.actions, pol.act_batch(d.observations), rtol=1e-6, atol=1e-7)
    # it is the policy's data, not a random policy's: nothing of the same seed's random actions
    assert not np.allclose(d.actions, collect(get_task(TASK), "random", 2, seed=4, steps=15).actions)


def test_collect_with_noise_writes_d4rl_hdf5(tmp_path, policy_dir):
    std, seed = 0.4, 2
    out = tmp_path / "d.hdf5"
    code, stdout, stderr = cli("collect", TASK, "--policy", policy_dir, "--noise", std, "--episodes", 2,
                               "--steps", 20, "--seed", seed, "--out", out, "--no-progress")
    assert code == 0, stderr
    assert "(D4RL layout)" in stdout and "noise         0.4" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.hdf5"]
    d = load_d4rl_hdf5(out)

    task = get_task(TASK)
    pol = load_policy(str(policy_dir), task)
    # the same run through the library, read back exactly (episode ids 0, 1 are kept)
    ref = collect(task, pol, 2, seed=seed, steps=20, noise=std)
    for name in ("observations", "actions", "next_observations", "rewards", "terminated",
                 "truncated", "episode_ids"):
        np.testing.assert_array_equal(getattr(d, name), getattr(ref, name), err_msg=name)

    # the noise: clip(act(x) + std * half_width * eps, low, high), eps from default_rng([seed, 1])
    low, high = task.dynamics().action_low, task.dynamics().action_high
    eps = np.random.default_rng([seed, 1]).standard_normal((40, 1))
    clean = np.stack([pol.act(x) for x in d.observations])
    np.testing.assert_array_equal(d.actions, np.clip(clean + std * (high - low) / 2 * eps, low, high))
    assert not np.allclose(d.actions, clean)


@pytest.mark.parametrize("extra, message", [
    (["--noise", "-0.1"], "recede: error: argument --noise: must be a number >= 0, got -0.1"),
    (["--noise", "nan"], "recede: error: argument --noise: must be a number >= 0, got nan"),
    (["--planner", "mppi"], "recede: error: argument --planner: only with --policy mpc"),
    (["--out", "{tmp}/d.csv"], "recede: error: argument --out: the path must end in .npz, .hdf5 or .h5"),
])
def test_collect_refuses_bad_flags_before_running(tmp_path, policy_dir, extra, message):
    extra = [e.format(tmp=tmp_path) for e in extra]
    code, stdout, stderr = cli("collect", TASK, "--policy", policy_dir, "--steps", 3,
                               "--out", tmp_path / "d.npz", "--no-progress", *extra)
    assert code == 2 and stderr.startswith(message) and stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_collect_refuses_another_tasks_policy_and_a_missing_one(tmp_path):
    other = tiny_policy(tmp_path / "cartpole", "cartpole-swingup")
    code, stdout, stderr = cli("collect", TASK, "--policy", other, "--steps", 3,
                               "--out", tmp_path / "d.npz", "--no-progress")
    assert code == 2 and stdout == ""
    assert stderr == (f"recede: error: argument --policy: policy {str(other)!r} acts on 5 observations "
                      f"with 1 actions (task 'cartpole-swingup'), but task {TASK!r} has 3 observations "
                      f"and 1 actions\n")
    code, _, stderr = cli("collect", TASK, "--policy", tmp_path / "nowhere", "--out", tmp_path / "d.npz")
    assert code == 2 and stderr == (f"recede: error: argument --policy: must be random, mpc or a policy "
                                    f"checkpoint directory, got {str(tmp_path / 'nowhere')!r} (no such "
                                    f"directory)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cartpole"]
