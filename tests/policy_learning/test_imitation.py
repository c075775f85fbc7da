"""Behaviour cloning and DAgger (recede.policy_learning.imitation) against oracles.

Oracles: a linear expert ``u = K x`` is in the linear policy class, so BC must recover ``K``; an
LQR expert on a linear system is such an expert (its gain from the Riccati equation), so DAgger
must converge to the LQR gain. The system is the double integrator (RK4 of a linear system is
linear) with bounds wide enough that no label is clipped.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.linalg
import torch

from recede.controllers import LQRController
from recede.data import TransitionDataset
from recede.envs import get_task
from recede.errors import InvalidArgumentError
from recede.models.analytic import DoubleIntegrator
from recede.policies import LinearPolicyNet, load_policy
from recede.policy_learning.imitation import (
    BCConfig, DAggerConfig, ExpertSpec, Labeller, bc, beta_schedule, dagger, expert_demos, expert_spec,
)

LINEAR = BCConfig(hidden=(), lr=3e-2, batch_size=64, epochs=200, patience=20)


@pytest.fixture(scope="module")
def task():
    """The double integrator with accelerations up to 100 (LQR's actions are never clipped)."""
    return dataclasses.replace(get_task("double-integrator"), name="double-integrator-wide",
                               make_dynamics=lambda: DoubleIntegrator(max_accel=100.0))


def _gain(policy) -> np.ndarray:
    W, b = policy.net.gain()
    assert abs(float(b.abs().max())) < 1e-4
    return W.double().numpy()


@pytest.mark.parametrize("normalize", [False, True])
def test_bc_recovers_a_linear_expert(task, normalize):
    K = np.array([[-0.7, -1.3]])
    X = np.random.default_rng(0).normal(size=(500, 2)) * np.array([2.0, 0.5])
    r = bc(task, (X, X @ K.T), config=dataclasses.replace(LINEAR, normalize=normalize), seed=0)
    assert isinstance(r.policy.net, LinearPolicyNet)
    np.testing.assert_allclose(_gain(r.policy), K, atol=1e-3)
    # the policy acts on model states through the task's features
    np.testing.assert_allclose(r.policy.act_batch(X[:5]), X[:5] @ K.T, atol=1e-3)
    assert r.holdout_loss < 1e-8 and r.pairs == 500


def test_bc_from_a_transition_dataset(task):
    K = np.array([[0.4, -0.2]])
    X = np.random.default_rng(1).uniform(-1, 1, size=(300, 2))
    data = TransitionDataset(observations=X, actions=X @ K.T, next_observations=X, rewards=np.zeros(300),
                             terminated=np.zeros(300, bool), truncated=np.ones(300, bool),
                             episode_ids=np.arange(300))
    np.testing.assert_allclose(_gain(bc(task, data, config=LINEAR, seed=3).policy), K, atol=1e-3)


def test_bc_nll_fits_a_constant_expert_inside_the_bounds(task):
    """A Gaussian policy fit by NLL to a constant action: its mean action is that action."""
    X = np.random.default_rng(2).normal(size=(256, 2))
    U = np.full((256, 1), 30.0)
    cfg = BCConfig(loss="nll", hidden=(16,), lr=1e-2, batch_size=64, epochs=150, patience=150)
    pol = bc(task, (X, U), config=cfg, seed=0).policy
    np.testing.assert_allclose(pol.act_batch(X[:8]), U[:8], rtol=2e-2)


def test_dagger_with_an_lqr_expert_converges_to_the_riccati_gain(task):
    problem = task.problem()
    d, cost = problem.dynamics, problem.cost
    A, B = (m[0] for m in d.linearize(np.zeros((2, 2)), np.zeros((1, 1))))
    # the Riccati gain (u = K x) from scipy's discrete algebraic Riccati solver
    P = scipy.linalg.solve_discrete_are(A, B, cost.Q, cost.R)
    K_riccati = -np.linalg.solve(cost.R + B.T @ P @ B, B.T @ P @ A)
    np.testing.assert_allclose(LQRController(problem).K, K_riccati, rtol=1e-6)
    seen = []
    cfg = DAggerConfig(labels=300, labels_per_round=100, episodes=2, eval_episodes=1, bc=LINEAR,
                       beta="linear", beta_param=0.5)
    res = dagger(task, LQRController(problem), config=cfg, seed=0, on_round=lambda log, pol: seen.append(log))
    assert [r.labels for r in res.rounds] == [100, 200, 300] and seen == list(res.rounds)
    assert [r.beta for r in res.rounds] == [1.0, 0.5, 0.0]
    assert res.X.shape == (300, 2) and res.U.shape == (300, 1)
    np.testing.assert_allclose(res.U, res.X @ K_riccati.T, atol=1e-9)  # every label is the expert's
    np.testing.assert_allclose(_gain(res.policy), K_riccati, rtol=1e-3, atol=1e-3)
    assert all(len(r.returns) == 1 and r.labels_per_s > 0 for r in res.rounds)


def test_a_budget_truncates_the_last_round(task):
    cfg = DAggerConfig(labels=250, labels_per_round=100, episodes=3, eval_episodes=0,
                       bc=dataclasses.replace(LINEAR, epochs=3))
    res = dagger(task, LQRController(task.problem()), config=cfg, seed=1)
    assert [r.labels for r in res.rounds] == [100, 200, 250] and len(res.X) == 250
    assert all(r.returns == () for r in res.rounds)


def test_expert_demos_are_dagger_round_zero(task):
    lqr = LQRController(task.problem())
    X, U = expert_demos(task, lqr, 150, seed=4, episodes=2, labels_per_round=100)
    cfg = DAggerConfig(labels=100, labels_per_round=100, episodes=2, eval_episodes=0, bc=LINEAR)
    res = dagger(task, lqr, config=cfg, seed=4)
    np.testing.assert_array_equal(X[:100], res.X)
    np.testing.assert_array_equal(U, lqr.act_batch(X))


def test_same_seed_same_weights_other_seed_other_weights(task):
    X = np.random.default_rng(5).normal(size=(200, 2))
    U = np.tanh(X[:, :1] - X[:, 1:]) * 50.0
    cfg = BCConfig(hidden=(8, 8), epochs=5, batch_size=32)
    a, b, c = (bc(task, (X, U), config=cfg, seed=s).policy.net for s in (0, 0, 1))
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.mlp.weights[0], c.mlp.weights[0])


