"""Analytic benchmark systems, integrated with fixed-step RK4 (or explicit Euler) in Numba.

Every system is a continuous-time ODE ``xdot = f(x, u)``. One control step of length ``dt`` holds
``u`` constant and takes ``substeps`` steps of ``h = dt / substeps`` of the system's
``integrator``: classical RK4 (``"rk4"``, the default) or explicit Euler ``x += h f(x, u)``
(``"euler"``). Actions are used as given: clipping to ``[action_low, action_high]`` is the
caller's job.

Angle convention: every angle is measured from UPRIGHT (0 = upright, pi = hanging down),
counter-clockwise positive. A point at distance ``r`` along a link at absolute angle ``phi`` sits
at ``(-r sin(phi), r cos(phi))`` from the link's pivot, so its height is ``r cos(phi)``.

Systems (``sys_id``; state; action; parameter array ``p`` layout; equations):

0. Pendulum. ``x = [th, th_d]``, ``u = [torque]``, ``p = [m, l, g, b]``. A point mass ``m`` at
   length ``l`` with viscous damping ``b``::

       th_dd = (g / l) sin(th) + (u - b th_d) / (m l^2)

1. CartPole. ``x = [x, th, x_d, th_d]``, ``u = [force on cart]``, ``p = [mc, mp, l, g]``. Cart
   mass ``mc``, point-mass pole ``mp`` at distance ``l``::

       x_dd  = (f + mp sin(th) (l th_d^2 - g cos(th))) / (mc + mp sin(th)^2)
       th_dd = (g sin(th) - cos(th) x_dd) / l

   These put the pole's mass at ``(x + l sin(th), l cos(th))``: a positive ``th`` leans the pole
   toward +x, which is counter-clockwise when the picture is drawn with +x pointing left (and
   clockwise with +x to the right). A push ``f > 0`` therefore drives ``th`` negative.

2. Acrobot. ``x = [th1, th2, th1_d, th2_d]``, ``u = [elbow torque]``,
   ``p = [m1, m2, l1, l2, lc1, lc2, I1, I2, g]``. ``th1`` is the shoulder angle from upright,
   ``th2`` the elbow angle relative to link 1; ``lc*`` are the distances from each pivot to the
   link's centre of mass and ``I*`` each link's inertia about its own pivot (``l2`` only fixes the
   geometry; it does not enter the dynamics). Manipulator form (Spong; Tedrake, "Underactuated
   Robotics", whose ``th1`` is measured from down, ``th1_down = th1 + pi``), with
   ``c2 = cos(th2)``, ``s2 = sin(th2)``, ``a = m2 l1 lc2``::

       M(q) qdd + C(q, qd) qd = tau_g(q) + [0, 1]^T u
       M     = [[I1 + I2 + m2 l1^2 + 2 a c2, I2 + a c2], [I2 + a c2, I2]]
       C     = [[-2 a s2 qd2, -a s2 qd2], [a s2 qd1, 0]]
       tau_g = [m1 g lc1 sin(th1) + m2 g (l1 sin(th1) + lc2 sin(th1 + th2)),
                m2 g lc2 sin(th1 + th2)]

   Total energy ``0.5 qd^T M qd + g (m1 lc1 cos(th1) + m2 (l1 cos(th1) + lc2 cos(th1 + th2)))``
   is conserved when ``u = 0``.

3. Unicycle. ``x = [x, y, heading]``, ``u = [v, w]``, ``p = []``::

       x_d = v cos(heading),  y_d = v sin(heading),  heading_d = w

4. DoubleIntegrator. ``x = [p (dim), v (dim)]``, ``u = [a (dim)]``, ``p = []`` (``dim`` is read
   from the action's length)::

       p_d = v,  v_d = a

Numba layer: ``rollout_kernel``, ``step_kernel``, ``linearize_kernel`` and ``step_one`` serve every
system, taking the integer ``sys_id``; ``_f``, ``_f_jac`` and ``_rk4_jac`` dispatch on it with
if/elif (no first-class functions, which would defeat ``cache=True``). ``_rk4`` (one sample; used by
``step_one``) inlines ``_f`` with its stages unrolled. The batched ``rollout_kernel`` and
``rollout_quadratic_cost_kernel`` instead run blocks of ``_LANES`` samples in parallel, each block
held in struct-of-arrays layout and stepped by a per-system lane loop (``_lanes_*``) that LLVM
vectorises across samples; they repeat ``_f`` and ``_rk4``'s expressions in the same order, so
their results are bit-identical to ``step_one``'s while every angle stays below 1e6 in size (the
lanes use the branch-free ``sincos_poly``, which drops ``sincos``'s libm fallback beyond that; see
``recede._numerics``). The discrete Jacobians
are exact: forward-mode derivatives carried through the RK4 stages (or Euler steps) by the chain
rule. Python objects expose ``kernel_args == (sys_id, p, dt, substeps)`` so other Numba code can
call, e.g., ``rollout_kernel(*model.kernel_args, x0, U, X)``.

Integrator encoding: every kernel's ``substeps`` argument carries the integrator in its sign.
``substeps > 0`` means that many classical RK4 steps of ``h = dt / substeps``; ``substeps < 0``
means ``-substeps`` explicit Euler steps ``x += h f(x, u)`` of ``h = dt / (-substeps)``. (The
Python objects' ``substeps`` attribute is always positive; only ``kernel_args`` carries the sign.)
The Euler paths keep the bit-for-bit agreement above: ``_rk4`` and the lane loops compute
``x + h * f`` with the same ``f`` expressions.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from recede._numerics import sincos, sincos_poly
from recede.costs import (
    QuadraticCost,
    quadratic_stage,
    quadratic_stage_lanes,
    quadratic_terminal,
    quadratic_terminal_lanes,
)
from recede.errors import InvalidArgumentError
from recede.models.base import as_actions, as_state, as_trajectory, broadcast_x0, check_finite

__all__ = [
    "PENDULUM",
    "CARTPOLE",
    "ACROBOT",
    "UNICYCLE",
    "DOUBLE_INTEGRATOR",
    "AnalyticSystem",
    "Pendulum",
    "CartPole",
    "Acrobot",
    "Unicycle",
    "DoubleIntegrator",
    "rollout_kernel",
    "step_kernel",
    "linearize_kernel",
    "step_one",
    "energy_one",
    "energy_kernel",
]

PENDULUM = 0
CARTPOLE = 1
ACROBOT = 2
UNICYCLE = 3
DOUBLE_INTEGRATOR = 4

# Scratch layout of the Jacobian work: (_STEP_ROWS + 5 nx, nx + nu): _STEP_ROWS rows = current
# state, stage state, stage slope, weighted slope sum (first nx columns), then five (nx, nx + nu) blocks holding derivatives with respect to z = (x, u):
# D = dx/dz, Ds = d(stage state)/dz, K = d(stage slope)/dz, S = weighted sum of K, J = [fx | fu].
_STEP_ROWS = 4


# ----------------------------------------------------------------------------------------------
# Continuous-time dynamics and their Jacobians, per system. These small helpers are inlined into
# their callers at the Numba IR level (inline="always"), so they are not compiled and linked as
# separate functions: that cuts the cold (uncached) compile time by about a quarter.
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy", inline="always")
def _f_pendulum(x, u, p, out):
    m, l, g, b = p[0], p[1], p[2], p[3]
    out[0] = x[1]
    out[1] = (g / l) * sincos(x[0])[0] + (u[0] - b * x[1]) / (m * l * l)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _jac_pendulum(x, u, p, Jx, Ju):
    m, l, g, b = p[0], p[1], p[2], p[3]
    Jx[0, 0] = 0.0
    Jx[0, 1] = 1.0
    Jx[1, 0] = (g / l) * math.cos(x[0])
    Jx[1, 1] = -b / (m * l * l)
    Ju[0, 0] = 0.0
    Ju[1, 0] = 1.0 / (m * l * l)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _f_cartpole(x, u, p, out):
    mc, mp, l, g = p[0], p[1], p[2], p[3]
    th, xd, thd = x[1], x[2], x[3]
    s, c = sincos(th)
    xdd = (u[0] + mp * s * (l * thd * thd - g * c)) / (mc + mp * s * s)
    out[0] = xd
    out[1] = thd
    out[2] = xdd
    out[3] = (g * s - c * xdd) / l


@numba.njit(cache=True, error_model="numpy", inline="always")
def _jac_cartpole(x, u, p, Jx, Ju):
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
def _acrobot_solve(s1, s2, c2, s12, qd1, qd2, u0, m1, m2, l1, lc1, lc2, I1, I2, g):
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
def _acrobot_terms(x, u, p):
    """Inverse mass matrix entries, accelerations and the shared coefficient ``a = m2 l1 lc2``."""
    th1, th2 = x[0], x[1]
    s2, c2 = sincos(th2)
    return _acrobot_solve(sincos(th1)[0], s2, c2, sincos(th1 + th2)[0], x[2], x[3], u[0],
                          p[0], p[1], p[2], p[4], p[5], p[6], p[7], p[8])


@numba.njit(cache=True, error_model="numpy", inline="always")
def _f_acrobot(x, u, p, out):
    _, _, _, qdd1, qdd2, _ = _acrobot_terms(x, u, p)
    out[0] = x[2]
    out[1] = x[3]
    out[2] = qdd1
    out[3] = qdd2


@numba.njit(cache=True, error_model="numpy", inline="always")
def _jac_acrobot(x, u, p, Jx, Ju):
    m1, m2, l1, lc1, lc2, g = p[0], p[1], p[2], p[4], p[5], p[8]
    i11, i12, i22, qdd1, qdd2, a = _acrobot_terms(x, u, p)
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
def _f_unicycle(x, u, p, out):
    sh, ch = sincos(x[2])
    out[0] = u[0] * ch
    out[1] = u[0] * sh
    out[2] = u[1]


@numba.njit(cache=True, error_model="numpy", inline="always")
def _jac_unicycle(x, u, Jx, Ju):
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


@numba.njit(cache=True, error_model="numpy", inline="always")
def _f_double_integrator(x, u, p, out):
    d = u.shape[0]
    for i in range(d):
        out[i] = x[d + i]
        out[d + i] = u[i]


@numba.njit(cache=True, error_model="numpy", inline="always")
def _jac_double_integrator(x, u, Jx, Ju):
    d = u.shape[0]
    Jx[:, :] = 0.0
    Ju[:, :] = 0.0
    for i in range(d):
        Jx[i, d + i] = 1.0
        Ju[d + i, i] = 1.0


# ----------------------------------------------------------------------------------------------
# Dispatch on sys_id
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy", inline="always")
def _f(sys_id, x, u, p, out):
    """Continuous-time ``out = f(x, u)`` for system ``sys_id`` with parameters ``p``."""
    if sys_id == PENDULUM:
        _f_pendulum(x, u, p, out)
    elif sys_id == CARTPOLE:
        _f_cartpole(x, u, p, out)
    elif sys_id == ACROBOT:
        _f_acrobot(x, u, p, out)
    elif sys_id == UNICYCLE:
        _f_unicycle(x, u, p, out)
    elif sys_id == DOUBLE_INTEGRATOR:
        _f_double_integrator(x, u, p, out)
    else:  # unreachable from the Python layer; NaN marks the rollout as diverged
        out[:] = np.nan


@numba.njit(cache=True, error_model="numpy")
def _f_jac(sys_id, x, u, p, Jx, Ju):
    """Continuous-time Jacobians ``Jx = df/dx (nx, nx)``, ``Ju = df/du (nx, nu)``."""
    if sys_id == PENDULUM:
        _jac_pendulum(x, u, p, Jx, Ju)
    elif sys_id == CARTPOLE:
        _jac_cartpole(x, u, p, Jx, Ju)
    elif sys_id == ACROBOT:
        _jac_acrobot(x, u, p, Jx, Ju)
    elif sys_id == UNICYCLE:
        _jac_unicycle(x, u, Jx, Ju)
    elif sys_id == DOUBLE_INTEGRATOR:
        _jac_double_integrator(x, u, Jx, Ju)
    else:
        raise ValueError("unknown analytic sys_id")


# ----------------------------------------------------------------------------------------------
# Mechanical energy (pendulum, cart-pole, acrobot)
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy")
def energy_one(sys_id, p, x):
    """Total mechanical energy (kinetic + potential, zero height at the pivot) of one state of
    ``sys_id``; NaN for systems without one (unicycle, double integrator)."""
    if sys_id == PENDULUM:
        m, l, g = p[0], p[1], p[2]
        return 0.5 * m * l * l * x[1] * x[1] + m * g * l * math.cos(x[0])
    if sys_id == CARTPOLE:
        mc, mp, l, g = p[0], p[1], p[2], p[3]
        c = math.cos(x[1])
        xd, thd = x[2], x[3]
        # pole mass at (x + l sin th, l cos th): speed^2 = xd^2 + 2 l c xd thd + l^2 thd^2
        return (0.5 * mc * xd * xd + 0.5 * mp * (xd * xd + 2.0 * l * c * xd * thd + l * l * thd * thd)
                + mp * g * l * c)
    if sys_id == ACROBOT:
        m1, m2, l1, lc1, lc2, I1, I2, g = p[0], p[1], p[2], p[4], p[5], p[6], p[7], p[8]
        c2 = math.cos(x[1])
        a = m2 * l1 * lc2
        qd1, qd2 = x[2], x[3]
        kinetic = 0.5 * ((I1 + I2 + m2 * l1 * l1 + 2.0 * a * c2) * qd1 * qd1
                         + 2.0 * (I2 + a * c2) * qd1 * qd2 + I2 * qd2 * qd2)
        return kinetic + g * ((m1 * lc1 + m2 * l1) * math.cos(x[0]) + m2 * lc2 * math.cos(x[0] + x[1]))
    return np.nan


@numba.njit(cache=True, parallel=True, error_model="numpy")
def energy_kernel(sys_id, p, X, out):
    """``out[i] = energy_one(sys_id, p, X[i])`` for X: (N, nx)."""
    for i in numba.prange(X.shape[0]):
        out[i] = energy_one(sys_id, p, X[i])


# ----------------------------------------------------------------------------------------------
# RK4 step and its exact Jacobian
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy", inline="always")
def _jac_work(nx, nu):
    return np.empty((_STEP_ROWS + 5 * nx, nx + nu))


@numba.njit(cache=True, error_model="numpy", inline="always")
def _step_size(dt, substeps):
    """``h = dt / |substeps|``: the integrator step for the signed ``substeps`` of ``kernel_args``
    (> 0: RK4 steps, < 0: explicit Euler steps)."""
    return dt / abs(substeps)


# Classical RK4 tableau: stage s is evaluated at x + _RK4_C[s] h k_{s-1}; x+ = x + h/6 sum w_s k_s.
_RK4_C = (0.0, 0.5, 0.5, 1.0)
_RK4_W = (1.0, 2.0, 2.0, 1.0)


# Not inlined: step_one, the scalar reference kernel and iLQR's fused solve call the one compiled
# copy (the four stages with every system's f inlined take about a minute to compile cold).
# Compiled without Numba's reference counting (``_nrt=False``: it allocates nothing): the array
# arguments of the inlined per-system ``f`` behind the ``sys_id`` branches otherwise cost atomic
# increments and decrements on every stage, which tripled the time of a double-integrator step
# (139 -> 48 ns here; cart-pole 463 -> 300 ns; same bits).
@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _rk4(sys_id, x, u, p, h, substeps, xs, k, acc):
    """``substeps`` classical RK4 steps of ``h`` on ``x`` in place, or, for ``substeps < 0``,
    ``-substeps`` explicit Euler steps ``x += h f(x, u)``. ``xs, k, acc``: (nx,) scratch."""
    nx = x.shape[0]
    for _ in range(-substeps):  # explicit Euler (none when substeps > 0)
        _f(sys_id, x, u, p, k)
        for i in range(nx):
            x[i] += h * k[i]
    for _ in range(substeps):  # RK4 (none when substeps < 0)
        _f(sys_id, x, u, p, k)
        for i in range(nx):
            acc[i] = k[i]
            xs[i] = x[i] + 0.5 * h * k[i]
        _f(sys_id, xs, u, p, k)
        for i in range(nx):
            acc[i] += 2.0 * k[i]
            xs[i] = x[i] + 0.5 * h * k[i]
        _f(sys_id, xs, u, p, k)
        for i in range(nx):
            acc[i] += 2.0 * k[i]
            xs[i] = x[i] + h * k[i]
        _f(sys_id, xs, u, p, k)
        for i in range(nx):
            x[i] += (h / 6.0) * (acc[i] + k[i])


@numba.njit(cache=True, error_model="numpy")
def _rk4_jac(sys_id, x, u, p, dt, substeps, A, B, work):
    """Exact Jacobians of one control step (``_rk4``): A = dx+/dx (nx, nx), B = dx+/du (nx, nu).

    Forward mode through every RK4 stage and substep, with respect to ``z = (x, u)``: a stage
    at ``xs = xc + c h k_prev`` has ``dxs/dz = D + c h K_prev`` and slope derivative
    ``K = fx(xs) dxs/dz + [0 | fu(xs)]``; after the four stages ``D += h/6 sum w_s K_s``.
    For ``substeps < 0`` (explicit Euler) each of the ``-substeps`` steps ``xc += h f(xc)`` has
    ``D += h (fx(xc) D + [0 | fu(xc)])``, evaluated before ``xc`` moves.
    ``work`` is scratch of shape at least ``(4 + 5 nx, nx + nu)`` (see ``_jac_work``).
    """
    nx = x.shape[0]
    nz = nx + u.shape[0]
    h = _step_size(dt, substeps)
    xc = work[0, :nx]
    xs = work[1, :nx]
    k = work[2, :nx]
    acc = work[3, :nx]
    r = _STEP_ROWS
    D = work[r : r + nx, :nz]  # d(xc)/dz
    Ds = work[r + nx : r + 2 * nx, :nz]  # d(xs)/dz
    K = work[r + 2 * nx : r + 3 * nx, :nz]  # d(k)/dz
    S = work[r + 3 * nx : r + 4 * nx, :nz]  # d(acc)/dz
    J = work[r + 4 * nx : r + 5 * nx, :nz]  # [fx | fu] at xs
    for i in range(nx):
        xc[i] = x[i]
        k[i] = 0.0
        for j in range(nz):
            D[i, j] = 1.0 if i == j else 0.0
            K[i, j] = 0.0
    for _ in range(-substeps):  # explicit Euler (none when substeps > 0)
        _f(sys_id, xc, u, p, k)
        _f_jac(sys_id, xc, u, p, J[:, :nx], J[:, nx:])
        for i in range(nx):
            for j in range(nz):
                kij = J[i, j] if j >= nx else 0.0
                for m in range(nx):
                    kij += J[i, m] * D[m, j]
                K[i, j] = kij
        for i in range(nx):
            xc[i] += h * k[i]
            for j in range(nz):
                D[i, j] += h * K[i, j]
    for _ in range(substeps):  # RK4 (none when substeps < 0)
        for s in range(4):
            c = _RK4_C[s] * h
            for i in range(nx):
                xs[i] = xc[i] + c * k[i]
                for j in range(nz):
                    Ds[i, j] = D[i, j] + c * K[i, j]
            _f(sys_id, xs, u, p, k)
            _f_jac(sys_id, xs, u, p, J[:, :nx], J[:, nx:])
            for i in range(nx):
                for j in range(nz):
                    kij = J[i, j] if j >= nx else 0.0
                    for m in range(nx):
                        kij += J[i, m] * Ds[m, j]
                    K[i, j] = kij
            w = _RK4_W[s]
            for i in range(nx):
                acc[i] = w * k[i] if s == 0 else acc[i] + w * k[i]
                for j in range(nz):
                    S[i, j] = w * K[i, j] if s == 0 else S[i, j] + w * K[i, j]
        for i in range(nx):
            xc[i] += (h / 6.0) * acc[i]
            for j in range(nz):
                D[i, j] += (h / 6.0) * S[i, j]
    for i in range(nx):
        for j in range(nx):
            A[i, j] = D[i, j]
        for j in range(nz - nx):
            B[i, j] = D[i, nx + j]


# ----------------------------------------------------------------------------------------------
# Lane-blocked RK4: a block of up to _LANES samples in struct-of-arrays layout, x: (nx, _LANES)
# with sample j in column j. Each system's step is a loop over the lanes j < n whose body is
# straight-line scalar code (all RK4 stages of one substep, sincos_poly, selects, no calls that
# stay calls, no views), so LLVM vectorises it across samples (<4 x double> with AVX2). The
# expressions are those of _f_* and _rk4 in the same order, so the results are bit-identical to
# step_one as long as sincos_poly agrees with sincos (angles below 1e6 in size). A negative
# substeps takes the explicit Euler loop instead (-substeps steps x + h * f, same expressions).
# ----------------------------------------------------------------------------------------------

_LANES = 64


@numba.njit(cache=True, error_model="numpy", inline="always")
def _rhs_pendulum(th, thd, u0, m, l, g, b):
    return thd, (g / l) * sincos_poly(th)[0] + (u0 - b * thd) / (m * l * l)


@numba.njit(cache=True, error_model="numpy")
def _lanes_pendulum(p, h, substeps, x, u, n):
    m, l, g, b = p[0], p[1], p[2], p[3]
    for _ in range(-substeps):  # explicit Euler (none when substeps > 0)
        for j in range(n):
            x0, x1, u0 = x[0, j], x[1, j], u[0, j]
            k10, k11 = _rhs_pendulum(x0, x1, u0, m, l, g, b)
            x[0, j] = x0 + h * k10
            x[1, j] = x1 + h * k11
    for _ in range(substeps):  # RK4 (none when substeps < 0)
        for j in range(n):
            x0, x1, u0 = x[0, j], x[1, j], u[0, j]
            k10, k11 = _rhs_pendulum(x0, x1, u0, m, l, g, b)
            k20, k21 = _rhs_pendulum(x0 + 0.5 * h * k10, x1 + 0.5 * h * k11, u0, m, l, g, b)
            k30, k31 = _rhs_pendulum(x0 + 0.5 * h * k20, x1 + 0.5 * h * k21, u0, m, l, g, b)
            k40, k41 = _rhs_pendulum(x0 + h * k30, x1 + h * k31, u0, m, l, g, b)
            x[0, j] = x0 + (h / 6.0) * (k10 + 2.0 * k20 + 2.0 * k30 + k40)
            x[1, j] = x1 + (h / 6.0) * (k11 + 2.0 * k21 + 2.0 * k31 + k41)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _rhs_cartpole(th, xd, thd, u0, mc, mp, l, g):
    s, c = sincos_poly(th)
    xdd = (u0 + mp * s * (l * thd * thd - g * c)) / (mc + mp * s * s)
    return xd, thd, xdd, (g * s - c * xdd) / l


@numba.njit(cache=True, error_model="numpy")
def _lanes_cartpole(p, h, substeps, x, u, n):
    mc, mp, l, g = p[0], p[1], p[2], p[3]
    for _ in range(-substeps):  # explicit Euler (none when substeps > 0)
        for j in range(n):
            x0, x1, x2, x3, u0 = x[0, j], x[1, j], x[2, j], x[3, j], u[0, j]
            k10, k11, k12, k13 = _rhs_cartpole(x1, x2, x3, u0, mc, mp, l, g)
            x[0, j] = x0 + h * k10
            x[1, j] = x1 + h * k11
            x[2, j] = x2 + h * k12
            x[3, j] = x3 + h * k13
    for _ in range(substeps):  # RK4 (none when substeps < 0)
        for j in range(n):
            x0, x1, x2, x3, u0 = x[0, j], x[1, j], x[2, j], x[3, j], u[0, j]
            k10, k11, k12, k13 = _rhs_cartpole(x1, x2, x3, u0, mc, mp, l, g)
            k20, k21, k22, k23 = _rhs_cartpole(
                x1 + 0.5 * h * k11, x2 + 0.5 * h * k12, x3 + 0.5 * h * k13, u0, mc, mp, l, g)
            k30, k31, k32, k33 = _rhs_cartpole(
                x1 + 0.5 * h * k21, x2 + 0.5 * h * k22, x3 + 0.5 * h * k23, u0, mc, mp, l, g)
            k40, k41, k42, k43 = _rhs_cartpole(
                x1 + h * k31, x2 + h * k32, x3 + h * k33, u0, mc, mp, l, g)
            x[0, j] = x0 + (h / 6.0) * (k10 + 2.0 * k20 + 2.0 * k30 + k40)
            x[1, j] = x1 + (h / 6.0) * (k11 + 2.0 * k21 + 2.0 * k31 + k41)
            x[2, j] = x2 + (h / 6.0) * (k12 + 2.0 * k22 + 2.0 * k32 + k42)
            x[3, j] = x3 + (h / 6.0) * (k13 + 2.0 * k23 + 2.0 * k33 + k43)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _rhs_acrobot(th1, th2, qd1, qd2, u0, m1, m2, l1, lc1, lc2, I1, I2, g):
    s2, c2 = sincos_poly(th2)
    _, _, _, qdd1, qdd2, _ = _acrobot_solve(sincos_poly(th1)[0], s2, c2, sincos_poly(th1 + th2)[0],
                                            qd1, qd2, u0, m1, m2, l1, lc1, lc2, I1, I2, g)
    return qd1, qd2, qdd1, qdd2


@numba.njit(cache=True, error_model="numpy")
def _lanes_acrobot(p, h, substeps, x, u, n):
    m1, m2, l1, lc1, lc2, I1, I2, g = p[0], p[1], p[2], p[4], p[5], p[6], p[7], p[8]
    for _ in range(-substeps):  # explicit Euler (none when substeps > 0)
        for j in range(n):
            x0, x1, x2, x3, u0 = x[0, j], x[1, j], x[2, j], x[3, j], u[0, j]
            k10, k11, k12, k13 = _rhs_acrobot(
                x0, x1, x2, x3, u0, m1, m2, l1, lc1, lc2, I1, I2, g)
            x[0, j] = x0 + h * k10
            x[1, j] = x1 + h * k11
            x[2, j] = x2 + h * k12
            x[3, j] = x3 + h * k13
    for _ in range(substeps):  # RK4 (none when substeps < 0)
        for j in range(n):
            x0, x1, x2, x3, u0 = x[0, j], x[1, j], x[2, j], x[3, j], u[0, j]
            k10, k11, k12, k13 = _rhs_acrobot(
                x0, x1, x2, x3, u0, m1, m2, l1, lc1, lc2, I1, I2, g)
            k20, k21, k22, k23 = _rhs_acrobot(
                x0 + 0.5 * h * k10, x1 + 0.5 * h * k11, x2 + 0.5 * h * k12, x3 + 0.5 * h * k13,
                u0, m1, m2, l1, lc1, lc2, I1, I2, g)
            k30, k31, k32, k33 = _rhs_acrobot(
                x0 + 0.5 * h * k20, x1 + 0.5 * h * k21, x2 + 0.5 * h * k22, x3 + 0.5 * h * k23,
                u0, m1, m2, l1, lc1, lc2, I1, I2, g)
            k40, k41, k42, k43 = _rhs_acrobot(
                x0 + h * k30, x1 + h * k31, x2 + h * k32, x3 + h * k33,
                u0, m1, m2, l1, lc1, lc2, I1, I2, g)
            x[0, j] = x0 + (h / 6.0) * (k10 + 2.0 * k20 + 2.0 * k30 + k40)
            x[1, j] = x1 + (h / 6.0) * (k11 + 2.0 * k21 + 2.0 * k31 + k41)
            x[2, j] = x2 + (h / 6.0) * (k12 + 2.0 * k22 + 2.0 * k32 + k42)
            x[3, j] = x3 + (h / 6.0) * (k13 + 2.0 * k23 + 2.0 * k33 + k43)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _rhs_unicycle(hd, u0, u1):
    sh, ch = sincos_poly(hd)
    return u0 * ch, u0 * sh, u1


@numba.njit(cache=True, error_model="numpy")
def _lanes_unicycle(h, substeps, x, u, n):
    for _ in range(-substeps):  # explicit Euler (none when substeps > 0)
        for j in range(n):
            x0, x1, x2, u0, u1 = x[0, j], x[1, j], x[2, j], u[0, j], u[1, j]
            k10, k11, k12 = _rhs_unicycle(x2, u0, u1)
            x[0, j] = x0 + h * k10
            x[1, j] = x1 + h * k11
            x[2, j] = x2 + h * k12
    for _ in range(substeps):  # RK4 (none when substeps < 0)
        for j in range(n):
            x0, x1, x2, u0, u1 = x[0, j], x[1, j], x[2, j], u[0, j], u[1, j]
            k10, k11, k12 = _rhs_unicycle(x2, u0, u1)
            k20, k21, k22 = _rhs_unicycle(x2 + 0.5 * h * k12, u0, u1)
            k30, k31, k32 = _rhs_unicycle(x2 + 0.5 * h * k22, u0, u1)
            k40, k41, k42 = _rhs_unicycle(x2 + h * k32, u0, u1)
            x[0, j] = x0 + (h / 6.0) * (k10 + 2.0 * k20 + 2.0 * k30 + k40)
            x[1, j] = x1 + (h / 6.0) * (k11 + 2.0 * k21 + 2.0 * k31 + k41)
            x[2, j] = x2 + (h / 6.0) * (k12 + 2.0 * k22 + 2.0 * k32 + k42)


@numba.njit(cache=True, error_model="numpy")
def _lanes_double_integrator(h, substeps, x, u, n):
    # The dimensions are independent: position i, velocity d + i, acceleration u[i].
    d = u.shape[0]
    for _ in range(-substeps):  # explicit Euler (none when substeps > 0)
        for i in range(d):
            for j in range(n):
                x0, x1, a = x[i, j], x[d + i, j], u[i, j]
                x[i, j] = x0 + h * x1
                x[d + i, j] = x1 + h * a
    for _ in range(substeps):  # RK4 (none when substeps < 0)
        for i in range(d):
            for j in range(n):
                x0, x1, a = x[i, j], x[d + i, j], u[i, j]
                k10 = x1
                k20 = x1 + 0.5 * h * a
                k30 = x1 + 0.5 * h * a
                k40 = x1 + h * a
                x[i, j] = x0 + (h / 6.0) * (k10 + 2.0 * k20 + 2.0 * k30 + k40)
                x[d + i, j] = x1 + (h / 6.0) * (a + 2.0 * a + 2.0 * a + a)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _lanes_step(sys_id, p, h, substeps, x, u, n):
    """``substeps`` RK4 steps of ``h`` on the lanes j < n of x: (nx, L), u: (nu, L), in place;
    ``-substeps`` explicit Euler steps when ``substeps < 0``."""
    if sys_id == PENDULUM:
        _lanes_pendulum(p, h, substeps, x, u, n)
    elif sys_id == CARTPOLE:
        _lanes_cartpole(p, h, substeps, x, u, n)
    elif sys_id == ACROBOT:
        _lanes_acrobot(p, h, substeps, x, u, n)
    elif sys_id == UNICYCLE:
        _lanes_unicycle(h, substeps, x, u, n)
    elif sys_id == DOUBLE_INTEGRATOR:
        _lanes_double_integrator(h, substeps, x, u, n)
    else:  # unreachable from the Python layer; NaN marks the rollout as diverged
        x[:, :] = np.nan


# ----------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy", parallel=True)
def rollout_kernel(sys_id, p, dt, substeps, x0, U, X):
    """x0: (B, nx), U: (B, H, nu) -> writes X: (B, H+1, nx) in place, with X[:, 0] = x0.

    Blocks of ``_LANES`` samples in parallel, each vectorised across its samples; the results
    equal ``step_one`` applied step by step (bit for bit while all angles stay below 1e6).
    """
    nb, horizon, nu = U.shape
    nx = x0.shape[1]
    h = _step_size(dt, substeps)
    for blk in numba.prange((nb + _LANES - 1) // _LANES):
        b0 = blk * _LANES
        n = min(_LANES, nb - b0)
        # thread-local block state, sample b0 + j in column j
        x, u = np.empty((nx, _LANES)), np.empty((nu, _LANES))
        for j in range(n):
            for i in range(nx):
                x[i, j] = x0[b0 + j, i]
                X[b0 + j, 0, i] = x0[b0 + j, i]
        for t in range(horizon):
            for j in range(n):
                for i in range(nu):
                    u[i, j] = U[b0 + j, t, i]
            _lanes_step(sys_id, p, h, substeps, x, u, n)
            for j in range(n):
                for i in range(nx):
                    X[b0 + j, t + 1, i] = x[i, j]


@numba.njit(cache=True, error_model="numpy", parallel=True)
def rollout_quadratic_cost_kernel(
    sys_id, p, dt, substeps, x0, U, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, out
):
    """Rollout fused with a ``QuadraticCost``: x0: (nx,), U: (B, H, nu) -> out: (B,) costs.

    The same arithmetic as ``rollout_kernel`` followed by the cost's own kernel, without writing
    or re-reading the states: the sampling planners' hot path. Lane-blocked like
    ``rollout_kernel``, cost included; bit-identical to ``_rollout_quadratic_cost_scalar``
    while all angles (and angle errors) stay below 1e6.
    """
    nb, horizon, nu = U.shape
    nx = x0.shape[0]
    h = _step_size(dt, substeps)
    for blk in numba.prange((nb + _LANES - 1) // _LANES):
        b0 = blk * _LANES
        n = min(_LANES, nb - b0)
        x, u = np.empty((nx, _LANES)), np.empty((nu, _LANES))
        e, du = np.empty((nx, _LANES)), np.empty((nu, _LANES))
        r, sx, su, total = np.empty(_LANES), np.empty(_LANES), np.empty(_LANES), np.empty(_LANES)
        for i in range(nx):
            for j in range(n):
                x[i, j] = x0[i]
        for j in range(n):
            total[j] = 0.0
        for t in range(horizon):
            for j in range(n):
                for i in range(nu):
                    u[i, j] = U[b0 + j, t, i]
            quadratic_stage_lanes(
                x, u, n, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, e, du, r, sx, su, total)
            _lanes_step(sys_id, p, h, substeps, x, u, n)
        quadratic_terminal_lanes(x, n, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, e, r, sx)
        for j in range(n):
            out[b0 + j] = total[j] + sx[j]


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _rollout_quadratic_cost_scalar(
    sys_id, p, dt, substeps, x0, U, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, out
):
    """``rollout_quadratic_cost_kernel`` one sample at a time (``_rk4``, ``quadratic_stage``):
    the reference for tests and benchmarks/analytic_rollout.py."""
    nb, horizon, nu = U.shape
    nx = x0.shape[0]
    h = _step_size(dt, substeps)
    for b in numba.prange(nb):
        x, xs, k, acc, u = np.empty(nx), np.empty(nx), np.empty(nx), np.empty(nx), np.empty(nu)
        e, du = np.empty(nx), np.empty(nu)
        for i in range(nx):
            x[i] = x0[i]
        total = 0.0
        for t in range(horizon):
            for j in range(nu):
                u[j] = U[b, t, j]
            total += quadratic_stage(x, u, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, e, du)
            _rk4(sys_id, x, u, p, h, substeps, xs, k, acc)
        out[b] = total + quadratic_terminal(x, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, e)


@numba.njit(cache=True, error_model="numpy")
def step_kernel(sys_id, p, dt, substeps, X, U, out):
    """X: (B, nx), U: (B, nu) -> writes the next states into out: (B, nx)."""
    rollout = np.empty((X.shape[0], 2, X.shape[1]))
    rollout_kernel(sys_id, p, dt, substeps, X, U.reshape(U.shape[0], 1, U.shape[1]), rollout)
    out[:] = rollout[:, 1]


@numba.njit(cache=True, error_model="numpy", parallel=True)
def linearize_kernel(sys_id, p, dt, substeps, X, U, A, Bm):
    """X: (H+1, nx) (only X[:H] is read), U: (H, nu) -> A: (H, nx, nx), Bm: (H, nx, nu)."""
    nx, nu = X.shape[1], U.shape[1]
    for t in numba.prange(U.shape[0]):
        work = _jac_work(nx, nu)
        _rk4_jac(sys_id, X[t], U[t], p, dt, substeps, A[t], Bm[t], work)


@numba.njit(cache=True, error_model="numpy")
def step_one(sys_id, p, dt, substeps, x, u, out):
    """x: (nx,), u: (nu,) -> writes the next state into out: (nx,). Serial; ``out`` may alias x.

    For single environments and for search trees written inside Numba.
    """
    nx = x.shape[0]
    xc, xs, k, acc = np.empty(nx), np.empty(nx), np.empty(nx), np.empty(nx)
    xc[:] = x
    _rk4(sys_id, xc, u, p, _step_size(dt, substeps), substeps, xs, k, acc)
    out[:] = xc


# ----------------------------------------------------------------------------------------------
# Python layer
# ----------------------------------------------------------------------------------------------


def _readonly(a) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def _check_real(name: str, value, positive: bool) -> float:
    """``value`` as a finite float that is > 0 (``positive``) or >= 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v):
        raise InvalidArgumentError(f"{name} must be a finite number, got {value!r}")
    if not (v > 0.0 if positive else v >= 0.0):
        raise InvalidArgumentError(f"{name} must be {'>' if positive else '>='} 0, got {value!r}")
    return v


