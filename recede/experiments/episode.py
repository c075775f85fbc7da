"""One closed-loop episode, in one place: layer the options, build, warm up, run, judge, record.

``recede run``, ``recede compare``, ``recede collect`` and ``recede pets`` (and the learners and
sweeps to come) run episodes through this module, so there is one meaning of "an episode of
planner P on task T with seed S":

1. :func:`layer_options`: the planner's config defaults, then the task's defaults for that planner
   (or the caller's own defaults, e.g. PETS'), then the user's options.
2. :func:`episode_spec` validates everything into a frozen, picklable :class:`EpisodeSpec`
   before any work (a bad option fails before a long run, or before a sweep starts).
3. :func:`run_episode` builds env -> problem (the task's model, or a learned one) -> planner ->
   MPC, loads the planner's kernels once with a throw-away generator (so the planning times are
   the running loop's), runs the loop and judges it by the task's criterion.
4. :func:`episode_record` and :func:`summarize` turn episodes into JSON-ready records.

:func:`run_controller` is the part shared with callers that bring their own controller (a random
policy, LQR, a learned policy): run in an env and judge.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from recede.controllers import MPC, Controller, RunLog, run_closed_loop
from recede.costs import ValueTerminalCost
from recede.envs import get_task
from recede.errors import Interrupted, InvalidArgumentError
from recede.planners.base import check_positive_int
from recede.planners.registry import make_planner, planner_config, planner_options
from recede.problem import Problem


def layer_options(planner: str, task=None, overrides: Mapping[str, Any] | None = None, *,
                  defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Planner ``planner``'s options: its config's defaults, then ``defaults`` (by default the
    task's ``planner_defaults[planner]``), then ``overrides``. Unknown planners raise; unknown
    options are refused by :func:`check_options`."""
    options = dict(planner_options(planner))  # raises for an unknown planner
    if defaults is None and task is not None:
        defaults = get_task(task).planner_defaults.get(planner, {})
    options.update(defaults or {})
    options.update(overrides or {})
    return options


def check_options(planner: str, options: Mapping[str, Any]) -> None:
    """Refuse options that planner ``planner`` lacks or that its config rejects, naming them."""
    planner_config(planner, **options)


@dataclass(frozen=True)
class EpisodeSpec:
    """One closed-loop MPC episode, validated and fully resolved (picklable).

    task: the task's name; options: the planner's layered options; steps: the most steps to run
    (the episode may end sooner); time_budget: seconds per plan (anytime planning) or None;
    realtime: hold each step to the model's control period.
    """

    task: str
    planner: str
    options: Mapping[str, Any]
    seed: int
    steps: int
    horizon: int
    replan_every: int = 1
    time_budget: float | None = None
    realtime: bool = False


def episode_spec(task, planner: str = "cem", overrides: Mapping[str, Any] | None = None, *,
                 seed: int = 0, steps: int | None = None, horizon: int | None = None,
                 replan_every: int = 1, time_budget: float | None = None, realtime: bool = False,
                 defaults: Mapping[str, Any] | None = None) -> EpisodeSpec:
    """An :class:`EpisodeSpec` with the options layered (:func:`layer_options`) and every
    argument checked; ``steps`` and ``horizon`` default to the task's."""
    task = get_task(task)
    check_positive_int("seed", seed, minimum=0)
    steps = task.episode_steps if steps is None else steps
    check_positive_int("steps", steps)
    options = layer_options(planner, task, overrides, defaults=defaults)
    check_options(planner, options)
    if horizon is not None and (isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer))
                                or horizon < 1):
        raise InvalidArgumentError(f"horizon must be >= 1, got {horizon!r}")
    horizon = task.horizon_for(planner) if horizon is None else horizon
    check_positive_int("replan_every", replan_every)
    if time_budget is not None and (isinstance(time_budget, bool) or not isinstance(time_budget, (int, float))
                                    or not (0 < time_budget < math.inf)):
        raise InvalidArgumentError(f"time_budget must be a finite number of seconds > 0, got {time_budget!r}")
    return EpisodeSpec(task=task.name, planner=planner, options=options, seed=int(seed),
                       steps=int(steps), horizon=int(horizon), replan_every=int(replan_every),
                       time_budget=None if time_budget is None else float(time_budget),
                       realtime=bool(realtime))


