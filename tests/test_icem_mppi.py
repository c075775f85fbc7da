"""iCEM, MPPI and anytime planning, against closed forms computed from the very samples drawn.

A ``FunctionCost`` that records every batch it is asked to score gives the test the samples and
their costs through the public interface; the oracles (path-integral averages, elite sets,
Savitzky-Golay filters, periodogram slopes) are then computed here with numpy and scipy.
"""

import time

import numpy as np
import pytest
import scipy.signal

from recede import ICEM, MPC, MPPI, FunctionCost, Problem, QuadraticCost, Status, make_planner
from recede.errors import InvalidArgumentError
from recede.models.linear import LinearDynamics
from recede.planners import colored_noise


class Recorder:
    """A cost over actions only, recording every batch (U, costs) it scores."""

    def __init__(self, f):
        self.f, self.batches = f, []

    def __call__(self, X, U):
        c = self.f(U)
        self.batches.append((U.copy(), c.sum(axis=1)))
        return c


def action_problem(f, H=6, nu=1, low=-1.0, high=1.0):
    nx = 1
    dyn = LinearDynamics(np.eye(nx), np.zeros((nx, nu)), action_low=[low] * nu, action_high=[high] * nu)
    rec = Recorder(f)
    return Problem(dyn, FunctionCost(rec), H), rec


def quad(target):
    return lambda U: ((U - target) ** 2).sum(axis=-1)


# ------------------------------------------------------------------------------------------ MPPI


def path_integral(U, costs, mean, temperature, control_cost, sigma_inv):
    S = costs + control_cost * temperature * np.einsum("ti,ij,btj->b", mean, sigma_inv, U - mean)
    w = np.exp(-(S - S.min()) / temperature)
    w /= w.sum()
    return np.einsum("b,btj->tj", w, U)


