"""MPC controller semantics and the closed-loop runner."""

import numpy as np
import pytest

from recede import CEM, MPC, Plan, Problem, QuadraticCost, Status, run_closed_loop
from recede.experiments import PlanRecorder
from recede.envs import get_task
from recede.errors import InvalidArgumentError
from recede.models.linear import LinearDynamics


class RecordingPlanner:
    """Returns actions 0, 1, 2, ... offset by the call count, and records warm starts."""

    def __init__(self, problem):
        self.problem, self.calls = problem, []

    def plan(self, x0, *, warm_start=None, rng=None):
        n = len(self.calls)
        self.calls.append((np.array(x0), None if warm_start is None else np.array(warm_start)))
        H = self.problem.horizon
        actions = (np.arange(H, dtype=float) + 100 * n)[:, None]
        return Plan(actions=actions, states=np.zeros((H + 1, 1)), cost=0.0, iterations=1,
                    status=Status.MAX_ITERATIONS)


def problem(H=5):
    dyn = LinearDynamics([[1.0]], [[1.0]], action_low=[-1000], action_high=[1000])
    return Problem(dyn, QuadraticCost([1.0], [0.1]), H)


def test_replan_every_and_shifted_warm_start():
    planner = RecordingPlanner(problem())
    mpc = MPC(planner, replan_every=3)
    actions = [mpc.act(np.array([float(t)]))[0] for t in range(7)]
    # plans at t = 0, 3, 6; in between the stored plan's next actions are applied
    assert actions == [0, 1, 2, 100, 101, 102, 200]
    assert [c[0][0] for c in planner.calls] == [0.0, 3.0, 6.0]
    assert planner.calls[0][1] is None
    # warm start = previous plan shifted by the 3 executed steps, last action repeated
    np.testing.assert_array_equal(planner.calls[1][1][:, 0], [3, 4, 4, 4, 4])
    assert np.isfinite(mpc.last_plan_time)  # the 7th call re-planned


def test_feedback_between_replans_and_clipping():
    pb = problem(H=4)

    class FeedbackPlanner(RecordingPlanner):
        def plan(self, x0, *, warm_start=None, rng=None):
            H = self.problem.horizon
            return Plan(actions=np.zeros((H, 1)), states=np.zeros((H + 1, 1)), cost=0.0,
                        iterations=1, status=Status.CONVERGED, K=np.full((H, 1, 1), -2.0),
                        k=np.full((H, 1), 0.5))

    mpc = MPC(FeedbackPlanner(pb), replan_every=4)
    assert mpc.act(np.array([0.0]))[0] == 0.5          # u = 0 + 0.5 + (-2)(0 - 0)
    assert mpc.act(np.array([1.0]))[0] == -1.5         # u = 0 + 0.5 + (-2)(1 - 0)
    assert mpc.act(np.array([1e6]))[0] == -1000.0      # clipped to the bound


def test_mpc_rejects_bad_arguments():
    with pytest.raises(InvalidArgumentError, match=r"replan_every must be an integer >= 1, got 0"):
        MPC(RecordingPlanner(problem()), replan_every=0)
    with pytest.raises(InvalidArgumentError, match=r"x must have shape \(1,\), got \(2,\)"):
        MPC(RecordingPlanner(problem())).act(np.zeros(2))


def test_closed_loop_log_is_consistent_and_reproducible():
    task = get_task("double-integrator")
    runs = []
    for _ in range(2):
        mpc = PlanRecorder(MPC(CEM(task.problem(), samples=64, iterations=3), replan_every=2, rng=7))
        runs.append(mpc.into(run_closed_loop(task.make_env(), mpc, seed=3)))
    log = runs[0]
    assert log.steps == task.episode_steps
    assert log.states.shape == (task.episode_steps + 1, 2) and log.actions.shape == (task.episode_steps, 1)
    # the logged states are the model's rollout of the logged actions from the logged start
    dyn = task.dynamics()
    X = dyn.rollout(log.states[0], log.actions[None])[0]
    np.testing.assert_allclose(X, log.states, rtol=0, atol=1e-12)
    # rewards are minus the task's running cost; planning happened every other step
    cost = task.cost(dyn)
    np.testing.assert_allclose(log.rewards, [-cost.stage(x, u) for x, u in zip(log.states, log.actions)])
    assert np.all(np.isfinite(log.plan_times[::2])) and np.all(np.isnan(log.plan_times[1::2]))
    assert log.summary()["return"] == pytest.approx(log.rewards.sum())
    assert runs[1].actions.tobytes() == log.actions.tobytes()
    assert log.success  # it reaches the origin and stays there
