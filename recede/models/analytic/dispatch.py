"""The ``sys_id`` dispatch: the one place that lists every analytic system.

Numba cannot take a system's functions as first-class arguments without defeating
``cache=True``, so each operation the kernels need per system is an if/elif chain on the integer
``sys_id`` over the system modules. ``sys_id`` is a runtime value, but every branch is compiled
once and the branch taken costs one integer compare; the per-system functions are small and
inlined (``inline="always"``), except the lane loops, which stay separate compiled functions.

To add a system: write its module (``SYS_ID``, ``f``, ``jacobian``, ``lanes``, optionally
``energy``, and its ``AnalyticSystem`` subclass; see ``pendulum.py``), import it here, and add
one branch to each dispatcher below and one entry to ``SYSTEMS``.
"""

from __future__ import annotations

import numba
import numpy as np

from recede.models.analytic import acrobot, cartpole, double_integrator, pendulum, unicycle

__all__ = ["SYSTEMS", "f", "f_jacobian", "lanes_step", "energy_one"]

# name -> class of every analytic system (``sys_id``s must be distinct)
SYSTEMS = {
    cls.name: cls
    for cls in (
        pendulum.Pendulum,
        cartpole.CartPole,
        acrobot.Acrobot,
        unicycle.Unicycle,
        double_integrator.DoubleIntegrator,
    )
}
if len({cls.sys_id for cls in SYSTEMS.values()}) != len(SYSTEMS):
    raise RuntimeError(f"analytic systems share a sys_id: {[(c.name, c.sys_id) for c in SYSTEMS.values()]}")


@numba.njit(cache=True, error_model="numpy", inline="always")
def f(sys_id, x, u, p, out):
    """Continuous-time ``out = f(x, u)`` for system ``sys_id`` with parameters ``p``."""
    if sys_id == pendulum.SYS_ID:
        pendulum.f(x, u, p, out)
    elif sys_id == cartpole.SYS_ID:
        cartpole.f(x, u, p, out)
    elif sys_id == acrobot.SYS_ID:
        acrobot.f(x, u, p, out)
    elif sys_id == unicycle.SYS_ID:
        unicycle.f(x, u, p, out)
    elif sys_id == double_integrator.SYS_ID:
        double_integrator.f(x, u, p, out)
    else:  # unreachable from the Python layer; NaN marks the rollout as diverged
        out[:] = np.nan


@numba.njit(cache=True, error_model="numpy")
def f_jacobian(sys_id, x, u, p, Jx, Ju):
    """Continuous-time Jacobians ``Jx = df/dx (nx, nx)``, ``Ju = df/du (nx, nu)``."""
    if sys_id == pendulum.SYS_ID:
        pendulum.jacobian(x, u, p, Jx, Ju)
    elif sys_id == cartpole.SYS_ID:
        cartpole.jacobian(x, u, p, Jx, Ju)
    elif sys_id == acrobot.SYS_ID:
        acrobot.jacobian(x, u, p, Jx, Ju)
    elif sys_id == unicycle.SYS_ID:
        unicycle.jacobian(x, u, p, Jx, Ju)
    elif sys_id == double_integrator.SYS_ID:
        double_integrator.jacobian(x, u, p, Jx, Ju)
    else:
        raise ValueError("unknown analytic sys_id")


@numba.njit(cache=True, error_model="numpy", inline="always")
def lanes_step(sys_id, p, h, substeps, x, u, n):
    """``substeps`` RK4 steps of ``h`` on the lanes j < n of x: (nx, L), u: (nu, L), in place;
    ``-substeps`` explicit Euler steps when ``substeps < 0``."""
    if sys_id == pendulum.SYS_ID:
        pendulum.lanes(p, h, substeps, x, u, n)
    elif sys_id == cartpole.SYS_ID:
        cartpole.lanes(p, h, substeps, x, u, n)
    elif sys_id == acrobot.SYS_ID:
        acrobot.lanes(p, h, substeps, x, u, n)
    elif sys_id == unicycle.SYS_ID:
        unicycle.lanes(p, h, substeps, x, u, n)
    elif sys_id == double_integrator.SYS_ID:
        double_integrator.lanes(p, h, substeps, x, u, n)
    else:  # unreachable from the Python layer; NaN marks the rollout as diverged
        x[:, :] = np.nan


@numba.njit(cache=True, error_model="numpy")
def energy_one(sys_id, p, x):
    """Total mechanical energy (kinetic + potential, zero height at the pivot) of one state of
    ``sys_id``; NaN for systems without one (unicycle, double integrator)."""
    if sys_id == pendulum.SYS_ID:
        return pendulum.energy(p, x)
    if sys_id == cartpole.SYS_ID:
        return cartpole.energy(p, x)
    if sys_id == acrobot.SYS_ID:
        return acrobot.energy(p, x)
    return np.nan
