"""One task interface for the analytic tasks and the Gymnasium robots: same methods, same
signatures; observation(X) against its oracles; the task's own model with nthread."""

import inspect

import numpy as np
import pytest

from recede import get_task
from recede.envs import GYM_TASKS, TASKS, GymTask, Task
from recede.errors import InvalidArgumentError

METHODS = ("dynamics", "cost", "problem", "make_env", "state_of", "observation", "judge",
           "describe_success", "describe_termination", "horizon_for", "cameras")


@pytest.mark.parametrize("method", METHODS)
def test_both_kinds_of_task_share_methods_and_signatures(method):
    a, b = inspect.signature(getattr(Task, method)), inspect.signature(getattr(GymTask, method))
    assert [(p.name, p.kind, p.default) for p in a.parameters.values()] == \
        [(p.name, p.kind, p.default) for p in b.parameters.values()]
    for task in (*TASKS.values(), *GYM_TASKS.values()):
        assert callable(getattr(task, method))
        assert isinstance(task.can_render, bool)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_analytic_observation_is_sin_cos_of_angles(name):
    task = get_task(name)
    d = task.dynamics()
    angles = set(d.angle_dims)
    X = np.random.default_rng(0).normal(size=(3, 5, d.nx)) * 4.0
    expected = []
    for i in range(d.nx):  # the oracle: dims in place, each angle as (sin, cos)
        expected += [np.sin(X[..., i]), np.cos(X[..., i])] if i in angles else [X[..., i]]
    obs = task.observation(X)
    assert obs.shape == (3, 5, d.nx + len(angles))
    np.testing.assert_array_equal(obs, np.stack(expected, axis=-1))
    np.testing.assert_array_equal(task.observation(X[0, 0]), obs[0, 0])


@pytest.mark.parametrize("name", ["inverted-pendulum", "half-cheetah", "hopper", "walker2d"])
def test_robot_observation_equals_the_envs_own(name):
    """These robots observe qpos/qvel only: task.observation(state) is the env's observation
    (HalfCheetah drops qpos[0], Hopper and Walker clip qvel), on a random trajectory."""
    task = get_task(name)
    env = task.make_env()
    obs, _ = env.reset(seed=1)
    env.action_space.seed(1)
    states, observed = [task.state_of(env)], [obs]
    for _ in range(60):
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        states.append(task.state_of(env)), observed.append(obs)
        if term or trunc:
            break
    env.close()
    X = np.array(states)
    assert np.max(np.abs(task.observation(X) - np.array(observed))) <= 1e-12
    assert np.max(np.abs(task.observation(X[None])[0] - np.array(observed))) <= 1e-12


def test_dynamics_with_threads_and_the_error_without_a_mujoco_model():
    """(Was MujocoDynamics.from_task: models no longer import the task registry.)"""
    d = get_task("HalfCheetah-v5").dynamics(nthread=1)
    assert (d.nq, d.nv, d.nu, d.frame_skip, d.nthread) == (9, 9, 6, 5, 1)
    assert get_task("cartpole-swingup-mj").dynamics(nthread=1).nthread == 1
    with pytest.raises(InvalidArgumentError, match="task 'pendulum-swingup' has no MuJoCo model"):
        get_task("pendulum-swingup").dynamics(nthread=2)


def test_analytic_judge_agrees_with_the_envs_report():
    task = get_task("double-integrator")
    env = task.make_env()
    env.reset(seed=0)
    info = {}
    for t in range(task.episode_steps):
        x = env.unwrapped.state
        _, _, term, trunc, info = env.step(np.clip(-2.0 * x[0] - 2.0 * x[1], -1, 1))
    assert trunc and not term and info["success"] is True
    assert task.judge(env, False, task.episode_steps) is True
    assert task.judge(env, False, task.episode_steps - 1) is None  # cut short: unknown
    assert task.judge(env, True, 5) is False
