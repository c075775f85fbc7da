"""Guided policy search (mirror-descent GPS, Montgomery & Levine 2016): the linear-Gaussian core.

Work in progress (issue 21): this module holds, so far, the time-varying linear-Gaussian pieces
the algorithm is built from:

- :class:`LinearGaussianDynamics` ``x_{t+1} ~ N(A_t x_t + B_t u_t + c_t, W_t)``;
- :class:`LinearGaussianController` ``u_t ~ N(K_t x_t + k_t, S_t)`` (absolute states and
  actions, not deviations);
- :func:`state_marginals`: the Gaussian marginals ``N(m_t, V_t)`` of the states a controller
  visits from ``x_0 ~ N(m_0, V_0)``;
- :func:`controller_kl`: ``KL(p || q)`` between the trajectory distributions of two controllers
  under the same dynamics, in closed form: the dynamics' terms cancel, leaving
  ``sum_t E_{x_t ~ p}[KL(p(u | x_t) || q(u | x_t))]``.

Shapes: ``H`` steps, ``nx`` states, ``nu`` actions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recede.errors import InvalidArgumentError


def _stack(name: str, a, shape: tuple[int, ...]) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    if a.shape != shape:
        raise InvalidArgumentError(f"{name} must have shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InvalidArgumentError(f"{name} must be finite")
    return a


def _covariances(name: str, a, shape: tuple[int, ...]) -> np.ndarray:
    a = _stack(name, a, shape)
    sym = 0.5 * (a + np.swapaxes(a, -1, -2))
    if np.abs(a - sym).max() > 1e-9 * max(1.0, np.abs(a).max()):
        raise InvalidArgumentError(f"{name} must be symmetric")
    if np.linalg.eigvalsh(sym).min() < -1e-12 * max(1.0, np.abs(sym).max()):
        raise InvalidArgumentError(f"{name} must be positive semi-definite")
    return sym


@dataclass(frozen=True)
class LinearGaussianDynamics:
    """``x_{t+1} ~ N(A_t x_t + B_t u_t + c_t, W_t)``: A (H, nx, nx), B (H, nx, nu), c (H, nx),
    W (H, nx, nx) PSD (zeros: deterministic)."""

    A: np.ndarray
    B: np.ndarray
    c: np.ndarray
    W: np.ndarray

    def __post_init__(self):
        A = np.array(self.A, dtype=np.float64)
        if A.ndim != 3 or A.shape[1] != A.shape[2] or A.shape[0] < 1:
            raise InvalidArgumentError(f"A must have shape (H, nx, nx) with H >= 1, got {A.shape}")
        H, nx = A.shape[:2]
        B = np.array(self.B, dtype=np.float64)
        if B.ndim != 3 or B.shape[:2] != (H, nx):
            raise InvalidArgumentError(f"B must have shape ({H}, {nx}, nu), got {B.shape}")
        object.__setattr__(self, "A", _stack("A", A, A.shape))
        object.__setattr__(self, "B", _stack("B", B, B.shape))
        object.__setattr__(self, "c", _stack("c", self.c, (H, nx)))
        object.__setattr__(self, "W", _covariances("W", self.W, (H, nx, nx)))

    @property
    def H(self) -> int:
        return self.A.shape[0]

    @property
    def nx(self) -> int:
        return self.A.shape[1]

    @property
    def nu(self) -> int:
        return self.B.shape[2]


@dataclass(frozen=True)
class LinearGaussianController:
    """``u_t ~ N(K_t x_t + k_t, S_t)``: K (H, nu, nx), k (H, nu), S (H, nu, nu) positive definite."""

    K: np.ndarray
    k: np.ndarray
    S: np.ndarray

    def __post_init__(self):
        K = np.array(self.K, dtype=np.float64)
        if K.ndim != 3:
            raise InvalidArgumentError(f"K must have shape (H, nu, nx), got {K.shape}")
        H, nu, _ = K.shape
        object.__setattr__(self, "K", _stack("K", K, K.shape))
        object.__setattr__(self, "k", _stack("k", self.k, (H, nu)))
        S = _covariances("S", self.S, (H, nu, nu))
        if np.linalg.eigvalsh(S).min() <= 0:
            raise InvalidArgumentError("S must be positive definite at every step")
        object.__setattr__(self, "S", S)

    @property
    def H(self) -> int:
        return self.K.shape[0]

    def sample(self, dyn: LinearGaussianDynamics, m0, V0, n: int, rng: np.random.Generator):
        """``n`` trajectories: states (n, H+1, nx), actions (n, H, nu)."""
        H, nx, nu = dyn.H, dyn.nx, dyn.nu
        X = np.empty((n, H + 1, nx))
        U = np.empty((n, H, nu))
        X[:, 0] = rng.multivariate_normal(np.asarray(m0, float), np.asarray(V0, float), size=n, method="eigh")
        for t in range(H):
            mean = X[:, t] @ self.K[t].T + self.k[t]
            U[:, t] = mean + rng.multivariate_normal(np.zeros(nu), self.S[t], size=n, method="cholesky")
            nxt = X[:, t] @ dyn.A[t].T + U[:, t] @ dyn.B[t].T + dyn.c[t]
            X[:, t + 1] = nxt + rng.multivariate_normal(np.zeros(nx), dyn.W[t], size=n, method="eigh")
        return X, U

    def log_prob(self, X, U) -> np.ndarray:
        """``sum_t log N(U_t; K_t X_t + k_t, S_t)`` of trajectories X (n, H+1, nx), U (n, H, nu) -> (n,)."""
        X, U = np.asarray(X, float), np.asarray(U, float)
        out = np.zeros(X.shape[0])
        nu = U.shape[2]
        for t in range(self.H):
            d = U[:, t] - (X[:, t] @ self.K[t].T + self.k[t])
            L = np.linalg.cholesky(self.S[t])
            z = np.linalg.solve(L, d.T)
            out += -0.5 * np.sum(z * z, axis=0) - np.log(np.diag(L)).sum() - 0.5 * nu * np.log(2 * np.pi)
        return out


def _check_pair(dyn, ctrl, name="controller"):
    if ctrl.H != dyn.H or ctrl.K.shape[1:] != (dyn.nu, dyn.nx):
        raise InvalidArgumentError(
            f"{name} must have K of shape ({dyn.H}, {dyn.nu}, {dyn.nx}) to match the dynamics, got {ctrl.K.shape}")


def state_marginals(dyn: LinearGaussianDynamics, ctrl: LinearGaussianController, m0, V0):
    """Means (H+1, nx) and covariances (H+1, nx, nx) of the states under ``ctrl`` from
    ``x_0 ~ N(m0, V0)``."""
    _check_pair(dyn, ctrl)
    H, nx = dyn.H, dyn.nx
    m = np.empty((H + 1, nx))
    V = np.empty((H + 1, nx, nx))
    m[0] = _stack("m0", m0, (nx,))
    V[0] = _covariances("V0", V0, (nx, nx))
    for t in range(H):
        F = dyn.A[t] + dyn.B[t] @ ctrl.K[t]  # closed loop
        m[t + 1] = F @ m[t] + dyn.B[t] @ ctrl.k[t] + dyn.c[t]
        Vt = F @ V[t] @ F.T + dyn.B[t] @ ctrl.S[t] @ dyn.B[t].T + dyn.W[t]
        V[t + 1] = 0.5 * (Vt + Vt.T)
    return m, V


def controller_kl(dyn: LinearGaussianDynamics, p: LinearGaussianController, q: LinearGaussianController,
                  m0, V0) -> np.ndarray:
    """Per-step ``E_{x_t ~ p}[KL(p(u | x_t) || q(u | x_t))]`` (H,); their sum is the KL between
    the two controllers' trajectory distributions under ``dyn`` from ``N(m0, V0)``."""
    _check_pair(dyn, p, "p")
    _check_pair(dyn, q, "q")
    m, V = state_marginals(dyn, p, m0, V0)
    nu = dyn.nu
    out = np.empty(dyn.H)
    for t in range(dyn.H):
        Sq_inv = np.linalg.inv(q.S[t])
        dK, dk = p.K[t] - q.K[t], p.k[t] - q.k[t]
        mean_gap = dK @ m[t] + dk
        _, logdet_q = np.linalg.slogdet(q.S[t])
        _, logdet_p = np.linalg.slogdet(p.S[t])
        out[t] = 0.5 * (np.trace(Sq_inv @ p.S[t]) - nu + logdet_q - logdet_p
                        + mean_gap @ Sq_inv @ mean_gap + np.trace(dK.T @ Sq_inv @ dK @ V[t]))
    return out


