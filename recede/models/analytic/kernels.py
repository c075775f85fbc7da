"""The analytic systems' Numba kernels: the public interface for fused planner code.

Numba only (numpy, numba, ``recede.costs``' kernels): no torch, no MuJoCo. Planners may import this
module, and only this one, of ``recede.models`` besides ``models.base`` (the one documented
exception to "planners see problem, costs and models.base"): iLQR's and MCTS's fused paths run
whole solves or searches inside one Numba call on these functions.

Eligibility, decided in one place
    ``fused_args(dynamics, cost)`` is ``(dynamics.kernel_args, cost.kernel_args)`` when the pair
    can run fused (``dynamics`` an ``AnalyticSystem``, ``cost`` exactly a ``QuadraticCost`` of
    the same sizes), else ``None``. ``AnalyticSystem.rollout_cost``, ``ILQR`` and ``MCTS`` all
    ask it.

Conventions
    ``kernel_args == (sys_id, p, dt, substeps)`` (``AnalyticSystem.kernel_args``) are the leading
    arguments of the batched kernels; ``substeps`` carries the integrator in its sign (> 0: that
    many RK4 steps of ``h = dt / substeps``; < 0: ``-substeps`` explicit Euler steps), see
    ``recede.models.analytic``. The one-state functions take ``(sys_id, x, u, p, ...)``.
    ``QuadraticCost.kernel_args == (Q, R, Qf, diagonal, x_goal, u_goal, is_angle)`` follow, for
    ``recede.costs.quadratic_stage`` / ``quadratic_terminal``.

One state (serial; for code written inside Numba)
    ``step_size(dt, substeps) -> h``
    ``step_in_place(sys_id, x, u, p, h, substeps, xs, k, acc)``: one control step of x: (nx,) in
        place under u: (nu,); ``xs, k, acc``: (nx,) scratch. Not inlined, no reference counting.
    ``step_one(sys_id, p, dt, substeps, x, u, out)``: the same into ``out`` (may alias x).
    ``f(sys_id, x, u, p, out)``, ``f_jacobian(sys_id, x, u, p, Jx, Ju)``: the continuous-time
        ``xdot`` and its Jacobians ``Jx (nx, nx)``, ``Ju (nx, nu)``.
    ``step_jacobian(sys_id, x, u, p, dt, substeps, A, B, work)``: the exact Jacobians of one
        control step, A: (nx, nx), B: (nx, nu); ``work = jacobian_work(nx, nu)``.
    ``energy_one(sys_id, p, x)``: mechanical energy (NaN where a system has none).

Batched (parallel across samples)
    ``rollout_kernel(*kernel_args, x0 (B, nx), U (B, H, nu), X (B, H+1, nx))``,
    ``rollout_quadratic_cost_kernel(*kernel_args, x0 (nx,), U, *cost.kernel_args, out (B,))``,
    ``step_kernel(*kernel_args, X (B, nx), U (B, nu), out)``,
    ``linearize_kernel(*kernel_args, X (H+1, nx), U (H, nu), A (H, nx, nx), B (H, nx, nu))``,
    ``energy_kernel(sys_id, p, X (N, nx), out (N,))``.

Every path computes the same expressions in the same order: the batched kernels equal
``step_in_place`` / ``step_one`` bit for bit while all angles stay below 1e6 in size (the lane
loops use the branch-free ``sincos_poly``; see ``recede._numerics``).
"""

from __future__ import annotations

import numba
import numpy as np

from recede.costs import (
    QuadraticCost,
    quadratic_stage,
    quadratic_stage_lanes,
    quadratic_terminal,
    quadratic_terminal_lanes,
)
from recede.models.analytic.dispatch import energy_one, f, f_jacobian, lanes_step
from recede.models.analytic.system import AnalyticSystem

__all__ = [
    "fused_args",
    "step_size",
    "step_in_place",
    "step_one",
    "f",
    "f_jacobian",
    "step_jacobian",
    "jacobian_work",
    "energy_one",
    "rollout_kernel",
    "rollout_quadratic_cost_kernel",
    "step_kernel",
    "linearize_kernel",
    "energy_kernel",
]


