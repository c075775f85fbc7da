"""Unicycle (``sys_id`` 3): kinematic, driven by speed and turn rate. ``x = [x, y, heading]``,
``u = [v, w]``, ``p = []``::

    x_d = v cos(heading),  y_d = v sin(heading),  heading_d = w

No mechanical energy.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from recede._numerics import sincos, sincos_poly
from recede.models.analytic.system import AnalyticSystem, check_positive

SYS_ID = 3


# ----------------------------------------------------------------------------------------------
# Continuous-time dynamics and their Jacobian, one sample (inlined into the dispatchers)
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy", inline="always")
def f(x, u, p, out):
    """``out = xdot = f(x, u)`` for one state x: (nx,) and action u: (nu,)."""
    sh, ch = sincos(x[2])
    out[0] = u[0] * ch
    out[1] = u[0] * sh
    out[2] = u[1]


@numba.njit(cache=True, error_model="numpy", inline="always")
def jacobian(x, u, p, Jx, Ju):
    """``Jx = df/dx (nx, nx)``, ``Ju = df/du (nx, nu)`` at (x, u), exact."""
    c = math.cos(x[2])
    s = math.sin(x[2])
    for i in range(3):
        for j in range(3):
            Jx[i, j] = 0.0
        Ju[i, 0] = 0.0
        Ju[i, 1] = 0.0
    Jx[0, 2] = -u[0] * s
    Jx[1, 2] = u[0] * c
    Ju[0, 0] = c
    Ju[1, 0] = s
    Ju[2, 1] = 1.0


# ----------------------------------------------------------------------------------------------
# Lane loop: RK4 (or Euler) steps of a block of samples, vectorised across them
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy", inline="always")
def _rhs(hd, u0, u1):
    sh, ch = sincos_poly(hd)
    return u0 * ch, u0 * sh, u1


@numba.njit(cache=True, error_model="numpy")
def lanes(p, h, substeps, x, u, n):
    """``substeps`` RK4 steps of ``h`` (``-substeps`` Euler steps if negative) on the lanes
    j < n of x: (nx, L) under u: (nu, L), in place; ``f``'s expressions in the same order."""
    for _ in range(-substeps):  # explicit Euler (none when substeps > 0)
        for j in range(n):
            x0, x1, x2, u0, u1 = x[0, j], x[1, j], x[2, j], u[0, j], u[1, j]
            k10, k11, k12 = _rhs(x2, u0, u1)
            x[0, j] = x0 + h * k10
            x[1, j] = x1 + h * k11
            x[2, j] = x2 + h * k12
    for _ in range(substeps):  # RK4 (none when substeps < 0)
        for j in range(n):
            x0, x1, x2, u0, u1 = x[0, j], x[1, j], x[2, j], u[0, j], u[1, j]
            k10, k11, k12 = _rhs(x2, u0, u1)
            k20, k21, k22 = _rhs(x2 + 0.5 * h * k12, u0, u1)
            k30, k31, k32 = _rhs(x2 + 0.5 * h * k22, u0, u1)
            k40, k41, k42 = _rhs(x2 + h * k32, u0, u1)
            x[0, j] = x0 + (h / 6.0) * (k10 + 2.0 * k20 + 2.0 * k30 + k40)
            x[1, j] = x1 + (h / 6.0) * (k11 + 2.0 * k21 + 2.0 * k31 + k41)
            x[2, j] = x2 + (h / 6.0) * (k12 + 2.0 * k22 + 2.0 * k32 + k42)


# ----------------------------------------------------------------------------------------------
# Python class
# ----------------------------------------------------------------------------------------------


class Unicycle(AnalyticSystem):
    """Kinematic unicycle driven by speed and turn rate. ``p = []``."""

    name = "unicycle"
    sys_id = SYS_ID
    state_names = ("x", "y", "heading")
    action_names = ("speed", "turn_rate")
    angle_dims = (2,)

    def __init__(
        self, *, max_speed=1.0, max_turn_rate=2.0, dt=0.1, substeps=1, integrator="rk4"
    ):
        max_speed = check_positive("max_speed", max_speed)
        max_turn_rate = check_positive("max_turn_rate", max_turn_rate)
        super().__init__(
            params=np.empty(0),
            action_low=[-max_speed, -max_turn_rate],
            action_high=[max_speed, max_turn_rate],
            dt=dt,
            substeps=substeps,
            integrator=integrator,
            settings=dict(max_speed=max_speed, max_turn_rate=max_turn_rate),
        )
