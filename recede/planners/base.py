"""What every planner shares: the protocol, randomness, warm starts, and the sampling loop.

``Planner.plan(x0, *, warm_start=None, rng=None) -> Plan`` with ``x0: (nx,)``. ``warm_start`` is
an action sequence ``(H, nu)`` (or a Plan whose actions are used), typically the previous plan
shifted by the steps executed since (see :func:`shift_actions`).
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Protocol, runtime_checkable

import numba
import numpy as np

from recede._options import OptionEnum, as_enum  # noqa: F401  (re-exported)
from recede.errors import InvalidArgumentError
from recede.models.base import as_sequence
from recede.problem import IterLog, Plan, Problem, Status, needs_sensors


@runtime_checkable
class Planner(Protocol):
    problem: Problem

    def plan(self, x0, *, warm_start=None, rng=None) -> Plan: ...


def as_generator(rng) -> np.random.Generator:
    """None -> a fresh unseeded generator; an int seed -> ``default_rng(seed)``; a Generator as is."""
    if rng is None or isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(None if rng is None else int(rng))
    if isinstance(rng, np.random.Generator):
        return rng
    raise InvalidArgumentError(f"rng must be None, an int seed or a numpy Generator, got {rng!r}")


def resolve_config(config_class: type, config, options: dict):
    """A planner's config from ``config=`` or from keyword ``options``, never both: passing both
    is refused, naming both (the options would otherwise be dropped without a word)."""
    if config is not None and options:
        raise InvalidArgumentError(
            f"pass either config= or options, not both: got config={type(config).__name__}(...) and "
            f"options {', '.join(sorted(options))}")
    if config is None:
        return config_class(**options)
    if not isinstance(config, config_class):
        raise InvalidArgumentError(f"config must be a {config_class.__name__}, got {type(config).__name__}")
    return config


def shift_actions(actions: np.ndarray, n: int) -> np.ndarray:
    """Drop the first ``n`` actions of ``(..., H, nu)`` and repeat the last one to keep length H
    (a batch of sequences shifts at once)."""
    a = np.asarray(actions, dtype=np.float64)
    if n <= 0:
        return a.copy()
    n = min(n, a.shape[-2])
    return np.concatenate([a[..., n:, :], np.repeat(a[..., -1:, :], n, axis=-2)], axis=-2)


def initial_actions(warm_start, low: np.ndarray, high: np.ndarray, horizon: int) -> np.ndarray:
    """A planner's starting sequence ``(H, nu)``: the warm start's actions (a Plan or an array),
    or zeros, clipped into ``[low, high]``."""
    if warm_start is None:
        return np.tile(np.clip(0.0, low, high), (horizon, 1))
    w = warm_start.actions if isinstance(warm_start, Plan) else warm_start
    return np.clip(as_sequence(w, low.shape[0], horizon, "warm_start"), low, high)


@contextlib.contextmanager
def kernel_threads(dynamics, *, serial: bool = False):
    """Run the planner's Numba kernels on one thread when the model parallelises its own
    rollouts (``dynamics.parallel_rollouts``, e.g. MuJoCo's rollout pool), or when the planner
    asks (``serial``: its work is serial, e.g. a tree search). Otherwise Numba's
    OpenMP workers, which spin for a while after every parallel kernel so that the next call
    starts at once (see ``recede._threads``), would take the cores from the model's threads:
    that cost a third of MuJoCo's rollout throughput here."""
    if not (serial or getattr(dynamics, "parallel_rollouts", False)):
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def check_positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_number(name: str, value, minimum: float = 0.0, *, strict: bool = False) -> None:
    """A finite real ``value >= minimum`` (``> minimum`` when ``strict``); booleans refused."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float, np.floating))
          and math.isfinite(value) and (value > minimum if strict else value >= minimum))
    if not ok:
        raise InvalidArgumentError(
            f"{name} must be a finite number {'>' if strict else '>='} {minimum:g}, got {value!r}")


def check_std_range(init_std, min_std) -> None:
    """The sampling std options of CEM and iCEM: both finite and >= 0, min_std <= init_std."""
    check_number("init_std", init_std)
    check_number("min_std", min_std)
    if min_std > init_std:
        raise InvalidArgumentError(
            f"min_std must be <= init_std, got min_std={min_std}, init_std={init_std}")


def check_fraction(name: str, value, *, low_open=True, high_open=False) -> None:
    lo_ok = value > 0 if low_open else value >= 0
    hi_ok = value < 1 if high_open else value <= 1
    if not (isinstance(value, (int, float, np.floating)) and lo_ok and hi_ok):
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise InvalidArgumentError(f"{name} must be in {interval}, got {value!r}")


def check_proposal_options(share, std) -> None:
    """The proposal options of the sampling planners: ``proposal_share`` in [0, 1] and
    ``proposal_std`` a finite number >= 0."""
    if isinstance(share, bool) or not isinstance(share, (int, float, np.integer, np.floating)):
        raise InvalidArgumentError(f"proposal_share must be in [0, 1], got {share!r}")
    check_fraction("proposal_share", share, low_open=False)
    check_number("proposal_std", std)


def check_proposal(policy, name: str = "proposal"):
    """``policy`` as a proposal policy: None, or an object with ``act_batch(X: (B, nx)) -> (B, nu)``
    (duck-typed: planners do not import the controllers' ``Policy``)."""
    if policy is not None and not callable(getattr(policy, "act_batch", None)):
        raise InvalidArgumentError(
            f"{name} must be a policy with act_batch(X: (B, nx)) -> (B, nu), got {policy!r}")
    return policy


def policy_rollout(problem: Problem, policy, x0: np.ndarray, n: int,
                   noise: np.ndarray | None = None) -> np.ndarray:
    """``n`` closed-loop action sequences ``(n, H, nu)`` of ``policy`` through the problem's model
    from ``x0``: ``u_t = clip(policy.act_batch(x_t) + noise[:, t])``, ``x_{t+1} = step(x_t, u_t)``,
    one batched ``act_batch`` and ``step`` per time step. NaN actions become the bounds' middle;
    everything is clipped into the bounds. ``noise``: ``(n, H, nu)`` in action units, or None.

    Numba runs on one thread meanwhile: an analytic model's parallel ``step`` kernel, called
    ``H`` times on a few rows between the policy's calls, cost 10 ms a call waking its thread
    pool on a busy machine here, 15 us on one thread."""
    with kernel_threads(problem.dynamics, serial=True):
        return _policy_rollout(problem, policy, x0, n, noise)


def _policy_rollout(problem, policy, x0, n, noise):
    low, high = problem.action_low, problem.action_high
    H, nu = problem.horizon, problem.nu
    mid = 0.5 * (low + high)
    X = np.repeat(np.asarray(x0, dtype=np.float64)[None], n, axis=0)
    U = np.empty((n, H, nu))
    for t in range(H):
        u = np.asarray(policy.act_batch(X), dtype=np.float64)
        if u.shape != (n, nu):
            raise InvalidArgumentError(
                f"proposal policy's act_batch must return shape ({n}, {nu}) for states ({n}, "
                f"{problem.nx}), got {u.shape}")
        if noise is not None:
            u = u + noise[:, t]
        u = np.clip(np.where(np.isnan(u), mid, u), low, high)
        U[:, t] = u
        if t + 1 < H:
            X = np.asarray(problem.dynamics.step(X, u), dtype=np.float64)
    return U


class SamplingPlanner:
    """The loop shared by the sampling planners: sample, evaluate, update, keep the best.

    Row 0 of every batch is the nominal sequence (``center``): for random shooting, CEM and iCEM
    the warm start in the first iteration and the best sequence found so far afterwards, so
    their plan's cost never increases across iterations and a plan is never worse than the warm
    start it was given; for MPPI the current mean, its own noise-free sample. Non-finite costs
    count as +inf. Every action lies inside the problem's bounds.

    Anytime: ``plan(..., deadline=t)`` with ``t`` a ``time.perf_counter()`` instant stops before
    an iteration that would end after ``t`` (judged by the last iteration's duration) and returns
    the plan found so far with ``Status.DEADLINE``. The first iteration always runs.

    Proposals (TD-MPC, LOOP): with a ``proposal`` policy and the config's ``proposal_share`` > 0,
    the last ``min(round(share * population), population - 1)`` rows of each iteration's batch
    (noise rows; row 0, the nominal, always stays; in iCEM a large share also covers the kept
    elites and the mean, which come right after row 0) are the policy's own closed-loop rollouts
    through the problem's model from ``x0`` plus Gaussian action noise (std ``proposal_std``
    times the half-range; the very first proposal noise-free), clipped into the bounds. All of a
    plan's proposals come from one batched rollout at its start (:func:`policy_rollout`), seeded
    by one draw from ``rng`` made only when proposals are on: with share 0 the random stream,
    and so the plan, is exactly that of the planner without proposals. The population, and so
    the samples per plan, is unchanged: the proposals replace samples, they are not added.
    """

    def __init__(self, problem: Problem, config, proposal=None):
        if not isinstance(problem, Problem):
            raise InvalidArgumentError(f"problem must be a recede.Problem, got {type(problem).__name__}")
        self.problem, self.config = problem, config
        H, nu = problem.horizon, problem.nu
        self._low = np.ascontiguousarray(problem.action_low)
        self._high = np.ascontiguousarray(problem.action_high)
        if not (np.all(np.isfinite(self._low)) and np.all(np.isfinite(self._high))):
            raise InvalidArgumentError(
                f"sampling planners need finite action bounds, got action_low={self._low}, "
                f"action_high={self._high}"
            )
        self._mid = 0.5 * (self._low + self._high)
        self._half = 0.5 * (self._high - self._low)
        self._U = np.empty((max(self.population(i) for i in range(config.iterations)), H, nu))
        self.proposal = check_proposal(proposal)
        share = getattr(config, "proposal_share", 0.0)
        if share > 0 and proposal is None:
            raise InvalidArgumentError(
                f"proposal_share={share!r} needs a proposal policy (proposal=...), got none")
        # proposal rows per iteration (the last rows of its batch; row 0 always stays)
        self._n_prop = tuple(min(int(round(share * self.population(i))), self.population(i) - 1)
                             if proposal is not None else 0 for i in range(config.iterations))

    # Subclasses: population(i) -> rows of iteration i; begin(nominal, warm) -> None;
    # center(best) -> row 0; sample(i, seed, U) fills U[1:]; update(U, costs) -> std for the
    # trace; result(x0, best, best_cost) -> (actions, cost, states or None).
    @property
    def samples_per_plan(self) -> int:
        """Sequences evaluated by one plan that runs every iteration."""
        return sum(self.population(i) for i in range(self.config.iterations))

    def population(self, i: int) -> int:
        return self.config.samples

    def advance(self, n: int) -> None:
        """The controller applied ``n`` actions of the last plan: shift what the planner keeps
        between plans (iCEM's elites). The warm start itself is passed to :meth:`plan`."""

    def plan(self, x0, *, warm_start=None, rng=None, deadline: float | None = None) -> Plan:
        if deadline is not None and not (isinstance(deadline, (int, float)) and math.isfinite(deadline)):
            raise InvalidArgumentError(
                f"deadline must be a finite time.perf_counter() instant or None, got {deadline!r}")
        with kernel_threads(self.problem.dynamics):
            return self._plan(x0, warm_start, rng, deadline)

    def _plan(self, x0, warm_start, rng, deadline) -> Plan:
        p = self.problem
        x0 = p.check_x0(x0)
        rng = as_generator(rng)
        H, nu = p.horizon, p.nu
        nominal = initial_actions(warm_start, self._low, self._high, H)
        self.begin(nominal, warm_start is not None)
        best, best_cost, trace = nominal, math.inf, []
        status, last, evaluated = Status.MAX_ITERATIONS, 0.0, 0
        proposals, used = None, 0
        if sum(self._n_prop):  # only then: with share 0 the rng stream is today's
            proposals = self.proposals(x0, int(rng.integers(0, 2**63 - 1)))
        for i in range(self.config.iterations):
            started = time.perf_counter()
            if i and deadline is not None and started + last > deadline:
                status = Status.DEADLINE
                break
            U = self._U[: self.population(i)]
            U[0] = self.center(best)
            self.sample(i, int(rng.integers(0, 2**63 - 1)), U)
            k = self._n_prop[i]
            if k:
                U[U.shape[0] - k:] = proposals[used:used + k]
                used += k
            costs = p.costs(x0, U)
            evaluated += U.shape[0]
            b = int(np.argmin(costs))
            if costs[b] < best_cost:
                best_cost = float(costs[b])
                best = U[b].copy()
            std = self.update(U, costs)
            finite = np.isfinite(costs)
            trace.append(IterLog(
                iteration=i, cost=best_cost, sample_best=float(costs[b]),
                sample_mean=float(costs[finite].mean()) if finite.any() else math.inf,
                finite=int(finite.sum()), std=std, ess=getattr(self, "last_ess", math.nan),
            ))
            last = time.perf_counter() - started
        actions, cost, states = self.result(x0, best, best_cost)
        if states is None:
            states = p.dynamics.rollout(x0, actions[None])[0]
        if not math.isfinite(cost):
            status = Status.DIVERGED
        return Plan(actions=actions, states=states, cost=cost, iterations=len(trace),
                    status=status, trace=tuple(trace), info={"samples": evaluated})

    def proposals(self, x0: np.ndarray, seed: int) -> np.ndarray:
        """Every proposal row of one plan, ``(sum of the iterations' shares, H, nu)``, in the order
        the iterations take them: the policy's closed-loop rollouts from ``x0`` with Gaussian
        action noise of std ``proposal_std`` times the half-range (row 0 noise-free), one batch."""
        p, n = self.problem, sum(self._n_prop)
        noise = np.random.default_rng(seed).standard_normal((n, p.horizon, p.nu))
        noise *= self.config.proposal_std * self._half
        noise[0] = 0.0
        return policy_rollout(p, self.proposal, x0, n, noise)

    def begin(self, nominal: np.ndarray, warm: bool) -> None:
        pass

    def center(self, best: np.ndarray) -> np.ndarray:
        return best

    def update(self, U: np.ndarray, costs: np.ndarray) -> float:
        return float("nan")

    def result(self, x0, best: np.ndarray, best_cost: float):
        return best, best_cost, None

    def _evaluate(self, x0, actions: np.ndarray):
        """Cost and states of one sequence (for planners that execute a mean, not a sample)."""
        p = self.problem
        if needs_sensors(p.cost):
            cost, X = p.evaluate(x0, actions[None], return_states=True)
            return actions, float(cost[0]), X[0]
        # inputs already validated: the fused cost kernel and one rollout for the states
        return actions, float(p.costs(x0, actions[None])[0]), p.dynamics.rollout(x0, actions[None])[0]
