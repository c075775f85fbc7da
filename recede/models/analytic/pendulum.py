"""Pendulum (``sys_id`` 0): a torque-driven point mass ``m`` at length ``l`` with viscous damping
``b``. ``x = [th, th_d]`` (``th = 0`` upright), ``u = [torque]``, ``p = [m, l, g, b]``::

    th_dd = (g / l) sin(th) + (u - b th_d) / (m l^2)

Energy ``0.5 m l^2 th_d^2 + m g l cos(th)``.
"""

from __future__ import annotations

import math

import numba

from recede._numerics import sincos, sincos_poly
from recede.models.analytic.system import AnalyticSystem, check_nonnegative, check_positive

SYS_ID = 0


# ----------------------------------------------------------------------------------------------
# Continuous-time dynamics and their Jacobian, one sample (inlined into the dispatchers)
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy", inline="always")
def f(x, u, p, out):
    """``out = xdot = f(x, u)`` for one state x: (nx,) and action u: (nu,)."""
    m, l, g, b = p[0], p[1], p[2], p[3]
    out[0] = x[1]
    out[1] = (g / l) * sincos(x[0])[0] + (u[0] - b * x[1]) / (m * l * l)


@numba.njit(cache=True, error_model="numpy", inline="always")
def jacobian(x, u, p, Jx, Ju):
    """``Jx = df/dx (nx, nx)``, ``Ju = df/du (nx, nu)`` at (x, u), exact."""
    m, l, g, b = p[0], p[1], p[2], p[3]
    Jx[0, 0] = 0.0
    Jx[0, 1] = 1.0
    Jx[1, 0] = (g / l) * math.cos(x[0])
    Jx[1, 1] = -b / (m * l * l)
    Ju[0, 0] = 0.0
    Ju[1, 0] = 1.0 / (m * l * l)


@numba.njit(cache=True, error_model="numpy", inline="always")
def energy(p, x):
    """Kinetic plus potential energy of one state, zero height at the pivot."""
    m, l, g = p[0], p[1], p[2]
    return 0.5 * m * l * l * x[1] * x[1] + m * g * l * math.cos(x[0])


# ----------------------------------------------------------------------------------------------
# Lane loop: RK4 (or Euler) steps of a block of samples, vectorised across them
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy", inline="always")
def _rhs(th, thd, u0, m, l, g, b):
    return thd, (g / l) * sincos_poly(th)[0] + (u0 - b * thd) / (m * l * l)


@numba.njit(cache=True, error_model="numpy")
def lanes(p, h, substeps, x, u, n):
    """``substeps`` RK4 steps of ``h`` (``-substeps`` Euler steps if negative) on the lanes
    j < n of x: (nx, L) under u: (nu, L), in place; ``f``'s expressions in the same order."""
    m, l, g, b = p[0], p[1], p[2], p[3]
    for _ in range(-substeps):  # explicit Euler (none when substeps > 0)
        for j in range(n):
            x0, x1, u0 = x[0, j], x[1, j], u[0, j]
            k10, k11 = _rhs(x0, x1, u0, m, l, g, b)
            x[0, j] = x0 + h * k10
            x[1, j] = x1 + h * k11
    for _ in range(substeps):  # RK4 (none when substeps < 0)
        for j in range(n):
            x0, x1, u0 = x[0, j], x[1, j], u[0, j]
            k10, k11 = _rhs(x0, x1, u0, m, l, g, b)
            k20, k21 = _rhs(x0 + 0.5 * h * k10, x1 + 0.5 * h * k11, u0, m, l, g, b)
            k30, k31 = _rhs(x0 + 0.5 * h * k20, x1 + 0.5 * h * k21, u0, m, l, g, b)
            k40, k41 = _rhs(x0 + h * k30, x1 + h * k31, u0, m, l, g, b)
            x[0, j] = x0 + (h / 6.0) * (k10 + 2.0 * k20 + 2.0 * k30 + k40)
            x[1, j] = x1 + (h / 6.0) * (k11 + 2.0 * k21 + 2.0 * k31 + k41)


# ----------------------------------------------------------------------------------------------
# Python class
# ----------------------------------------------------------------------------------------------


class Pendulum(AnalyticSystem):
    """Torque-driven point-mass pendulum; ``th = 0`` upright. ``p = [m, l, g, b]``."""

    name = "pendulum"
    sys_id = SYS_ID
    state_names = ("theta", "theta_dot")
    action_names = ("torque",)
    angle_dims = (0,)
    has_energy = True

    def __init__(
        self, *, m=1.0, l=1.0, g=9.81, b=0.0, max_torque=2.5, dt=0.05, substeps=1, integrator="rk4"
    ):
        m, l = check_positive("m", m), check_positive("l", l)
        g, b = check_nonnegative("g", g), check_nonnegative("b", b)
        max_torque = check_positive("max_torque", max_torque)
        super().__init__(
            params=[m, l, g, b],
            action_low=[-max_torque],
            action_high=[max_torque],
            dt=dt,
            substeps=substeps,
            integrator=integrator,
            settings=dict(m=m, l=l, g=g, b=b, max_torque=max_torque),
        )
