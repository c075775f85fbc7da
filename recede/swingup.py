"""Swing-up costs: reach an unstable equilibrium and stay there, on a short planning horizon.

A quadratic cost towards an inverted equilibrium fails a sampling planner in two ways. Over a
short horizon, hanging still is a local optimum (every swing costs more before it pays). Over a
long horizon the open-loop sequences that balance are a vanishing set: near upright the acrobot
here grows perturbations by e^(7.2 t), about 10^7 over a 2.5 s horizon, so a planner that samples
open-loop actions cannot find one that holds (measured: iCEM and MPPI with 500 samples, 50 steps,
let the elbow fold even when started 0.05 rad from upright).

``SwingUpCost`` gives a short horizon both halves of what it needs:

- running ``l = 1/2 e'Q e + 1/2 du'R du + 1/2 w_E (E(x) - E_goal)^2``: the quadratic term of
  ``QuadraticCost`` plus energy shaping, which rewards pumping energy towards the goal's
  (Astrom and Furuta's swing-up idea, as a cost rather than a control law);
- terminal ``l_T = min(1/2 e'P e, value_cap)`` with ``P`` the infinite-horizon LQR cost-to-go of
  the linearisation at the goal (``lqr_value``, via ``recede._linalg.lqr_at_equilibrium``): the
  standard terminal cost that makes a short-horizon MPC stabilising, capped so that it says
  nothing far from the goal, where the linearisation is meaningless.

``e`` is ``QuadraticCost``'s error (angle errors ``2 sin(d / 2)``), ``E`` the model's mechanical
energy (``AnalyticSystem.energy``).

A cost imports no model: the cost keeps the model's own ``energy(X)`` method (handed over with
``dynamics`` at construction) and calls it on each batch, then adds the shaping term in its
kernel. So the energy of each system is written once, next to its equations of motion, and any
model with an ``energy`` method can be swung up.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from recede._linalg import as_psd, lqr_at_equilibrium
from recede.costs import QuadraticCost, as_cost_batch, quadratic_form, quadratic_stage
from recede.errors import InvalidArgumentError

__all__ = ["SwingUpCost", "lqr_value"]


def lqr_value(dynamics, Q, R, *, x_goal, u_goal=None, tol: float = 1e-6) -> np.ndarray:
    """``P`` of the infinite-horizon discrete LQR of ``dynamics`` linearised at
    ``(x_goal, u_goal)`` with stage cost ``1/2 dx'Q dx + 1/2 du'R du``: the cost-to-go is
    ``1/2 dx'P dx``. See ``recede._linalg.lqr_at_equilibrium`` for the checks."""
    return lqr_at_equilibrium(dynamics, Q, R, x_goal=x_goal, u_goal=u_goal, tol=tol)[1]


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _swingup_cost_kernel(X, U, E, Q, R, diagonal, x_goal, u_goal, is_angle, P, value_cap,
                         energy_weight, energy_goal, out):
    """Totals (B,) of X: (B, H+1, nx), U: (B, H, nu), with E: (B, H) the energies of X[:, :H]."""
    B, H, nu = U.shape
    nx = X.shape[2]
    for b in numba.prange(B):
        x, u, e, du = np.empty(nx), np.empty(nu), np.empty(nx), np.empty(nu)
        total = 0.0
        for t in range(H):
            for i in range(nx):
                x[i] = X[b, t, i]
            for j in range(nu):
                u[j] = U[b, t, j]
            dE = E[b, t] - energy_goal
            total += quadratic_stage(x, u, Q, R, Q, diagonal, x_goal, u_goal, is_angle, e, du)
            total += 0.5 * energy_weight * dE * dE
        for i in range(nx):
            x[i] = X[b, H, i]
        # min() would let a NaN value through as the cap; a NaN state must stay NaN
        v = quadratic_form(P, False, x, x_goal, is_angle, True, e)
        total += v if not v > value_cap else value_cap
        out[b] = total