def fused_args(dynamics, cost) -> tuple[tuple, tuple] | None:
    """``(dynamics.kernel_args, cost.kernel_args)`` when ``dynamics`` and ``cost`` can run on the
    fused kernels here, else ``None``: the one eligibility decision of every fused path.

    Eligible: ``dynamics`` is an ``AnalyticSystem`` (its ``sys_id`` is one the dispatchers know)
    and ``cost`` is exactly a ``QuadraticCost`` (not a subclass, whose ``__call__`` may differ)
    sized ``nx``, ``nu`` like it. Cheap (no protocol check): sampling planners ask on every
    iteration through ``rollout_cost``.
    """
    if type(cost) is not QuadraticCost or not isinstance(dynamics, AnalyticSystem):
        return None
    if cost.nx != dynamics.nx or cost.nu != dynamics.nu:
        return None
    return dynamics.kernel_args, cost.kernel_args


# Scratch layout of the Jacobian work: (_STEP_ROWS + 5 nx, nx + nu): _STEP_ROWS rows = current
# state, stage state, stage slope, weighted slope sum (first nx columns), then five (nx, nx + nu)
# blocks holding derivatives with respect to z = (x, u): D = dx/dz, Ds = d(stage state)/dz,
# K = d(stage slope)/dz, S = weighted sum of K, J = [fx | fu].
_STEP_ROWS = 4

# Classical RK4 tableau: stage s is evaluated at x + _RK4_C[s] h k_{s-1}; x+ = x + h/6 sum w_s k_s.
_RK4_C = (0.0, 0.5, 0.5, 1.0)
_RK4_W = (1.0, 2.0, 2.0, 1.0)


# ----------------------------------------------------------------------------------------------
# One state: RK4 (or Euler) step and its exact Jacobian
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy", inline="always")
def jacobian_work(nx, nu):
    """Scratch for ``step_jacobian``: (4 + 5 nx, nx + nu)."""
    return np.empty((_STEP_ROWS + 5 * nx, nx + nu))


@numba.njit(cache=True, error_model="numpy", inline="always")
def step_size(dt, substeps):
    """``h = dt / |substeps|``: the integrator step for the signed ``substeps`` of ``kernel_args``
    (> 0: RK4 steps, < 0: explicit Euler steps)."""
    return dt / abs(substeps)


# Not inlined: step_one, the scalar reference kernel and iLQR's fused solve call the one compiled
# copy (every system's f inlined behind the sys_id branches is the bulk of a cold compile).
# Compiled without Numba's reference counting (``_nrt=False``: it allocates nothing): the array
# arguments of the inlined per-system ``f`` behind the ``sys_id`` branches otherwise cost atomic
# increments and decrements on every stage, which tripled the time of a double-integrator step
# (139 -> 48 ns here; cart-pole 463 -> 300 ns; same bits).
@numba.njit(cache=True, error_model="numpy", _nrt=False)
def step_in_place(sys_id, x, u, p, h, substeps, xs, k, acc):
    """``substeps`` classical RK4 steps of ``h`` on ``x`` in place, or, for ``substeps < 0``,
    ``-substeps`` explicit Euler steps ``x += h f(x, u)``. ``xs, k, acc``: (nx,) scratch."""
    nx = x.shape[0]
    # One call site of ``f`` for every evaluation, Euler or RK4 stage: each call site inlines
    # every system's ``f`` behind the ``sys_id`` branches, so the five sites of an unrolled
    # version (four stages + Euler) cost five copies of all of them to compile cold. The same
    # expressions in the same order as the unrolled stages, so the same bits.
    euler = substeps < 0
    stages = 1 if euler else 4
    for e in range(abs(substeps) * stages):
        s = e % stages
        if s == 0:
            for i in range(nx):
                xs[i] = x[i]
        f(sys_id, xs, u, p, k)
        if euler:
            for i in range(nx):
                x[i] += h * k[i]
            continue
        if s == 0:
            for i in range(nx):
                acc[i] = k[i]
                xs[i] = x[i] + 0.5 * h * k[i]
        elif s == 1:
            for i in range(nx):
                acc[i] += 2.0 * k[i]
                xs[i] = x[i] + 0.5 * h * k[i]
        elif s == 2:
            for i in range(nx):
                acc[i] += 2.0 * k[i]
                xs[i] = x[i] + h * k[i]
        else:
            for i in range(nx):
                x[i] += (h / 6.0) * (acc[i] + k[i])


