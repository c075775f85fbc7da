"""Learned values as terminal costs: ValueTerminalCost, n-step targets, the value ensemble's fit
(against the Riccati value of an LQ problem), its checkpoint, and a planted perfect value that
makes horizon-1 MPC the LQR controller."""

import numpy as np
import pytest
from scipy.linalg import solve_discrete_are

from recede.controllers import MPC
from recede.costs import FunctionCost, QuadraticCost, ValueTerminalCost
from recede.envs.robots import RewardCost
from recede.errors import InvalidArgumentError
from recede.models.linear import LinearDynamics
from recede.planners import ILQR
from recede.policies import ValueFunction, load_value
from recede.policy_learning.value import ClosedLoop, ValueConfig, fit_value, value_problem, value_targets
from recede.problem import Problem

A = np.array([[1.0, 0.1], [0.0, 1.0]])
B = np.array([[0.005], [0.1]])
Q, R = np.diag([1.0, 0.1]), np.array([[0.1]])
P = solve_discrete_are(A, B, Q, R)  # V*(x) = x'Px/2 for the cost sum 1/2 (x'Qx + u'Ru)
K = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)  # u = -K x


def riccati_value(X):
    X = np.asarray(X, dtype=np.float64)
    return 0.5 * np.einsum("...i,ij,...j->...", X, P, X)


def lq_episodes(rng, n, T):
    out = []
    for _ in range(n):
        x = rng.uniform(-2.0, 2.0, 2)
        X, c = [x], []
        for _ in range(T):
            u = -K @ x
            c.append(0.5 * x @ Q @ x + 0.5 * u @ R @ u)
            x = A @ x + B @ u
            X.append(x)
        out.append(ClosedLoop(np.array(X), np.array(c)))
    return out


def test_value_terminal_cost_replaces_the_terminal_term():
    base = QuadraticCost([1.0, 0.5], [0.2], [7.0, 7.0])
    V = lambda X: 3.0 * X[:, 0] ** 2 + X[:, 1]  # noqa: E731
    cost = ValueTerminalCost(base, V, scale=2.0)
    rng = np.random.default_rng(0)
    X, U = rng.normal(size=(5, 4, 2)), rng.normal(size=(5, 3, 1))
    running = sum(np.array([base.stage(X[b, t], U[b, t]) for b in range(5)]) for t in range(3))
    want = running + 2.0 * V(X[:, -1])
    np.testing.assert_allclose(cost(X, U), want, rtol=1e-12)
    np.testing.assert_allclose(cost.stage_costs(X, U).sum(axis=1), want, rtol=1e-12)
    np.testing.assert_allclose(cost.stage_costs(X, U)[:, -1], 2.0 * V(X[:, -1]), rtol=1e-12)
    kept = ValueTerminalCost(base, V, keep_terminal=True)
    np.testing.assert_allclose(kept(X, U), base(X, U) + V(X[:, -1]), rtol=1e-12)
    assert cost.stage(X[0, 0], U[0, 0]) == base.stage(X[0, 0], U[0, 0])


def test_value_terminal_cost_skips_sequences_that_ended():
    # a robot's reward cost: sequences that terminated get no terminal value
    cost = RewardCost(lambda X, U, S: np.ones(U.shape[:2]), lambda X, S: X[:, 1:, 0] > 1.0)
    vcost = ValueTerminalCost(cost, lambda X: np.full(X.shape[0], 10.0))
    X = np.zeros((2, 3, 1))
    X[1, 1, 0] = 2.0  # row 1 terminates at its first step
    U = np.zeros((2, 2, 1))
    np.testing.assert_allclose(vcost(X, U), [-2.0 + 10.0, -1.0])


def test_value_terminal_cost_refuses_bad_input():
    base = QuadraticCost([1.0, 1.0], [1.0])
    with pytest.raises(InvalidArgumentError, match="value must be callable"):
        ValueTerminalCost(base, 3.0)
    with pytest.raises(InvalidArgumentError, match="scale must be"):
        ValueTerminalCost(base, lambda X: X[:, 0], scale=-1.0)
    no_stages = type("Totals", (), {"__call__": lambda self, X, U: np.zeros(len(X))})()
    with pytest.raises(InvalidArgumentError, match="keep_terminal=True"):
        ValueTerminalCost(no_stages, lambda X: X[:, 0])
    wrong = ValueTerminalCost(base, lambda X: X)  # (B, nx), not (B,)
    with pytest.raises(InvalidArgumentError, match=r"one number per state"):
        wrong(np.zeros((3, 2, 2)), np.zeros((3, 1, 1)))
    other = type("V3", (), {"nx": 3, "__call__": lambda self, X: X[:, 0]})()
    with pytest.raises(InvalidArgumentError, match="size 3.*size 2"):
        ValueTerminalCost(base, other)


