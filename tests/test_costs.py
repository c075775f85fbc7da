"""QuadraticCost against a plain reference loop."""

import math

import numpy as np
import pytest

from recede import FunctionCost, QuadraticCost
from recede.errors import InvalidArgumentError


def reference_cost(X, U, Q, R, Qf, g, ug, angles):
    out = []
    for Xb, Ub in zip(X, U):
        total = 0.0
        for t in range(len(Ub) + 1):
            e = [2 * math.sin(math.remainder(x - gi, 2 * math.pi) / 2) if i in angles else x - gi
                 for i, (x, gi) in enumerate(zip(Xb[t], g))]
            e = np.array(e)
            if t < len(Ub):
                du = Ub[t] - ug
                total += 0.5 * e @ Q @ e + 0.5 * du @ R @ du
            else:
                total += 0.5 * e @ Qf @ e
        out.append(total)
    return np.array(out)


def test_quadratic_cost_matches_reference_loop():
    rng = np.random.default_rng(0)
    nx, nu, B, H = 4, 2, 9, 6
    A = rng.normal(size=(nx, nx))
    Q = A @ A.T
    R = np.diag([0.5, 2.0])
    Qf = np.diag([1.0, 2.0, 3.0, 4.0])
    g, ug = rng.normal(size=nx), rng.normal(size=nu)
    X, U = rng.normal(size=(B, H + 1, nx)) * 3, rng.normal(size=(B, H, nu))
    cost = QuadraticCost(Q, R, Qf, x_goal=g, u_goal=ug, angle_dims=(1, 3))
    np.testing.assert_allclose(cost(X, U), reference_cost(X, U, Q, R, Qf, g, ug, {1, 3}), rtol=1e-12)
    # the angle error is periodic: adding 2 pi to an angle changes nothing
    X2 = X.copy()
    X2[..., 1] += 2 * np.pi
    np.testing.assert_allclose(cost(X2, U), cost(X, U), rtol=1e-12)
    # stage and terminal agree with the batched sum
    total = sum(cost.stage(X[0, t], U[0, t]) for t in range(H)) + cost.terminal(X[0, H])
    assert total == pytest.approx(cost(X, U)[0], rel=1e-12)


def test_function_cost_sums_running_and_terminal():
    X, U = np.ones((2, 4, 1)), np.full((2, 3, 1), 2.0)
    c = FunctionCost(lambda X, U: X[..., 0] + U[..., 0], lambda XT: 10 * XT[..., 0])
    np.testing.assert_array_equal(c(X, U), [19.0, 19.0])
    assert c.stage(np.ones(1), np.full(1, 2.0)) == 3.0


@pytest.mark.parametrize("kwargs, message", [
    ({"Q": [[1.0, 2.0], [0.0, 1.0]], "R": [1.0]}, "Q must be symmetric"),
    ({"Q": [1.0, -1.0], "R": [1.0]}, "Q must be positive semidefinite"),
    ({"Q": [1.0, 1.0], "R": [1.0], "Qf": [1.0]}, "Qf must have shape (2, 2) or (2,), got (1, 1)"),
    ({"Q": [1.0, 1.0], "R": [1.0], "x_goal": [0.0]}, "x_goal must have shape (2,), got (1,)"),
    ({"Q": [1.0, 1.0], "R": [1.0], "angle_dims": (2,)}, "angle_dims must index the state (0..1), got 2"),
])
def test_bad_cost_arguments(kwargs, message):
    with pytest.raises(InvalidArgumentError) as e:
        QuadraticCost(**kwargs)
    assert message in str(e.value)


def test_cost_rejects_mismatched_shapes():
    cost = QuadraticCost([1.0, 1.0], [1.0])
    with pytest.raises(InvalidArgumentError, match=r"cost expects X: \(B, H\+1, 2\) and U: \(B, H, 1\)"):
        cost(np.zeros((3, 5, 2)), np.zeros((3, 5, 1)))