@pytest.mark.parametrize("control_cost", [0.0, 1.0])
@pytest.mark.parametrize("temperature", [1e-3, 0.3, 3.0])
def test_mppi_update_is_the_path_integral_average(temperature, control_cost):
    problem, rec = action_problem(quad(0.4), H=5, nu=2, low=-2, high=2)
    warm = np.random.default_rng(1).uniform(-1, 1, (5, 2))
    planner = MPPI(problem, samples=64, temperature=temperature, control_cost=control_cost,
                   noise_std=0.4)
    plan = planner.plan(np.zeros(1), warm_start=warm, rng=3)
    U, costs = rec.batches[0]
    assert U.shape == (64, 5, 2)
    np.testing.assert_array_equal(U[0], warm)  # the nominal's own noise-free sample
    sigma_inv = np.linalg.inv(planner.covariance)
    expected = path_integral(U, costs, warm, temperature, control_cost, sigma_inv)
    np.testing.assert_allclose(plan.actions, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(planner.covariance, np.diag([0.8 ** 2] * 2))
    # the plan's cost is its own evaluated cost, and its states the model's rollout
    assert plan.cost == pytest.approx(problem.evaluate(np.zeros(1), plan.actions[None])[0], rel=1e-12)


def test_mppi_without_the_nominal_sample_draws_every_row():
    problem, rec = action_problem(quad(0.4), H=5)
    warm = np.full((5, 1), 0.25)
    plan = MPPI(problem, samples=32, temperature=0.2, nominal_sample=False, noise_std=0.3).plan(
        np.zeros(1), warm_start=warm, rng=1)
    U, costs = rec.batches[0]
    assert not np.any(np.all(U == warm, axis=(1, 2)))  # no row is the noise-free mean
    expected = path_integral(U, costs, warm, 0.2, 1.0, np.eye(1) / 0.3 ** 2)
    np.testing.assert_allclose(plan.actions, expected, rtol=1e-10, atol=1e-12)


def test_mppi_temperature_limits_best_sample_and_mean():
    problem, rec = action_problem(quad(0.3), H=4)
    cold = MPPI(problem, samples=200, temperature=1e-9, control_cost=0.0).plan(np.zeros(1), rng=0)
    U, costs = rec.batches[0]
    np.testing.assert_allclose(cold.actions, U[np.argmin(costs)], atol=1e-12)
    rec.batches.clear()
    hot = MPPI(problem, samples=200, temperature=1e9, control_cost=0.0).plan(np.zeros(1), rng=0)
    U, _ = rec.batches[0]
    np.testing.assert_allclose(hot.actions, U.mean(axis=0), atol=1e-6)


def test_mppi_full_covariance_is_sampled():
    cov = np.array([[0.09, 0.06], [0.06, 0.16]])
    problem, rec = action_problem(quad(0.0), H=3, nu=2, low=-100, high=100)
    MPPI(problem, samples=20001, covariance=cov.tolist()).plan(np.zeros(1), rng=2)
    eps = rec.batches[0][0][1:].reshape(-1, 2)  # around the zero nominal
    np.testing.assert_allclose(np.cov(eps.T), cov, atol=0.004)
    np.testing.assert_allclose(eps.mean(0), 0.0, atol=0.005)


def test_mppi_anneals_the_noise_across_iterations():
    problem, rec = action_problem(quad(0.0), H=4, low=-100, high=100)
    MPPI(problem, samples=4001, iterations=3, anneal=0.5, noise_std=0.02).plan(np.zeros(1), rng=6)
    for i, (U, _) in enumerate(rec.batches[:3]):
        eps = U[1:] - U[0]  # row 0 is that iteration's mean
        assert eps.std() == pytest.approx(0.02 * 100 * 0.5 ** i, rel=0.03)


def test_mppi_update_filter_and_smoothing():
    problem, rec = action_problem(quad(0.2), H=9)
    warm = np.linspace(-0.5, 0.5, 9)[:, None]
    planner = MPPI(problem, samples=50, temperature=0.05, control_cost=0.0, filter_window=5,
                   filter_order=2, smoothing=0.25)
    plan = planner.plan(np.zeros(1), warm_start=warm, rng=4)
    U, costs = rec.batches[0]
    raw = path_integral(U, costs, warm, 0.05, 0.0, np.eye(1))
    filtered = warm + scipy.signal.savgol_filter(raw - warm, 5, 2, axis=0, mode="interp")
    expected = 0.25 * warm + 0.75 * np.clip(filtered, -1, 1)
    np.testing.assert_allclose(plan.actions, expected, rtol=1e-10, atol=1e-12)


def test_mppi_iterations_move_the_mean_towards_the_optimum():
    problem, _ = action_problem(quad(0.6), H=5)
    plan = MPPI(problem, samples=200, iterations=20, temperature=0.01, control_cost=0.0).plan(
        np.zeros(1), rng=0)
    np.testing.assert_allclose(plan.actions, 0.6, atol=0.05)
    assert all(np.isfinite(it.ess) and 1 <= it.ess <= 200 for it in plan.trace)


# ------------------------------------------------------------------------------------------ iCEM


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0, 3.0])
def test_colored_noise_power_spectrum_slope(beta):
    H = 256
    y = colored_noise(beta, 400, H, 2, seed=11)
    assert y.shape == (400, H, 2)
    assert y.var() == pytest.approx(1.0, rel=0.1 if beta < 2.5 else 0.3)
    f = np.fft.rfftfreq(H)[1:]
    power = (np.abs(np.fft.rfft(y, axis=1)) ** 2).mean(axis=(0, 2))[1:]
    slope = np.polyfit(np.log(f), np.log(power), 1)[0]
    assert abs(slope + beta) < 0.2
    np.testing.assert_array_equal(y, colored_noise(beta, 400, H, 2, seed=11))


def elite_means(batches, n_elite, smoothing, start):
    """The iCEM/CEM mean after each refit, recomputed from the recorded batches (stable sort)."""
    mean, means = np.array(start, dtype=float), []
    for U, costs in batches:
        elites = U[np.argsort(costs, kind="mergesort")[:n_elite]]
        mean = smoothing * mean + (1 - smoothing) * elites.mean(axis=0)
        means.append(mean)
    return means


