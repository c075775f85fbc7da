"""Tasks, their Gymnasium environments, the fused cost path, and closed-loop success."""

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import recede
from recede import MPC, QuadraticCost, get_task, list_tasks, make_planner, run_closed_loop
from recede.envs import GYM_TASKS, TASKS as OUR_TASKS, HoldCriterion
from recede.errors import UnknownNameError

TASKS = sorted(OUR_TASKS)  # ours: analytic and MuJoCo (the Gymnasium robots: tests/envs)
ANALYTIC = [name for name in TASKS if OUR_TASKS[name].asset is None]


def test_every_task_is_listed_and_registered_with_gymnasium():
    assert TASKS == ["acrobot-swingup", "cartpole-swingup", "cartpole-swingup-mj",
                     "double-integrator", "pendulum-swingup", "unicycle-parking"]
    assert list_tasks() == TASKS + list(GYM_TASKS)
    for name in TASKS:
        env = gymnasium.make(f"recede/{name}-v0")
        assert env.spec.max_episode_steps == get_task(name).episode_steps
        env.close()


@pytest.mark.parametrize("name", TASKS)
def test_env_passes_gymnasium_checks_and_steps_the_model(name):
    task = get_task(name)
    env = task.make_env()
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=4)
    rng = np.random.default_rng(0)
    dyn, cost = task.dynamics(), task.cost()
    x = obs.copy()
    for _ in range(5):
        u = rng.uniform(env.action_space.low, env.action_space.high)
        obs, r, term, trunc, info = env.step(u)
        # the environment is the planning model: one step of the batched rollout, reward = -cost
        np.testing.assert_array_equal(obs, dyn.rollout(x, u[None, None])[0, 1])
        assert r == -cost.stage(x, u)
        x = obs
    # actions outside the bounds are clipped, as the planner's are
    env.reset(seed=0, options={"state": x})
    big = env.action_space.high * 10
    np.testing.assert_array_equal(env.step(big)[0], dyn.step_one(x, env.action_space.high))


def test_reset_is_seeded():
    env = get_task("cartpole-swingup").make_env()
    assert np.array_equal(env.reset(seed=3)[0], env.reset(seed=3)[0])
    assert not np.array_equal(env.reset(seed=3)[0], env.reset(seed=4)[0])


def test_hold_criterion_on_constructed_episodes():
    crit = HoldCriterion(dims=(1,), targets=(0.0,), tolerances=(0.2,), angles=(True,), hold_time=1.0)
    dt = 0.1
    good = np.zeros((30, 2))
    good[:15, 1] = np.pi                      # hanging for 1.5 s, then upright
    good[20:, 1] = 2 * np.pi + 0.1            # upright again after a full turn: angles wrap
    assert crit(good, dt)
    late = good.copy()
    late[-3, 1] = 0.25                        # leaves the band inside the final second
    assert not crit(late, dt)
    assert not crit(good[:5], dt)             # shorter than the hold time
    assert "for the final 1 s" in crit.describe(("x", "theta"))


def test_unknown_task_names_the_known_ones():
    with pytest.raises(UnknownNameError) as e:
        get_task("cartpole")
    assert str(e.value) == (f"unknown task 'cartpole'; known tasks: {', '.join(list_tasks())} "
                            f"(or their Gymnasium ids)")


@pytest.mark.parametrize("name", ANALYTIC)
def test_fused_rollout_cost_equals_rollout_then_cost(name):
    task = get_task(name)
    problem = task.problem(horizon=17)
    dyn = problem.dynamics
    rng = np.random.default_rng(1)
    U = rng.uniform(dyn.action_low, dyn.action_high, size=(33, 17, dyn.nu))
    x0 = task.sample_initial_state(rng)
    fused = problem.costs(x0, U)
    reference = problem.cost(dyn.rollout(x0, U), U)
    np.testing.assert_allclose(fused, reference, rtol=1e-13, atol=0)
    # a non-diagonal Q takes the full quadratic form in both paths
    A = rng.normal(size=(dyn.nx, dyn.nx))
    full = QuadraticCost(A @ A.T, [0.3] * dyn.nu, np.eye(dyn.nx), x_goal=task.goal,
                         angle_dims=dyn.angle_dims)
    np.testing.assert_allclose(dyn.rollout_cost(x0, U, full), full(dyn.rollout(x0, U), U),
                               rtol=1e-13)


@pytest.mark.heavy
def test_cem_mpc_swings_up_the_mujoco_cartpole():
    """cartpole-swingup-mj: CEM-MPC on true MuJoCo physics (seed 0; the CLI reports 0..2)."""
    task = get_task("cartpole-swingup-mj")
    planner = make_planner("cem", task.problem(), **task.planner_defaults["cem"])
    log = run_closed_loop(task.make_env(), MPC(planner, rng=0), seed=0)
    assert log.steps == task.episode_steps
    assert log.success, f"final state {log.states[-1]}"


@pytest.mark.heavy
@pytest.mark.parametrize("name", ["cartpole-swingup", "pendulum-swingup"])
@pytest.mark.parametrize("seed", range(5))
def test_cem_mpc_succeeds_with_the_task_defaults(name, seed):
    task = get_task(name)
    planner = make_planner("cem", task.problem(), **task.planner_defaults["cem"])
    log = run_closed_loop(task.make_env(), MPC(planner, rng=seed), seed=seed)
    assert log.steps == task.episode_steps
    assert log.success, f"{name} seed {seed}: final state {log.states[-1]}"


def test_public_api_plans_in_five_lines():
    task = recede.get_task("cartpole-swingup")
    planner = recede.CEM(task.problem(horizon=20), samples=64, iterations=2)
    plan = planner.plan(task.initial_state, rng=0)
    assert plan.actions.shape == (20, 1) and plan.states.shape == (21, 4)
    assert plan.status is recede.Status.MAX_ITERATIONS and len(plan.trace) == 2
