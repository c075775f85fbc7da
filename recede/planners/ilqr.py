"""iLQR and DDP: gradient-based trajectory optimisation on any ``Differentiable`` model, with
box-constrained controls.

One solver, two modes: ``Mode.ILQR`` uses the dynamics' Jacobians only; ``Mode.DDP`` adds the
second-order dynamics terms ``sum_i V'x_i d2f_i`` to ``Qxx``, ``Qux``, ``Quu`` (true DDP).

One iteration (Tassa, Mansard & Todorov, "Control-limited differential dynamic programming",
ICRA 2014; the projected-Newton box QP is theirs):

1. Derivatives along the nominal ``(X, U)``: ``A_t, B_t`` from ``dynamics.linearize`` (exact for
   the analytic systems, ``mjd_transitionFD`` for MuJoCo; central differences of ``step`` for a
   model without ``linearize``) and the cost's quadratisation (exact for ``QuadraticCost``,
   central differences of the cost otherwise; see :func:`quadratize`). iLQR is Gauss-Newton
   throughout: it also leaves out the curvature of ``QuadraticCost``'s wrapped-angle residuals,
   which makes the cost Hessian indefinite away from the goal; DDP keeps it. DDP's second-order
   dynamics terms are central differences of the Jacobians (:func:`second_order`; for the
   analytic systems, of their exact Jacobians, so accurate to about ``fd_eps**2``).
2. Backward pass (one Numba kernel): ``Q`` terms, ``Quu + reg I`` checked by Cholesky, and at each
   knot the box QP ``min_du 1/2 du'Quu du + Qu'du`` s.t. ``low <= u_bar + du <= high`` by projected
   Newton; ``k`` is its solution and ``K`` the feedback of its free directions (clamped
   directions get none), so every iterate stays inside the box. A failed Cholesky raises ``reg``
   and runs the pass again.
3. Forward pass with line search: ``u = clip(u_bar + a k + K (x [-] x_bar))`` for step sizes
   ``a = 1, 1/2, ...``, accepting the first whose actual cost reduction is at least
   ``accept_ratio`` times the expected one ``-(a k'Qu + a^2/2 k'Quu k)``. Success lowers ``reg``,
   failure raises it (Levenberg-Marquardt schedule of Tassa et al.).

Stops (``Plan.status`` and ``Plan.info["reason"]``): CONVERGED when the projected gradient
``|Qu|`` over the free directions falls to ``tol_grad``, when the expected reduction of a full
step is at most ``tol_cost * |J|`` ("expected_reduction"), or when an accepted step lowers the
cost by at most ``tol_cost * |J|`` ("cost_change"); STALLED when ``reg`` passes ``reg_max``;
MAX_ITERATIONS; DEADLINE (``plan(..., deadline=)``). ``iterations`` counts the line searches
run (a converged warm start reports 0); the trace has one :class:`ILQRLog` per iteration.

Stationary starts: a solve that stops on the gradient test before its first step may sit on a
stationary point that is not a minimum (the cart-pole hanging still under zero actions: the
gradient is zero there and the Gauss-Newton model is flat). The solver then tries once more from
the initial guess nudged by ``STATIONARY_NUDGE`` of the action range and returns that plan if it
costs less; ``Plan.info["stationary_start"]`` says what happened.

Feedback convention (as everywhere in recede): ``u = actions + k + K (x [-] states)``, with
``x [-] x_bar = dynamics.diff(x_bar, x)`` in tangent space (``ndx``) for models that define it.
The returned plan's ``k`` is zero (its actions already include the last step) and ``K`` are the
last backward pass's gains.

Fast path: on an analytic Numba system with a ``QuadraticCost`` (the pairs that
``recede.models.analytic.kernels.fused_args`` accepts, as MCTS asks too) the whole solve runs in
one Numba call on that module's public kernels (``Plan.info["fused"]``); it takes the same steps
as the general loop (tests check both against each other). A plan with a ``deadline`` runs the general loop, which checks it
between iterations.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numba
import numpy as np

from recede._linalg import chol_solve_sub, chol_sub
from recede.costs import QuadraticCost, quadratic_stage, quadratic_terminal
from recede.errors import InvalidArgumentError
from recede.models.analytic.kernels import (
    f_jacobian,
    fused_args,
    jacobian_work,
    step_in_place,
    step_jacobian,
    step_size,
)
from recede.planners.base import (
    OptionEnum,
    as_enum,
    check_number,
    check_positive_int,
    initial_actions,
    kernel_threads,
    resolve_config,
)
from recede.problem import Plan, Problem, Status, needs_sensors, sanitize_costs

__all__ = ["DDPConfig", "ILQR", "ILQRConfig", "ILQRLog", "Mode", "box_qp", "fd_linearize", "quadratize",
           "second_order"]


class Mode(OptionEnum):
    """``ILQR``: first-order dynamics (Gauss-Newton in the dynamics); ``DDP``: with the
    second-order dynamics terms."""

    ILQR = "ilqr"
    DDP = "ddp"


@dataclass(frozen=True)
class ILQRConfig:
    """Options of :class:`ILQR` (see the module docstring for what each does).

    iterations: most iterations per plan; mode: ``Mode`` or "ilqr"/"ddp"; reg_init, reg_min,
    reg_max, reg_factor: the Levenberg-Marquardt schedule (``reg`` below ``reg_min`` becomes 0);
    tol_cost: relative cost tolerance; tol_grad: projected-gradient tolerance; accept_ratio:
    the line search's actual/expected threshold; line_search: number of step sizes 1, 1/2, ...;
    fd_eps: finite-difference step (cost derivatives, DDP's second order, models without
    ``linearize``); fused: allow the single-kernel solve for analytic systems with a
    ``QuadraticCost``.
    """

    iterations: int = 100
    mode: Mode | str = Mode.ILQR
    reg_init: float = 0.0
    reg_min: float = 1e-8
    reg_max: float = 1e10
    reg_factor: float = 2.0
    tol_cost: float = 1e-9
    tol_grad: float = 1e-8
    accept_ratio: float = 1e-4
    line_search: int = 12
    fd_eps: float = 1e-4
    fused: bool = True

    def __post_init__(self):
        check_positive_int("iterations", self.iterations)
        object.__setattr__(self, "mode", as_enum(Mode, "mode", self.mode))
        for name in ("reg_init", "tol_cost", "tol_grad", "accept_ratio"):
            check_number(name, getattr(self, name))
        for name in ("reg_min", "reg_max", "fd_eps"):
            check_number(name, getattr(self, name), strict=True)
        check_number("reg_factor", self.reg_factor, 1.0, strict=True)
        if self.reg_min > self.reg_max:
            raise InvalidArgumentError(
                f"reg_min must be <= reg_max, got reg_min={self.reg_min}, reg_max={self.reg_max}")
        if self.reg_init > self.reg_max:
            raise InvalidArgumentError(
                f"reg_init must be <= reg_max, got reg_init={self.reg_init}, reg_max={self.reg_max}")
        if self.accept_ratio >= 1.0:
            raise InvalidArgumentError(f"accept_ratio must be in [0, 1), got {self.accept_ratio!r}")
        check_positive_int("line_search", self.line_search)
        if not isinstance(self.fused, bool):
            raise InvalidArgumentError(f"fused must be True or False, got {self.fused!r}")


@dataclass(frozen=True)
class DDPConfig(ILQRConfig):
    """``ILQRConfig`` with ``mode=Mode.DDP`` by default (``recede run --planner ddp``)."""

    mode: Mode | str = Mode.DDP


@dataclass(frozen=True)
class ILQRLog:
    """One iteration: ``cost`` after it, ``reg`` of its backward pass, accepted ``step`` size (0 if
    the line search failed), ``expected`` and ``actual`` cost reduction at that step, ``grad`` the
    projected gradient norm of the backward pass."""

    iteration: int
    cost: float
    reg: float
    step: float
    expected: float
    actual: float
    grad: float


# A solve that stops at its initial guess on the gradient test is tried again from the guess
# moved by this share of each action's half-range (ILQR._leave_stationary_start).
STATIONARY_NUDGE = 0.01

# Stop reasons, shared with the fused kernel.
_RUNNING, _MAXITER, _GRAD, _EXPECTED, _CHANGE, _STALLED, _DEADLINE, _DIVERGED = range(8)
_REASONS = {_MAXITER: "max_iterations", _GRAD: "gradient", _EXPECTED: "expected_reduction",
            _CHANGE: "cost_change", _STALLED: "regularisation_limit", _DEADLINE: "deadline",
            _DIVERGED: "diverged"}
_STATUS = {_MAXITER: Status.MAX_ITERATIONS, _GRAD: Status.CONVERGED,
           _EXPECTED: Status.CONVERGED, _CHANGE: Status.CONVERGED, _STALLED: Status.STALLED,
           _DEADLINE: Status.DEADLINE, _DIVERGED: Status.DIVERGED}


# ----------------------------------------------------------------------------------------------
# Numba: Cholesky, box QP, backward pass
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy")
def _qp_value(Hm, g, x):
    n = x.shape[0]
    v = 0.0
    for i in range(n):
        hx = 0.0
        for j in range(n):
            hx += Hm[i, j] * x[j]
        v += x[i] * (g[i] + 0.5 * hx)
    return v


@numba.njit(cache=True, error_model="numpy")
def box_qp_kernel(Hm, g, lo, hi, x, free, L, idx, work):
    """Projected-Newton solve of ``min 1/2 x'Hm x + g'x`` s.t. ``lo <= x <= hi`` (Tassa et al.
    2014), warm-started from ``x`` (clamped first) and written into ``x``.

    On return ``free[i]`` says whether direction i is free, ``idx[:nf]`` lists the free ones and
    ``L[:nf, :nf]`` is the Cholesky factor of ``Hm`` on them. ``work``: (4, n) scratch. Returns
    ``nf`` (>= 0), or -1 when ``Hm`` is not positive definite on the free directions.
    """
    n = g.shape[0]
    grad, search, xc, gc = work[0], work[1], work[2], work[3]
    unbounded = True
    for i in range(n):
        x[i] = min(max(x[i], lo[i]), hi[i])
        if lo[i] > -np.inf or hi[i] < np.inf:
            unbounded = False
    if unbounded:  # plain Newton: x = -Hm^-1 g
        for i in range(n):
            idx[i] = i
            free[i] = True
        if not chol_sub(Hm, idx, n, L):
            return -1
        for i in range(n):
            gc[i] = -g[i]
        chol_solve_sub(L, n, gc, x)
        return n
    old_value = 0.0
    nf = -1
    for it in range(100):
        value = _qp_value(Hm, g, x)
        if it > 0 and old_value - value < 1e-8 * abs(old_value):
            break
        old_value = value
        for i in range(n):
            s = g[i]
            for j in range(n):
                s += Hm[i, j] * x[j]
            grad[i] = s
        changed = it == 0
        count = 0
        for i in range(n):
            clamped = (x[i] <= lo[i] and grad[i] > 0.0) or (x[i] >= hi[i] and grad[i] < 0.0)
            if free[i] == clamped:
                changed = True
            free[i] = not clamped
            if not clamped:
                idx[count] = i
                count += 1
        if count == 0:
            break
        if changed:
            if not chol_sub(Hm, idx, count, L):
                return -1
        gnorm = 0.0
        for a in range(count):
            gnorm += grad[idx[a]] ** 2
        if gnorm < 1e-16:
            break
        # Newton step on the free directions, clamped ones held: search_f = -Hff^-1 (g + H x_c)_f - x_f
        for a in range(count):
            i = idx[a]
            s = g[i]
            for j in range(n):
                if not free[j]:
                    s += Hm[i, j] * x[j]
            gc[a] = s
        chol_solve_sub(L, count, gc, gc)
        for i in range(n):
            search[i] = 0.0
        for a in range(count):
            i = idx[a]
            search[i] = -gc[a] - x[i]
        sdotg = 0.0
        for i in range(n):
            sdotg += search[i] * grad[i]
        if sdotg >= 0.0:
            break
        step = 1.0
        while True:
            for i in range(n):
                xc[i] = min(max(x[i] + step * search[i], lo[i]), hi[i])
            vc = _qp_value(Hm, g, xc)
            if (vc - value) / (step * sdotg) >= 0.1:
                break
            step *= 0.6
            if step < 1e-22:
                break
        if step < 1e-22:
            break
        for i in range(n):
            x[i] = xc[i]
    # the free set and factor at the returned x
    for i in range(n):
        s = g[i]
        for j in range(n):
            s += Hm[i, j] * x[j]
        grad[i] = s
    nf = 0
    for i in range(n):
        clamped = (x[i] <= lo[i] and grad[i] > 0.0) or (x[i] >= hi[i] and grad[i] < 0.0)
        free[i] = not clamped
        if not clamped:
            idx[nf] = i
            nf += 1
    if not chol_sub(Hm, idx, nf, L):
        return -1
    return nf


@numba.njit(cache=True, error_model="numpy")
def backward_kernel(A, B, lx, lu, lxx, luu, lux, fxx, fux, fuu, ddp, ubar, low, high, reg, K, k,
                    stats):
    """The backward pass (module docstring). A (H, n, n), B (H, n, m); cost derivatives lx
    (H+1, n), lu (H, m), lxx (H+1, n, n), luu (H, m, m), lux (H, m, n); with ``ddp`` the
    second-order dynamics fxx (H, n, n, n), fux (H, n, m, n), fuu (H, n, m, m) with the output
    index first. ``k`` (H, m) holds the box QPs' warm starts on entry. Writes K (H, m, n), k and
    stats = [k'Qu summed, 1/2 k'Quu k summed, |Qu| projected on the box at u_bar]. Returns the first knot whose
    regularised Quu is not positive definite, or -1."""
    H, n, m = B.shape
    Vx = lx[H].copy()
    Vxx = lxx[H].copy()
    Qx, Qu = np.empty(n), np.empty(m)
    Qxx, Quu, Qux = np.empty((n, n)), np.empty((m, m)), np.empty((m, n))
    Quu_r = np.empty((m, m))
    VA, VB = np.empty((n, n)), np.empty((n, m))
    L, free, idx = np.empty((m, m)), np.zeros(m, dtype=np.bool_), np.empty(m, dtype=np.int64)
    lo, hi, kt, work = np.empty(m), np.empty(m), np.empty(m), np.empty((4, m))
    rhs = np.empty(m)
    unbounded = True
    for i in range(m):
        idx[i] = i
        if low[i] > -np.inf or high[i] < np.inf:
            unbounded = False
    d1 = 0.0
    d2 = 0.0
    g2 = 0.0
    for t in range(H - 1, -1, -1):
        At, Bt = A[t], B[t]
        for i in range(n):
            for j in range(n):
                s = 0.0
                for a in range(n):
                    s += Vxx[i, a] * At[a, j]
                VA[i, j] = s
            for j in range(m):
                s = 0.0
                for a in range(n):
                    s += Vxx[i, a] * Bt[a, j]
                VB[i, j] = s
        for i in range(n):
            s = lx[t, i]
            for a in range(n):
                s += At[a, i] * Vx[a]
            Qx[i] = s
            for j in range(n):
                s = lxx[t, i, j]
                for a in range(n):
                    s += At[a, i] * VA[a, j]
                Qxx[i, j] = s
        for i in range(m):
            s = lu[t, i]
            for a in range(n):
                s += Bt[a, i] * Vx[a]
            Qu[i] = s
            for j in range(m):
                s = luu[t, i, j]
                for a in range(n):
                    s += Bt[a, i] * VB[a, j]
                Quu[i, j] = s
            for j in range(n):
                s = lux[t, i, j]
                for a in range(n):
                    s += Bt[a, i] * VA[a, j]
                Qux[i, j] = s
        if ddp:
            for c in range(n):
                v = Vx[c]
                for i in range(n):
                    for j in range(n):
                        Qxx[i, j] += v * fxx[t, c, i, j]
                for i in range(m):
                    for j in range(n):
                        Qux[i, j] += v * fux[t, c, i, j]
                    for j in range(m):
                        Quu[i, j] += v * fuu[t, c, i, j]
        for i in range(m):
            for j in range(m):
                Quu_r[i, j] = 0.5 * (Quu[i, j] + Quu[j, i]) + (reg if i == j else 0.0)
            lo[i] = low[i] - ubar[t, i]
            hi[i] = high[i] - ubar[t, i]
            kt[i] = k[t, i]
        if unbounded:  # the plain Newton step (what box_qp_kernel does without bounds)
            if not chol_sub(Quu_r, idx, m, L):
                return t
            for i in range(m):
                rhs[i] = -Qu[i]
            chol_solve_sub(L, m, rhs, kt)
            nf = m
        else:
            nf = box_qp_kernel(Quu_r, Qu, lo, hi, kt, free, L, idx, work)
            if nf < 0:
                return t
        # K: free rows -Quu_ff^-1 Qux_f, clamped rows zero
        for i in range(m):
            k[t, i] = kt[i]
            for j in range(n):
                K[t, i, j] = 0.0
        for j in range(n):
            for a in range(nf):
                rhs[a] = -Qux[idx[a], j]
            chol_solve_sub(L, nf, rhs, rhs)
            for a in range(nf):
                K[t, idx[a], j] = rhs[a]
        for i in range(m):  # the gradient projected at the nominal (du = 0), not at the QP's answer
            if not ((lo[i] >= 0.0 and Qu[i] > 0.0) or (hi[i] <= 0.0 and Qu[i] < 0.0)):
                g2 += Qu[i] * Qu[i]
        # value: Vx = Qx + K'Quu k + K'Qu + Qux'k ; Vxx = Qxx + K'Quu K + K'Qux + Qux'K
        Kt = K[t]
        for i in range(m):
            s = 0.0
            for j in range(m):
                s += Quu[i, j] * kt[j]
            rhs[i] = s + Qu[i]  # Quu k + Qu
            d1 += kt[i] * Qu[i]
            d2 += 0.5 * kt[i] * s
        for i in range(n):
            s = Qx[i]
            for a in range(m):
                s += Kt[a, i] * rhs[a] + Qux[a, i] * kt[a]
            Vx[i] = s
        for i in range(n):
            for j in range(i, n):
                s = Qxx[i, j]
                for a in range(m):
                    qk = 0.0
                    for b in range(m):
                        qk += Quu[a, b] * Kt[b, j]
                    s += Kt[a, i] * (qk + Qux[a, j]) + Qux[a, i] * Kt[a, j]
                Vxx[i, j] = s
        for i in range(n):
            for j in range(i):
                Vxx[i, j] = Vxx[j, i]
    stats[0] = d1
    stats[1] = d2
    stats[2] = np.sqrt(g2)
    return -1


def box_qp(H, g, low, high, x0=None) -> tuple[np.ndarray, np.ndarray]:
    """``argmin 1/2 x'Hx + g'x`` subject to ``low <= x <= high`` by projected Newton.

    H: (n, n) symmetric positive definite on the free directions; g, low, high: (n,) (infinite
    bounds allowed); x0: warm start. Returns ``(x, free)`` with ``free`` the directions not held
    at a bound by the gradient.
    """
    Hm = np.array(H, dtype=np.float64)
    if Hm.ndim != 2 or Hm.shape[0] != Hm.shape[1]:
        raise InvalidArgumentError(f"H must be square (n, n), got shape {Hm.shape}")
    n = Hm.shape[0]
    vecs = []
    for name, v in (("g", g), ("low", low), ("high", high)):
        a = np.array(v, dtype=np.float64).reshape(-1) if np.ndim(v) else np.full(n, float(v))
        if a.shape != (n,) or np.isnan(a).any():
            raise InvalidArgumentError(f"{name} must have shape ({n},) without NaN, got {np.shape(v)}")
        vecs.append(a)
    g, lo, hi = vecs
    if not np.all(np.isfinite(Hm)) or not np.all(np.isfinite(g)):
        raise InvalidArgumentError("H and g must be finite")
    if np.any(lo > hi):
        raise InvalidArgumentError(f"low must be <= high, got low={lo}, high={hi}")
    x = np.zeros(n) if x0 is None else np.array(x0, dtype=np.float64).reshape(n)
    free, L = np.zeros(n, dtype=np.bool_), np.empty((n, n))
    idx, work = np.empty(n, dtype=np.int64), np.empty((4, n))
    if box_qp_kernel(0.5 * (Hm + Hm.T), g, lo, hi, x, free, L, idx, work) < 0:
        raise InvalidArgumentError("H is not positive definite on the free directions")
    return x, free


# ----------------------------------------------------------------------------------------------
# Derivatives
# ----------------------------------------------------------------------------------------------


def _tangent(dynamics):
    """``(ndx, diff, integrate)`` of a model; plain vector space when it defines none."""
    ndx = int(getattr(dynamics, "ndx", dynamics.nx))
    diff = getattr(dynamics, "diff", None)
    integrate = getattr(dynamics, "integrate", None)
    if diff is None or integrate is None:
        if ndx != dynamics.nx:
            raise InvalidArgumentError(
                f"{type(dynamics).__name__} has ndx={ndx} != nx={dynamics.nx} but no diff/integrate")
        return ndx, (lambda x0, x1: x1 - x0), (lambda x, dx: x + dx)
    return ndx, diff, integrate


def fd_linearize(dynamics, X, U, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference Jacobians of ``dynamics.step`` in tangent space, for models without
    ``linearize``: X (H+1, nx), U (H, nu) -> A (H, ndx, ndx), B (H, ndx, nu). One batched ``step``
    call of ``2 (ndx + nu) H`` rows."""
    ndx, diff, integrate = _tangent(dynamics)
    H, nu = U.shape
    m = ndx + nu
    E = np.eye(m) * eps
    Xs = np.repeat(X[:H, None, :], 2 * m, axis=1)  # (H, 2m, nx)
    Us = np.repeat(U[:, None, :], 2 * m, axis=1)
    for s, sign in enumerate((1.0, -1.0)):
        rows = slice(s * m, (s + 1) * m)
        Xs[:, rows] = integrate(Xs[:, rows], sign * E[None, :, :ndx])
        Us[:, rows] = Us[:, rows] + sign * E[None, :, ndx:]
    nxt = dynamics.step(Xs.reshape(H * 2 * m, -1), Us.reshape(H * 2 * m, nu)).reshape(H, 2 * m, -1)
    J = diff(nxt[:, m:], nxt[:, :m]) / (2.0 * eps)  # (H, m, ndx): row j = d f / d z_j
    J = np.swapaxes(J, 1, 2)
    return np.ascontiguousarray(J[:, :, :ndx]), np.ascontiguousarray(J[:, :, ndx:])


