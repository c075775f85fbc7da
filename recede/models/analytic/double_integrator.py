"""DoubleIntegrator (``sys_id`` 4): ``dim`` independent double integrators.
``x = [p (dim), v (dim)]``, ``u = [a (dim)]``, ``p = []`` (``dim`` is read from the action's
length)::

    p_d = v,  v_d = a

No mechanical energy.
"""

from __future__ import annotations

import numba
import numpy as np

from recede.models.analytic.system import AnalyticSystem, check_int, check_positive

SYS_ID = 4


# ----------------------------------------------------------------------------------------------
# Continuous-time dynamics and their Jacobian, one sample (inlined into the dispatchers)
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy", inline="always")
def f(x, u, p, out):
    """``out = xdot = f(x, u)`` for one state x: (nx,) and action u: (nu,)."""
    d = u.shape[0]
    for i in range(d):
        out[i] = x[d + i]
        out[d + i] = u[i]


@numba.njit(cache=True, error_model="numpy", inline="always")
def jacobian(x, u, p, Jx, Ju):
    """``Jx = df/dx (nx, nx)``, ``Ju = df/du (nx, nu)`` at (x, u), exact."""
    d = u.shape[0]
    Jx[:, :] = 0.0
    Ju[:, :] = 0.0
    for i in range(d):
        Jx[i, d + i] = 1.0
        Ju[d + i, i] = 1.0


# ----------------------------------------------------------------------------------------------
# Lane loop: RK4 (or Euler) steps of a block of samples, vectorised across them
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy")
def lanes(p, h, substeps, x, u, n):
    """``substeps`` RK4 steps of ``h`` (``-substeps`` Euler steps if negative) on the lanes
    j < n of x: (nx, L) under u: (nu, L), in place; ``f``'s expressions in the same order."""
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


# ----------------------------------------------------------------------------------------------
# Python class
# ----------------------------------------------------------------------------------------------


class DoubleIntegrator(AnalyticSystem):
    """``dim`` independent double integrators: state ``[p, v]``, action ``a``. ``p = []``."""

    name = "double_integrator"
    sys_id = SYS_ID
    angle_dims = ()

    def __init__(self, *, dim=1, max_accel=1.0, dt=0.1, substeps=1, integrator="rk4"):
        dim = check_int("dim", dim, 1)
        max_accel = check_positive("max_accel", max_accel)
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
