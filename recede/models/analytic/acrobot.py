"""Acrobot (``sys_id`` 2): two links actuated at the elbow. ``x = [th1, th2, th1_d, th2_d]``,
``u = [elbow torque]``, ``p = [m1, m2, l1, l2, lc1, lc2, I1, I2, g]``. ``th1`` is the shoulder
angle from upright, ``th2`` the elbow angle relative to link 1; ``lc*`` are the distances from
each pivot to the link's centre of mass and ``I*`` each link's inertia about its own pivot
(``l2`` only fixes the geometry; it does not enter the dynamics). Manipulator form (Spong;
Tedrake, "Underactuated Robotics", whose ``th1`` is measured from down,
``th1_down = th1 + pi``), with ``c2 = cos(th2)``, ``s2 = sin(th2)``, ``a = m2 l1 lc2``::

    M(q) qdd + C(q, qd) qd = tau_g(q) + [0, 1]^T u
    M     = [[I1 + I2 + m2 l1^2 + 2 a c2, I2 + a c2], [I2 + a c2, I2]]
    C     = [[-2 a s2 qd2, -a s2 qd2], [a s2 qd1, 0]]
    tau_g = [m1 g lc1 sin(th1) + m2 g (l1 sin(th1) + lc2 sin(th1 + th2)),
             m2 g lc2 sin(th1 + th2)]

Total energy ``0.5 qd^T M qd + g (m1 lc1 cos(th1) + m2 (l1 cos(th1) + lc2 cos(th1 + th2)))``
is conserved when ``u = 0``.
"""

from __future__ import annotations

import math

import numba

from recede._numerics import sincos, sincos_poly
from recede.errors import InvalidArgumentError
from recede.models.analytic.system import AnalyticSystem, check_nonnegative, check_positive

SYS_ID = 2


# ----------------------------------------------------------------------------------------------
# Continuous-time dynamics and their Jacobian, one sample (inlined into the dispatchers)
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy", inline="always")
def _solve(s1, s2, c2, s12, qd1, qd2, u0, m1, m2, l1, lc1, lc2, I1, I2, g):
    """M^-1 entries, accelerations and ``a = m2 l1 lc2`` from the angles' sines and cosines
    (shared by the per-sample terms and the lane step, so both give the same bits)."""
    a = m2 * l1 * lc2
    m11 = I1 + I2 + m2 * l1 * l1 + 2.0 * a * c2
    m12 = I2 + a * c2
    m22 = I2
    det = m11 * m22 - m12 * m12
    i11 = m22 / det
    i12 = -m12 / det
    i22 = m11 / det
    # r = tau_g + B u - C qd
    r1 = (
        (m1 * lc1 + m2 * l1) * g * s1
        + m2 * g * lc2 * s12
        + a * s2 * (2.0 * qd1 + qd2) * qd2
    )
    r2 = m2 * g * lc2 * s12 + u0 - a * s2 * qd1 * qd1
    qdd1 = i11 * r1 + i12 * r2
    qdd2 = i12 * r1 + i22 * r2
    return i11, i12, i22, qdd1, qdd2, a


@numba.njit(cache=True, error_model="numpy", inline="always")
def _terms(x, u, p):
    """Inverse mass matrix entries, accelerations and the shared coefficient ``a = m2 l1 lc2``."""
    th1, th2 = x[0], x[1]
    s2, c2 = sincos(th2)
    return _solve(sincos(th1)[0], s2, c2, sincos(th1 + th2)[0], x[2], x[3], u[0],
                          p[0], p[1], p[2], p[4], p[5], p[6], p[7], p[8])


@numba.njit(cache=True, error_model="numpy", inline="always")
def f(x, u, p, out):
    """``out = xdot = f(x, u)`` for one state x: (nx,) and action u: (nu,)."""
    _, _, _, qdd1, qdd2, _ = _terms(x, u, p)
    out[0] = x[2]
    out[1] = x[3]
    out[2] = qdd1
    out[3] = qdd2