def second_order(linearize, integrate, X, U, ndx: int, eps: float = 1e-5):
    """Second-order dynamics terms by central differences of the Jacobians: fxx (H, ndx, ndx,
    ndx), fux (H, ndx, nu, ndx), fuu (H, ndx, nu, nu), output index first. ``linearize(X, U)`` is
    evaluated at every knot shifted along one direction at a time (2 (ndx + nu) calls)."""
    H, nu = U.shape
    fxx = np.empty((H, ndx, ndx, ndx))
    fux = np.empty((H, ndx, nu, ndx))
    fuu = np.empty((H, ndx, nu, nu))
    for j in range(ndx + nu):
        d = np.zeros(ndx + nu)
        d[j] = eps
        Xp, Xm = X.copy(), X.copy()
        Up, Um = U.copy(), U.copy()
        if j < ndx:
            Xp = integrate(X, np.broadcast_to(d[:ndx], (X.shape[0], ndx)))
            Xm = integrate(X, np.broadcast_to(-d[:ndx], (X.shape[0], ndx)))
        else:
            Up[:, j - ndx] += eps
            Um[:, j - ndx] -= eps
        Ap, Bp = linearize(Xp, Up)
        Am, Bm = linearize(Xm, Um)
        dA = (Ap - Am) / (2.0 * eps)  # (H, ndx, ndx): d A / d z_j
        dB = (Bp - Bm) / (2.0 * eps)
        if j < ndx:
            fxx[:, :, :, j] = dA  # d2 f_c / dx_i dx_j
            fux[:, :, :, j] = dB  # d2 f_c / du_a dx_j
        else:
            fuu[:, :, :, j - ndx] = dB
    # symmetrise the pure blocks (central differences of exact Jacobians are nearly symmetric)
    fxx = 0.5 * (fxx + np.swapaxes(fxx, 2, 3))
    fuu = 0.5 * (fuu + np.swapaxes(fuu, 2, 3))
    return fxx, fux, fuu


