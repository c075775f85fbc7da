"""Dyna/MBPO: branched rollouts against the true system, the model buffer and batch mix by
counting, the pessimistic penalty against its formula, exact resume, bad input."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from recede.data import TransitionDataset
from recede.envs import ModelEnv, get_task
from recede.errors import Interrupted, InvalidArgumentError
from recede.data.replay import ReplayBuffer
from recede.policy_learning.dyna import (
    DynaConfig, apply_options, branch, disagreement, dyna, mbpo_config, mixed_batch,
)
from recede.policy_learning.sac import SACConfig


class TrueEnsemble:
    """The true system as an ensemble of ``E`` identical members with zero variance."""

    def __init__(self, dynamics, E=3, reward=None):
        self.dyn, self.E, self.reward = dynamics, E, reward
        self.nx, self.nu = dynamics.nx, dynamics.nu

    def predict(self, X, U):
        X1 = np.asarray(self.dyn.step(X, U), dtype=np.float64)
        if self.reward is not None:
            X1 = np.concatenate([X1, self.reward(X, U)[:, None]], axis=1)
        m = np.broadcast_to(X1, (self.E, *X1.shape)).copy()
        return m, np.zeros_like(m)


def _linear_act(nu, nx, seed):
    W = np.random.default_rng(seed).normal(size=(nx, nu))
    return lambda X, t: np.tanh(X @ W + 0.1 * t) * 3.0


def test_branched_rollouts_of_the_true_model_are_the_true_transitions_and_terminations():
    task = get_task("inverted-pendulum")
    rule = ModelEnv(task, 1)
    model = TrueEnsemble(rule.dynamics)
    rng = np.random.default_rng(1)
    X0 = np.zeros((8, 4))
    X0[:, 1] = rng.uniform(-0.15, 0.15, 8)
    X0[:, 2:] = rng.normal(scale=[0.5, 2.0], size=(8, 2))
    act = _linear_act(1, 4, 2)
    k = 6
    b = branch(model, rule, X0, k, act, np.random.default_rng(0))
    # reference loop: each start state set into Gymnasium's InvertedPendulum-v5 and stepped
    rows = []
    for x in X0:
        env = gym.make("InvertedPendulum-v5")
        env.reset(seed=0)
        nq = env.unwrapped.model.nq
        env.unwrapped.set_state(x[:nq], x[nq:])
        for t in range(k):
            u = act(x[None], t)[0]
            _, r, term, _, _ = env.step(u)
            x1 = task.state_of(env)
            rows.append((t, x.copy(), u, r, x1, term))
            x = x1
            if term:
                break
        env.close()
    assert any(r[5] for r in rows) and not all(r[5] for r in rows)  # some terminate, some do not
    assert len(b.rewards) == len(rows)
    # the branch is ordered by step, the reference by rollout: compare as sets keyed by (step, start)
    ref = sorted(rows, key=lambda r: (r[0], tuple(r[1])))
    mine = sorted(zip(b.depth, b.states, b.actions, b.rewards, b.next_states, b.terminated),
                  key=lambda r: (r[0], tuple(r[1])))
    for (t, x, u, r, x1, term), (t2, x_, u_, r_, x1_, term_) in zip(ref, mine):
        assert t == t2
        np.testing.assert_allclose(x_, x, rtol=0, atol=1e-9)
        np.testing.assert_allclose(u_, u, rtol=0, atol=0)
        np.testing.assert_allclose(x1_, x1, rtol=0, atol=1e-9)
        assert r_ == pytest.approx(r, abs=1e-12) and bool(term_) == bool(term)


def test_branched_rollouts_of_an_analytic_task_follow_its_model_and_cost():
    task = get_task("pendulum-swingup")
    rule = ModelEnv(task, 1)
    dyn = task.dynamics()
    cost = task.cost(dyn)
    X0 = np.random.default_rng(3).normal(size=(5, 2))
    act = _linear_act(1, 2, 4)
    b = branch(TrueEnsemble(dyn, E=4), rule, X0, 3, act, np.random.default_rng(0))
    assert len(b.rewards) == 15 and not b.terminated.any()
    # the learned-reward flavour scores with the model's reward output instead of the task's
    learned = branch(TrueEnsemble(dyn, E=2, reward=lambda X, U: X[:, 0] - U[:, 0]), rule, X0, 3, act,
                     np.random.default_rng(0), learned_reward=True)
    np.testing.assert_array_equal(learned.next_states, b.next_states)
    np.testing.assert_array_equal(learned.rewards, learned.states[:, 0] - learned.actions[:, 0])
    for i, x in enumerate(X0):
        for t in range(3):
            u = np.clip(act(x[None], t)[0], dyn.action_low, dyn.action_high)
            x1 = dyn.step(x[None], u[None])[0]
            j = t * 5 + i
            np.testing.assert_array_equal(b.next_states[j], x1)
            assert b.rewards[j] == pytest.approx(-cost.stage(x, u), rel=1e-12)
            x = x1


class KnownEnsemble:
    """Elites whose Gaussians are known: mean_e = x + c_e, std_e = s_e (per dim)."""

    def __init__(self, offsets, stds):
        self.c, self.s = np.asarray(offsets, float), np.asarray(stds, float)  # (E, d)
        self.nx, self.nu = 2, 1

    def predict(self, X, U):
        m = X[None] + self.c[:, None, :]
        return m, np.broadcast_to(self.s[:, None, :] ** 2, m.shape).copy()


def test_the_penalty_is_its_formula_on_known_members():
    task = get_task("pendulum-swingup")
    rule = ModelEnv(task, 1)
    offsets = [[0.1, 0.0], [0.0, -0.2], [0.3, 0.4]]
    stds = [[0.1, 0.2], [0.5, 0.0], [0.0, 0.3]]
    model = KnownEnsemble(offsets, stds)
    X0 = np.random.default_rng(0).normal(size=(6, 2))
    act = lambda X, t: np.full((X.shape[0], 1), 0.5)  # noqa: E731
    lam = 2.5
    for kind in ("max_std", "pairwise"):
        plain = branch(model, rule, X0, 1, act, np.random.default_rng(7), penalty=0.0)
        pess = branch(model, rule, X0, 1, act, np.random.default_rng(7), penalty=lam, uncertainty=kind)
        if kind == "max_std":
            u = max(np.sqrt(sum(v * v for v in s)) for s in stds)
        else:
            d = [np.sqrt(sum((a - b) ** 2 for a, b in zip(offsets[i], offsets[j])))
                 for i in range(3) for j in range(i + 1, 3)]
            u = sum(d) / 3
        np.testing.assert_array_equal(pess.next_states, plain.next_states)
        np.testing.assert_allclose(pess.uncertainty, u, rtol=1e-12)
        np.testing.assert_allclose(pess.rewards, plain.rewards - lam * u, rtol=1e-12)
    # the sampled next state is one member's Gaussian: each row within its member's support
    b = branch(KnownEnsemble(offsets, [[0, 0]] * 3), rule, X0, 1, act, np.random.default_rng(1))
    d = b.next_states - b.states
    assert all(any(np.allclose(r, c) for c in offsets) for r in d)
    assert len({tuple(np.round(r, 9)) for r in d}) > 1  # more than one elite drawn
    np.testing.assert_allclose(disagreement(np.zeros((1, 4, 2)), np.ones((1, 4, 2)), "pairwise"), 0.0)


def test_the_batch_mix_and_the_model_buffer_retention_are_as_configured():
    real, syn = ReplayBuffer(100, 2, 1), ReplayBuffer(100, 2, 1)
    real.add_batch(np.zeros((50, 2)), np.zeros((50, 1)), np.ones(50), np.zeros((50, 2)), np.zeros(50, bool))
    rng = np.random.default_rng(0)
    X, U, R, X1, D = mixed_batch(real, syn, 64, 0.25, rng)
    assert (R == 1).sum() == 64  # no synthetic data yet: all real
    syn.add_batch(np.zeros((30, 2)), np.zeros((30, 1)), -np.ones(30), np.zeros((30, 2)), np.zeros(30, bool))
    for B, ratio in ((64, 0.25), (256, 0.05), (10, 0.0), (10, 1.0), (7, 0.5)):
        X, U, R, X1, D = mixed_batch(real, syn, B, ratio, rng)
        assert len(R) == B and (R == 1).sum() == int(round(ratio * B))

    # the loop: k grows 1 -> 3 along the schedule, the buffer keeps retain epochs at each k
    cfg = _tiny(steps=120, rollout_schedule=(40, 100, 1, 3), retain=2, epoch_length=10, rollouts=3,
                rollout_every=5)
    res = dyna("pendulum-swingup", cfg, seed=0)
    assert [cfg.rollout_length(s) for s in (0, 40, 70, 100, 130)] == [1, 1, 2, 3, 3]
    assert res.model_buffer.capacity == 2 * 10 * 3 * 3
    assert len(res.model_buffer) == res.model_buffer.capacity  # 120 - 20 steps made more than that
    assert len(res.real_buffer) == 120
    assert [f.step for f in res.fits] == [20, 60, 100]


TINY_SAC = dict(learning_starts=20, batch_size=16, hidden=(16,), updates_per_step=1)


def _tiny(**kw):
    base = dict(steps=100, sac=SACConfig(**TINY_SAC), model=mbpo_config("pendulum-swingup").model.__class__(
        members=3, elites=2, hidden=16, layers=2), train=mbpo_config("pendulum-swingup").train.__class__(
        holdout=0.2, patience=2, epochs=5), model_every=40, rollout_every=10, rollouts=4,
        rollout_schedule=(0, 0, 2, 2), epoch_length=20, eval_every=50, eval_episodes=1, checkpoint_every=30)
    base.update(kw)
    return DynaConfig(**base)


def _weights(policy):
    return [p.detach().clone() for p in policy.net.parameters()]


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path):
    cfg = _tiny()
    full = dyna("pendulum-swingup", cfg, seed=1, out=str(tmp_path / "full"))

    def stop(t, info):
        if t == 67:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as e:
        dyna("pendulum-swingup", cfg, seed=1, out=str(tmp_path / "cut"), on_step=stop)
    assert e.value.partial.env_steps == 67
    resumed = dyna("pendulum-swingup", cfg, seed=1, out=str(tmp_path / "cut"), resume=True)
    assert resumed.resumed_from == 67 and resumed.env_steps == 100
    for x, y in zip(_weights(full.policy), _weights(resumed.policy)):
        assert torch.equal(x, y)
    for x, y in zip(full.model.net.parameters(), resumed.model.net.parameters()):
        assert torch.equal(x, y)
    assert [(e.env_steps, e.returns) for e in full.evals] == [(e.env_steps, e.returns) for e in resumed.evals]
    assert [(f.step, f.epochs, f.holdout_mse) for f in full.fits] == \
        [(f.step, f.epochs, f.holdout_mse) for f in resumed.fits]
    np.testing.assert_array_equal(full.model_buffer.state_dict()["obs"], resumed.model_buffer.state_dict()["obs"])
    assert (tmp_path / "cut" / "evals.csv").exists() and (tmp_path / "cut" / "model" / "model.json").exists()
    # a finished run resumed with more steps continues as one longer run
    longer = dyna("pendulum-swingup", dataclasses.replace(cfg, steps=130), seed=1, out=str(tmp_path / "full"),
                  resume=True)
    straight = dyna("pendulum-swingup", dataclasses.replace(cfg, steps=130), seed=1)
    assert longer.resumed_from == 100 and len(longer.real_buffer) == 130
    for x, y in zip(_weights(straight.policy), _weights(longer.policy)):
        assert torch.equal(x, y)
    assert [f.rows for f in longer.fits] == [f.rows for f in straight.fits]
    # another task's checkpoint is refused by name
    with pytest.raises(InvalidArgumentError, match="for task 'pendulum-swingup', not 'cartpole-swingup'"):
        dyna("cartpole-swingup", cfg, seed=1, out=str(tmp_path / "cut"), resume=True)


def test_offline_runs_from_a_dataset_without_env_steps():
    task = get_task("pendulum-swingup")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    U = rng.uniform(-2, 2, size=(200, 1))
    X1 = task.dynamics().step(X, U)
    ds = TransitionDataset(observations=X, actions=U, rewards=np.zeros(200), next_observations=X1,
                           terminated=np.zeros(200, bool), truncated=np.ones(200, bool),
                           episode_ids=np.arange(200))
    cfg = _tiny(steps=30, penalty=1.0, eval_every=30, rollout_every=100, epoch_length=100)
    res = dyna(task, cfg, seed=0, dataset=ds)
    assert res.offline and len(res.fits) == 1 and res.fits[0].rows == 200 and res.env_steps == 30
    assert len(res.real_buffer) == 200 and len(res.evals) == 1
    # one batch of 400 rollouts of 2 steps; its first step branches from dataset states
    assert len(res.model_buffer) == 800
    starts = {tuple(r) for r in X}
    assert all(tuple(r) in starts for r in res.model_buffer.obs[:400])
    assert not any(tuple(r) in starts for r in res.model_buffer.obs[400:800])
    # the Dyna flavour that replays logged actions: each first step is a dataset (state, action) pair
    res = dyna(task, dataclasses.replace(cfg, action_source="buffer", steps=2), seed=0, dataset=ds)
    pairs = {tuple(r) for r in np.concatenate([X, U], axis=1)}
    first = np.concatenate([res.model_buffer.obs[:400], res.model_buffer.actions[:400]], axis=1)
    assert all(tuple(r) in pairs for r in first)


def test_bad_input_is_refused_by_name(tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"penalty must be a finite number >= 0.*got -1"):
        DynaConfig(penalty=-1.0)
    with pytest.raises(InvalidArgumentError, match="rollout length must not decrease in time"):
        DynaConfig(rollout_schedule=(0, 100, 5, 1))
    with pytest.raises(InvalidArgumentError, match="end step must not come before the start step"):
        DynaConfig(rollout_schedule=(100, 10, 1, 5))
    with pytest.raises(InvalidArgumentError, match="unknown option 'rollout'"):
        apply_options(DynaConfig(), {"rollout": "3"})
    with pytest.raises(InvalidArgumentError, match="SACConfig has no field 'gama'"):
        apply_options(DynaConfig(), {"sac.gama": "0.9"})
    cfg = apply_options(DynaConfig(), {"real_ratio": "0.1", "rollout_schedule": "1,5,1,4", "sac.hidden": "64,64",
                                       "model.elites": "3", "action_source": "uniform", "train.patience": "2"})
    assert (cfg.real_ratio, cfg.rollout_schedule, cfg.sac.hidden, cfg.model.elites, cfg.action_source.value,
            cfg.train.patience) == (0.1, (1, 5, 1, 4), (64, 64), 3, "uniform", 2)
    import json

    from recede.policy_learning.dyna import _config_json, config_from_json

    assert config_from_json(json.loads(json.dumps(_config_json(cfg)))) == cfg  # what checkpoints record
    ds = TransitionDataset(observations=np.zeros((5, 3)), actions=np.zeros((5, 1)), rewards=np.zeros(5),
                           next_observations=np.zeros((5, 3)), terminated=np.zeros(5, bool),
                           truncated=np.zeros(5, bool), episode_ids=np.zeros(5, int))
    with pytest.raises(InvalidArgumentError, match="states of size 3 .* model states of size 2"):
        dyna("pendulum-swingup", _tiny(), dataset=ds)