@dataclass(frozen=True)
class QuadraticCostTerms:
    """A time-varying quadratic cost in absolute states and actions, summed over steps:
    ``1/2 x'Q_t x + q_t'x + 1/2 u'R_t u + r_t'u + u'N_t x`` for t < H, ``1/2 x'Qf x + qf'x`` at H
    (the cost's second-order expansion around the samples, rewritten about the origin)."""

    Q: np.ndarray
    q: np.ndarray
    R: np.ndarray
    r: np.ndarray
    N: np.ndarray
    Qf: np.ndarray
    qf: np.ndarray


def c_step(dyn: LinearGaussianDynamics, cost: QuadraticCostTerms, prior: LinearGaussianController,
           eta: float) -> tuple[LinearGaussianController, object]:
    """The C-step for one condition: the linear-Gaussian controller minimising
    ``E_p[cost] + eta KL(p || prior)`` under ``dyn`` (maximum-entropy LQR on the cost plus
    ``-eta log prior(u | x)``, with temperature ``eta``), and the ``tvlqr`` solution it came from.

    Its gains are ``tvlqr``'s on the augmented cost and its covariance ``eta Quu^-1``. ``eta = 0``
    gives ``tvlqr`` on the cost alone (then the covariance is undefined: the returned controller
    carries ``1e-12 I``); ``eta -> infinity`` gives the prior."""
    from recede.planners.lqr import tvlqr

    _check_pair(dyn, prior, "prior")
    if isinstance(eta, bool) or not isinstance(eta, (int, float, np.floating)) or not np.isfinite(eta) or eta < 0:
        raise InvalidArgumentError(f"eta must be a finite number >= 0, got {eta!r}")
    H, nx, nu = dyn.H, dyn.nx, dyn.nu
    Q, q, R, r, N = (np.array(a, dtype=np.float64) for a in (cost.Q, cost.q, cost.R, cost.r, cost.N))
    if eta > 0:
        P_inv = np.linalg.inv(prior.S)  # (H, nu, nu) precisions
        PK = P_inv @ prior.K  # (H, nu, nx)
        Pk = np.einsum("tij,tj->ti", P_inv, prior.k)
        # -log prior(u|x) = 1/2 (u - Kx - k)' S^-1 (u - Kx - k) + const
        Q = Q + eta * np.swapaxes(prior.K, 1, 2) @ PK
        q = q + eta * np.einsum("tji,tj->ti", prior.K, Pk)
        R = R + eta * P_inv
        r = r - eta * Pk
        N = N - eta * PK
    Q = 0.5 * (Q + np.swapaxes(Q, 1, 2))
    sol = tvlqr(dyn.A, dyn.B, Q, R, cost.Qf, c=dyn.c, q=q, r=r, qf=cost.qf, N=N)
    if eta > 0:
        S = eta * np.linalg.inv(sol.Quu)
    else:
        S = np.broadcast_to(1e-12 * np.eye(nu), (H, nu, nu))
    return LinearGaussianController(sol.K, sol.k, 0.5 * (S + np.swapaxes(S, 1, 2))), sol
