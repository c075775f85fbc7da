"""Tasks and their Gymnasium environments.

``get_task(name)`` returns a :class:`Task`; every task is also registered with Gymnasium as
``recede/<name>-v0`` once ``recede.envs`` (or ``recede``) is imported::

    import recede, gymnasium
    env = gymnasium.make("recede/cartpole-swingup-v0")
"""

from __future__ import annotations

import gymnasium as gym

from recede.envs.env import TaskEnv
from recede.envs.tasks import TASKS, HoldCriterion, Task, register_task
from recede.errors import UnknownNameError


def get_task(name: str) -> Task:
    """The task called ``name``; unknown names raise with the list of known ones."""
    if isinstance(name, Task):
        return name
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise UnknownNameError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None


def list_tasks() -> list[str]:
    return sorted(TASKS)


for _task in TASKS.values():
    if _task.gym_id not in gym.registry:
        gym.register(
            id=_task.gym_id,
            entry_point="recede.envs.env:TaskEnv",
            kwargs={"task": _task.name},
            max_episode_steps=_task.episode_steps,
        )

__all__ = ["HoldCriterion", "Task", "TaskEnv", "get_task", "list_tasks", "register_task", "TASKS"]
