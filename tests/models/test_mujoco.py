"""MujocoDynamics against MuJoCo itself: per-step mj_step loops, mj_differentiatePos /
mj_integratePos, and Taylor checks of the Jacobians."""

import mujoco
import numpy as np
import pytest

from recede import CEM, CEMConfig, InvalidArgumentError, Problem, QuadraticCost
from recede.envs import get_task
from recede.models.mujoco import MujocoDynamics

FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS

# a free-floating box on a plane with a ball-jointed arm and a hinged forearm, with contacts,
# an Euler integrator and sensors of every stage
FREE_XML = """
<mujoco>
  <option timestep="0.005"/>
  <worldbody>
    <geom type="plane" size="5 5 .1"/>
    <body name="base" pos="0 0 0.35">
      <freejoint/>
      <geom type="box" size=".2 .15 .1"/>
      <body pos="0 0 .12">
        <joint name="shoulder" type="ball" damping=".1"/>
        <geom type="capsule" size=".04" fromto="0 0 0 0 0 .3"/>
        <body name="forearm" pos="0 0 .3">
          <joint name="elbow" type="hinge" axis="1 0 0" damping=".1"/>
          <geom type="capsule" size=".04" fromto="0 0 0 0 .25 0"/>
        </body>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor joint="elbow" ctrlrange="-2 2"/>
    <general joint="elbow" dyntype="filter" dynprm="0.05" ctrlrange="-1 1"/>
  </actuator>
  <sensor>
    <framepos objtype="xbody" objname="forearm"/>
    <framelinvel objtype="xbody" objname="base"/>
    <accelerometer site="s" />
  </sensor>
</mujoco>
"""
FREE_XML = FREE_XML.replace("<freejoint/>", '<freejoint/><site name="s"/>')


@pytest.fixture(scope="module")
def free():
    return MujocoDynamics(FREE_XML, frame_skip=3, nthread=2)


@pytest.fixture(scope="module")
def cheetah():
    task = get_task("HalfCheetah-v5")
    env = task.make_env()
    env.reset(seed=3)
    d = task.dynamics()
    x0 = task.state_of(env)
    env.close()
    return d, x0


def random_state(dyn, rng, spread=0.3):
    m = dyn.model
    q = m.qpos0.copy()
    mujoco.mj_integratePos(m, q, rng.normal(scale=spread, size=m.nv), 1.0)
    return np.concatenate([q, rng.normal(scale=spread, size=m.nv), rng.uniform(-0.5, 0.5, m.na)])


def reference(dyn, x0s, U):
    """Per-step mj_step loop on a fresh MjData per sequence: states and sensors after each step."""
    m, fs = dyn.model, dyn.frame_skip
    d = mujoco.MjData(m)
    B, H = U.shape[:2]
    X = np.empty((B, H + 1, dyn.nx))
    S = np.empty((B, H, m.nsensordata))
    for b in range(B):
        mujoco.mj_resetData(m, d)
        mujoco.mj_setState(m, d, dyn.full_state(x0s[b]), FULL)
        X[b, 0] = x0s[b]
        for t in range(H):
            d.ctrl[:] = U[b, t]
            for _ in range(fs):
                mujoco.mj_step(m, d)
            X[b, t + 1] = np.concatenate([d.qpos, d.qvel, d.act])
            S[b, t] = d.sensordata
    return X, S


def test_state_layout(free):
    assert (free.nq, free.nv, free.na, free.nu) == (12, 10, 1, 2)
    assert free.nx == 23 and free.ndx == 21
    assert free.dt == pytest.approx(0.015)
    np.testing.assert_array_equal(free.action_low, [-2, -1])
    x = random_state(free, np.random.default_rng(0))
    d = mujoco.MjData(free.model)
    mujoco.mj_setState(free.model, d, free.full_state(x), FULL)
    np.testing.assert_array_equal(free.state_of(d), x)


def test_state_units_follow_the_joint_types(free):
    # free joint: position m, quaternion none; ball: quaternion none; hinge: rad; activation none
    assert free.state_units == (("m",) * 3 + ("",) * 4 + ("",) * 4 + ("rad",)
                                + ("m/s",) * 3 + ("rad/s",) * 3 + ("rad/s",) * 3 + ("rad/s",) + ("",))
    assert free.action_units == ("", "")
    assert len(free.state_units) == len(free.state_names) == free.nx