def problem_for(task, horizon: int, model=None, action_bounds=None) -> Problem:
    """The task's planning problem over ``horizon`` steps: on the task's own model, or on
    ``model`` (a learned one) with the task's own cost (built from the task's model, so angle
    wrapping and sensors are the task's) and ``action_bounds`` (``(low, high)``, e.g. the env's;
    default the task model's). Refuses a model whose sizes differ from the task's."""
    task = get_task(task)
    if model is None:
        return task.problem(horizon)
    own = task.dynamics()
    if (model.nx, model.nu) != (own.nx, own.nu):
        raise InvalidArgumentError(
            f"model has nx={model.nx}, nu={model.nu} but task {task.name!r} has nx={own.nx}, "
            f"nu={own.nu}")
    low, high = (own.action_low, own.action_high) if action_bounds is None else action_bounds
    return Problem(model, task.cost(own), int(horizon), action_low=np.asarray(low, dtype=np.float64),
                   action_high=np.asarray(high, dtype=np.float64))


def env_bounds(env) -> tuple[np.ndarray, np.ndarray]:
    """The env's action bounds ``(low, high)`` as float64."""
    space = env.action_space
    return np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)


class PlanRecorder:
    """A :class:`Controller` around an :class:`MPC` that logs, per step, the seconds spent in the
    planner (NaN when the step applied a stored plan), the sequences the plan evaluated and the
    plan's status."""

    def __init__(self, mpc: MPC):
        self.mpc = mpc
        self.plan_times: list[float] = []
        self.samples: list[int | None] = []
        self.status: list[str | None] = []

    def reset(self, rng=None) -> None:
        self.mpc.reset(rng)
        self.plan_times, self.samples, self.status = [], [], []

    def act(self, x) -> np.ndarray:
        u = self.mpc.act(x)
        fresh = math.isfinite(self.mpc.last_plan_time)
        self.plan_times.append(self.mpc.last_plan_time)
        self.samples.append(self.mpc.plan.info.get("samples") if fresh else None)
        self.status.append(self.mpc.plan.status.value if fresh else None)
        return u

    def into(self, log: RunLog) -> RunLog:
        """``log`` with the planner's times, samples and statuses in place of ``act``'s times
        (of its ``log.steps`` steps: an interrupted run may have planned one step more)."""
        n = log.steps
        return dataclasses.replace(log, plan_times=np.array(self.plan_times[:n], dtype=np.float64),
                                   plan_samples=tuple(self.samples[:n]),
                                   plan_status=tuple(self.status[:n]))


def run_controller(task, env, controller: Controller, *, seed: int | None, steps: int | None = None,
                   pace: bool = False, dt: float | None = None,
                   on_step: Callable[[int], None] | None = None) -> RunLog:
    """Run ``controller`` in ``env`` (an env of ``task``) from ``env.reset(seed=seed)`` and judge
    the episode by the task's criterion (``task.judge``) where the env reported none. Ctrl-C
    raises :class:`~recede.errors.Interrupted` with the unjudged log of the steps completed."""
    task = get_task(task)
    log = run_closed_loop(env, controller, steps=steps, seed=seed, pace=pace, dt=dt, on_step=on_step,
                          state_fn=task.state_of)
    if log.success is None:
        judged = task.judge(env, log.terminated, log.steps)
        if judged is not None:
            log = dataclasses.replace(log, success=bool(judged))
    return log


@dataclass(frozen=True)
class Episode:
    """A finished episode: its spec, the judged log and the problem that was planned on."""

    spec: EpisodeSpec
    log: RunLog
    problem: Problem = field(repr=False)


