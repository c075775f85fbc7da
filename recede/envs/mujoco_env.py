"""Gymnasium environment for recede tasks whose model is our own MJCF (e.g. cartpole-swingup-mj).

It steps MuJoCo itself (Gymnasium's ``MujocoEnv``, so it renders), with the task's cost as the
negative reward and the task's success criterion, exactly like :class:`recede.envs.env.TaskEnv`.
"""

from __future__ import annotations

import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.spaces import Box

from recede.errors import InvalidArgumentError
from recede.models.mujoco import state_of


class MujocoTaskEnv(MujocoEnv):
    """Observation: the model state ``[qpos, qvel, act]`` (also ``env.state``). Action: the
    actuator controls, clipped to the task's bounds. Reward: minus the task's running cost.
    Truncated after ``task.episode_steps``; the last ``info`` carries ``success``."""

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 20}

    def __init__(self, task="cartpole-swingup-mj", render_mode=None, width=480, height=360):
        from recede.envs import get_task

        self.task = get_task(task) if isinstance(task, str) else task
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise InvalidArgumentError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.dynamics = self.task.dynamics()
        self.cost = self.task.cost(self.dynamics)
        self.metadata = {**self.metadata, "render_fps": int(np.round(1.0 / self.dynamics.dt))}
        nx = self.dynamics.nx
        MujocoEnv.__init__(
            self, self.task.asset, self.dynamics.frame_skip,
            observation_space=Box(-np.inf, np.inf, shape=(nx,), dtype=np.float64),
            render_mode=render_mode, width=width, height=height,
            default_camera_config={"distance": 4.0, "elevation": -10.0, "lookat": np.array([0.0, 0.0, 0.1])},
        )
        self.action_space = Box(self.dynamics.action_low, self.dynamics.action_high, dtype=np.float64)
        self._history: list[np.ndarray] = []
        self._t = 0

    @property
    def state(self) -> np.ndarray:
        return state_of(self.data)

    def reset(self, *, seed=None, options=None):
        """As ``MujocoEnv.reset``; ``options={"state": x}`` starts from the model state ``x``."""
        self._start = None
        if options and "state" in options:
            from recede.models.base import as_state

            self._start = as_state(options["state"], self.dynamics.nx, "options['state']").copy()
        return super().reset(seed=seed, options=options)

    def reset_model(self):
        x = self._start if getattr(self, "_start", None) is not None else \
            self.task.sample_initial_state(self.np_random)
        m = self.model
        self.set_state(x[:m.nq], x[m.nq:m.nq + m.nv])
        if m.na:
            self.data.act[:] = x[m.nq + m.nv:]
        self._history = [self.state]
        self._t = 0
        return self.state

    def step(self, action):
        d = self.dynamics
        u = np.clip(np.asarray(action, dtype=np.float64).reshape(d.nu), d.action_low, d.action_high)
        reward = -self.cost.stage(self.state, u)
        self.do_simulation(u, self.frame_skip)
        x = self.state
        self._history.append(x)
        self._t += 1
        terminated = not bool(np.all(np.isfinite(x)))
        truncated = self._t >= self.task.episode_steps
        info = {"state": x.copy()}
        if terminated or truncated:
            info["success"] = (not terminated) and self.task.success(np.array(self._history), d.dt)
        if self.render_mode == "human":
            self.render()
        return x.copy(), float(reward), terminated, truncated, info

    def episode_states(self) -> np.ndarray:
        return np.array(self._history)
