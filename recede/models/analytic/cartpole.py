"""CartPole (``sys_id`` 1): a cart of mass ``mc`` with a point-mass pole ``mp`` at distance ``l``.
``x = [x, th, x_d, th_d]`` (``th = 0`` upright), ``u = [force on cart]``, ``p = [mc, mp, l, g]``::

    x_dd  = (f + mp sin(th) (l th_d^2 - g cos(th))) / (mc + mp sin(th)^2)
    th_dd = (g sin(th) - cos(th) x_dd) / l

These put the pole's mass at ``(x + l sin(th), l cos(th))``: a positive ``th`` leans the pole
toward +x, which is counter-clockwise when the picture is drawn with +x pointing left (and
clockwise with +x to the right). A push ``f > 0`` therefore drives ``th`` negative.
"""

from __future__ import annotations

import math

import numba

from recede._numerics import sincos, sincos_poly
from recede.models.analytic.system import AnalyticSystem, check_nonnegative, check_positive

SYS_ID = 1


# ----------------------------------------------------------------------------------------------
# Continuous-time dynamics and their Jacobian, one sample (inlined into the dispatchers)
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy", inline="always")
def f(x, u, p, out):
    """``out = xdot = f(x, u)`` for one state x: (nx,) and action u: (nu,)."""
    mc, mp, l, g = p[0], p[1], p[2], p[3]
    th, xd, thd = x[1], x[2], x[3]
    s, c = sincos(th)
    xdd = (u[0] + mp * s * (l * thd * thd - g * c)) / (mc + mp * s * s)
    out[0] = xd
    out[1] = thd
    out[2] = xdd
    out[3] = (g * s - c * xdd) / l


@numba.njit(cache=True, error_model="numpy", inline="always")
def jacobian(x, u, p, Jx, Ju):
    """``Jx = df/dx (nx, nx)``, ``Ju = df/du (nx, nu)`` at (x, u), exact."""
    mc, mp, l, g = p[0], p[1], p[2], p[3]
    th, thd = x[1], x[3]
    s = math.sin(th)
    c = math.cos(th)
    den = mc + mp * s * s
    xdd = (u[0] + mp * s * (l * thd * thd - g * c)) / den
    # d(numerator)/dth = mp (c (l thd^2 - g c) + g s^2); d(den)/dth = 2 mp s c.
    dxdd_dth = (mp * (c * (l * thd * thd - g * c) + g * s * s) - xdd * 2.0 * mp * s * c) / den
    dxdd_dthd = 2.0 * mp * s * l * thd / den
    dxdd_du = 1.0 / den
    for i in range(4):
        for j in range(4):
            Jx[i, j] = 0.0
    Jx[0, 2] = 1.0
    Jx[1, 3] = 1.0
    Jx[2, 1] = dxdd_dth
    Jx[2, 3] = dxdd_dthd
    Jx[3, 1] = (g * c + s * xdd - c * dxdd_dth) / l
    Jx[3, 3] = -c * dxdd_dthd / l
    Ju[0, 0] = 0.0
    Ju[1, 0] = 0.0
    Ju[2, 0] = dxdd_du
    Ju[3, 0] = -c * dxdd_du / l


@numba.njit(cache=True, error_model="numpy", inline="always")
def energy(p, x):
    """Kinetic plus potential energy of one state, zero height at the pivot."""
    mc, mp, l, g = p[0], p[1], p[2], p[3]
    c = math.cos(x[1])
    xd, thd = x[2], x[3]
    # pole mass at (x + l sin th, l cos th): speed^2 = xd^2 + 2 l c xd thd + l^2 thd^2
    return (0.5 * mc * xd * xd + 0.5 * mp * (xd * xd + 2.0 * l * c * xd * thd + l * l * thd * thd)
            + mp * g * l * c)


# ----------------------------------------------------------------------------------------------
# Lane loop: RK4 (or Euler) steps of a block of samples, vectorised across them
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy", inline="always")
def _rhs(th, xd, thd, u0, mc, mp, l, g):
    s, c = sincos_poly(th)
    xdd = (u0 + mp * s * (l * thd * thd - g * c)) / (mc + mp * s * s)
    return xd, thd, xdd, (g * s - c * xdd) / l


@numba.njit(cache=True, error_model="numpy")
def lanes(p, h, substeps, x, u, n):
    """``substeps`` RK4 steps of ``h`` (``-substeps`` Euler steps if negative) on the lanes
    j < n of x: (nx, L) under u: (nu, L), in place; ``f``'s expressions in the same order."""
    mc, mp, l, g = p[0], p[1], p[2], p[3]
    for _ in range(-substeps):  # explicit Euler (none when substeps > 0)
        for j in range(n):
            x0, x1, x2, x3, u0 = x[0, j], x[1, j], x[2, j], x[3, j], u[0, j]
            k10, k11, k12, k13 = _rhs(x1, x2, x3, u0, mc, mp, l, g)
            x[0, j] = x0 + h * k10
            x[1, j] = x1 + h * k11
            x[2, j] = x2 + h * k12
            x[3, j] = x3 + h * k13
    for _ in range(substeps):  # RK4 (none when substeps < 0)
        for j in range(n):
            x0, x1, x2, x3, u0 = x[0, j], x[1, j], x[2, j], x[3, j], u[0, j]
            k10, k11, k12, k13 = _rhs(x1, x2, x3, u0, mc, mp, l, g)
            k20, k21, k22, k23 = _rhs(
                x1 + 0.5 * h * k11, x2 + 0.5 * h * k12, x3 + 0.5 * h * k13, u0, mc, mp, l, g)
            k30, k31, k32, k33 = _rhs(
                x1 + 0.5 * h * k21, x2 + 0.5 * h * k22, x3 + 0.5 * h * k23, u0, mc, mp, l, g)
            k40, k41, k42, k43 = _rhs(
                x1 + h * k31, x2 + h * k32, x3 + h * k33, u0, mc, mp, l, g)
            x[0, j] = x0 + (h / 6.0) * (k10 + 2.0 * k20 + 2.0 * k30 + k40)
            x[1, j] = x1 + (h / 6.0) * (k11 + 2.0 * k21 + 2.0 * k31 + k41)
            x[2, j] = x2 + (h / 6.0) * (k12 + 2.0 * k22 + 2.0 * k32 + k42)
            x[3, j] = x3 + (h / 6.0) * (k13 + 2.0 * k23 + 2.0 * k33 + k43)


# ----------------------------------------------------------------------------------------------
# Python class
# ----------------------------------------------------------------------------------------------


class CartPole(AnalyticSystem):
    """Cart with a point-mass pole; ``th = 0`` upright. ``p = [mc, mp, l, g]``."""

    name = "cartpole"
    sys_id = SYS_ID
    state_names = ("x", "theta", "x_dot", "theta_dot")
    action_names = ("force",)
    angle_dims = (1,)
    has_energy = True

    def __init__(
        self, *, mc=1.0, mp=0.1, l=0.5, g=9.81, max_force=10.0, dt=0.05, substeps=2,
        integrator="rk4",
    ):
        mc, mp, l = check_positive("mc", mc), check_positive("mp", mp), check_positive("l", l)
        g = check_nonnegative("g", g)
        max_force = check_positive("max_force", max_force)
        super().__init__(
            params=[mc, mp, l, g],
            action_low=[-max_force],
            action_high=[max_force],
            dt=dt,
            substeps=substeps,
            integrator=integrator,
            settings=dict(mc=mc, mp=mp, l=l, g=g, max_force=max_force),
        )
