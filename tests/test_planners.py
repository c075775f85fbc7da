"""Sampling planners against closed-form optima, determinism, bounds and the nominal rule."""

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from recede import CEM, FunctionCost, Problem, QuadraticCost, RandomShooting, Status, make_planner
from recede.errors import InvalidArgumentError, UnknownNameError
from recede.models.linear import LinearDynamics
from recede.planners._kernels import elite_refit, sample_gaussian, sample_uniform


def integrator(low=-1.0, high=1.0):
    return LinearDynamics([[1.0]], [[1.0]], action_low=[low], action_high=[high])


def terminal_reach_problem(H=10, lam=0.5, g=3.0):
    """x_{t+1} = x_t + u_t, x0 = 0, cost (x_H - g)^2 + lam sum u^2.

    By symmetry u_t = g / (H + lam) and the optimal cost is g^2 lam / (H + lam)."""
    cost = QuadraticCost(Q=[0.0], R=[2 * lam], Qf=[2.0], x_goal=[g])
    return Problem(integrator(), cost, H), g * g * lam / (H + lam), g / (H + lam)


def test_cem_reaches_closed_form_optimum():
    problem, optimum, u_star = terminal_reach_problem()
    plan = CEM(problem, samples=400, iterations=30, min_std=0.0).plan(np.zeros(1), rng=0)
    assert plan.cost == pytest.approx(optimum, rel=1e-3)
    np.testing.assert_allclose(plan.actions, u_star, atol=2e-3)
    assert plan.status is Status.MAX_ITERATIONS and plan.iterations == 30
    # the plan's states are the model's rollout of its actions, and its cost is their cost
    X = problem.rollout(np.zeros(1), plan.actions[None])
    np.testing.assert_array_equal(plan.states, X[0])
    assert problem.evaluate(np.zeros(1), plan.actions[None])[0] == plan.cost


def test_cem_attains_clipped_optimum_on_the_bound():
    # cost sum_t (u_t - 1.5)^2 with u in [-1, 1]: optimum u = 1 exactly, cost H * 0.25
    H = 4
    cost = QuadraticCost(Q=[0.0], R=[2.0], u_goal=[1.5])
    problem = Problem(integrator(), cost, H)
    plan = CEM(problem, samples=200, iterations=10).plan(np.zeros(1), rng=1)
    assert plan.cost == pytest.approx(H * 0.25, abs=1e-12)
    assert np.all(plan.actions == 1.0)


def test_random_shooting_keeps_the_best_sample():
    # cost (u_0 - 0.3)^2 + (u_1 + 0.6)^2, optimum 0: the best of N uniform samples, checked
    # against a numpy evaluation of the very samples drawn
    target = np.array([0.3, -0.6])
    problem = Problem(integrator(), FunctionCost(lambda X, U: (U[..., 0] - target) ** 2), 2)
    planner = RandomShooting(problem, samples=20000)
    plan = planner.plan(np.zeros(1), rng=3)
    reference = ((planner._U[..., 0] - target) ** 2).sum(axis=1)
    assert plan.cost == reference.min() < 2e-3
    np.testing.assert_array_equal(plan.actions, planner._U[np.argmin(reference)])


@pytest.mark.parametrize("name", ["cem", "random", "icem", "mppi"])
def test_same_seed_same_plan_bit_for_bit(name):
    problem, _, _ = terminal_reach_problem()
    a = make_planner(name, problem, samples=64).plan(np.zeros(1), rng=42)
    b = make_planner(name, problem, samples=64).plan(np.zeros(1), rng=np.random.default_rng(42))
    c = make_planner(name, problem, samples=64).plan(np.zeros(1), rng=43)
    assert a.actions.tobytes() == b.actions.tobytes() and a.cost == b.cost
    assert a.actions.tobytes() != c.actions.tobytes()


