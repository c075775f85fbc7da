"""MCTS-MPC closes the loop with each task's defaults (heavy): cart-pole swing-up with discrete
forces, pendulum swing-up with progressive widening, and the MuJoCo cart-pole with batched leaf
evaluation."""

import pytest

from recede import MPC, make_planner, run_closed_loop
from recede.envs import get_task


@pytest.mark.heavy
@pytest.mark.parametrize("task_name, seeds", [("cartpole-swingup", range(3)),
                                              ("pendulum-swingup", range(3))])
def test_mcts_mpc_succeeds(task_name, seeds):
    task = get_task(task_name)
    options = task.planner_defaults["mcts"]
    assert ("actions" in options) == (task_name == "cartpole-swingup")  # discrete vs widening
    for seed in seeds:
        planner = make_planner("mcts", task.problem(task.horizon_for("mcts")), **options)
        log = run_closed_loop(task.make_env(), MPC(planner, rng=seed), seed=seed,
                              state_fn=task.state_of)
        assert planner.fused
        assert log.success, (task_name, seed, log.states[-1])


@pytest.mark.heavy
def test_mcts_batched_on_mujoco_runs():
    """The MuJoCo twin goes through the batched path (virtual loss, one rollout per wave); a
    short run checks that it plans within the bounds and lifts the pole towards upright."""
    pytest.importorskip("mujoco")
    task = get_task("cartpole-swingup-mj")
    planner = make_planner("mcts", task.problem(task.horizon_for("mcts")),
                           **{**task.planner_defaults["mcts"], "simulations": 256})
    log = run_closed_loop(task.make_env(), MPC(planner, rng=0), seed=0, steps=20,
                          state_fn=task.state_of)
    assert not planner.fused
    assert log.actions.shape == (20, 1) and abs(log.actions).max() <= 10.0
    assert planner.tree()["visits"][0] == 256
