"""Guided policy search (mirror-descent GPS, Montgomery & Levine 2016): local linear-Gaussian
controllers, improved by LQR within a KL step of the global policy, teach one neural policy.

The pieces, each usable alone:

- :class:`LinearGaussianDynamics` ``x_{t+1} ~ N(A_t x_t + B_t u_t + c_t, W_t)`` and
  :class:`LinearGaussianController` ``u_t ~ N(K_t x_t + k_t, S_t)`` (absolute states and
  actions); :func:`state_marginals`; :func:`controller_kl`, the KL between two controllers'
  trajectory distributions in closed form (``sum_t E_{x_t ~ p}[KL(p(u|x_t) || q(u|x_t))]``: the
  dynamics' terms cancel); :func:`expected_cost` of a controller under a quadratic cost.
- :func:`c_step`: maximum-entropy LQR on ``cost - eta log prior`` through ``planners.lqr.tvlqr``
  (its cross term carries the prior's coupling of ``u`` and ``x``; the controller's covariance is
  ``eta Quu^-1``); :func:`bracket_eta` finds the ``eta`` whose controller is ``target`` nats from
  the prior; :func:`step_multiplier` adapts the step from predicted against actual improvement.
- :func:`fit_dynamics`: linear-Gaussian dynamics by regression on samples, optionally under a
  normal-inverse-Wishart prior from a :class:`GMMPrior` (a mixture over all samples) or
  :func:`model_prior` (a model's linearisation). :func:`linearize_policy`: the global policy as
  a linear-Gaussian controller around the samples. :func:`psd_project`: the regularisation
  applied to every cost Hessian and covariance, counted in the log instead of crashing.
- :class:`GPSSystem` (model, cost, horizon, conditions, where samples come from) and
  :func:`task_system` for recede's tasks; :func:`gps`, the loop, with :class:`GPSConfig`,
  checkpoint and resume; ``recede gps`` on the command line.

Shapes: ``H`` steps, ``nx`` states, ``nu`` actions, ``M`` conditions, ``N`` samples.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from recede._linalg import as_matrix
from recede.errors import InvalidArgumentError
from recede.policy_learning.imitation import _seed_of


def _covariances(name: str, a, shape: tuple[int, ...]) -> np.ndarray:
    a = as_matrix(name, a, shape)
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
        object.__setattr__(self, "A", as_matrix("A", A, A.shape))
        object.__setattr__(self, "B", as_matrix("B", B, B.shape))
        object.__setattr__(self, "c", as_matrix("c", self.c, (H, nx)))
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
        object.__setattr__(self, "K", as_matrix("K", K, K.shape))
        object.__setattr__(self, "k", as_matrix("k", self.k, (H, nu)))
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
    m[0] = as_matrix("m0", m0, (nx,))
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
    ``1/2 x'Q_t x + q_t'x + 1/2 u'R_t u + r_t'u + u'N_t x + const_t`` for t < H, ``1/2 x'Qf x +
    qf'x + const_H`` at H (the cost's second-order expansion around the samples, rewritten about
    the origin). ``const`` (H+1,) defaults to zeros."""

    Q: np.ndarray
    q: np.ndarray
    R: np.ndarray
    r: np.ndarray
    N: np.ndarray
    Qf: np.ndarray
    qf: np.ndarray
    const: np.ndarray | None = None


def expected_cost(dyn: LinearGaussianDynamics, cost: QuadraticCostTerms, ctrl: LinearGaussianController,
                  m0, V0) -> np.ndarray:
    """Per-step expected cost (H+1,) of ``ctrl`` under ``dyn`` from ``N(m0, V0)``, in closed form
    (the Gaussian state-action marginals against the quadratic cost): GPS's estimate of a
    controller's cost under a linearisation (its step-size rule compares these)."""
    _check_pair(dyn, ctrl)
    m, V = state_marginals(dyn, ctrl, m0, V0)
    H = dyn.H
    const = np.zeros(H + 1) if cost.const is None else np.asarray(cost.const, dtype=np.float64)
    out = np.empty(H + 1)
    for t in range(H):
        mu = ctrl.K[t] @ m[t] + ctrl.k[t]
        Vu = ctrl.K[t] @ V[t] @ ctrl.K[t].T + ctrl.S[t]
        Vux = ctrl.K[t] @ V[t]
        out[t] = (0.5 * (np.trace(cost.Q[t] @ V[t]) + m[t] @ cost.Q[t] @ m[t])
                  + cost.q[t] @ m[t]
                  + 0.5 * (np.trace(cost.R[t] @ Vu) + mu @ cost.R[t] @ mu) + cost.r[t] @ mu
                  + np.trace(cost.N[t] @ Vux.T) + mu @ cost.N[t] @ m[t] + const[t])
    out[H] = 0.5 * (np.trace(cost.Qf @ V[H]) + m[H] @ cost.Qf @ m[H]) + cost.qf @ m[H] + const[H]
    return out


def c_step(dyn: LinearGaussianDynamics, cost: QuadraticCostTerms, prior: LinearGaussianController,
           eta: float) -> tuple[LinearGaussianController, object]:
    """The C-step for one condition: the linear-Gaussian controller minimising
    ``E_p[cost] + eta KL(p || prior)`` under ``dyn`` (maximum-entropy LQR on the cost plus
    ``-eta log prior(u | x)``, with temperature ``eta``), and the ``tvlqr`` solution it came from
    (for ``eta > 0``, of the equivalent ``cost / eta - log prior``, whose numbers stay bounded as
    ``eta`` grows).

    Its gains are ``tvlqr``'s on the augmented cost and its covariance ``eta Quu^-1``. ``eta = 0``
    gives ``tvlqr`` on the cost alone (then the covariance is undefined: the returned controller
    carries ``1e-12 I``); ``eta -> infinity`` gives the prior."""
    from recede.planners.lqr import tvlqr

    _check_pair(dyn, prior, "prior")
    if isinstance(eta, bool) or not isinstance(eta, (int, float, np.floating)) or not np.isfinite(eta) or eta < 0:
        raise InvalidArgumentError(f"eta must be a finite number >= 0, got {eta!r}")
    H, nu = dyn.H, dyn.nu
    Q, q, R, r, N = (np.array(a, dtype=np.float64) for a in (cost.Q, cost.q, cost.R, cost.r, cost.N))
    Qf, qf = np.array(cost.Qf, dtype=np.float64), np.array(cost.qf, dtype=np.float64)
    if eta > 0:
        # cost / eta - log prior: the same gains, and numbers that stay bounded as eta grows
        Q, q, R, r, N, Qf, qf = (a / eta for a in (Q, q, R, r, N, Qf, qf))
        P_inv = np.linalg.inv(prior.S)  # (H, nu, nu) precisions
        PK = P_inv @ prior.K  # (H, nu, nx)
        Pk = np.einsum("tij,tj->ti", P_inv, prior.k)
        # -log prior(u|x) = 1/2 (u - Kx - k)' S^-1 (u - Kx - k) + const
        Q = Q + np.swapaxes(prior.K, 1, 2) @ PK
        q = q + np.einsum("tji,tj->ti", prior.K, Pk)
        R = R + P_inv
        r = r - Pk
        N = N - PK
    Q = 0.5 * (Q + np.swapaxes(Q, 1, 2))
    sol = tvlqr(dyn.A, dyn.B, Q, R, Qf, c=dyn.c, q=q, r=r, qf=qf, N=N)
    if eta > 0:
        S = np.linalg.inv(sol.Quu)  # the scaled Q-function's Hessian: eta Quu^-1 of the unscaled one
    else:
        S = np.broadcast_to(1e-12 * np.eye(nu), (H, nu, nu))
    return LinearGaussianController(sol.K, sol.k, 0.5 * (S + np.swapaxes(S, 1, 2))), sol