def test_a_linear_policy_saves_and_loads(task, tmp_path):
    K = np.array([[-0.5, 0.25]])
    X = np.random.default_rng(6).normal(size=(200, 2))
    pol = bc(task, (X, X @ K.T), config=dataclasses.replace(LINEAR, normalize=False), seed=0).policy
    pol.save(str(tmp_path / "p"))
    loaded = load_policy(str(tmp_path / "p"), task)
    np.testing.assert_array_equal(loaded.act_batch(X[:10]), pol.act_batch(X[:10]))
    # outside the bounds the linear policy clips
    np.testing.assert_array_equal(loaded.act(np.array([1e4, 0.0])), [-100.0])


# ----------------------------------------------------------------------------- bad input


class _WrongSize:
    """A controller for a system of 3 actions."""

    def act(self, x):
        return np.zeros(3)

    def reset(self, rng=None):
        pass


def test_an_expert_of_other_dimensions_is_refused(task):
    with pytest.raises(InvalidArgumentError, match=r"expert _WrongSize returned an action of shape \(3,\) on "
                                                   r"task 'double-integrator-wide', which has 1 actions"):
        Labeller(task, _WrongSize())
    with pytest.raises(InvalidArgumentError, match=r"expert _Nx3 cannot act on task 'double-integrator-wide' "
                                                   r"\(states of size 2\): x must have shape \(3,\), got \(2,\)"):
        dagger(task, _Nx3(), seed=0)
    # a saved policy of another task is refused by its loader, naming both sizes
    spec = ExpertSpec(task="double-integrator", kind="lqr")
    assert Labeller(task, spec).nu == 1


class _Nx3:
    """A controller of a system with 3 states."""

    def act(self, x):
        if np.asarray(x).shape != (3,):
            raise InvalidArgumentError(f"x must have shape (3,), got {np.asarray(x).shape}")
        return np.zeros(1)

    def reset(self, rng=None):
        pass


@pytest.mark.parametrize("kwargs, message", [
    (dict(labels=0), "labels must be an int >= 1, got 0"),
    (dict(labels=-5), "labels must be an int >= 1, got -5"),
    (dict(beta="cosine"), "beta schedule must be one of ['linear', 'exponential'], got 'cosine'"),
    (dict(beta_param=1.5), "beta_param must be a number in [0, 1], got 1.5"),
    (dict(beta_param=-0.1), "beta_param must be a number in [0, 1], got -0.1"),
    (dict(workers=0), "workers must be an int >= 1, got 0"),
])
def test_bad_dagger_settings_are_refused(kwargs, message):
    with pytest.raises(InvalidArgumentError) as e:
        DAggerConfig(**kwargs)
    assert str(e.value) == message


def test_bad_bc_input_is_refused(task):
    with pytest.raises(InvalidArgumentError, match=r"loss must be one of \['mse', 'nll'\], got 'l1'"):
        BCConfig(loss="l1")
    with pytest.raises(InvalidArgumentError, match=r"loss must be 'mse' for a linear policy"):
        BCConfig(loss="nll", hidden=())
    with pytest.raises(InvalidArgumentError, match=r"data: states must have shape \(N, 2\) for task "
                                                   r"'double-integrator-wide', got \(4, 3\)"):
        bc(task, (np.zeros((4, 3)), np.zeros((4, 1))))
    with pytest.raises(InvalidArgumentError, match=r"data: actions must have shape \(4, 1\)"):
        bc(task, (np.zeros((4, 2)), np.zeros((4, 2))))
    with pytest.raises(InvalidArgumentError, match="labels must be an int >= 1, got 0"):
        expert_demos(task, LQRController(task.problem()), 0)


def test_beta_schedules():
    assert beta_schedule("linear", 0.25, 6) == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert beta_schedule("exponential", 0.5, 4) == [1.0, 0.5, 0.25, 0.125]
    assert beta_schedule("exponential", 0.0, 3) == [1.0, 0.0, 0.0]  # round 0 is the expert alone


def test_expert_specs():
    assert expert_spec("double-integrator", "lqr").kind == "lqr"
    mpc = expert_spec("double-integrator", "mpc:cem", horizon=7, options={"samples": 32})
    assert (mpc.planner, mpc.horizon, mpc.options["samples"]) == ("cem", 7, 32)
    for bad in ("mpc", "mpc:", "ilqr", "policy:", "lqr:x"):
        with pytest.raises(InvalidArgumentError, match=f"expert must be mpc:PLANNER, lqr or policy:DIR, got "
                                                       f"'{bad}'"):
            expert_spec("double-integrator", bad)
    with pytest.raises(InvalidArgumentError, match="workers=2 needs the expert as an ExpertSpec"):
        Labeller("double-integrator", LQRController(get_task("double-integrator").problem()), workers=2)