def run_episode(spec: EpisodeSpec, *, model=None, render_mode: str | None = None,
                camera: str | None = None, on_step: Callable[[int, Any], None] | None = None,
                warm_up: bool = True, on_ready: Callable[[], None] | None = None,
                value: Callable[[np.ndarray], np.ndarray] | None = None, proposal_policy=None) -> Episode:
    """Run ``spec``: MPC with its planner on the task's model (or on ``model``, a learned
    dynamics model, acting in the real env), judged by the task. ``value``: a numpy cost-to-go
    ``V(X: (B, nx)) -> (B,)`` (e.g. ``recede.policies.load_value``) as the problem's terminal
    cost (:class:`recede.costs.ValueTerminalCost`). ``render_mode`` and ``camera``
    go to ``task.make_env``. ``on_step(t, env)`` runs after every step (progress bars, video
    frames). ``warm_up``: plan once from the initial state with a throw-away generator and take
    one step of the env with that plan's first action (the env is reset with the episode's seed
    afterwards), so the planner's and the env's kernels are compiled or loaded before the clock
    starts. ``on_ready()`` runs after the warm-up, just before the first step (a progress bar
    starts its clock there). ``proposal_policy``: a policy for the planner's proposals (see
    :func:`~recede.planners.registry.make_planner`; its share is the option ``proposal_share``).

    Ctrl-C once the loop runs raises :class:`~recede.errors.Interrupted` whose ``partial`` is the
    Episode of the steps completed (``log.interrupted`` set, not judged); before it (while
    building or warming up), a plain ``KeyboardInterrupt``."""
    task = get_task(spec.task)
    env = task.make_env(render_mode=render_mode, camera=camera)
    try:
        problem = (task.problem(spec.horizon) if model is None
                   else problem_for(task, spec.horizon, model, env_bounds(env)))
        if value is not None:
            problem = Problem(problem.dynamics, ValueTerminalCost(problem.cost, value, nx=problem.nx),
                              problem.horizon, action_low=problem.action_low,
                              action_high=problem.action_high)
        planner = make_planner(spec.planner, problem, proposal_policy=proposal_policy, **spec.options)
        recorder = PlanRecorder(MPC(planner, replan_every=spec.replan_every, rng=spec.seed,
                                    time_budget=spec.time_budget))
        if warm_up:
            env.reset(seed=spec.seed)
            warm = planner.plan(task.state_of(env), rng=0)
            env.step(np.asarray(warm.actions[0]))  # the loop below resets with the seed again
        if on_ready is not None:
            on_ready()
        try:
            log = run_controller(task, env, recorder, seed=spec.seed, steps=spec.steps,
                                 pace=spec.realtime, dt=float(problem.dynamics.dt),
                                 on_step=None if on_step is None else (lambda t: on_step(t, env)))
        except Interrupted as e:
            partial = Episode(spec=spec, log=recorder.into(e.partial), problem=problem)
            raise Interrupted(partial).with_traceback(e.__traceback__) from None
    finally:
        env.close()
    return Episode(spec=spec, log=recorder.into(log), problem=problem)


# --------------------------------------------------------------------------- records


def json_safe(obj):
    """Non-finite floats -> None (JSON has no NaN/inf); numpy scalars -> Python numbers; enums ->
    their values; tuples -> lists."""
    if isinstance(obj, enum.Enum):
        return json_safe(obj.value)
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalar
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def episode_record(episode: Episode) -> dict:
    """The episode as a JSON-ready dict: task, planner, seed, horizon, options, the loop's
    settings, per-step plan status and samples, the summary and the per-step log."""
    spec, log = episode.spec, episode.log
    task = get_task(spec.task)
    return json_safe({
        "task": task.name,
        "gym_id": task.gym_id,
        "planner": spec.planner,
        "seed": spec.seed,
        "horizon": episode.problem.horizon,
        "replan_every": spec.replan_every,
        "options": dict(spec.options),
        "deadline_ms": None if spec.time_budget is None else spec.time_budget * 1e3,
        "realtime": spec.realtime,
        "plan_status": list(log.plan_status),
        "plan_samples": list(log.plan_samples),
        **log.to_dict(),
    })


def summarize(name: str, logs) -> dict:
    """One row over episodes ``logs`` of one planner: runs, successes, return mean and std (and
    every return), median and p99 planning time in ms, sequences evaluated per plan."""
    returns = np.array([log.total_return for log in logs])
    times = np.concatenate([log.plan_times[np.isfinite(log.plan_times)] for log in logs]) * 1e3
    judged = [log.success for log in logs if log.success is not None]
    samples = [s for log in logs for s in log.plan_samples if s is not None]
    return {
        "planner": name,
        "runs": len(logs),
        "successes": int(sum(judged)) if judged else None,
        "success_rate": float(np.mean(judged)) if judged else None,
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "returns": returns.tolist(),
        "plan_ms_median": float(np.median(times)) if times.size else float("nan"),
        "plan_ms_p99": float(np.percentile(times, 99)) if times.size else float("nan"),
        "samples_per_plan": float(np.mean(samples)) if samples else None,
    }
