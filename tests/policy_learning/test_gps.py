"""Guided policy search's linear-Gaussian core against Monte Carlo."""

import numpy as np
import pytest

from recede.errors import InvalidArgumentError
from recede.policy_learning.gps import (
    LinearGaussianController, LinearGaussianDynamics, controller_kl, state_marginals,
)

H, NX, NU = 5, 3, 2


def _system(rng):
    A = np.eye(NX) + 0.1 * rng.normal(size=(H, NX, NX))
    B = rng.normal(size=(H, NX, NU)) * 0.5
    W = np.stack([np.diag(rng.uniform(0.01, 0.05, NX))] * H)
    return LinearGaussianDynamics(A, B, rng.normal(size=(H, NX)) * 0.1, W)


def _controller(rng):
    S = []
    for _ in range(H):
        M = rng.normal(size=(NU, NU)) * 0.3
        S.append(M @ M.T + 0.2 * np.eye(NU))
    return LinearGaussianController(rng.normal(size=(H, NU, NX)) * 0.3, rng.normal(size=(H, NU)) * 0.2, np.array(S))


def test_state_marginals_match_samples():
    rng = np.random.default_rng(0)
    dyn, p = _system(rng), _controller(rng)
    m0, V0 = np.array([0.5, -0.2, 0.1]), np.eye(NX) * 0.1
    m, V = state_marginals(dyn, p, m0, V0)
    X, _ = p.sample(dyn, m0, V0, 200_000, np.random.default_rng(1))
    np.testing.assert_allclose(X.mean(axis=0), m, atol=0.01)
    np.testing.assert_allclose(np.einsum("nti,ntj->tij", X - m, X - m) / len(X), V, atol=0.01)


def test_controller_kl_agrees_with_monte_carlo():
    rng = np.random.default_rng(2)
    dyn, p, q = _system(rng), _controller(rng), _controller(rng)
    m0, V0 = np.array([0.3, 0.1, -0.4]), np.eye(NX) * 0.05
    kl = controller_kl(dyn, p, q, m0, V0).sum()
    X, U = p.sample(dyn, m0, V0, 200_000, np.random.default_rng(3))
    ratio = p.log_prob(X, U) - q.log_prob(X, U)  # the dynamics' densities cancel
    se = ratio.std() / np.sqrt(len(ratio))
    assert abs(ratio.mean() - kl) < 4 * se
    assert kl > 0
    assert controller_kl(dyn, p, p, m0, V0).sum() == pytest.approx(0.0, abs=1e-12)


def test_linear_gaussian_refusals():
    rng = np.random.default_rng(4)
    dyn = _system(rng)
    with pytest.raises(InvalidArgumentError, match="positive definite"):
        LinearGaussianController(np.zeros((H, NU, NX)), np.zeros((H, NU)), np.zeros((H, NU, NU)))
    with pytest.raises(InvalidArgumentError, match="symmetric"):
        LinearGaussianController(np.zeros((H, NU, NX)), np.zeros((H, NU)), np.stack([[[1.0, 0.5], [0.0, 1.0]]] * H))
    with pytest.raises(InvalidArgumentError, match="positive semi-definite"):
        LinearGaussianDynamics(dyn.A, dyn.B, dyn.c, -dyn.W)
    wrong = LinearGaussianController(np.zeros((H, NU, NX + 1)), np.zeros((H, NU)), np.stack([np.eye(NU)] * H))
    with pytest.raises(InvalidArgumentError, match="match the dynamics"):
        state_marginals(dyn, wrong, np.zeros(NX), np.eye(NX))


def _cost(rng):
    from recede.policy_learning.gps import QuadraticCostTerms

    Q = np.stack([np.diag(rng.uniform(0.5, 2.0, NX))] * H)
    R = np.stack([np.diag(rng.uniform(0.1, 0.5, NU))] * H)
    return QuadraticCostTerms(Q, rng.normal(size=(H, NX)) * 0.1, R, rng.normal(size=(H, NU)) * 0.1,
                              np.zeros((H, NU, NX)), np.eye(NX) * 2.0, np.zeros(NX))


def test_c_step_limits_plain_tvlqr_and_the_prior():
    from recede.planners.lqr import tvlqr
    from recede.policy_learning.gps import c_step

    rng = np.random.default_rng(6)
    dyn, prior, cost = _system(rng), _controller(rng), _cost(rng)
    p0, _ = c_step(dyn, cost, prior, 0.0)
    ref = tvlqr(dyn.A, dyn.B, cost.Q, cost.R, cost.Qf, c=dyn.c, q=cost.q, r=cost.r, qf=cost.qf)
    np.testing.assert_allclose(p0.K, ref.K, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(p0.k, ref.k, rtol=1e-12, atol=1e-12)
    big, _ = c_step(dyn, cost, prior, 1e9)
    np.testing.assert_allclose(big.K, prior.K, atol=1e-6)
    np.testing.assert_allclose(big.k, prior.k, atol=1e-6)
    np.testing.assert_allclose(big.S, prior.S, atol=1e-6)
    # in between, the KL to the prior falls as eta grows
    m0, V0 = np.zeros(NX), np.eye(NX) * 0.1
    kls = [controller_kl(dyn, c_step(dyn, cost, prior, e)[0], prior, m0, V0).sum() for e in (0.1, 1.0, 10.0)]
    assert kls[0] > kls[1] > kls[2] > 0
    with pytest.raises(InvalidArgumentError, match="eta must be"):
        c_step(dyn, cost, prior, -1.0)
