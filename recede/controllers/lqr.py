"""Stabilise any ``Differentiable`` model at an equilibrium with infinite-horizon LQR."""

from __future__ import annotations

import numpy as np

from recede.costs import QuadraticCost
from recede.errors import InvalidArgumentError
from recede.models.base import as_state
from recede.planners.base import as_generator
from recede.planners.lqr import lqr_at_equilibrium
from recede.problem import Problem


class LQRController:
    """``u = u_goal + K dx`` clipped to the bounds, with ``dx = x - x_goal`` (angles wrapped to
    [-pi, pi] on the model's ``angle_dims``) and ``K`` the infinite-horizon LQR gain of the model
    linearised at ``(x_goal, u_goal)`` (``recede.planners.lqr.lqr_at_equilibrium``).

    Q, R, x_goal and u_goal default to the problem's ``QuadraticCost``; the goal must be an
    equilibrium. A :class:`~recede.controllers.base.Policy`: ``act(x)``, ``act_batch(X)`` and
    ``reset``, so ``run_closed_loop`` runs it and it rolls out through a model; no planning
    happens in the loop.
    """

    def __init__(self, problem: Problem, *, Q=None, R=None, x_goal=None, u_goal=None,
                 tol: float = 1e-6):
        if not isinstance(problem, Problem):
            raise InvalidArgumentError(f"problem must be a recede Problem, got {problem!r}")
        d = problem.dynamics
        if not hasattr(d, "linearize"):
            raise InvalidArgumentError(f"LQR needs a Differentiable model (linearize), got {d!r}")
        cost = problem.cost if isinstance(problem.cost, QuadraticCost) else None
        if cost is None and (Q is None or R is None or x_goal is None):
            raise InvalidArgumentError(
                "Q, R and x_goal are needed when the problem's cost is not a QuadraticCost")
        Q = cost.Q if Q is None else Q
        R = cost.R if R is None else R
        x_goal = cost.x_goal if x_goal is None else x_goal
        u_goal = (cost.u_goal if cost is not None else np.zeros(d.nu)) if u_goal is None else u_goal
        self.x_goal = as_state(x_goal, d.nx, "x_goal")
        self.u_goal = np.asarray(u_goal, dtype=np.float64).reshape(-1)
        if self.u_goal.shape != (d.nu,):
            raise InvalidArgumentError(f"u_goal must have shape ({d.nu},), got {self.u_goal.shape}")
        self.K, self.P = lqr_at_equilibrium(d, Q, R, x_goal=self.x_goal, u_goal=self.u_goal, tol=tol)
        self.problem = problem
        self._angles = np.zeros(d.nx, dtype=bool)
        self._angles[list(getattr(d, "angle_dims", ()))] = True
        self.reset()

    def reset(self, rng=None) -> None:
        as_generator(rng)  # validated for the Controller interface; LQR draws nothing

    def error(self, x) -> np.ndarray:
        """``x - x_goal`` with angles wrapped to [-pi, pi]."""
        d = as_state(x, self.problem.nx, "x") - self.x_goal
        return np.where(self._angles, (d + np.pi) % (2.0 * np.pi) - np.pi, d)

    def act(self, x) -> np.ndarray:
        u = self.u_goal + self.K @ self.error(x)
        return np.clip(u, self.problem.action_low, self.problem.action_high)

    def act_batch(self, X) -> np.ndarray:
        """X: (..., nx) -> U: (..., nu), row by row as :meth:`act`."""
        X = np.asarray(X, dtype=np.float64)
        nx = self.problem.nx
        if X.ndim < 1 or X.shape[-1] != nx:
            raise InvalidArgumentError(f"X must have shape (..., {nx}), got {X.shape}")
        d = X - self.x_goal
        d = np.where(self._angles, (d + np.pi) % (2.0 * np.pi) - np.pi, d)
        U = self.u_goal + d @ self.K.T
        return np.clip(U, self.problem.action_low, self.problem.action_high)
