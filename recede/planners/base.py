"""What every planner shares: the protocol, randomness, warm starts, and the sampling loop.

``Planner.plan(x0, *, warm_start=None, rng=None) -> Plan`` with ``x0: (nx,)``. ``warm_start`` is
an action sequence ``(H, nu)`` (or a Plan whose actions are used), typically the previous plan
shifted by the steps executed since (see :func:`shift_actions`).
"""

from __future__ import annotations

import contextlib
import math
from typing import Protocol, runtime_checkable

import numba
import numpy as np

from recede.errors import InvalidArgumentError
from recede.models.base import as_sequence
from recede.problem import IterLog, Plan, Problem, Status


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


def shift_actions(actions: np.ndarray, n: int) -> np.ndarray:
    """Drop the first ``n`` actions of ``(H, nu)`` and repeat the last one to keep length H."""
    a = np.asarray(actions, dtype=np.float64)
    if n <= 0:
        return a.copy()
    n = min(n, a.shape[0])
    return np.concatenate([a[n:], np.repeat(a[-1:], n, axis=0)])


@contextlib.contextmanager
def kernel_threads(dynamics):
    """Run the planner's Numba kernels on one thread when the model parallelises its own
    rollouts (``dynamics.parallel_rollouts``, e.g. MuJoCo's rollout pool). Otherwise Numba's
    OpenMP workers, which spin for a while after every parallel kernel so that the next call
    starts at once (see ``recede._threads``), would take the cores from the model's threads:
    that cost a third of MuJoCo's rollout throughput here."""
    if not getattr(dynamics, "parallel_rollouts", False):
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


def check_fraction(name: str, value, *, low_open=True, high_open=False) -> None:
    lo_ok = value > 0 if low_open else value >= 0
    hi_ok = value < 1 if high_open else value <= 1
    if not (isinstance(value, (int, float, np.floating)) and lo_ok and hi_ok):
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise InvalidArgumentError(f"{name} must be in {interval}, got {value!r}")


class SamplingPlanner:
    """The loop shared by random shooting and CEM: sample, evaluate, keep the best.

    Row 0 of every batch is the nominal sequence: the warm start in the first iteration, the
    best sequence found so far afterwards. The plan's cost therefore never increases across
    iterations, and a plan is never worse than the warm start it was given. Non-finite costs
    count as +inf. Every action lies inside the problem's bounds.
    """

    def __init__(self, problem: Problem, config):
        if not isinstance(problem, Problem):
            raise InvalidArgumentError(f"problem must be a recede.Problem, got {type(problem).__name__}")
        self.problem, self.config = problem, config
        H, nu = problem.horizon, problem.nu
        self._U = np.empty((config.samples, H, nu))
        self._low = np.ascontiguousarray(problem.action_low)
        self._high = np.ascontiguousarray(problem.action_high)
        if not (np.all(np.isfinite(self._low)) and np.all(np.isfinite(self._high))):
            raise InvalidArgumentError(
                f"sampling planners need finite action bounds, got action_low={self._low}, "
                f"action_high={self._high}"
            )
        self._mid = 0.5 * (self._low + self._high)
        self._half = 0.5 * (self._high - self._low)

    # Subclasses: begin(nominal) -> None, sample(i, seed, U) fills U[1:], update(U, costs) -> std
    def plan(self, x0, *, warm_start=None, rng=None) -> Plan:
        with kernel_threads(self.problem.dynamics):
            return self._plan(x0, warm_start, rng)

    def _plan(self, x0, warm_start, rng) -> Plan:
        p = self.problem
        x0 = p.check_x0(x0)
        rng = as_generator(rng)
        H, nu = p.horizon, p.nu
        if warm_start is None:
            nominal = np.tile(np.clip(0.0, self._low, self._high), (H, 1))
        else:
            w = warm_start.actions if isinstance(warm_start, Plan) else warm_start
            nominal = np.clip(as_sequence(w, nu, H, "warm_start"), self._low, self._high)
        self.begin(nominal)
        U = self._U
        best_cost, trace = math.inf, []
        for i in range(self.config.iterations):
            U[0] = nominal
            self.sample(i, int(rng.integers(0, 2**63 - 1)), U)
            costs = p.costs(x0, U)
            b = int(np.argmin(costs))
            if costs[b] < best_cost:
                best_cost = float(costs[b])
                nominal = U[b].copy()
            std = self.update(U, costs)
            finite = np.isfinite(costs)
            trace.append(IterLog(
                iteration=i, cost=best_cost, sample_best=float(costs[b]),
                sample_mean=float(costs[finite].mean()) if finite.any() else math.inf,
                finite=int(finite.sum()), std=std,
            ))
        states = p.dynamics.rollout(x0, nominal[None])[0]
        status = Status.MAX_ITERATIONS if math.isfinite(best_cost) else Status.DIVERGED
        return Plan(actions=nominal, states=states, cost=best_cost, iterations=len(trace),
                    status=status, trace=tuple(trace))

    def begin(self, nominal: np.ndarray) -> None:
        pass

    def update(self, U: np.ndarray, costs: np.ndarray) -> float:
        return float("nan")