def _check_positive(name: str, value) -> float:
    return _check_real(name, value, positive=True)


def _check_nonnegative(name: str, value) -> float:
    return _check_real(name, value, positive=False)


def _check_int(name: str, value, minimum: int) -> int:
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not is_int or value < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


_INTEGRATORS = ("rk4", "euler")


def _check_integrator(value) -> str:
    """``value`` as one of ``_INTEGRATORS``."""
    if not isinstance(value, str) or value not in _INTEGRATORS:
        raise InvalidArgumentError(f"integrator must be 'rk4' or 'euler', got {value!r}")
    return str(value)


class AnalyticSystem:
    """An analytic ODE integrated with RK4 or explicit Euler (``integrator``, ``"rk4"`` or
    ``"euler"``; ``substeps`` steps of ``dt / substeps`` per control step); satisfies ``Dynamics``
    and ``Differentiable``.

    Subclasses set the class attributes ``name``, ``sys_id``, ``state_names``, ``action_names``
    and ``angle_dims`` and call ``__init__`` with their validated parameters.
    """

    name: str
    sys_id: int
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    angle_dims: tuple[int, ...]
    has_energy: bool = False  # whether ``energy`` (and ``energy_one``) is defined

    def __init__(
        self,
        *,
        params,
        action_low,
        action_high,
        dt: float,
        substeps: int,
        settings: dict,
        integrator: str = "rk4",
    ):
        self.dt = _check_positive("dt", dt)
        self.substeps = _check_int("substeps", substeps, 1)
        self.integrator = _check_integrator(integrator)
        self.params = _readonly(params)
        self.action_low = _readonly(action_low)
        self.action_high = _readonly(action_high)
        self.nx = len(self.state_names)
        self.nu = len(self.action_names)
        self.ndx = self.nx
        self._settings = {
            **settings, "dt": self.dt, "substeps": self.substeps, "integrator": self.integrator
        }

    @property
    def kernel_args(self) -> tuple:
        """``(sys_id, p, dt, substeps)``, the leading arguments of every kernel here.

        The integrator rides on the sign of ``substeps``: ``self.substeps`` for RK4,
        ``-self.substeps`` for explicit Euler (see the module docstring).
        """
        substeps = self.substeps if self.integrator == "rk4" else -self.substeps
        return (self.sys_id, self.params, self.dt, substeps)

    def rollout(self, x0, U) -> np.ndarray:
        """x0: (nx,) or (B, nx), U: (B, H, nu) -> X: (B, H+1, nx) with X[:, 0] = x0."""
        U = as_actions(U, self.nu, "U")
        x0 = broadcast_x0(as_state(x0, self.nx, "x0", batch=True), U.shape[0])
        X = np.empty((U.shape[0], U.shape[1] + 1, self.nx))
        rollout_kernel(*self.kernel_args, x0, U, X)
        return X

    def rollout_cost(self, x0, U, cost):
        """Fused fast path: total costs (B,) of U: (B, H, nu) from x0: (nx,) under ``cost``, or
        None when ``cost`` is not a ``QuadraticCost`` (then roll out and call the cost).

        Inputs are trusted (the Problem validated them); results equal ``cost(rollout(x0, U), U)``.
        """
        if type(cost) is not QuadraticCost or cost.nx != self.nx or cost.nu != self.nu:
            return None
        out = np.empty(U.shape[0])
        rollout_quadratic_cost_kernel(*self.kernel_args, x0, U, *cost.kernel_args, out)
        return out

    def step(self, X, U) -> np.ndarray:
        """X: (B, nx), U: (B, nu) -> (B, nx); or one x: (nx,), u: (nu,) -> (nx,)."""
        X = as_state(X, self.nx, "X", batch=True)
        U = np.ascontiguousarray(U, dtype=np.float64)
        want = (self.nu,) if X.ndim == 1 else (X.shape[0], self.nu)
        if U.shape != want:
            raise InvalidArgumentError(
                f"U must have shape {want} to match X of shape {X.shape}, got {U.shape}"
            )
        check_finite("U", U)
        if X.ndim == 1:
            return self.step_one(X, U)
        out = np.empty_like(X)
        step_kernel(*self.kernel_args, X, U, out)
        return out

    def step_one(self, x, u) -> np.ndarray:
        """One state x: (nx,) and action u: (nu,) -> next state (nx,). Shape checks only."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        u = np.ascontiguousarray(u, dtype=np.float64)
        if x.shape != (self.nx,) or u.shape != (self.nu,):
            raise InvalidArgumentError(
                f"x and u must have shapes ({self.nx},) and ({self.nu},), "
                f"got {x.shape} and {u.shape}"
            )
        out = np.empty(self.nx)
        step_one(*self.kernel_args, x, u, out)
        return out

    def linearize(self, X, U) -> tuple[np.ndarray, np.ndarray]:
        """X: (H+1, nx), U: (H, nu) -> A: (H, nx, nx) = df/dx, B: (H, nx, nu) = df/du at X[:H]."""
        X, U = as_trajectory(X, U, self.nx, self.nu)
        H = U.shape[0]
        A = np.empty((H, self.nx, self.nx))
        B = np.empty((H, self.nx, self.nu))
        linearize_kernel(*self.kernel_args, X, U, A, B)
        return A, B

    def energy(self, X) -> np.ndarray:
        """Total mechanical energy of states ``X: (..., nx)`` -> ``(...)``: kinetic plus potential
        with zero height at the (first) pivot, so upright rest is the maximum. Constant along
        motion with no action (and no damping) up to the integrator's error."""
        if not self.has_energy:
            raise InvalidArgumentError(f"{self.name} has no mechanical energy defined")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 0 or X.shape[-1] != self.nx:
            raise InvalidArgumentError(f"X must have shape (..., {self.nx}), got {X.shape}")
        flat = np.ascontiguousarray(X.reshape(-1, self.nx))
        out = np.empty(flat.shape[0])
        energy_kernel(self.sys_id, self.params, flat, out)
        return out.reshape(X.shape[:-1])

    def diff(self, x0, x1) -> np.ndarray:
        """Tangent-space difference ``x1 - x0`` (angles are not wrapped)."""
        return np.asarray(x1, dtype=np.float64) - np.asarray(x0, dtype=np.float64)

    def integrate(self, x, dx) -> np.ndarray:
        """``x + dx``, the inverse of ``diff``."""
        return np.asarray(x, dtype=np.float64) + np.asarray(dx, dtype=np.float64)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._settings.items())
        return f"{type(self).__name__}({args})"