def test_icem_population_decay_kept_elites_and_mean():
    problem, rec = action_problem(quad(-0.3), H=5)
    planner = ICEM(problem, samples=100, iterations=4, elite_fraction=0.1, decay=1.5,
                   keep_elites=0.5, add_mean=True)
    plan = planner.plan(np.zeros(1), rng=0)
    batches = rec.batches[:4]
    sizes = [U.shape[0] for U, _ in batches]
    assert sizes == [100, 67, 44, 30] == [planner.population(i) for i in range(4)]
    assert plan.info["samples"] == sum(sizes) == planner.samples_per_plan
    every = np.concatenate([U for U, _ in batches])
    costs = np.concatenate([c for _, c in batches])
    ends = np.cumsum(sizes)
    for i in range(1, 4):
        U0, c0 = batches[i - 1]
        U1 = batches[i][0]
        # row 0 is the best sequence of every batch so far; rows 1..5 the previous batch's elites
        np.testing.assert_array_equal(U1[0], every[np.argmin(costs[: ends[i - 1]])])
        np.testing.assert_array_equal(U1[1:6], U0[np.argsort(c0, kind="mergesort")[:5]])
    # the last iteration evaluates the mean refit after the third batch, right after the elites
    mean = elite_means(batches[:3], 10, 0.1, np.zeros((5, 1)))[-1]
    np.testing.assert_allclose(batches[3][0][6], mean, rtol=1e-12, atol=1e-15)
    # the plan is the best sequence ever evaluated
    np.testing.assert_array_equal(plan.actions, every[np.argmin(costs)])
    assert plan.cost == costs.min()


def test_icem_carries_shifted_elites_to_the_next_plan():
    problem, rec = action_problem(quad(0.1), H=6)
    planner = ICEM(problem, samples=40, iterations=2, elite_fraction=0.25, keep_elites=0.4)
    first = planner.plan(np.zeros(1), rng=0)
    U, c = rec.batches[1]
    kept = U[np.argsort(c, kind="mergesort")[:4]]
    planner.advance(2)
    rec.batches.clear()
    planner.plan(np.zeros(1), warm_start=first.actions, rng=1)
    U0 = rec.batches[0][0]
    shifted = np.concatenate([kept[:, 2:], np.repeat(kept[:, -1:], 2, axis=1)], axis=1)
    np.testing.assert_array_equal(U0[1:5], shifted)
    # without a warm start the planner starts afresh and forgets them
    rec.batches.clear()
    planner.plan(np.zeros(1), rng=1)
    assert not any(np.array_equal(rec.batches[0][0][i], shifted[0]) for i in range(40))


def test_icem_execute_mean_returns_the_evaluated_mean():
    problem, rec = action_problem(quad(0.25), H=4)
    planner = ICEM(problem, samples=60, iterations=3, execute="mean", min_std=0.0)
    plan = planner.plan(np.zeros(1), rng=5)
    batches = rec.batches[:3]
    assert [U.shape[0] for U, _ in batches] == [planner.population(i) for i in range(3)]
    mean = elite_means(batches, planner.config.n_elite, 0.1, np.zeros((4, 1)))[-1]
    np.testing.assert_allclose(plan.actions, mean, rtol=1e-12, atol=1e-15)
    assert plan.cost == pytest.approx(problem.evaluate(np.zeros(1), plan.actions[None])[0], rel=1e-12)


def test_icem_solves_the_closed_form_problem_with_fewer_samples_than_cem():
    # x+ = x + u, cost (x_H - 3)^2 + lam sum u^2, optimum u_t = 3 / (H + lam)
    H, lam, g = 10, 0.5, 3.0
    dyn = LinearDynamics([[1.0]], [[1.0]], action_low=[-1.0], action_high=[1.0])
    problem = Problem(dyn, QuadraticCost(Q=[0.0], R=[2 * lam], Qf=[2.0], x_goal=[g]), H)
    optimum = g * g * lam / (H + lam)
    plan = ICEM(problem, samples=200, iterations=30, decay=1.05, beta=0.0, min_std=0.0,
                keep_elites=0.3).plan(np.zeros(1), rng=0)
    assert plan.cost == pytest.approx(optimum, rel=2e-3)


# ------------------------------------------------------------------------------------- anytime


class SlowCost:
    """0.5 ms per sequence scored (an iteration of 100 samples takes about 50 ms); records when
    each batch starts, so the test knows how long the planner's iterations took."""

    def __init__(self):
        self.starts = []

    def __call__(self, X, U):
        self.starts.append(time.perf_counter())
        time.sleep(5e-4 * U.shape[0])
        return (U ** 2).sum(axis=-1)


