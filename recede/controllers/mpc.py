"""Receding-horizon control: plan from the current state, apply the first actions, plan again."""

from __future__ import annotations

import inspect
import math
import time

import numpy as np

from recede.errors import InvalidArgumentError
from recede.models.base import as_state
from recede.planners.base import Planner, as_generator, check_positive_int, shift_actions
from recede.problem import Plan


class MPC:
    """Model-predictive controller around any planner.

    Every ``replan_every`` calls to :meth:`act` it re-plans from the measured state, warm-started
    (``warm_start=True``) with the previous plan shifted by the steps executed since. Between
    replans it applies the stored plan, with feedback ``u = u_bar + k + K (x [-] x_bar)`` when the
    plan carries gains (``x [-] x_bar = dynamics.diff(x_bar, x)`` where the model defines it, else
    ``x - x_bar``), clipped to the action bounds. ``rng`` (seed or Generator) drives every
    plan, so the same seed reproduces the same run.

    ``time_budget`` (seconds): every replan gets the deadline "now + time_budget" and an anytime
    planner returns what it has by then (``Status.DEADLINE``). With ``run_closed_loop(pace=True)``
    and a budget below the model's ``dt`` the loop runs at a fixed control period. Before a
    warm-started replan the controller tells the planner how many steps were applied
    (``planner.advance(n)``, for planners that keep more than the plan between calls).
    """

    def __init__(self, planner: Planner, *, replan_every: int = 1, warm_start: bool = True, rng=None,
                 time_budget: float | None = None):
        check_positive_int("replan_every", replan_every)
        if time_budget is not None:
            if isinstance(time_budget, bool) or not isinstance(time_budget, (int, float)) \
                    or not (0 < time_budget < math.inf):
                raise InvalidArgumentError(
                    f"time_budget must be a finite number of seconds > 0, got {time_budget!r}")
            if "deadline" not in inspect.signature(planner.plan).parameters:
                raise InvalidArgumentError(
                    f"time_budget needs an anytime planner (plan(..., deadline=)); "
                    f"{type(planner).__name__} is not one")
        self.planner = planner
        self.problem = planner.problem
        self.replan_every = int(replan_every)
        self.warm_start = bool(warm_start)
        self.time_budget = None if time_budget is None else float(time_budget)
        diff = getattr(self.problem.dynamics, "diff", None)
        # the feedback's state error, in tangent space (ndx) for models with manifold states
        self._diff = diff if diff is not None else (lambda x0, x1: x1 - x0)
        self.reset(rng)

    def reset(self, rng=None) -> None:
        """Forget the previous plan; reseed when ``rng`` is given."""
        self._rng = as_generator(rng)
        self.plan: Plan | None = None
        self._since = 0
        self.last_plan_time = float("nan")  # seconds spent in the last planner call (NaN if none)

    def act(self, x) -> np.ndarray:
        """x: (nx,) -> action (nu,) inside the bounds."""
        x = as_state(x, self.problem.nx, "x")
        H = self.problem.horizon
        if self.plan is None or self._since >= min(self.replan_every, H):
            t0 = time.perf_counter()
            warm, options = None, {}
            if self.warm_start and self.plan is not None:
                warm = shift_actions(self.plan.actions, self._since)
                advance = getattr(self.planner, "advance", None)
                if advance is not None:
                    advance(self._since)
            if self.time_budget is not None:
                options["deadline"] = t0 + self.time_budget
            self.plan = self.planner.plan(x, warm_start=warm, rng=self._rng, **options)
            self.last_plan_time = time.perf_counter() - t0
            self._since = 0
        else:
            self.last_plan_time = float("nan")
        t, p = self._since, self.plan
        u = p.actions[t].copy()
        if p.K is not None:
            u += p.K[t] @ self._diff(p.states[t], x)
            if p.k is not None:
                u += p.k[t]
        self._since += 1
        return np.clip(u, self.problem.action_low, self.problem.action_high)
