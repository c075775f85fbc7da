"""Analytic benchmark systems, integrated with fixed-step RK4 (or explicit Euler) in Numba.

Every system is a continuous-time ODE ``xdot = f(x, u)``. One control step of length ``dt`` holds
``u`` constant and takes ``substeps`` steps of ``h = dt / substeps`` of the system's
``integrator``: classical RK4 (``"rk4"``, the default) or explicit Euler ``x += h f(x, u)``
(``"euler"``). Actions are used as given: clipping to ``[action_low, action_high]`` is the
caller's job.

Angle convention: every angle is measured from UPRIGHT (0 = upright, pi = hanging down),
counter-clockwise positive. A point at distance ``r`` along a link at absolute angle ``phi`` sits
at ``(-r sin(phi), r cos(phi))`` from the link's pivot, so its height is ``r cos(phi)``.

Systems, one module each (``sys_id``; state, action, parameters ``p`` and equations in the
module's docstring):

0. ``pendulum.Pendulum``        ``x = [th, th_d]``, ``u = [torque]``
1. ``cartpole.CartPole``        ``x = [x, th, x_d, th_d]``, ``u = [force on cart]``
2. ``acrobot.Acrobot``          ``x = [th1, th2, th1_d, th2_d]``, ``u = [elbow torque]``
3. ``unicycle.Unicycle``        ``x = [x, y, heading]``, ``u = [v, w]``
4. ``double_integrator.DoubleIntegrator``  ``x = [p (dim), v (dim)]``, ``u = [a (dim)]``

Layout of the package:

- ``<system>.py``: the system's ``SYS_ID``; ``f`` (continuous dynamics of one sample),
  ``jacobian`` (its exact ``df/dx``, ``df/du``), ``lanes`` (RK4/Euler steps of a block of
  samples in struct-of-arrays layout, written so LLVM vectorises it across samples), ``energy``
  where the system has one, and its ``AnalyticSystem`` subclass.
- ``dispatch.py``: the ``sys_id`` if/elif chains over the system modules (``f``, ``f_jacobian``,
  ``lanes_step``, ``energy_one``) and the ``SYSTEMS`` table; adding a system means one module,
  plus one branch per dispatcher and one table entry there.
- ``kernels.py``: the integrator (``step_in_place``, ``step_jacobian``), the batched kernels, and
  ``fused_args``: the public interface that iLQR's and MCTS's fused paths use.
- ``system.py``: ``AnalyticSystem``, the Python side every system shares.

Numba layer: one compiled kernel serves every system, taking the integer ``sys_id`` (Numba cannot
take the systems' functions as first-class arguments without defeating ``cache=True``). The
discrete Jacobians are exact: forward-mode derivatives carried through the RK4 stages (or Euler
steps) by the chain rule. Python objects expose ``kernel_args == (sys_id, p, dt, substeps)`` so
other Numba code can call, e.g., ``rollout_kernel(*model.kernel_args, x0, U, X)``.

Integrator encoding: every kernel's ``substeps`` argument carries the integrator in its sign.
``substeps > 0`` means that many classical RK4 steps of ``h = dt / substeps``; ``substeps < 0``
means ``-substeps`` explicit Euler steps ``x += h f(x, u)`` of ``h = dt / (-substeps)``. (The
Python objects' ``substeps`` attribute is always positive; only ``kernel_args`` carries the sign.)
The lane loops and ``step_in_place`` compute ``x + h * f`` with the same ``f`` expressions, so
the batched kernels and ``step_one`` agree bit for bit (while every angle stays below 1e6 in size:
the lanes use the branch-free ``sincos_poly``; see ``recede._numerics``).

Numba's cache keys each compiled function on its own source file only: after editing a system
module, also touch ``dispatch.py`` and ``kernels.py`` (or clear ``__pycache__``) so that the
kernels that inline it recompile.
"""

from __future__ import annotations

# system first: the system modules subclass AnalyticSystem, and system.py imports the kernels last
from recede.models.analytic.system import AnalyticSystem
from recede.models.analytic import kernels
from recede.models.analytic.acrobot import Acrobot
from recede.models.analytic.cartpole import CartPole
from recede.models.analytic.dispatch import SYSTEMS
from recede.models.analytic.double_integrator import DoubleIntegrator
from recede.models.analytic.kernels import (
    _rollout_quadratic_cost_scalar,
    energy_kernel,
    energy_one,
    f as _f,
    f_jacobian as _f_jac,
    fused_args,
    jacobian_work as _jac_work,
    linearize_kernel,
    rollout_kernel,
    rollout_quadratic_cost_kernel,
    step_in_place as _rk4,
    step_jacobian as _rk4_jac,
    step_kernel,
    step_one,
    step_size as _step_size,
)
from recede.models.analytic.pendulum import Pendulum
from recede.models.analytic.unicycle import Unicycle

PENDULUM = Pendulum.sys_id
CARTPOLE = CartPole.sys_id
ACROBOT = Acrobot.sys_id
UNICYCLE = Unicycle.sys_id
DOUBLE_INTEGRATOR = DoubleIntegrator.sys_id

__all__ = [
    "PENDULUM",
    "CARTPOLE",
    "ACROBOT",
    "UNICYCLE",
    "DOUBLE_INTEGRATOR",
    "SYSTEMS",
    "AnalyticSystem",
    "Pendulum",
    "CartPole",
    "Acrobot",
    "Unicycle",
    "DoubleIntegrator",
    "kernels",
    "fused_args",
    "rollout_kernel",
    "rollout_quadratic_cost_kernel",
    "step_kernel",
    "linearize_kernel",
    "step_one",
    "energy_one",
    "energy_kernel",
]
# The former private names (_f, _f_jac, _rk4, _rk4_jac, _jac_work, _step_size,
# _rollout_quadratic_cost_scalar) stay importable from here for existing code and tests; new code
# uses the public names of ``kernels``.