class Pendulum(AnalyticSystem):
    """Torque-driven point-mass pendulum; ``th = 0`` upright. ``p = [m, l, g, b]``."""

    name = "pendulum"
    sys_id = PENDULUM
    state_names = ("theta", "theta_dot")
    action_names = ("torque",)
    angle_dims = (0,)
    has_energy = True

    def __init__(
        self, *, m=1.0, l=1.0, g=9.81, b=0.0, max_torque=2.5, dt=0.05, substeps=1, integrator="rk4"
    ):
        m, l = _check_positive("m", m), _check_positive("l", l)
        g, b = _check_nonnegative("g", g), _check_nonnegative("b", b)
        max_torque = _check_positive("max_torque", max_torque)
        super().__init__(
            params=[m, l, g, b],
            action_low=[-max_torque],
            action_high=[max_torque],
            dt=dt,
            substeps=substeps,
            integrator=integrator,
            settings=dict(m=m, l=l, g=g, b=b, max_torque=max_torque),
        )


class CartPole(AnalyticSystem):
    """Cart with a point-mass pole; ``th = 0`` upright. ``p = [mc, mp, l, g]``."""

    name = "cartpole"
    sys_id = CARTPOLE
    state_names = ("x", "theta", "x_dot", "theta_dot")
    action_names = ("force",)
    angle_dims = (1,)
    has_energy = True

    def __init__(
        self, *, mc=1.0, mp=0.1, l=0.5, g=9.81, max_force=10.0, dt=0.05, substeps=2,
        integrator="rk4",
    ):
        mc, mp, l = _check_positive("mc", mc), _check_positive("mp", mp), _check_positive("l", l)
        g = _check_nonnegative("g", g)
        max_force = _check_positive("max_force", max_force)
        super().__init__(
            params=[mc, mp, l, g],
            action_low=[-max_force],
            action_high=[max_force],
            dt=dt,
            substeps=substeps,
            integrator=integrator,
            settings=dict(mc=mc, mp=mp, l=l, g=g, max_force=max_force),
        )


