"""A policy's features of a batch of model states: ``observation(X) -> (..., nobs)``.

Two kinds, one per kind of task (``Task.observation`` calls these; this module imports no task):

- :func:`angle_features` (analytic tasks): every angle dimension of the state goes in as
  ``(sin, cos)``, every other dimension as it is, in place.
- :class:`GymObservation` (Gymnasium v5 MuJoCo robots): the environment's own observation of
  the MuJoCo model state ``X = [qpos, qvel, act]`` (``recede.models.mujoco.state_of``), for the
  env kwargs the task uses.

What an environment's observation is a function of. InvertedPendulum, HalfCheetah, Hopper and
Walker2d observe ``qpos`` and ``qvel`` alone (less the root's x, Hopper and Walker2d clipping
``qvel`` to [-10, 10]): :class:`GymObservation` gives exactly the env's observation of its state.
Reacher (fingertip - target, from ``data.xpos``), Ant (``cfrc_ext``) and Humanoid (``cinert``,
``cvel``, ``qfrc_actuator``, ``cfrc_ext``) also read quantities that the env leaves in ``data``
after ``mj_step`` (and ``mj_rnePostConstraint``). Those belong to the start of the last physics
substep's last RK4 stage, a configuration the returned state never passes through, and
``qfrc_actuator`` and the contact forces depend on the action just applied (and, for Humanoid's
PGS solver, on the solver's warm start). No function of the state alone equals them. For these
three, :meth:`GymObservation.__call__` evaluates the same terms at the state itself (``mj_forward``
and ``mj_rnePostConstraint`` at ``X``, controls ``U``): the env's ``_get_obs`` applied to fresh
data at ``X``. :meth:`GymObservation.after_step` gives the env's observation exactly, from the
state before the step and the action (bit for bit when given the env's warm start).
Measured on random actions (seeds 0-2, up to 200 steps), ``__call__`` vs. the env's returned
observation: Reacher median 1e-6, max 1.2e-3 (fingertip); Ant 0 on most steps, up to 2 in the
clipped contact forces where a contact opens or closes; Humanoid median ~0.02, max 22
(``cfrc_ext``) with ``U`` the last action, ~370 with ``U = 0`` (``qfrc_actuator``).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from recede.errors import InvalidArgumentError

# ----------------------------------------------------------------- analytic tasks


def _angle_mask(is_angle, nx: int) -> np.ndarray:
    a = np.asarray(is_angle)
    if a.dtype == np.bool_:
        if a.shape != (nx,):
            raise InvalidArgumentError(f"is_angle must be a bool mask of shape ({nx},), got {a.shape}")
        return a
    mask = np.zeros(nx, dtype=bool)
    idx = a.astype(np.int64).ravel() if a.size else np.zeros(0, np.int64)
    if a.size and (not np.issubdtype(a.dtype, np.integer) or idx.min() < -nx or idx.max() >= nx):
        raise InvalidArgumentError(f"angle indices must be integers in [0, {nx}), got {is_angle!r}")
    mask[idx] = True
    return mask


def angle_feature_size(nx: int, is_angle) -> int:
    """``nobs`` of :func:`angle_features` for states of ``nx`` dims."""
    return int(nx + _angle_mask(is_angle, nx).sum())


def angle_features(X, is_angle) -> np.ndarray:
    """Features ``(..., nobs)`` of states ``X: (..., nx)``: each angle dim replaced, in place, by
    ``(sin x_i, cos x_i)``; the other dims as they are. ``nobs = nx + number of angles``.

    is_angle: a bool mask ``(nx,)``, or the angle dims' indices (a dynamics' ``angle_dims``).
    Example: pendulum ``[theta, omega]`` -> ``[sin theta, cos theta, omega]``; cart-pole
    ``[x, theta, xdot, thetadot]`` (angle dim 1) -> ``[x, sin theta, cos theta, xdot, thetadot]``.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim < 1:
        raise InvalidArgumentError("X must have shape (..., nx), got a scalar")
    nx = X.shape[-1]
    mask = _angle_mask(is_angle, nx)
    width = np.where(mask, 2, 1)
    start = np.concatenate([[0], np.cumsum(width)[:-1]])
    out = np.empty(X.shape[:-1] + (int(width.sum()),))
    out[..., start[~mask]] = X[..., ~mask]
    out[..., start[mask]] = np.sin(X[..., mask])
    out[..., start[mask] + 1] = np.cos(X[..., mask])
    return out


# ----------------------------------------------------------------- Gymnasium robots


@dataclass(frozen=True)
class _Spec:
    """What one Gymnasium v5 env observes (defaults of its constructor)."""
    frame_skip: int
    drop_qpos: int = 0            # root coordinates dropped when exclude_current_positions...
    can_exclude: bool = False     # has the exclude_current_positions_from_observation kwarg
    clip_qvel: float | None = None
    terms: tuple[str, ...] = ()   # derived terms, in the env's order