@numba.njit(cache=True, error_model="numpy")
def quadratic_derivs_kernel(X, U, Q, R, Qf, x_goal, u_goal, is_angle, exact, lx, lu, lxx, luu, lux):
    """Derivatives of a ``QuadraticCost`` along X (H+1, nx), U (H, nu): the gradient and Hessian
    of ``1/2 e'Qe`` with ``e_i = 2 sin(w_i / 2)`` on angles (w the wrapped error), whose derivative
    is ``j_i = cos(w_i / 2)`` and second derivative ``-e_i / 4``. The Hessian is ``J'QJ`` (Gauss-
    Newton, positive semidefinite) plus, when ``exact``, the residual curvature
    ``(Qe)_i (-e_i / 4)`` on angles, which is negative away from the goal."""
    Hn, nu = U.shape
    nx = X.shape[1]
    e, j, qe = np.empty(nx), np.empty(nx), np.empty(nx)
    for t in range(Hn + 1):
        M = Qf if t == Hn else Q
        for i in range(nx):
            d = X[t, i] - x_goal[i]
            if is_angle[i]:
                w = d - 2.0 * np.pi * np.floor(d / (2.0 * np.pi) + 0.5)
                e[i] = 2.0 * np.sin(0.5 * w)
                j[i] = np.cos(0.5 * w)
            else:
                e[i] = d
                j[i] = 1.0
        for i in range(nx):
            s = 0.0
            for a in range(nx):
                s += M[i, a] * e[a]
            qe[i] = s
        for i in range(nx):
            lx[t, i] = j[i] * qe[i]
            for a in range(nx):
                lxx[t, i, a] = j[i] * M[i, a] * j[a]
            if exact and is_angle[i]:
                lxx[t, i, i] += qe[i] * (-0.25 * e[i])
        if t < Hn:
            for i in range(nu):
                s = 0.0
                for a in range(nu):
                    s += R[i, a] * (U[t, a] - u_goal[a])
                    luu[t, i, a] = R[i, a]
                lu[t, i] = s
                for a in range(nx):
                    lux[t, i, a] = 0.0


