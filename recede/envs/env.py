"""Gymnasium environment for a recede task, stepping the task's own Numba dynamics."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from recede.errors import InvalidArgumentError


class TaskEnv(gym.Env):
    """``gymnasium.Env`` over a :class:`~recede.envs.tasks.Task`.

    Observation: the full model state ``(nx,)`` (also ``env.state``). Action: ``(nu,)`` inside the
    task's bounds (clipped if outside). Reward: minus the task's running cost. The episode is
    truncated after ``task.episode_steps`` steps and terminated if the state stops being finite;
    the last ``info`` carries ``success`` (the task's criterion on the whole episode).
    """

    metadata = {"render_modes": []}

    def __init__(self, task="cartpole-swingup", render_mode=None):
        from recede.envs import get_task

        self.task = get_task(task) if isinstance(task, str) else task
        if render_mode is not None:
            raise InvalidArgumentError(f"render_mode must be None for {self.task.name}, got {render_mode!r}")
        self.render_mode = None
        self.dynamics = self.task.dynamics()
        self.cost = self.task.cost(self.dynamics)
        d = self.dynamics
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(d.nx,), dtype=np.float64)
        self.action_space = gym.spaces.Box(d.action_low, d.action_high, dtype=np.float64)
        self.state = np.array(self.task.initial_state, dtype=np.float64)
        self._history: list[np.ndarray] = []
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if options and "state" in options:
            from recede.models.base import as_state

            self.state = as_state(options["state"], self.dynamics.nx, "options['state']").copy()
        else:
            self.state = self.task.sample_initial_state(self.np_random)
        self._history = [self.state.copy()]
        self._t = 0
        return self.state.copy(), {"state": self.state.copy()}

    def step(self, action):
        d = self.dynamics
        u = np.clip(np.asarray(action, dtype=np.float64).reshape(d.nu), d.action_low, d.action_high)
        reward = -self.cost.stage(self.state, u)
        self.state = d.step_one(self.state, u)
        self._history.append(self.state.copy())
        self._t += 1
        terminated = not bool(np.all(np.isfinite(self.state)))
        truncated = self._t >= self.task.episode_steps
        info = {"state": self.state.copy()}
        if terminated or truncated:
            info["success"] = (not terminated) and self.task.success(np.array(self._history), d.dt)
        return self.state.copy(), float(reward), terminated, truncated, info

    def episode_states(self) -> np.ndarray:
        """(t+1, nx): every state of the current episode so far."""
        return np.array(self._history)
