"""iLQR-MPC and DDP-MPC close the loop on the analytic tasks with each task's defaults (heavy)."""

import pytest

from recede import MPC, make_planner, run_closed_loop
from recede.envs import get_task

TASKS = ["pendulum-swingup", "cartpole-swingup", "acrobot-swingup", "unicycle-parking"]


@pytest.mark.heavy
@pytest.mark.parametrize("task_name", TASKS)
@pytest.mark.parametrize("planner, seeds", [("ilqr", range(3)), ("ddp", range(1))])
def test_gradient_mpc_succeeds(task_name, planner, seeds):
    task = get_task(task_name)
    for seed in seeds:
        problem = task.problem(task.horizon_for(planner))
        mpc = MPC(make_planner(planner, problem, **task.planner_defaults.get(planner, {})), rng=seed)
        log = run_closed_loop(task.make_env(), mpc, seed=seed, state_fn=task.state_of)
        # the task's own criterion, judged by the environment over the final seconds
        assert log.success, (task_name, planner, seed, log.states[-1])