def test_nominal_as_sample_zero_makes_cost_non_increasing():
    # a nonlinear deterministic problem where CEM's mean wanders: the best-so-far never worsens
    cost = FunctionCost(lambda X, U: np.sin(3 * X[..., 0]) + 0.1 * U[..., 0] ** 2,
                        lambda XT: (XT[..., 0] - 2.0) ** 2)
    problem = Problem(integrator(), cost, 15)
    rng = np.random.default_rng(0)
    warm = rng.uniform(-1, 1, size=(15, 1))
    warm_cost = problem.evaluate(np.zeros(1), warm[None])[0]
    plan = CEM(problem, samples=16, iterations=12, elite_fraction=0.25, smoothing=0.0).plan(
        np.zeros(1), warm_start=warm, rng=5)
    trace = np.array([it.cost for it in plan.trace])
    assert np.all(np.diff(trace) <= 0.0)
    assert plan.cost == trace[-1] <= warm_cost
    # each iteration's best sample includes the nominal, so it is never above the previous best
    sample_best = np.array([it.sample_best for it in plan.trace])
    assert np.all(sample_best[1:] <= trace[:-1])


def test_nan_and_inf_costs_never_win_and_all_diverged_is_reported():
    # cost is NaN whenever any action is positive: the plan must keep every action <= 0
    cost = FunctionCost(lambda X, U: np.where(U[..., 0] > 0, np.nan, (U[..., 0] + 0.5) ** 2))
    problem = Problem(integrator(), cost, 3)
    plan = CEM(problem, samples=100, iterations=5).plan(np.zeros(1), rng=0)
    assert np.isfinite(plan.cost) and np.all(plan.actions <= 0)
    all_bad = Problem(integrator(), FunctionCost(lambda X, U: np.full(U.shape[:2], np.inf)), 3)
    plan = CEM(all_bad, samples=10, iterations=2).plan(np.zeros(1), rng=0)
    assert plan.status is Status.DIVERGED and plan.cost == np.inf
    costs = Problem(integrator(), FunctionCost(lambda X, U: np.full(U.shape[:2], -np.inf)), 1).evaluate(
        np.zeros(1), np.zeros((2, 1, 1)))
    assert np.all(costs == np.inf)


@settings(max_examples=40, deadline=None)
@given(
    low=st.floats(-5, 4), width=st.floats(0.0, 3.0), H=st.integers(1, 8), samples=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1), warm_scale=st.floats(0, 20),
    planner=st.sampled_from(["cem", "random", "icem", "mppi"]),
)
def test_actions_never_leave_the_bounds(low, width, H, samples, seed, warm_scale, planner):
    samples = max(samples, 2) if planner == "icem" else samples
    high = low + width
    dyn = LinearDynamics([[1.0]], [[1.0]], action_low=[low], action_high=[high])
    problem = Problem(dyn, QuadraticCost(Q=[1.0], R=[0.1], x_goal=[7.0]), H)
    warm = np.random.default_rng(seed).normal(size=(H, 1)) * warm_scale  # often outside the box
    p = make_planner(planner, problem, samples=samples, iterations=2)
    plan = p.plan(np.zeros(1), warm_start=warm, rng=seed)
    assert np.all(plan.actions >= low) and np.all(plan.actions <= high)
    assert np.all(p._U >= low) and np.all(p._U <= high)  # every candidate, not only the winner


