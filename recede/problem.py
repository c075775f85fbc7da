"""Problem (dynamics + cost + horizon + action bounds) and the typed planning result ``Plan``.

Shapes: one state ``x0: (nx,)``, actions ``U: (B, H, nu)``, states ``X: (B, H+1, nx)``,
costs ``(B,)``; a plan holds one sequence ``actions: (H, nu)`` and ``states: (H+1, nx)``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recede.costs import Cost
from recede.errors import InvalidArgumentError
from recede.models.base import Dynamics, as_actions, as_state


def _bounds(name: str, value, default: np.ndarray, nu: int) -> np.ndarray:
    b = np.array(default if value is None else value, dtype=np.float64)
    if b.ndim == 0:
        b = np.full(nu, float(b))
    if b.shape != (nu,):
        raise InvalidArgumentError(f"{name} must have shape ({nu},), got {b.shape}")
    if np.any(np.isnan(b)):
        raise InvalidArgumentError(f"{name} must not contain NaN, got {b}")
    b.setflags(write=False)
    return b


@dataclass(frozen=True)
class Problem:
    """A finite-horizon optimal control problem: minimise ``cost(rollout(x0, U), U)``.

    Planners take a Problem and nothing else. ``action_low``/``action_high`` default to the
    dynamics' bounds; pass tighter ones to restrict a planner without touching the model.
    """

    dynamics: Dynamics
    cost: Cost
    horizon: int
    action_low: np.ndarray | None = None
    action_high: np.ndarray | None = None

    def __post_init__(self):
        if not isinstance(self.dynamics, Dynamics):
            raise InvalidArgumentError(
                f"dynamics must provide nx, nu, dt, action_low, action_high, rollout and step, "
                f"got {type(self.dynamics).__name__}"
            )
        if not callable(self.cost):
            raise InvalidArgumentError(f"cost must be callable as cost(X, U), got {self.cost!r}")
        if isinstance(self.horizon, bool) or not isinstance(self.horizon, (int, np.integer)):
            raise InvalidArgumentError(f"horizon must be an integer >= 1, got {self.horizon!r}")
        if self.horizon < 1:
            raise InvalidArgumentError(f"horizon must be >= 1, got {self.horizon}")
        nu = self.dynamics.nu
        low = _bounds("action_low", self.action_low, self.dynamics.action_low, nu)
        high = _bounds("action_high", self.action_high, self.dynamics.action_high, nu)
        if np.any(low > high):
            raise InvalidArgumentError(
                f"action_low must be <= action_high, got action_low={low}, action_high={high}"
            )
        if needs_sensors(self.cost) and not getattr(self.dynamics, "nsensordata", 0):
            raise InvalidArgumentError(
                f"cost {type(self.cost).__name__} reads sensor data, but the dynamics "
                f"{type(self.dynamics).__name__} has no sensors"
            )
        object.__setattr__(self, "horizon", int(self.horizon))
        object.__setattr__(self, "action_low", low)
        object.__setattr__(self, "action_high", high)

    @property
    def nx(self) -> int:
        return self.dynamics.nx

    @property
    def nu(self) -> int:
        return self.dynamics.nu

    def check_x0(self, x0) -> np.ndarray:
        """Validate one initial state ``(nx,)``."""
        return as_state(x0, self.nx, "x0")

    def check_actions(self, U) -> np.ndarray:
        """Validate a batch ``(B, H, nu)`` with ``H == horizon``."""
        return as_actions(U, self.nu, "U", horizon=self.horizon)

    def rollout(self, x0, U) -> np.ndarray:
        """x0: (nx,), U: (B, H, nu) -> X: (B, H+1, nx)."""
        return self.dynamics.rollout(self.check_x0(x0), self.check_actions(U))

    def costs(self, x0: np.ndarray, U: np.ndarray) -> np.ndarray:
        """Planners' hot path: costs (B,) with NaN/inf as +inf, for an already validated
        x0: (nx,) and U: (B, H, nu). Uses the model's fused ``rollout_cost(x0, U, cost)`` when it
        offers one for this cost, else rolls out and calls the cost."""
        if needs_sensors(self.cost):
            X, S = self.dynamics.rollout(x0, U, sensors=True)
            return sanitize_costs(self.cost(X, U, S))
        fused = getattr(self.dynamics, "rollout_cost", None)
        costs = fused(x0, U, self.cost) if fused is not None else None
        if costs is None:
            costs = self.cost(self.dynamics.rollout(x0, U), U)
        return sanitize_costs(costs)

    def evaluate(self, x0, U, *, return_states: bool = False):
        """Total cost of each sequence, ``(B,)``; NaN or infinite costs become ``+inf``.

        With ``return_states`` also returns ``X: (B, H+1, nx)``.
        """
        x0, U = self.check_x0(x0), self.check_actions(U)
        if not return_states:
            return self.costs(x0, U)
        if needs_sensors(self.cost):
            X, S = self.dynamics.rollout(x0, U, sensors=True)
            return sanitize_costs(self.cost(X, U, S)), X
        X = self.dynamics.rollout(x0, U)
        return sanitize_costs(self.cost(X, U)), X


def needs_sensors(cost) -> bool:
    """Whether ``cost`` is called as ``cost(X, U, S)`` with the rollout's sensor data
    ``S: (B, H+1, nsensordata)`` (costs say so with a true ``needs_sensors`` attribute)."""
    return bool(getattr(cost, "needs_sensors", False))


def sanitize_costs(costs: np.ndarray) -> np.ndarray:
    """Map every non-finite cost (NaN, -inf, +inf) to +inf: a diverged rollout never wins."""
    costs = np.asarray(costs, dtype=np.float64)
    bad = ~np.isfinite(costs)
    if bad.any():
        costs = costs.copy()
        costs[bad] = np.inf
    return costs


class Status(enum.Enum):
    """Why a planner stopped."""

    MAX_ITERATIONS = "max_iterations"
    CONVERGED = "converged"
    DEADLINE = "deadline"
    DIVERGED = "diverged"  # every candidate had a non-finite cost
    STALLED = "stalled"  # a gradient planner could not make progress (regularisation limit)


@dataclass(frozen=True)
class IterLog:
    """One planner iteration. ``cost`` is the best sample cost so far (the plan's cost after
    it, for planners that execute their best sample); ``std`` the mean sampling std after the
    update (CEM, iCEM); ``ess`` the effective sample size of the path-integral weights (MPPI)."""

    iteration: int
    cost: float
    sample_best: float
    sample_mean: float
    finite: int
    std: float = float("nan")
    ess: float = float("nan")


def _frozen(a):
    if a is None:
        return None
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class Plan:
    """A planner's result. Arrays are read-only copies.

    actions: (H, nu); states: (H+1, nx) predicted by the model; cost: total cost of ``actions``;
    K: (H, nu, ndx) and k: (H, nu) feedback, applied as ``u = actions + k + K (x - states)``
    (``None`` for planners without feedback).
    """

    actions: np.ndarray
    states: np.ndarray
    cost: float
    iterations: int
    status: Status
    trace: tuple[IterLog, ...] = ()
    K: np.ndarray | None = None
    k: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for name in ("actions", "states", "K", "k"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
