"""Costs over model state: running ``l(x, u)`` plus terminal ``l_T(x)``, evaluated batched.

``cost(X, U) -> (B,)`` with ``X: (B, H+1, nx)`` and ``U: (B, H, nu)`` returns
``sum_t l(X[:, t], U[:, t]) + l_T(X[:, H])``. ``stage(x, u)`` is one running term (environments
report its negative as the reward). Costs may also offer ``stage_costs(X, U[, S]) -> (B, H+1)``,
the per-step terms (terminal in column H) that sum to the total: tree search backs them up
step by step (see :func:`stage_costs`).
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numba
import numpy as np

from recede._linalg import as_psd
from recede._numerics import sincos, sincos_poly
from recede.errors import InvalidArgumentError


@runtime_checkable
class Cost(Protocol):
    def __call__(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        """X: (B, H+1, nx), U: (B, H, nu) -> (B,)."""
        ...

    def stage(self, x: np.ndarray, u: np.ndarray) -> float:
        """Running cost of one state (nx,) and action (nu,)."""
        ...


_TWO_PI = 2.0 * np.pi


@numba.njit(cache=True, inline="always", error_model="numpy")
def _err(v, i, goal, is_angle, angles):
    d = v[i] - goal[i]
    if angles and is_angle[i]:
        # 2 sin(w/2) with w = d wrapped to [-pi, pi]: squares to 2 (1 - cos d), equals d near
        # the goal. w/2 lies where cos >= 0, so sin(w/2) = sin(d/2) * sign(cos(d/2)).
        s, c = sincos(0.5 * d)
        d = 2.0 * s if c >= 0.0 else -2.0 * s
    return d


@numba.njit(cache=True, inline="always", error_model="numpy")
def quadratic_form(M, diagonal, x, goal, is_angle, angles, e):
    """``1/2 e'M e`` with ``e`` the error of x: (n,) from goal: (n,), angle-aware (``2 sin(d/2)``,
    as ``QuadraticCost.error``) where ``angles`` and ``is_angle[i]``; ``diagonal``: read only
    M's diagonal. e: scratch (n,), used only when M is not diagonal. For Numba code that builds
    its own cost from ``QuadraticCost``'s pieces (``recede.swingup``)."""
    s = 0.0
    n = x.shape[0]
    if diagonal:
        for i in range(n):
            d = _err(x, i, goal, is_angle, angles)
            s += M[i, i] * d * d
        return 0.5 * s
    for i in range(n):
        e[i] = _err(x, i, goal, is_angle, angles)
    for i in range(n):
        r = 0.0
        for j in range(n):
            r += M[i, j] * e[j]
        s += e[i] * r
    return 0.5 * s


@numba.njit(cache=True, inline="always", error_model="numpy")
def quadratic_stage(x, u, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, e, du):
    """Running cost of one state x: (nx,) and action u: (nu,); e, du: scratch (nx,), (nu,).

    Takes ``QuadraticCost.kernel_args`` after ``x, u``, for Numba code that fuses the cost into
    a rollout (see ``recede.models.analytic``)."""
    return quadratic_form(Q, diagonal, x, x_goal, is_angle, True, e) + quadratic_form(
        R, diagonal, u, u_goal, is_angle, False, du)


@numba.njit(cache=True, inline="always", error_model="numpy")
def quadratic_terminal(x, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, e):
    """Terminal cost of x: (nx,); same argument order as ``quadratic_stage``."""
    return quadratic_form(Qf, diagonal, x, x_goal, is_angle, True, e)


# Lane-blocked forms, for Numba rollouts that keep a block of samples in struct-of-arrays layout
# (``x: (nx, L)``, sample j of the block in column j; only the first ``n`` columns are used) and
# vectorise across samples. The arithmetic is that of ``quadratic_stage`` / ``quadratic_terminal``
# in the same order, with ``sincos_poly`` (no libm branch) for the angle errors: the same bits
# for angle differences below 2e6 in size.