def quadratize(cost, X, U, *, integrate=None, ndx: int | None = None, eps: float = 1e-4,
               gauss_newton: bool = False):
    """Derivatives of ``cost`` along one trajectory X (H+1, nx), U (H, nu), in tangent space:
    ``lx (H+1, ndx), lu (H, nu), lxx (H+1, ndx, ndx), luu (H, nu, nu), lux (H, nu, ndx)``.

    Exact for a ``QuadraticCost`` on a vector-space state (with ``gauss_newton`` its angle
    residuals' curvature is left out of the Hessian, as iLQR does); a cost may also offer its own
    ``quadratize(X, U)``. Otherwise central differences of the whole-trajectory cost, perturbing
    one knot at a time (one batched cost call): the exact gradient of any cost, and the Hessian's
    diagonal blocks (the part of the Hessian iLQR uses); cross-knot second derivatives are left
    out.
    """
    H, nu = U.shape
    nx = X.shape[1]
    ndx = nx if ndx is None else ndx
    if integrate is None:
        integrate = lambda x, dx: x + dx  # noqa: E731
    if type(cost) is QuadraticCost and ndx == nx:
        lx, lu = np.empty((H + 1, nx)), np.empty((H, nu))
        lxx, luu, lux = np.empty((H + 1, nx, nx)), np.empty((H, nu, nu)), np.empty((H, nu, nx))
        quadratic_derivs_kernel(X, U, cost.Q, cost.R, cost.Qf, cost.x_goal, cost.u_goal,
                                cost.is_angle, not gauss_newton, lx, lu, lxx, luu, lux)
        return lx, lu, lxx, luu, lux
    own = getattr(cost, "quadratize", None)
    if own is not None:
        return own(X, U)
    if needs_sensors(cost):
        raise InvalidArgumentError(_sensor_cost_message(cost))
    m = ndx + nu
    # rows per knot: base handled once; +e_i, -e_i (2m), +e_i+e_j for i < j (m(m-1)/2)
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    per = 2 * m + len(pairs)
    D = np.zeros((per, m))
    D[:m] = np.eye(m) * eps
    D[m:2 * m] = -np.eye(m) * eps
    for r, (i, j) in enumerate(pairs):
        D[2 * m + r, i] = eps
        D[2 * m + r, j] = eps
    rows = 1 + (H + 1) * per
    Xb = np.repeat(X[None], rows, axis=0)
    Ub = np.repeat(U[None], rows, axis=0)
    for t in range(H + 1):
        sl = slice(1 + t * per, 1 + (t + 1) * per)
        Xb[sl, t] = integrate(Xb[sl, t], D[:, :ndx])
        if t < H:  # the terminal knot has no action: its action rows repeat the base
            Ub[sl, t] += D[:, ndx:]
    f = np.asarray(cost(Xb, Ub), dtype=np.float64)
    f0, F = f[0], f[1:].reshape(H + 1, per)
    fp, fm, fpp = F[:, :m], F[:, m:2 * m], F[:, 2 * m:]
    g = (fp - fm) / (2.0 * eps)
    Hs = np.empty((H + 1, m, m))
    diag = (fp - 2.0 * f0 + fm) / (eps * eps)
    idx = np.arange(m)
    Hs[:, idx, idx] = diag
    if pairs:
        pi = np.array([p[0] for p in pairs])
        pj = np.array([p[1] for p in pairs])
        off = (fpp - fp[:, pi] - fp[:, pj] + f0) / (eps * eps)
        Hs[:, pi, pj] = off
        Hs[:, pj, pi] = off
    if not np.all(np.isfinite(g)) or not np.all(np.isfinite(Hs)):
        raise InvalidArgumentError("the cost is not finite around the trajectory; cannot take its derivatives")
    lx = np.ascontiguousarray(g[:, :ndx])
    lu = np.ascontiguousarray(g[:H, ndx:])
    lxx = np.ascontiguousarray(Hs[:, :ndx, :ndx])
    luu = np.ascontiguousarray(Hs[:H, ndx:, ndx:])
    lux = np.ascontiguousarray(Hs[:H, ndx:, :ndx])
    return lx, lu, lxx, luu, lux