class Acrobot(AnalyticSystem):
    """Two-link arm actuated at the elbow; ``th1 = 0`` upright, ``th2`` relative to link 1.

    ``p = [m1, m2, l1, l2, lc1, lc2, I1, I2, g]``, ``I*`` about each link's own pivot.
    """

    name = "acrobot"
    sys_id = ACROBOT
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
        vals = {k: _check_positive(k, v) for k, v in
                dict(m1=m1, m2=m2, l1=l1, l2=l2, lc1=lc1, lc2=lc2, I1=I1, I2=I2).items()}
        # A point mass at lc about the pivot has inertia m lc^2; no rigid body has less.
        for i in ("1", "2"):
            low = vals["m" + i] * vals["lc" + i] ** 2
            if vals["I" + i] < low * (1.0 - 1e-12):
                raise InvalidArgumentError(
                    f"I{i} must be >= m{i} * lc{i}**2 = {low!r} (inertia about the pivot), "
                    f"got {vals['I' + i]!r}"
                )
        g = _check_nonnegative("g", g)
        max_torque = _check_positive("max_torque", max_torque)
        super().__init__(
            params=[vals[k] for k in ("m1", "m2", "l1", "l2", "lc1", "lc2", "I1", "I2")] + [g],
            action_low=[-max_torque],
            action_high=[max_torque],
            dt=dt,
            substeps=substeps,
            integrator=integrator,
            settings=dict(vals, g=g, max_torque=max_torque),
        )