def test_gaussian_sampler_statistics_and_determinism():
    H, nu, B = 3, 2, 20000
    mean = np.array([[0.0, 1.0], [2.0, -1.0], [0.5, 0.0]])
    std = np.array([[1.0, 0.5], [0.1, 2.0], [1.0, 1.0]])
    low, high = np.full(nu, -100.0), np.full(nu, 100.0)
    out = np.zeros((B, H, nu))
    sample_gaussian(mean, std, low, high, 123, out, 1)
    assert np.all(out[0] == 0.0)  # rows before `start` untouched
    np.testing.assert_allclose(out[1:].mean(0), mean, atol=4 * std.max() / np.sqrt(B))
    np.testing.assert_allclose(out[1:].std(0), std, rtol=0.03)
    again = np.zeros_like(out)
    sample_gaussian(mean, std, low, high, 123, again, 1)
    assert out.tobytes() == again.tobytes()
    # the whole distribution, not only two moments: Kolmogorov-Smirnov against scipy's normal
    z = ((out[1:] - mean) / std).ravel()
    assert scipy.stats.kstest(z, "norm").pvalue > 1e-3
    uni = np.zeros((B, H, nu))
    sample_uniform(np.array([-1.0, 2.0]), np.array([1.0, 6.0]), 7, uni, 0)
    assert uni[..., 0].min() >= -1 and uni[..., 1].max() <= 6
    np.testing.assert_allclose(uni.mean(axis=(0, 1)), [0.0, 4.0], atol=0.03)


def test_elite_refit_matches_numpy():
    rng = np.random.default_rng(0)
    U = rng.normal(size=(50, 4, 2))
    costs = rng.normal(size=50)
    mean, std = rng.normal(size=(4, 2)), np.abs(rng.normal(size=(4, 2)))
    m0, s0 = mean.copy(), std.copy()
    best = elite_refit(U, costs, 7, mean, std, 0.3, np.full((4, 2), 0.05))
    elites = U[np.argsort(costs)[:7]]
    np.testing.assert_allclose(mean, 0.3 * m0 + 0.7 * elites.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, np.maximum(0.3 * s0 + 0.7 * elites.std(0), 0.05), rtol=1e-12)
    assert best == np.argmin(costs)


@pytest.mark.parametrize("options, message", [
    ({"samples": 0}, "samples must be an integer >= 1, got 0"),
    ({"elite_fraction": 0.0}, "elite_fraction must be in (0, 1], got 0.0"),
    ({"elite_fraction": 1.5}, "elite_fraction must be in (0, 1], got 1.5"),
    ({"iterations": -2}, "iterations must be an integer >= 1, got -2"),
    ({"smoothing": 1.0}, "smoothing must be in [0, 1), got 1.0"),
    ({"min_std": 0.9}, "min_std must be <= init_std, got min_std=0.9, init_std=0.5"),
    ({"temperature": 1.0}, "planner 'cem' has no option 'temperature'"),
])
def test_bad_planner_options(options, message):
    problem, _, _ = terminal_reach_problem()
    with pytest.raises(InvalidArgumentError) as e:
        make_planner("cem", problem, **options)
    assert message in str(e.value)


def test_bad_problem_and_plan_inputs():
    problem, _, _ = terminal_reach_problem(H=5)
    with pytest.raises(ValueError, match=r"horizon must be >= 1, got 0"):
        Problem(integrator(), problem.cost, 0)
    planner = CEM(problem, samples=8)
    with pytest.raises(ValueError, match=r"x0 must have shape \(1,\), got \(2,\)"):
        planner.plan(np.zeros(2))
    with pytest.raises(ValueError, match=r"x0 must be finite, got nan at index \(0\)"):
        planner.plan(np.array([np.nan]))
    with pytest.raises(ValueError, match=r"U must have shape \(B, 5, 1\), got \(3, 4, 1\)"):
        problem.evaluate(np.zeros(1), np.zeros((3, 4, 1)))
    with pytest.raises(ValueError, match=r"U must be finite, got inf at index \(0, 1, 0\)"):
        problem.evaluate(np.zeros(1), np.array([[[0.0], [np.inf], [0], [0], [0]]]))
    with pytest.raises(ValueError, match=r"warm_start must have shape \(5, 1\), got \(4, 1\)"):
        planner.plan(np.zeros(1), warm_start=np.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"rng must be None, an int seed or a numpy Generator"):
        planner.plan(np.zeros(1), rng="seed")
    with pytest.raises(UnknownNameError, match=r"unknown planner 'ilqg'; known planners: cem, ddp, icem, ilqr, lqr, mcts, mppi, random"):
        make_planner("ilqg", problem)