def _sensor_cost_message(cost) -> str:
    return (f"iLQR/DDP need the cost's derivatives in the state and action, but cost {cost!r} "
            f"reads sensor data computed inside the simulator's step, which they cannot "
            f"differentiate (unless the cost has its own quadratize(X, U)); plan it with a "
            f"sampling planner (cem, icem, mppi, random)")


# ----------------------------------------------------------------------------------------------
# The solver
# ----------------------------------------------------------------------------------------------


class ILQR:
    """iLQR / DDP: gradient-based trajectory optimisation with box-constrained controls.

    Plans on a :class:`~recede.Problem` whose cost is a function of the state and action (the
    module docstring says how). ``plan(x0, *, warm_start=None, rng=None, deadline=None) -> Plan``: starts from the warm
    start's actions (clipped into the bounds) or from zero actions (clipped), rolled out from
    ``x0``. ``rng`` is accepted for the planner protocol and unused: the solver is deterministic.
    """

    def __init__(self, problem: Problem, config: ILQRConfig | None = None, **options):
        if not isinstance(problem, Problem):
            raise InvalidArgumentError(f"problem must be a recede.Problem, got {type(problem).__name__}")
        config = resolve_config(ILQRConfig, config, options)
        if needs_sensors(problem.cost) and getattr(problem.cost, "quadratize", None) is None:
            raise InvalidArgumentError(_sensor_cost_message(problem.cost))  # before any episode
        self.problem, self.config = problem, config
        dyn = problem.dynamics
        self.ndx, self._diff, self._integrate = _tangent(dyn)
        self._low = np.ascontiguousarray(problem.action_low)
        self._high = np.ascontiguousarray(problem.action_high)
        self._linearize = getattr(dyn, "linearize", None)
        if self._linearize is None:
            self._linearize = lambda X, U: fd_linearize(dyn, X, U)
        self.alphas = 0.5 ** np.arange(config.line_search)
        fused = fused_args(dyn, problem.cost) if config.fused else None
        self.fused = fused is not None
        if self.fused:  # what the fused kernel takes on every call, gathered once
            # the model's and cost's own (read-only) arrays: the same Numba types as every other
            # kernel gets, so the functions they share compile once
            self._fused_args = (*fused[0], *fused[1])
            self._settings = np.array([config.reg_init, config.reg_min, config.reg_max,
                                       config.reg_factor, config.tol_cost, config.tol_grad,
                                       config.accept_ratio, config.fd_eps])
            self._trace, self._out = np.empty((config.iterations, 6)), np.empty(3)

    def _derivatives(self, X, U):
        p, c = self.problem, self.config
        A, B = self._linearize(X, U)
        lx, lu, lxx, luu, lux = quadratize(p.cost, X, U, integrate=self._integrate, ndx=self.ndx,
                                           eps=c.fd_eps, gauss_newton=c.mode is Mode.ILQR)
        if c.mode is Mode.DDP:
            fxx, fux, fuu = second_order(self._linearize, self._integrate, X, U, self.ndx, c.fd_eps)
        else:
            fxx = fux = fuu = np.empty((1, 1, 1, 1))
        return [np.ascontiguousarray(a, dtype=np.float64)
                for a in (A, B, lx, lu, lxx, luu, lux, fxx, fux, fuu)]

    def _cost(self, X, U):
        p = self.problem
        if needs_sensors(p.cost):
            Xs, S = p.dynamics.rollout(X[0, 0], U, sensors=True)
            return sanitize_costs(p.cost(Xs, U, S))
        return sanitize_costs(p.cost(X, U))

    def _forward(self, x0, Xbar, Ubar, K, k, alphas):
        """Closed-loop rollouts for every step size at once: (X (a, H+1, nx), U (a, H, nu))."""
        dyn = self.problem.dynamics
        na, (H, nu) = len(alphas), Ubar.shape
        X = np.empty((na, H + 1, Xbar.shape[1]))
        U = np.empty((na, H, nu))
        X[:, 0] = x0
        for t in range(H):
            dx = self._diff(Xbar[t], X[:, t])
            U[:, t] = np.clip(Ubar[t] + alphas[:, None] * k[t] + dx @ K[t].T, self._low, self._high)
            X[:, t + 1] = dyn.step(X[:, t], U[:, t])
        return X, U

    def plan(self, x0, *, warm_start=None, rng=None, deadline: float | None = None) -> Plan:
        if deadline is not None and not (isinstance(deadline, (int, float)) and math.isfinite(deadline)):
            raise InvalidArgumentError(
                f"deadline must be a finite time.perf_counter() instant or None, got {deadline!r}")
        p = self.problem
        x0 = p.check_x0(x0)
        U = initial_actions(warm_start, self._low, self._high, p.horizon)
        plan = self._run(x0, U, deadline)
        if plan.iterations == 0 and plan.info["reason"] == "gradient":
            plan = self._leave_stationary_start(x0, plan, deadline)
        return plan

    def _run(self, x0, U, deadline) -> Plan:
        if self.fused and deadline is None:  # analytic model: no rollout pool to share cores with
            return self._solve_fused(x0, U)
        with kernel_threads(self.problem.dynamics):
            return self._solve(x0, U, deadline)

    def _nudge(self, U) -> np.ndarray:
        """``U`` moved by ``STATIONARY_NUDGE`` of each action's half-range (absolute where a bound
        is infinite) at every knot, upwards unless that leaves the box (then downwards)."""
        half = 0.5 * (self._high - self._low)
        step = STATIONARY_NUDGE * np.where(np.isfinite(half), half, 1.0)
        up = U + step
        return np.where(up <= self._high, up, U - step)

    def _leave_stationary_start(self, x0, plan: Plan, deadline) -> Plan:
        """The solve stopped before its first step because the projected gradient at the initial
        guess was already below ``tol_grad``. A minimum, or a stationary point that is not one
        (the cart-pole hanging still under zero force: every first-order model sees a flat cost
        there, and the Gauss-Newton one cannot see the negative curvature). Solve again from a
        deterministic nudge of the guess (:meth:`_nudge`) and keep that plan only if it costs less
        than the start by more than ``tol_cost``; ``Plan.info["stationary_start"]`` says which."""
        c = self.config
        if deadline is not None and time.perf_counter() >= deadline:
            note = "zero gradient at the initial guess; no time left to try a nudged start"
            return replace(plan, info={**plan.info, "stationary_start": note})
        nudged = self._run(x0, self._nudge(np.array(plan.actions)), deadline)
        if nudged.cost < plan.cost - c.tol_cost * abs(plan.cost):
            note = (f"zero gradient at the initial guess (cost {plan.cost:.6g}); left it from a "
                    f"start nudged by {STATIONARY_NUDGE:g} of the action range")
            return replace(nudged, info={**nudged.info, "stationary_start": note})
        note = "zero gradient at the initial guess; a nudged start found no lower cost (a minimum)"
        return replace(plan, info={**plan.info, "stationary_start": note})

    def _solve(self, x0, U, deadline) -> Plan:
        p, c = self.problem, self.config
        H, nu, ndx = p.horizon, p.nu, self.ndx
        X = p.dynamics.rollout(x0, U[None])[0]
        J = float(self._cost(X[None], U[None])[0])
        K, k = np.zeros((H, nu, ndx)), np.zeros((H, nu))
        trace, reg, dreg = [], c.reg_init, 1.0
        stats = np.empty(3)
        reason, passes, last = _RUNNING, 0, 0.0
        derivs = None
        if not math.isfinite(J):
            reason = _DIVERGED
        while reason == _RUNNING:
            if len(trace) >= c.iterations:
                reason = _MAXITER
                break
            started = time.perf_counter()
            if trace and deadline is not None and started + last > deadline:
                reason = _DEADLINE
                break
            if derivs is None:
                derivs = self._derivatives(X, U)
            while True:  # backward pass, raising reg until Quu is positive definite
                k[:] = 0.0
                bad = backward_kernel(*derivs, c.mode is Mode.DDP, U, self._low, self._high, reg,
                                      K, k, stats)
                passes += 1
                if bad < 0:
                    break
                dreg = max(c.reg_factor, dreg * c.reg_factor)
                reg = max(c.reg_min, reg * dreg)
                if reg > c.reg_max:
                    reason = _STALLED
                    break
            if reason != _RUNNING:
                break
            d1, d2, grad = stats
            used = reg
            if grad <= c.tol_grad:
                reason = _GRAD
                break
            if -(d1 + d2) <= c.tol_cost * abs(J):
                reason = _EXPECTED
                break
            Xs, Us = self._forward(x0, X, U, K, k, self.alphas)
            costs = self._cost(Xs, Us)
            step = expected = actual = 0.0
            for i, a in enumerate(self.alphas):
                exp_i = -(a * d1 + a * a * d2)
                act_i = J - costs[i]
                ratio = act_i / exp_i if exp_i > 0 else math.copysign(1.0, act_i)
                if math.isfinite(costs[i]) and ratio > c.accept_ratio:
                    step, expected, actual = float(a), exp_i, act_i
                    break
            if step > 0.0:
                X, U, J = Xs[i], Us[i], float(costs[i])
                derivs = None
                dreg = min(1.0 / c.reg_factor, dreg / c.reg_factor)
                reg = reg * dreg if reg * dreg > c.reg_min else 0.0
            else:
                dreg = max(c.reg_factor, dreg * c.reg_factor)
                reg = max(c.reg_min, reg * dreg)
            trace.append(ILQRLog(iteration=len(trace), cost=J, reg=float(used), step=step,
                                 expected=float(expected), actual=float(actual), grad=float(grad)))
            if step > 0.0 and actual <= c.tol_cost * abs(J + actual):
                reason = _CHANGE
            elif reg > c.reg_max:
                reason = _STALLED
            last = time.perf_counter() - started
        return Plan(actions=U, states=X, cost=J, iterations=len(trace), status=_STATUS[reason],
                    trace=tuple(trace), K=K, k=np.zeros((H, nu)),
                    info={"reason": _REASONS[reason], "backward_passes": passes, "fused": False,
                          "mode": c.mode.value})

    def _solve_fused(self, x0, U) -> Plan:
        p, c = self.problem, self.config
        H, nu, nx = p.horizon, p.nu, p.nx
        X = np.zeros((H + 1, nx))
        K, k = np.zeros((H, nu, nx)), np.zeros((H, nu))
        trace, out = self._trace, self._out
        n, reason, passes = _solve_analytic_quadratic(
            *self._fused_args, x0, U, X, self._low, self._high, c.iterations, c.mode is Mode.DDP,
            self._settings, self.alphas, K, k, trace, out)
        logs = tuple(ILQRLog(iteration=i, cost=float(r[0]), reg=float(r[1]), step=float(r[2]),
                             expected=float(r[3]), actual=float(r[4]), grad=float(r[5]))
                     for i, r in enumerate(trace[:n]))
        J = float(out[0]) if math.isfinite(out[0]) else math.inf
        k[:] = 0.0  # the actions already include the last step
        return Plan(actions=U, states=X, cost=J, iterations=int(n), status=_STATUS[reason],
                    trace=logs, K=K, k=k,
                    info={"reason": _REASONS[reason], "backward_passes": int(passes), "fused": True,
                          "mode": c.mode.value})


