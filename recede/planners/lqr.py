"""Linear-quadratic regulators: infinite horizon (DARE) and finite horizon, time-varying, affine.

Feedback sign, as everywhere in recede: ``u = u_bar + k + K (x - x_bar)``. The gains here are in
that form: ``du = K dx + k`` (so the infinite-horizon gain is ``K = -(R + B'PB)^-1 B'PA``).

Finite horizon (``tvlqr``): deviations ``dx``, ``du`` from a nominal trajectory with

    dx_{t+1} = A_t dx_t + B_t du_t + c_t
    cost     = sum_t 1/2 dx_t'Q_t dx_t + q_t'dx_t + 1/2 du_t'R_t du_t + r_t'du_t
               + 1/2 dx_H'Qf dx_H + qf'dx_H

The optimal cost-to-go is ``V_t(dx) = 1/2 dx'P_t dx + p_t'dx + s_t`` and the optimal control
``du_t = K_t dx_t + k_t``; the backward pass is one Numba kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.linalg

from recede.costs import _psd
from recede.errors import InvalidArgumentError

__all__ = ["LQR", "LQRConfig", "lqr_at_equilibrium", "lqr_infinite", "tvlqr", "TVLQR"]


def _matrix(name: str, M, shape: tuple[int, ...]) -> np.ndarray:
    a = np.array(M, dtype=np.float64)
    if a.shape != shape:
        raise InvalidArgumentError(f"{name} must have shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InvalidArgumentError(f"{name} must be finite, got {a}")
    return a


def _stack(name: str, M, n: int, steps: int | None) -> np.ndarray:
    """``costs._psd`` (symmetric PSD, a matrix or its diagonal), or a stack (steps, n, n) of such,
    where one matrix stands for every step."""
    a = np.asarray(M, dtype=np.float64)
    if steps is None or a.ndim < 3:
        one = _psd(name, a, n)
        return one if steps is None else np.ascontiguousarray(np.broadcast_to(one, (steps, n, n)))
    if a.shape != (steps, n, n):
        raise InvalidArgumentError(f"{name} must have shape ({n}, {n}) or ({steps}, {n}, {n}), got {a.shape}")
    return np.stack([_psd(name, m, n) for m in a])


def _weights(Q, R, nx: int, nu: int, *, stacked: int | None = None):
    """Q (nx, nx) symmetric PSD and R (nu, nu) symmetric PD, or stacks of them over time."""
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
    A, B = _matrix("A", A, (nx, nx)), _matrix("B", B, B.shape)
    Q, R = _weights(Q, R, nx, B.shape[1])
    try:
        P = scipy.linalg.solve_discrete_are(A, B, Q, R)
    except (np.linalg.LinAlgError, ValueError) as exc:
        raise InvalidArgumentError(f"(A, B) is not stabilisable with these Q, R: {exc}") from None
    P = 0.5 * (P + P.T)
    K = -np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
    if not np.all(np.isfinite(P)) or np.abs(np.linalg.eigvals(A + B @ K)).max() >= 1.0:
        raise InvalidArgumentError("(A, B) is not stabilisable: the Riccati solution does not stabilise it")
    return K, P


@numba.njit(cache=True, error_model="numpy")
def _chol_sub(M, idx, n, L):
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
def _chol_solve_sub(L, n, b, y):
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
def _cholesky_solve(M, rhs, L, out):
    """Solve M X = rhs for symmetric M (n, n) by Cholesky into ``out`` (n, m); L: (n, n) scratch.
    Returns False when M is not positive definite."""
    n = M.shape[0]
    if not _chol_sub(M, np.arange(n), n, L):
        return False
    col = np.empty(n)
    for c in range(rhs.shape[1]):
        for i in range(n):
            col[i] = rhs[i, c]
        _chol_solve_sub(L, n, col, col)
        for i in range(n):
            out[i, c] = col[i]
    return True


@numba.njit(cache=True, error_model="numpy")
def tvlqr_kernel(A, B, c, Q, q, R, r, Qf, qf, K, k, P, p, s):
    """Backward pass (see the module docstring). Inputs A (H, nx, nx), B (H, nx, nu), c (H, nx),
    Q (H, nx, nx), q (H, nx), R (H, nu, nu), r (H, nu), Qf (nx, nx), qf (nx,); outputs K (H, nu, nx),
    k (H, nu), P (H+1, nx, nx), p (H+1, nx), s (H+1,). Returns the first t whose
    ``R_t + B_t'P_{t+1}B_t`` is not positive definite, or -1."""
    H, nx, nu = B.shape
    P[H] = Qf
    p[H] = qf
    s[H] = 0.0
    L = np.empty((nu, nu))
    rhs = np.empty((nu, nx + 1))
    sol = np.empty((nu, nx + 1))
    for t in range(H - 1, -1, -1):
        # contiguous copies: '@' on transposed views is slow in Numba
        Pn, At, Bt, ct = P[t + 1].copy(), A[t].copy(), B[t].copy(), c[t].copy()
        AT, BT = At.T.copy(), Bt.T.copy()
        PA = Pn @ At
        PB = Pn @ Bt
        g = Pn @ ct + p[t + 1]  # gradient of V_{t+1} at c_t
        Qxx = Q[t] + AT @ PA
        Quu = R[t] + BT @ PB
        Qux = BT @ PA
        qx = q[t] + AT @ g
        qu = r[t] + BT @ g
        for i in range(nu):
            for j in range(nx):
                rhs[i, j] = Qux[i, j]
            rhs[i, nx] = qu[i]
        if not _cholesky_solve(Quu, rhs, L, sol):
            return t
        for i in range(nu):
            for j in range(nx):
                K[t, i, j] = -sol[i, j]
            k[t, i] = -sol[i, nx]
        QuxT = Qux.T.copy()
        Kt, kt = K[t].copy(), k[t].copy()
        Pt = Qxx + QuxT @ Kt
        for i in range(nx):
            for j in range(nx):
                P[t, i, j] = 0.5 * (Pt[i, j] + Pt[j, i])
        p[t] = qx + QuxT @ kt
        quad = 0.0
        for i in range(nx):
            quad += ct[i] * (0.5 * (Pn[i] @ ct) + p[t + 1, i])
        s[t] = s[t + 1] + quad + 0.5 * (kt @ qu)
    return -1