@numba.njit(cache=True, error_model="numpy", inline="always")
def jacobian(x, u, p, Jx, Ju):
    """``Jx = df/dx (nx, nx)``, ``Ju = df/du (nx, nu)`` at (x, u), exact."""
    m1, m2, l1, lc1, lc2, g = p[0], p[1], p[2], p[4], p[5], p[8]
    i11, i12, i22, qdd1, qdd2, a = _terms(x, u, p)
    th1, th2, qd1, qd2 = x[0], x[1], x[2], x[3]
    c2 = math.cos(th2)
    s2 = math.sin(th2)
    c12 = math.cos(th1 + th2)
    # M qdd = r(q, qd, u)  =>  d qdd = M^-1 (dr - dM qdd); only M depends on th2.
    # dr/dth1 = dtau_g/dth1
    r1_th1 = (m1 * lc1 + m2 * l1) * g * math.cos(th1) + m2 * g * lc2 * c12
    r2_th1 = m2 * g * lc2 * c12
    # dr/dth2 = dtau_g/dth2 - d(C qd)/dth2 - dM/dth2 qdd, dM/dth2 = [[-2 a s2, -a s2], [-a s2, 0]]
    r1_th2 = m2 * g * lc2 * c12 + a * c2 * (2.0 * qd1 + qd2) * qd2 + a * s2 * (2.0 * qdd1 + qdd2)
    r2_th2 = m2 * g * lc2 * c12 - a * c2 * qd1 * qd1 + a * s2 * qdd1
    # dr/dqd = -d(C qd)/dqd
    r1_qd1 = 2.0 * a * s2 * qd2
    r2_qd1 = -2.0 * a * s2 * qd1
    r1_qd2 = 2.0 * a * s2 * (qd1 + qd2)
    r2_qd2 = 0.0
    for i in range(4):
        for j in range(4):
            Jx[i, j] = 0.0
    Jx[0, 2] = 1.0
    Jx[1, 3] = 1.0
    Jx[2, 0] = i11 * r1_th1 + i12 * r2_th1
    Jx[3, 0] = i12 * r1_th1 + i22 * r2_th1
    Jx[2, 1] = i11 * r1_th2 + i12 * r2_th2
    Jx[3, 1] = i12 * r1_th2 + i22 * r2_th2
    Jx[2, 2] = i11 * r1_qd1 + i12 * r2_qd1
    Jx[3, 2] = i12 * r1_qd1 + i22 * r2_qd1
    Jx[2, 3] = i11 * r1_qd2 + i12 * r2_qd2
    Jx[3, 3] = i12 * r1_qd2 + i22 * r2_qd2
    Ju[0, 0] = 0.0
    Ju[1, 0] = 0.0
    Ju[2, 0] = i12
    Ju[3, 0] = i22


@numba.njit(cache=True, error_model="numpy", inline="always")
def energy(p, x):
    """Kinetic plus potential energy of one state, zero height at the shoulder."""
    m1, m2, l1, lc1, lc2, I1, I2, g = p[0], p[1], p[2], p[4], p[5], p[6], p[7], p[8]
    c2 = math.cos(x[1])
    a = m2 * l1 * lc2
    qd1, qd2 = x[2], x[3]
    kinetic = 0.5 * ((I1 + I2 + m2 * l1 * l1 + 2.0 * a * c2) * qd1 * qd1
                     + 2.0 * (I2 + a * c2) * qd1 * qd2 + I2 * qd2 * qd2)
    return kinetic + g * ((m1 * lc1 + m2 * l1) * math.cos(x[0]) + m2 * lc2 * math.cos(x[0] + x[1]))


# ----------------------------------------------------------------------------------------------
# Lane loop: RK4 (or Euler) steps of a block of samples, vectorised across them
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy", inline="always")
def _rhs(th1, th2, qd1, qd2, u0, m1, m2, l1, lc1, lc2, I1, I2, g):
    s2, c2 = sincos_poly(th2)
    _, _, _, qdd1, qdd2, _ = _solve(sincos_poly(th1)[0], s2, c2, sincos_poly(th1 + th2)[0],
                                            qd1, qd2, u0, m1, m2, l1, lc1, lc2, I1, I2, g)
    return qd1, qd2, qdd1, qdd2