# ----------------------------------------------------------------------------- robustness


def psd_project(M: np.ndarray, floor: float = 0.0) -> tuple[np.ndarray, int]:
    """Symmetrise a stack of square matrices ``(..., n, n)`` and raise every eigenvalue below
    ``floor`` to it. Returns the projected stack and how many matrices needed it (GPS logs this
    count instead of failing: an indefinite cost Hessian or covariance is what crashed
    ``cbfinn/gps``). Non-finite entries are a caller's bug, so they raise."""
    M = np.asarray(M, dtype=np.float64)
    if not np.all(np.isfinite(M)):
        raise InvalidArgumentError("psd_project: the matrices must be finite")
    S = 0.5 * (M + np.swapaxes(M, -1, -2))
    if S.size == 0:
        return S, 0
    w, Vec = np.linalg.eigh(S)
    tol = 1e-9 * np.maximum(1.0, np.abs(w).max(axis=-1, keepdims=True))
    bad = np.any(w < floor - tol, axis=-1)
    if not np.any(bad):
        return S, 0
    w2 = np.maximum(w, floor)
    fixed = np.einsum("...ij,...j,...kj->...ik", Vec, w2, Vec)
    out = np.where(bad[..., None, None], 0.5 * (fixed + np.swapaxes(fixed, -1, -2)), S)
    return out, int(bad.sum())


# ----------------------------------------------------------------------------- fitted dynamics


