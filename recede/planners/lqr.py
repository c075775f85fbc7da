"""Linear-quadratic regulators: infinite horizon (DARE) and finite horizon, time-varying, affine.

Feedback sign, as everywhere in recede: ``u = u_bar + k + K (x - x_bar)``. The gains here are in
that form: ``du = K dx + k`` (so the infinite-horizon gain is ``K = -(R + B'PB)^-1 B'PA``).

Finite horizon (``tvlqr``): deviations ``dx``, ``du`` from a nominal trajectory with

    dx_{t+1} = A_t dx_t + B_t du_t + c_t
    cost     = sum_t 1/2 dx_t'Q_t dx_t + q_t'dx_t + 1/2 du_t'R_t du_t + r_t'du_t
               + 1/2 dx_H'Qf dx_H + qf'dx_H

The optimal cost-to-go is ``V_t(dx) = 1/2 dx'P_t dx + p_t'dx + s_t`` and the optimal control
``du_t = K_t dx_t + k_t``; the backward pass is one Numba kernel.

``lqr_infinite`` and ``lqr_at_equilibrium`` (the DARE) live in the leaf ``recede._linalg``, which
the swing-up cost also uses; they are re-exported here as part of the planners' API.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from recede._linalg import as_matrix, cholesky_solve, lqr_at_equilibrium, lqr_infinite, lqr_weights
from recede.errors import InvalidArgumentError

__all__ = ["LQR", "LQRConfig", "lqr_at_equilibrium", "lqr_infinite", "tvlqr", "TVLQR"]


@numba.njit(cache=True, error_model="numpy")
def tvlqr_kernel(A, B, c, Q, q, R, r, N, Qf, qf, K, k, P, p, s, Quu_out):
    """Backward pass (see the module docstring). Inputs A (H, nx, nx), B (H, nx, nu), c (H, nx),
    Q (H, nx, nx), q (H, nx), R (H, nu, nu), r (H, nu), N (H, nu, nx) (the cross term
    ``du_t'N_t dx_t``), Qf (nx, nx), qf (nx,); outputs K (H, nu, nx), k (H, nu), P (H+1, nx, nx),
    p (H+1, nx), s (H+1,) and Quu_out (H, nu, nu), the Hessian ``R_t + B_t'P_{t+1}B_t`` of the
    Q-function in du (the precision of a maximum-entropy controller). Returns the first t whose
    Quu is not positive definite, or -1."""
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
        Qux = BT @ PA + N[t]
        Quu_out[t] = Quu
        qx = q[t] + AT @ g
        qu = r[t] + BT @ g
        for i in range(nu):
            for j in range(nx):
                rhs[i, j] = Qux[i, j]
            rhs[i, nx] = qu[i]
        if not cholesky_solve(Quu, rhs, L, sol):
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


class TVLQR:
    """The result of ``tvlqr``: gains ``K (H, nu, nx)``, ``k (H, nu)``, the cost-to-go
    ``V_t(dx) = 1/2 dx'P[t]dx + p[t]'dx + s[t]`` for t = 0..H, and ``Quu (H, nu, nu)``, the
    Q-function's Hessian in ``du`` at each step."""

    def __init__(self, K, k, P, p, s, Quu=None):
        self.K, self.k, self.P, self.p, self.s, self.Quu = K, k, P, p, s, Quu

    def value(self, dx, t: int = 0) -> float:
        dx = np.asarray(dx, dtype=np.float64)
        return float(0.5 * dx @ self.P[t] @ dx + self.p[t] @ dx + self.s[t])


def tvlqr(A, B, Q, R, Qf, *, c=None, q=None, r=None, qf=None, N=None) -> TVLQR:
    """Finite-horizon time-varying LQR with affine terms (module docstring). ``A (H, nx, nx)``,
    ``B (H, nx, nu)``; ``Q``/``R`` one matrix for every step or a stack ``(H, ., .)``; ``c``,
    ``q``, ``r`` default to zero (pure regulation). ``N (H, nu, nx)``: a cross term
    ``du_t'N_t dx_t`` in the running cost (a KL to a linear-Gaussian policy has one), zero by
    default; the stage cost must stay convex in ``(dx, du)``."""
    A = np.array(A, dtype=np.float64)
    B = np.array(B, dtype=np.float64)
    if A.ndim != 3 or A.shape[1] != A.shape[2] or A.shape[0] < 1:
        raise InvalidArgumentError(f"A must have shape (H, nx, nx) with H >= 1, got {A.shape}")
    H, nx = A.shape[0], A.shape[1]
    if B.ndim != 3 or B.shape[:2] != (H, nx):
        raise InvalidArgumentError(f"B must have shape ({H}, {nx}, nu), got {B.shape}")
    nu = B.shape[2]
    A, B = as_matrix("A", A, A.shape), as_matrix("B", B, B.shape)
    Q, R = lqr_weights(Q, R, nx, nu, stacked=H)
    Qf, _ = lqr_weights(Qf, np.eye(nu), nx, nu)
    c = np.zeros((H, nx)) if c is None else as_matrix("c", c, (H, nx))
    q = np.zeros((H, nx)) if q is None else as_matrix("q", q, (H, nx))
    r = np.zeros((H, nu)) if r is None else as_matrix("r", r, (H, nu))
    qf = np.zeros(nx) if qf is None else as_matrix("qf", qf, (nx,))
    N = np.zeros((H, nu, nx)) if N is None else as_matrix("N", N, (H, nu, nx))
    K, k = np.empty((H, nu, nx)), np.empty((H, nu))
    P, p, s = np.empty((H + 1, nx, nx)), np.empty((H + 1, nx)), np.empty(H + 1)
    Quu = np.empty((H, nu, nu))
    bad = tvlqr_kernel(A, B, c, Q, q, R, r, N, Qf, qf, K, k, P, p, s, Quu)
    if bad >= 0:  # cannot happen with R positive definite and P PSD, but say so if it does
        raise InvalidArgumentError(f"R + B'PB is not positive definite at step {bad}")
    return TVLQR(K, k, P, p, s, Quu)


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