@numba.njit(cache=True, error_model="numpy")
def lanes(p, h, substeps, x, u, n):
    """``substeps`` RK4 steps of ``h`` (``-substeps`` Euler steps if negative) on the lanes
    j < n of x: (nx, L) under u: (nu, L), in place; ``f``'s expressions in the same order."""
    m1, m2, l1, lc1, lc2, I1, I2, g = p[0], p[1], p[2], p[4], p[5], p[6], p[7], p[8]
    for _ in range(-substeps):  # explicit Euler (none when substeps > 0)
        for j in range(n):
            x0, x1, x2, x3, u0 = x[0, j], x[1, j], x[2, j], x[3, j], u[0, j]
            k10, k11, k12, k13 = _rhs(
                x0, x1, x2, x3, u0, m1, m2, l1, lc1, lc2, I1, I2, g)
            x[0, j] = x0 + h * k10
            x[1, j] = x1 + h * k11
            x[2, j] = x2 + h * k12
            x[3, j] = x3 + h * k13
    for _ in range(substeps):  # RK4 (none when substeps < 0)
        for j in range(n):
            x0, x1, x2, x3, u0 = x[0, j], x[1, j], x[2, j], x[3, j], u[0, j]
            k10, k11, k12, k13 = _rhs(
                x0, x1, x2, x3, u0, m1, m2, l1, lc1, lc2, I1, I2, g)
            k20, k21, k22, k23 = _rhs(
                x0 + 0.5 * h * k10, x1 + 0.5 * h * k11, x2 + 0.5 * h * k12, x3 + 0.5 * h * k13,
                u0, m1, m2, l1, lc1, lc2, I1, I2, g)
            k30, k31, k32, k33 = _rhs(
                x0 + 0.5 * h * k20, x1 + 0.5 * h * k21, x2 + 0.5 * h * k22, x3 + 0.5 * h * k23,
                u0, m1, m2, l1, lc1, lc2, I1, I2, g)
            k40, k41, k42, k43 = _rhs(
                x0 + h * k30, x1 + h * k31, x2 + h * k32, x3 + h * k33,
                u0, m1, m2, l1, lc1, lc2, I1, I2, g)
            x[0, j] = x0 + (h / 6.0) * (k10 + 2.0 * k20 + 2.0 * k30 + k40)
            x[1, j] = x1 + (h / 6.0) * (k11 + 2.0 * k21 + 2.0 * k31 + k41)
            x[2, j] = x2 + (h / 6.0) * (k12 + 2.0 * k22 + 2.0 * k32 + k42)
            x[3, j] = x3 + (h / 6.0) * (k13 + 2.0 * k23 + 2.0 * k33 + k43)


# ----------------------------------------------------------------------------------------------
# Python class
# ----------------------------------------------------------------------------------------------


class Acrobot(AnalyticSystem):
    """Two-link arm actuated at the elbow; ``th1 = 0`` upright, ``th2`` relative to link 1.

    ``p = [m1, m2, l1, l2, lc1, lc2, I1, I2, g]``, ``I*`` about each link's own pivot.
    """

    name = "acrobot"
    sys_id = SYS_ID
    state_names = ("theta1", "theta2", "theta1_dot", "theta2_dot")
    action_names = ("elbow_torque",)
    angle_dims = (0, 1)
    has_energy = True

    def __init__(
        self,
        *,
        m1=1.0,
        m2=1.0,
        l1=1.0,
        l2=1.0,
        lc1=0.5,
        lc2=0.5,
        I1=1.0 / 3.0,
        I2=1.0 / 3.0,
        g=9.81,
        max_torque=10.0,
        dt=0.05,
        substeps=2,
        integrator="rk4",
    ):
        vals = {k: check_positive(k, v) for k, v in
                dict(m1=m1, m2=m2, l1=l1, l2=l2, lc1=lc1, lc2=lc2, I1=I1, I2=I2).items()}
        # A point mass at lc about the pivot has inertia m lc^2; no rigid body has less.
        for i in ("1", "2"):
            low = vals["m" + i] * vals["lc" + i] ** 2
            if vals["I" + i] < low * (1.0 - 1e-12):
                raise InvalidArgumentError(
                    f"I{i} must be >= m{i} * lc{i}**2 = {low!r} (inertia about the pivot), "
                    f"got {vals['I' + i]!r}"
                )
        g = check_nonnegative("g", g)
        max_torque = check_positive("max_torque", max_torque)
        super().__init__(
            params=[vals[k] for k in ("m1", "m2", "l1", "l2", "lc1", "lc2", "I1", "I2")] + [g],
            action_low=[-max_torque],
            action_high=[max_torque],
            dt=dt,
            substeps=substeps,
            integrator=integrator,
            settings=dict(vals, g=g, max_torque=max_torque),
        )
