"""Dense linear algebra shared by costs and planners: weight-matrix checks, the discrete
algebraic Riccati equation (infinite-horizon LQR, also at a model's equilibrium), and small
Cholesky kernels for Numba code.

A leaf: it imports nothing of recede's but ``errors``, so a cost (``recede.swingup``'s terminal
value) and a planner (``recede.planners.lqr``) can both use it without one importing the other.
Models enter only by duck typing (``nx``, ``nu``, ``step``, ``linearize``).

Feedback sign, as everywhere in recede: ``u = u_bar + k + K (x - x_bar)``; the infinite-horizon
gain is ``K = -(R + B'PB)^-1 B'PA`` and the cost-to-go ``1/2 x'P x``.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.linalg

from recede.errors import InvalidArgumentError

__all__ = ["as_psd", "as_matrix", "lqr_weights", "lqr_infinite", "lqr_at_equilibrium",
           "chol_sub", "chol_solve_sub", "cholesky_solve"]


def as_psd(name: str, M, n: int) -> np.ndarray:
    """``M`` as a read-only symmetric positive semidefinite ``(n, n)`` float64 matrix; a 1-D
    ``M`` is its diagonal. Errors name ``name`` and the value."""
    a = np.array(M, dtype=np.float64)
    if a.ndim == 1:
        a = np.diag(a)
    if a.shape != (n, n):
        raise InvalidArgumentError(f"{name} must have shape ({n}, {n}) or ({n},), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InvalidArgumentError(f"{name} must be finite, got {a}")
    if not np.allclose(a, a.T):
        raise InvalidArgumentError(f"{name} must be symmetric, got {a}")
    if n and np.linalg.eigvalsh(a).min() < -1e-12:
        raise InvalidArgumentError(f"{name} must be positive semidefinite, got {a}")
    a.setflags(write=False)
    return a


def as_matrix(name: str, M, shape: tuple[int, ...]) -> np.ndarray:
    """``M`` as a finite float64 array of exactly ``shape`` (a copy)."""
    a = np.array(M, dtype=np.float64)
    if a.shape != shape:
        raise InvalidArgumentError(f"{name} must have shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InvalidArgumentError(f"{name} must be finite, got {a}")
    return a


def _stack(name: str, M, n: int, steps: int | None) -> np.ndarray:
    """``as_psd`` (symmetric PSD, a matrix or its diagonal), or a stack (steps, n, n) of such,
    where one matrix stands for every step."""
    a = np.asarray(M, dtype=np.float64)
    if steps is None or a.ndim < 3:
        one = as_psd(name, a, n)
        return one if steps is None else np.ascontiguousarray(np.broadcast_to(one, (steps, n, n)))
    if a.shape != (steps, n, n):
        raise InvalidArgumentError(f"{name} must have shape ({n}, {n}) or ({steps}, {n}, {n}), got {a.shape}")
    return np.stack([as_psd(name, m, n) for m in a])


def lqr_weights(Q, R, nx: int, nu: int, *, stacked: int | None = None):
    """Q (nx, nx) symmetric PSD and R (nu, nu) symmetric PD, or, with ``stacked=H``, stacks
    ``(H, ., .)`` of them over time (one matrix stands for every step)."""
    Q, R = _stack("Q", Q, nx, stacked), _stack("R", R, nu, stacked)
    if np.linalg.eigvalsh(R).min() <= 0.0:
        raise InvalidArgumentError(f"R must be positive definite, got eigenvalues {np.linalg.eigvalsh(R)}")
    return Q, R


def lqr_infinite(A, B, Q, R) -> tuple[np.ndarray, np.ndarray]:
    """Infinite-horizon discrete LQR: ``(K (nu, nx), P (nx, nx))`` with ``u = K x`` minimising
    ``sum 1/2 (x'Qx + u'Ru)`` under ``x+ = A x + B u``; the cost-to-go is ``1/2 x'P x``.
    ``(A, B)`` must be stabilisable."""
    A = np.array(A, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise InvalidArgumentError(f"A must be square (nx, nx), got shape {A.shape}")
    nx = A.shape[0]
    B = np.array(B, dtype=np.float64)
    if B.ndim != 2 or B.shape[0] != nx:
        raise InvalidArgumentError(f"B must have shape ({nx}, nu), got {B.shape}")
    A, B = as_matrix("A", A, (nx, nx)), as_matrix("B", B, B.shape)
    Q, R = lqr_weights(Q, R, nx, B.shape[1])
    try:
        P = scipy.linalg.solve_discrete_are(A, B, Q, R)
    except (np.linalg.LinAlgError, ValueError) as exc:
        raise InvalidArgumentError(f"(A, B) is not stabilisable with these Q, R: {exc}") from None
    P = 0.5 * (P + P.T)
    K = -np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
    if not np.all(np.isfinite(P)) or np.abs(np.linalg.eigvals(A + B @ K)).max() >= 1.0:
        raise InvalidArgumentError("(A, B) is not stabilisable: the Riccati solution does not stabilise it")
    return K, P


def lqr_at_equilibrium(dynamics, Q, R, *, x_goal, u_goal=None,
                       tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """``(K, P)`` of the infinite-horizon discrete LQR of ``dynamics`` linearised at
    ``(x_goal, u_goal)`` with stage cost ``1/2 dx'Q dx + 1/2 du'R du``: the cost-to-go is
    ``1/2 dx'P dx`` (``P`` solves the discrete algebraic Riccati equation) and the optimal
    control ``u = u_goal + K dx``. Q and R may be diagonals (1-D).

    ``dynamics`` needs ``nx``, ``nu``, ``step`` and ``linearize`` (``models.base.Differentiable``).
    The goal must be an equilibrium (``step(x_goal, u_goal) == x_goal`` within ``tol``) and the
    linearisation stabilisable; otherwise ``InvalidArgumentError``.
    """
    nx, nu = dynamics.nx, dynamics.nu
    x_goal = np.asarray(x_goal, dtype=np.float64).reshape(-1)
    u_goal = np.zeros(nu) if u_goal is None else np.asarray(u_goal, dtype=np.float64).reshape(-1)
    if x_goal.shape != (nx,) or u_goal.shape != (nu,):
        raise InvalidArgumentError(f"x_goal and u_goal must have shapes ({nx},) and ({nu},), "
                                   f"got {x_goal.shape} and {u_goal.shape}")
    drift = np.abs(dynamics.step(x_goal, u_goal) - x_goal).max()
    if not drift <= tol:
        raise InvalidArgumentError(
            f"x_goal={x_goal.tolist()} with u_goal={u_goal.tolist()} is not an equilibrium of "
            f"{dynamics!r} (one step moves it by {drift:.3g})")
    A, B = dynamics.linearize(np.stack([x_goal, x_goal]), u_goal[None])
    try:
        return lqr_infinite(A[0], B[0], np.atleast_1d(Q), np.atleast_1d(R))
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(
            f"no LQR value at x_goal={x_goal.tolist()} for {dynamics!r}: {exc}") from None


# ----------------------------------------------------------------------------------------------
# Cholesky kernels (Numba), for small symmetric positive definite systems inside hot loops
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy")
def chol_sub(M, idx, n, L):
    """Cholesky factor of ``M[idx[:n]][:, idx[:n]]`` into ``L[:n, :n]``; False if not PD."""
    for i in range(n):
        for j in range(i + 1):
            s = M[idx[i], idx[j]]
            for m in range(j):
                s -= L[i, m] * L[j, m]
            if i == j:
                if not s > 0.0:
                    return False
                L[i, i] = np.sqrt(s)
            else:
                L[i, j] = s / L[j, j]
    return True


@numba.njit(cache=True, error_model="numpy")
def chol_solve_sub(L, n, b, y):
    """Solve ``(L L') y = b`` for the leading n entries (b, y may alias)."""
    for i in range(n):
        s = b[i]
        for m in range(i):
            s -= L[i, m] * y[m]
        y[i] = s / L[i, i]
    for i in range(n - 1, -1, -1):
        s = y[i]
        for m in range(i + 1, n):
            s -= L[m, i] * y[m]
        y[i] = s / L[i, i]


@numba.njit(cache=True, error_model="numpy")
def cholesky_solve(M, rhs, L, out):
    """Solve M X = rhs for symmetric M (n, n) by Cholesky into ``out`` (n, m); L: (n, n) scratch.
    Returns False when M is not positive definite."""
    n = M.shape[0]
    if not chol_sub(M, np.arange(n), n, L):
        return False
    col = np.empty(n)
    for c in range(rhs.shape[1]):
        for i in range(n):
            col[i] = rhs[i, c]
        chol_solve_sub(L, n, col, col)
        for i in range(n):
            out[i, c] = col[i]
    return True
