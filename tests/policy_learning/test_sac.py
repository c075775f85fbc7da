"""SAC: its critic against the Riccati Q of a fixed linear policy, its policy against the LQR
gain, seeds as a batch against seeds alone (bit for bit), same seed same curve, exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recede.errors import Interrupted, InvalidArgumentError
from recede.models.ensemble import torch_threads
from recede.policies import load_policy
from recede.policy_learning.sac import SACAgents, SACConfig, sac, sac_update

from .conftest import linear_policy_q

TINY = dict(hidden=(16, 16), batch_size=16, learning_starts=20, eval_every=30, eval_episodes=1,
            checkpoint_every=25)


class LinearGaussian(torch.nn.Module):
    """The fixed policy ``u = K x + sigma eps`` (its log-probability is irrelevant at alpha ~ 0)."""

    def __init__(self, K, sigma):
        super().__init__()
        self.K = torch.as_tensor(K, dtype=torch.float32)
        self.sigma = sigma

    def sample(self, obs, noise):
        a = obs @ self.K.T + self.sigma * noise
        return a, torch.zeros(a.shape[:-1])


def test_the_critic_learns_the_riccati_q_of_a_fixed_linear_policy(lq_task):
    gamma, sigma = 0.9, 0.3
    K = 0.5 * lq_task.lqr(gamma)[0]
    q_true = linear_policy_q(lq_task, K, sigma, gamma)
    torch.manual_seed(0)
    cfg = SACConfig(hidden=(64, 64))
    agents = SACAgents(1, 2, 1, [-10.0], [10.0], cfg, [0], alpha0=1e-30)
    agents.actor = LinearGaussian(K, sigma)
    opts = (torch.optim.Adam(agents.critic.parameters(), lr=1e-3), None, None)
    rng = np.random.default_rng(0)
    n = 20_000
    X = rng.uniform(-1, 1, size=(n, 2))
    U = X @ K.T + sigma * rng.standard_normal((n, 1))
    W = rng.multivariate_normal(np.zeros(2), lq_task.W, size=n)
    X2 = X @ lq_task.A.T + U @ lq_task.B.T + W
    R = -0.5 * (np.einsum("bi,ij,bj->b", X, lq_task.Q, X) + np.einsum("bi,ij,bj->b", U, lq_task.R, U))
    f = lambda a: torch.as_tensor(a, dtype=torch.float32)[None]
    gen = torch.Generator().manual_seed(0)
    with torch_threads(1):  # small networks: two threads on a busy machine run ten times slower
        for _ in range(4000):
            i = rng.integers(0, n, size=256)
            batch = (f(X[i]), f(U[i]), f(R[i]), f(X2[i]), torch.zeros(1, 256))
            sac_update(agents, opts, batch, lambda b: torch.randn((1, b, 1), generator=gen), gamma=gamma,
                       tau=0.05, target_entropy=-1.0, tune_alpha=False, update_actor=False)
    Xt = rng.uniform(-0.9, 0.9, size=(500, 2))
    Ut = Xt @ K.T + sigma * rng.standard_normal((500, 1))
    want = q_true(Xt, Ut)
    with torch.no_grad():
        got = agents.critic(f(Xt), f(Ut))[0].numpy()  # (2 heads, 500)
    # The target's min over the twin critics (clipped double Q) biases the fixed point down by a
    # constant (the expected min of two noisy heads, summed over the discounted future): the
    # shape of Q must match to a few percent of its spread, the offset to ten.
    spread = want.std()
    for head in got:
        err = head - want
        assert abs(err.mean()) < 0.10 * spread, f"critic offset {err.mean() / spread:.3f} of Q's spread"
        assert err.std() < 0.04 * spread, f"critic shape error {err.std() / spread:.3f} of Q's spread"


class RiccatiQ(torch.nn.Module):
    """The optimal Q function of the LQ task (twin heads, both exact), a planted critic."""

    def __init__(self, task, gamma):
        super().__init__()
        _, P = task.lqr(gamma)
        self.m = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in
                  dict(A=task.A, B=task.B, Q=task.Q, R=task.R, P=P).items()}
        self.gamma = gamma

    def forward(self, obs, act):
        m = self.m
        xn = obs @ m["A"].T + act @ m["B"].T
        r = -0.5 * (((obs @ m["Q"]) * obs).sum(-1) + ((act @ m["R"]) * act).sum(-1))
        q = r - 0.5 * self.gamma * ((xn @ m["P"]) * xn).sum(-1)
        return torch.stack([q, q], dim=1)


def test_the_actor_update_against_the_optimal_q_finds_the_lqr_gain(lq_task):
    """SAC's policy step, given the exact optimal Q (Riccati), moves the policy's mean to the
    greedy action under that Q: the LQR gain (max-entropy LQ keeps LQR's mean gain)."""
    gamma = 0.95
    K_lqr = lq_task.lqr(gamma)[0]
    torch.manual_seed(0)
    agents = SACAgents(1, 2, 1, [-10.0], [10.0], SACConfig(hidden=(64, 64)), [0], alpha0=1e-3)
    agents.critic = agents.target = RiccatiQ(lq_task, gamma)
    opts = (None, torch.optim.Adam(agents.actor.parameters(), lr=1e-3), None)
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    with torch_threads(1):
        for _ in range(1500):
            o = torch.as_tensor(rng.uniform(-1, 1, size=(1, 256, 2)), dtype=torch.float32)
            sac_update(agents, opts, (o, None, None, None, None), lambda b: torch.randn((1, b, 1), generator=gen),
                       gamma=gamma, tau=0.005, target_entropy=-1.0, tune_alpha=False, update_critic=False)
    X = rng.uniform(-0.5, 0.5, size=(400, 2))
    with torch.no_grad():
        U = agents.actor.mean_action(torch.as_tensor(X, dtype=torch.float32)[None])[0].double().numpy()
    K_fit = np.linalg.lstsq(X, U, rcond=None)[0].T
    assert np.allclose(K_fit, K_lqr, rtol=0.05), (K_fit, K_lqr)


def _weights(policy):
    return [p.detach()[policy.member].clone() for p in policy.net.parameters()]


def test_one_seed_of_a_batch_equals_that_seed_trained_alone():
    cfg = SACConfig(steps=70, **TINY)
    alone = sac("pendulum-swingup", cfg, seeds=[3])
    batch = sac("pendulum-swingup", cfg, seeds=[5, 3, 7])
    for a, b in zip(_weights(alone.policies[0]), _weights(batch.policies[1])):
        assert torch.equal(a, b)
    assert alone.curve(3) == batch.curve(3)
    assert batch.curve(5) != batch.curve(3)  # the agents are not copies


def test_same_seed_same_curve_and_weights():
    cfg = SACConfig(steps=50, **TINY)
    a, b = sac("pendulum-swingup", cfg, seeds=[1]), sac("pendulum-swingup", cfg, seeds=[1])
    assert [no_wall(e) for e in a.evals] == [no_wall(e) for e in b.evals]
    for x, y in zip(_weights(a.policies[0]), _weights(b.policies[0])):
        assert torch.equal(x, y)


def no_wall(e):
    import dataclasses

    return dataclasses.replace(e, wall_s=0.0)


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path):
    cfg = SACConfig(steps=80, **TINY)
    full = sac("pendulum-swingup", cfg, seeds=[0, 2], out=str(tmp_path / "full"))

    def stop(t):
        if t == 57:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as e:
        sac("pendulum-swingup", cfg, seeds=[0, 2], out=str(tmp_path / "cut"), on_step=stop)
    assert e.value.partial.interrupted and e.value.partial.env_steps == 57
    resumed = sac("pendulum-swingup", cfg, seeds=[0, 2], out=str(tmp_path / "cut"), resume=True)
    assert resumed.resumed_from == 57
    for k in range(2):
        for x, y in zip(_weights(full.policies[k]), _weights(resumed.policies[k])):
            assert torch.equal(x, y)
    assert [(e.seed, e.env_steps, e.returns) for e in full.evals] == \
        [(e.seed, e.env_steps, e.returns) for e in resumed.evals]
    # the saved policies are the trained ones
    from recede.envs import get_task

    p = load_policy(str(tmp_path / "cut" / "seed_2"), get_task("pendulum-swingup"))
    X = np.random.default_rng(0).normal(size=(10, 2))
    assert np.array_equal(p.act_batch(X), full.policies[1].act_batch(X))


