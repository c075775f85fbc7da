"""Linear time-invariant dynamics ``x_{t+1} = A x_t + B u_t (+ c)``: the oracle model of the tests
and the model LQR is exact on."""

from __future__ import annotations

import numba
import numpy as np

from recede.errors import InvalidArgumentError
from recede.models.base import as_actions, as_state, broadcast_x0


@numba.njit(cache=True, parallel=True)
def _linear_rollout(A, Bm, c, x0, U, X):
    B, H, nu = U.shape
    nx = A.shape[0]
    for b in numba.prange(B):
        X[b, 0] = x0[b]
        for t in range(H):
            for i in range(nx):
                s = c[i]
                for j in range(nx):
                    s += A[i, j] * X[b, t, j]
                for j in range(nu):
                    s += Bm[i, j] * U[b, t, j]
                X[b, t + 1, i] = s


class LinearDynamics:
    """``x_{t+1} = A x + B u + c`` with optional action bounds (default unbounded)."""

    def __init__(self, A, B, c=None, *, dt: float = 1.0, action_low=None, action_high=None):
        self.A = np.array(A, dtype=np.float64)
        self.B = np.array(B, dtype=np.float64)
        if self.A.ndim != 2 or self.A.shape[0] != self.A.shape[1]:
            raise InvalidArgumentError(f"A must be square (nx, nx), got {self.A.shape}")
        self.nx = self.A.shape[0]
        if self.B.ndim != 2 or self.B.shape[0] != self.nx:
            raise InvalidArgumentError(f"B must have shape ({self.nx}, nu), got {self.B.shape}")
        self.nu, self.ndx = self.B.shape[1], self.nx
        self.c = np.zeros(self.nx) if c is None else np.array(c, dtype=np.float64)
        if self.c.shape != (self.nx,):
            raise InvalidArgumentError(f"c must have shape ({self.nx},), got {self.c.shape}")
        if not dt > 0:
            raise InvalidArgumentError(f"dt must be > 0, got {dt}")
        self.dt = float(dt)
        self.action_low = np.full(self.nu, -np.inf) if action_low is None else np.array(action_low, float)
        self.action_high = np.full(self.nu, np.inf) if action_high is None else np.array(action_high, float)
        for a in (self.A, self.B, self.c, self.action_low, self.action_high):
            a.setflags(write=False)

    def rollout(self, x0, U) -> np.ndarray:
        """x0: (nx,) or (B, nx), U: (B, H, nu) -> X: (B, H+1, nx)."""
        U = as_actions(U, self.nu, "U")
        x0 = broadcast_x0(as_state(x0, self.nx, "x0", batch=True), U.shape[0])
        X = np.empty((U.shape[0], U.shape[1] + 1, self.nx))
        _linear_rollout(self.A, self.B, self.c, x0, U, X)
        return X

    def step(self, X, U) -> np.ndarray:
        X, U = np.asarray(X, float), np.asarray(U, float)
        return X @ self.A.T + U @ self.B.T + self.c

    def linearize(self, X, U):
        H = np.asarray(U).shape[0]
        return np.broadcast_to(self.A, (H, *self.A.shape)).copy(), np.broadcast_to(
            self.B, (H, *self.B.shape)).copy()

    def diff(self, x0, x1):
        return np.asarray(x1, float) - np.asarray(x0, float)

    def integrate(self, x, dx):
        return np.asarray(x, float) + np.asarray(dx, float)
