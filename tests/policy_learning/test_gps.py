"""Guided policy search against oracles: Monte Carlo, LQR, known linear systems."""

import dataclasses

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


# ----------------------------------------------------------------------------- the GPS loop's parts


def test_expected_cost_agrees_with_monte_carlo():
    from recede.policy_learning.gps import expected_cost

    rng = np.random.default_rng(7)
    dyn, p, cost = _system(rng), _controller(rng), _cost(rng)
    cost = type(cost)(cost.Q, cost.q, cost.R, cost.r, 0.1 * rng.normal(size=(H, NU, NX)), cost.Qf, cost.qf,
                      rng.normal(size=H + 1))
    m0, V0 = np.array([0.2, -0.1, 0.3]), np.eye(NX) * 0.05
    X, U = p.sample(dyn, m0, V0, 200_000, np.random.default_rng(8))
    mc = 0.0
    for t in range(H):
        x, u = X[:, t], U[:, t]
        mc = mc + (0.5 * np.einsum("ni,ij,nj->n", x, cost.Q[t], x) + x @ cost.q[t]
                   + 0.5 * np.einsum("ni,ij,nj->n", u, cost.R[t], u) + u @ cost.r[t]
                   + np.einsum("ni,ij,nj->n", u, cost.N[t], x) + cost.const[t])
    x = X[:, H]
    mc = mc + 0.5 * np.einsum("ni,ij,nj->n", x, cost.Qf, x) + x @ cost.qf + cost.const[H]
    est = expected_cost(dyn, cost, p, m0, V0).sum()
    assert abs(mc.mean() - est) < 4 * mc.std() / np.sqrt(len(mc))


def test_bracket_eta_meets_the_kl_target():
    from recede.policy_learning.gps import bracket_eta

    rng = np.random.default_rng(9)
    dyn, prior, cost = _system(rng), _controller(rng), _cost(rng)
    m0, V0 = np.zeros(NX), np.eye(NX) * 0.1
    free = controller_kl(dyn, c_step_free(dyn, cost, prior), prior, m0, V0).sum()
    for target in (0.05 * free, 0.3 * free):
        br = bracket_eta(dyn, cost, prior, m0, V0, target, eta0=1.0, tol=0.05)
        assert br.converged
        kl = controller_kl(dyn, br.controller, prior, m0, V0).sum()
        assert kl == pytest.approx(br.kl, rel=1e-12)
        assert abs(kl - target) <= 0.05 * target
    # a target above what the cost alone wants: the constraint is inactive (smallest eta)
    br = bracket_eta(dyn, cost, prior, m0, V0, 1e6, eta_min=1e-6)
    assert br.converged and br.eta == pytest.approx(1e-6) and br.kl < 1e6
    with pytest.raises(InvalidArgumentError, match="target"):
        bracket_eta(dyn, cost, prior, m0, V0, 0.0)


def c_step_free(dyn, cost, prior):
    from recede.policy_learning.gps import c_step

    return c_step(dyn, cost, prior, 1e-6)[0]


def test_bracket_eta_survives_an_indefinite_cost():
    """A planted negative-definite action cost: small etas leave R + B'PB indefinite (the
    crash of cbfinn/gps); the search counts those tries and climbs to a feasible eta."""
    from recede.policy_learning.gps import QuadraticCostTerms, bracket_eta

    rng = np.random.default_rng(10)
    dyn, prior, cost = _system(rng), _controller(rng), _cost(rng)
    bad = QuadraticCostTerms(cost.Q, cost.q, -np.stack([np.eye(NU)] * H), cost.r, cost.N, cost.Qf, cost.qf)
    br = bracket_eta(dyn, bad, prior, np.zeros(NX), np.eye(NX) * 0.1, 0.5, eta0=1e-3)
    assert br.failures > 0
    assert np.all(np.isfinite(br.controller.K)) and np.all(np.isfinite(br.controller.S))
    assert np.linalg.eigvalsh(br.controller.S).min() > 0


def test_psd_project_planted_indefinite():
    from recede.policy_learning.gps import psd_project

    M = np.stack([np.diag([1.0, -2.0]), np.eye(2), np.array([[0.0, 1.0], [1.0, 0.0]])])
    P, n = psd_project(M)
    assert n == 2
    assert np.linalg.eigvalsh(P).min() >= -1e-12
    np.testing.assert_allclose(P[0], np.diag([1.0, 0.0]))
    np.testing.assert_array_equal(P[1], np.eye(2))
    with pytest.raises(InvalidArgumentError, match="finite"):
        psd_project(np.full((2, 2), np.nan))