def test_resume_longer_continues_the_run(tmp_path):
    short = sac("pendulum-swingup", SACConfig(steps=40, **TINY), seeds=[0], out=str(tmp_path / "a"))
    more = sac("pendulum-swingup", SACConfig(steps=70, **TINY), seeds=[0], out=str(tmp_path / "a"), resume=True)
    full = sac("pendulum-swingup", SACConfig(steps=70, **TINY), seeds=[0])
    assert short.env_steps == 40 and more.resumed_from == 40 and more.env_steps == 70
    for x, y in zip(_weights(full.policies[0]), _weights(more.policies[0])):
        assert torch.equal(x, y)


def test_bad_input_is_refused_by_name(tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"steps must be an int >= 1, got -5"):
        SACConfig(steps=-5)
    with pytest.raises(InvalidArgumentError, match=r"tau must be a number in \(0, 1\], got 0"):
        SACConfig(tau=0)
    with pytest.raises(InvalidArgumentError, match=r"seeds must be distinct, got \[1, 1\]"):
        sac("pendulum-swingup", SACConfig(steps=5), seeds=[1, 1])
    with pytest.raises(InvalidArgumentError, match="resume: no checkpoint at"):
        sac("pendulum-swingup", SACConfig(steps=5), out=str(tmp_path / "none"), resume=True)
    sac("pendulum-swingup", SACConfig(steps=30, **TINY), out=str(tmp_path / "r"))
    with pytest.raises(InvalidArgumentError, match=r"other options: batch_size=16 \(now 8\)"):
        sac("pendulum-swingup", SACConfig(steps=40, **{**TINY, "batch_size": 8}), out=str(tmp_path / "r"),
            resume=True)
    with pytest.raises(InvalidArgumentError, match="for task 'pendulum-swingup', not 'cartpole-swingup'"):
        sac("cartpole-swingup", SACConfig(steps=40, **TINY), out=str(tmp_path / "r"), resume=True)
    (tmp_path / "r" / "checkpoint" / "agents.safetensors").write_bytes(b"garbage")
    with pytest.raises(InvalidArgumentError, match="checksum does not match"):
        sac("pendulum-swingup", SACConfig(steps=40, **TINY), out=str(tmp_path / "r"), resume=True)


