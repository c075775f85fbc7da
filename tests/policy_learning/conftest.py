"""A linear-quadratic task for the learners' oracles: ``x' = A x + B u + w``, ``w ~ N(0, W)``,
reward ``-(x'Qx + u'Ru) / 2``. Its answers are known: the LQR gain and cost from the discrete
Riccati equation, and the Q function of any fixed linear-Gaussian policy from a Lyapunov equation
(:func:`linear_policy_q`)."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest
import scipy.linalg


class _Dyn:
    def __init__(self, A, B, low, high):
        self.A, self.B = A, B
        self.nx, self.nu = A.shape[0], B.shape[1]
        self.dt = 1.0
        self.action_low, self.action_high = np.full(self.nu, low), np.full(self.nu, high)


class LQEnv(gym.Env):
    """The LQ system as a Gymnasium env; episodes start uniformly in ``[-x0, x0]^nx``."""

    metadata = {"render_modes": []}

    def __init__(self, task):
        self.task = task
        n, m = task.A.shape[0], task.B.shape[1]
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(n,), dtype=np.float64)
        self.action_space = gym.spaces.Box(-task.bound, task.bound, shape=(m,), dtype=np.float64)
        self.state = np.zeros(n)
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.np_random.uniform(-self.task.x0, self.task.x0, size=self.state.shape)
        self._t = 0
        return self.state.copy(), {}

    def step(self, action):
        t = self.task
        u = np.clip(np.asarray(action, dtype=np.float64), -t.bound, t.bound)
        x = self.state
        r = -0.5 * float(x @ t.Q @ x + u @ t.R @ u)
        w = self.np_random.multivariate_normal(np.zeros(len(x)), t.W) if t.W.any() else 0.0
        self.state = t.A @ x + t.B @ u + w
        self._t += 1
        return self.state.copy(), r, False, self._t >= t.episode_steps, {}


@dataclass(frozen=True, eq=False)
class LQTask:
    """Duck-types the parts of a recede task the learners use."""

    A: np.ndarray
    B: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    W: np.ndarray
    x0: float = 1.0
    bound: float = 10.0
    episode_steps: int = 50
    name: str = "lq-test"

    def dynamics(self):
        return _Dyn(self.A, self.B, -self.bound, self.bound)

    def observation(self, X):
        return np.asarray(X, dtype=np.float64)

    def make_env(self, render_mode=None, **kw):
        return LQEnv(self)

    @staticmethod
    def state_of(env):
        return np.array(env.unwrapped.state, dtype=np.float64)

    def judge(self, env, terminated, steps):
        return None

    def lqr(self, gamma: float = 1.0):
        """Gain ``K`` (``u = K x``) and Riccati ``P`` (cost-to-go ``x'Px/2``) of the discounted
        problem (``gamma``: the discount, folded into A and B)."""
        g = np.sqrt(gamma)
        P = scipy.linalg.solve_discrete_are(g * self.A, g * self.B, self.Q, self.R)
        K = -np.linalg.solve(self.R + gamma * self.B.T @ P @ self.B, gamma * self.B.T @ P @ self.A)
        return K, P


def linear_policy_q(task: LQTask, K: np.ndarray, sigma: float, gamma: float):
    """The Q function of the fixed policy ``u = K x + sigma * eps`` (discounted, reward as the
    env's): ``Q(x, u) = r(x, u) + gamma E[V(x')]``, ``V(x) = -(x'Px/2 + c)``."""
    A, B, Q, R, W = task.A, task.B, task.Q, task.R, task.W
    Acl = A + B @ K
    P = scipy.linalg.solve_discrete_lyapunov(np.sqrt(gamma) * Acl.T, Q + K.T @ R @ K)
    Su = sigma ** 2 * np.eye(B.shape[1])
    c = 0.5 * (np.trace(R @ Su) + gamma * np.trace(P @ (B @ Su @ B.T + W))) / (1.0 - gamma)

    def q(X, U):
        Xn = X @ A.T + U @ B.T
        r = -0.5 * (np.einsum("bi,ij,bj->b", X, Q, X) + np.einsum("bi,ij,bj->b", U, R, U))
        ev = -(0.5 * np.einsum("bi,ij,bj->b", Xn, P, Xn) + 0.5 * np.trace(P @ W) + c)
        return r + gamma * ev

    return q


@pytest.fixture
def lq_task():
    A = np.array([[1.0, 0.1], [0.0, 1.0]])
    B = np.array([[0.005], [0.1]])
    return LQTask(A=A, B=B, Q=np.diag([1.0, 0.1]), R=np.array([[0.1]]), W=np.diag([1e-4, 1e-4]))