def test_step_multiplier_closed_form():
    from recede.policy_learning.gps import step_multiplier

    # predicted 1, actual 0: the improvement model peaks at half the step
    assert step_multiplier(1.0, 0.0, 1.0, 0.1, 10.0) == pytest.approx(0.5)
    # actual as predicted: grow by the largest factor, capped by the bound
    assert step_multiplier(1.0, 1.0, 1.0, 0.1, 10.0) == pytest.approx(5.0)
    assert step_multiplier(1.0, 1.0, 1.0, 0.1, 3.0) == pytest.approx(3.0)
    # worse than before: shrink by the smallest factor, floored by the bound
    assert step_multiplier(1.0, -100.0, 1.0, 0.5, 3.0) == pytest.approx(0.5)


def test_fit_dynamics_recovers_a_linear_system():
    from recede.policy_learning.gps import GMMPrior, fit_dynamics, model_prior

    rng = np.random.default_rng(11)
    dyn, p = _system(rng), _controller(rng)
    m0, V0 = np.zeros(NX), np.eye(NX) * 0.2
    X, U = p.sample(dyn, m0, V0, 4000, np.random.default_rng(12))
    fit, fixes = fit_dynamics(X, U)
    np.testing.assert_allclose(fit.A, dyn.A, atol=0.02)
    np.testing.assert_allclose(fit.B, dyn.B, atol=0.02)
    np.testing.assert_allclose(fit.c, dyn.c, atol=0.02)
    np.testing.assert_allclose(fit.W, dyn.W, atol=0.005)
    # three samples (fewer than nx + nu + 1) with the true model as a strong prior: its dynamics
    few = (X[:3], U[:3])
    fit, _ = fit_dynamics(*few, prior=model_prior(dyn.A, dyn.B, dyn.c, strength=1e6))
    np.testing.assert_allclose(fit.A, dyn.A, atol=1e-3)
    np.testing.assert_allclose(fit.B, dyn.B, atol=1e-3)
    # a mixture prior over every step's data (the steps' dynamics differ), three samples per
    # step: nearer the truth than the three samples alone
    g = GMMPrior(clusters=H)
    g.fit(np.concatenate([X[:, :-1], U, X[:, 1:]], axis=2).reshape(-1, 2 * NX + NU), np.random.default_rng(0))
    with_prior, _ = fit_dynamics(*few, prior=lambda t, pts: g.eval(pts))
    alone, _ = fit_dynamics(*few)
    err = lambda f: np.abs(np.concatenate([f.A - dyn.A, f.B - dyn.B], axis=2)).mean()  # noqa: E731
    assert err(with_prior) < 0.5 * err(alone)
    # one trajectory, no prior: degenerate, still finite and PSD
    fit, _ = fit_dynamics(X[:1], U[:1])
    assert np.all(np.isfinite(fit.A)) and np.linalg.eigvalsh(fit.W).min() >= -1e-12


def test_linearize_policy_of_a_linear_map():
    from recede.policy_learning.gps import linearize_policy

    rng = np.random.default_rng(13)
    G, b = rng.normal(size=(NU, NX)), rng.normal(size=NU)
    X = rng.normal(size=(4, H, NX))
    pi = linearize_policy(lambda Z: Z @ G.T + b, X, np.eye(NU) * 0.3)
    np.testing.assert_allclose(pi.K, np.broadcast_to(G, (H, NU, NX)), atol=1e-7)
    np.testing.assert_allclose(pi.k, np.broadcast_to(b, (H, NU)), atol=1e-7)
    np.testing.assert_allclose(pi.S[2], np.eye(NU) * 0.3)


# ----------------------------------------------------------------------------- the loop


def _lq_system(H_=25):
    import scipy.linalg

    from recede.costs import QuadraticCost
    from recede.models.linear import LinearDynamics
    from recede.policy_learning.gps import GPSSystem

    A = np.array([[1.0, 0.1], [0.0, 1.0]])
    B = np.array([[0.005], [0.1]])
    Q, R = np.diag([1.0, 0.1]), np.array([[0.1]])
    P = scipy.linalg.solve_discrete_are(A, B, Q, R)
    K = -np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
    dyn = LinearDynamics(A, B)
    cost = QuadraticCost(np.diag(Q), np.diag(R), P)  # Riccati terminal cost: tvlqr's gains are K at every step
    x0s = [[1.0, 0.0], [-0.5, 1.0], [0.0, -1.0], [0.7, 0.7]]
    return GPSSystem(dyn, cost, H_, x0s, action_low=[-50.0], action_high=[50.0]), K


