"""Any recede model as a Gymnasium environment: ``ModelEnv`` (vector) and ``SingleModelEnv``.

``ModelEnv(task, num_envs, *, dynamics=None, max_episode_steps=None, initial_states=None)`` runs
``N = num_envs`` copies of a task on a model as one :class:`gymnasium.vector.VectorEnv`, so that
model-free learners (SAC, PPO, Stable-Baselines3) and branched model rollouts (Dyna/MBPO) use the
same models and tasks as the planners. ``dynamics`` is the task's own model by default, or any
:class:`~recede.models.base.Dynamics` with the task's ``nx`` and ``nu``: an analytic system, a
``MujocoDynamics``, a learned ``Ensemble`` (its mean model).

One ``step`` is one batched model call for all ``N`` copies: ``dynamics.step(X, U)``, or, where
the task's reward reads MuJoCo sensors (Reacher, Ant, Humanoid), one
``dynamics.rollout(X, U[:, None], sensors=True)``. No Python loop over the copies runs in the
step itself; resets draw one start state per copy that ends (each copy has its own generator).

- Observation: ``task.observation(X)``, the policy's features (sin/cos of the angles for the
  analytic tasks, the Gymnasium observation for the robots), float64 like every recede array at a
  public boundary (Stable-Baselines3 takes float64 Boxes as they are).
- Action: ``(N, nu)`` inside the task model's ``action_low``/``action_high``; actions outside
  are clipped into the bounds, as :class:`~recede.envs.env.TaskEnv` does.
- Reward: minus the task's stage cost ``l(x_t, u_t)`` for :class:`~recede.envs.tasks.Task`
  tasks (what ``TaskEnv.step`` reports), computed batched by the cost's ``stage_costs``; for
  :class:`~recede.envs.robots.GymTask` robots the ``RewardCost``'s reward of the transition
  ``x_t -> x_{t+1}`` (the env's own reward, planning-only penalties left out).
- Termination: a state that stops being finite, and for the robots also their ``RewardCost``'s
  ``terminated`` (e.g. Hopper unhealthy). Truncation after ``max_episode_steps`` steps of an
  episode (default ``task.episode_steps``); both may hold at once, as in ``TaskEnv``.
- Autoreset: ``AutoresetMode.SAME_STEP`` (``metadata["autoreset_mode"]``). A copy that
  terminates or truncates is reset within the same ``step``: the returned observation and
  ``infos["state"]`` are those of its new episode, and the true last observation and state are in
  ``infos["final_obs"]`` (an object array holding the observation of each ended copy, ``None``
  elsewhere) and ``infos["final_info"]["state"]``, masked by ``infos["_final_obs"]`` and
  ``infos["_final_info"]``, as Gymnasium 1.x's ``SyncVectorEnv`` lays them out. Off-policy
  learners bootstrap from ``final_obs`` on truncation.
- Start states: ``reset(options={"states": X0})`` with ``X0: (N, nx)`` starts every copy at
  ``X0``; otherwise each copy draws its own: uniformly among the rows of the constructor's
  ``initial_states: (M, nx)`` when given (e.g. states from a replay buffer, for branched
  rollouts), else the task's distribution: ``task.sample_initial_state(rng)`` for ``Task`` tasks,
  and for the robots the Gymnasium env's own ``reset_model`` (its ``init_qpos``/``init_qvel``
  plus its reset noise; Reacher's target too), run on one real env of the task with the copy's
  generator. ``reset(seed=s)`` seeds copy ``i`` with ``s + i`` (a list seeds each copy), each with
  ``gymnasium.utils.seeding.np_random`` as a Gymnasium env seeds itself, so copy ``i`` starts
  where ``TaskEnv``, or the robot's Gymnasium env, starts after ``reset(seed=s + i)``, and
  draws its later episodes' starts from the same stream. Same seed, same trajectory.
- ``env.states``: the current states ``(N, nx)``; every ``info`` carries ``"state"``.

``SingleModelEnv(task, **kw)`` (or ``ModelEnv.single(task, **kw)``) is the one-copy view as a
plain ``gymnasium.Env`` for learners that want one (Stable-Baselines3, the env checker): no
autoreset, the episode ends with its true last observation and ``reset()`` starts the next.

Limitations: a learned model does not predict MuJoCo sensors, so an ``Ensemble`` on a robot
whose reward reads them (Reacher, Ant, Humanoid) raises at construction. A step that leaves the
finite states (a MuJoCo divergence, a learned model blowing up) terminates that copy; a robot's
reward of that step is whatever its ``RewardCost`` gives for a non-finite state (NaN for the
velocity rewards).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from recede.costs import stage_costs
from recede.errors import InvalidArgumentError
from recede.models.base import Dynamics, check_finite

__all__ = ["ModelEnv", "SingleModelEnv"]


def _check_count(name: str, value, allow_none: bool = False) -> int | None:
    if allow_none and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        more = " or None" if allow_none else ""
        raise InvalidArgumentError(f"{name} must be an integer >= 1{more}, got {value!r}")
    return int(value)


def _as_states(value, nx: int, name: str, rows: int | None = None) -> np.ndarray:
    """States ``(rows, nx)`` (any number of rows >= 1 when ``rows`` is None) as finite float64."""
    try:
        X = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"{name} must be an array of floats, got {value!r}") from e
    if X.ndim != 2 or X.shape[1] != nx or X.shape[0] < 1 or (rows is not None and X.shape[0] != rows):
        want = f"({'M' if rows is None else rows}, {nx})"
        raise InvalidArgumentError(f"{name} must have shape {want}, got {X.shape}")
    check_finite(name, X)
    return X


def _generator(seed, name: str) -> np.random.Generator:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise InvalidArgumentError(f"{name} must be an integer >= 0 or None, got {seed!r}")
    return seeding.np_random(None if seed is None else int(seed))[0]


class ModelEnv(gym.vector.VectorEnv):
    """``num_envs`` copies of ``task`` on ``dynamics`` as a Gymnasium vector env; see the module
    docstring for the observation, reward, termination, autoreset and start states.

    task: a task name (``recede.envs.get_task``) or a ``Task``/``GymTask``. dynamics: the model
    to step (default: ``task.dynamics()``); its ``nx``, ``nu`` must be the task's.
    max_episode_steps: steps before an episode is truncated (default ``task.episode_steps``).
    initial_states: ``(M, nx)`` states to draw start states from, uniformly (default: the task's
    own start distribution).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, task, num_envs: int, *, dynamics=None, max_episode_steps: int | None = None,
                 initial_states=None):
        from recede.envs import get_task
        from recede.envs.robots import GymTask

        self.task = get_task(task)
        self.num_envs = _check_count("num_envs", num_envs)
        self.render_mode = None
        self._is_robot = isinstance(self.task, GymTask)
        self._owned: list = []  # what this env made and closes
        self._reset_env = None  # robots: one real env whose reset_model draws start states
        if self._is_robot:
            self._reset_env = self.task.make_env().unwrapped
            m = self._reset_env.model
            self._owned.append(self._reset_env)
            nx, nu = m.nq + m.nv + m.na, m.nu
        else:
            reference = self.task.dynamics()
            nx, nu = reference.nx, reference.nu
        if dynamics is not None:
            if not isinstance(dynamics, Dynamics):
                raise InvalidArgumentError(
                    f"dynamics must be a recede Dynamics (nx, nu, dt, action bounds, rollout, step), "
                    f"got {type(dynamics).__name__}")
            if (dynamics.nx, dynamics.nu) != (nx, nu):
                raise InvalidArgumentError(
                    f"dynamics has nx={dynamics.nx}, nu={dynamics.nu}, but task {self.task.name!r} "
                    f"needs nx={nx}, nu={nu}")
        if self._is_robot:
            from recede.models.mujoco import MujocoDynamics

            if isinstance(dynamics, MujocoDynamics):
                reference = dynamics
            else:  # the default, or a model that is not MuJoCo: the reward reads the true model
                reference = self.task.dynamics()
                self._owned.append(reference)
            if dynamics is None:
                dynamics = reference
        elif dynamics is None:
            dynamics = reference
        elif callable(getattr(reference, "close", None)):
            self._owned.append(reference)  # e.g. the MuJoCo twin of a task, only for its cost
        self.dynamics = dynamics
        self.nx, self.nu = int(nx), int(nu)
        self.cost = self.task.cost(reference)
        self._sensors = bool(getattr(self.cost, "needs_sensors", False))
        if self._sensors and dynamics is not reference:
            raise InvalidArgumentError(
                f"dynamics: task {self.task.name!r} rewards read MuJoCo sensors, which "
                f"{type(dynamics).__name__} does not give; use the task's MujocoDynamics")
        if not self._is_robot and not callable(getattr(self.cost, "stage_costs", None)):
            raise InvalidArgumentError(
                f"task {self.task.name!r}: its cost {self.cost!r} must offer stage_costs(X, U) "
                f"for the batched reward")
        self.max_episode_steps = _check_count(
            "max_episode_steps", self.task.episode_steps if max_episode_steps is None
            else max_episode_steps, allow_none=False)
        self.initial_states = (None if initial_states is None
                               else _as_states(initial_states, nx, "initial_states"))

        self.action_low = np.array(reference.action_low, dtype=np.float64)
        self.action_high = np.array(reference.action_high, dtype=np.float64)
        if self._is_robot:
            base = self._reset_env
            x = np.concatenate([base.init_qpos, base.init_qvel, np.zeros(base.model.na)])
        else:
            x = np.array(self.task.initial_state, dtype=np.float64)
        nobs = self._observe(x[None]).shape[-1]
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(nobs,), dtype=np.float64)
        self.single_action_space = gym.spaces.Box(self.action_low, self.action_high, dtype=np.float64)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        self._rngs: list[np.random.Generator] | None = None
        self._states: np.ndarray | None = None
        self._t = np.zeros(self.num_envs, dtype=np.int64)

    @classmethod
    def single(cls, task, **kwargs) -> SingleModelEnv:
        """The one-copy view as a ``gymnasium.Env``: ``SingleModelEnv(task, **kwargs)``."""
        return SingleModelEnv(task, **kwargs)

    # ------------------------------------------------------------- the model

    @property
    def states(self) -> np.ndarray:
        """The current model states ``(N, nx)`` (a copy)."""
        if self._states is None:
            raise ResetNeeded("ModelEnv has no states before reset(); call reset() first")
        return self._states.copy()

    def _observe(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.task.observation(X), dtype=np.float64)

    def _actions(self, actions, rows: int) -> np.ndarray:
        try:
            U = np.asarray(actions, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise InvalidArgumentError(f"actions must be an array of floats, got {actions!r}") from e
        if U.shape != (rows, self.nu):
            raise InvalidArgumentError(f"actions must have shape ({rows}, {self.nu}), got {U.shape}")
        return np.clip(U, self.action_low, self.action_high)

    def _transition(self, X: np.ndarray, U: np.ndarray):
        """One batched model step of states X: (N, nx) under clipped actions U: (N, nu) ->
        next states (N, nx), rewards (N,), terminated (N,)."""
        if self._sensors:
            X2, S2 = self.dynamics.rollout(X, U[:, None], sensors=True)
            X1 = X2[:, 1]
        else:
            X1 = np.asarray(self.dynamics.step(X, U), dtype=np.float64)
            X2, S2 = np.stack([X, X1], axis=1), None
        return (X1, *self._rewards(X2, U, S2))

    def rewards(self, X, U, X1) -> tuple[np.ndarray, np.ndarray]:
        """The task's reward and termination of given transitions ``X: (N, nx) -> X1: (N, nx)``
        under ``U: (N, nu)`` (clipped into the bounds), by the same rule as :meth:`step`:
        rewards (N,), terminated (N,). Dyna/MBPO scores branched model rollouts with it. Tasks
        whose reward reads MuJoCo sensors need the sensors of the step and raise."""
        if self._sensors:
            raise InvalidArgumentError(f"task {self.task.name!r}: its reward reads MuJoCo sensors, "
                                       f"which a transition (X, U, X1) does not give")
        X = _as_states(X, self.nx, "X")
        X1 = np.asarray(X1, dtype=np.float64)
        if X1.shape != X.shape:
            raise InvalidArgumentError(f"X1 must have shape {X.shape}, got {X1.shape}")
        U = self._actions(U, X.shape[0])
        return self._rewards(np.stack([X, X1], axis=1), U, None)

    def _rewards(self, X2: np.ndarray, U: np.ndarray, S2):
        finite = np.isfinite(X2[:, 1]).all(axis=1)
        if self._is_robot:
            r, term = self.cost.rewards(X2, U[:, None], S2)
            return r[:, 0], term[:, 0] | ~finite
        return -stage_costs(self.cost, X2, U[:, None])[:, 0], ~finite

    def _advance(self, actions):
        """Step every copy without resetting any: observations, rewards, terminated, truncated."""
        if self._states is None:
            raise ResetNeeded("step() before reset(); call reset() first")
        U = self._actions(actions, self.num_envs)
        X1, reward, terminated = self._transition(self._states, U)
        self._states = X1
        self._t += 1
        truncated = self._t >= self.max_episode_steps
        return self._observe(X1), reward, terminated, truncated

    # ------------------------------------------------------------- start states

    def _seed(self, seed) -> None:
        N = self.num_envs
        if seed is None:
            if self._rngs is None:
                self._rngs = [_generator(None, "seed") for _ in range(N)]
            return
        if isinstance(seed, (list, tuple)):
            if len(seed) != N:
                raise InvalidArgumentError(
                    f"seed must be an integer or a list of {N} seeds (one per env), got {len(seed)} seeds")
            old = self._rngs
            self._rngs = [(old[i] if old is not None and s is None else _generator(s, f"seed[{i}]"))
                          for i, s in enumerate(seed)]
            return
        _generator(seed, "seed")  # validates
        self._rngs = [_generator(int(seed) + i, "seed") for i in range(N)]

    def _draw(self, rows) -> np.ndarray:
        """Start states (len(rows), nx), each from its copy's generator."""
        out = np.empty((len(rows), self.nx))
        for k, i in enumerate(rows):
            rng = self._rngs[i]
            if self.initial_states is not None:
                out[k] = self.initial_states[rng.integers(self.initial_states.shape[0])]
            elif self._is_robot:
                from recede.models.mujoco import state_of

                base = self._reset_env
                base.np_random = rng  # the env's reset noise comes from this copy's stream
                base.reset()
                out[k] = state_of(base.data)
            else:
                out[k] = self.task.sample_initial_state(rng)
        return out

    def reset(self, *, seed=None, options: dict[str, Any] | None = None):
        """Start every copy anew. seed: an int (copy i gets ``seed + i``), a list of ``N`` ints
        (or ``None`` to keep that copy's stream), or ``None``. options: ``{"states": X0}`` with
        ``X0: (N, nx)`` to start at given states. Returns observations ``(N, nobs)`` and infos
        with ``"state": (N, nx)``."""
        options = dict(options or {})
        states = options.pop("states", None)
        if options:
            raise InvalidArgumentError(f"options may hold 'states' only, got {sorted(options)}")
        self._seed(seed)
        if states is not None:
            X = _as_states(states, self.nx, "options['states']", rows=self.num_envs)
        else:
            X = self._draw(range(self.num_envs))
        self._states = X
        self._t[:] = 0
        return self._observe(X), self._info(X)

    def _info(self, X: np.ndarray) -> dict:
        return {"state": X.copy(), "_state": np.ones(self.num_envs, dtype=bool)}

    # ------------------------------------------------------------- step

    def step(self, actions):
        """actions: (N, nu) -> observations (N, nobs), rewards (N,), terminated (N,),
        truncated (N,), infos; copies that ended are reset in this step (see the module
        docstring for ``final_obs`` and ``final_info``)."""
        obs, reward, terminated, truncated = self._advance(actions)
        done = terminated | truncated
        X = self._states
        infos: dict[str, Any] = {}
        if done.any():
            ended = np.flatnonzero(done)
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in ended:
                final_obs[i] = obs[i].copy()
            final_states = np.zeros_like(X)
            final_states[ended] = X[ended]
            infos["final_obs"], infos["_final_obs"] = final_obs, done.copy()
            infos["final_info"] = {"state": final_states, "_state": done.copy()}
            infos["_final_info"] = done.copy()
            X = X.copy()
            X[ended] = self._draw(ended)
            self._states = X
            self._t[ended] = 0
            obs[ended] = self._observe(X[ended])
        infos.update(self._info(X))
        return obs, reward, terminated, truncated, infos

    def close_extras(self, **kwargs) -> None:
        for thing in self._owned:
            thing.close()
        self._owned = []


class SingleModelEnv(gym.Env):
    """One copy of :class:`ModelEnv` as a ``gymnasium.Env``: same task, model, observation,
    reward and start states (``ModelEnv``'s keyword arguments), no autoreset. The last step of
    an episode returns its true last observation; ``step`` after it raises until ``reset()``.
    ``reset(seed=s)`` starts where ``ModelEnv`` copy 0 does after ``reset(seed=s)``;
    ``reset(options={"state": x0})`` (or ``{"states": x0[None]}``) starts at ``x0: (nx,)``."""

    metadata = {"render_modes": []}

    def __init__(self, task, *, dynamics=None, max_episode_steps: int | None = None,
                 initial_states=None):
        self.vector = ModelEnv(task, 1, dynamics=dynamics, max_episode_steps=max_episode_steps,
                               initial_states=initial_states)
        self.task, self.dynamics = self.vector.task, self.vector.dynamics
        self.observation_space = self.vector.single_observation_space
        self.action_space = self.vector.single_action_space
        self.render_mode = None
        self._done = False

    @property
    def state(self) -> np.ndarray:
        """The current model state ``(nx,)`` (a copy)."""
        return self.vector.states[0]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        options = dict(options or {})
        if "state" in options:
            if "states" in options:
                raise InvalidArgumentError("options may hold 'state' or 'states', got both")
            x = np.asarray(options.pop("state"), dtype=np.float64)
            if x.shape != (self.vector.nx,):
                raise InvalidArgumentError(
                    f"options['state'] must have shape ({self.vector.nx},), got {x.shape}")
            options["states"] = x[None]
        self.vector._rngs = [self.np_random]  # the env's own generator draws the start states
        obs, info = self.vector.reset(options=options)
        self._done = False
        return obs[0], {"state": info["state"][0]}

    def step(self, action):
        if self._done:
            raise ResetNeeded("step() after the episode ended; call reset() first")
        a = np.asarray(action, dtype=np.float64)
        if a.shape not in ((self.vector.nu,), ()) or (a.shape == () and self.vector.nu != 1):
            raise InvalidArgumentError(f"action must have shape ({self.vector.nu},), got {a.shape}")
        obs, reward, terminated, truncated = self.vector._advance(a.reshape(1, -1))
        self._done = bool(terminated[0] or truncated[0])
        return (obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]),
                {"state": self.vector.states[0]})

    def close(self) -> None:
        self.vector.close()
