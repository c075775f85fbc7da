"""Closed-loop runs: a controller acting in a Gymnasium environment, logged step by step."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from recede.controllers.base import Controller
from recede.errors import Interrupted, InvalidArgumentError
from recede.planners.base import check_positive_int


@dataclass(frozen=True)
class RunLog:
    """One closed-loop episode.

    states: (T+1, nx) model states; actions: (T, nu); rewards: (T,) from the environment
    (``-`` the task's running cost for recede tasks); plan_times: (T,) seconds spent choosing
    each step's action (``run_closed_loop``: in ``act``; ``recede.experiments``: in the planner,
    NaN at steps that applied a stored plan); success: the task's criterion (None if the
    environment reports none); interrupted: Ctrl-C stopped the run, and the log holds the steps
    completed before it.
    """

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    plan_times: np.ndarray
    success: bool | None
    terminated: bool
    plan_samples: tuple = ()  # (T,) sequences evaluated by each step's plan, None where none ran
    plan_status: tuple = ()  # (T,) each step's plan status value ("deadline", ...), None where none
    interrupted: bool = False

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
            "interrupted": self.interrupted,
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
    if data is not None and hasattr(data, "qpos"):  # MuJoCo's model state, as models.mujoco.state_of
        return np.concatenate([data.qpos, data.qvel, data.act]).astype(np.float64)
    raise AttributeError(f"cannot read a model state from {type(base).__name__}; pass state_fn")


def control_period(env, dt: float | None) -> float:
    """``dt`` when given, else the env's own control period (``env.unwrapped.dt``)."""
    if dt is None:
        dt = getattr(env.unwrapped, "dt", None)
        if dt is None:
            raise InvalidArgumentError(
                f"pace=True needs the control period: pass dt= (the env {type(env.unwrapped).__name__} "
                f"has no dt)")
    if isinstance(dt, bool) or not isinstance(dt, (int, float, np.floating)) or not (0 < dt < math.inf):
        raise InvalidArgumentError(f"dt must be a finite number of seconds > 0, got {dt!r}")
    return float(dt)


def run_closed_loop(
    env,
    controller: Controller,
    *,
    steps: int | None = None,
    seed: int | None = None,
    pace: bool = False,
    dt: float | None = None,
    on_step: Callable[[int], None] | None = None,
    state_fn: Callable[[object], np.ndarray] | None = None,
) -> RunLog:
    """Run ``controller.act(state)`` in ``env`` until it terminates, truncates or ``steps`` pass.

    controller: any :class:`~recede.controllers.base.Controller`; nothing but ``act`` is asked of
    it (reset it, if needed, before the call). env: a Gymnasium env whose ``info`` may carry
    ``success``. state_fn(env): the model state to act on; by default the unwrapped env's
    ``state``, or for a Gymnasium MuJoCo env its ``[qpos, qvel, act]``. pace: hold each step to
    the control period ``dt`` (seconds; default the env's ``dt``), sleeping the rest, as a real
    robot would. on_step(t): called after every step (progress bars). ``plan_times`` logs the
    seconds spent in ``act`` at each step.

    Ctrl-C during the loop raises :class:`~recede.errors.Interrupted` (a ``KeyboardInterrupt``)
    whose ``partial`` is the log of the steps completed, with ``interrupted=True``.
    """
    if steps is not None:
        check_positive_int("steps", steps)
    period = control_period(env, dt) if pace else 0.0
    state_fn = state_fn or default_state
    env.reset(seed=seed)
    states, actions, rewards, times = [np.asarray(state_fn(env), dtype=np.float64).copy()], [], [], []
    success, terminated = None, False
    t, deadline = 0, time.perf_counter()
    nu = int(np.prod(env.action_space.shape))

    def log(n: int, interrupted: bool = False) -> RunLog:
        return RunLog(
            states=np.array(states[: n + 1]),
            actions=np.array(actions[:n]).reshape(-1, nu),
            rewards=np.array(rewards[:n]),
            plan_times=np.array(times[:n], dtype=np.float64),
            success=None if success is None else bool(success),
            terminated=bool(terminated),
            interrupted=interrupted,
        )

    try:
        while steps is None or t < steps:
            t0 = time.perf_counter()
            u = np.asarray(controller.act(states[-1]), dtype=np.float64)
            times.append(time.perf_counter() - t0)
            _, r, done, truncated, info = env.step(u)
            actions.append(u)
            rewards.append(float(r))
            terminated, success = done, info.get("success", success)
            states.append(np.asarray(state_fn(env), dtype=np.float64).copy())  # the step is done
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
    except KeyboardInterrupt as e:
        # the steps whose state was logged; a step cut short leaves at most its action behind
        raise Interrupted(log(len(states) - 1, interrupted=True)).with_traceback(e.__traceback__) from None
    return log(len(states) - 1)
