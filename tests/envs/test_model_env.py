"""ModelEnv: any recede model as a Gymnasium vector env. Oracles: TaskEnv (analytic tasks), a real
Gymnasium env set to the same state (robots), the model stepped by hand, Gymnasium's own seeding."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils import seeding

from recede.envs import ModelEnv, SingleModelEnv, TaskEnv, get_task
from recede.errors import InvalidArgumentError, UnknownNameError
from recede.models.ensemble import Ensemble, torch_threads

# the cart-pole with 7-step episodes, so that a few steps cross episode boundaries
SHORT_CARTPOLE = dataclasses.replace(get_task("cartpole-swingup"), name="cartpole-short",
                                     episode_steps=7)


def test_equals_task_env_step_for_step_across_truncations():
    """N copies seeded s + i are TaskEnvs reset with seed s + i, and reset() (same stream) after
    each truncation: states, rewards and flags to 1e-12, with actions outside the bounds too."""
    N, seed, steps = 3, 11, 18  # 2.5 episodes of 7 steps
    env = ModelEnv(SHORT_CARTPOLE, N)
    refs = [TaskEnv(SHORT_CARTPOLE) for _ in range(N)]
    _, info = env.reset(seed=seed)
    X = np.array([ref.reset(seed=seed + i)[0] for i, ref in enumerate(refs)])
    np.testing.assert_array_equal(info["state"], X)
    rng = np.random.default_rng(0)
    high = env.single_action_space.high
    ended = 0
    for _ in range(steps):
        U = rng.uniform(-1.5 * high, 1.5 * high, size=(N, 1))
        obs, r, term, trunc, info = env.step(U)
        for i, ref in enumerate(refs):
            x, r_ref, term_ref, trunc_ref, _ = ref.step(U[i])
            assert r[i] == pytest.approx(r_ref, rel=0, abs=1e-12)
            assert (term[i], trunc[i]) == (term_ref, trunc_ref)
            if term_ref or trunc_ref:
                ended += 1
                assert info["_final_obs"][i] and info["_final_info"][i]
                np.testing.assert_allclose(info["final_info"]["state"][i], x, rtol=0, atol=1e-12)
                np.testing.assert_allclose(info["final_obs"][i], SHORT_CARTPOLE.observation(x),
                                           rtol=0, atol=1e-12)
                x, _ = ref.reset()
            np.testing.assert_allclose(info["state"][i], x, rtol=0, atol=1e-12)
            np.testing.assert_allclose(obs[i], SHORT_CARTPOLE.observation(x), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(env.states, info["state"])
    assert ended == 2 * N


def test_given_states_match_task_env():
    env = ModelEnv("cartpole-swingup", 4)
    X0 = np.random.default_rng(3).normal(size=(4, 4)) + [0.0, np.pi, 0.0, 0.0]
    obs, info = env.reset(options={"states": X0})
    np.testing.assert_array_equal(env.states, X0)
    np.testing.assert_array_equal(obs, get_task("cartpole-swingup").observation(X0))
    refs = [TaskEnv("cartpole-swingup") for _ in range(4)]
    for ref, x in zip(refs, X0):
        ref.reset(options={"state": x})
    U = np.random.default_rng(4).uniform(-10, 10, size=(5, 4, 1))
    for u in U:
        _, r, _, _, info = env.step(u)
        for i, ref in enumerate(refs):
            x, r_ref, *_ = ref.step(u[i])
            np.testing.assert_allclose(info["state"][i], x, rtol=0, atol=1e-12)
            assert r[i] == pytest.approx(r_ref, rel=0, abs=1e-12)


def _real_step(x, u, nq):
    """InvertedPendulum-v5 set to state x and stepped with u: observation, reward, terminated."""
    env = gym.make("InvertedPendulum-v5")
    env.reset(seed=0)
    env.unwrapped.set_state(x[:nq], x[nq:])
    obs, r, term, _, _ = env.step(u)
    env.close()
    return obs, r, term


def test_robot_reward_and_termination_equal_the_gymnasium_env():
    env = ModelEnv("InvertedPendulum-v5", 6)
    nq = env.dynamics.nq
    rng = np.random.default_rng(5)
    X0 = np.zeros((6, 4))
    X0[:, 0] = rng.uniform(-0.5, 0.5, 6)
    X0[:, 1] = [0.0, 0.1, -0.19, 0.19, 0.15, -0.05]  # the hinge, some at the edge of |.| <= 0.2
    X0[:, 2:] = rng.normal(scale=[0.5, 2.0], size=(6, 2))
    X0[3, 3], X0[2, 3] = 4.0, -4.0  # falling out of the upright set this step
    env.reset(options={"states": X0})
    U = rng.uniform(-3, 3, size=(6, 1))
    obs, r, term, trunc, info = env.step(U)
    assert term[2] and term[3] and not term[0]
    for i in range(6):
        o_ref, r_ref, term_ref = _real_step(X0[i], U[i], nq)
        assert (r[i], term[i]) == (r_ref, term_ref)
        mine = info["final_obs"][i] if term[i] else obs[i]
        np.testing.assert_allclose(mine, o_ref, rtol=0, atol=1e-9)


def test_robot_start_states_are_the_gymnasium_env_reset():
    env = ModelEnv("InvertedPendulum-v5", 3)
    obs, info = env.reset(seed=20)
    for i in range(3):
        ref = gym.make("InvertedPendulum-v5")
        o_ref, _ = ref.reset(seed=20 + i)
        np.testing.assert_array_equal(obs[i], o_ref)
        np.testing.assert_array_equal(info["state"][i], get_task("inverted-pendulum").state_of(ref))
        ref.close()


class SpyDynamics:
    """The analytic cart-pole, counting calls to step and rollout."""

    def __init__(self):
        self.inner = get_task("cartpole-swingup").dynamics()
        self.nx, self.nu, self.dt = self.inner.nx, self.inner.nu, self.inner.dt
        self.action_low, self.action_high = self.inner.action_low, self.inner.action_high
        self.step_shapes, self.rollouts = [], 0

    def step(self, X, U):
        self.step_shapes.append((X.shape, U.shape))
        return self.inner.step(X, U)

    def rollout(self, x0, U):
        self.rollouts += 1
        return self.inner.rollout(x0, U)


def test_one_batched_dynamics_call_per_step():
    spy = SpyDynamics()
    env = ModelEnv("cartpole-swingup", 5, dynamics=spy, max_episode_steps=4)
    env.reset(seed=0)
    assert spy.step_shapes == []
    for k in range(10):  # crosses two truncations (autoresets call no model)
        env.step(np.zeros((5, 1)))
        assert spy.step_shapes == [((5, 4), (5, 1))] * (k + 1)
    assert spy.rollouts == 0


def test_termination_resets_in_the_same_step():
    """Copy 0 falls and copy 1 does not: copy 0 starts over (from its own seeded stream: where the
    Gymnasium env starts after reset(seed=5)), its final_obs is the model's true next state."""
    env = ModelEnv("InvertedPendulum-v5", 2)
    X0 = np.array([[0.0, 0.19, 0.0, 5.0], [0.0, 0.0, 0.0, 0.0]])
    env.reset(seed=5, options={"states": X0})
    U = np.array([[1.0], [0.0]])
    obs, r, term, trunc, info = env.step(U)
    x_next = env.dynamics.step(X0, U)
    assert list(term) == [True, False] and list(trunc) == [False, False]
    assert list(info["_final_obs"]) == [True, False] and info["final_obs"][1] is None
    np.testing.assert_array_equal(info["final_obs"][0], env.task.observation(x_next[0]))
    np.testing.assert_array_equal(info["final_info"]["state"][0], x_next[0])
    np.testing.assert_array_equal(info["final_info"]["_state"], [True, False])
    ref = gym.make("InvertedPendulum-v5")
    o_ref, _ = ref.reset(seed=5)
    ref.close()
    np.testing.assert_array_equal(obs[0], o_ref)
    np.testing.assert_array_equal(info["state"], env.states)
    np.testing.assert_array_equal(info["state"][1], x_next[1])
    np.testing.assert_array_equal(obs[1], env.task.observation(x_next[1]))


