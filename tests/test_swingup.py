"""SwingUpCost and lqr_value against reference loops and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recede import Problem, get_task
from recede.errors import InvalidArgumentError
from recede.models.analytic import Acrobot, CartPole, Pendulum, Unicycle
from recede.swingup import SwingUpCost, lqr_value

Q4, R1 = np.array([2.0, 1.0, 0.1, 0.1]), np.array([0.05])


def _riccati_fixed_point(A, B, Q, R, iters=20000):
    """The value recursion P <- Q + A'PA - A'PB (R + B'PB)^-1 B'PA from P = Q, to convergence."""
    P = Q.copy()
    for _ in range(iters):
        K = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
        nxt = Q + A.T @ P @ (A - B @ K)
        if np.max(np.abs(nxt - P)) <= 1e-12 * np.max(np.abs(P)):
            return nxt
        P = nxt
    raise AssertionError("Riccati recursion did not converge")


@pytest.mark.parametrize("system, goal", [(Acrobot(), np.zeros(4)), (Pendulum(), np.zeros(2)),
                                          (CartPole(), np.zeros(4))])
def test_lqr_value_is_the_riccati_fixed_point(system, goal):
    Q, R = np.ones(system.nx) * 0.5, np.ones(system.nu) * 0.1
    P = lqr_value(system, Q, R, x_goal=goal)
    A, B = system.linearize(np.stack([goal, goal]), np.zeros((1, system.nu)))
    np.testing.assert_allclose(P, _riccati_fixed_point(A[0], B[0], np.diag(Q), np.diag(R)),
                               rtol=1e-7, atol=1e-9)


def test_lqr_value_is_the_cost_of_the_lqr_controller_on_the_linear_model():
    # closed form: sum_t 1/2 (x'Qx + u'Ru) under u = -Kx equals 1/2 x0'P x0
    system = Acrobot()
    Q, R = np.diag(Q4), np.diag(R1)
    P = lqr_value(system, Q4, R1, x_goal=np.zeros(4))
    A, B = (M[0] for M in system.linearize(np.zeros((2, 4)), np.zeros((1, 1))))
    K = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
    x = np.array([0.01, -0.02, 0.05, 0.03])
    want = 0.5 * x @ P @ x
    total = 0.0
    for _ in range(3000):
        u = -K @ x
        total += 0.5 * (x @ Q @ x + u @ R @ u)
        x = A @ x + B @ u
    assert total == pytest.approx(want, rel=1e-9)


def test_lqr_value_refuses_a_non_equilibrium_and_bad_weights():
    with pytest.raises(InvalidArgumentError, match="is not an equilibrium"):
        lqr_value(Acrobot(), Q4, R1, x_goal=[0.5, 0.0, 0.0, 0.0])
    with pytest.raises(InvalidArgumentError, match="R must be positive definite"):
        lqr_value(Acrobot(), Q4, [0.0], x_goal=np.zeros(4))
    with pytest.raises(InvalidArgumentError, match="Q must have shape"):
        lqr_value(Acrobot(), [1.0, 1.0], R1, x_goal=np.zeros(4))
    with pytest.raises(InvalidArgumentError, match="x_goal and u_goal must have shapes"):
        lqr_value(Acrobot(), Q4, R1, x_goal=np.zeros(3))


def _acrobot_energy(x, m1=1.0, m2=1.0, l1=1.0, lc1=0.5, lc2=0.5, I1=1 / 3, I2=1 / 3, g=9.81):
    t1, t2, d1, d2 = x
    # positions of the centres of mass, differentiated by hand
    v1 = (-lc1 * math.cos(t1) * d1, -lc1 * math.sin(t1) * d1)
    v2 = (-l1 * math.cos(t1) * d1 - lc2 * math.cos(t1 + t2) * (d1 + d2),
          -l1 * math.sin(t1) * d1 - lc2 * math.sin(t1 + t2) * (d1 + d2))
    kinetic = (0.5 * m1 * (v1[0] ** 2 + v1[1] ** 2) + 0.5 * (I1 - m1 * lc1**2) * d1**2
               + 0.5 * m2 * (v2[0] ** 2 + v2[1] ** 2) + 0.5 * (I2 - m2 * lc2**2) * (d1 + d2) ** 2)
    return kinetic + g * (m1 * lc1 * math.cos(t1) + m2 * (l1 * math.cos(t1) + lc2 * math.cos(t1 + t2)))


def _reference_cost(X, U, Q, R, P, w, cap, goal):
    """Plain loops over the documented formula."""
    Eg = _acrobot_energy(goal)

    def err(x):
        d = x - goal
        e = d.copy()
        for i in (0, 1):
            wrapped = (d[i] + math.pi) % (2 * math.pi) - math.pi
            e[i] = 2.0 * math.sin(wrapped / 2.0)
        return e

    out = []
    for Xb, Ub in zip(X, U):
        total = 0.0
        for x, u in zip(Xb[:-1], Ub):
            e = err(x)
            total += 0.5 * e @ np.diag(Q) @ e + 0.5 * u @ np.diag(R) @ u
            total += 0.5 * w * (_acrobot_energy(x) - Eg) ** 2
        e = err(Xb[-1])
        total += min(0.5 * e @ P @ e, cap)
        out.append(total)
    return np.array(out)


@pytest.mark.parametrize("cap", [1e9, 30.0, 0.0])
def test_cost_matches_the_reference_loop(cap):
    system = Acrobot()
    cost = SwingUpCost(system, Q4, R1, energy_weight=0.3, value_cap=cap, x_goal=np.zeros(4))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(9, 7, 4)) * [2.0, 2.0, 3.0, 3.0]
    X[0, -1] = [0.01, -0.02, 0.1, 0.0]  # one terminal state under any cap but 0
    U = rng.normal(size=(9, 6, 1)) * 4.0
    want = _reference_cost(X, U, Q4, R1, cost.P, 0.3, cap, np.zeros(4))
    np.testing.assert_allclose(cost(X, U), want, rtol=1e-11)
    # stage + terminal, one step at a time
    np.testing.assert_allclose(
        cost(X[:1, :2], U[:1, :1]), cost.stage(X[0, 0], U[0, 0]) + cost.terminal(X[0, 1]), rtol=1e-12)


def test_terminal_is_the_lqr_value_near_the_goal_and_the_cap_far_away():
    cost = SwingUpCost(Acrobot(), Q4, R1, energy_weight=0.1, value_cap=50.0, x_goal=np.zeros(4))
    np.testing.assert_allclose(cost.P, lqr_value(Acrobot(), Q4, R1, x_goal=np.zeros(4)))
    x = np.array([1e-3, -2e-3, 0.0, 1e-3])
    assert cost.terminal(x) == pytest.approx(0.5 * x @ cost.P @ x, rel=1e-5)
    assert cost.terminal(np.array([math.pi, 0.0, 0.0, 0.0])) == 50.0
    # hanging still costs the energy gap, upright at rest nothing
    assert cost.stage(np.zeros(4), np.zeros(1)) == 0.0
    gap = 2 * 9.81 * (0.5 + 1.0 + 0.5)
    assert cost.stage(np.array([math.pi, 0, 0, 0]), np.zeros(1)) == pytest.approx(
        0.5 * 2.0 * 4.0 + 0.5 * 0.1 * gap**2)


def test_a_diverged_rollout_never_wins():
    task = get_task("acrobot-swingup")
    problem = task.problem(3)
    X = np.zeros((2, 4, 4))
    X[1, 3, 0] = np.nan
    c = problem.cost(X, np.zeros((2, 3, 1)))
    assert c[0] == 0.0 and math.isnan(c[1])
    U = np.zeros((1, 3, 1))
    assert np.isfinite(problem.costs(np.zeros(4), U)).all()


def test_bad_arguments_are_named():
    with pytest.raises(InvalidArgumentError, match="mechanical energy"):
        SwingUpCost(Unicycle(), np.ones(3), np.ones(2), energy_weight=1.0, value_cap=1.0,
                    x_goal=np.zeros(3))
    for name, kw in [("energy_weight", dict(energy_weight=-1.0, value_cap=1.0)),
                     ("value_cap", dict(energy_weight=1.0, value_cap=math.inf))]:
        with pytest.raises(InvalidArgumentError, match=name):
            SwingUpCost(Acrobot(), Q4, R1, x_goal=np.zeros(4), **kw)
    with pytest.raises(InvalidArgumentError, match="sized for nx=4"):
        SwingUpCost(Acrobot(), np.ones(2), R1, energy_weight=1.0, value_cap=1.0, x_goal=np.zeros(2))
    cost = SwingUpCost(Acrobot(), Q4, R1, energy_weight=1.0, value_cap=1.0, x_goal=np.zeros(4))
    with pytest.raises(InvalidArgumentError, match="cost expects X"):
        cost(np.zeros((2, 4, 4)), np.zeros((2, 4, 1)))


def test_the_acrobot_task_plans_with_it():
    task = get_task("acrobot-swingup")
    cost = task.cost()
    assert isinstance(cost, SwingUpCost)
    assert isinstance(task.problem(), Problem)
    assert task.horizon == 12
