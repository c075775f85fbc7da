"""iCEM and MPPI close the loop on the swing-ups, with each task's default options (heavy)."""

import pytest

from recede import MPC, make_planner, run_closed_loop
from recede.envs import get_task

CASES = [("pendulum-swingup", "icem"), ("pendulum-swingup", "mppi"), ("cartpole-swingup", "icem"),
         ("cartpole-swingup", "mppi"), ("acrobot-swingup", "icem"), ("acrobot-swingup", "mppi")]


@pytest.mark.heavy
@pytest.mark.parametrize("task_name, planner", CASES)
@pytest.mark.parametrize("seed", range(5))
def test_swingup_succeeds(task_name, planner, seed):
    task = get_task(task_name)
    problem = task.problem(task.horizon_for(planner))
    mpc = MPC(make_planner(planner, problem, **task.planner_defaults[planner]), rng=seed)
    env = task.make_env()
    log = run_closed_loop(env, mpc, seed=seed, state_fn=task.state_of)
    # the task's own criterion, judged by the environment over the final seconds
    assert log.success, (task_name, planner, seed, log.states[-1])
