"""LQR: infinite horizon against scipy, the finite-horizon backward pass against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from recede.errors import InvalidArgumentError
from recede.planners.lqr import lqr_infinite, tvlqr


def _random_system(rng, nx, nu):
    while True:
        A = rng.normal(size=(nx, nx)) * 0.6
        B = rng.normal(size=(nx, nu))
        ctrb = np.hstack([np.linalg.matrix_power(A, i) @ B for i in range(nx)])
        if np.linalg.matrix_rank(ctrb) == nx:  # controllable, hence stabilisable
            return A, B


def _random_pd(rng, n, floor=0.1):
    M = rng.normal(size=(n, n))
    return M @ M.T + floor * np.eye(n)


@pytest.mark.parametrize("seed", range(5))
def test_infinite_horizon_gains_equal_scipy_dare(seed):
    rng = np.random.default_rng(seed)
    nx, nu = 2 + seed, 1 + seed % 3
    A, B = _random_system(rng, nx, nu)
    Q, R = _random_pd(rng, nx), _random_pd(rng, nu)
    K, P = lqr_infinite(A, B, Q, R)
    P_ref = scipy.linalg.solve_discrete_are(A, B, Q, R)
    np.testing.assert_allclose(P, P_ref, rtol=1e-9, atol=1e-9)
    K_ref = -np.linalg.solve(R + B.T @ P_ref @ B, B.T @ P_ref @ A)
    np.testing.assert_allclose(K, K_ref, rtol=1e-9, atol=1e-9)
    # and the long finite-horizon backward pass (our Numba kernel) converges to the same gains
    H = 400
    sol = tvlqr(np.broadcast_to(A, (H, nx, nx)), np.broadcast_to(B, (H, nx, nu)), Q, R, P_ref)
    np.testing.assert_allclose(sol.K[0], K, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sol.P[0], P_ref, rtol=1e-9, atol=1e-9)


def _qp_reference(A, B, c, Q, q, R, r, Qf, qf, x0):
    """The whole horizon as one equality-constrained QP over z = (x_1..x_H, u_0..u_{H-1}), solved
    by its KKT system: the optimum controls and cost."""
    H, nx, nu = B.shape
    nz = H * nx + H * nu
    xi = lambda t: slice((t - 1) * nx, t * nx)  # noqa: E731  (x_t for t >= 1)
    ui = lambda t: slice(H * nx + t * nu, H * nx + (t + 1) * nu)  # noqa: E731
    Hm, g, const = np.zeros((nz, nz)), np.zeros(nz), 0.0
    const += 0.5 * x0 @ Q[0] @ x0 + q[0] @ x0
    for t in range(H):
        Hm[ui(t), ui(t)] += R[t]
        g[ui(t)] += r[t]
        if t >= 1:
            Hm[xi(t), xi(t)] += Q[t]
            g[xi(t)] += q[t]
    Hm[xi(H), xi(H)] += Qf
    g[xi(H)] += qf
    E, e = np.zeros((H * nx, nz)), np.zeros(H * nx)
    for t in range(H):  # x_{t+1} - A x_t - B u_t = c_t
        rows = slice(t * nx, (t + 1) * nx)
        E[rows, xi(t + 1)] = np.eye(nx)
        E[rows, ui(t)] = -B[t]
        if t == 0:
            e[rows] = c[0] + A[0] @ x0
        else:
            E[rows, xi(t)] = -A[t]
            e[rows] = c[t]
    kkt = np.block([[Hm, E.T], [E, np.zeros((H * nx, H * nx))]])
    z = np.linalg.solve(kkt, np.concatenate([-g, e]))[:nz]
    U = np.array([z[ui(t)] for t in range(H)])
    return U, 0.5 * z @ Hm @ z + g @ z + const


def test_finite_horizon_affine_lqr_is_the_qp_optimum():
    rng = np.random.default_rng(7)
    H, nx, nu = 12, 3, 2
    A = rng.normal(size=(H, nx, nx)) * 0.5 + np.eye(nx)
    B = rng.normal(size=(H, nx, nu))
    c = rng.normal(size=(H, nx)) * 0.1
    Q = np.stack([_random_pd(rng, nx, 0.0) for _ in range(H)])
    R = np.stack([_random_pd(rng, nu) for _ in range(H)])
    q, r = rng.normal(size=(H, nx)), rng.normal(size=(H, nu))
    Qf, qf = _random_pd(rng, nx), rng.normal(size=nx)
    sol = tvlqr(A, B, Q, R, Qf, c=c, q=q, r=r, qf=qf)
    x0 = rng.normal(size=nx)
    U_ref, cost_ref = _qp_reference(A, B, c, Q, q, R, r, Qf, qf, x0)
    # roll the policy out, summing the cost as we go
    x, total, U = x0.copy(), 0.0, []
    for t in range(H):
        u = sol.K[t] @ x + sol.k[t]
        U.append(u)
        total += 0.5 * x @ Q[t] @ x + q[t] @ x + 0.5 * u @ R[t] @ u + r[t] @ u
        x = A[t] @ x + B[t] @ u + c[t]
    total += 0.5 * x @ Qf @ x + qf @ x
    np.testing.assert_allclose(U, U_ref, rtol=1e-8, atol=1e-10)
    assert total == pytest.approx(cost_ref, rel=1e-10)
    assert sol.value(x0) == pytest.approx(cost_ref, rel=1e-10)  # V_0 = 1/2 x'P x + p'x + s


def test_bad_input_is_named():
    A, B = np.eye(2), np.ones((2, 1))
    with pytest.raises(InvalidArgumentError, match="A must be square"):
        lqr_infinite(np.ones((2, 3)), B, np.eye(2), np.eye(1))
    with pytest.raises(InvalidArgumentError, match=r"Q must have shape \(2, 2\)"):
        lqr_infinite(A, B, np.ones((2, 3)), np.eye(1))
    with pytest.raises(InvalidArgumentError, match="R must be positive definite"):
        lqr_infinite(A, B, np.eye(2), np.zeros((1, 1)))
    with pytest.raises(InvalidArgumentError, match="symmetric"):
        lqr_infinite(A, B, np.array([[1.0, 1.0], [0.0, 1.0]]), np.eye(1))
    # an unstable mode the input cannot reach
    with pytest.raises(InvalidArgumentError, match="not stabilisable"):
        lqr_infinite(np.diag([2.0, 0.5]), np.array([[0.0], [1.0]]), np.eye(2), np.eye(1))
    with pytest.raises(InvalidArgumentError, match=r"B must have shape \(3, 2, nu\)"):
        tvlqr(np.zeros((3, 2, 2)), np.zeros((2, 2, 1)), np.eye(2), np.eye(1), np.eye(2))
    with pytest.raises(InvalidArgumentError, match=r"c must have shape \(3, 2\)"):
        tvlqr(np.zeros((3, 2, 2)), np.zeros((3, 2, 1)), np.eye(2), np.eye(1), np.eye(2), c=np.zeros(2))


def test_tvlqr_cross_term_matches_the_stacked_quadratic_program():
    # min over du_0..du_{H-1} of sum_t 1/2 dx'Q dx + q'dx + 1/2 du'R du + r'du + du'N dx + terminal,
    # dx_{t+1} = A dx + B du + c, solved as one quadratic program in the stacked actions
    rng = np.random.default_rng(5)
    H, nx, nu = 4, 3, 2
    A = rng.normal(size=(H, nx, nx)) * 0.5 + np.eye(nx)
    B = rng.normal(size=(H, nx, nu))
    c, q, r = rng.normal(size=(H, nx)), rng.normal(size=(H, nx)), rng.normal(size=(H, nu))
    qf = rng.normal(size=nx)
    Q = np.stack([np.eye(nx) * 2.0] * H)
    R = np.stack([np.eye(nu)] * H)
    N = rng.normal(size=(H, nu, nx)) * 0.3  # small enough that [[Q, N'], [N, R]] stays PD
    Qf = np.eye(nx) * 3.0
    sol = tvlqr(A, B, Q, R, Qf, c=c, q=q, r=r, qf=qf, N=N)
    dx0 = rng.normal(size=nx)

    def cost(U):
        x, total = dx0.copy(), 0.0
        for t in range(H):
            u = U[t]
            total += 0.5 * x @ Q[t] @ x + q[t] @ x + 0.5 * u @ R[t] @ u + r[t] @ u + u @ N[t] @ x
            x = A[t] @ x + B[t] @ u + c[t]
        return total + 0.5 * x @ Qf @ x + qf @ x

    # the cost is quadratic in the stacked U: recover its gradient and Hessian exactly
    n = H * nu
    base = cost(np.zeros((H, nu)))
    E = np.eye(n)
    g = np.array([(cost(E[i].reshape(H, nu)) - cost(-E[i].reshape(H, nu))) / 2.0 for i in range(n)])
    Hs = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            Hs[i, j] = (cost((E[i] + E[j]).reshape(H, nu)) - cost(E[i].reshape(H, nu))
                        - cost(E[j].reshape(H, nu)) + base)
    U = np.linalg.solve(Hs, -g).reshape(H, nu)
    np.testing.assert_allclose(sol.K[0] @ dx0 + sol.k[0], U[0], rtol=1e-8, atol=1e-9)
    assert sol.value(dx0) == pytest.approx(cost(U), rel=1e-9)
    # Quu is the Hessian of the Q-function in du_0: the stacked problem's, with the later actions optimal
    assert sol.Quu.shape == (H, nu, nu)
    np.testing.assert_allclose(sol.Quu[-1], R[-1] + B[-1].T @ Qf @ B[-1], rtol=1e-12)
