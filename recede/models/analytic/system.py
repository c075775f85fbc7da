"""``AnalyticSystem``: the Python side shared by every analytic system (validation, the
``Dynamics``/``Differentiable`` methods, ``kernel_args``), and the argument checks the systems'
constructors use. Each system's module subclasses it; the methods call the batched kernels of
``recede.models.analytic.kernels``.
"""

from __future__ import annotations

import math

import numpy as np

from recede.errors import InvalidArgumentError
from recede.models.base import as_actions, as_state, as_trajectory, broadcast_x0, check_finite


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


def check_positive(name: str, value) -> float:
    return _check_real(name, value, positive=True)


def check_nonnegative(name: str, value) -> float:
    return _check_real(name, value, positive=False)


def check_int(name: str, value, minimum: int) -> int:
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not is_int or value < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


_INTEGRATORS = ("rk4", "euler")

# SI units of the systems' state and action entries, by system ``name`` and entry name (an entry
# named with a trailing index, such as the double integrator's p0, v0, a0, by its letters).
_UNITS = {
    "pendulum": {"theta": "rad", "theta_dot": "rad/s", "torque": "N m"},
    "cartpole": {"x": "m", "theta": "rad", "x_dot": "m/s", "theta_dot": "rad/s", "force": "N"},
    "acrobot": {"theta1": "rad", "theta2": "rad", "theta1_dot": "rad/s", "theta2_dot": "rad/s",
                "elbow_torque": "N m"},
    "unicycle": {"x": "m", "y": "m", "heading": "rad", "speed": "m/s", "turn_rate": "rad/s"},
    "double_integrator": {"p": "m", "v": "m/s", "a": "m/s^2"},
}


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
        self.dt = check_positive("dt", dt)
        self.substeps = check_int("substeps", substeps, 1)
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
    def state_units(self) -> tuple[str, ...]:
        """The unit of each state entry ("" where none), e.g. ``("m", "rad", "m/s", "rad/s")``."""
        return self._units(self.state_names)

    @property
    def action_units(self) -> tuple[str, ...]:
        """The unit of each action entry ("" where none), e.g. ``("N",)``."""
        return self._units(self.action_names)

    def _units(self, names) -> tuple[str, ...]:
        table = _UNITS.get(self.name, {})
        return tuple(table.get(n, table.get(n.rstrip("0123456789"), "")) for n in names)

    @property
    def kernel_args(self) -> tuple:
        """``(sys_id, p, dt, substeps)``, the leading arguments of the batched kernels of
        ``recede.models.analytic.kernels``.

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
        None when the pair is not fused (``kernels.fused_args``; then roll out and call the cost).

        Inputs are trusted (the Problem validated them); results equal ``cost(rollout(x0, U), U)``.
        """
        args = fused_args(self, cost)
        if args is None:
            return None
        out = np.empty(U.shape[0])
        rollout_quadratic_cost_kernel(*args[0], x0, U, *args[1], out)
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


# Imported last: the kernels dispatch to every system module, and each system module subclasses
# AnalyticSystem above, so this module must be defined before they load (the package's
# __init__ imports it first).
from recede.models.analytic.kernels import (  # noqa: E402
    energy_kernel,
    fused_args,
    linearize_kernel,
    rollout_kernel,
    rollout_quadratic_cost_kernel,
    step_kernel,
    step_one,
)