class GMMPrior:
    """A Gaussian mixture over ``[x_t, u_t, x_{t+1}]`` points from every sample of every
    condition (and earlier iterations), the prior of ``fit+prior`` dynamics (cbfinn/gps's
    ``DynamicsPriorGMM``, rewritten): :meth:`eval` turns the mixture's responsibility-weighted
    moments at one step's points into a normal-inverse-Wishart prior ``(mu0, Phi, m, n0)``.

    clusters: most components (fewer when there are fewer than ``min_per_cluster`` points per
    component); EM with ``iterations`` steps from points chosen by ``rng``; covariances floored at
    ``reg``."""

    def __init__(self, *, clusters: int = 20, min_per_cluster: int = 40, iterations: int = 100,
                 reg: float = 1e-6, strength: float = 1.0):
        self.clusters, self.min_per_cluster, self.iterations = clusters, min_per_cluster, iterations
        self.reg, self.strength = reg, strength
        self.mu = self.sigma = self.logw = None

    def fit(self, pts: np.ndarray, rng: np.random.Generator) -> None:
        pts = np.asarray(pts, dtype=np.float64)
        n, d = pts.shape
        K = int(max(1, min(self.clusters, n // self.min_per_cluster)))
        mean, sd = pts.mean(axis=0), pts.std(axis=0) + 1e-8
        Z = (pts - mean) / sd  # EM on standardised points
        mu = Z[rng.choice(n, size=K, replace=False)]
        sigma = np.broadcast_to(np.cov(Z.T).reshape(d, d) + self.reg * np.eye(d), (K, d, d)).copy()
        logw = np.full(K, -np.log(K))
        prev = -np.inf
        for _ in range(self.iterations):
            logp = self._logp(Z, mu, sigma, logw)  # (n, K)
            ll = _logsumexp(logp, axis=1)
            resp = np.exp(logp - ll[:, None])
            Nk = resp.sum(axis=0) + 1e-10
            logw = np.log(Nk / n)
            mu = (resp.T @ Z) / Nk[:, None]
            D = Z[:, None, :] - mu[None]  # (n, K, d)
            sigma = np.einsum("nk,nki,nkj->kij", resp, D, D) / Nk[:, None, None] + self.reg * np.eye(d)
            total = ll.sum()
            if total - prev < 1e-5 * abs(total):
                break
            prev = total
        # back to the original units
        self.mu = mu * sd + mean
        self.sigma = sigma * np.outer(sd, sd)
        self.logw = logw
        self._n = n

    @staticmethod
    def _logp(Z, mu, sigma, logw):
        K, d = mu.shape
        out = np.empty((Z.shape[0], K))
        for k in range(K):
            L = np.linalg.cholesky(sigma[k])
            r = np.linalg.solve(L, (Z - mu[k]).T)
            out[:, k] = logw[k] - 0.5 * np.sum(r * r, axis=0) - np.log(np.diag(L)).sum() - 0.5 * d * np.log(2 * np.pi)
        return out

    def eval(self, pts: np.ndarray):
        """``(mu0, Phi, m, n0)`` for one step's points ``(N, d)``."""
        if self.mu is None:
            raise InvalidArgumentError("GMMPrior.eval before fit")
        logp = self._logp(np.asarray(pts, dtype=np.float64), self.mu, self.sigma, self.logw)
        logr = logp - _logsumexp(logp, axis=1)[:, None]
        w = np.exp(_logsumexp(logr, axis=0) - np.log(len(pts)))  # average responsibilities
        w = w / w.sum()
        mu0 = w @ self.mu
        D = self.mu - mu0
        Phi = np.einsum("k,kij->ij", w, self.sigma) + np.einsum("k,ki,kj->ij", w, D, D)
        return mu0, Phi * self.strength, self.strength, self.strength


def _logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    return (m + np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True))).squeeze(axis)


def model_prior(A, B, c, strength: float = 1.0):
    """A normal-inverse-Wishart prior from a model's linearisation ``x' = A_t x + B_t u + c_t``:
    at step t the joint ``[x, u, x']`` has the sampled ``[x, u]`` moments and ``x'`` follows the
    model. Returns ``prior(t, pts) -> (mu0, Phi, m, n0)`` for :func:`fit_dynamics`."""
    A, B, c = (np.asarray(a, dtype=np.float64) for a in (A, B, c))

    def prior(t, pts):
        nx = A.shape[1]
        F = np.concatenate([A[t], B[t]], axis=1)
        xu = pts[:, :F.shape[1]]
        mu = xu.mean(axis=0)
        S = np.cov(xu.T).reshape(len(mu), len(mu)) if len(xu) > 1 else np.zeros((len(mu), len(mu)))
        # full rank, so that the prior pins every direction of F (the samples span few)
        S = S + (1e-2 * np.trace(S) / len(mu) + 1e-6) * np.eye(len(mu))
        mu0 = np.concatenate([mu, F @ mu + c[t]])
        Phi = np.block([[S, S @ F.T], [F @ S, F @ S @ F.T + 1e-6 * np.eye(nx)]])
        return mu0, Phi * strength, strength, strength

    return prior


def fit_dynamics(X, U, *, prior=None, reg: float = 1e-6) -> tuple[LinearGaussianDynamics, int]:
    """Time-varying linear-Gaussian dynamics fitted to trajectories ``X (N, H+1, nx)``, ``U (N,
    H, nu)`` by regression at each step: the joint Gaussian of ``[x_t, u_t, x_{t+1}]`` (its
    maximum a posteriori estimate under ``prior(t, pts) -> (mu0, Phi, m, n0)``, a normal-inverse-
    Wishart prior, when given), conditioned on ``[x_t, u_t]``. ``reg`` is added to the ``[x, u]``
    block (one sample per step is enough with a prior; without one, ``N > nx + nu`` samples
    identify the dynamics). Returns the dynamics and the number of covariances that had to be
    projected to positive semi-definite."""
    X, U = np.asarray(X, dtype=np.float64), np.asarray(U, dtype=np.float64)
    if X.ndim != 3 or U.ndim != 3 or X.shape[0] != U.shape[0] or X.shape[1] != U.shape[1] + 1:
        raise InvalidArgumentError(f"X must be (N, H+1, nx) and U (N, H, nu), got {X.shape} and {U.shape}")
    N, H1, nx = X.shape
    H, nu = H1 - 1, U.shape[2]
    if N < 1:
        raise InvalidArgumentError("fit_dynamics needs at least one trajectory")
    d = nx + nu
    A, B = np.empty((H, nx, nx)), np.empty((H, nx, nu))
    c, W = np.empty((H, nx)), np.empty((H, nx, nx))
    fixes = 0
    for t in range(H):
        pts = np.concatenate([X[:, t], U[:, t], X[:, t + 1]], axis=1)
        mu = pts.mean(axis=0)
        D = pts - mu
        emp = D.T @ D / N
        if prior is None:
            sigma = emp
        else:
            mu0, Phi, m, n0 = prior(t, pts)
            g = mu - mu0
            sigma = (N * emp + Phi + (N * m) / (N + m) * np.outer(g, g)) / (N + n0)
        sigma = 0.5 * (sigma + sigma.T)
        sigma[:d, :d] += reg * np.eye(d)
        F = np.linalg.solve(sigma[:d, :d], sigma[:d, d:]).T  # (nx, d)
        A[t], B[t] = F[:, :nx], F[:, nx:]
        c[t] = mu[d:] - F @ mu[:d]
        Wt = sigma[d:, d:] - F @ sigma[:d, :d] @ F.T
        Wt, n = psd_project(Wt)
        W[t] = Wt
        fixes += n
    return LinearGaussianDynamics(A, B, c, W), fixes


# ----------------------------------------------------------------------------- the C-step's dual


@dataclass(frozen=True)
class BracketResult:
    """The C-step at the found ``eta``: the controller, its KL to the prior (summed over steps),
    the target, the tries, whether ``|kl - target| <= tol * target`` (or the constraint is
    inactive: the KL stays below the target at ``eta_min``), and how many tries failed (a
    non-positive-definite Q-function Hessian: treated as too small an ``eta``). Not converged:
    the feasible controller with the smallest eta, or, with none feasible, the prior itself."""

    controller: LinearGaussianController
    eta: float
    kl: float
    target: float
    tries: int
    converged: bool
    failures: int


def bracket_eta(dyn: LinearGaussianDynamics, cost: QuadraticCostTerms, prior: LinearGaussianController,
                m0, V0, target: float, *, eta0: float = 1.0, tol: float = 0.1, eta_min: float = 1e-6,
                eta_max: float = 1e16, max_tries: int = 60) -> BracketResult:
    """Find the temperature ``eta`` of :func:`c_step` at which the new controller's KL to
    ``prior`` (under ``dyn`` from ``N(m0, V0)``) equals ``target`` to within ``tol * target``:
    the dual of ``min E[cost] s.t. KL <= target``. The KL falls as ``eta`` grows; the search
    brackets the root by factors of 10 from ``eta0`` and bisects in ``log eta``."""
    if isinstance(target, bool) or not isinstance(target, (int, float, np.floating)) or not np.isfinite(target) \
            or target <= 0:
        raise InvalidArgumentError(f"target (the KL step) must be a finite number > 0, got {target!r}")
    eta = float(np.clip(eta0 if np.isfinite(eta0) and eta0 > 0 else 1.0, eta_min, eta_max))
    lo = hi = None  # lo: an eta whose KL is too large; hi: one whose KL is below the target
    best = None  # the feasible (KL <= target) solution with the smallest eta
    failures = 0
    for tries in range(1, max_tries + 1):
        try:
            ctrl, _ = c_step(dyn, cost, prior, eta)
            kl = float(controller_kl(dyn, ctrl, prior, m0, V0).sum())
            if not np.isfinite(kl):
                raise FloatingPointError
        except (InvalidArgumentError, np.linalg.LinAlgError, FloatingPointError):
            failures += 1
            ctrl, kl = None, np.inf
        if ctrl is not None and abs(kl - target) <= tol * target:
            return BracketResult(ctrl, eta, kl, float(target), tries, True, failures)
        if kl > target:
            lo = eta
            if eta >= eta_max:
                break
            eta = min(np.sqrt(lo * hi) if hi is not None else eta * 10.0, eta_max)
        else:
            hi = eta
            if best is None or eta < best[1]:
                best = (ctrl, eta, kl)
            if eta <= eta_min:  # the constraint is inactive
                return BracketResult(ctrl, eta, kl, float(target), tries, True, failures)
            eta = max(np.sqrt(lo * hi) if lo is not None else eta / 10.0, eta_min)
    if best is None:
        # No eta up to eta_max met the step (or those tries failed): with an unstable open loop
        # over a long horizon the cost-to-go grows like |A|^(2H) and outweighs any finite eta
        # (planted in the tests), and at large eta the Riccati recursion can lose positive
        # definiteness to rounding. eta -> infinity's solution is the prior itself, KL 0.
        return BracketResult(prior, float(eta_max), 0.0, float(target), tries, False, failures)
    return BracketResult(best[0], float(best[1]), float(best[2]), float(target), tries, False, failures)


def step_multiplier(predicted: float, actual: float, current: float, lo: float, hi: float) -> float:
    """The step-size rule of GPS: model the improvement as ``a KL + b KL^2`` from the predicted
    (linear) and actual improvement, move the KL step to its maximiser, ``predicted / (2
    (predicted - actual))`` times the current step (by a factor within [0.1, 5]), and keep the
    multiplier within ``[lo, hi]``."""
    new = predicted / (2.0 * max(1e-4, predicted - actual))
    if not np.isfinite(new):
        new = 1.0
    new = float(np.clip(new, 0.1, 5.0))
    return float(np.clip(current * new, lo, hi))


def linearize_policy(act_batch, X: np.ndarray, cov: np.ndarray, *, eps: float = 1e-5) -> LinearGaussianController:
    """The global policy as a time-varying linear-Gaussian controller around sampled states ``X
    (N, H, nx)``: at each step the mean over samples of its Jacobian (central differences of
    ``act_batch``, states to actions) and the affine term that matches its mean action, with the
    policy's covariance ``cov (nu, nu)`` at every step."""
    X = np.asarray(X, dtype=np.float64)
    N, H, nx = X.shape
    E = np.eye(nx) * eps
    rows = np.concatenate([X[:, :, None, :], X[:, :, None, :] + E, X[:, :, None, :] - E], axis=2)  # (N,H,2nx+1,nx)
    out = np.asarray(act_batch(rows.reshape(-1, nx)), dtype=np.float64).reshape(N, H, 2 * nx + 1, -1)
    nu = out.shape[-1]
    J = (out[:, :, 1:nx + 1] - out[:, :, nx + 1:]) / (2.0 * eps)  # (N, H, nx, nu)
    K = np.swapaxes(J.mean(axis=0), 1, 2)  # (H, nu, nx)
    k = out[:, :, 0].mean(axis=0) - np.einsum("tij,tj->ti", K, X.mean(axis=0))
    cov, _ = psd_project(np.asarray(cov, dtype=np.float64).reshape(nu, nu), 1e-10)
    return LinearGaussianController(K, k, np.broadcast_to(cov, (H, nu, nu)).copy())


# ----------------------------------------------------------------------------- systems

DYNAMICS_MODES = ("model", "fit", "fit+prior")
PRIORS = ("gmm", "model")


class GPSSystem:
    """What guided policy search runs on: a model ``dynamics`` (linearised in ``model`` mode and
    by the ``model`` prior; any recede model with ``step``), its ``cost`` (a recede cost, with
    ``stage_costs``), the horizon ``H``, and ``M`` conditions, each an initial state ``x0s[i]``.

    Samples come from ``make_env`` (the real environment: a Gymnasium env started with
    ``reset(seed=cond_seeds[i])``, or, with ``reset_state``, ``reset(options={"state": x0})``;
    its rewards give the sampled costs) or, without one, from the model itself. ``observe`` maps
    states to the policy's features; ``task`` names the task the policy is saved for. States must
    be vectors (``ndx == nx``): the controllers are linear in the state itself."""

    def __init__(self, dynamics, cost, horizon: int, x0s, *, make_env=None, cond_seeds=None,
                 reset_state: bool = False, state_of=None, observe=None, task=None,
                 action_low=None, action_high=None, cost_model=None, success=None):
        from recede.policy_learning.common import check_int

        self.dynamics, self.cost = dynamics, cost
        check_int("horizon", horizon, 1)
        self.H = int(horizon)
        self.nx, self.nu = int(dynamics.nx), int(dynamics.nu)
        if int(getattr(dynamics, "ndx", self.nx)) != self.nx:
            raise InvalidArgumentError(
                f"guided policy search needs a vector state (ndx == nx); {type(dynamics).__name__} has "
                f"nx={self.nx}, ndx={dynamics.ndx} (a free joint's quaternion)")
        if getattr(cost, "stage_costs", None) is None:
            raise InvalidArgumentError(f"guided policy search needs a cost with stage_costs (its per-step terms), "
                                       f"got {type(cost).__name__}")
        self.x0s = np.array(x0s, dtype=np.float64)
        if self.x0s.ndim != 2 or self.x0s.shape[1] != self.nx or self.x0s.shape[0] < 1:
            raise InvalidArgumentError(f"x0s must have shape (M, {self.nx}) with M >= 1, got {self.x0s.shape}")
        self.M = self.x0s.shape[0]
        self.make_env, self.reset_state = make_env, bool(reset_state)
        self.cond_seeds = list(cond_seeds) if cond_seeds is not None else list(range(self.M))
        self.state_of = state_of
        self.observe = observe or (lambda X: np.asarray(X, dtype=np.float64))
        self.task = task
        self.success = success  # success(X (H+1, nx)) -> bool: the task's criterion on a trajectory
        self.low = np.asarray(dynamics.action_low if action_low is None else action_low, dtype=np.float64)
        self.high = np.asarray(dynamics.action_high if action_high is None else action_high, dtype=np.float64)
        from recede.problem import needs_sensors

        self.sensors = needs_sensors(cost)
        self.cost_model = cost_model if cost_model is not None else dynamics  # steps a sensor cost
        if self.sensors and not getattr(self.cost_model, "nsensordata", 0):
            raise InvalidArgumentError(f"cost {cost!r} reads sensors; cost_model must be a model with them")
        if self.sensors and getattr(cost, "terminal_value", None) is not None:
            raise InvalidArgumentError("guided policy search: a sensor cost with a terminal value is not supported")

    # -- samples

    def rollouts(self, i: int, policy, n: int, rng: np.random.Generator):
        """``n`` trajectories of condition ``i`` under ``policy(t, X (n, nx), rng) -> U (n, nu)``:
        states (n, H+1, nx), the policy's actions (n, H, nu) (the environment clips them to its
        bounds), and each trajectory's cost (n,)."""
        H, nx, nu = self.H, self.nx, self.nu
        X, U = np.empty((n, H + 1, nx)), np.empty((n, H, nu))
        if self.make_env is None:
            X[:, 0] = self.x0s[i]
            for t in range(H):
                U[:, t] = policy(t, X[:, t], rng)
                X[:, t + 1] = self.dynamics.step(X[:, t], np.clip(U[:, t], self.low, self.high))
            costs = np.asarray(self.cost(X, U), dtype=np.float64)
            return X, U, costs
        costs = np.zeros(n)
        env = self.make_env()
        try:
            for j in range(n):
                self._reset(env, i)
                X[j, 0] = self.state_of(env)
                for t in range(H):
                    U[j, t] = policy(t, X[j, t][None], rng)[0]
                    _, r, term, trunc, _ = env.step(U[j, t])
                    costs[j] -= float(r)
                    X[j, t + 1] = self.state_of(env)
                    if term and t + 1 < H:  # a finished episode holds its last state
                        X[j, t + 2:] = X[j, t + 1]
                        U[j, t + 1:] = 0.0
                        break
        finally:
            env.close()
        return X, U, costs

    def _reset(self, env, i: int) -> None:
        if self.reset_state:
            env.reset(seed=int(self.cond_seeds[i]), options={"state": self.x0s[i]})
        else:
            env.reset(seed=int(self.cond_seeds[i]))

    # -- local models

    def linearize(self, Xbar: np.ndarray, Ubar: np.ndarray):
        """The model's Jacobians and offsets along ``Xbar (H+1, nx)``, ``Ubar (H, nu)`` (the
        actions clipped to the bounds, as the environment applies them): ``(A, B, c)``."""
        from recede.planners.ilqr import fd_linearize

        Uc = np.clip(Ubar, self.low, self.high)
        lin = getattr(self.dynamics, "linearize", None)
        A, B = lin(Xbar, Uc) if lin is not None else fd_linearize(self.dynamics, Xbar, Uc)
        A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
        nxt = np.asarray(self.dynamics.step(Xbar[:-1], Uc), dtype=np.float64)
        c = nxt - np.einsum("tij,tj->ti", A, Xbar[:-1]) - np.einsum("tij,tj->ti", B, Ubar)
        return A, B, c

    def cost_terms(self, X: np.ndarray, U: np.ndarray, eps: float = 1e-4,
                   bound_penalty: float = 0.0) -> tuple[QuadraticCostTerms, int]:
        """The cost's second-order expansion around each sampled trajectory, averaged over the
        samples, in absolute coordinates; each Hessian block is projected to positive semi-
        definite first (the count of those that needed it is returned). ``bound_penalty``: adds
        ``bound_penalty * |u - clip(u)|^2`` per step, so that LQR, which knows no bounds, keeps
        the controllers' actions where the environment does not clip them (a clipped action has
        no effect on the model: its B is zero there)."""
        N, H1, nx = X.shape
        H, nu = H1 - 1, self.nu
        m = nx + nu
        g = np.zeros((N, H1, m))
        Hs = np.zeros((N, H1, m, m))
        l0 = np.zeros((N, H1))
        if self.sensors:
            g[:, :H], Hs[:, :H], l0[:, :H] = self._sensor_stage_derivs(X[:, :H], U, eps)
        else:
            from recede.costs import stage_costs
            from recede.planners.ilqr import quadratize

            l0[:] = stage_costs(self.cost, X, U)
            for j in range(N):
                lx, lu, lxx, luu, lux = quadratize(self.cost, X[j], U[j], eps=eps, gauss_newton=True)
                g[j, :, :nx], g[j, :H, nx:] = lx, lu
                Hs[j, :, :nx, :nx] = lxx
                Hs[j, :H, nx:, nx:] = luu
                Hs[j, :H, nx:, :nx] = lux
                Hs[j, :H, :nx, nx:] = np.swapaxes(lux, 1, 2)
        if bound_penalty > 0:
            over = U - np.clip(U, self.low, self.high)
            l0[:, :H] += bound_penalty * np.sum(over * over, axis=-1)
            g[:, :H, nx:] += 2.0 * bound_penalty * over
            Hs[:, :H, nx:, nx:] += 2.0 * bound_penalty * (over != 0)[..., :, None] * np.eye(nu)
        # the running knots' (x, u) Hessians and the terminal knot's x Hessian, made PSD
        Hrun, f1 = psd_project(Hs[:, :H])
        Hend, f2 = psd_project(Hs[:, H, :nx, :nx])
        Y = np.concatenate([X[:, :H], U], axis=2)  # (N, H, m): the expansion points
        C = Hrun.mean(axis=0)
        cvec = (g[:, :H] - np.einsum("ntij,ntj->nti", Hrun, Y)).mean(axis=0)
        const = (l0[:, :H] - np.einsum("nti,nti->nt", g[:, :H], Y)
                 + 0.5 * np.einsum("nti,ntij,ntj->nt", Y, Hrun, Y)).mean(axis=0)
        xT, gT = X[:, H], g[:, H, :nx]
        Qf = Hend.mean(axis=0)
        qf = (gT - np.einsum("nij,nj->ni", Hend, xT)).mean(axis=0)
        cT = (l0[:, H] - np.einsum("ni,ni->n", gT, xT) + 0.5 * np.einsum("ni,nij,nj->n", xT, Hend, xT)).mean()
        terms = QuadraticCostTerms(Q=np.ascontiguousarray(C[:, :nx, :nx]), q=np.ascontiguousarray(cvec[:, :nx]),
                                   R=np.ascontiguousarray(C[:, nx:, nx:]), r=np.ascontiguousarray(cvec[:, nx:]),
                                   N=np.ascontiguousarray(C[:, nx:, :nx]), Qf=Qf, qf=qf,
                                   const=np.append(const, cT))
        return terms, f1 + f2

    def _sensor_stage_derivs(self, X: np.ndarray, U: np.ndarray, eps: float):
        """Gradient (N, H, m), Hessian (N, H, m, m) and value (N, H) of each step's cost, a cost
        that reads the simulator's sensors: central differences through one model step from
        each perturbed ``(x_t, u_t)`` (the step's reward depends on nothing else)."""
        N, H, nx = X.shape
        nu = self.nu
        m = nx + nu
        pairs = [(a, b) for a in range(m) for b in range(a + 1, m)]
        D = np.zeros((1 + 2 * m + len(pairs), m))
        D[1:m + 1] = np.eye(m) * eps
        D[m + 1:2 * m + 1] = -np.eye(m) * eps
        for r, (a, b) in enumerate(pairs):
            D[2 * m + 1 + r, a] = D[2 * m + 1 + r, b] = eps
        Z = np.concatenate([X, U], axis=2)[:, :, None, :] + D  # (N, H, per, m)
        flat = Z.reshape(-1, m)
        Uf = flat[:, None, nx:].copy()
        Xr, S = self.cost_model.rollout(flat[:, :nx].copy(), Uf, sensors=True)
        f = np.asarray(self.cost.stage_costs(Xr, Uf, S), dtype=np.float64)[:, 0].reshape(N, H, -1)
        if not np.all(np.isfinite(f)):
            raise InvalidArgumentError("the cost is not finite around the samples; cannot take its derivatives")
        f0, fp, fm, fpp = f[..., 0], f[..., 1:m + 1], f[..., m + 1:2 * m + 1], f[..., 2 * m + 1:]
        g = (fp - fm) / (2.0 * eps)
        Hs = np.empty((N, H, m, m))
        idx = np.arange(m)
        Hs[:, :, idx, idx] = (fp - 2.0 * f0[..., None] + fm) / (eps * eps)
        if pairs:
            pi, pj = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
            off = (fpp - fp[..., pi] - fp[..., pj] + f0[..., None]) / (eps * eps)
            Hs[:, :, pi, pj] = off
            Hs[:, :, pj, pi] = off
        return g, Hs, f0


# ----------------------------------------------------------------------------- the algorithm


@dataclass(frozen=True)
class GPSConfig:
    """Guided policy search's settings.

    iterations, samples (N per condition per iteration). dynamics: ``model`` (the model's
    linearisation at the samples' mean), ``fit`` (linear-Gaussian regression on the samples) or
    ``fit+prior`` (the same under a ``prior``: ``gmm``, a Gaussian mixture over every sample so
    far, or ``model``, the model's linearisation). kl_step: the KL step per time step (the
    constraint is ``kl_step * H * multiplier``, the multiplier adapted within
    ``[min_step_mult, max_step_mult]`` from predicted against actual improvement). init_std: the
    first local controllers' action noise, times the action half-range. init: their mean
    actions, ``zero`` or ``ilqr`` (recede's iLQR on the model from each condition's start, for
    ``init_iterations`` iterations, with its feedback gains: a trajectory optimiser's solution to
    start from, where the first LQR steps from zero actions find no way out, as from a swing-up's
    hanging start). bound_penalty: the C-step's cost adds this times the squared distance of each action
    from the bounds (see :meth:`GPSSystem.cost_terms`). kl_to: the C-step's KL anchor,
    ``policy`` (the linearised global policy: mirror-descent GPS) or ``previous`` (each local
    controller's own last version: the local controllers never see the policy, which is then
    their behaviour clone, trained on the same samples with the same loss; the comparison
    without the KL term to the policy). sample_from: ``local`` (the local controllers) or ``policy`` (the global policy plus
    its noise: on-policy MDGPS). Global policy: ``hidden`` (``()``: the linear class),
    ``activation``, trained each iteration (warm) for ``policy_steps`` Adam steps of
    ``batch_size`` at ``lr``. holdout: episodes from held-out starts scored every iteration
    (task systems)."""

    iterations: int = 15
    samples: int = 5
    dynamics: str = "model"
    prior: str = "gmm"
    kl_step: float = 0.3
    min_step_mult: float = 0.5
    max_step_mult: float = 3.0
    init_std: float = 0.3
    init: str = "zero"
    init_iterations: int = 100
    bound_penalty: float = 1.0
    kl_to: str = "policy"
    sample_from: str = "local"
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    policy_steps: int = 1500
    batch_size: int = 256
    lr: float = 1e-3
    holdout: int = 20
    threads: int = 1

    def __post_init__(self):
        from recede.policy_learning.common import check_float, check_hidden, check_int

        check_int("iterations", self.iterations, 1)
        check_int("samples", self.samples, 1)
        if self.dynamics not in DYNAMICS_MODES:
            raise InvalidArgumentError(f"dynamics must be one of {list(DYNAMICS_MODES)}, got {self.dynamics!r}")
        if self.prior not in PRIORS:
            raise InvalidArgumentError(f"prior must be one of {list(PRIORS)}, got {self.prior!r}")
        check_float("kl_step", self.kl_step, 0.0, np.inf, lo_open=True, hi_open=True)
        check_float("min_step_mult", self.min_step_mult, 0.0, np.inf, lo_open=True, hi_open=True)
        check_float("max_step_mult", self.max_step_mult, self.min_step_mult, np.inf, hi_open=True)
        check_float("init_std", self.init_std, 0.0, np.inf, lo_open=True, hi_open=True)
        if self.init not in ("zero", "ilqr"):
            raise InvalidArgumentError(f"init must be 'zero' or 'ilqr', got {self.init!r}")
        check_int("init_iterations", self.init_iterations, 1)
        check_float("bound_penalty", self.bound_penalty, 0.0, np.inf, hi_open=True)
        if self.kl_to not in ("policy", "previous"):
            raise InvalidArgumentError(f"kl_to must be 'policy' or 'previous', got {self.kl_to!r}")
        if self.sample_from not in ("local", "policy"):
            raise InvalidArgumentError(f"sample_from must be 'local' or 'policy', got {self.sample_from!r}")
        object.__setattr__(self, "hidden", check_hidden(self.hidden))
        check_int("policy_steps", self.policy_steps, 1)
        check_int("batch_size", self.batch_size, 1)
        check_float("lr", self.lr, 0.0, 1.0, lo_open=True)
        check_int("holdout", self.holdout, 0)
        check_int("threads", self.threads, 1)


@dataclass
class IterationLog:
    """One GPS iteration: per condition the local controllers' mean sampled cost, the global
    policy's cost (deterministic, from the condition's start), the KL of the new controller to
    the linearised global policy, the KL target (step) and eta; totals; the global policy's
    success rate from the conditions' own starts and from held-out starts, and its held-out
    mean cost (NaN where not scored); the regularisations applied (PSD
    projections of cost Hessians and dynamics covariances, failed C-step tries, conditions whose
    C-step kept the prior because no eta met the step); the sample count so far and the wall
    time."""

    iteration: int
    local_cost: list[float]
    policy_cost: list[float]
    kl: list[float]
    kl_target: list[float]
    eta: list[float]
    step_mult: list[float]
    condition_success: float
    holdout_success: float
    holdout_cost: float
    regularised: int
    c_step_failures: int
    kept_prior: int
    samples: int
    wall_s: float

    def line(self) -> str:
        mean = lambda a: float(np.mean(a))  # noqa: E731
        s = (f"iteration {self.iteration:3d}: local cost {mean(self.local_cost):10.4g}  policy cost "
             f"{mean(self.policy_cost):10.4g}  KL {mean(self.kl):7.3g} / {mean(self.kl_target):7.3g}  "
             f"eta {np.exp(np.mean(np.log(self.eta))):8.3g}  samples {self.samples}")
        if np.isfinite(self.condition_success):
            s += f"  success: conditions {self.condition_success:.0%}"
        if np.isfinite(self.holdout_success):
            s += f", held-out {self.holdout_success:.0%}"
        if self.regularised or self.c_step_failures or self.kept_prior:
            s += (f"  (regularised {self.regularised}, failed C-step tries {self.c_step_failures}, "
                  f"kept the prior {self.kept_prior})")
        return s + f"  [{self.wall_s:.0f} s]"


@dataclass
class GPSResult:
    """The global policy (acting on model states), the per-iteration log, the last local
    controllers (one per condition) and the samples used (env steps of training samples)."""

    policy: object
    log: list[IterationLog]
    controllers: list[LinearGaussianController]
    samples: int


def _initial_controller(system: GPSSystem, std: float) -> LinearGaussianController:
    H, nx, nu = system.H, system.nx, system.nu
    half = np.where(np.isfinite(system.high - system.low), 0.5 * (system.high - system.low), 1.0)
    S = np.broadcast_to(np.diag((std * half) ** 2), (H, nu, nu)).copy()
    centre = np.where(np.isfinite(system.high + system.low), 0.5 * (system.high + system.low), 0.0)
    return LinearGaussianController(np.zeros((H, nu, nx)), np.broadcast_to(centre, (H, nu)).copy(), S)


def _ilqr_controller(system: GPSSystem, i: int, noise: LinearGaussianController,
                     iterations: int) -> LinearGaussianController:
    """iLQR's plan from condition ``i``'s start as a linear-Gaussian controller: ``u = actions_t +
    K_t (x - states_t)`` with ``noise``'s covariance."""
    from recede.planners.ilqr import ILQR
    from recede.problem import Problem

    try:
        planner = ILQR(Problem(system.dynamics, system.cost, system.H, system.low, system.high),
                       iterations=iterations)
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"init 'ilqr': {e}") from None
    plan = planner.plan(system.x0s[i])
    K = np.zeros((system.H, system.nu, system.nx)) if plan.K is None else np.array(plan.K)
    k = np.asarray(plan.actions) - np.einsum("tij,tj->ti", K, np.asarray(plan.states)[:-1])
    return LinearGaussianController(K, k, noise.S)