class SwingUpCost:
    """Quadratic tracking + energy shaping, with the capped LQR cost-to-go as terminal cost.

    ``l = 1/2 e'Q e + 1/2 (u - u_goal)'R (u - u_goal) + 1/2 energy_weight (E(x) - E(x_goal))^2``,
    ``l_T = min(1/2 e'P e, value_cap)``, ``P = lqr_value(dynamics, Q, R, x_goal, u_goal)`` unless
    given. ``dynamics`` must define ``energy(X: (..., nx)) -> (...)`` and say so with a true
    ``has_energy`` (the analytic pendulum, cart-pole and acrobot do); without ``P`` it must also
    be ``Differentiable`` with ``step``, for ``lqr_value``. See the module docstring for why.
    """

    def __init__(self, dynamics, Q, R, *, energy_weight, value_cap, x_goal, u_goal=None, P=None):
        if not getattr(dynamics, "has_energy", False) or not callable(getattr(dynamics, "energy", None)):
            raise InvalidArgumentError(
                f"dynamics must have a mechanical energy (has_energy and energy(X)), got {dynamics!r}")
        self.quadratic = QuadraticCost(Q, R, x_goal=x_goal, u_goal=u_goal,
                                       angle_dims=dynamics.angle_dims)
        self.nx, self.nu = self.quadratic.nx, self.quadratic.nu
        if (self.nx, self.nu) != (dynamics.nx, dynamics.nu):
            raise InvalidArgumentError(
                f"Q and R must be sized for nx={dynamics.nx}, nu={dynamics.nu}, got {self.nx}, {self.nu}")
        for name, v in (("energy_weight", energy_weight), ("value_cap", value_cap)):
            if not (isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)
                    and math.isfinite(v) and v >= 0):
                raise InvalidArgumentError(f"{name} must be a finite number >= 0, got {v!r}")
        self.energy_weight, self.value_cap = float(energy_weight), float(value_cap)
        if P is None:
            P = lqr_value(dynamics, self.quadratic.Q, self.quadratic.R,
                          x_goal=self.quadratic.x_goal, u_goal=self.quadratic.u_goal)
        self.P = as_psd("P", np.atleast_1d(P), self.nx)
        self.energy = dynamics.energy  # the model's mechanical energy of states (..., nx)
        self.energy_goal = float(self.energy(self.quadratic.x_goal))
        self._name = repr(dynamics)

    def __call__(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        X, U = as_cost_batch(X, U, self.nx, self.nu)
        q = self.quadratic
        out = np.empty(U.shape[0])
        # (B, H): the running terms' energies (a copy of X[:, :-1] costs less than one more
        # energy per sample)
        E = np.ascontiguousarray(self.energy(X[:, :-1]), dtype=np.float64)
        _swingup_cost_kernel(X, U, E, q.Q, q.R, q.diagonal, q.x_goal, q.u_goal, q.is_angle,
                             self.P, self.value_cap, self.energy_weight, self.energy_goal, out)
        return out

    def stage(self, x: np.ndarray, u: np.ndarray) -> float:
        dE = float(self.energy(np.asarray(x, dtype=np.float64))) - self.energy_goal
        return self.quadratic.stage(x, u) + 0.5 * self.energy_weight * dE * dE

    def terminal(self, x: np.ndarray) -> float:
        e = self.quadratic.error(x)
        return float(min(0.5 * e @ self.P @ e, self.value_cap))

    def stage_costs(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        """Per-step costs ``(B, H+1)`` (the capped terminal cost in column H)."""
        X, U = as_cost_batch(X, U, self.nx, self.nu)
        q = self.quadratic
        out = q.stage_costs(X, U)
        dE = self.energy(X[:, :-1]) - self.energy_goal
        out[:, :-1] += 0.5 * self.energy_weight * dE * dE
        e = q.error(X[:, -1])
        v = 0.5 * np.einsum("bi,ij,bj->b", e, self.P, e)
        out[:, -1] = np.where(v > self.value_cap, self.value_cap, v)  # NaN stays NaN
        return out

    def __repr__(self) -> str:
        return (f"SwingUpCost({self.quadratic!r}, energy_weight={self.energy_weight:g}, "
                f"value_cap={self.value_cap:g}, model={self._name})")