def test_gps_linear_policy_converges_to_the_lqr_gain():
    """A linear system, a quadratic cost with the Riccati terminal cost: every local optimum is
    the infinite-horizon LQR gain, and the linear global policy (its S-step is closed-form
    weighted least squares) converges to it; its cost from each start is then x0'Px0/2."""
    from recede.policy_learning.gps import GPSConfig, gps

    system, K = _lq_system()
    cfg = GPSConfig(iterations=5, samples=4, dynamics="model", hidden=(), init_std=0.02, kl_step=1.0, holdout=0)
    res = gps(system, cfg, seed=0)
    np.testing.assert_allclose(linear_gain(res.policy), K, rtol=1e-4)
    P = system.cost.Qf
    want = [0.5 * x @ P @ x for x in system.x0s]
    np.testing.assert_allclose(res.log[-1].policy_cost, want, rtol=1e-4)
    assert res.log[0].policy_cost[0] > want[0] * (1 + 1e-3)  # it had to learn
    assert all(np.isfinite(e.kl).all() for e in res.log)
    assert res.samples == 5 * 4 * 4 * system.H
    # without the KL to the policy (a trust region around each controller's last version) the
    # local controllers still converge to LQR, and the policy, their behaviour clone, to K
    res = gps(system, dataclasses.replace(cfg, kl_to="previous"), seed=0)
    np.testing.assert_allclose(linear_gain(res.policy), K, rtol=1e-4)
    assert all(max(np.array(e.kl) - 1.1 * np.array(e.kl_target)) <= 0 for e in res.log)


def linear_gain(policy):
    """The state-to-action Jacobian of a policy, by central differences at the origin."""
    e = 1e-4
    cols = [(policy.act_batch(np.eye(2)[j][None] * e) - policy.act_batch(-np.eye(2)[j][None] * e))[0] / (2 * e)
            for j in range(2)]
    return np.stack(cols, axis=1)