# ----------------------------------------------------------------------------------------------
# The fused solve: the loop of ILQR._solve for an analytic system and a QuadraticCost, in Numba,
# on the analytic systems' public kernels (recede.models.analytic.kernels)
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy")
def linearize_one(sys_id, p, dt, substeps, x, u, A, B):
    """Exact Jacobians of one analytic step at (x, u) into A (nx, nx), B (nx, nu)."""
    step_jacobian(sys_id, x, u, p, dt, substeps, A, B, jacobian_work(x.shape[0], u.shape[0]))


@numba.njit(cache=True, error_model="numpy")
def _linearize_all(sys_id, p, dt, substeps, X, U, A, B, work):
    """``linearize_kernel`` serially, with scratch reused. One Euler step's Jacobian is
    ``I + dt fx``, ``dt fu`` directly (what ``step_jacobian`` computes, bit for bit)."""
    H, nu = U.shape
    nx = X.shape[1]
    if substeps == -1:
        Jx, Ju = work[0:nx, 0:nx], work[nx:2 * nx, 0:nu]
        for t in range(H):
            f_jacobian(sys_id, X[t], U[t], p, Jx, Ju)
            for i in range(nx):
                for j in range(nx):
                    A[t, i, j] = (1.0 if i == j else 0.0) + dt * Jx[i, j]
                for j in range(nu):
                    B[t, i, j] = dt * Ju[i, j]
        return
    for t in range(H):
        step_jacobian(sys_id, X[t], U[t], p, dt, substeps, A[t], B[t], work)


