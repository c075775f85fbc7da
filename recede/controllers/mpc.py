"""Receding-horizon control: plan from the current state, apply the first actions, plan again."""

from __future__ import annotations

import time

import numpy as np

from recede.models.base import as_state
from recede.planners.base import Planner, as_generator, check_positive_int, shift_actions
from recede.problem import Plan


class MPC:
    """Model-predictive controller around any planner.

    Every ``replan_every`` calls to :meth:`act` it re-plans from the measured state, warm-started
    (``warm_start=True``) with the previous plan shifted by the steps executed since. Between
    replans it applies the stored plan, with feedback ``u = u_bar + k + K (x - x_bar)`` when the
    plan carries gains, clipped to the action bounds. ``rng`` (seed or Generator) drives every
    plan, so the same seed reproduces the same run.
    """

    def __init__(self, planner: Planner, *, replan_every: int = 1, warm_start: bool = True, rng=None):
        check_positive_int("replan_every", replan_every)
        self.planner = planner
        self.problem = planner.problem
        self.replan_every = int(replan_every)
        self.warm_start = bool(warm_start)
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
            warm = None
            if self.warm_start and self.plan is not None:
                warm = shift_actions(self.plan.actions, self._since)
            t0 = time.perf_counter()
            self.plan = self.planner.plan(x, warm_start=warm, rng=self._rng)
            self.last_plan_time = time.perf_counter() - t0
            self._since = 0
        else:
            self.last_plan_time = float("nan")
        t, p = self._since, self.plan
        u = p.actions[t].copy()
        if p.K is not None:
            u += p.K[t] @ (x - p.states[t])
            if p.k is not None:
                u += p.k[t]
        self._since += 1
        return np.clip(u, self.problem.action_low, self.problem.action_high)
