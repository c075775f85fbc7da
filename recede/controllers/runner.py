"""Closed-loop runs: a controller acting in a Gymnasium environment, logged step by step."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from recede.planners.base import check_positive_int


@dataclass(frozen=True)
class RunLog:
    """One closed-loop episode.

    states: (T+1, nx) model states; actions: (T, nu); rewards: (T,) from the environment
    (``-`` the task's running cost for recede tasks); plan_times: (T,) seconds spent planning at
    each step, NaN at steps that applied a stored plan; success: the task's criterion (None if
    the environment reports none).
    """

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    plan_times: np.ndarray
    success: bool | None
    terminated: bool
    plan_samples: tuple = ()  # (T,) sequences evaluated by each step's plan, None where none ran
    plan_status: tuple = ()  # (T,) each step's plan status value ("deadline", ...), None where none

    @property
    def deadline_hits(self) -> int:
        """Plans stopped by their deadline (anytime planning)."""
        return sum(s == "deadline" for s in self.plan_status)

    @property
    def steps(self) -> int:
        return int(self.actions.shape[0])

    @property
    def total_return(self) -> float:
        return float(self.rewards.sum())

    def _plan_ms(self) -> np.ndarray:
        t = self.plan_times[np.isfinite(self.plan_times)]
        return t * 1e3

    @property
    def plan_ms_median(self) -> float:
        t = self._plan_ms()
        return float(np.median(t)) if t.size else float("nan")

    @property
    def plan_ms_p99(self) -> float:
        t = self._plan_ms()
        return float(np.percentile(t, 99)) if t.size else float("nan")

    def summary(self) -> dict:
        return {
            "steps": self.steps,
            "return": self.total_return,
            "success": self.success,
            "terminated": self.terminated,
            "plan_ms_median": self.plan_ms_median,
            "plan_ms_p99": self.plan_ms_p99,
        }

    def to_dict(self) -> dict:
        """Summary plus the per-step log, JSON-ready."""
        d = self.summary()
        d["log"] = {
            "states": self.states.tolist(),
            "actions": self.actions.tolist(),
            "rewards": self.rewards.tolist(),
            "plan_ms": [None if not np.isfinite(t) else t * 1e3 for t in self.plan_times],
        }
        return d


def default_state(env) -> np.ndarray:
    """The unwrapped env's ``state``, or ``[qpos, qvel, act]`` of a MuJoCo env's ``data``."""
    base = env.unwrapped
    if hasattr(base, "state"):
        return np.asarray(base.state, dtype=np.float64)
    data = getattr(base, "data", None)
    if data is not None and hasattr(data, "qpos"):
        from recede.models.mujoco import state_of

        return state_of(data)
    raise AttributeError(f"cannot read a model state from {type(base).__name__}; pass state_fn")


def run_closed_loop(
    env,
    controller,
    *,
    steps: int | None = None,
    seed: int | None = None,
    pace: bool = False,
    on_step: Callable[[int], None] | None = None,
    state_fn: Callable[[object], np.ndarray] | None = None,
) -> RunLog:
    """Run ``controller.act(state)`` in ``env`` until it terminates, truncates or ``steps`` pass.

    env: a Gymnasium env whose ``info`` may carry ``success``. state_fn(env): the model state to
    plan from; by default the unwrapped env's ``state``, or for a Gymnasium MuJoCo env its
    ``[qpos, qvel, act]``. pace: hold each step to the model's control period
    ``dt`` (sleeping the rest), as a real robot would. on_step(t): called after every step
    (progress bars).
    """
    if steps is not None:
        check_positive_int("steps", steps)
    state_fn = state_fn or default_state
    env.reset(seed=seed)
    states, actions, rewards, times = [np.asarray(state_fn(env), dtype=np.float64).copy()], [], [], []
    samples, statuses = [], []
    period = float(getattr(controller.problem.dynamics, "dt", 0.0)) if pace else 0.0
    success, terminated = None, False
    t, deadline = 0, time.perf_counter()
    while steps is None or t < steps:
        u = controller.act(states[-1])
        times.append(controller.last_plan_time)
        plan = getattr(controller, "plan", None)
        fresh = plan is not None and np.isfinite(controller.last_plan_time)
        samples.append(plan.info.get("samples") if fresh else None)
        statuses.append(plan.status.value if fresh else None)
        _, r, terminated, truncated, info = env.step(u)
        actions.append(u)
        rewards.append(float(r))
        states.append(np.asarray(state_fn(env), dtype=np.float64).copy())
        success = info.get("success", success)
        t += 1
        if on_step is not None:
            on_step(t)
        if pace:
            deadline += period
            rest = deadline - time.perf_counter()
            if rest > 0:
                time.sleep(rest)
            else:
                deadline = time.perf_counter()
        if terminated or truncated:
            break
    nu = controller.problem.nu
    return RunLog(
        states=np.array(states),
        actions=np.array(actions).reshape(-1, nu),
        rewards=np.array(rewards),
        plan_times=np.array(times, dtype=np.float64),
        success=None if success is None else bool(success),
        terminated=bool(terminated),
        plan_samples=tuple(samples),
        plan_status=tuple(statuses),
    )