def test_initial_states_are_drawn_from_the_given_rows():
    S = np.array([[0.1, 3.0, 0.0, 0.0], [0.2, 2.0, 0.0, 0.0], [0.3, 1.0, 0.0, 0.0]])
    env = ModelEnv("cartpole-swingup", 6, initial_states=S, max_episode_steps=2)
    _, info = env.reset(seed=30)
    streams = [seeding.np_random(30 + i)[0] for i in range(6)]
    np.testing.assert_array_equal(info["state"], S[[g.integers(3) for g in streams]])
    env.step(np.zeros((6, 1)))
    _, _, _, trunc, info = env.step(np.zeros((6, 1)))
    assert trunc.all()
    np.testing.assert_array_equal(info["state"], S[[g.integers(3) for g in streams]])


def test_same_seed_same_trajectory():
    U = np.random.default_rng(1).uniform(-2.5, 2.5, size=(12, 4, 1))

    def run(seed):
        env = ModelEnv("pendulum-swingup", 4, max_episode_steps=5)
        out = [env.reset(seed=seed)[0]]
        for u in U:
            obs, r, *_ = env.step(u)
            out += [obs, r]
        return out

    a, b, c = run(9), run(9), run(10)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


# the checker's advice (normalised action Box, finite observation bounds), which the Gymnasium
# robots themselves do not follow either
@pytest.mark.filterwarnings("ignore:.*For Box action spaces, we recommend")
@pytest.mark.filterwarnings("ignore:.*A Box observation space m")
def test_single_view_passes_the_env_checker_and_matches_task_env():
    from gymnasium.utils.env_checker import check_env

    env = ModelEnv.single("pendulum-swingup", max_episode_steps=3)
    assert isinstance(env, SingleModelEnv) and isinstance(env, gym.Env)
    check_env(env, skip_render_check=True)
    check_env(SingleModelEnv("InvertedPendulum-v5"), skip_render_check=True)
    ref = TaskEnv("pendulum-swingup")
    obs, info = env.reset(seed=4)
    x_ref, _ = ref.reset(seed=4)
    np.testing.assert_array_equal(info["state"], x_ref)
    for t in range(3):
        obs, r, term, trunc, info = env.step(np.array([1.0]))
        x_ref, r_ref, *_ = ref.step(np.array([1.0]))
        np.testing.assert_allclose(info["state"], x_ref, rtol=0, atol=1e-12)
        assert r == pytest.approx(r_ref, rel=0, abs=1e-12) and trunc == (t == 2)
    with pytest.raises(gym.error.ResetNeeded, match="call reset"):
        env.step(np.array([0.0]))