class Unicycle(AnalyticSystem):
    """Kinematic unicycle driven by speed and turn rate. ``p = []``."""

    name = "unicycle"
    sys_id = UNICYCLE
    state_names = ("x", "y", "heading")
    action_names = ("speed", "turn_rate")
    angle_dims = (2,)

    def __init__(
        self, *, max_speed=1.0, max_turn_rate=2.0, dt=0.1, substeps=1, integrator="rk4"
    ):
        max_speed = _check_positive("max_speed", max_speed)
        max_turn_rate = _check_positive("max_turn_rate", max_turn_rate)
        super().__init__(
            params=np.empty(0),
            action_low=[-max_speed, -max_turn_rate],
            action_high=[max_speed, max_turn_rate],
            dt=dt,
            substeps=substeps,
            integrator=integrator,
            settings=dict(max_speed=max_speed, max_turn_rate=max_turn_rate),
        )


class DoubleIntegrator(AnalyticSystem):
    """``dim`` independent double integrators: state ``[p, v]``, action ``a``. ``p = []``."""

    name = "double_integrator"
    sys_id = DOUBLE_INTEGRATOR
    angle_dims = ()

    def __init__(self, *, dim=1, max_accel=1.0, dt=0.1, substeps=1, integrator="rk4"):
        dim = _check_int("dim", dim, 1)
        max_accel = _check_positive("max_accel", max_accel)
        self.state_names = tuple(f"p{i}" for i in range(dim)) + tuple(f"v{i}" for i in range(dim))
        self.action_names = tuple(f"a{i}" for i in range(dim))
        super().__init__(
            params=np.empty(0),
            action_low=np.full(dim, -max_accel),
            action_high=np.full(dim, max_accel),
            dt=dt,
            substeps=substeps,
            integrator=integrator,
            settings=dict(dim=dim, max_accel=max_accel),
        )
