"""Tests for recede.models.analytic against independent pure-Python oracles and closed forms."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest

from recede._numerics import sincos, sincos_poly
from recede.costs import QuadraticCost
from recede.errors import InvalidArgumentError
from recede.models import analytic
from recede.models.analytic import (
    Acrobot,
    CartPole,
    DoubleIntegrator,
    Pendulum,
    Unicycle,
    rollout_kernel,
    step_one,
)
from recede.models.base import Differentiable, Dynamics

# ------------------------------------------------------------------------------------------------
# Independent pure-Python references (plain math, no shared code with the module)
# ------------------------------------------------------------------------------------------------


def ref_pendulum(m, x, u):
    ml2 = m.m * m.l**2
    return [x[1], m.g / m.l * math.sin(x[0]) + (u[0] - m.b * x[1]) / ml2]


def ref_cartpole(m, x, u):
    # Lagrangian form with the pole tip at (x + l sin th, l cos th); solve the 2x2 mass matrix.
    mc, mp, l, g = m.mc, m.mp, m.l, m.g
    _, th, xd, thd = x
    s, c = math.sin(th), math.cos(th)
    a11, a12, a22 = mc + mp, mp * l * c, mp * l * l
    b1 = u[0] + mp * l * s * thd**2
    b2 = mp * g * l * s
    det = a11 * a22 - a12 * a12
    return [xd, thd, (a22 * b1 - a12 * b2) / det, (a11 * b2 - a12 * b1) / det]


def ref_acrobot(m, x, u):
    # Tedrake's "Underactuated Robotics" acrobot, whose th1 is measured from hanging down.
    t1 = x[0] + math.pi
    t2, d1, d2 = x[1], x[2], x[3]
    m1, m2, l1, lc1, lc2, I1, I2, g = m.m1, m.m2, m.l1, m.lc1, m.lc2, m.I1, m.I2, m.g
    c2, s2 = math.cos(t2), math.sin(t2)
    M = [[I1 + I2 + m2 * l1**2 + 2 * m2 * l1 * lc2 * c2, I2 + m2 * l1 * lc2 * c2],
         [I2 + m2 * l1 * lc2 * c2, I2]]
    C = [[-2 * m2 * l1 * lc2 * s2 * d2, -m2 * l1 * lc2 * s2 * d2],
         [m2 * l1 * lc2 * s2 * d1, 0.0]]
    tau = [-m1 * g * lc1 * math.sin(t1) - m2 * g * (l1 * math.sin(t1) + lc2 * math.sin(t1 + t2)),
           -m2 * g * lc2 * math.sin(t1 + t2)]
    r = [tau[0] - C[0][0] * d1 - C[0][1] * d2, tau[1] + u[0] - C[1][0] * d1 - C[1][1] * d2]
    det = M[0][0] * M[1][1] - M[0][1] * M[1][0]
    qdd1 = (M[1][1] * r[0] - M[0][1] * r[1]) / det
    qdd2 = (M[0][0] * r[1] - M[1][0] * r[0]) / det
    return [d1, d2, qdd1, qdd2]


def ref_unicycle(m, x, u):
    return [u[0] * math.cos(x[2]), u[0] * math.sin(x[2]), u[1]]


def ref_double_integrator(m, x, u):
    d = len(u)
    return list(x[d:]) + list(u)


REFS = {
    "pendulum": ref_pendulum,
    "cartpole": ref_cartpole,
    "acrobot": ref_acrobot,
    "unicycle": ref_unicycle,
    "double_integrator": ref_double_integrator,
}


def ref_step(m, x, u):
    f = REFS[m.name]
    h = m.dt / m.substeps
    x = list(x)
    for _ in range(m.substeps):
        k1 = f(m, x, u)
        k2 = f(m, [a + h / 2 * b for a, b in zip(x, k1)], u)
        k3 = f(m, [a + h / 2 * b for a, b in zip(x, k2)], u)
        k4 = f(m, [a + h * b for a, b in zip(x, k3)], u)
        x = [a + h / 6 * (p + 2 * q + 2 * r + s) for a, p, q, r, s in zip(x, k1, k2, k3, k4)]
    return x


def ref_rollout(m, x0, U):
    X = [list(x0)]
    for u in U:
        X.append(ref_step(m, X[-1], list(u)))
    return np.array(X)


def pendulum_energy(m, x):
    return 0.5 * m.m * m.l**2 * x[1] ** 2 + m.m * m.g * m.l * math.cos(x[0])


def acrobot_energy(m, x):
    # From the geometry: angles from upright, counter-clockwise, point at r along angle phi
    # sits at (-r sin(phi), r cos(phi)). Link 2's inertia about its centre by the parallel axis.
    t1, t2, d1, d2 = x
    v_elbow = (-m.l1 * math.cos(t1) * d1, -m.l1 * math.sin(t1) * d1)
    v_c2 = (v_elbow[0] - m.lc2 * math.cos(t1 + t2) * (d1 + d2),
            v_elbow[1] - m.lc2 * math.sin(t1 + t2) * (d1 + d2))
    kinetic = (0.5 * m.I1 * d1**2 + 0.5 * m.m2 * (v_c2[0] ** 2 + v_c2[1] ** 2)
               + 0.5 * (m.I2 - m.m2 * m.lc2**2) * (d1 + d2) ** 2)
    potential = m.g * (m.m1 * m.lc1 * math.cos(t1)
                       + m.m2 * (m.l1 * math.cos(t1) + m.lc2 * math.cos(t1 + t2)))
    return kinetic + potential


def cartpole_energy(m, x):
    # pole mass at (x + l sin th, l cos th)
    _, th, xd, thd = x
    vx, vy = xd + m.l * math.cos(th) * thd, -m.l * math.sin(th) * thd
    return 0.5 * m.mc * xd**2 + 0.5 * m.mp * (vx**2 + vy**2) + m.mp * m.g * m.l * math.cos(th)


ENERGY_REFS = {"pendulum": pendulum_energy, "cartpole": cartpole_energy, "acrobot": acrobot_energy}


def power(name, m, x, u):
    """Rate of work of the action (minus damping): dE/dt by the work-energy theorem."""
    if name == "pendulum":
        return (u[0] - m.b * x[1]) * x[1]
    if name == "cartpole":
        return u[0] * x[2]  # force on the cart times its speed
    return u[0] * x[3]  # elbow torque times the elbow's relative rate


# Every physical parameter given explicitly (not all defaults), so the references read them here
# and not from the model's parameter array.
CONFIGS = {
    "pendulum": (Pendulum, dict(m=0.8, l=1.2, g=9.81, b=0.3, max_torque=2.0, dt=0.05, substeps=1)),
    "cartpole": (
        CartPole, dict(mc=1.0, mp=0.2, l=0.6, g=9.81, max_force=10.0, dt=0.05, substeps=2)
    ),
    "acrobot": (Acrobot, dict(m1=1.0, m2=1.3, l1=1.1, l2=0.9, lc1=0.5, lc2=0.45, I1=0.4, I2=0.35,
                              g=9.81, max_torque=10.0, dt=0.05, substeps=2)),
    "unicycle": (Unicycle, dict(max_speed=1.0, max_turn_rate=2.0, dt=0.1, substeps=3)),
    "double_integrator": (DoubleIntegrator, dict(dim=2, max_accel=1.0, dt=0.1, substeps=1)),
}


def make_system(name):
    """The model and a plain namespace of its parameters (``name`` included) for the references."""
    cls, kwargs = CONFIGS[name]
    return cls(**kwargs), SimpleNamespace(name=name, **kwargs)


def with_params(name, **overrides):
    cls, kwargs = CONFIGS[name]
    kwargs = {**kwargs, **overrides}
    return cls(**kwargs), SimpleNamespace(name=name, **kwargs)


def random_states(m, rng, n):
    x = rng.uniform(-1.0, 1.0, size=(n, m.nx)) * 2.0
    for i in m.angle_dims:
        x[:, i] = rng.uniform(-math.pi, math.pi, size=n)
    return x


def random_actions(m, rng, shape):
    return rng.uniform(m.action_low, m.action_high, size=(*shape, m.nu))


# ------------------------------------------------------------------------------------------------
# Rollout, step and step_one against the reference
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONFIGS))
def test_rollout_matches_reference(name):
    m, ref_params = make_system(name)
    assert isinstance(m, Dynamics) and isinstance(m, Differentiable)
    rng = np.random.default_rng(0)
    B, H = 7, 13
    x0s = random_states(m, rng, B)
    U = random_actions(m, rng, (B, H))
    ref = np.stack([ref_rollout(ref_params, x0s[b], U[b]) for b in range(B)])

    X = m.rollout(x0s, U)
    assert X.shape == (B, H + 1, m.nx) and X.dtype == np.float64
    np.testing.assert_allclose(X, ref, rtol=0, atol=1e-12)

    X1 = m.rollout(x0s[3], U)  # one state broadcast over the batch
    ref1 = np.stack([ref_rollout(ref_params, x0s[3], U[b]) for b in range(B)])
    np.testing.assert_allclose(X1, ref1, rtol=0, atol=1e-12)

    np.testing.assert_array_equal(m.step(X[:, 4], U[:, 4]), X[:, 5])
    np.testing.assert_array_equal(m.step(X[2, 4], U[2, 4]), X[2, 5])
    np.testing.assert_array_equal(m.step_one(X[2, 4], U[2, 4]), X[2, 5])

    # The kernels are callable directly from kernel_args, and step_one may work in place.
    Xk = np.empty_like(X)
    rollout_kernel(*m.kernel_args, x0s, U, Xk)
    np.testing.assert_array_equal(Xk, X)
    x = X[1, 0].copy()
    step_one(*m.kernel_args, x, U[1, 0], x)
    np.testing.assert_array_equal(x, X[1, 1])


# ------------------------------------------------------------------------------------------------
# The lane-blocked kernels (blocks of samples vectorised across SIMD lanes) against the
# one-sample code, bit for bit: rollout vs step_one, rollout_cost vs the cost of those states
# ------------------------------------------------------------------------------------------------


def step_one_rollout(m, x0s, U):
    X = np.empty((U.shape[0], U.shape[1] + 1, m.nx))
    for b in range(U.shape[0]):
        X[b, 0] = x0s[b]
        for t in range(U.shape[1]):
            X[b, t + 1] = m.step_one(X[b, t], U[b, t])
    return X


def random_psd(rng, n):
    a = rng.normal(size=(n, n))
    return a @ a.T + 0.1 * np.eye(n)


@pytest.mark.parametrize("integrator", ["rk4", "euler"])
@pytest.mark.parametrize("substeps", [1, 3])
@pytest.mark.parametrize("B", [1, 7, 70])  # one lane, a partial block, a full block and a tail
@pytest.mark.parametrize("name", list(CONFIGS))
def test_lane_kernels_equal_the_scalar_code_bit_for_bit(name, B, substeps, integrator):
    m, _ = with_params(name, substeps=substeps, integrator=integrator)
    rng = np.random.default_rng(10 * B + substeps)
    H = 6
    x0s = random_states(m, rng, B)
    for i in m.angle_dims:  # every quadrant of the sine and cosine, and wrapped angle errors
        x0s[:, i] = rng.uniform(-20.0, 20.0, size=B)
    U = random_actions(m, rng, (B, H))

    X = step_one_rollout(m, x0s, U)
    np.testing.assert_array_equal(m.rollout(x0s, U), X)
    np.testing.assert_array_equal(m.step(x0s, U[:, 0]), X[:, 1])

    # one start state for the fused rollout + cost, as the planners call it
    X = step_one_rollout(m, np.broadcast_to(x0s[0], x0s.shape), U)
    x_goal = rng.uniform(-1.0, 1.0, m.nx)
    u_goal = rng.uniform(-0.5, 0.5, m.nu)
    diagonal = QuadraticCost(
        rng.uniform(0.1, 2.0, m.nx), rng.uniform(0.01, 0.1, m.nu), rng.uniform(0.5, 3.0, m.nx),
        x_goal=x_goal, u_goal=u_goal, angle_dims=m.angle_dims,
    )
    dense = QuadraticCost(
        random_psd(rng, m.nx), random_psd(rng, m.nu), random_psd(rng, m.nx),
        x_goal=x_goal, u_goal=u_goal, angle_dims=m.angle_dims,
    )
    no_angles = QuadraticCost(random_psd(rng, m.nx), np.ones(m.nu), x_goal=x_goal)
    for cost in (diagonal, dense, no_angles):
        c = m.rollout_cost(x0s[0], U, cost)
        assert c.shape == (B,)
        np.testing.assert_array_equal(c, cost(X, U))  # the cost's own one-sample kernel
        scalar = np.empty(B)  # the one-sample reference kernel (_rk4 with quadratic_stage)
        analytic._rollout_quadratic_cost_scalar(*m.kernel_args, x0s[0], U, *cost.kernel_args,
                                                scalar)
        np.testing.assert_array_equal(c, scalar)


def test_sincos_poly_equals_sincos_below_1e6():
    # the lanes use the branch-free sincos_poly for every argument; sincos defers to libm
    # only from 1e6 on
    rng = np.random.default_rng(4)
    xs = np.concatenate([
        rng.uniform(-10.0, 10.0, 3000), rng.uniform(-1e6, 1e6, 3000),
        np.arange(-50, 51) * (math.pi / 4), [0.0, -0.0, 5e-324, 999999.9, -999999.9],
    ])
    for x in xs:
        assert sincos_poly(x) == sincos(x)
        assert math.copysign(1.0, sincos_poly(x)[0]) == math.copysign(1.0, sincos(x)[0])
    s, c = sincos_poly(1e7)
    assert abs(s - math.sin(1e7)) < 1e-8 and abs(c - math.cos(1e7)) < 1e-8
    assert all(math.isnan(v) for x in (math.inf, -math.inf, math.nan) for v in sincos_poly(x))


# ------------------------------------------------------------------------------------------------
# Jacobians against central finite differences
# ------------------------------------------------------------------------------------------------


def central_diff(fun, z, eps=1e-6):
    cols = []
    for j in range(z.shape[0]):
        dz = np.zeros_like(z)
        dz[j] = eps
        cols.append((fun(z + dz) - fun(z - dz)) / (2 * eps))
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("integrator", ["rk4", "euler"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_linearize_matches_finite_differences(name, integrator):
    m, _ = with_params(name, integrator=integrator)
    rng = np.random.default_rng(1)
    H = 5
    X = random_states(m, rng, H + 1)
    U = random_actions(m, rng, (H,))
    A, Bm = m.linearize(X, U)
    assert A.shape == (H, m.nx, m.nx) and Bm.shape == (H, m.nx, m.nu)
    for t in range(H):
        A_fd = central_diff(lambda x: m.step_one(x, U[t]), X[t])
        B_fd = central_diff(lambda u: m.step_one(X[t], u), U[t])
        np.testing.assert_allclose(A[t], A_fd, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(Bm[t], B_fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_continuous_jacobian_matches_finite_differences(name):
    m, ref_params = make_system(name)
    rng = np.random.default_rng(2)
    sys_id, p = m.sys_id, m.params

    def f(x, u):
        out = np.empty(m.nx)
        analytic._f(sys_id, np.ascontiguousarray(x), np.ascontiguousarray(u), p, out)
        return out

    for x, u in zip(random_states(m, rng, 4), random_actions(m, rng, (4,))):
        np.testing.assert_allclose(f(x, u), REFS[name](ref_params, x, u), rtol=0, atol=1e-12)
        J = np.empty((m.nx, m.nx + m.nu))
        analytic._f_jac(sys_id, x, u, p, J[:, : m.nx], J[:, m.nx :])
        Jx_fd = central_diff(lambda z: f(z, u), x)
        Ju_fd = central_diff(lambda z: f(x, z), u)
        np.testing.assert_allclose(J[:, : m.nx], Jx_fd, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(J[:, m.nx :], Ju_fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("integrator", ["rk4", "euler"])
def test_linearize_is_exact_with_substeps(integrator):
    # Several substeps exercise the composition; a large step makes truncation errors visible.
    m = Acrobot(dt=0.2, substeps=3, integrator=integrator)
    x, u = np.array([0.3, -1.2, 1.5, -2.0]), np.array([4.0])
    A, Bm = m.linearize(np.stack([x, x]), u[None])
    A_fd = central_diff(lambda z: m.step_one(z, u), x)
    B_fd = central_diff(lambda z: m.step_one(x, z), u)
    np.testing.assert_allclose(A[0], A_fd, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(Bm[0], B_fd, rtol=1e-7, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# Physics
# ------------------------------------------------------------------------------------------------


def test_pendulum_conserves_energy():
    m, ref_params = with_params("pendulum", b=0.0, dt=0.01, substeps=2)
    X = m.rollout(np.array([2.5, 1.0]), np.zeros((1, 100, 1)))[0]
    E = np.array([pendulum_energy(ref_params, x) for x in X])
    assert abs(E[0]) > 1.0
    assert np.max(np.abs(E - E[0])) < 1e-6 * abs(E[0])


def test_pendulum_upright_is_an_unstable_equilibrium():
    m = Pendulum()
    X = m.rollout(np.array([0.0, 0.0]), np.zeros((1, 10, 1)))[0]
    np.testing.assert_array_equal(X, 0.0)
    assert m.step_one(np.array([1e-3, 0.0]), np.zeros(1))[1] > 0  # falls away from upright
    A, _ = m.linearize(np.zeros((2, 2)), np.zeros((1, 1)))
    assert np.max(np.abs(np.linalg.eigvals(A[0]))) > 1.0


def test_acrobot_conserves_energy():
    m, ref_params = with_params("acrobot", dt=0.01, substeps=4)
    X = m.rollout(np.array([2.0, -0.7, 0.5, -1.0]), np.zeros((1, 100, 1)))[0]
    E = np.array([acrobot_energy(ref_params, x) for x in X])
    assert abs(E[0]) > 1.0
    assert np.max(np.abs(E - E[0])) < 1e-6 * abs(E[0])


@pytest.mark.parametrize("name", sorted(ENERGY_REFS))
def test_energy_matches_the_geometric_reference(name):
    m, ref_params = with_params(name)
    X = random_states(m, np.random.default_rng(3), 20).reshape(4, 5, m.nx)
    E = m.energy(X)
    assert E.shape == (4, 5)
    want = [[ENERGY_REFS[name](ref_params, x) for x in row] for row in X]
    np.testing.assert_allclose(E, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.energy(X[0, 0]), want[0][0], rtol=1e-12)  # one state -> scalar


@pytest.mark.parametrize("name", sorted(ENERGY_REFS))
def test_energy_changes_by_the_work_of_the_action(name):
    # work-energy theorem: E(x1) - E(x0) = integral of the power; trapezoid over a short step
    m, ref_params = with_params(name, dt=1e-3, substeps=1)
    rng = np.random.default_rng(4)
    x0 = random_states(m, rng, 8)
    U = random_actions(m, rng, (8,))
    x1 = m.step(x0, U)
    dE = m.energy(x1) - m.energy(x0)
    work = [0.5 * m.dt * (power(name, ref_params, a, u) + power(name, ref_params, b, u))
            for a, b, u in zip(x0, x1, U)]
    assert np.max(np.abs(work)) > 1e-3
    np.testing.assert_allclose(dE, work, rtol=1e-4, atol=1e-8)


def test_energy_needs_a_mechanical_system_and_states():
    with pytest.raises(InvalidArgumentError, match="unicycle has no mechanical energy"):
        Unicycle().energy(np.zeros(3))
    with pytest.raises(InvalidArgumentError, match=r"X must have shape \(\.\.\., 4\)"):
        Acrobot().energy(np.zeros((2, 3)))


def test_cartpole_pole_falls_toward_positive_theta_when_tilted():
    m = CartPole()
    x1 = m.step_one(np.array([0.0, 0.1, 0.0, 0.0]), np.zeros(1))
    assert x1[3] > 0 and x1[2] < 0  # the pole falls further, the cart recoils
    x1 = m.step_one(np.zeros(4), np.array([5.0]))
    assert x1[2] > 0 and x1[3] < 0  # pushing the cart tilts the pole back


def test_double_integrator_closed_form():
    m = DoubleIntegrator(dim=3)
    rng = np.random.default_rng(3)
    p0, v0, a = rng.normal(size=3), rng.normal(size=3), rng.uniform(-1, 1, size=3)
    H = 20
    X = m.rollout(np.concatenate([p0, v0]), np.broadcast_to(a, (1, H, 3)))[0]
    t = m.dt * np.arange(H + 1)[:, None]
    np.testing.assert_allclose(X[:, :3], p0 + v0 * t + a * t**2 / 2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(X[:, 3:], v0 + a * t, rtol=0, atol=1e-12)


@pytest.mark.parametrize("w", [0.0, 1.7])
def test_unicycle_follows_arc(w):
    m = Unicycle(dt=0.1, substeps=10)
    x0 = np.array([0.5, -1.0, 0.3])
    v, H = 0.8, 20
    X = m.rollout(x0, np.broadcast_to([v, w], (1, H, 2)))[0]
    t = m.dt * np.arange(H + 1)
    h = x0[2] + w * t
    if w == 0.0:
        x, y = x0[0] + v * t * np.cos(x0[2]), x0[1] + v * t * np.sin(x0[2])
    else:
        x = x0[0] + v / w * (np.sin(h) - np.sin(x0[2]))
        y = x0[1] - v / w * (np.cos(h) - np.cos(x0[2]))
    np.testing.assert_allclose(X, np.stack([x, y, h], axis=1), rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------------------------
# Explicit Euler (integrator="euler", encoded in the kernels as a negative substeps)
# ------------------------------------------------------------------------------------------------


def ref_euler_step(m, x, u, f):
    """``m.substeps`` explicit Euler steps ``x + h f(x, u)`` of ``h = dt / substeps``."""
    h = m.dt / m.substeps
    x = list(x)
    for _ in range(m.substeps):
        x = [a + h * b for a, b in zip(x, f(m, x, u))]
    return x


def module_f(model):
    """The module's own continuous-time ``f``, called from Python, in the references' signature."""
    def f(_, x, u):
        out = np.empty(model.nx)
        analytic._f(model.sys_id, np.array(x, dtype=np.float64), np.array(u, dtype=np.float64),
                    model.params, out)
        return list(out)
    return f


@pytest.mark.parametrize("substeps", [1, 3])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_euler_step_is_x_plus_h_f(name, substeps):
    m, ref_params = with_params(name, integrator="euler", substeps=substeps)
    assert m.integrator == "euler" and m.substeps == substeps
    assert m.kernel_args[3] == -substeps  # the sign carries the integrator
    rng = np.random.default_rng(20 + substeps)
    for x, u in zip(random_states(m, rng, 10), random_actions(m, rng, (10,))):
        got = m.step_one(x, u)
        # bit for bit: the same f, the same x + h f arithmetic
        np.testing.assert_array_equal(got, ref_euler_step(ref_params, x, u, module_f(m)))
        # the independent pure-Python equations
        np.testing.assert_allclose(got, ref_euler_step(ref_params, x, u, REFS[name]),
                                   rtol=0, atol=1e-12)
        # and not RK4
        assert not np.allclose(got, with_params(name, substeps=substeps)[0].step_one(x, u),
                               rtol=0, atol=1e-9)


def test_euler_unicycle_is_the_textbook_update():
    m = Unicycle(integrator="euler", substeps=1, dt=0.1)
    rng = np.random.default_rng(21)
    for _ in range(20):
        x, y, hd = rng.uniform(-3.0, 3.0, 3)
        v, w = rng.uniform(-1.0, 1.0), rng.uniform(-2.0, 2.0)
        got = m.step_one(np.array([x, y, hd]), np.array([v, w]))
        # exactly x + v cos(h) dt, y + v sin(h) dt, h + w dt with the module's sine and cosine
        s, c = sincos(hd)
        np.testing.assert_array_equal(got, [x + v * c * 0.1, y + v * s * 0.1, hd + w * 0.1])
        want = [x + v * math.cos(hd) * 0.1, y + v * math.sin(hd) * 0.1, hd + w * 0.1]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)  # and with libm's


@pytest.mark.parametrize("name", list(CONFIGS))
def test_euler_substeps_are_euler_steps_of_dt_over_substeps(name):
    m, _ = with_params(name, integrator="euler", dt=0.09, substeps=3)
    one, _ = with_params(name, integrator="euler", dt=0.03, substeps=1)
    rng = np.random.default_rng(22)
    for x, u in zip(random_states(m, rng, 5), random_actions(m, rng, (5,))):
        want = one.step_one(one.step_one(one.step_one(x, u), u), u)
        np.testing.assert_array_equal(m.step_one(x, u), want)
        out = np.empty(m.nx)  # the kernel directly, with the sign convention spelled out
        step_one(m.sys_id, m.params, 0.09, -3, x, u, out)
        np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_euler_jacobian_of_one_step_is_identity_plus_h_fx(name):
    # one Euler step x + h f(x, u): A = I + h fx(x, u), B = h fu(x, u)
    m, _ = with_params(name, integrator="euler", substeps=1)
    rng = np.random.default_rng(23)
    X = random_states(m, rng, 4)
    U = random_actions(m, rng, (3,))
    A, Bm = m.linearize(X, U)
    for t in range(3):
        J = np.empty((m.nx, m.nx + m.nu))
        analytic._f_jac(m.sys_id, X[t], U[t], m.params, J[:, : m.nx], J[:, m.nx :])
        np.testing.assert_allclose(A[t], np.eye(m.nx) + m.dt * J[:, : m.nx], rtol=0, atol=1e-15)
        np.testing.assert_allclose(Bm[t], m.dt * J[:, m.nx :], rtol=0, atol=1e-15)


def test_euler_double_integrator_closed_form():
    # p_{k+1} = p_k + h v_k, v_{k+1} = v_k + h a  =>  p_k = p0 + v0 t + a t (t - h) / 2
    m = DoubleIntegrator(dim=3, dt=0.1, integrator="euler")
    rng = np.random.default_rng(24)
    p0, v0, a = rng.normal(size=3), rng.normal(size=3), rng.uniform(-1, 1, size=3)
    H = 20
    X = m.rollout(np.concatenate([p0, v0]), np.broadcast_to(a, (1, H, 3)))[0]
    t = m.dt * np.arange(H + 1)[:, None]
    np.testing.assert_allclose(X[:, :3], p0 + v0 * t + a * t * (t - m.dt) / 2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(X[:, 3:], v0 + a * t, rtol=0, atol=1e-12)


def test_euler_settings():
    m = Pendulum(integrator="euler", substeps=4)
    assert (m.integrator, m.substeps) == ("euler", 4)
    assert m.kernel_args == (analytic.PENDULUM, m.params, 0.05, -4)
    assert repr(m) == (
        "Pendulum(m=1.0, l=1.0, g=9.81, b=0.0, max_torque=2.5, dt=0.05, substeps=4, "
        "integrator='euler')"
    )
    assert Pendulum(substeps=4).kernel_args[3] == 4


# ------------------------------------------------------------------------------------------------
# Attributes and helpers
# ------------------------------------------------------------------------------------------------


def test_attributes():
    m = CartPole()
    assert (m.nx, m.nu, m.ndx, m.name, m.angle_dims) == (4, 1, 4, "cartpole", (1,))
    assert m.state_names == ("x", "theta", "x_dot", "theta_dot")
    assert m.kernel_args == (analytic.CARTPOLE, m.params, 0.05, 2)
    np.testing.assert_array_equal(m.params, [1.0, 0.1, 0.5, 9.81])
    np.testing.assert_array_equal(m.action_high, [10.0])
    for a in (m.action_low, m.action_high, m.params):
        assert a.dtype == np.float64 and not a.flags.writeable
    assert repr(m) == (
        "CartPole(mc=1.0, mp=0.1, l=0.5, g=9.81, max_force=10.0, dt=0.05, substeps=2, "
        "integrator='rk4')"
    )
    assert m.integrator == "rk4"
    d = DoubleIntegrator(dim=2)
    assert (d.nx, d.nu, len(d.state_names), len(d.action_names)) == (4, 2, 4, 2)
    np.testing.assert_array_equal(Unicycle().action_low, [-1.0, -2.0])


def test_diff_and_integrate_are_inverse():
    m = Acrobot()
    x0, x1 = np.array([0.1, 0.2, 0.3, 0.4]), np.array([-1.0, 2.0, 0.5, 0.0])
    np.testing.assert_allclose(m.diff(x0, x1), x1 - x0)
    np.testing.assert_allclose(m.integrate(x0, m.diff(x0, x1)), x1)


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------


def raises(message):
    """Expect an InvalidArgumentError whose message is exactly ``message``."""
    return pytest.raises(InvalidArgumentError, match="^" + re.escape(message) + "$")


def test_bad_x0_shape():
    with raises("x0 must have shape (4,) or (B, 4), got (5,)"):
        CartPole().rollout(np.zeros(5), np.zeros((2, 3, 1)))


def test_nan_x0():
    with raises("x0 must be finite, got nan at index (1)"):
        CartPole().rollout([0.0, np.nan, 0.0, 0.0], np.zeros((2, 3, 1)))


def test_bad_U_shape():
    with raises("U must have shape (B, H, 1), got (3, 1)"):
        CartPole().rollout(np.zeros(4), np.zeros((3, 1)))
    with raises("x0 has 3 states but U has 2 sequences; pass one state or 2"):
        CartPole().rollout(np.zeros((3, 4)), np.zeros((2, 5, 1)))


def test_bad_step_and_linearize_shapes():
    m = Pendulum()
    with raises("U must have shape (3, 1) to match X of shape (3, 2), got (2, 1)"):
        m.step(np.zeros((3, 2)), np.zeros((2, 1)))
    with raises("X must have shape (2,) or (B, 2), got (3,)"):
        m.step(np.zeros(3), np.zeros(1))
    with raises("x and u must have shapes (2,) and (1,), got (2,) and (2,)"):
        m.step_one(np.zeros(2), np.zeros(2))
    with raises("X must have shape (4, 2) to match U of shape (3, 1), got (3, 2)"):
        m.linearize(np.zeros((3, 2)), np.zeros((3, 1)))
    with raises("U must have shape (H, 1), got (3,)"):
        m.linearize(np.zeros((4, 2)), np.zeros(3))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: CartPole(dt=-0.1), "dt must be > 0, got -0.1"),
        (lambda: Pendulum(dt=float("nan")), "dt must be a finite number, got nan"),
        (lambda: Pendulum(substeps=0), "substeps must be an integer >= 1, got 0"),
        (lambda: Pendulum(substeps=1.5), "substeps must be an integer >= 1, got 1.5"),
        (lambda: Pendulum(m=0.0), "m must be > 0, got 0.0"),
        (lambda: Pendulum(b=-1.0), "b must be >= 0, got -1.0"),
        (lambda: CartPole(max_force="big"), "max_force must be a finite number, got 'big'"),
        (
            lambda: Acrobot(I2=0.1),
            "I2 must be >= m2 * lc2**2 = 0.25 (inertia about the pivot), got 0.1",
        ),
        (lambda: DoubleIntegrator(dim=0), "dim must be an integer >= 1, got 0"),
        (lambda: Unicycle(max_speed=math.inf), "max_speed must be a finite number, got inf"),
        (lambda: Pendulum(integrator="foo"), "integrator must be 'rk4' or 'euler', got 'foo'"),
        (lambda: CartPole(integrator="RK4"), "integrator must be 'rk4' or 'euler', got 'RK4'"),
        (lambda: Acrobot(integrator=None), "integrator must be 'rk4' or 'euler', got None"),
        (lambda: Unicycle(integrator="midpoint"),
         "integrator must be 'rk4' or 'euler', got 'midpoint'"),
        (lambda: DoubleIntegrator(integrator=4), "integrator must be 'rk4' or 'euler', got 4"),
    ],
)
def test_bad_parameters(make, message):
    with raises(message):
        make()


def test_parameters_are_keyword_only():
    with pytest.raises(TypeError):
        Pendulum(1.0)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_units_name_every_entry_consistently(name):
    m, _ = make_system(name)
    units = dict(zip(m.state_names, m.state_units))
    assert len(m.state_units) == m.nx and len(m.action_units) == m.nu
    assert all(m.state_units) and all(m.action_units)  # every analytic entry has a unit
    for i in m.angle_dims:
        assert m.state_units[i] == "rad"
    for n, unit in units.items():  # a rate is its quantity per second
        if n.endswith("_dot"):
            assert unit == units[n[:-4]] + "/s"
    if name == "double_integrator":  # p -> v -> a: one more 1/s each
        assert m.state_units == ("m", "m", "m/s", "m/s") and m.action_units == ("m/s^2", "m/s^2")


def test_batched_step_loads_from_the_cache_in_a_new_process():
    """``dynamics.step(X, U)`` loaded from the cache in a new process (where a cached serial
    kernel calling a parallel one used to crash) equals ``step_one`` row by row. The suite's own
    cache: the first run compiles if no test has yet, the second loads."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import numpy as np, recede
        d = recede.get_task("cartpole-swingup").dynamics()
        rng = np.random.default_rng(0)
        X, U = rng.normal(size=(70, 4)), rng.normal(size=(70, 1))
        ref = np.array([d.step_one(x, u) for x, u in zip(X, U)])
        print(np.array_equal(d.step(X, U), ref))
    """)
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=900)
        assert run.returncode == 0 and run.stdout.split() == ["True"], run.stderr[-2000:]