def _new_policy_net(system: GPSSystem, config: GPSConfig, seed: int):
    from recede.policies import DeterministicPolicyNet, LinearPolicyNet

    nobs = int(np.asarray(system.observe(system.x0s[:1])).shape[-1])
    # the linear class is fitted in closed form, in raw observation units
    kw = dict(hidden=config.hidden, activation=config.activation, seeds=[seed], normalize=bool(config.hidden))
    cls = LinearPolicyNet if not config.hidden else DeterministicPolicyNet
    return cls(1, nobs, system.nu, system.low, system.high, **kw)


def _s_step(net, opt, obs: np.ndarray, mu: np.ndarray, prec: np.ndarray, config: GPSConfig,
            gen) -> float:
    """Train ``net`` (warm) on features ``obs (n, nobs)`` to the local controllers' mean
    actions ``mu (n, nu)``, weighted by their precisions ``prec (n, nu, nu)``. Returns the last
    epoch's mean loss."""
    import torch

    from recede.policies import LinearPolicyNet

    prec = prec / np.mean(np.trace(prec, axis1=1, axis2=2) / prec.shape[1])  # order-1 losses
    if isinstance(net, LinearPolicyNet) and not net.normalize:
        return _s_step_linear(net, obs, mu, prec)
    o = torch.from_numpy(obs.astype(np.float32))[None]
    a = torch.from_numpy(mu.astype(np.float32))[None]
    P = torch.from_numpy(prec.astype(np.float32))[None]
    net.norm.update(o)
    lin = isinstance(net, LinearPolicyNet)
    n = o.shape[1]
    total, count = 0.0, 0
    for step in range(config.policy_steps):
        idx = torch.randint(n, (min(config.batch_size, n),), generator=gen)
        ob = o[:, idx]
        pred = net.linear(ob) if lin else net(ob)
        d = pred - a[:, idx]
        loss = torch.einsum("kbi,kbij,kbj->kb", d, P[:, idx], d).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= config.policy_steps - max(1, n // config.batch_size):
            total += loss.item()
            count += 1
    return total / max(count, 1)


def _s_step_linear(net, obs: np.ndarray, mu: np.ndarray, prec: np.ndarray) -> float:
    """The S-step of the linear class in closed form: ``W, b`` minimising ``sum_n (W o_n + b -
    mu_n)' P_n (W o_n + b - mu_n)`` (precision-weighted least squares, a tiny ridge)."""
    import torch

    n, nu = mu.shape
    Z = np.concatenate([obs.astype(np.float64), np.ones((n, 1))], axis=1)  # (n, p)
    p = Z.shape[1]
    G = np.einsum("nij,nk,nl->ikjl", prec, Z, Z).reshape(nu * p, nu * p)
    rhs = np.einsum("nij,nj,nk->ik", prec, mu, Z).reshape(-1)
    G += 1e-9 * np.trace(G) / len(G) * np.eye(len(G))
    theta = np.linalg.solve(G, rhs).reshape(nu, p)  # [W b]
    with torch.no_grad():
        net.mlp.weights[0][0].copy_(torch.from_numpy(theta[:, :-1].T.copy()))
        net.mlp.biases[0][0, 0].copy_(torch.from_numpy(theta[:, -1].copy()))
    r = Z @ theta.T - mu
    return float(np.einsum("ni,nij,nj->n", r, prec, r).mean())


_STATE = "gps_state.pkl"


def gps(system: GPSSystem, config: GPSConfig = GPSConfig(), *, seed: int = 0, out: str | None = None,
        resume: bool = False, heldout=None, on_iteration=None) -> GPSResult:
    """Mirror-descent guided policy search (Montgomery & Levine 2016) on ``system``.

    Every iteration: sample ``config.samples`` trajectories per condition (local controllers or
    the global policy); fit or linearise the dynamics; linearise the global policy around the
    samples; adapt each condition's KL step from the last iteration's predicted and actual
    improvement; C-step (:func:`bracket_eta`: the controller minimising the cost within the KL
    step of the linearised global policy); S-step (train the global policy on the new
    controllers' means at the sampled states, weighted by their precisions). The first
    iteration trains the policy on the initial controllers before linearising it.

    out: write ``policy/`` (the global policy, every iteration), ``gps.csv`` (the log) and the
    resumable state there, each atomically; ``resume``: continue from that state. heldout:
    ``callable(policy) -> (success rate, mean cost)`` scored each iteration.
    on_iteration(log, policy): after each iteration (progress)."""
    import os
    import pickle
    import time

    import torch

    from recede.models.ensemble import torch_threads
    from recede.policies import NetworkPolicy
    from recede.policy_learning.common import check_int

    if not isinstance(system, GPSSystem):
        raise InvalidArgumentError(f"system must be a GPSSystem, got {type(system).__name__}")
    if not isinstance(config, GPSConfig):
        raise InvalidArgumentError(f"config must be a GPSConfig, got {type(config).__name__}")
    check_int("seed", seed, 0)
    if config.dynamics == "model" or (config.dynamics == "fit+prior" and config.prior == "model"):
        if getattr(system.dynamics, "linearize", None) is None and getattr(system.dynamics, "step", None) is None:
            raise InvalidArgumentError(f"dynamics {config.dynamics!r} needs a model to linearise; "
                                       f"{type(system.dynamics).__name__} has neither linearize nor step")
    M, H, nx, nu = system.M, system.H, system.nx, system.nu
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 21]))
    gen = torch.Generator()
    gen.manual_seed(_seed_of((seed, 21, 1)))
    net = _new_policy_net(system, config, seed)
    params = [p for name, p in net.named_parameters() if not name.startswith("norm.")]
    opt = torch.optim.Adam(params, lr=config.lr)
    policy = NetworkPolicy(net, system.task, observe=system.observe, meta={"algo": "gps", "seed": int(seed)})
    ctrls = [_initial_controller(system, config.init_std)] * M
    if config.init == "ilqr" and not resume:
        ctrls = [_ilqr_controller(system, i, ctrls[i], config.init_iterations) for i in range(M)]
    step_mult = np.ones(M)
    etas = np.ones(M)
    prev: list | None = None
    pi_cov = np.mean([c.S.mean(axis=0) for c in ctrls], axis=0)
    buffer: list[np.ndarray] = []  # [x, u, x'] points for the GMM prior
    log: list[IterationLog] = []
    samples, start, wall0 = 0, 0, 0.0
    state_path = os.path.join(out, _STATE) if out else None
    if resume:
        if not state_path or not os.path.exists(state_path):
            raise InvalidArgumentError(f"resume: no GPS state in {out!r}")
        with open(state_path, "rb") as f:
            st = pickle.load(f)
        if dataclasses.replace(st["config"], iterations=config.iterations) != config or st["seed"] != seed \
                or st["M"] != M:
            raise InvalidArgumentError(f"resume: the state in {out!r} is of another run (config, seed or conditions)")
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["opt"])
        rng.bit_generator.state = st["rng"]
        gen.set_state(st["gen"])
        ctrls, step_mult, etas, prev, pi_cov = st["ctrls"], st["step_mult"], st["etas"], st["prev"], st["pi_cov"]
        buffer, log, samples, start, wall0 = st["buffer"], st["log"], st["samples"], st["iteration"], st["wall"]
    t0 = time.perf_counter() - wall0
    with torch_threads(config.threads):
        for it in range(start, config.iterations):
            regularised = failures = kept = 0
            # 1. samples
            data = []
            for i in range(M):
                if config.sample_from == "policy" and it > 0:
                    L = np.linalg.cholesky(pi_cov)

                    def act(t, Xb, r):
                        return policy.act_batch(Xb) + r.standard_normal((len(Xb), nu)) @ L.T
                else:
                    c = ctrls[i]
                    Ls = np.linalg.cholesky(c.S)

                    def act(t, Xb, r, c=c, Ls=Ls):
                        return Xb @ c.K[t].T + c.k[t] + r.standard_normal((len(Xb), nu)) @ Ls[t].T
                data.append(system.rollouts(i, act, config.samples, rng))
                samples += config.samples * H
            # 2. dynamics and cost
            gmm = None
            if config.dynamics == "fit+prior" and config.prior == "gmm":
                for X, U, _ in data:
                    buffer.append(np.concatenate([X[:, :-1], U, X[:, 1:]], axis=2).reshape(-1, 2 * nx + nu))
                buffer = buffer[-3 * M:]  # the last three iterations' samples
                gmm = GMMPrior()
                gmm.fit(np.concatenate(buffer), rng)
            dyns, costs, starts = [], [], []
            for i, (X, U, _) in enumerate(data):
                if config.dynamics == "fit":
                    dyn, n = fit_dynamics(X, U)
                elif config.dynamics == "fit+prior":
                    if gmm is not None:
                        prior = lambda t, pts, g=gmm: g.eval(pts)  # noqa: E731
                    else:
                        prior = model_prior(*system.linearize(X.mean(axis=0), U.mean(axis=0)))
                    dyn, n = fit_dynamics(X, U, prior=prior)
                else:
                    A, B, c = system.linearize(X.mean(axis=0), U.mean(axis=0))
                    res = X[:, 1:] - (np.einsum("tij,ntj->nti", A, X[:, :-1]) + np.einsum("tij,ntj->nti", B, U) + c)
                    W = np.einsum("nti,ntj->tij", res, res) / max(len(X) - 1, 1) + 1e-8 * np.eye(nx)
                    W, n = psd_project(W)
                    dyn = LinearGaussianDynamics(A, B, c, W)
                regularised += n
                terms, n = system.cost_terms(X, U, bound_penalty=config.bound_penalty)
                regularised += n
                m0 = X[:, 0].mean(axis=0)
                V0 = np.cov(X[:, 0].T).reshape(nx, nx) if len(X) > 1 else np.zeros((nx, nx))
                V0 = psd_project(V0 + 1e-8 * np.eye(nx))[0]
                dyns.append(dyn)
                costs.append(terms)
                starts.append((m0, V0))
            # the first iteration: the policy catches up with the initial controllers
            if it == 0:
                pi_cov = _train_policy(system, net, opt, data, ctrls, config, gen)
            # 3. linearise the global policy
            if config.kl_to == "policy":
                pis = [linearize_policy(policy.act_batch, X[:, :H], pi_cov) for X, _, _ in data]
            else:  # uncoupled: a trust region around each controller's own last version
                pis = list(ctrls)
            # step adjustment from the last iteration's predicted and actual improvement
            if prev is not None:
                for i in range(M):
                    p_pi, p_dyn, p_cost, p_start, p_new = prev[i]
                    before = expected_cost(p_dyn, p_cost, p_pi, *p_start).sum()
                    predicted = before - expected_cost(p_dyn, p_cost, p_new, *p_start).sum()
                    actual = before - expected_cost(dyns[i], costs[i], pis[i], *starts[i]).sum()
                    step_mult[i] = step_multiplier(predicted, actual, step_mult[i], config.min_step_mult,
                                                   config.max_step_mult)
            # 4. C-step
            new, kls, targets = [], [], []
            for i in range(M):
                target = config.kl_step * H * step_mult[i]
                br = bracket_eta(dyns[i], costs[i], pis[i], *starts[i], target, eta0=etas[i])
                etas[i] = br.eta
                failures += br.failures
                kept += br.controller is pis[i]
                new.append(br.controller)
                kls.append(br.kl)
                targets.append(target)
            prev = [(pis[i], dyns[i], costs[i], starts[i], new[i]) for i in range(M)]
            ctrls = new
            # 5. S-step
            pi_cov = _train_policy(system, net, opt, data, ctrls, config, gen)
            # score
            det = lambda t, Xb, r: policy.act_batch(Xb)  # noqa: E731
            pol_runs = [system.rollouts(i, det, 1, rng) for i in range(M)]
            pol_cost = [float(r[2][0]) for r in pol_runs]
            cond_success = (float(np.mean([bool(system.success(r[0][0])) for r in pol_runs]))
                            if system.success is not None else np.nan)
            hs, hc = heldout(policy) if heldout is not None else (np.nan, np.nan)
            entry = IterationLog(it, [float(d[2].mean()) for d in data], pol_cost, kls, targets,
                                 etas.tolist(), step_mult.tolist(), cond_success, float(hs), float(hc), int(regularised),
                                 int(failures), int(kept), int(samples), time.perf_counter() - t0)
            log.append(entry)
            if out:
                _write_outputs(out, policy, net, log, system, {
                    "config": config, "seed": seed, "M": M, "net": net.state_dict(), "opt": opt.state_dict(),
                    "rng": rng.bit_generator.state, "gen": gen.get_state(), "ctrls": ctrls,
                    "step_mult": step_mult, "etas": etas, "prev": prev, "pi_cov": pi_cov, "buffer": buffer,
                    "log": log, "samples": samples, "iteration": it + 1, "wall": entry.wall_s})
            if on_iteration is not None:
                on_iteration(entry, policy)
    return GPSResult(policy, log, list(ctrls), int(samples))


