"""The Controller and Policy protocols, the runner asking for nothing but act, one episode
function, and planners refusing config= together with options."""

import numpy as np
import pytest

from recede import get_task, make_planner, run_closed_loop
from recede.controllers import MPC, Controller, LQRController, Policy, RandomPolicy
from recede.errors import InvalidArgumentError
from recede.experiments import episode_spec, layer_options, run_episode
from recede.planners import CEM, ICEM, ILQR, MCTS, MPPI, RandomShooting
from recede.planners import CEMConfig, ICEMConfig, ILQRConfig, MCTSConfig, MPPIConfig, RandomShootingConfig


class ActOnly:
    """A controller with nothing but act and reset: u = -x[0] (the runner may ask no more)."""

    def __init__(self):
        self.calls = 0

    def act(self, x):
        self.calls += 1
        return np.array([-x[0]])

    def reset(self, rng=None):
        self.calls = 0


def test_controllers_and_policies_satisfy_the_protocols():
    task = get_task("pendulum-swingup")
    problem = task.problem(5)
    mpc = MPC(make_planner("random", problem, samples=8))
    lqr = LQRController(problem)
    rand = RandomPolicy([-1.0], [1.0], rng=0)
    assert isinstance(mpc, Controller) and not isinstance(mpc, Policy)
    for c in (lqr, rand, ActOnly()):
        assert isinstance(c, Controller)
    assert isinstance(lqr, Policy) and isinstance(rand, Policy)


def test_act_batch_equals_act_row_by_row():
    task = get_task("cartpole-swingup")
    lqr = LQRController(task.problem(5))
    X = np.random.default_rng(0).normal(size=(4, 3, 4))
    U = lqr.act_batch(X)
    assert U.shape == (4, 3, 1)
    np.testing.assert_allclose(U.reshape(-1, 1), [lqr.act(x) for x in X.reshape(-1, 4)], rtol=0, atol=1e-12)
    with pytest.raises(InvalidArgumentError, match=r"X must have shape \(\.\.\., 4\), got \(3, 5\)"):
        lqr.act_batch(np.zeros((3, 5)))
    rand = RandomPolicy([-1.0, 0.0], [1.0, 2.0], rng=3)
    U = rand.act_batch(np.zeros((100, 7)))
    assert U.shape == (100, 2) and np.all(U >= [-1, 0]) and np.all(U <= [1, 2])
    # same seed, same draws as act one at a time
    a, b = RandomPolicy([-1.0], [1.0], rng=5), RandomPolicy([-1.0], [1.0], rng=5)
    np.testing.assert_array_equal(a.act_batch(np.zeros((3, 2)))[:, 0], [b.act(None)[0] for _ in range(3)])


def test_runner_asks_only_act_and_takes_the_period_from_an_argument():
    task = get_task("double-integrator")
    c = ActOnly()
    log = run_closed_loop(task.make_env(), c, steps=4, seed=0)
    assert c.calls == 4 and log.actions.shape == (4, 1)
    np.testing.assert_array_equal(log.actions[:, 0], -log.states[:-1, 0])
    assert np.all(np.isfinite(log.plan_times))
    log = run_closed_loop(task.make_env(), ActOnly(), steps=2, seed=0, pace=True, dt=1e-3)
    assert log.steps == 2
    with pytest.raises(InvalidArgumentError, match="pace=True needs the control period: pass dt="):
        run_closed_loop(task.make_env(), ActOnly(), steps=2, seed=0, pace=True)
    with pytest.raises(InvalidArgumentError, match="dt must be a finite number of seconds > 0, got -1.0"):
        run_closed_loop(task.make_env(), ActOnly(), steps=2, seed=0, pace=True, dt=-1.0)


def test_options_layer_config_then_task_then_user():
    opts = layer_options("cem", "pendulum-swingup", {"iterations": 2})
    assert opts["samples"] == 300 and opts["iterations"] == 2  # task default, then the user's
    assert opts["elite_fraction"] == CEMConfig().elite_fraction  # the config's default
    assert layer_options("cem", "pendulum-swingup", defaults={"samples": 7})["samples"] == 7


def test_run_episode_reproduces_a_hand_built_mpc_loop():
    """The episode function is MPC + run_closed_loop + the task's criterion, nothing more."""
    spec = episode_spec("double-integrator", "random", {"samples": 50}, seed=3, steps=20, horizon=10)
    episode = run_episode(spec)
    task = get_task("double-integrator")
    mpc = MPC(make_planner("random", task.problem(10), **spec.options), rng=3)
    log = run_closed_loop(task.make_env(), mpc, seed=3, steps=20, state_fn=task.state_of)
    np.testing.assert_array_equal(episode.log.actions, log.actions)
    np.testing.assert_array_equal(episode.log.states, log.states)
    assert episode.log.success is None  # 20 of 100 steps: not judged
    assert episode.log.plan_samples == (50,) * 20 and np.all(np.isfinite(episode.log.plan_times))


def test_episode_spec_refuses_bad_arguments_before_any_work():
    with pytest.raises(InvalidArgumentError, match="planner 'cem' has no option 'colour'"):
        episode_spec("double-integrator", "cem", {"colour": 2})
    with pytest.raises(InvalidArgumentError, match="horizon must be >= 1, got 0"):
        episode_spec("double-integrator", "cem", horizon=0)
    with pytest.raises(InvalidArgumentError, match="steps must be an integer >= 1, got 0"):
        episode_spec("double-integrator", "cem", steps=0)


@pytest.mark.parametrize("planner,config", [
    (CEM, CEMConfig()), (ICEM, ICEMConfig()), (MPPI, MPPIConfig()), (RandomShooting, RandomShootingConfig()),
    (MCTS, MCTSConfig()), (ILQR, ILQRConfig()),
])
def test_config_and_options_together_are_refused_naming_both(planner, config):
    problem = get_task("pendulum-swingup").problem(5)
    with pytest.raises(InvalidArgumentError, match=rf"pass either config= or options, not both: got "
                                                   rf"config={type(config).__name__}\(\.\.\.\) and options "
                                                   rf"iterations, samples"):
        planner(problem, config, samples=10, iterations=2)
    with pytest.raises(InvalidArgumentError, match=rf"config must be a {type(config).__name__}, got dict"):
        planner(problem, {"samples": 3})
