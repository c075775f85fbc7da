"""Robot tasks on Gymnasium's MuJoCo v5 environments, planned on the environment's own model.

Each :class:`GymTask` acts in the Gymnasium environment and plans on a :class:`MujocoDynamics`
built from the environment's ``MjModel`` (recompiled from the same XML with sensors added where the
reward reads kinematics, which leaves the physics unchanged) and the environment's ``frame_skip``.
The planning cost is minus the environment's reward, summed while the robot is alive: rewards
after the first step that terminates the episode count zero.

Planning reward vs. the environment's reward (``tests/envs/test_robots.py`` checks these on
random trajectories, to 1e-9):

- InvertedPendulum-v5: ``1`` while ``|hinge| <= 0.2`` and the state is finite. Exact. The
  planning cost adds a terminal value at the horizon's end for sequences still alive (see
  ``_inverted_pendulum``): with survival reward alone every surviving sequence costs the same
  and CEM-MPC drifts to the end of the rail (it fell within 170-800 steps here, horizons 20-60).
- HalfCheetah-v5: ``(x' - x) / dt - 0.1 |u|^2``. Exact. The planning cost adds a penalty for
  every step spent upside down (``HALF_CHEETAH_FLIP_PENALTY``): without it the planner exploits
  the coarse contact step (see there).
- Hopper-v5, Walker2d-v5: forward velocity + healthy reward - ``1e-3 |u|^2``, terminating when
  unhealthy. Exact.
- Reacher-v5: ``-|fingertip - target| - |u|^2``, positions from ``framepos`` sensors.
- Ant-v5: torso forward velocity (``framepos`` sensor) + healthy reward - ``0.5 |u|^2``.
- Humanoid-v5: ``1.25`` x forward velocity of the centre of mass (``subtreecom`` sensor of the
  torso) + healthy reward 5 - ``0.1 |u|^2``.

The last three differ from the env, by two terms and nothing else (tested exactly):

1. These models integrate with RK4, and the envs read body positions from ``data`` after
   ``mj_step``. After an RK4 step ``data.xpos`` holds the kinematics of RK4's last intermediate
   stage, a configuration that no state and no sensor passes through. The sensors here read the
   positions at the start of the last physics substep instead. Measured by
   ``benchmarks/reward_gap.py``.
2. Ant and Humanoid subtract a contact cost computed from ``cfrc_ext`` after
   ``mj_rnePostConstraint``; the planning reward leaves it out (``5e-4 sum(clip(cfrc_ext, -1,
   1)^2)`` and ``min(5e-7 sum(cfrc_ext^2), 10)``).

The first step of a plan measures velocity from ``x0``'s own sensors; the env measures it from the
reading left by its previous step. That offset is the same for every candidate sequence, so it
never changes which plan wins.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


class RewardCost:
    """``cost(X, U[, S]) = -sum_t alive_t r_t`` from a per-step reward and termination.

    reward(X, U, S) -> (B, H): the reward of step t from ``X[:, t]`` to ``X[:, t+1]`` under
    ``U[:, t]`` (``S[:, t+1]`` holds the sensors after the step). terminated(X, S) -> (B, H): whether
    step t ends the episode (judged on ``X[:, t+1]``). ``alive_t`` is 1 until the first
    terminating step, whose reward still counts, and 0 after it. terminal_value(x_H) -> (B,):
    an estimate of the reward still to come after the horizon, added for sequences that are
    alive at its end (MPC's terminal cost); the per-step rewards stay the env's own.
    penalty(X, U, S) -> (B, H): a planning-only cost added to step t while alive (``rewards``
    leaves it out, so the return reported is still the env's).
    """

    def __init__(self, reward: Callable, terminated: Callable | None = None, *,
                 terminal_value: Callable | None = None, penalty: Callable | None = None,
                 needs_sensors: bool = False, name: str = "reward"):
        self._reward, self._terminated = reward, terminated
        self.terminal_value = terminal_value
        self.penalty = penalty
        self.needs_sensors = bool(needs_sensors)
        self.name = name

    def rewards(self, X, U, S=None):
        """Per-step rewards (B, H) and terminations (B, H) (all False without a criterion)."""
        r = np.asarray(self._reward(X, U, S), dtype=np.float64)
        if self._terminated is None:
            return r, np.zeros(r.shape, dtype=bool)
        return r, np.asarray(self._terminated(X, S), dtype=bool)

    def __call__(self, X, U, S=None) -> np.ndarray:
        return self.stage_costs(X, U, S).sum(axis=1)

    def survives(self, X, U, S=None) -> np.ndarray:
        """``(B,)``: whether each sequence is alive at its end (never terminated), the rows a
        terminal value applies to (:class:`recede.costs.ValueTerminalCost` asks)."""
        _, term = self.rewards(X, U, S)
        return ~term.any(axis=1)

    def stage_costs(self, X, U, S=None) -> np.ndarray:
        """Per-step costs ``(B, H+1)``: ``-alive_t r_t`` (penalty included), and in column H
        minus the terminal value for sequences alive at the end (else 0). They sum to the cost."""
        r, term = self.rewards(X, U, S)
        if self.penalty is not None:
            r = r - np.asarray(self.penalty(X, U, S), dtype=np.float64)
        alive = np.ones(r.shape, dtype=bool)
        if term.any():
            alive[:, 1:] = np.logical_and.accumulate(~term[:, :-1], axis=1)
            r = np.where(alive, r, 0.0) + np.where(np.isnan(r), np.nan, 0.0)
        out = np.zeros((r.shape[0], r.shape[1] + 1))
        out[:, :-1] = -r
        if self.terminal_value is not None:
            survived = alive[:, -1] & ~term[:, -1]
            out[:, -1] = -np.where(survived, self.terminal_value(X[:, -1]), 0.0)
        return out

    def __repr__(self) -> str:
        return f"RewardCost({self.name})"


TERMINAL_WEIGHT = 10.0

# iLQR/DDP on MuJoCo: every iteration linearises the whole horizon (mjd_transitionFD per physics
# step) and differentiates the reward numerically, ~60 ms on the half-cheetah here; MPC warm-starts
# every plan, so a few iterations per control step suffice.
GRADIENT_DEFAULTS = {"ilqr": {"iterations": 5}, "ddp": {"iterations": 5}}


def _ctrl(U, w):
    return w * np.sum(U * U, axis=-1)


def _between(v, lo, hi, closed=False):
    return (lo <= v) & (v <= hi) if closed else (lo < v) & (v < hi)


# ----------------------------------------------------------------- per-environment rewards


def _inverted_pendulum(env, dyn):
    def terminated(X, S):
        Y = X[:, 1:]
        return ~np.isfinite(Y).all(axis=-1) | (np.abs(Y[..., 1]) > 0.2)

    def reward(X, U, S):
        return (~terminated(X, S)).astype(np.float64)

    def value(x):
        # Survival reward gives equal cost to every sequence that lasts the horizon, and among
        # those the planner drifts until the cart reaches the end of its rail. This estimate of
        # the reward to come (positive: surviving always beats falling) ranks survivors by how
        # far the final state is from the edges of the upright set (|hinge| <= 0.2) and of the
        # rail (|slider| <= 1).
        q = (x[:, 1] / 0.2) ** 2 + x[:, 0] ** 2 + 0.01 * (x[:, 2] ** 2 + x[:, 3] ** 2)
        return TERMINAL_WEIGHT * np.exp(-q)

    return RewardCost(reward, terminated, terminal_value=value, name="InvertedPendulum-v5")


def _reacher(env, dyn):
    wd, wc = env._reward_dist_weight, env._reward_control_weight

    def reward(X, U, S):
        vec = dyn.sensor(S[:, 1:], "fingertip") - dyn.sensor(S[:, 1:], "target")
        return -np.linalg.norm(vec, axis=-1) * wd - _ctrl(U, wc)

    return RewardCost(reward, needs_sensors=True, name="Reacher-v5")


# Per step spent upside down (|rooty| > pi/2), planning only; the iCEM paper's "penalise_flipping"
# (Pinneri et al. 2020, martius-lab/iCEM settings). Without it, CEM-MPC with 800 samples per step
# on the true model learns to flip, roll and fly in 20-50 m ballistic arcs at ~96 m/s (return
# ~65,000, seeds 0 and 1), gaining speed at each ground strike from the 10 ms contact step: the
# same strikes re-simulated with RK4 at 1 ms lose speed instead. With it the same planner runs
# upright at ~9 m/s (return 8,364, seed 0) and no rollout diverges.
HALF_CHEETAH_FLIP_PENALTY = 10.0


def _half_cheetah(env, dyn):
    wf, wc, dt = env._forward_reward_weight, env._ctrl_cost_weight, env.dt

    def reward(X, U, S):
        return wf * (X[:, 1:, 0] - X[:, :-1, 0]) / dt - _ctrl(U, wc)

    def flipped(X, U, S):
        # rooty (qpos[2]) wrapped to [-pi, pi]: |rooty| > pi/2 <=> cos(rooty) < 0
        return HALF_CHEETAH_FLIP_PENALTY * (np.cos(X[:, 1:, 2]) < 0.0)

    return RewardCost(reward, penalty=flipped, name="HalfCheetah-v5")


def _planar_walker(env, dyn, *, hopper: bool):
    wf, wc, dt = env._forward_reward_weight, env._ctrl_cost_weight, env.dt
    hr, zr, ar = env._healthy_reward, env._healthy_z_range, env._healthy_angle_range
    sr = getattr(env, "_healthy_state_range", None)
    nq = dyn.nq
    when_unhealthy = env._terminate_when_unhealthy

    def healthy(Y):
        ok = _between(Y[..., 1], *zr) & _between(Y[..., 2], *ar)
        if hopper:
            ok &= np.all(_between(Y[..., 2:nq + dyn.nv], *sr), axis=-1)
        return ok

    def reward(X, U, S):
        return (wf * (X[:, 1:, 0] - X[:, :-1, 0]) / dt + hr * healthy(X[:, 1:])
                - _ctrl(U, wc))

    def terminated(X, S):
        return ~healthy(X[:, 1:]) if when_unhealthy else np.zeros(X[:, 1:, 0].shape, bool)

    return RewardCost(reward, terminated, name="Hopper-v5" if hopper else "Walker2d-v5")


def _forward_from_sensor(env, dyn, sensor: str, name: str, closed: bool):
    """Ant and Humanoid: forward velocity of sensor ``sensor``'s x + healthy reward - control
    cost, terminating when unhealthy (height of the root in ``healthy_z_range``, ``closed``:
    bounds included, and for Ant a finite state)."""
    wf, wc, dt = env._forward_reward_weight, env._ctrl_cost_weight, env.dt
    hr, (zlo, zhi) = env._healthy_reward, env._healthy_z_range
    when_unhealthy = env._terminate_when_unhealthy
    n = dyn.nq + dyn.nv

    def healthy(Y):
        ok = _between(Y[..., 2], zlo, zhi, closed=closed)
        return ok & np.isfinite(Y[..., :n]).all(axis=-1) if closed else ok

    def reward(X, U, S):
        p = dyn.sensor(S, sensor)[..., 0]
        return wf * (p[:, 1:] - p[:, :-1]) / dt + hr * healthy(X[:, 1:]) - _ctrl(U, wc)

    def terminated(X, S):
        return ~healthy(X[:, 1:]) if when_unhealthy else np.zeros(X[:, 1:, 0].shape, bool)

    return RewardCost(reward, terminated, needs_sensors=True, name=name)


def _ant(env, dyn):
    return _forward_from_sensor(env, dyn, "torso_pos", "Ant-v5", closed=True)


def _humanoid(env, dyn):
    return _forward_from_sensor(env, dyn, "com_pos", "Humanoid-v5", closed=False)


# ----------------------------------------------------------------- tasks


@dataclass(frozen=True)
class GymTask:
    """A Gymnasium MuJoCo environment as a recede task.

    sensors: ``(name, sensor type, object type, object name)`` added to the planning model.
    max_speed: the planning model's bound on ``|qvel|`` (see ``MujocoDynamics``): with the true
    model, CEM-MPC on HalfCheetah-v5 found a contact instability at step ~362 that launched the
    cheetah 10 km up at 3,700 m/s (return 1.8 million); sequences faster than 100 m/s or rad/s
    now count as diverged. Normal running here stays below 52.
    success: ``"survive"`` (no termination in the episode), ``"reach"`` (Reacher: the fingertip
    ends within ``reach_tolerance`` of the target) or ``None`` (judge by the return).
    default_camera: the camera frames come from unless told (see :mod:`recede.envs.camera`):
    ``follow`` tracks the robot, ``free`` is the env's own fixed view (Reacher's frames its arena).
    """

    name: str
    gym_id: str
    description: str
    make_cost: Callable[[Any, Any], RewardCost]
    horizon: int
    episode_steps: int = 1000
    sensors: tuple[tuple[str, str, str, str], ...] = ()
    success_rule: str | None = None
    reach_tolerance: float = 0.02
    max_speed: float | None = 100.0
    planner_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    planner_horizons: dict[str, int] = field(default_factory=dict)
    default_camera: str = "follow"

    def horizon_for(self, planner: str) -> int:
        """The default horizon for ``planner`` (``planner_horizons``, else ``horizon``)."""
        return int(self.planner_horizons.get(planner, self.horizon))

    @property
    def can_render(self) -> bool:
        """Whether the task's env renders frames (every Gymnasium MuJoCo robot does)."""
        return True

    def make_env(self, render_mode: str | None = None, *, camera: str | None = None, **kwargs):
        """The Gymnasium env (``gym.make(gym_id, render_mode, **kwargs)``). camera: where
        ``render()`` draws frames from, one of :meth:`cameras` (default: the task's
        ``default_camera``); needs a frame ``render_mode`` (``"rgb_array"``, ``"depth_array"``)."""
        import gymnasium as gym

        from recede.envs.camera import with_camera

        env = gym.make(self.gym_id, render_mode=render_mode, **kwargs)
        return with_camera(env, camera, self.default_camera, self.name)

    def cameras(self) -> tuple[str, ...]:
        """The cameras ``make_env(camera=...)`` accepts: ``follow``, ``free`` and the model's own
        named cameras (see :mod:`recede.envs.camera`)."""
        from recede.envs.camera import camera_names

        with self._env() as env:
            return camera_names(env.unwrapped.model)

    @contextlib.contextmanager
    def _env(self):
        """A fresh env of this task, closed afterwards."""
        env = self.make_env()
        try:
            yield env
        finally:
            env.close()

    def dynamics(self, *, nthread: int | None = None):
        """The planning model: the env's own model (plus this task's sensors) and frame_skip.
        nthread: rollout threads (default: the cores available)."""
        import mujoco

        from recede.models.mujoco import MujocoDynamics

        with self._env() as env:
            base = env.unwrapped
            model = base.model
            if self.sensors:
                spec = mujoco.MjSpec.from_file(base.fullpath)
                for name, stype, otype, oname in self.sensors:
                    spec.add_sensor(name=name, type=getattr(mujoco.mjtSensor, stype),
                                    objtype=getattr(mujoco.mjtObj, otype), objname=oname)
                model = spec.compile()
            return MujocoDynamics(model, frame_skip=base.frame_skip, nthread=nthread,
                                  max_speed=self.max_speed)

    def cost(self, dynamics=None) -> RewardCost:
        """Minus the env's reward over the planning model ``dynamics`` (default: a new one),
        with the reward's weights read from a fresh env of this task."""
        d = dynamics or self.dynamics()
        with self._env() as env:
            return self.make_cost(env.unwrapped, d)

    def problem(self, horizon: int | None = None, dynamics=None):
        from recede.problem import Problem

        d = dynamics or self.dynamics()
        return Problem(d, self.cost(d), self.horizon if horizon is None else horizon)

    @staticmethod
    def state_of(env) -> np.ndarray:
        return _state_of(env.unwrapped.data)

    def observation(self, X) -> np.ndarray:
        """The policy's features of model states ``X: (..., nx) -> (..., nobs)``: the env's own
        observation, computed from the state alone (:class:`recede.envs.observations.GymObservation`).
        InvertedPendulum, HalfCheetah, Hopper and Walker2d observe only qpos/qvel: equal to the
        env's observation exactly. Reacher, Ant and Humanoid add kinematic and contact terms that
        the env reads after an RK4 step from an intermediate stage (and Humanoid's also from the
        last action); here they are those terms evaluated at the state itself."""
        obs = _OBSERVATIONS.get(self.name)
        if obs is None:
            from recede.envs.observations import GymObservation

            with self._env() as env:
                obs = _OBSERVATIONS[self.name] = GymObservation.from_env(env)
        return obs(X)

    def judge(self, env, terminated: bool, steps: int) -> bool | None:
        """The success metric after an episode (``None``: judged by its return)."""
        if self.success_rule == "survive":
            if terminated:
                return False
            return True if steps >= self.episode_steps else None  # None: cut short, unknown
        if self.success_rule == "reach":
            base = env.unwrapped
            vec = base.get_body_com("fingertip") - base.get_body_com("target")
            return bool(np.linalg.norm(vec) <= self.reach_tolerance)
        return None

    def describe_success(self, names=None) -> str:
        if self.success_rule == "survive":
            return f"no termination in {self.episode_steps} steps (return is the score)"
        if self.success_rule == "reach":
            return f"fingertip within {self.reach_tolerance:g} of the target at the end"
        return "none: the return is the score"

    def describe_termination(self, steps: int) -> str:
        """Why an episode of this task terminates early, for summaries."""
        return f"terminated at step {steps}"


_OBSERVATIONS: dict[str, Callable] = {}  # task name -> its observation map (built once)


def _state_of(data) -> np.ndarray:
    from recede.models.mujoco import state_of

    return state_of(data)


GYM_TASKS: dict[str, GymTask] = {}


def _register(task: GymTask) -> None:
    GYM_TASKS[task.name] = task


_register(GymTask(
    name="inverted-pendulum", gym_id="InvertedPendulum-v5",
    description="Keep the pole on a cart within 0.2 rad of upright for 1000 steps (Gymnasium).",
    make_cost=_inverted_pendulum, horizon=15, success_rule="survive",
    planner_defaults={"cem": {"samples": 100, "iterations": 3}, "random": {"samples": 300}, **GRADIENT_DEFAULTS},
))
_register(GymTask(
    name="reacher", gym_id="Reacher-v5",
    description="Bring the two-link arm's fingertip to a random target (Gymnasium, 50 steps).",
    make_cost=_reacher, horizon=15, episode_steps=50, success_rule="reach", default_camera="free",
    sensors=(("fingertip", "mjSENS_FRAMEPOS", "mjOBJ_XBODY", "fingertip"),
             ("target", "mjSENS_FRAMEPOS", "mjOBJ_XBODY", "target")),
    planner_defaults={"cem": {"samples": 200, "iterations": 4}, "random": {"samples": 500}, **GRADIENT_DEFAULTS},
))
_register(GymTask(
    name="half-cheetah", gym_id="HalfCheetah-v5",
    description="Run forward as fast as possible for 1000 steps (Gymnasium).",
    make_cost=_half_cheetah, horizon=30,
    planner_defaults={"cem": {"samples": 200, "iterations": 4}, "random": {"samples": 800}, **GRADIENT_DEFAULTS},
))
_register(GymTask(
    name="hopper", gym_id="Hopper-v5",
    description="Hop forward without falling (Gymnasium).",
    make_cost=lambda env, dyn: _planar_walker(env, dyn, hopper=True), horizon=30,
    success_rule="survive",
    planner_defaults={"cem": {"samples": 300, "iterations": 5}, "random": {"samples": 1000}, **GRADIENT_DEFAULTS},
))
_register(GymTask(
    name="walker2d", gym_id="Walker2d-v5",
    description="Walk forward without falling (Gymnasium).",
    make_cost=lambda env, dyn: _planar_walker(env, dyn, hopper=False), horizon=30,
    success_rule="survive",
    planner_defaults={"cem": {"samples": 300, "iterations": 5}, "random": {"samples": 1000}, **GRADIENT_DEFAULTS},
))
_register(GymTask(
    name="ant", gym_id="Ant-v5",
    description="Walk the quadruped forward without flipping (Gymnasium).",
    make_cost=_ant, horizon=25, success_rule="survive",
    sensors=(("torso_pos", "mjSENS_FRAMEPOS", "mjOBJ_XBODY", "torso"),),
    planner_defaults={"cem": {"samples": 300, "iterations": 4}, "random": {"samples": 1000}, **GRADIENT_DEFAULTS},
))
_register(GymTask(
    name="humanoid", gym_id="Humanoid-v5",
    description="Walk the humanoid forward without falling (Gymnasium).",
    make_cost=_humanoid, horizon=20, success_rule="survive",
    sensors=(("com_pos", "mjSENS_SUBTREECOM", "mjOBJ_BODY", "torso"),),
    planner_defaults={"cem": {"samples": 300, "iterations": 4}, "random": {"samples": 1000}, **GRADIENT_DEFAULTS},
))



@dataclass(frozen=True)
class Replay:
    """One random-action episode of a robot's env with the planning model stepped alongside.

    X: (T+1, nx) env states; U: (T, nu) actions; S: (T+1, nsensordata) the planning model's
    sensors (of x0, then after each step); rewards, terminated: (T,) from the env; infos: the
    env's ``info`` per step; model_states: (T, nx) the planning model's state after each step.
    """

    dynamics: Any
    cost: RewardCost
    X: np.ndarray
    U: np.ndarray
    S: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    infos: tuple
    model_states: np.ndarray


def lockstep_replay(task: GymTask, seed: int, steps: int) -> Replay:
    """Drive ``task``'s env with its action space's random samples (seeded) for up to ``steps``
    steps, stepping the planning model from the env's exact MuJoCo data (warm start included)
    before each env step, so the two can be compared step by step (tests, benchmarks)."""
    import mujoco

    full_spec = mujoco.mjtState.mjSTATE_FULLPHYSICS.value
    env = task.make_env()
    base = env.unwrapped
    dyn = task.dynamics()
    cost = task.cost(dyn)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    d = mujoco.MjData(dyn.model)
    full = np.empty(mujoco.mj_stateSize(base.model, full_spec))
    x0 = task.state_of(env)
    X, U, S, R, T, infos, ours = [x0], [], [dyn.sensors(x0)], [], [], [], []
    for _ in range(steps):
        u = env.action_space.sample().astype(np.float64)
        mujoco.mj_getState(base.model, base.data, full, full_spec)
        mujoco.mj_setState(dyn.model, d, full, full_spec)
        d.qacc_warmstart[:] = base.data.qacc_warmstart
        d.ctrl[:] = u
        mujoco.mj_step(dyn.model, d, nstep=dyn.frame_skip)
        _, r, term, trunc, info = env.step(u)
        X.append(task.state_of(env)), U.append(u), S.append(d.sensordata.copy())
        R.append(r), T.append(term), infos.append(info), ours.append(dyn.state_of(d))
        if term or trunc:
            break
    env.close()
    return Replay(dyn, cost, np.array(X), np.array(U), np.array(S), np.array(R, dtype=np.float64),
                  np.array(T), tuple(infos), np.array(ours))