def test_gps_resumes_where_it_stopped(tmp_path):
    """Two iterations, then a resumed third: the same policy and log as three in one go."""
    from recede.policy_learning.gps import GPSConfig, gps

    system, _ = _lq_system(10)
    cfg = GPSConfig(iterations=3, samples=3, hidden=(8,), policy_steps=20, holdout=0, dynamics="fit+prior")
    whole = gps(system, cfg, seed=3, out=str(tmp_path / "a"))
    import dataclasses

    gps(system, dataclasses.replace(cfg, iterations=2), seed=3, out=str(tmp_path / "b"))
    resumed = gps(system, cfg, seed=3, out=str(tmp_path / "b"), resume=True)
    assert [e.policy_cost for e in resumed.log] == [e.policy_cost for e in whole.log]
    for a, b in zip(whole.policy.net.state_dict().values(), resumed.policy.net.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy())
    rows = (tmp_path / "b" / "gps.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3 * system.M
    with pytest.raises(InvalidArgumentError, match="another run"):
        gps(system, cfg, seed=4, out=str(tmp_path / "b"), resume=True)


def test_gps_survives_planted_indefinite_costs():
    """A cost that is concave in the state (its Hessian negative definite: what crashed
    cbfinn/gps): projected, counted in the log, no NaN."""
    from recede.policy_learning.gps import GPSConfig, GPSSystem, gps

    system, _ = _lq_system(8)

    class Concave:
        def stage_costs(self, X, U):
            out = np.zeros(X.shape[:2])
            out[:, :-1] = -0.5 * np.sum(X[:, :-1] ** 2, axis=-1) + 0.5 * np.sum(U ** 2, axis=-1)
            return out

        def __call__(self, X, U):
            return self.stage_costs(X, U).sum(axis=1)

    bad = GPSSystem(system.dynamics, Concave(), system.H, system.x0s, action_low=[-5.0], action_high=[5.0])
    res = gps(bad, GPSConfig(iterations=2, samples=3, hidden=(8,), policy_steps=10, holdout=0), seed=0)
    assert all(e.regularised > 0 for e in res.log)
    for e in res.log:
        assert np.all(np.isfinite(e.kl)) and np.all(np.isfinite(e.eta)) and np.all(np.isfinite(e.policy_cost))


def test_gps_bad_input():
    from recede.policy_learning.gps import GPSConfig, gps, task_system

    for kw, word in (({"samples": 0}, "samples"), ({"iterations": 0}, "iterations"), ({"kl_step": 0.0}, "kl_step"),
                     ({"kl_step": -1.0}, "kl_step"), ({"dynamics": "exact"}, "dynamics"), ({"init": "lqr"}, "init")):
        with pytest.raises(InvalidArgumentError, match=word):
            GPSConfig(**kw)
    with pytest.raises(InvalidArgumentError, match="conditions"):
        task_system("pendulum-swingup", 0)
    with pytest.raises(InvalidArgumentError, match="vector state"):
        task_system("ant", 2)  # a free joint's quaternion: no linear controller in its state
    with pytest.raises(InvalidArgumentError, match="system must be"):
        gps("reacher", GPSConfig())


def test_gps_cli_writes_its_outputs_and_refuses_bad_input(tmp_path, capsys):
    from recede.cli import main
    from recede.policies import load_policy, policy_info

    out = tmp_path / "run"
    args = ["gps", "pendulum-swingup", "--conditions", "2", "--samples", "2", "--horizon", "20",
            "--policy-steps", "20", "--holdout", "2", "--hidden", "8", "--out", str(out)]
    assert main(args + ["--iterations", "2"]) == 0
    text = capsys.readouterr().out
    assert text.count("iteration ") == 2 and "held-out success" in text
    rows = (out / "gps.csv").read_text().strip().splitlines()
    assert rows[0].startswith("iteration,condition,local_cost,policy_cost,kl,kl_target,eta")
    assert len(rows) == 1 + 2 * 2
    assert (out / "gps.png").stat().st_size > 1000
    assert policy_info(str(out / "policy"))["task"] == "pendulum-swingup"
    from recede.envs import get_task

    pol = load_policy(str(out / "policy"), get_task("pendulum-swingup"))
    assert pol.act(np.array([3.0, 0.0])).shape == (1,)
    assert main(args + ["--iterations", "3", "--resume"]) == 0
    assert len((out / "gps.csv").read_text().strip().splitlines()) == 1 + 3 * 2
    capsys.readouterr()
    for bad, word in ((["--conditions", "0"], "--conditions"), (["--samples", "0"], "--samples"),
                      (["--kl-step", "0"], "--kl-step"), (["--kl-step", "-0.5"], "--kl-step")):
        argv = ["gps", "pendulum-swingup", "--out", str(tmp_path / "x")] + bad
        assert main(argv) == 2
        assert word in capsys.readouterr().err
    assert main(["gps", "ant", "--out", str(tmp_path / "y")]) == 2
    assert "vector state" in capsys.readouterr().err


def test_gps_linearises_a_learned_ensemble():
    """``model`` dynamics from a learned ensemble: its autograd Jacobians (against central
    differences of its own step), then one GPS iteration on them in the task's env."""
    from recede.models.ensemble import Ensemble
    from recede.planners.ilqr import fd_linearize
    from recede.policy_learning.gps import GPSConfig, gps, task_system

    m = Ensemble(2, 1, dt=0.1, action_low=-1.0, action_high=1.0, members=2, hidden=8, layers=1,
                 task="double-integrator")
    system = task_system("double-integrator", 2, horizon=6, model=m)
    assert system.dynamics is m
    rng = np.random.default_rng(0)
    X, U = rng.normal(size=(7, 2)), rng.uniform(-0.9, 0.9, size=(6, 1))
    A, B, c = system.linearize(X, U)
    A_fd, B_fd = fd_linearize(m, X, U, eps=1e-3)
    np.testing.assert_allclose(A, A_fd, atol=2e-3)
    np.testing.assert_allclose(B, B_fd, atol=2e-3)
    np.testing.assert_allclose(c, m.step(X[:-1], U) - np.einsum("tij,tj->ti", A, X[:-1]) - np.einsum("tij,tj->ti", B, U),
                               atol=1e-9)
    res = gps(system, GPSConfig(iterations=1, samples=2, hidden=(8,), policy_steps=5, holdout=0), seed=0)
    assert np.all(np.isfinite(res.log[0].policy_cost)) and np.all(np.isfinite(res.controllers[0].K))


def test_bracket_eta_falls_back_to_the_prior_when_no_eta_meets_the_step():
    """An unstable open loop over 200 steps: the cost-to-go grows like 1.3^400 and outweighs
    every eta up to 1e16, so no C-step comes within the KL step; the prior itself (eta ->
    infinity, KL 0) is returned, flagged, instead of a controller 1e5 nats away."""
    from recede.policy_learning.gps import QuadraticCostTerms, bracket_eta

    T, nx, nu = 200, 2, 1
    A = np.stack([np.array([[1.3, 0.1], [0.0, 1.3]])] * T)
    B = np.stack([np.array([[0.0], [1.0]])] * T)
    dyn = LinearGaussianDynamics(A, B, np.zeros((T, nx)), np.stack([np.eye(nx) * 1e-6] * T))
    prior = LinearGaussianController(np.zeros((T, nu, nx)), np.zeros((T, nu)), np.stack([np.eye(nu) * 1e-4] * T))
    cost = QuadraticCostTerms(np.stack([np.eye(nx)] * T), np.zeros((T, nx)), np.stack([np.eye(nu) * 0.1] * T),
                              np.zeros((T, nu)), np.zeros((T, nu, nx)), np.eye(nx), np.zeros(nx))
    br = bracket_eta(dyn, cost, prior, np.ones(nx), np.eye(nx) * 0.01, 5.0)
    assert not br.converged and br.kl == 0.0 and br.controller is prior
