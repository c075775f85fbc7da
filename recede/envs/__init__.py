"""Tasks and their Gymnasium environments.

``get_task(name)`` returns a :class:`Task`; every task is also registered with Gymnasium as
``recede/<name>-v0`` once ``recede.envs`` (or ``recede``) is imported::

    import recede, gymnasium
    env = gymnasium.make("recede/cartpole-swingup-v0")

``ModelEnv(task, num_envs, dynamics=...)`` runs any model (analytic, MuJoCo, a learned
``Ensemble``) as a Gymnasium vector env for model-free learners; ``SingleModelEnv`` is its
one-copy ``gymnasium.Env`` view (see :mod:`recede.envs.model_env`).
"""

from __future__ import annotations

import gymnasium as gym

from recede.envs.env import TaskEnv
from recede.envs.model_env import ModelEnv, SingleModelEnv
from recede.envs.robots import GYM_TASKS, GymTask
from recede.envs.tasks import TASKS, HoldCriterion, Task, register_task
from recede.errors import UnknownNameError


def get_task(name: str) -> Task | GymTask:
    """The task called ``name`` (our name or its Gymnasium id, e.g. ``half-cheetah`` or
    ``HalfCheetah-v5``); unknown names raise with the list of known ones."""
    if isinstance(name, (Task, GymTask)):
        return name
    if isinstance(name, str):
        if name in TASKS:
            return TASKS[name]
        if name in GYM_TASKS:
            return GYM_TASKS[name]
        for task in (*TASKS.values(), *GYM_TASKS.values()):
            if name == task.gym_id:
                return task
    known = ", ".join(list_tasks())
    raise UnknownNameError(f"unknown task {name!r}; known tasks: {known} (or their Gymnasium ids)")


def list_tasks() -> list[str]:
    """Every task's name: the analytic and MuJoCo tasks, then the Gymnasium robots."""
    return sorted(TASKS) + list(GYM_TASKS)


for _task in TASKS.values():
    if _task.gym_id not in gym.registry:
        gym.register(
            id=_task.gym_id,
            entry_point=("recede.envs.mujoco_env:MujocoTaskEnv" if _task.asset
                         else "recede.envs.env:TaskEnv"),
            kwargs={"task": _task.name},
            max_episode_steps=_task.episode_steps,
        )

__all__ = ["GYM_TASKS", "GymTask", "HoldCriterion", "ModelEnv", "SingleModelEnv", "Task", "TaskEnv",
           "get_task", "list_tasks", "register_task", "TASKS"]
