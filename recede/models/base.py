"""The model protocols every planner talks to, and the argument checks they share.

Shapes (see ``recede/__init__.py``): one state ``x: (nx,)``, states ``X: (B, H+1, nx)``,
actions ``U: (B, H, nu)``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from recede.errors import InvalidArgumentError


@runtime_checkable
class Dynamics(Protocol):
    """A batched discrete-time model ``x_{t+1} = f(x_t, u_t)`` with one control step of ``dt``."""

    nx: int
    nu: int
    dt: float
    action_low: np.ndarray
    action_high: np.ndarray

    def rollout(self, x0: np.ndarray, U: np.ndarray) -> np.ndarray:
        """x0: (nx,) or (B, nx), U: (B, H, nu) -> X: (B, H+1, nx) with X[:, 0] = x0."""
        ...

    def step(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        """X: (B, nx), U: (B, nu) -> next states (B, nx)."""
        ...


@runtime_checkable
class Differentiable(Protocol):
    """A model with Jacobians along a trajectory, in tangent space (``ndx``; ``ndx == nx`` here)."""

    nx: int
    nu: int

    def linearize(self, X: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """X: (H+1, nx), U: (H, nu) -> A: (H, ndx, ndx) = df/dx, B: (H, ndx, nu) = df/du."""
        ...


def check_finite(name: str, a: np.ndarray) -> None:
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        where = ", ".join(str(int(i)) for i in bad)
        raise InvalidArgumentError(
            f"{name} must be finite, got {a[tuple(bad)]} at index ({where})"
        )


def as_state(x0, nx: int, name: str = "x0", *, batch: bool = False) -> np.ndarray:
    """Validate one state ``(nx,)`` (or, with ``batch``, states ``(B, nx)`` too) as float64."""
    try:
        x = np.asarray(x0, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"{name} must be an array of floats, got {x0!r}") from e
    ok = x.shape == (nx,) or (batch and x.ndim == 2 and x.shape[1] == nx and x.shape[0] >= 1)
    if not ok:
        want = f"({nx},)" + (f" or (B, {nx})" if batch else "")
        raise InvalidArgumentError(f"{name} must have shape {want}, got {x.shape}")
    check_finite(name, x)
    return np.ascontiguousarray(x)


def as_actions(U, nu: int, name: str = "U", *, horizon: int | None = None) -> np.ndarray:
    """Validate a batch of action sequences ``(B, H, nu)`` as contiguous float64."""
    try:
        u = np.asarray(U, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"{name} must be an array of floats, got {U!r}") from e
    h = "H" if horizon is None else str(horizon)
    if u.ndim != 3 or u.shape[2] != nu or u.shape[0] < 1 or u.shape[1] < 1 or (
        horizon is not None and u.shape[1] != horizon
    ):
        raise InvalidArgumentError(f"{name} must have shape (B, {h}, {nu}), got {u.shape}")
    check_finite(name, u)
    return np.ascontiguousarray(u)


def as_sequence(u, nu: int, horizon: int, name: str) -> np.ndarray:
    """Validate one action sequence ``(H, nu)`` as contiguous float64."""
    a = np.asarray(u, dtype=np.float64)
    if a.shape != (horizon, nu):
        raise InvalidArgumentError(f"{name} must have shape ({horizon}, {nu}), got {a.shape}")
    check_finite(name, a)
    return np.ascontiguousarray(a)


def as_bound(name: str, value, nu: int) -> np.ndarray:
    """An action bound: a scalar (every dimension) or ``(nu,)``, without NaN, read-only float64."""
    b = np.array(value, dtype=np.float64)
    if b.ndim == 0:
        b = np.full(nu, float(b))
    if b.shape != (nu,) or np.any(np.isnan(b)):
        raise InvalidArgumentError(f"{name} must have shape ({nu},) without NaN, got {value!r}")
    b.setflags(write=False)
    return b


def as_trajectory(X, U, nx: int, nu: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate one trajectory, states ``X: (H+1, nx)`` and actions ``U: (H, nu)``."""
    U = np.ascontiguousarray(U, dtype=np.float64)
    if U.ndim != 2 or U.shape[1] != nu or U.shape[0] < 1:
        raise InvalidArgumentError(f"U must have shape (H, {nu}), got {U.shape}")
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.shape != (U.shape[0] + 1, nx):
        raise InvalidArgumentError(
            f"X must have shape ({U.shape[0] + 1}, {nx}) to match U of shape {U.shape}, got {X.shape}")
    check_finite("X", X)
    check_finite("U", U)
    return X, U


def broadcast_x0(x0: np.ndarray, batch: int, name: str = "x0") -> np.ndarray:
    """Tile a single state to ``(B, nx)``, or check that a batch of states matches ``B``."""
    if x0.ndim == 1:
        return np.ascontiguousarray(np.broadcast_to(x0, (batch, x0.shape[0])))
    if x0.shape[0] != batch:
        raise InvalidArgumentError(
            f"{name} has {x0.shape[0]} states but U has {batch} sequences; pass one state or {batch}"
        )
    return x0