def lqr_at_equilibrium(dynamics, Q, R, *, x_goal, u_goal=None,
                       tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """``(K, P)`` of the infinite-horizon discrete LQR of ``dynamics`` linearised at
    ``(x_goal, u_goal)`` with stage cost ``1/2 dx'Q dx + 1/2 du'R du``: the cost-to-go is
    ``1/2 dx'P dx`` (``P`` solves the discrete algebraic Riccati equation) and the optimal
    control ``u = u_goal + K dx``. Q and R may be diagonals (1-D).

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


class TVLQR:
    """The result of ``tvlqr``: gains ``K (H, nu, nx)``, ``k (H, nu)`` and the cost-to-go
    ``V_t(dx) = 1/2 dx'P[t]dx + p[t]'dx + s[t]`` for t = 0..H."""

    def __init__(self, K, k, P, p, s):
        self.K, self.k, self.P, self.p, self.s = K, k, P, p, s

    def value(self, dx, t: int = 0) -> float:
        dx = np.asarray(dx, dtype=np.float64)
        return float(0.5 * dx @ self.P[t] @ dx + self.p[t] @ dx + self.s[t])


def tvlqr(A, B, Q, R, Qf, *, c=None, q=None, r=None, qf=None) -> TVLQR:
    """Finite-horizon time-varying LQR with affine terms (module docstring). ``A (H, nx, nx)``,
    ``B (H, nx, nu)``; ``Q``/``R`` one matrix for every step or a stack ``(H, ., .)``; ``c``,
    ``q``, ``r`` default to zero (pure regulation)."""
    A = np.array(A, dtype=np.float64)
    B = np.array(B, dtype=np.float64)
    if A.ndim != 3 or A.shape[1] != A.shape[2] or A.shape[0] < 1:
        raise InvalidArgumentError(f"A must have shape (H, nx, nx) with H >= 1, got {A.shape}")
    H, nx = A.shape[0], A.shape[1]
    if B.ndim != 3 or B.shape[:2] != (H, nx):
        raise InvalidArgumentError(f"B must have shape ({H}, {nx}, nu), got {B.shape}")
    nu = B.shape[2]
    A, B = _matrix("A", A, A.shape), _matrix("B", B, B.shape)
    Q, R = _weights(Q, R, nx, nu, stacked=H)
    Qf, _ = _weights(Qf, np.eye(nu), nx, nu)
    c = np.zeros((H, nx)) if c is None else _matrix("c", c, (H, nx))
    q = np.zeros((H, nx)) if q is None else _matrix("q", q, (H, nx))
    r = np.zeros((H, nu)) if r is None else _matrix("r", r, (H, nu))
    qf = np.zeros(nx) if qf is None else _matrix("qf", qf, (nx,))
    K, k = np.empty((H, nu, nx)), np.empty((H, nu))
    P, p, s = np.empty((H + 1, nx, nx)), np.empty((H + 1, nx)), np.empty(H + 1)
    bad = tvlqr_kernel(A, B, c, Q, q, R, r, Qf, qf, K, k, P, p, s)
    if bad >= 0:  # cannot happen with R positive definite and P PSD, but say so if it does
        raise InvalidArgumentError(f"R + B'PB is not positive definite at step {bad}")
    return TVLQR(K, k, P, p, s)


@dataclass(frozen=True)
class LQRConfig:
    """Options of :class:`LQR`: ``tol``, how far one step may move the goal for it to count as
    an equilibrium."""

    tol: float = 1e-6

    def __post_init__(self):
        if isinstance(self.tol, bool) or not isinstance(self.tol, (int, float)) or not (
                0.0 <= self.tol < np.inf):
            raise InvalidArgumentError(f"tol must be a finite number >= 0, got {self.tol!r}")


class LQR:
    """Infinite-horizon LQR at the goal as a planner, for ``MPC`` and ``recede run --planner lqr``.

    The gain ``K`` comes from ``lqr_at_equilibrium`` with the weights and goal of the problem's
    cost (a ``QuadraticCost``, or any cost with ``Q``, ``R``, ``x_goal`` and optionally ``u_goal``
    attributes, such as ``SwingUpCost``). ``plan(x0)`` rolls the policy ``u = clip(u_goal + K e(x))``
    out over the horizon (``e`` wraps the model's ``angle_dims`` to [-pi, pi]) and returns those
    actions and states with ``K`` at every step, so MPC's feedback between replans applies the
    same policy. It stabilises near the goal only: from far away the linearisation says nothing.
    """

    def __init__(self, problem, config: LQRConfig | None = None):
        from recede.problem import Problem

        if not isinstance(problem, Problem):
            raise InvalidArgumentError(f"problem must be a recede.Problem, got {type(problem).__name__}")
        self.problem, self.config = problem, LQRConfig() if config is None else config
        d, cost = problem.dynamics, problem.cost
        if not hasattr(d, "linearize"):
            raise InvalidArgumentError(f"LQR needs a Differentiable model (linearize), got {d!r}")
        cost = getattr(cost, "quadratic", cost)  # SwingUpCost keeps its weights there
        if not all(hasattr(cost, a) for a in ("Q", "R", "x_goal")):
            raise InvalidArgumentError(
                f"LQR takes Q, R and x_goal from the problem's cost; {cost!r} has none")
        u_goal = getattr(cost, "u_goal", None)
        self.x_goal = np.asarray(cost.x_goal, dtype=np.float64)
        self.u_goal = np.zeros(d.nu) if u_goal is None else np.asarray(u_goal, dtype=np.float64)
        self.K, self.P = lqr_at_equilibrium(d, cost.Q, cost.R, x_goal=self.x_goal,
                                            u_goal=self.u_goal, tol=self.config.tol)
        self._angles = np.zeros(d.nx, dtype=bool)
        self._angles[list(getattr(d, "angle_dims", ()))] = True

    def plan(self, x0, *, warm_start=None, rng=None):
        from recede.problem import Plan, Status

        p = self.problem
        x = p.check_x0(x0)
        H = p.horizon
        X, U = np.empty((H + 1, p.nx)), np.empty((H, p.nu))
        X[0] = x
        step_one = getattr(p.dynamics, "step_one", None)  # one state, no batch overhead
        for t in range(H):
            e = X[t] - self.x_goal
            e = np.where(self._angles, (e + np.pi) % (2.0 * np.pi) - np.pi, e)
            U[t] = np.clip(self.u_goal + self.K @ e, p.action_low, p.action_high)
            X[t + 1] = step_one(X[t], U[t]) if step_one is not None else \
                p.dynamics.step(X[t][None], U[t][None])[0]
        cost = float(p.evaluate(x, U[None])[0])
        status = Status.CONVERGED if np.isfinite(cost) else Status.DIVERGED
        return Plan(actions=U, states=X, cost=cost, iterations=0, status=status,
                    K=np.broadcast_to(self.K, (H,) + self.K.shape), k=np.zeros((H, p.nu)))