@numba.njit(cache=True, error_model="numpy")
def _quad_state_lanes(M, diagonal, x, goal, is_angle, angles, n, e, r, out):
    """out[j] = 1/2 e_j' M e_j for the columns j < n of x: (dim, L); e: (dim, L), r: (L,) scratch."""
    dim = x.shape[0]
    for i in range(dim):
        gi = goal[i]
        if angles and is_angle[i]:
            for j in range(n):
                s, c = sincos_poly(0.5 * (x[i, j] - gi))
                e[i, j] = 2.0 * s if c >= 0.0 else -2.0 * s
        else:
            for j in range(n):
                e[i, j] = x[i, j] - gi
    for j in range(n):
        out[j] = 0.0
    if diagonal:
        for i in range(dim):
            mii = M[i, i]
            for j in range(n):
                out[j] += mii * e[i, j] * e[i, j]
    else:
        for i in range(dim):
            for j in range(n):
                r[j] = 0.0
            for m in range(dim):
                mim = M[i, m]
                for j in range(n):
                    r[j] += mim * e[m, j]
            for j in range(n):
                out[j] += e[i, j] * r[j]
    for j in range(n):
        out[j] = 0.5 * out[j]


@numba.njit(cache=True, inline="always", error_model="numpy")
def quadratic_stage_lanes(
    x, u, n, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, e, du, r, sx, su, total
):
    """``total[j] += quadratic_stage(x[:, j], u[:, j], ...)`` for j < n. x: (nx, L),
    u: (nu, L); scratch e: (nx, L), du: (nu, L), r, sx, su: (L,)."""
    _quad_state_lanes(Q, diagonal, x, x_goal, is_angle, True, n, e, r, sx)
    _quad_state_lanes(R, diagonal, u, u_goal, is_angle, False, n, du, r, su)
    for j in range(n):
        total[j] += sx[j] + su[j]


@numba.njit(cache=True, inline="always", error_model="numpy")
def quadratic_terminal_lanes(x, n, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, e, r, sx):
    """``sx[j] = quadratic_terminal(x[:, j], ...)`` for j < n; scratch e: (nx, L), r: (L,)."""
    _quad_state_lanes(Qf, diagonal, x, x_goal, is_angle, True, n, e, r, sx)


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _quadratic_cost_kernel(X, U, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, out):
    B, H, nu = U.shape
    nx = X.shape[2]
    for b in numba.prange(B):
        # local copies, not slices: a view of X in a parallel loop would bump its shared
        # reference count from every thread
        x, u, e, du = np.empty(nx), np.empty(nu), np.empty(nx), np.empty(nu)
        total = 0.0
        for t in range(H + 1):
            for i in range(nx):
                x[i] = X[b, t, i]
            if t == H:
                total += quadratic_terminal(x, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, e)
            else:
                for j in range(nu):
                    u[j] = U[b, t, j]
                total += quadratic_stage(x, u, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, e, du)
        out[b] = total


def as_cost_batch(X, U, nx: int, nu: int) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous float64 ``X: (B, H+1, nx)`` and ``U: (B, H, nu)``, or a named shape error."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    U = np.ascontiguousarray(U, dtype=np.float64)
    if X.ndim != 3 or U.ndim != 3 or X.shape[2] != nx or U.shape[2] != nu or (
        X.shape[:2] != (U.shape[0], U.shape[1] + 1)
    ):
        raise InvalidArgumentError(
            f"cost expects X: (B, H+1, {nx}) and U: (B, H, {nu}), got {X.shape} and {U.shape}")
    return X, U