_SPECS = {
    "InvertedPendulum-v5": _Spec(frame_skip=2),
    "Reacher-v5": _Spec(frame_skip=2, terms=("fingertip",)),
    "HalfCheetah-v5": _Spec(frame_skip=5, drop_qpos=1, can_exclude=True),
    "Hopper-v5": _Spec(frame_skip=4, drop_qpos=1, can_exclude=True, clip_qvel=10.0),
    "Walker2d-v5": _Spec(frame_skip=4, drop_qpos=1, can_exclude=True, clip_qvel=10.0),
    "Ant-v5": _Spec(frame_skip=5, drop_qpos=2, can_exclude=True, terms=("cfrc_ext",)),
    "Humanoid-v5": _Spec(frame_skip=5, drop_qpos=2, can_exclude=True,
                         terms=("cinert", "cvel", "qfrc_actuator", "cfrc_ext")),
}
SUPPORTED_GYM_IDS = tuple(_SPECS)


class GymObservation:
    """The observation of Gymnasium env ``gym_id`` (v5) as a function of MuJoCo model states.

    gym_id: one of :data:`SUPPORTED_GYM_IDS`. model: the env's ``MjModel`` (or the planning
    model compiled from the same XML with sensors added). env_kwargs: the kwargs the env was made
    with (``gym.make(gym_id, **env_kwargs)``); those that shape the observation are read
    (``exclude_current_positions_from_observation``, Ant's ``include_cfrc_ext_in_observation``
    and ``contact_force_range``, Humanoid's ``include_{cinert,cvel,qfrc_actuator,cfrc_ext}
    _in_observation``, ``frame_skip``), the rest are ignored.

    ``obs(X, U=None) -> (..., nobs)``: see the module's docstring. ``state_only`` is True where
    this equals the env's observation of the state exactly (no derived terms); otherwise
    derived terms are evaluated at ``X`` with controls ``U: (..., nu)`` (the action that led to
    ``X``, as in the env; default zeros), solver warm start zero. Pure ``qpos``/``qvel`` terms are
    vectorised; derived terms loop over the batch on one ``MjData`` (not thread-safe: one object
    per thread).
    """

    def __init__(self, gym_id: str, model: mujoco.MjModel, env_kwargs: dict | None = None):
        if gym_id not in _SPECS:
            raise InvalidArgumentError(
                f"no observation for {gym_id!r}; supported: {', '.join(SUPPORTED_GYM_IDS)}")
        if not isinstance(model, mujoco.MjModel):
            raise InvalidArgumentError(f"model must be an MjModel, got {type(model).__name__}")
        kw = dict(env_kwargs or {})
        spec = _SPECS[gym_id]
        self.gym_id = gym_id
        self.model = m = model
        self.nq, self.nv, self.na, self.nu = m.nq, m.nv, m.na, m.nu
        self.nx = m.nq + m.nv + m.na
        self.frame_skip = int(kw.get("frame_skip", spec.frame_skip))
        exclude = spec.can_exclude and bool(kw.get("exclude_current_positions_from_observation", True))
        self._q0 = spec.drop_qpos if exclude else 0
        self._clip = spec.clip_qvel
        if gym_id == "Ant-v5":
            terms = ("cfrc_ext",) if kw.get("include_cfrc_ext_in_observation", True) else ()
        elif gym_id == "Humanoid-v5":
            terms = tuple(t for t in spec.terms if kw.get(f"include_{t}_in_observation", True))
        else:
            terms = spec.terms
        self.terms = terms
        self._force_range = tuple(float(v) for v in kw.get("contact_force_range", (-1.0, 1.0)))
        if "fingertip" in terms:
            self._tip = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "fingertip")
            self._target = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "target")
            if self._tip < 0 or self._target < 0:
                raise InvalidArgumentError("a Reacher model needs bodies 'fingertip' and 'target'")
        sizes = {"fingertip": 2, "cinert": 10 * (m.nbody - 1), "cvel": 6 * (m.nbody - 1),
                 "qfrc_actuator": m.nv - 6, "cfrc_ext": 6 * (m.nbody - 1)}
        self.n_state_obs = (2 * 2 + (m.nq - 2) + 2 if gym_id == "Reacher-v5"
                            else m.nq - self._q0 + m.nv)
        self.nobs = self.n_state_obs + sum(sizes[t] for t in terms)
        self.state_only = not terms
        self._data = mujoco.MjData(m)

    @classmethod
    def from_env(cls, env) -> GymObservation:
        """The observation of a ``gym.make``'d env (its id, kwargs and model)."""
        return cls(env.spec.id, env.unwrapped.model, env.spec.kwargs)

    # -- the state part, vectorised
    def _state_obs(self, X):
        nq, nv = self.nq, self.nv
        qpos, qvel = X[..., :nq], X[..., nq:nq + nv]
        if self.gym_id == "Reacher-v5":
            th = qpos[..., :2]
            return [np.cos(th), np.sin(th), qpos[..., 2:], qvel[..., :2]]
        if self._clip is not None:
            qvel = np.clip(qvel, -self._clip, self._clip)
        return [qpos[..., self._q0:], qvel]

    def _check(self, X, U):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim < 1 or X.shape[-1] != self.nx:
            raise InvalidArgumentError(f"X must have shape (..., {self.nx}), got {X.shape}")
        if U is None:
            U = np.zeros(X.shape[:-1] + (self.nu,))
        U = np.asarray(U, dtype=np.float64)
        if U.ndim < 1 or U.shape[-1] != self.nu:
            raise InvalidArgumentError(f"U must have shape (..., {self.nu}), got {U.shape}")
        try:
            shape = np.broadcast_shapes(X.shape[:-1], U.shape[:-1])
        except ValueError:
            raise InvalidArgumentError(
                f"X {X.shape} and U {U.shape} have batch shapes that do not broadcast") from None
        return X, U, shape

    def _derived(self, d) -> np.ndarray:
        """The derived terms from ``d`` as the env's ``_get_obs`` reads them."""
        parts = []
        for t in self.terms:
            if t == "fingertip":
                parts.append((d.xpos[self._tip] - d.xpos[self._target])[:2])
            elif t == "cfrc_ext" and self.gym_id == "Ant-v5":
                parts.append(np.clip(d.cfrc_ext[1:], *self._force_range).ravel())
            elif t == "qfrc_actuator":
                parts.append(d.qfrc_actuator[6:])
            else:  # cinert, cvel, Humanoid's cfrc_ext
                parts.append(getattr(d, t)[1:].ravel())
        return np.concatenate(parts)

    def _loop(self, X, U, shape, step: bool, warmstart=None) -> np.ndarray:
        m, d = self.model, self._data
        nq, nv = self.nq, self.nv
        Xf = np.broadcast_to(X, shape + (self.nx,)).reshape(-1, self.nx)
        Uf = np.broadcast_to(U, shape + (self.nu,)).reshape(-1, self.nu)
        Wf = None
        if warmstart is not None:
            Wf = np.broadcast_to(np.asarray(warmstart, dtype=np.float64), shape + (nv,)).reshape(-1, nv)
        out_state = np.empty((Xf.shape[0], self.n_state_obs))
        out_derived = np.empty((Xf.shape[0], self.nobs - self.n_state_obs))
        for i in range(Xf.shape[0]):
            d.qpos[:], d.qvel[:], d.act[:] = Xf[i, :nq], Xf[i, nq:nq + nv], Xf[i, nq + nv:]
            d.ctrl[:] = Uf[i]
            d.qacc_warmstart[:] = 0.0 if Wf is None else Wf[i]
            if step:
                d.time = 0.0
                mujoco.mj_step(m, d, nstep=self.frame_skip)
                out_state[i] = np.concatenate(self._state_obs(
                    np.concatenate([d.qpos, d.qvel, d.act])))
            elif self.terms == ("fingertip",):
                mujoco.mj_kinematics(m, d)  # Reacher reads body positions only
            else:
                mujoco.mj_forward(m, d)
            if self.terms:
                if self.terms != ("fingertip",):
                    mujoco.mj_rnePostConstraint(m, d)
                out_derived[i] = self._derived(d)
        return out_state, out_derived

    def __call__(self, X, U=None) -> np.ndarray:
        """Observations ``(..., nobs)`` of states ``X: (..., nx)`` (derived terms at ``X`` under
        controls ``U: (..., nu)``, default zeros; ``U`` is unused where ``state_only``)."""
        X, U, shape = self._check(X, U)
        parts = self._state_obs(np.broadcast_to(X, shape + (self.nx,)))
        if self.terms:
            _, derived = self._loop(X, U, shape, step=False)
            parts.append(derived.reshape(shape + derived.shape[-1:]))
        return np.concatenate(parts, axis=-1)

    def after_step(self, X_prev, U, warmstart=None) -> np.ndarray:
        """The env's observation ``(..., nobs)`` after stepping from ``X_prev: (..., nx)`` with
        action ``U: (..., nu)`` (``frame_skip`` physics steps, then ``mj_rnePostConstraint``), as
        ``env.step`` returns it. warmstart: ``(..., nv)`` the solver warm start
        (``data.qacc_warmstart`` before the step; default zero). With the env's warm start this
        is the env's observation bit for bit; with zero, Ant differs by ~1e-15 and Humanoid (PGS)
        by ~1e-4. One ``mj_step`` loop per state, on the calling thread."""
        X, U, shape = self._check(X_prev, U)
        state, derived = self._loop(X, U, shape, step=True, warmstart=warmstart)
        return np.concatenate([state, derived], axis=-1).reshape(shape + (self.nobs,))
