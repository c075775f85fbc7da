"""LQRController: stabilises the analytic systems at upright, through run_closed_loop."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from recede import FunctionCost, Problem, get_task, run_closed_loop
from recede.controllers import LQRController
from recede.errors import InvalidArgumentError
from recede.models.analytic import Pendulum
from recede.planners.lqr import lqr_infinite


@pytest.mark.parametrize("name, x0", [("cartpole-swingup", (0.1, 0.15, 0.0, -0.1)),
                                      ("pendulum-swingup", (0.15, 0.0))])  # gravity torque 1.5 < 2.5
def test_holds_upright_from_nearby(name, x0):
    task = dataclasses.replace(get_task(name), initial_state=x0, initial_spread=(0.0,) * len(x0))
    problem = task.problem()
    ctrl = LQRController(problem)
    d = problem.dynamics
    A, B = d.linearize(np.zeros((2, d.nx)), np.zeros((1, d.nu)))
    K, _ = lqr_infinite(A[0], B[0], problem.cost.Q, problem.cost.R)
    np.testing.assert_allclose(ctrl.K, K)
    assert np.abs(np.linalg.eigvals(A[0] + B[0] @ K)).max() < 1.0  # stable linear closed loop
    log = run_closed_loop(task.make_env(), ctrl, seed=0, state_fn=task.state_of)
    assert log.success
    assert np.abs(log.states[-1]).max() < 1e-3
    assert np.all(log.actions <= d.action_high) and np.all(log.actions >= d.action_low)


def test_wraps_angles_and_clips():
    problem = get_task("pendulum-swingup").problem()
    ctrl = LQRController(problem)
    x = np.array([0.05, 0.1])
    u = ctrl.act(x)
    np.testing.assert_allclose(u, ctrl.K @ x)
    np.testing.assert_allclose(ctrl.act(x + [4 * math.pi, 0.0]), u, atol=1e-12)
    np.testing.assert_allclose(ctrl.act(x - [2 * math.pi, 0.0]), u, atol=1e-12)
    assert ctrl.act(np.array([1.0, 0.0]))[0] == problem.action_low[0]  # saturates, clipped


def test_bad_goals_and_costs_are_named():
    problem = get_task("pendulum-swingup").problem()
    with pytest.raises(InvalidArgumentError, match="is not an equilibrium"):
        LQRController(problem, x_goal=[0.5, 0.0])
    other = Problem(Pendulum(), FunctionCost(lambda X, U: X[..., 0] ** 2), 10)
    with pytest.raises(InvalidArgumentError, match="Q, R and x_goal are needed"):
        LQRController(other)
    ctrl = LQRController(other, Q=[1.0, 0.1], R=[0.01], x_goal=[0.0, 0.0])
    assert ctrl.K.shape == (1, 2)
    with pytest.raises(InvalidArgumentError, match="problem must be a recede Problem"):
        LQRController("pendulum")