@pytest.mark.parametrize("nthread", [1, 2])
def test_rollout_equals_mj_step_loop(free, nthread):
    dyn = MujocoDynamics(free.model, frame_skip=3, nthread=nthread)
    rng = np.random.default_rng(1)
    x0s = np.stack([random_state(dyn, rng) for _ in range(5)])
    U = rng.uniform(dyn.action_low, dyn.action_high, size=(5, 7, dyn.nu))
    X, S = dyn.rollout(x0s, U, sensors=True)
    Xr, Sr = reference(dyn, x0s, U)
    np.testing.assert_allclose(X, Xr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(S[:, 1:], Sr, rtol=0, atol=1e-12)
    assert not dyn.last_diverged.any()


def test_rollout_equals_loop_on_half_cheetah_with_contacts(cheetah):
    dyn, x0 = cheetah
    rng = np.random.default_rng(2)
    U = rng.uniform(-1, 1, size=(6, 20, dyn.nu))
    X = dyn.rollout(x0, U)
    Xr, _ = reference(dyn, np.tile(x0, (6, 1)), U)
    np.testing.assert_allclose(X, Xr, rtol=0, atol=1e-12)
    assert dyn.frame_skip == 5


def test_first_sensor_row_is_mj_forward_of_x0(free):
    rng = np.random.default_rng(3)
    x0 = random_state(free, rng)
    _, S = free.rollout(x0, rng.uniform(-1, 1, (2, 3, free.nu)), sensors=True)
    d = mujoco.MjData(free.model)
    mujoco.mj_setState(free.model, d, free.full_state(x0), FULL)
    mujoco.mj_forward(free.model, d)
    np.testing.assert_allclose(S[:, 0], np.tile(d.sensordata, (2, 1)), atol=1e-12)
    np.testing.assert_array_equal(free.sensors(x0), d.sensordata)
    assert list(free.sensor_slices) == ["sensor0", "sensor1", "sensor2"]  # unnamed in the XML
    np.testing.assert_array_equal(free.sensor(S, "sensor1"), S[..., 3:6])


def test_same_input_same_output_whatever_ran_before(cheetah):
    dyn, x0 = cheetah
    rng = np.random.default_rng(4)
    U = rng.uniform(-1, 1, size=(9, 10, dyn.nu))
    first = dyn.rollout(x0, U)
    dyn.rollout(x0, rng.uniform(-1, 1, size=(40, 10, dyn.nu)))  # leaves other warm starts behind
    np.testing.assert_array_equal(dyn.rollout(x0, U), first)


def test_step_matches_rollout(free):
    rng = np.random.default_rng(5)
    X = np.stack([random_state(free, rng) for _ in range(3)])
    U = rng.uniform(-1, 1, (3, free.nu))
    np.testing.assert_array_equal(free.step(X, U), free.rollout(X, U[:, None])[:, 1])
    np.testing.assert_array_equal(free.step(X[0], U[0]), free.rollout(X[:1], U[:1, None])[0, 1])


# ----------------------------------------------------------------- divergence

BLOWUP_XML = """
<mujoco>
  <option timestep="0.01"/>
  <worldbody><body><joint name="j" type="slide" axis="1 0 0"/><geom size=".1" mass="1"/></body></worldbody>
  <actuator><motor joint="j" gear="1e12" ctrlrange="-1 1"/></actuator>
</mujoco>
"""


def test_divergence_is_detected_and_costs_inf():
    dyn = MujocoDynamics(BLOWUP_XML, frame_skip=2, nthread=2)
    U = np.zeros((4, 10, 1))
    U[1, 3:] = 1.0   # blows up from step 3
    U[3, 0] = 1.0    # and from the very first step
    X = dyn.rollout(np.zeros(2), U)
    np.testing.assert_array_equal(dyn.last_diverged, [False, True, False, True])
    assert np.isfinite(X[[0, 2]]).all()
    assert np.isfinite(X[1, :4]).all() and np.isnan(X[1, 4:]).all()
    assert np.isnan(X[3, 1:]).all()
    cost = QuadraticCost([1.0, 1.0], [0.0])
    costs = Problem(dyn, cost, 10).evaluate(np.zeros(2), U)
    assert np.isfinite(costs[[0, 2]]).all() and np.isinf(costs[[1, 3]]).all()
    assert dyn.diverged_total >= 2


def test_planner_carries_on_past_diverging_samples():
    dyn = MujocoDynamics(BLOWUP_XML, frame_skip=1, nthread=1)
    # bounds wide enough that most samples blow up; the planner must still return a finite plan
    problem = Problem(dyn, QuadraticCost([1.0, 0.1], [0.0], x_goal=[0.0, 0.0]), 5,
                      action_low=-1.0, action_high=1.0)
    plan = CEM(problem, CEMConfig(samples=64, iterations=3)).plan(np.array([0.1, 0.0]), rng=0)
    assert np.isfinite(plan.cost)
    assert np.all(np.abs(plan.actions) <= 1.0)


# ----------------------------------------------------------------- tangent space


def test_diff_and_integrate_match_mujoco(free):
    rng = np.random.default_rng(6)
    m = free.model
    X = np.stack([random_state(free, rng, spread=1.0) for _ in range(6)])
    dX = rng.normal(size=(6, free.ndx))
    Y = free.integrate(X, dX)
    for b in range(6):
        q = X[b, :m.nq].copy()
        mujoco.mj_integratePos(m, q, dX[b, :m.nv], 1.0)
        np.testing.assert_allclose(Y[b, :m.nq], q, atol=1e-14)
        v = np.empty(m.nv)
        mujoco.mj_differentiatePos(m, v, 1.0, X[b, :m.nq], Y[b, :m.nq])
        np.testing.assert_allclose(free.diff(X[b], Y[b])[:m.nv], v, atol=1e-14)
    np.testing.assert_allclose(free.diff(X, Y), dX, atol=1e-12)
    np.testing.assert_allclose(Y[:, m.nq:], X[:, m.nq:] + dX[:, m.nv:], atol=0)


def _taylor_check(dyn, x, u, A, B, rng, scale, rel=1e-2, order=True):
    """f(x [+] dx, u + du) [-] f(x, u) = A dx + B du + O(|d|^2): halving d must quarter the error
    (``order``; contact solvers that stop at a tolerance add noise that does not shrink)."""
    dx = rng.normal(size=dyn.ndx)
    du = rng.normal(size=dyn.nu)
    base = dyn.step(x, u)
    errs = []
    for s in (scale, scale / 2):
        nxt = dyn.step(dyn.integrate(x, s * dx), u + s * du)
        errs.append(np.linalg.norm(dyn.diff(base, nxt) - s * (A @ dx + B @ du)))
        lin = np.linalg.norm(s * (A @ dx + B @ du))
    assert errs[0] < rel * lin
    if order:
        assert errs[1] < errs[0] / 2.5  # second-order remainder


def _fd_oracle(dyn, x, u, eps=1e-5):
    """The test's own central differences of single steps, one perturbation at a time."""
    A = np.empty((dyn.ndx, dyn.ndx))
    B = np.empty((dyn.ndx, dyn.nu))
    for i in range(dyn.ndx):
        e = np.zeros(dyn.ndx)
        e[i] = eps
        A[:, i] = dyn.diff(dyn.step(dyn.integrate(x, -e), u), dyn.step(dyn.integrate(x, e), u)) / (2 * eps)
    for j in range(dyn.nu):
        e = np.zeros(dyn.nu)
        e[j] = eps
        B[:, j] = dyn.diff(dyn.step(x, u - e), dyn.step(x, u + e)) / (2 * eps)
    return A, B


def _linearize_case(dyn, X, U, rng, scale, rtol, smooth=True):
    A, B = dyn.linearize(X, U)
    H = U.shape[0]
    assert A.shape == (H, dyn.ndx, dyn.ndx) and B.shape == (H, dyn.ndx, dyn.nu)
    for t in (0, H - 1):
        Ao, Bo = _fd_oracle(dyn, X[t], U[t])
        np.testing.assert_allclose(A[t], Ao, rtol=0, atol=rtol * max(1.0, np.abs(Ao).max()))
        np.testing.assert_allclose(B[t], Bo, rtol=0, atol=rtol * max(1.0, np.abs(Bo).max()))
        if smooth:
            _taylor_check(dyn, X[t], U[t], A[t], B[t], rng, scale)
        else:
            _taylor_check(dyn, X[t], U[t], A[t], B[t], rng, scale, rel=0.05, order=False)


def test_linearize_cartpole_rk4_uses_rollout_differences():
    dyn = get_task("cartpole-swingup-mj").dynamics()
    assert not dyn.integrator_supports_fd  # RK4: mjd_transitionFD refuses it
    rng = np.random.default_rng(7)
    U = rng.uniform(-5, 5, size=(1, 6, 1))
    X = dyn.rollout(np.array([0.1, 2.5, 0.3, -0.5]), U)[0]
    _linearize_case(dyn, X, U[0], rng, 1e-3, 1e-6)
    with pytest.raises(InvalidArgumentError, match="RK4"):
        dyn.linearize(X, U[0], method="transition")


def test_linearize_half_cheetah_transition_fd(cheetah):
    dyn, x0 = cheetah
    rng = np.random.default_rng(8)
    U = rng.uniform(-1, 1, size=(1, 4, dyn.nu))
    X = dyn.rollout(x0, U)[0]
    _linearize_case(dyn, X, U[0], rng, 1e-4, 1e-4, smooth=False)  # ground contacts


def test_linearize_free_joint_and_methods_agree(free):
    rng = np.random.default_rng(9)
    x0 = random_state(free, rng)
    U = rng.uniform(-1, 1, size=(1, 5, free.nu))
    X = free.rollout(x0, U)[0]
    _linearize_case(free, X, U[0], rng, 1e-4, 1e-5)
    A1, B1 = free.linearize(X, U[0], method="transition")
    A2, B2 = free.linearize(X, U[0], method="fd")
    np.testing.assert_allclose(A1, A2, atol=1e-5 * np.abs(A1).max())
    np.testing.assert_allclose(B1, B2, atol=1e-5 * np.abs(B1).max())


def test_linearize_at_control_bounds_is_one_sided(free):
    """MuJoCo clamps limited controls, so a central difference at a bound would halve B; both
    methods difference inside the range there and agree with each other."""
    rng = np.random.default_rng(10)
    x0 = random_state(free, rng)
    U = np.array([[2.0, -1.0], [-2.0, 1.0], [0.3, -0.2]])  # bounds: [-2, 2] and [-1, 1]
    X = free.rollout(x0, U[None])[0]
    A1, B1 = free.linearize(X, U, method="transition")
    A2, B2 = free.linearize(X, U, method="fd")
    np.testing.assert_allclose(B1, B2, atol=1e-6 * np.abs(B1).max())
    # the one-sided derivative at the bound equals the central one just inside it
    inside = U.copy()
    inside[0, 0] = 2.0 - 1e-3
    Xi = free.rollout(x0, inside[None])[0]
    _, Bi = free.linearize(Xi, inside, method="fd")
    np.testing.assert_allclose(B2[0, :, 0], Bi[0, :, 0], atol=1e-3 * np.abs(Bi[0, :, 0]).max())


# ----------------------------------------------------------------- planners on MuJoCo


def test_cem_plans_on_mujoco_through_problem():
    task = get_task("cartpole-swingup-mj")
    problem = task.problem(horizon=20)
    x0 = np.array([0.0, 0.4, 0.0, 0.0])
    plan = CEM(problem, CEMConfig(samples=100, iterations=3)).plan(x0, rng=0)
    zero = problem.evaluate(x0, np.zeros((1, 20, 1)))[0]
    assert plan.cost < zero
    assert np.all(plan.actions <= 10.0) and np.all(plan.actions >= -10.0)
    np.testing.assert_allclose(problem.evaluate(x0, plan.actions[None])[0], plan.cost, rtol=1e-12)
    np.testing.assert_array_equal(plan.states, problem.rollout(x0, plan.actions[None])[0])


# ----------------------------------------------------------------- bad input


def test_bad_models_and_arguments(tmp_path):
    with pytest.raises(InvalidArgumentError, match="does not compile"):
        MujocoDynamics("<mujoco><worldbody><body><geom type='nonsense'/></body></worldbody></mujoco>")
    with pytest.raises(InvalidArgumentError, match="no file at"):
        MujocoDynamics(str(tmp_path / "missing.xml"))
    with pytest.raises(InvalidArgumentError, match="frame_skip"):
        MujocoDynamics(BLOWUP_XML, frame_skip=0)
    with pytest.raises(InvalidArgumentError, match="nthread"):
        MujocoDynamics(BLOWUP_XML, nthread=0)
    with pytest.raises(InvalidArgumentError, match="model must be"):
        MujocoDynamics(3.5)


def test_wrong_sizes_name_the_value(free):
    with pytest.raises(InvalidArgumentError, match=r"x0 must have shape \(23,\).*\(5,\)"):
        free.rollout(np.zeros(5), np.zeros((1, 3, 2)))
    with pytest.raises(InvalidArgumentError, match=r"U must have shape \(B, H, 2\).*\(1, 3, 3\)"):
        free.rollout(np.zeros(23), np.zeros((1, 3, 3)))
    with pytest.raises(InvalidArgumentError, match="U must have shape"):
        free.step(np.zeros((2, 23)), np.zeros((2, 5)))
    with pytest.raises(InvalidArgumentError, match="X must have shape"):
        free.linearize(np.zeros((3, 23)), np.zeros((3, 2)))
    with pytest.raises(InvalidArgumentError, match="unknown sensor"):
        free.sensor(np.zeros((1, free.nsensordata)), "nope")


class _SensorCost:
    """Sum of the first sensor reading after every step (a residual-style cost)."""

    needs_sensors = True

    def __call__(self, X, U, S):
        return S[:, 1:, 0].sum(axis=1)


def test_problem_passes_sensor_data_to_costs_that_ask(free):
    rng = np.random.default_rng(11)
    x0 = random_state(free, rng)
    U = rng.uniform(-1, 1, (4, 6, free.nu))
    problem = Problem(free, _SensorCost(), 6)
    X, S = free.rollout(x0, U, sensors=True)
    np.testing.assert_array_equal(problem.evaluate(x0, U), S[:, 1:, 0].sum(axis=1))
    costs, states = problem.evaluate(x0, U, return_states=True)
    np.testing.assert_array_equal(states, X)
    with pytest.raises(InvalidArgumentError, match="reads sensor data"):
        Problem(MujocoDynamics(BLOWUP_XML), _SensorCost(), 5)


def test_cli_routes_mujoco_warnings_to_stderr_not_a_log_file(capsys, tmp_path, monkeypatch):
    from recede.cli import _route_mujoco_warnings

    monkeypatch.chdir(tmp_path)
    restore = _route_mujoco_warnings()
    try:
        dyn = MujocoDynamics(BLOWUP_XML, nthread=2)
        dyn.rollout(np.zeros(2), np.ones((6, 4, 1)))
    finally:
        restore()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "mujoco warning" in line]
    assert len(lines) == 1 and "unstable" in lines[0] and "DOF #" in lines[0]
    assert "times)" in lines[0]
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_max_speed_marks_runaway_sequences_diverged():
    xml = """<mujoco><option timestep="0.01"/><worldbody><body><joint name="j" type="slide" axis="1 0 0"/>
    <geom size=".1" mass="1"/></body></worldbody><actuator><motor joint="j" ctrlrange="-100 100"/></actuator></mujoco>"""
    dyn = MujocoDynamics(xml, max_speed=5.0, nthread=1)
    U = np.zeros((2, 10, 1))
    U[1] = 100.0  # +1 m/s per step (semi-implicit Euler: v_t = t exactly)
    X = dyn.rollout(np.zeros(2), U)
    np.testing.assert_array_equal(dyn.last_diverged, [False, True])
    assert np.isfinite(X[1, :6]).all() and np.isnan(X[1, 6:]).all()  # |v| = 6 > 5 at state 6
    assert np.isinf(Problem(dyn, QuadraticCost([1.0, 1.0], [0.0]), 10).evaluate(np.zeros(2), U)[1])
    with pytest.raises(InvalidArgumentError, match="max_speed"):
        MujocoDynamics(xml, max_speed=-1.0)