def test_training_in_a_model_env_of_the_tasks_own_model_repeats_the_real_run():
    from recede.envs import get_task

    task = get_task("pendulum-swingup")
    cfg = SACConfig(steps=60, **TINY)
    real = sac(task, cfg, seeds=[4])
    model = sac(task, cfg, seeds=[4], model=task.dynamics())
    X = np.random.default_rng(0).normal(size=(20, 2))
    assert np.allclose(real.policies[0].act_batch(X), model.policies[0].act_batch(X), atol=1e-5)
    assert [e.returns for e in real.evals] == [e.returns for e in model.evals] or np.allclose(
        [e.returns for e in real.evals], [e.returns for e in model.evals], atol=1e-4)


def test_exploring_starts_spread_every_angle_over_the_circle():
    import scipy.stats

    from recede.envs import get_task
    from recede.policy_learning.common import exploring_start

    task = get_task("cartpole-swingup")
    draw = exploring_start(task)
    rng = np.random.default_rng(0)
    X = np.array([draw(rng) for _ in range(2000)])
    assert scipy.stats.kstest(X[:, 1], scipy.stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 1e-3  # the angle
    lo = np.array(task.initial_state) - np.array(task.initial_spread)
    hi = np.array(task.initial_state) + np.array(task.initial_spread)
    for d in (0, 2, 3):  # the rest stays in the task's own start box
        assert lo[d] <= X[:, d].min() and X[:, d].max() <= hi[d]
    with pytest.raises(InvalidArgumentError, match="exploring_starts needs an analytic task"):
        exploring_start(get_task("Hopper-v5"))
    with pytest.raises(InvalidArgumentError, match="exploring_starts applies to training in the real env"):
        sac(task, SACConfig(steps=5, exploring_starts=True), model=task.dynamics())