def test_planted_riccati_value_makes_horizon_one_mpc_the_lqr_controller():
    dyn = LinearDynamics(A, B, dt=0.1, action_low=[-50.0], action_high=[50.0])
    problem = Problem(dyn, QuadraticCost(np.diag(Q), np.diag(R)), 5)
    planned = value_problem(problem, riccati_value, horizon=1)
    assert planned.horizon == 1
    mpc = MPC(ILQR(planned), rng=0)
    x, y = np.array([1.5, -0.7]), np.array([1.5, -0.7])
    for _ in range(30):
        u = mpc.act(x)
        np.testing.assert_allclose(u, -K @ y, atol=1e-6)
        x, y = A @ x + B @ u, A @ y - B @ (K @ y)
    # without the value the one-step plan is greedy and acts differently
    greedy = MPC(ILQR(Problem(dyn, problem.cost, 1)), rng=0).act(np.array([1.5, -0.7]))
    assert abs(greedy[0] + (K @ np.array([1.5, -0.7]))[0]) > 0.1


def test_value_targets_match_a_reference_loop():
    rng = np.random.default_rng(1)
    X, c = rng.normal(size=(7, 2)), rng.normal(size=6)
    V = lambda S: S[:, 0] * 2.0 + 1.0  # noqa: E731
    for terminated in (False, True):
        ep = ClosedLoop(X, c, terminated)
        for n, g in ((None, 1.0), (3, 0.9), (1, 0.5)):
            S, G = value_targets([ep], n_step=n, discount=g, value=V)
            np.testing.assert_array_equal(S, X[:6])
            for t in range(6):
                m = min(6 if n is None else n, 6 - t)
                want = sum(g ** i * c[t + i] for i in range(m))
                boot = 0.0 if (terminated and t + m == 6) else V(X[t + m][None])[0]
                assert G[t] == pytest.approx(want + g ** m * boot, rel=1e-12, abs=1e-12)


def test_value_ensemble_matches_the_riccati_value():
    rng = np.random.default_rng(0)
    # short episodes from uniform starts cover the box; their truncated tails are bootstrapped
    # from the first fit in the second round (fitted value iteration)
    cfg = ValueConfig(members=2, hidden=(32, 32), activation="elu", batch_size=256, lr=3e-3,
                      epochs=400, patience=60, rounds=2)
    fit = fit_value(lq_episodes(rng, 200, 20), config=cfg, seed=0)
    Xh = rng.uniform(-1.5, 1.5, size=(2000, 2))  # held-out states
    V, Vs = fit.value(Xh), riccati_value(Xh)
    assert np.linalg.norm(V - Vs) / np.linalg.norm(Vs) < 0.02
    assert fit.value.member_values(Xh).shape == (2, 2000)


def test_value_fit_is_seeded_and_saves_and_loads(tmp_path):
    eps = lq_episodes(np.random.default_rng(2), 10, 10)
    cfg = ValueConfig(members=3, hidden=(8,), epochs=3, batch_size=32)
    a, b = fit_value(eps, config=cfg, seed=4), fit_value(eps, config=cfg, seed=4)
    X = np.random.default_rng(3).normal(size=(50, 2))
    np.testing.assert_array_equal(a.value(X), b.value(X))
    assert not np.array_equal(a.value(X), fit_value(eps, config=cfg, seed=5).value(X))
    a.value.save(str(tmp_path / "v"))
    loaded = load_value(str(tmp_path / "v"))
    np.testing.assert_allclose(loaded(X), a.value(X), rtol=1e-6)
    assert loaded.meta["seed"] == 4
    # optimism: a soft minimum over members, between the lowest member and the mean
    soft = load_value(str(tmp_path / "v"), optimism=0.05)
    m = a.value.member_values(X)
    assert np.all(soft(X) <= m.mean(axis=0) + 1e-9) and np.all(soft(X) >= m.min(axis=0) - 1e-9)
    with pytest.raises(InvalidArgumentError, match="optimism"):
        load_value(str(tmp_path / "v"), optimism=-1.0)


def test_load_value_refuses_another_task_and_corruption(tmp_path):
    from recede.envs import get_task

    task = get_task("pendulum-swingup")
    X = np.random.default_rng(0).normal(size=(40, 3, 2))
    eps = [ClosedLoop(x, np.ones(2)) for x in X]
    fit = fit_value(eps, config=ValueConfig(members=1, hidden=(4,), epochs=2), task=task)
    fit.value.save(str(tmp_path / "v"))
    assert load_value(str(tmp_path / "v"), task).task is task
    with pytest.raises(InvalidArgumentError, match="fitted for task 'pendulum-swingup', not 'cartpole-swingup'"):
        load_value(str(tmp_path / "v"), get_task("cartpole-swingup"))
    with open(tmp_path / "v" / "value.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\0\0\0")
    with pytest.raises(InvalidArgumentError, match="checksum"):
        load_value(str(tmp_path / "v"), task)
    with pytest.raises(InvalidArgumentError, match="not a directory"):
        load_value(str(tmp_path / "nothing"), task)
    with pytest.raises(InvalidArgumentError, match="states of size 2"):
        fit_value(eps, task=get_task("cartpole-swingup"))