@numba.njit(cache=True, error_model="numpy")
def step_jacobian(sys_id, x, u, p, dt, substeps, A, B, work):
    """Exact Jacobians of one control step (``step_in_place``): A = dx+/dx (nx, nx), B = dx+/du (nx, nu).

    Forward mode through every RK4 stage and substep, with respect to ``z = (x, u)``: a stage
    at ``xs = xc + c h k_prev`` has ``dxs/dz = D + c h K_prev`` and slope derivative
    ``K = fx(xs) dxs/dz + [0 | fu(xs)]``; after the four stages ``D += h/6 sum w_s K_s``.
    For ``substeps < 0`` (explicit Euler) each of the ``-substeps`` steps ``xc += h f(xc)`` has
    ``D += h (fx(xc) D + [0 | fu(xc)])``, evaluated before ``xc`` moves.
    ``work`` is scratch of shape at least ``(4 + 5 nx, nx + nu)`` (see ``jacobian_work``).
    """
    nx = x.shape[0]
    nz = nx + u.shape[0]
    h = step_size(dt, substeps)
    xc = work[0, :nx]
    xs = work[1, :nx]
    k = work[2, :nx]
    acc = work[3, :nx]
    r = _STEP_ROWS
    D = work[r : r + nx, :nz]  # d(xc)/dz
    Ds = work[r + nx : r + 2 * nx, :nz]  # d(xs)/dz
    K = work[r + 2 * nx : r + 3 * nx, :nz]  # d(k)/dz
    S = work[r + 3 * nx : r + 4 * nx, :nz]  # d(acc)/dz
    J = work[r + 4 * nx : r + 5 * nx, :nz]  # [fx | fu] at xs
    for i in range(nx):
        xc[i] = x[i]
        k[i] = 0.0
        for j in range(nz):
            D[i, j] = 1.0 if i == j else 0.0
            K[i, j] = 0.0
    for _ in range(-substeps):  # explicit Euler (none when substeps > 0)
        f(sys_id, xc, u, p, k)
        f_jacobian(sys_id, xc, u, p, J[:, :nx], J[:, nx:])
        for i in range(nx):
            for j in range(nz):
                kij = J[i, j] if j >= nx else 0.0
                for m in range(nx):
                    kij += J[i, m] * D[m, j]
                K[i, j] = kij
        for i in range(nx):
            xc[i] += h * k[i]
            for j in range(nz):
                D[i, j] += h * K[i, j]
    for _ in range(substeps):  # RK4 (none when substeps < 0)
        for s in range(4):
            c = _RK4_C[s] * h
            for i in range(nx):
                xs[i] = xc[i] + c * k[i]
                for j in range(nz):
                    Ds[i, j] = D[i, j] + c * K[i, j]
            f(sys_id, xs, u, p, k)
            f_jacobian(sys_id, xs, u, p, J[:, :nx], J[:, nx:])
            for i in range(nx):
                for j in range(nz):
                    kij = J[i, j] if j >= nx else 0.0
                    for m in range(nx):
                        kij += J[i, m] * Ds[m, j]
                    K[i, j] = kij
            w = _RK4_W[s]
            for i in range(nx):
                acc[i] = w * k[i] if s == 0 else acc[i] + w * k[i]
                for j in range(nz):
                    S[i, j] = w * K[i, j] if s == 0 else S[i, j] + w * K[i, j]
        for i in range(nx):
            xc[i] += (h / 6.0) * acc[i]
            for j in range(nz):
                D[i, j] += (h / 6.0) * S[i, j]
    for i in range(nx):
        for j in range(nx):
            A[i, j] = D[i, j]
        for j in range(nz - nx):
            B[i, j] = D[i, nx + j]