def test_sb3_sac_trains_on_an_ensemble_model_env():
    """SAC's replay buffer holds the Ensemble's own transitions: next observations equal the model
    stepped from the recorded state and action, rewards the task's stage cost."""
    sb3 = pytest.importorskip("stable_baselines3")
    task = get_task("pendulum-swingup")
    true = task.dynamics()
    model = Ensemble(2, 1, dt=true.dt, action_low=true.action_low, action_high=true.action_high,
                     members=2, hidden=16, layers=2, angle_dims=(0,), seed=0)
    env = SingleModelEnv(task, dynamics=model, max_episode_steps=40)
    agent = sb3.SAC("MlpPolicy", env, learning_starts=50, batch_size=32, seed=0, device="cpu",
                    policy_kwargs={"net_arch": [16, 16]})
    with torch_threads(1):  # tiny networks: a second thread only waits (18 s instead of 1 s here)
        agent.learn(total_timesteps=200)
    assert agent.num_timesteps == 200
    buf = agent.replay_buffer
    n = buf.pos
    obs, nxt = buf.observations[:n, 0], buf.next_observations[:n, 0]
    X = np.stack([np.arctan2(obs[:, 0], obs[:, 1]), obs[:, 2]], axis=1)
    U = agent.policy.unscale_action(buf.actions[:n, 0])
    np.testing.assert_allclose(nxt, task.observation(model.step(X, U)), rtol=0, atol=1e-5)
    cost = task.cost()
    r = [-cost.stage(x, u) for x, u in zip(X, U)]
    np.testing.assert_allclose(buf.rewards[:n, 0], r, rtol=1e-5)
    assert buf.dones[:n, 0].sum() == 200 // 40  # truncations, as SB3 records them


def test_bad_input_names_the_argument():
    with pytest.raises(UnknownNameError, match="unknown task 'no-such-task'"):
        ModelEnv("no-such-task", 2)
    with pytest.raises(InvalidArgumentError, match=r"num_envs must be an integer >= 1, got 0"):
        ModelEnv("pendulum-swingup", 0)
    with pytest.raises(InvalidArgumentError, match=r"max_episode_steps must be an integer >= 1, got -1"):
        ModelEnv("pendulum-swingup", 1, max_episode_steps=-1)
    wrong = Ensemble(3, 1, members=1, hidden=8, layers=1)
    with pytest.raises(InvalidArgumentError, match=(r"dynamics has nx=3, nu=1, but task "
                                                    r"'pendulum-swingup' needs nx=2, nu=1")):
        ModelEnv("pendulum-swingup", 2, dynamics=wrong)
    with pytest.raises(InvalidArgumentError, match=r"dynamics must be a recede Dynamics"):
        ModelEnv("pendulum-swingup", 2, dynamics=object())
    with pytest.raises(InvalidArgumentError, match=r"initial_states must have shape \(M, 2\), got \(3,\)"):
        ModelEnv("pendulum-swingup", 2, initial_states=np.zeros(3))
    env = ModelEnv("pendulum-swingup", 3)
    with pytest.raises(InvalidArgumentError, match=r"options\['states'\] must have shape \(3, 2\), got \(2, 2\)"):
        env.reset(options={"states": np.zeros((2, 2))})
    with pytest.raises(InvalidArgumentError, match=r"options\['states'\] must be finite"):
        env.reset(options={"states": np.full((3, 2), np.nan)})
    with pytest.raises(InvalidArgumentError, match=r"options may hold 'states' only, got \['state'\]"):
        env.reset(options={"state": np.zeros(2)})
    with pytest.raises(InvalidArgumentError, match=r"seed must be an integer or a list of 3 seeds"):
        env.reset(seed=[1, 2])
    with pytest.raises(InvalidArgumentError, match=r"seed must be an integer >= 0 or None, got -1"):
        env.reset(seed=-1)
    with pytest.raises(gym.error.ResetNeeded, match="before reset"):
        env.step(np.zeros((3, 1)))
    env.reset(seed=0)
    with pytest.raises(InvalidArgumentError, match=r"actions must have shape \(3, 1\), got \(3,\)"):
        env.step(np.zeros(3))
    reacher = get_task("reacher")
    true = reacher.dynamics()
    sensing = Ensemble(true.nx, true.nu, members=1, hidden=8, layers=1)
    true.close()
    with pytest.raises(InvalidArgumentError, match=r"task 'reacher' rewards read MuJoCo sensors"):
        ModelEnv(reacher, 2, dynamics=sensing)