def _train_policy(system, net, opt, data, ctrls, config, gen) -> np.ndarray:
    """S-step on every condition's samples; returns the global policy's covariance, the inverse
    of the mean precision of the local controllers."""
    obs, mu, prec = [], [], []
    for (X, U, _), c in zip(data, ctrls):
        Xs = X[:, :system.H]  # (N, H, nx)
        m = np.einsum("tij,ntj->nti", c.K, Xs) + c.k
        P = np.linalg.inv(c.S)
        obs.append(np.asarray(system.observe(Xs.reshape(-1, system.nx))))
        mu.append(np.clip(m, system.low, system.high).reshape(-1, system.nu))
        prec.append(np.broadcast_to(P, (len(X),) + P.shape).reshape(-1, system.nu, system.nu))
    prec = np.concatenate(prec)
    _s_step(net, opt, np.concatenate(obs), np.concatenate(mu), prec, config, gen)
    return np.linalg.inv(prec.mean(axis=0))


def _write_outputs(out: str, policy, net, log, system, state) -> None:
    import os
    import pickle

    from recede._io import atomic_file
    from recede.policies import save_policy

    os.makedirs(out, exist_ok=True)
    save_policy(net, os.path.join(out, "policy"), task=system.task, meta=policy.meta)
    write_log_csv(os.path.join(out, "gps.csv"), log)
    with atomic_file(os.path.join(out, _STATE), "out") as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(state, f)