@numba.njit(cache=True, error_model="numpy")
def _rollout_cost_fb(sys_id, p, dt, substeps, Q, R, Qf, diagonal, x_goal, u_goal, is_angle,
                     x0, Xbar, Ubar, K, k, alpha, low, high, X, U, scratch):
    """Closed-loop rollout u = clip(u_bar + alpha k + K (x - x_bar)) into X, U; returns its cost.
    scratch: (6, max(nx, nu)) work rows."""
    H, nu = Ubar.shape
    nx = x0.shape[0]
    h = step_size(dt, substeps)
    e, du, dx = scratch[0, :nx], scratch[1, :nu], scratch[2, :nx]
    # step_in_place's scratch as step_one allocates it, so both share one compiled copy
    xs, kk, acc = np.empty(nx), np.empty(nx), np.empty(nx)
    for i in range(nx):
        X[0, i] = x0[i]
    total = 0.0
    for t in range(H):
        for i in range(nx):
            dx[i] = X[t, i] - Xbar[t, i]
        for a in range(nu):
            s = Ubar[t, a] + alpha * k[t, a]
            for i in range(nx):
                s += K[t, a, i] * dx[i]
            U[t, a] = min(max(s, low[a]), high[a])
        xt, ut = X[t], U[t]
        total += quadratic_stage(xt, ut, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, e, du)
        xn = X[t + 1]
        for i in range(nx):
            xn[i] = xt[i]
        step_in_place(sys_id, xn, ut, p, h, substeps, xs, kk, acc)
    total += quadratic_terminal(X[H], Q, R, Qf, diagonal, x_goal, u_goal, is_angle, e)
    if not np.isfinite(total):
        return np.inf
    return total


