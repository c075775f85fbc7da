"""One closed-loop episode of a trained policy (``recede run TASK --policy DIR``).

The policy counterpart of :func:`~recede.experiments.episode.run_episode`: the same env, the same
loop (:func:`~recede.experiments.episode.run_controller`) and the same judging, with a
:class:`~recede.policies.NetworkPolicy` (or any controller) in place of the MPC; and its record,
shaped like :func:`~recede.experiments.episode.episode_record`'s so that readers of ``recede run
--json`` read both.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from recede.controllers import Controller, RunLog
from recede.envs import get_task
from recede.experiments.episode import json_safe, run_controller


def policy_label(meta: Mapping[str, Any] | None) -> str:
    """What a policy is called where a planner's name would stand: ``policy:<algo>``
    (``policy`` when its checkpoint names no algorithm)."""
    algo = (meta or {}).get("algo")
    return f"policy:{algo}" if algo else "policy"


def run_policy(task, policy: Controller, *, seed: int, steps: int | None = None,
               render_mode: str | None = None, camera: str | None = None, realtime: bool = False,
               on_step: Callable[[int, Any], None] | None = None) -> RunLog:
    """Run ``policy`` (acting on model states) for ``steps`` steps (default: the task's episode)
    in a fresh env of ``task`` reset with ``seed``, judged by the task. ``render_mode`` and
    ``camera`` go to ``task.make_env``; ``realtime`` holds every step to the model's control
    period; ``on_step(t, env)`` runs after every step. Ctrl-C raises
    :class:`~recede.errors.Interrupted` with the log of the steps completed."""
    task = get_task(task)
    env = task.make_env(render_mode=render_mode, camera=camera)
    try:
        policy.reset(seed)
        return run_controller(task, env, policy, seed=seed, steps=steps, pace=realtime,
                              dt=float(task.dynamics().dt),
                              on_step=None if on_step is None else (lambda t: on_step(t, env)))
    finally:
        env.close()


def policy_record(task, log: RunLog, *, policy: str, meta: Mapping[str, Any] | None, seed: int,
                  realtime: bool = False) -> dict:
    """The policy run as a JSON-ready dict: the keys of ``episode_record`` (``planner`` reads
    :func:`policy_label`; ``horizon`` and ``deadline_ms`` are None, ``options`` the training
    config), plus ``policy`` (the checkpoint's path) and ``policy_meta`` (what trained it)."""
    task = get_task(task)
    meta = dict(meta or {})
    return json_safe({
        "task": task.name,
        "gym_id": task.gym_id,
        "planner": policy_label(meta),
        "policy": policy,
        "policy_meta": meta,
        "seed": seed,
        "horizon": None,
        "replan_every": 1,
        "options": dict(meta.get("config") or {}),
        "deadline_ms": None,
        "realtime": realtime,
        **log.to_dict(),
    })