CSV_FIELDS = ("iteration", "condition", "local_cost", "policy_cost", "kl", "kl_target", "eta", "step_mult",
              "condition_success", "holdout_success", "holdout_cost", "regularised", "c_step_failures", "kept_prior", "samples",
              "wall_s")


def write_log_csv(path: str, log) -> None:
    """One row per iteration and condition (the totals repeat on each row of an iteration)."""
    import csv
    import io

    from recede._io import atomic_file

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_FIELDS)
    for e in log:
        for i in range(len(e.local_cost)):
            w.writerow([e.iteration, i, f"{e.local_cost[i]:.6g}", f"{e.policy_cost[i]:.6g}", f"{e.kl[i]:.6g}",
                        f"{e.kl_target[i]:.6g}", f"{e.eta[i]:.6g}", f"{e.step_mult[i]:.6g}",
                        f"{e.condition_success:.6g}", f"{e.holdout_success:.6g}", f"{e.holdout_cost:.6g}", e.regularised, e.c_step_failures,
                        e.kept_prior, e.samples, f"{e.wall_s:.3f}"])
    with atomic_file(path, "path") as tmp:
        with open(tmp, "w", newline="") as f:
            f.write(buf.getvalue())


# ----------------------------------------------------------------------------- tasks


def task_system(task, conditions: int, *, seed: int = 0, horizon: int | None = None, spread=None,
                model=None) -> GPSSystem:
    """A :class:`GPSSystem` of a recede task: ``conditions`` starts drawn from the task's own
    reset distribution (a Gymnasium robot: ``env.reset(seed=...)``, so Reacher's conditions are
    its random targets, with the arm's reset noise) or, for an analytic task, its initial state
    plus ``spread`` (default: the task's own ``initial_spread``) times uniform noise in [-1, 1].
    Samples run in the task's environment for ``horizon`` steps (default: the episode's).
    model: the model to linearise in place of the task's (e.g. a learned ensemble)."""
    from recede.envs import get_task
    from recede.policy_learning.common import check_int

    task = get_task(task)
    check_int("conditions", conditions, 1)
    check_int("seed", seed, 0)
    true_model = task.dynamics()
    cost = task.cost(true_model)
    H = task.episode_steps if horizon is None else horizon
    check_int("horizon", H, 1)
    seeds = [_seed_of((seed, 31, i)) % 2 ** 31 for i in range(conditions)]
    analytic = hasattr(task, "initial_state") and getattr(task, "asset", None) is None
    if analytic:
        x0 = np.asarray(task.initial_state, dtype=np.float64)
        sp = np.asarray(task.initial_spread if spread is None else spread, dtype=np.float64).reshape(-1)
        if sp.shape != x0.shape or not np.all(np.isfinite(sp)) or np.any(sp < 0):
            raise InvalidArgumentError(f"spread must be {x0.size} finite numbers >= 0 (one per state dimension "
                                       f"of {task.name!r}), got {sp.tolist()}")
        r = np.random.default_rng(np.random.SeedSequence([int(seed), 31]))
        x0s = x0 + sp * r.uniform(-1.0, 1.0, size=(conditions, x0.size))
    else:
        if spread is not None:
            raise InvalidArgumentError(f"spread applies to analytic tasks; {task.name!r} starts from its "
                                       f"environment's resets")
        x0s = []
        env = task.make_env()
        try:
            for s in seeds:
                env.reset(seed=int(s))
                x0s.append(task.state_of(env))
        finally:
            env.close()
    return GPSSystem(model if model is not None else true_model, cost, H, x0s, make_env=task.make_env,
                     cond_seeds=seeds, reset_state=analytic, state_of=task.state_of, observe=task.observation,
                     task=task, cost_model=true_model, success=_success_rule(task, true_model, H))