@numba.njit(cache=True, error_model="numpy")
def _second_order_analytic(sys_id, p, dt, substeps, X, U, eps, fxx, fux, fuu, Ap, Bp, Am, Bm):
    """``second_order`` for an analytic system: central differences of the exact Jacobians."""
    H, nu = U.shape
    nx = X.shape[1]
    xp, up = np.empty(nx), np.empty(nu)
    for t in range(H):
        for j in range(nx + nu):
            for s in range(2):
                sign = 1.0 if s == 0 else -1.0
                for i in range(nx):
                    xp[i] = X[t, i]
                for i in range(nu):
                    up[i] = U[t, i]
                if j < nx:
                    xp[j] = X[t, j] + sign * eps
                else:
                    up[j - nx] = U[t, j - nx] + sign * eps
                if s == 0:
                    linearize_one(sys_id, p, dt, substeps, xp, up, Ap, Bp)
                else:
                    linearize_one(sys_id, p, dt, substeps, xp, up, Am, Bm)
            for c in range(nx):
                if j < nx:
                    for i in range(nx):
                        fxx[t, c, i, j] = (Ap[c, i] - Am[c, i]) / (2.0 * eps)
                    for a in range(nu):
                        fux[t, c, a, j] = (Bp[c, a] - Bm[c, a]) / (2.0 * eps)
                else:
                    for a in range(nu):
                        fuu[t, c, a, j - nx] = (Bp[c, a] - Bm[c, a]) / (2.0 * eps)
        for c in range(nx):
            for i in range(nx):
                for j in range(i):
                    v = 0.5 * (fxx[t, c, i, j] + fxx[t, c, j, i])
                    fxx[t, c, i, j] = v
                    fxx[t, c, j, i] = v
            for i in range(nu):
                for j in range(i):
                    v = 0.5 * (fuu[t, c, i, j] + fuu[t, c, j, i])
                    fuu[t, c, i, j] = v
                    fuu[t, c, j, i] = v


@numba.njit(cache=True, error_model="numpy")
def _solve_analytic_quadratic(sys_id, p, dt, substeps, Q, R, Qf, diagonal, x_goal, u_goal,
                              is_angle, x0, U, X, low, high, max_iter, ddp, settings, alphas, K, k,
                              trace, out):
    """``ILQR._solve`` in one call (same steps and arithmetic order for every decision). U (H, nu)
    is the initial guess and receives the result, X (H+1, nx) its states; trace rows are
    (cost, reg, step, expected, actual, grad). Returns (iterations, reason, backward passes)
    and out[0] = cost."""
    reg_init, reg_min, reg_max, reg_factor = settings[0], settings[1], settings[2], settings[3]
    tol_cost, tol_grad, accept_ratio, eps = settings[4], settings[5], settings[6], settings[7]
    H, nu = U.shape
    nx = x0.shape[0]
    A, B = np.empty((H, nx, nx)), np.empty((H, nx, nu))
    lx, lu = np.empty((H + 1, nx)), np.empty((H, nu))
    lxx, luu, lux = np.empty((H + 1, nx, nx)), np.empty((H, nu, nu)), np.empty((H, nu, nx))
    if ddp:
        fxx, fux, fuu = np.empty((H, nx, nx, nx)), np.empty((H, nx, nu, nx)), np.empty((H, nx, nu, nu))
    else:
        fxx, fux, fuu = np.empty((1, 1, 1, 1)), np.empty((1, 1, 1, 1)), np.empty((1, 1, 1, 1))
    Aw, Bw = np.empty((nx, nx)), np.empty((nx, nu))
    Aw2, Bw2 = np.empty((nx, nx)), np.empty((nx, nu))
    Xn, Un = np.empty((H + 1, nx)), np.empty((H, nu))
    Kz = np.zeros((H, nu, nx))
    kz = np.zeros((H, nu))
    stats = np.empty(3)
    jwork = jacobian_work(nx, nu)
    scratch = np.empty((6, max(nx, nu)))
    J = _rollout_cost_fb(sys_id, p, dt, substeps, Q, R, Qf, diagonal, x_goal, u_goal, is_angle,
                         x0, X, U, Kz, kz, 0.0, low, high, Xn, Un, scratch)
    # the initial guess is already inside the bounds, so Un == U and Xn is its rollout
    for t in range(H + 1):
        for i in range(nx):
            X[t, i] = Xn[t, i]
    reg, dreg = reg_init, 1.0
    reason, passes, n = _RUNNING, 0, 0
    fresh = True
    if not np.isfinite(J):
        reason = _DIVERGED
    while reason == _RUNNING:
        if n >= max_iter:
            reason = _MAXITER
            break
        if fresh:
            _linearize_all(sys_id, p, dt, substeps, X, U, A, B, jwork)
            # exact Hessian (angle residuals' curvature) for DDP, Gauss-Newton for iLQR, as
            # quadratize(gauss_newton=mode is ILQR) in the loop
            quadratic_derivs_kernel(X, U, Q, R, Qf, x_goal, u_goal, is_angle, ddp, lx, lu, lxx,
                                    luu, lux)
            if ddp:
                _second_order_analytic(sys_id, p, dt, substeps, X, U, eps, fxx, fux, fuu,
                                       Aw, Bw, Aw2, Bw2)
            fresh = False
        while True:
            for t in range(H):
                for a in range(nu):
                    k[t, a] = 0.0
            bad = backward_kernel(A, B, lx, lu, lxx, luu, lux, fxx, fux, fuu, ddp, U, low, high,
                                  reg, K, k, stats)
            passes += 1
            if bad < 0:
                break
            dreg = max(reg_factor, dreg * reg_factor)
            reg = max(reg_min, reg * dreg)
            if reg > reg_max:
                reason = _STALLED
                break
        if reason != _RUNNING:
            break
        d1, d2, grad = stats[0], stats[1], stats[2]
        used = reg
        if grad <= tol_grad:
            reason = _GRAD
            break
        if -(d1 + d2) <= tol_cost * abs(J):
            reason = _EXPECTED
            break
        step = 0.0
        expected = 0.0
        actual = 0.0
        for i in range(alphas.shape[0]):
            a = alphas[i]
            c_i = _rollout_cost_fb(sys_id, p, dt, substeps, Q, R, Qf, diagonal, x_goal, u_goal,
                                   is_angle, x0, X, U, K, k, a, low, high, Xn, Un, scratch)
            exp_i = -(a * d1 + a * a * d2)
            act_i = J - c_i
            if exp_i > 0:
                ratio = act_i / exp_i
            else:
                ratio = 1.0 if act_i >= 0 else -1.0
            if np.isfinite(c_i) and ratio > accept_ratio:
                step, expected, actual = a, exp_i, act_i
                J = c_i
                for t in range(H + 1):
                    for j in range(nx):
                        X[t, j] = Xn[t, j]
                for t in range(H):
                    for j in range(nu):
                        U[t, j] = Un[t, j]
                break
        if step > 0.0:
            fresh = True
            dreg = min(1.0 / reg_factor, dreg / reg_factor)
            reg = reg * dreg if reg * dreg > reg_min else 0.0
        else:
            dreg = max(reg_factor, dreg * reg_factor)
            reg = max(reg_min, reg * dreg)
        trace[n, 0] = J
        trace[n, 1] = used
        trace[n, 2] = step
        trace[n, 3] = expected
        trace[n, 4] = actual
        trace[n, 5] = grad
        n += 1
        if step > 0.0 and actual <= tol_cost * abs(J + actual):
            reason = _CHANGE
        elif reg > reg_max:
            reason = _STALLED
    out[0] = J
    return n, reason, passes
