"""iLQR on MuJoCo: tangent-space states (a free joint: nx = 13, ndx = 12), mjd_transitionFD
Jacobians, finite-difference cost derivatives, and MPC's feedback through ``diff``."""

from __future__ import annotations

import numpy as np
import pytest

from recede import Problem
from recede.controllers import MPC
from recede.costs import FunctionCost
from recede.models.mujoco import MujocoDynamics
from recede.planners.ilqr import ILQR, ILQRConfig
from recede.problem import Status

# a puck floating in zero gravity, pushed along x, y, z and turned about z by four motors
PUCK_XML = """
<mujoco>
  <option timestep="0.01" gravity="0 0 0"/>
  <worldbody>
    <body name="puck">
      <freejoint name="free"/>
      <geom type="box" size=".1 .1 .05" mass="1"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="free" gear="1 0 0 0 0 0" ctrlrange="-2 2"/>
    <motor joint="free" gear="0 1 0 0 0 0" ctrlrange="-2 2"/>
    <motor joint="free" gear="0 0 1 0 0 0" ctrlrange="-2 2"/>
    <motor joint="free" gear="0 0 0 0 0 1" ctrlrange="-0.1 0.1"/>
  </actuator>
</mujoco>
"""
GOAL = np.array([0.5, -0.3, 0.2])


def _yaw(q):
    """Heading of quaternions q (..., 4) = (w, x, y, z) about z."""
    return 2.0 * np.arctan2(q[..., 3], q[..., 0])


def _cost():
    def running(X, U):
        return (5.0 * np.sum((X[..., 0:3] - GOAL) ** 2, -1) + 0.5 * np.sum(X[..., 7:13] ** 2, -1)
                + 2.0 * (1.0 - np.cos(_yaw(X[..., 3:7]) - 0.5)) + 0.01 * np.sum(U ** 2, -1))

    def terminal(XT):
        return 50.0 * np.sum((XT[..., 0:3] - GOAL) ** 2, -1) + 5.0 * np.sum(XT[..., 7:13] ** 2, -1)

    return FunctionCost(running, terminal)


@pytest.fixture(scope="module")
def puck():
    return MujocoDynamics(PUCK_XML, frame_skip=5, nthread=2)


def test_ilqr_moves_a_free_body_in_tangent_space(puck):
    assert (puck.nx, puck.ndx, puck.nu) == (13, 12, 4)
    problem = Problem(puck, _cost(), 30)
    x0 = np.zeros(13)
    x0[3] = 1.0  # identity quaternion
    plan = ILQR(problem, ILQRConfig(iterations=50)).plan(x0)
    assert plan.status is Status.CONVERGED, plan.info
    assert plan.K.shape == (30, 4, 12)
    np.testing.assert_allclose(np.linalg.norm(plan.states[:, 3:7], axis=1), 1.0, atol=1e-9)
    assert np.linalg.norm(plan.states[-1, :3] - GOAL) < 0.05
    assert 0.25 < _yaw(plan.states[-1, 3:7]) < 0.6  # turned towards 0.5 within the torque limit
    assert np.all(np.abs(plan.actions[:, :3]) <= 2.0) and np.all(np.abs(plan.actions[:, 3]) <= 0.1)
    # the plan's states are the model's rollout of its actions
    np.testing.assert_allclose(plan.states, puck.rollout(x0, plan.actions[None])[0], atol=1e-12)
    # the gains are the first-order response of the optimum: from a nearby start, the feedback
    # policy u = clip(u_bar + K (x [-] x_bar)) reproduces the re-solved plan to second order
    dx = np.zeros(12)
    dx[1], dx[7] = 2e-3, -2e-3  # y position and y velocity
    x1 = puck.integrate(x0, dx)
    again = ILQR(problem, ILQRConfig(iterations=50)).plan(x1, warm_start=plan)
    x, U = x1, []
    for t in range(30):
        U.append(np.clip(plan.actions[t] + plan.K[t] @ puck.diff(plan.states[t], x),
                         problem.action_low, problem.action_high))
        x = puck.step(x[None], U[-1][None])[0]
    change = np.abs(again.actions - plan.actions).max()
    assert change > 1e-3  # the start moved the plan
    assert np.abs(np.array(U) - again.actions).max() < 0.01 * change


def test_mpc_feedback_uses_the_models_tangent_difference(puck):
    problem = Problem(puck, _cost(), 20)
    x0 = np.zeros(13)
    x0[3] = 1.0
    mpc = MPC(ILQR(problem, ILQRConfig(iterations=20)), replan_every=4)
    x = x0
    for _ in range(12):
        u = mpc.act(x)  # a K (nu, 12) against a 13-d state only works through diff
        assert u.shape == (4,)
        x = puck.step(x[None], u[None])[0]
    assert np.linalg.norm(x[:3] - GOAL) < np.linalg.norm(x0[:3] - GOAL)