class QuadraticCost:
    """``l = 1/2 e'Q e + 1/2 (u - u_goal)'R (u - u_goal)``, ``l_T = 1/2 e'Qf e``.

    ``e = x - x_goal``, except on ``angle_dims`` where ``e_i = 2 sin(d_i / 2)`` with ``d_i`` the
    difference wrapped to [-pi, pi]: then ``e_i^2 = 2 (1 - cos(x_i - g_i))``, the cost is
    2 pi-periodic in each angle, and ``e_i`` equals the plain error near the goal.
    Q, R, Qf are matrices or diagonals (1-D).
    """

    def __init__(self, Q, R, Qf=None, *, x_goal=None, u_goal=None, angle_dims=()):
        Q = np.atleast_1d(np.asarray(Q, dtype=np.float64))
        R = np.atleast_1d(np.asarray(R, dtype=np.float64))
        self.nx, self.nu = Q.shape[0], R.shape[0]
        self.Q = as_psd("Q", Q, self.nx)
        self.R = as_psd("R", R, self.nu)
        self.Qf = as_psd("Qf", np.zeros(self.nx) if Qf is None else Qf, self.nx)
        self.x_goal = self._vec("x_goal", x_goal, self.nx)
        self.u_goal = self._vec("u_goal", u_goal, self.nu)
        is_angle = np.zeros(self.nx, dtype=np.bool_)
        for i in angle_dims:
            if not 0 <= int(i) < self.nx:
                raise InvalidArgumentError(f"angle_dims must index the state (0..{self.nx - 1}), got {i}")
            is_angle[int(i)] = True
        self.angle_dims = tuple(int(i) for i in angle_dims)
        self._diagonal = all(
            np.count_nonzero(M - np.diag(np.diag(M))) == 0 for M in (self.Q, self.R, self.Qf)
        )
        self._is_angle = is_angle

    @staticmethod
    def _vec(name, v, n):
        a = np.zeros(n) if v is None else np.array(v, dtype=np.float64)
        if a.shape != (n,):
            raise InvalidArgumentError(f"{name} must have shape ({n},), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise InvalidArgumentError(f"{name} must be finite, got {a}")
        a.setflags(write=False)
        return a

    def error(self, X: np.ndarray) -> np.ndarray:
        """State error e(x) for any leading shape ``(..., nx)``."""
        d = np.asarray(X, dtype=np.float64) - self.x_goal
        wrapped = d - _TWO_PI * np.floor(d / _TWO_PI + 0.5)
        return np.where(self._is_angle, 2.0 * np.sin(0.5 * wrapped), d)

    def __call__(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        X, U = as_cost_batch(X, U, self.nx, self.nu)
        out = np.empty(U.shape[0])
        _quadratic_cost_kernel(X, U, *self.kernel_args, out)
        return out

    @property
    def diagonal(self) -> bool:
        """Whether Q, R and Qf are all diagonal (the kernels then read only their diagonals)."""
        return self._diagonal

    @property
    def is_angle(self) -> np.ndarray:
        """``(nx,)`` booleans, which state entries are angles (``angle_dims``); do not write."""
        return self._is_angle

    @property
    def kernel_args(self) -> tuple:
        """``(Q, R, Qf, diagonal, x_goal, u_goal, is_angle)``: the trailing
        arguments of ``quadratic_stage`` and ``quadratic_terminal`` (and their lane forms), for
        Numba code that fuses this cost into a rollout (see
        ``recede.models.analytic.kernels.fused_args``)."""
        return (self.Q, self.R, self.Qf, self._diagonal, self.x_goal, self.u_goal, self._is_angle)

    def stage(self, x: np.ndarray, u: np.ndarray) -> float:
        e = self.error(x)
        du = np.asarray(u, dtype=np.float64) - self.u_goal
        return float(0.5 * e @ self.Q @ e + 0.5 * du @ self.R @ du)

    def stage_costs(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        """Per-step costs ``(B, H+1)``: column t < H is ``l(X[:, t], U[:, t])``, column H is
        ``l_T(X[:, H])``; they sum to ``cost(X, U)``."""
        X, U = as_cost_batch(X, U, self.nx, self.nu)
        e, du = self.error(X), U - self.u_goal
        out = np.empty((U.shape[0], U.shape[1] + 1))
        out[:, :-1] = 0.5 * (np.einsum("bti,ij,btj->bt", e[:, :-1], self.Q, e[:, :-1])
                             + np.einsum("bti,ij,btj->bt", du, self.R, du))
        out[:, -1] = 0.5 * np.einsum("bi,ij,bj->b", e[:, -1], self.Qf, e[:, -1])
        return out

    def terminal(self, x: np.ndarray) -> float:
        e = self.error(x)
        return float(0.5 * e @ self.Qf @ e)

    def __repr__(self) -> str:
        return (
            f"QuadraticCost(Q=diag{tuple(np.diag(self.Q))}, R=diag{tuple(np.diag(self.R))}, "
            f"Qf=diag{tuple(np.diag(self.Qf))}, x_goal={tuple(self.x_goal)}, "
            f"angle_dims={self.angle_dims})"
        )


class FunctionCost:
    """A cost from vectorised numpy functions, for quick experiments.

    running(X: (B, H, nx), U: (B, H, nu)) -> (B, H); terminal(X_T: (B, nx)) -> (B,) (optional).
    """

    def __init__(
        self,
        running: Callable[[np.ndarray, np.ndarray], np.ndarray],
        terminal: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        if not callable(running):
            raise InvalidArgumentError(f"running must be callable, got {running!r}")
        if terminal is not None and not callable(terminal):
            raise InvalidArgumentError(f"terminal must be callable or None, got {terminal!r}")
        self.running, self.terminal_fn = running, terminal

    def __call__(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        c = np.asarray(self.running(X[:, :-1], U), dtype=np.float64).sum(axis=1)
        if self.terminal_fn is not None:
            c = c + np.asarray(self.terminal_fn(X[:, -1]), dtype=np.float64)
        return c

    def stage(self, x: np.ndarray, u: np.ndarray) -> float:
        return float(np.asarray(self.running(x[None, None], u[None, None])).reshape(-1)[0])

    def stage_costs(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        """Per-step costs ``(B, H+1)``, the terminal cost (or 0) in column H."""
        out = np.zeros((U.shape[0], U.shape[1] + 1))
        out[:, :-1] = np.asarray(self.running(X[:, :-1], U), dtype=np.float64)
        if self.terminal_fn is not None:
            out[:, -1] = np.asarray(self.terminal_fn(X[:, -1]), dtype=np.float64)
        return out


def stage_costs(cost, X: np.ndarray, U: np.ndarray, S: np.ndarray | None = None) -> np.ndarray | None:
    """Per-step costs ``(B, H+1)`` of ``cost`` (terminal in column H), from its own
    ``stage_costs``; ``None`` when the cost only gives totals."""
    f = getattr(cost, "stage_costs", None)
    if f is None:
        return None
    out = f(X, U) if S is None else f(X, U, S)
    return np.asarray(out, dtype=np.float64)


class ValueTerminalCost:
    """A cost whose terminal term is a value function: ``sum_{t<H} l(x_t, u_t) + scale V(x_H)``.

    ``cost``: the running cost ``l``, any cost that gives its per-step terms (``stage_costs``; the
    terminal column of those is dropped), or with ``keep_terminal=True`` any cost, whose own
    terminal term is then kept and ``scale V`` added to it. ``value``: a numpy callable
    ``V(X: (B, nx)) -> (B,)``, a cost-to-go in the cost's units (lower is better); a learned one
    reaches the planner only through such a callable (``recede.policies.ValueFunction``), so
    planners never import torch. With a perfect value (the Riccati ``x'Px/2`` of an LQ problem),
    horizon-1 MPC is the optimal controller. ``nx``: the state size ``V`` expects (default the
    value's own ``nx`` attribute, else the cost's); a batch of another size is refused.
    """

    def __init__(self, cost, value, *, scale: float = 1.0, keep_terminal: bool = False, nx: int | None = None):
        if not callable(cost):
            raise InvalidArgumentError(f"cost must be callable as cost(X, U), got {cost!r}")
        if not callable(value):
            raise InvalidArgumentError(f"value must be callable as V(X: (B, nx)) -> (B,), got {value!r}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating)) or not np.isfinite(scale) \
                or scale < 0:
            raise InvalidArgumentError(f"scale must be a finite number >= 0, got {scale!r}")
        if not keep_terminal and getattr(cost, "stage_costs", None) is None:
            raise InvalidArgumentError(
                f"cost {type(cost).__name__} gives no per-step stage_costs, so its terminal term "
                f"cannot be replaced by the value; pass keep_terminal=True to add the value to it")
        own_nx = getattr(value, "nx", None)
        cost_nx = getattr(cost, "nx", None)
        want = nx if nx is not None else own_nx if own_nx is not None else cost_nx
        if own_nx is not None and cost_nx is not None and int(own_nx) != int(cost_nx):
            raise InvalidArgumentError(
                f"value expects states of size {own_nx}, but the cost's states have size {cost_nx}")
        self.base, self.value, self.scale = cost, value, float(scale)
        self.keep_terminal = bool(keep_terminal)
        # a quadratic running cost keeps its Numba kernel: the same cost with Qf = 0
        self._running = None
        if type(cost) is QuadraticCost and not keep_terminal:
            self._running = QuadraticCost(cost.Q, cost.R, np.zeros((cost.nx, cost.nx)), x_goal=cost.x_goal,
                                          u_goal=cost.u_goal, angle_dims=cost.angle_dims)
        self.nx = None if want is None else int(want)
        self.needs_sensors = bool(getattr(cost, "needs_sensors", False))

    def terminal_values(self, XT: np.ndarray) -> np.ndarray:
        """``scale * V(XT)`` for final states ``XT: (B, nx)``, checked to be ``(B,)``."""
        XT = np.ascontiguousarray(XT, dtype=np.float64)
        if XT.ndim != 2 or (self.nx is not None and XT.shape[1] != self.nx):
            raise InvalidArgumentError(f"value expects states (B, {self.nx}), got {XT.shape}")
        v = np.asarray(self.value(XT), dtype=np.float64)
        if v.shape != (XT.shape[0],):
            raise InvalidArgumentError(
                f"value must return one number per state, shape ({XT.shape[0]},), got {v.shape}")
        return self.scale * v

    def _base_stage(self, X, U, S):
        out = stage_costs(self.base, X, U, S if self.needs_sensors else None)
        return np.array(out, dtype=np.float64)

    def stage_costs(self, X: np.ndarray, U: np.ndarray, S: np.ndarray | None = None) -> np.ndarray:
        """Per-step costs ``(B, H+1)``: the running cost's columns, the value in column H (added
        to the cost's own terminal with ``keep_terminal``)."""
        X = np.asarray(X, dtype=np.float64)
        if self.keep_terminal and getattr(self.base, "stage_costs", None) is None:
            out = np.zeros((X.shape[0], X.shape[1]))
            out[:, -1] = self._total_base(X, U, S)
        else:
            out = self._base_stage(X, U, S)
            if not self.keep_terminal:
                out[:, -1] = 0.0
        out[:, -1] += self._masked_values(X, U, S)
        return out

    def _masked_values(self, X, U, S):
        """The terminal values, 0 for sequences the cost says ended early (a robot that fell:
        ``cost.survives(X, U[, S]) -> (B,)``, see ``recede.envs.robots.RewardCost``)."""
        v = self.terminal_values(X[:, -1])
        survives = getattr(self.base, "survives", None)
        if survives is not None:
            alive = np.asarray(survives(X, U, S) if self.needs_sensors else survives(X, U), dtype=bool)
            v = np.where(alive, v, 0.0)
        return v

    def _total_base(self, X, U, S):
        return np.asarray(self.base(X, U, S) if self.needs_sensors else self.base(X, U), dtype=np.float64)

    def __call__(self, X: np.ndarray, U: np.ndarray, S: np.ndarray | None = None) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.keep_terminal:
            return self._total_base(X, U, S) + self._masked_values(X, U, S)
        running = self._running(X, U) if self._running is not None else self._base_stage(X, U, S)[:, :-1].sum(axis=1)
        return running + self._masked_values(X, U, S)

    def stage(self, x: np.ndarray, u: np.ndarray) -> float:
        return float(self.base.stage(x, u))

    def terminal(self, x: np.ndarray) -> float:
        return float(self.terminal_values(np.asarray(x, dtype=np.float64)[None])[0])

    def __repr__(self) -> str:
        keep = ", keep_terminal=True" if self.keep_terminal else ""
        return f"ValueTerminalCost({self.base!r}, value={self.value!r}, scale={self.scale:g}{keep})"
