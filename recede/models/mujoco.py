"""MuJoCo physics as a planning model: batched rollouts through ``mujoco.rollout``.

State. ``x = [qpos (nq), qvel (nv), act (na)]`` (``nx = nq + nv + na``): MuJoCo's physics state
without the time. Everything else in MuJoCo's full physics state (mocap poses, plugin and history
state) is held at the model's reset values. Models with free or ball joints have quaternions in
``qpos``; their tangent space has ``ndx = 2 nv + na`` dimensions, and :meth:`MujocoDynamics.diff`
and :meth:`MujocoDynamics.integrate` map between the two the way ``mj_differentiatePos`` and
``mj_integratePos`` do (vectorised here; tested against them). Jacobians live in tangent space.

Control step. One control step of ``dt = frame_skip * opt.timestep`` holds the control for
``frame_skip`` physics steps, exactly as Gymnasium's ``MujocoEnv.do_simulation`` does.

Sensors. ``rollout(x0, U, sensors=True)`` also returns ``S: (B, H+1, nsensordata)``:
``S[:, t+1]`` is ``data.sensordata`` as ``mj_step`` leaves it after control step ``t``, which is
what an environment reads after stepping (MuJoCo evaluates sensors before integrating, so these
are the sensors of the last physics substep's starting state, the same values an env's
``data.xpos`` holds after ``mj_step``). ``S[:, 0]`` holds the sensors of ``x0`` itself, from
``mj_forward`` with zero controls. Costs read positions, velocities and contacts from sensors
added to the XML, in the style of MuJoCo MPC's residuals.

Divergence. Every rollout starts its clock at ``_T0``. When MuJoCo finds a bad state (NaN, inf or
huge accelerations) it warns and resets the data, which sends the time back to zero; a sequence
whose time column departs from the uninterrupted clock, or whose state is not finite, is marked
diverged: its states (and sensors) from the failing control step on are NaN, so every cost of it
is +inf. ``last_diverged`` holds the mask of the last batch; ``diverged_total`` and
``rollouts_total`` count sequences over the model's life (the CLI reports them).

Linearisation. ``linearize`` uses ``mujoco.mjd_transitionFD`` per physics step, chained over the
``frame_skip`` substeps (``A = A_k ... A_1``, ``B = sum A_k..A_{j+1} B_j``), with the knots spread
over a thread pool (MuJoCo releases the GIL). ``mjd_transitionFD`` does not support the RK4
integrator; for RK4 models (or ``method="fd"``) ``linearize`` takes central differences in
tangent space through one batched ``mujoco.rollout`` of every perturbed state and control.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import mujoco
import numpy as np
from mujoco import rollout as _mj_rollout

from recede._threads import available_cores
from recede.errors import InvalidArgumentError
from recede.models.base import (
    as_actions, as_bound, as_state, as_trajectory, broadcast_x0, check_finite,
)

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS.value
_T0 = 1.0  # rollouts start here, so MuJoCo's reset-to-zero is always visible in the time column
_FREE, _BALL = int(mujoco.mjtJoint.mjJNT_FREE), int(mujoco.mjtJoint.mjJNT_BALL)


THREADS_ENV = "RECEDE_NUM_THREADS"


def default_threads() -> int:
    """The cores this process may run on, or fewer where ``$RECEDE_NUM_THREADS`` says so (a sweep's
    workers set it to 1, as they set Numba's and OpenMP's, so that N workers on N cores do not
    each start N rollout threads)."""
    cores = available_cores()
    limit = os.environ.get(THREADS_ENV, "").strip()
    if limit:
        try:
            n = int(limit)
        except ValueError:
            n = 0
        if n < 1:
            raise InvalidArgumentError(f"{THREADS_ENV} must be an integer >= 1, got {limit!r}")
        return min(n, cores)
    return cores


def load_model(model) -> mujoco.MjModel:
    """An ``MjModel`` from an ``MjModel``, an ``MjSpec``, an XML string or a path to an XML file."""
    if isinstance(model, mujoco.MjModel):
        return model
    try:
        if isinstance(model, mujoco.MjSpec):
            return model.compile()
        if isinstance(model, (str, os.PathLike)):
            text = os.fspath(model)
            if text.lstrip().startswith("<"):
                return mujoco.MjModel.from_xml_string(text)
            if not os.path.isfile(text):
                raise InvalidArgumentError(f"model must be an MJCF path, an XML string or an MjModel; "
                                           f"no file at {text!r}")
            return mujoco.MjModel.from_xml_path(text)
    except (ValueError, mujoco.FatalError) as e:
        shown = model if not isinstance(model, str) or len(model) < 60 else model[:57] + "..."
        raise InvalidArgumentError(
            f"model does not compile: {' '.join(str(e).split())} (model={shown!r})"
        ) from None
    raise InvalidArgumentError(
        f"model must be an MjModel, an MjSpec, an XML string or a path, got {type(model).__name__}"
    )


def state_of(data) -> np.ndarray:
    """The model state ``[qpos, qvel, act]`` of an ``MjData``, as float64."""
    return np.concatenate([data.qpos, data.qvel, data.act]).astype(np.float64)


# ----------------------------------------------------------------- quaternion maps (vectorised)


def _quat_mul(a, b):
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], axis=-1)


def _quat_to_vel(q):
    """mju_quat2Vel with dt = 1: the rotation vector of unit quaternion q (sign-normalised)."""
    v = q[..., 1:]
    s = np.linalg.norm(v, axis=-1)
    angle = 2.0 * np.arctan2(s, q[..., 0])
    angle = np.where(angle > np.pi, angle - 2.0 * np.pi, angle)
    scale = np.divide(angle, s, out=np.zeros_like(s), where=s > 0)
    return v * scale[..., None]


def _vel_to_quat(w):
    """exp map: the unit quaternion rotating by rotation vector w (as mju_quatIntegrate)."""
    angle = np.linalg.norm(w, axis=-1)
    half = 0.5 * angle
    scale = np.divide(np.sin(half), angle, out=np.full_like(angle, 0.5), where=angle > 0)
    return np.concatenate([np.cos(half)[..., None], w * scale[..., None]], axis=-1)


def _normalize(q):
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    return q / np.where(n > 0, n, 1.0)


# ----------------------------------------------------------------- the model


class MujocoDynamics:
    """A MuJoCo model as a batched ``Dynamics`` (and ``Differentiable``) for every planner.

    model: an ``MjModel``, an ``MjSpec``, an MJCF string or a path (a task's own model:
    ``recede.get_task(name).dynamics()``).
    frame_skip: physics steps per
    control step. nthread: rollout threads (default: the cores available; 1 runs on the calling
    thread). action_low/high: default to the actuators' control ranges (+-inf when unlimited).
    max_speed: when set, a sequence in which any ``|qvel|`` exceeds it counts as diverged (NaN
    states from there, cost +inf). MuJoCo flags only accelerations above 1e10; a contact
    instability can fling a body at thousands of m/s without that, and a planner on the true
    model will find and use it (HalfCheetah-v5 did, see ``recede.envs.robots``).
    """

    def __init__(self, model, *, frame_skip: int = 1, nthread: int | None = None,
                 action_low=None, action_high=None, max_speed: float | None = None):
        if isinstance(frame_skip, bool) or not isinstance(frame_skip, (int, np.integer)) or frame_skip < 1:
            raise InvalidArgumentError(f"frame_skip must be an integer >= 1, got {frame_skip!r}")
        nthread = default_threads() if nthread is None else nthread
        if isinstance(nthread, bool) or not isinstance(nthread, (int, np.integer)) or nthread < 1:
            raise InvalidArgumentError(f"nthread must be an integer >= 1, got {nthread!r}")
        if max_speed is not None and not (isinstance(max_speed, (int, float)) and max_speed > 0):
            raise InvalidArgumentError(f"max_speed must be a positive number or None, got {max_speed!r}")
        self.max_speed = None if max_speed is None else float(max_speed)
        self.model = m = load_model(model)
        self.frame_skip = int(frame_skip)
        self.nthread = int(nthread)
        # planners keep their own Numba kernels on one thread around our pool (planners/base.py)
        self.parallel_rollouts = self.nthread > 1
        self.nq, self.nv, self.na, self.nu = m.nq, m.nv, m.na, m.nu
        self.nx = m.nq + m.nv + m.na
        self.ndx = 2 * m.nv + m.na
        self.nsensordata = m.nsensordata
        self.dt = float(m.opt.timestep) * self.frame_skip
        limited = m.actuator_ctrllimited.astype(bool) if m.nu else np.zeros(0, bool)
        rng = m.actuator_ctrlrange.reshape(m.nu, 2) if m.nu else np.zeros((0, 2))
        low = np.where(limited, rng[:, 0], -np.inf) if action_low is None else action_low
        high = np.where(limited, rng[:, 1], np.inf) if action_high is None else action_high
        self.action_low = self._bound("action_low", low)
        self.action_high = self._bound("action_high", high)
        self.state_names = self._names()
        self.state_units = self._units()
        self.action_units = ("",) * m.nu  # ctrl's unit depends on the actuator (gear, gain)
        self.action_names = tuple(
            mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_ACTUATOR, i) or f"u{i}" for i in range(m.nu)
        )
        self.sensor_slices = self._sensor_slices()
        # joints with quaternions in qpos: (qpos address, dof address, is_free)
        self._quat_joints = [
            (int(m.jnt_qposadr[j]), int(m.jnt_dofadr[j]), int(m.jnt_type[j]) == _FREE)
            for j in range(m.njnt) if int(m.jnt_type[j]) in (_FREE, _BALL)
        ]
        self._plain_q, self._plain_v = self._plain_coordinates()
        self.integrator_supports_fd = int(m.opt.integrator) != int(mujoco.mjtIntegrator.mjINT_RK4)

        data = mujoco.MjData(m)
        mujoco.mj_resetData(m, data)
        self._nfull = mujoco.mj_stateSize(m, _FULL)
        template = np.empty(self._nfull)
        mujoco.mj_getState(m, data, template, _FULL)
        template[0] = _T0
        self._template = template
        qpos_at = mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_TIME.value)
        self._xs = slice(qpos_at, qpos_at + self.nx)  # qpos, qvel, act are contiguous
        self._forward_data = data
        self._datas = [mujoco.MjData(m) for _ in range(self.nthread)]
        self._pool = _mj_rollout.Rollout(nthread=0 if self.nthread == 1 else self.nthread)
        self._models: list = []
        self._clock: dict[int, np.ndarray] = {}
        self._lin_pool: ThreadPoolExecutor | None = None
        self._lin_datas: list = []
        self._lock = threading.Lock()
        self.last_diverged = np.zeros(0, dtype=bool)
        self.diverged_total = 0  # sequences that diverged, over every rollout so far
        self.rollouts_total = 0  # sequences rolled out so far

    # ------------------------------------------------------------- description

    def _bound(self, name, value) -> np.ndarray:
        return as_bound(name, value, self.nu)

    def _names(self) -> tuple[str, ...]:
        m = self.model
        qn, vn = [f"qpos{i}" for i in range(m.nq)], [f"qvel{i}" for i in range(m.nv)]
        for j in range(m.njnt):
            name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j) or f"joint{j}"
            qa, va, jt = int(m.jnt_qposadr[j]), int(m.jnt_dofadr[j]), int(m.jnt_type[j])
            nqj, nvj = {_FREE: (7, 6), _BALL: (4, 3)}.get(jt, (1, 1))
            for k in range(nqj):
                qn[qa + k] = name if nqj == 1 else f"{name}[{k}]"
            for k in range(nvj):
                vn[va + k] = f"{name}_dot" if nvj == 1 else f"{name}_dot[{k}]"
        return tuple(qn + vn + [f"act{i}" for i in range(m.na)])

    def _units(self) -> tuple[str, ...]:
        """The unit of each state entry: slide joints m and m/s, hinges rad and rad/s, a free
        joint's position m and angular velocity rad/s; quaternions and activations none."""
        m = self.model
        qu, vu = [""] * m.nq, [""] * m.nv
        for j in range(m.njnt):
            qa, va, jt = int(m.jnt_qposadr[j]), int(m.jnt_dofadr[j]), int(m.jnt_type[j])
            if jt == _FREE:
                qu[qa:qa + 3], vu[va:va + 6] = ["m"] * 3, ["m/s"] * 3 + ["rad/s"] * 3
            elif jt == _BALL:
                vu[va:va + 3] = ["rad/s"] * 3
            else:
                slide = jt == int(mujoco.mjtJoint.mjJNT_SLIDE)
                qu[qa], vu[va] = ("m", "m/s") if slide else ("rad", "rad/s")
        return tuple(qu + vu + [""] * m.na)

    def _sensor_slices(self) -> dict[str, slice]:
        m, out = self.model, {}
        for i in range(m.nsensor):
            name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_SENSOR, i) or f"sensor{i}"
            a = int(m.sensor_adr[i])
            out[name] = slice(a, a + int(m.sensor_dim[i]))
        return out

    def sensor(self, S: np.ndarray, name: str) -> np.ndarray:
        """The columns of sensor ``name`` in sensor data ``S: (..., nsensordata)``."""
        try:
            return S[..., self.sensor_slices[name]]
        except KeyError:
            known = ", ".join(self.sensor_slices) or "none"
            raise InvalidArgumentError(f"unknown sensor {name!r}; this model has: {known}") from None

    def _plain_coordinates(self):
        q = np.ones(self.nq, dtype=bool)
        v = np.ones(self.nv, dtype=bool)
        for qa, va, free in self._quat_joints:
            if free:
                q[qa + 3:qa + 7] = False
                v[va + 3:va + 6] = False
            else:
                q[qa:qa + 4] = False
                v[va:va + 3] = False
        return np.flatnonzero(q), np.flatnonzero(v)

    def __repr__(self) -> str:
        return (f"MujocoDynamics(nq={self.nq}, nv={self.nv}, na={self.na}, nu={self.nu}, "
                f"frame_skip={self.frame_skip}, dt={self.dt:g}, nthread={self.nthread})")

    # ------------------------------------------------------------- state

    @staticmethod
    def state_of(data) -> np.ndarray:
        """The model state ``(nx,)`` of an ``MjData`` (e.g. a Gymnasium env's ``data``)."""
        return state_of(data)

    def full_state(self, X: np.ndarray) -> np.ndarray:
        """States ``(..., nx)`` -> MuJoCo full physics states ``(..., nstate)`` at time ``_T0``."""
        out = np.broadcast_to(self._template, X.shape[:-1] + (self._nfull,)).copy()
        out[..., self._xs] = X
        return out

    def diff(self, x0, x1) -> np.ndarray:
        """Tangent difference ``x1 [-] x0``: ``(..., nx), (..., nx) -> (..., ndx)`` as
        ``mj_differentiatePos`` (positions) and plain differences (velocities, activations)."""
        x0 = np.asarray(x0, dtype=np.float64)
        x1 = np.asarray(x1, dtype=np.float64)
        nq, nv = self.nq, self.nv
        dq = np.empty(np.broadcast_shapes(x0.shape, x1.shape)[:-1] + (nv,))
        dq[..., self._plain_v] = x1[..., self._plain_q] - x0[..., self._plain_q]
        for qa, va, free in self._quat_joints:
            o = 3 if free else 0
            q0, q1 = x0[..., qa + o:qa + o + 4], x1[..., qa + o:qa + o + 4]
            conj = q0 * np.array([1.0, -1.0, -1.0, -1.0])
            dq[..., va + o:va + o + 3] = _quat_to_vel(_quat_mul(conj, q1))
        return np.concatenate([dq, x1[..., nq:] - x0[..., nq:]], axis=-1)

    def integrate(self, x, dx) -> np.ndarray:
        """``x [+] dx``: ``(..., nx), (..., ndx) -> (..., nx)``, the inverse of :meth:`diff`
        (quaternions as ``mj_integratePos``: ``normalise(q) * exp(dq)``)."""
        x = np.asarray(x, dtype=np.float64)
        dx = np.asarray(dx, dtype=np.float64)
        nq, nv = self.nq, self.nv
        shape = np.broadcast_shapes(x.shape[:-1], dx.shape[:-1])
        out = np.empty(shape + (self.nx,))
        q = np.broadcast_to(x[..., :nq], shape + (nq,))
        out[..., self._plain_q] = q[..., self._plain_q] + dx[..., self._plain_v]
        for qa, va, free in self._quat_joints:
            o = 3 if free else 0
            quat = q[..., qa + o:qa + o + 4]
            out[..., qa + o:qa + o + 4] = _quat_mul(
                _normalize(quat), _vel_to_quat(dx[..., va + o:va + o + 3]))
        out[..., nq:] = x[..., nq:] + dx[..., nv:]
        return out

    # ------------------------------------------------------------- rollouts

    def _model_list(self, n: int) -> list:
        if len(self._models) < n:
            self._models = [self.model] * max(n, 2 * len(self._models))
        return self._models if len(self._models) == n else self._models[:n]

    def _expected_clock(self, nstep: int) -> np.ndarray:
        """The time column of an uninterrupted rollout, summed the way mj_step sums it."""
        c = self._clock.get(nstep)
        if c is None:
            c = np.empty(nstep)
            t, h = _T0, float(self.model.opt.timestep)
            for k in range(nstep):
                t += h
                c[k] = t
            self._clock[nstep] = c
        return c

    def _physics(self, init: np.ndarray, ctrl: np.ndarray, nstep: int):
        """One ``mujoco.rollout`` call: init (N, nstate), ctrl (N, nstep, nu) contiguous."""
        N = init.shape[0]
        state = np.empty((N, nstep, self._nfull))
        sens = np.empty((N, nstep, self.nsensordata))
        with self._lock:  # one batch at a time through the pool and its MjData
            self._pool.rollout(self._model_list(N), self._datas, init, ctrl, control_spec=
                               mujoco.mjtState.mjSTATE_CTRL.value, skip_checks=True, nstep=nstep,
                               initial_warmstart=None, state=state, sensordata=sens, chunk_size=None)
        return state, sens

    def _run(self, x0s: np.ndarray, U: np.ndarray, sensors: bool):
        B, H = U.shape[0], U.shape[1]
        fs = self.frame_skip
        ctrl = U if fs == 1 else np.repeat(U, fs, axis=1)
        state, sens = self._physics(self.full_state(x0s), np.ascontiguousarray(ctrl), H * fs)
        X = np.empty((B, H + 1, self.nx))
        X[:, 0] = x0s
        X[:, 1:] = state[:, fs - 1::fs, self._xs]
        # divergence: the clock was reset, or the state is not finite
        bad_step = state[:, :, 0] != self._expected_clock(H * fs)
        bad = bad_step.any(axis=1)
        if self.max_speed is not None:
            v = X[:, 1:, self.nq:self.nq + self.nv]
            with np.errstate(invalid="ignore"):
                fast = np.abs(v).max(axis=2, initial=0.0) > self.max_speed  # (B, H)
            X[:, 1:][fast] = np.nan  # the first too-fast state on counts as non-finite
        nonfinite = ~np.isfinite(X).all(axis=(1, 2))
        diverged = bad | nonfinite
        S = None
        if sensors:
            S = np.empty((B, H + 1, self.nsensordata))
            S[:, 0] = self._sensors_at(x0s)
            S[:, 1:] = sens[:, fs - 1::fs]
        if diverged.any():
            for b in np.flatnonzero(diverged):
                k = int(np.argmax(bad_step[b])) // fs if bad[b] else H
                if nonfinite[b]:
                    k = min(k, int(np.argmax(~np.isfinite(X[b]).all(axis=1))) - 1)
                X[b, k + 1:] = np.nan
                if S is not None:
                    S[b, k + 1:] = np.nan
        self.last_diverged = diverged
        self.diverged_total += int(diverged.sum())
        self.rollouts_total += B
        return X, S

    def _sensors_at(self, x0s: np.ndarray) -> np.ndarray:
        """Sensor data of states (B, nx) via mj_forward with zero controls."""
        out = np.empty((x0s.shape[0], self.nsensordata))
        if self.nsensordata == 0:
            return out
        d = self._forward_data
        # planners pass one x0 broadcast to the batch: evaluate each distinct state once
        rows = [0] if (x0s == x0s[0]).all() else range(x0s.shape[0])
        with self._lock:
            for b in rows:
                mujoco.mj_setState(self.model, d, self.full_state(x0s[b]), _FULL)
                d.ctrl[:] = 0.0
                mujoco.mj_forward(self.model, d)
                out[b] = d.sensordata
        if len(rows) == 1:
            out[1:] = out[0]
        return out

    def rollout(self, x0, U, *, sensors: bool = False):
        """x0: (nx,) or (B, nx), U: (B, H, nu) -> X: (B, H+1, nx), and with ``sensors`` also
        S: (B, H+1, nsensordata). Diverged sequences hold NaN from the failing step on."""
        U = as_actions(U, self.nu, "U")
        x0 = broadcast_x0(as_state(x0, self.nx, "x0", batch=True), U.shape[0])
        X, S = self._run(x0, U, sensors)
        return (X, S) if sensors else X

    def step(self, X, U) -> np.ndarray:
        """X: (B, nx), U: (B, nu) -> (B, nx); or one x: (nx,), u: (nu,) -> (nx,)."""
        X = as_state(X, self.nx, "X", batch=True)
        U = np.asarray(U, dtype=np.float64)
        want = (self.nu,) if X.ndim == 1 else (X.shape[0], self.nu)
        if U.shape != want:
            raise InvalidArgumentError(f"U must have shape {want} to match X of shape {X.shape}, got {U.shape}")
        check_finite("U", U)
        one = X.ndim == 1
        Xb, Ub = np.atleast_2d(X), U.reshape(-1, 1, self.nu)
        out = self._run(Xb, Ub, False)[0][:, 1]
        return out[0] if one else out

    def step_one(self, x, u) -> np.ndarray:
        """One state x: (nx,) and action u: (nu,) -> next state (nx,)."""
        return self.step(np.asarray(x, dtype=np.float64).reshape(-1), np.asarray(u, dtype=np.float64).reshape(-1))

    def sensors(self, X) -> np.ndarray:
        """Sensor data of states ``(B, nx)`` (or one ``(nx,)``) via ``mj_forward``, zero controls."""
        X = as_state(X, self.nx, "X", batch=True)
        out = self._sensors_at(np.atleast_2d(X))
        return out[0] if X.ndim == 1 else out

    # ------------------------------------------------------------- Jacobians

    def linearize(self, X, U, *, eps: float = 1e-6, method: str = "auto"):
        """X: (H+1, nx), U: (H, nu) -> A: (H, ndx, ndx), B: (H, ndx, nu), the Jacobians of one
        control step in tangent space at ``(X[t], U[t])``.

        method: ``"auto"`` (``mjd_transitionFD`` unless the integrator is RK4), ``"transition"``
        or ``"fd"`` (central differences through a batched rollout).
        """
        X, U = as_trajectory(X, U, self.nx, self.nu)
        H = U.shape[0]
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise InvalidArgumentError(f"eps must be a positive number, got {eps!r}")
        if method not in ("auto", "transition", "fd"):
            raise InvalidArgumentError(f"method must be 'auto', 'transition' or 'fd', got {method!r}")
        if method == "transition" and not self.integrator_supports_fd:
            raise InvalidArgumentError("method='transition' needs a non-RK4 integrator; "
                                       "mjd_transitionFD does not support RK4 (use 'fd' or 'auto')")
        if method == "fd" or (method == "auto" and not self.integrator_supports_fd):
            return self._linearize_fd(X[:H], U, float(eps))
        return self._linearize_transition(X[:H], U, float(eps))

    def _linearize_transition(self, X, U, eps):
        H, n, nu, m, fs = U.shape[0], self.ndx, self.nu, self.model, self.frame_skip
        A = np.empty((H, n, n))
        Bm = np.empty((H, n, nu))
        if self._lin_pool is None and self.nthread > 1:
            self._lin_pool = ThreadPoolExecutor(max_workers=self.nthread, thread_name_prefix="recede-mjd")
        while len(self._lin_datas) < self.nthread:
            self._lin_datas.append(mujoco.MjData(m))
        full = self.full_state(X)

        def knots(worker: int, ts: range):
            d = self._lin_datas[worker]
            Ak, Bk = np.empty((n, n)), np.empty((n, nu))
            for t in ts:
                mujoco.mj_setState(m, d, full[t], _FULL)
                d.qacc_warmstart[:] = 0.0
                d.ctrl[:] = U[t]
                for k in range(fs):
                    mujoco.mjd_transitionFD(m, d, eps, True, Ak, Bk, None, None)
                    if k == 0:
                        A[t], Bm[t] = Ak, Bk
                    else:
                        A[t] = Ak @ A[t]
                        Bm[t] = Ak @ Bm[t] + Bk
                    if k < fs - 1:
                        mujoco.mj_step(m, d)

        chunks = [range(i, H, self.nthread) for i in range(min(self.nthread, H))]
        if len(chunks) == 1 or self._lin_pool is None:
            knots(0, range(H))
        else:
            for f in [self._lin_pool.submit(knots, w, ts) for w, ts in enumerate(chunks)]:
                f.result()
        return A, Bm

    def _linearize_fd(self, X, U, eps):
        H, n, nu = U.shape[0], self.ndx, self.nu
        P = 2 * (n + nu) + 1  # per knot: +-eps along each state and control direction, nominal
        E = np.eye(n) * eps
        Xp = np.empty((H, P, self.nx))
        Up = np.repeat(U[:, None, :], P, axis=1)
        Xp[:, :n] = self.integrate(X[:, None, :], E[None])
        Xp[:, n:2 * n] = self.integrate(X[:, None, :], -E[None])
        Xp[:, 2 * n:] = X[:, None, :]
        Up[:, 2 * n:2 * n + nu] += np.eye(nu) * eps
        Up[:, 2 * n + nu:2 * n + 2 * nu] -= np.eye(nu) * eps
        nxt = self._run(Xp.reshape(H * P, self.nx), Up.reshape(H * P, 1, nu), False)[0][:, 1]
        nxt = nxt.reshape(H, P, self.nx)
        A = self.diff(nxt[:, n:2 * n], nxt[:, :n]) / (2 * eps)  # (H, n [direction], n)
        # MuJoCo clamps limited controls to their range, so at a bound the difference is taken
        # one-sided, inside the range (as mjd_transitionFD does)
        f0 = nxt[:, -1:]
        up = self.diff(f0, nxt[:, 2 * n:2 * n + nu]) / eps
        down = self.diff(nxt[:, 2 * n + nu:2 * n + 2 * nu], f0) / eps
        m = self.model
        limited = m.actuator_ctrllimited.astype(bool) if nu else np.zeros(0, bool)
        rng = m.actuator_ctrlrange.reshape(nu, 2) if nu else np.zeros((0, 2))
        up_ok = ~limited | (U + eps <= rng[:, 1])      # (H, nu)
        down_ok = ~limited | (U - eps >= rng[:, 0])
        Bm = np.where((up_ok & down_ok)[..., None], 0.5 * (up + down),
                      np.where(up_ok[..., None], up, np.where(down_ok[..., None], down, 0.0)))
        return np.ascontiguousarray(A.transpose(0, 2, 1)), np.ascontiguousarray(Bm.transpose(0, 2, 1))

    def close(self) -> None:
        """Stop the thread pools (also done when the object is collected)."""
        if self._lin_pool is not None:
            self._lin_pool.shutdown(wait=True)
            self._lin_pool = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