# ----------------------------------------------------------------------------------------------
# Batched kernels. The lane-blocked ones hold a block of up to _LANES samples in struct-of-arrays
# layout, x: (nx, _LANES) with sample j in column j, and step it with the system's lane loop
# (``lanes_step`` -> ``<system>.lanes``): a loop over the lanes j < n whose body is straight-line
# scalar code (all RK4 stages of one substep, sincos_poly, selects, no calls that stay calls, no
# views), so LLVM vectorises it across samples (<4 x double> with AVX2). The expressions are
# those of the system's ``f`` and ``step_in_place`` in the same order, so the results are
# bit-identical to step_one as long as sincos_poly agrees with sincos (angles below 1e6 in size).
# A negative substeps takes the explicit Euler loop instead (-substeps steps x + h * f).
# ----------------------------------------------------------------------------------------------

_LANES = 64


@numba.njit(cache=True, error_model="numpy", parallel=True)
def rollout_kernel(sys_id, p, dt, substeps, x0, U, X):
    """x0: (B, nx), U: (B, H, nu) -> writes X: (B, H+1, nx) in place, with X[:, 0] = x0.

    Blocks of ``_LANES`` samples in parallel, each vectorised across its samples; the results
    equal ``step_one`` applied step by step (bit for bit while all angles stay below 1e6).
    """
    nb, horizon, nu = U.shape
    nx = x0.shape[1]
    h = step_size(dt, substeps)
    for blk in numba.prange((nb + _LANES - 1) // _LANES):
        b0 = blk * _LANES
        n = min(_LANES, nb - b0)
        # thread-local block state, sample b0 + j in column j
        x, u = np.empty((nx, _LANES)), np.empty((nu, _LANES))
        for j in range(n):
            for i in range(nx):
                x[i, j] = x0[b0 + j, i]
                X[b0 + j, 0, i] = x0[b0 + j, i]
        for t in range(horizon):
            for j in range(n):
                for i in range(nu):
                    u[i, j] = U[b0 + j, t, i]
            lanes_step(sys_id, p, h, substeps, x, u, n)
            for j in range(n):
                for i in range(nx):
                    X[b0 + j, t + 1, i] = x[i, j]


@numba.njit(cache=True, error_model="numpy", parallel=True)
def rollout_quadratic_cost_kernel(
    sys_id, p, dt, substeps, x0, U, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, out
):
    """Rollout fused with a ``QuadraticCost``: x0: (nx,), U: (B, H, nu) -> out: (B,) costs.

    The same arithmetic as ``rollout_kernel`` followed by the cost's own kernel, without writing
    or re-reading the states: the sampling planners' hot path. Lane-blocked like
    ``rollout_kernel``, cost included; bit-identical to ``_rollout_quadratic_cost_scalar``
    while all angles (and angle errors) stay below 1e6.
    """
    nb, horizon, nu = U.shape
    nx = x0.shape[0]
    h = step_size(dt, substeps)
    for blk in numba.prange((nb + _LANES - 1) // _LANES):
        b0 = blk * _LANES
        n = min(_LANES, nb - b0)
        x, u = np.empty((nx, _LANES)), np.empty((nu, _LANES))
        e, du = np.empty((nx, _LANES)), np.empty((nu, _LANES))
        r, sx, su, total = np.empty(_LANES), np.empty(_LANES), np.empty(_LANES), np.empty(_LANES)
        for i in range(nx):
            for j in range(n):
                x[i, j] = x0[i]
        for j in range(n):
            total[j] = 0.0
        for t in range(horizon):
            for j in range(n):
                for i in range(nu):
                    u[i, j] = U[b0 + j, t, i]
            quadratic_stage_lanes(
                x, u, n, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, e, du, r, sx, su, total)
            lanes_step(sys_id, p, h, substeps, x, u, n)
        quadratic_terminal_lanes(x, n, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, e, r, sx)
        for j in range(n):
            out[b0 + j] = total[j] + sx[j]


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _rollout_quadratic_cost_scalar(
    sys_id, p, dt, substeps, x0, U, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, out
):
    """``rollout_quadratic_cost_kernel`` one sample at a time (``step_in_place``, ``quadratic_stage``):
    the reference for tests and benchmarks/analytic_rollout.py."""
    nb, horizon, nu = U.shape
    nx = x0.shape[0]
    h = step_size(dt, substeps)
    for b in numba.prange(nb):
        x, xs, k, acc, u = np.empty(nx), np.empty(nx), np.empty(nx), np.empty(nx), np.empty(nu)
        e, du = np.empty(nx), np.empty(nu)
        for i in range(nx):
            x[i] = x0[i]
        total = 0.0
        for t in range(horizon):
            for j in range(nu):
                u[j] = U[b, t, j]
            total += quadratic_stage(x, u, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, e, du)
            step_in_place(sys_id, x, u, p, h, substeps, xs, k, acc)
        out[b] = total + quadratic_terminal(x, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, e)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def step_kernel(sys_id, p, dt, substeps, X, U, out):
    """X: (B, nx), U: (B, nu) -> writes the next states into out: (B, nx).

    ``rollout_kernel``'s lane blocks for one step, written out rather than called: a cached
    serial kernel that calls a ``parallel=True`` one crashed when loaded from the cache in a new
    process (Numba 0.6x; reproduced with a fresh cache: compile in one process, load in the
    next). Same arithmetic as ``rollout_kernel``, so the same bits.
    """
    nb, nx, nu = X.shape[0], X.shape[1], U.shape[1]
    h = step_size(dt, substeps)
    for blk in numba.prange((nb + _LANES - 1) // _LANES):
        b0 = blk * _LANES
        n = min(_LANES, nb - b0)
        x, u = np.empty((nx, _LANES)), np.empty((nu, _LANES))
        for j in range(n):
            for i in range(nx):
                x[i, j] = X[b0 + j, i]
            for i in range(nu):
                u[i, j] = U[b0 + j, i]
        lanes_step(sys_id, p, h, substeps, x, u, n)
        for j in range(n):
            for i in range(nx):
                out[b0 + j, i] = x[i, j]


@numba.njit(cache=True, error_model="numpy", parallel=True)
def linearize_kernel(sys_id, p, dt, substeps, X, U, A, Bm):
    """X: (H+1, nx) (only X[:H] is read), U: (H, nu) -> A: (H, nx, nx), Bm: (H, nx, nu)."""
    nx, nu = X.shape[1], U.shape[1]
    for t in numba.prange(U.shape[0]):
        work = jacobian_work(nx, nu)
        step_jacobian(sys_id, X[t], U[t], p, dt, substeps, A[t], Bm[t], work)


@numba.njit(cache=True, error_model="numpy")
def step_one(sys_id, p, dt, substeps, x, u, out):
    """x: (nx,), u: (nu,) -> writes the next state into out: (nx,). Serial; ``out`` may alias x.

    For single environments and for search trees written inside Numba.
    """
    nx = x.shape[0]
    xc, xs, k, acc = np.empty(nx), np.empty(nx), np.empty(nx), np.empty(nx)
    for i in range(nx):  # element copies: slice assignment compiles Numba's shape-error formatting
        xc[i] = x[i]
    step_in_place(sys_id, xc, u, p, step_size(dt, substeps), substeps, xs, k, acc)
    for i in range(nx):
        out[i] = xc[i]


@numba.njit(cache=True, parallel=True, error_model="numpy")
def energy_kernel(sys_id, p, X, out):
    """``out[i] = energy_one(sys_id, p, X[i])`` for X: (N, nx)."""
    for i in numba.prange(X.shape[0]):
        out[i] = energy_one(sys_id, p, X[i])