def _success_rule(task, model, H: int):
    """The task's success criterion on one trajectory ``X (H+1, nx)``, or None where it has none
    (or it needs the whole episode and the horizon is shorter)."""
    if hasattr(task, "success") and isinstance(getattr(task, "success"), object) and callable(task.success) \
            and not hasattr(task, "success_rule"):
        if H != task.episode_steps:
            return None
        dt = float(model.dt)
        return lambda X: task.success(np.asarray(X), dt)
    if getattr(task, "success_rule", None) == "reach":
        tol = float(task.reach_tolerance)

        def reach(X):
            S = model.sensors(np.asarray(X)[-1])
            return bool(np.linalg.norm(model.sensor(S, "fingertip") - model.sensor(S, "target")) <= tol)

        return reach
    return None


def heldout_evaluator(task, episodes: int, *, seed: int = 0):
    """``evaluate(policy) -> (success rate, mean cost)`` over ``episodes`` full episodes of the
    task from held-out resets (seeds apart from the conditions'), judged by the task's success
    criterion (an episode it cannot judge counts as a failure)."""
    from recede.envs import get_task

    task = get_task(task)
    seeds = [_seed_of((seed, 77, e)) % 2 ** 31 for e in range(episodes)]

    def evaluate(policy):
        wins, costs = 0, []
        env = task.make_env()
        try:
            for s in seeds:
                env.reset(seed=int(s))
                ret, n, term = 0.0, 0, False
                while n < task.episode_steps:
                    _, r, term, trunc, _ = env.step(policy.act(task.state_of(env)))
                    ret += float(r)
                    n += 1
                    if term or trunc:
                        break
                wins += bool(task.judge(env, bool(term), n))
                costs.append(-ret)
        finally:
            env.close()
        return wins / max(len(seeds), 1), float(np.mean(costs)) if costs else float("nan")

    evaluate.seeds = seeds
    return evaluate