@pytest.mark.parametrize("name", ["random", "cem", "icem", "mppi"])
def test_deadline_is_respected_within_one_iteration(name):
    dyn = LinearDynamics([[1.0]], [[1.0]], action_low=[-1.0], action_high=[1.0])
    slow = SlowCost()
    problem = Problem(dyn, FunctionCost(slow), 5)
    options = {"samples": 100, "iterations": 1000}
    if name == "icem":
        options["decay"] = 1.0
    planner = make_planner(name, problem, **options)
    planner.plan(np.zeros(1), rng=0, deadline=time.perf_counter())  # load the kernels first
    slow.starts.clear()
    budget = 0.4
    start = time.perf_counter()
    plan = planner.plan(np.zeros(1), rng=0, deadline=start + budget)
    elapsed = time.perf_counter() - start
    batches = slow.starts[: plan.iterations]
    iteration = max(np.diff([start] + batches + [time.perf_counter()]))  # the longest iteration
    assert plan.status is Status.DEADLINE
    # one scored batch per iteration (MPPI also scores its final mean)
    assert plan.iterations >= 2 and len(slow.starts) == plan.iterations + (name == "mppi")
    assert elapsed <= budget + iteration  # never more than one iteration late
    # a deadline already past: one iteration, still a valid plan
    plan = planner.plan(np.zeros(1), rng=0, deadline=time.perf_counter() - 1.0)
    assert plan.iterations == 1 and plan.status is Status.DEADLINE and np.isfinite(plan.cost)


def test_mpc_time_budget_and_advance():
    dyn = LinearDynamics([[1.0]], [[1.0]], action_low=[-1.0], action_high=[1.0])
    problem = Problem(dyn, FunctionCost(SlowCost()), 5)
    planner = make_planner("icem", problem, samples=20, iterations=1000, decay=1.0)
    planner.plan(np.zeros(1), rng=0, deadline=time.perf_counter())  # load the kernels first
    shifts = []
    advance = planner.advance
    planner.advance = lambda n: (shifts.append(n), advance(n))
    mpc = MPC(planner, replan_every=2, time_budget=0.03)
    for t in range(5):
        mpc.act(np.zeros(1))
        if t % 2 == 0:
            assert mpc.plan.status is Status.DEADLINE
            assert mpc.plan.iterations >= 1
    assert shifts == [2, 2]
    with pytest.raises(InvalidArgumentError, match=r"time_budget must be a finite number of seconds > 0, got 0"):
        MPC(planner, time_budget=0)
    with pytest.raises(InvalidArgumentError, match=r"deadline must be a finite time.perf_counter\(\) instant"):
        planner.plan(np.zeros(1), deadline=float("nan"))


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("name, options, message", [
    ("mppi", {"temperature": 0.0}, "temperature must be a finite number > 0, got 0.0"),
    ("mppi", {"temperature": float("inf")}, "temperature must be a finite number > 0, got inf"),
    ("mppi", {"noise_std": -1.0}, "noise_std must be a number > 0 or one per action dimension, got -1.0"),
    ("mppi", {"noise_std": (0.1, 0.2, 0.3)}, "noise_std must be a number or have 1 entries"),
    ("mppi", {"covariance": [[1.0, 2.0], [2.0, 1.0]]}, "covariance must be symmetric positive definite"),
    ("mppi", {"covariance": [[1.0, 0.0], [0.0, 1.0]]}, "covariance must have shape (1, 1), got (2, 2)"),
    ("mppi", {"anneal": 0.0}, "anneal must be in (0, 1], got 0.0"),
    ("mppi", {"control_cost": -1.0}, "control_cost must be a finite number >= 0, got -1.0"),
    ("mppi", {"filter_window": 4}, "filter_window must be 0 or odd and > filter_order=2, got 4"),
    ("mppi", {"filter_window": 9}, "filter_window must be <= the horizon 6, got 9"),
    ("icem", {"beta": -1.0}, "beta must be a finite number >= 0, got -1.0"),
    ("icem", {"decay": 0.5}, "decay must be a finite number >= 1, got 0.5"),
    ("icem", {"keep_elites": 1.5}, "keep_elites must be in [0, 1], got 1.5"),
    ("icem", {"execute": "median"}, "execute must be one of ['best', 'mean'], got 'median'"),
    ("icem", {"samples": 1}, "samples must be >= 2 for iCEM, got 1"),
])
def test_bad_options(name, options, message):
    problem, _ = action_problem(quad(0.0), H=6)
    with pytest.raises(InvalidArgumentError) as e:
        make_planner(name, problem, **options)
    assert message in str(e.value)
