"""iLQR / DDP against oracles: scipy's bounded solver and KKT for the box QP, the LQR solution on
linear problems, finite differences of the total cost at the optimum, and the two code paths
(the Python loop and the fused Numba solve) against each other."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.optimize

from recede import Problem
from recede.costs import FunctionCost, QuadraticCost
from recede.errors import InvalidArgumentError
from recede.models.analytic import CartPole, DoubleIntegrator, Pendulum, Unicycle
from recede.models.linear import LinearDynamics
from recede.planners.ilqr import (
    ILQR,
    DDPConfig,
    ILQRConfig,
    Mode,
    box_qp,
    fd_linearize,
    quadratize,
    second_order,
)
from recede.planners.lqr import tvlqr
from recede.problem import Status

INF = np.inf


def _random_pd(rng, n, floor=0.1):
    M = rng.normal(size=(n, n))
    return M @ M.T + floor * np.eye(n)


# ---------------------------------------------------------------------------------- box QP


@pytest.mark.parametrize("seed", range(12))
def test_box_qp_satisfies_kkt_and_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    n = 1 + seed % 6
    Hm, g = _random_pd(rng, n), rng.normal(size=n) * 3
    lo, hi = -rng.uniform(0.05, 1.0, n), rng.uniform(0.05, 1.0, n)
    lo[rng.random(n) < 0.2] = -INF
    hi[rng.random(n) < 0.2] = INF
    x, free = box_qp(Hm, g, lo, hi, x0=rng.normal(size=n))
    assert np.all(x >= lo) and np.all(x <= hi)  # exactly inside
    grad = Hm @ x + g
    tol = 1e-8 * (1 + np.abs(g).max())
    at_lo, at_hi = x <= lo, x >= hi
    inside = ~(at_lo | at_hi)
    assert np.all(np.abs(grad[inside]) <= tol)
    assert np.all(grad[at_lo] >= -tol) and np.all(grad[at_hi] <= tol)
    assert np.array_equal(free, ~((at_lo & (grad > 0)) | (at_hi & (grad < 0))))
    ref = scipy.optimize.minimize(lambda z: 0.5 * z @ Hm @ z + g @ z, np.zeros(n),
                                  jac=lambda z: Hm @ z + g, method="L-BFGS-B",
                                  bounds=list(zip(lo, hi)), options={"ftol": 1e-15, "gtol": 1e-12})
    np.testing.assert_allclose(x, ref.x, atol=1e-6)


def test_box_qp_unbounded_is_the_newton_step_and_errors_name_the_argument():
    rng = np.random.default_rng(0)
    Hm, g = _random_pd(rng, 4), rng.normal(size=4)
    x, free = box_qp(Hm, g, -INF, INF)
    np.testing.assert_allclose(x, -np.linalg.solve(Hm, g), rtol=1e-12)
    assert free.all()
    with pytest.raises(InvalidArgumentError, match="low must be <= high"):
        box_qp(Hm, g, np.ones(4), np.zeros(4))
    with pytest.raises(InvalidArgumentError, match="H must be square"):
        box_qp(np.ones((4, 3)), g, -1, 1)
    with pytest.raises(InvalidArgumentError, match="g must have shape"):
        box_qp(Hm, np.ones(3), -1, 1)
    with pytest.raises(InvalidArgumentError, match="not positive definite"):
        box_qp(-np.eye(4), g, -INF, INF)


# ---------------------------------------------------------------------------------- linear-quadratic


def _lq_problem(seed, H=15, bounded=False):
    rng = np.random.default_rng(seed)
    nx, nu = 4, 2
    A = np.eye(nx) + 0.1 * rng.normal(size=(nx, nx))
    B = 0.3 * rng.normal(size=(nx, nu))
    Q, R, Qf = _random_pd(rng, nx), _random_pd(rng, nu), _random_pd(rng, nx)
    lim = 0.4 if bounded else INF
    dyn = LinearDynamics(A, B, action_low=np.full(nu, -lim), action_high=np.full(nu, lim))
    return Problem(dyn, QuadraticCost(Q, R, Qf), H), (A, B, Q, R, Qf), rng.normal(size=nx) * 2


@pytest.mark.parametrize("mode", ["ilqr", "ddp"])
def test_linear_quadratic_converges_in_one_iteration_to_lqr(mode):
    problem, (A, B, Q, R, Qf), x0 = _lq_problem(0)
    H = problem.horizon
    plan = ILQR(problem, ILQRConfig(mode=mode)).plan(x0)
    sol = tvlqr(np.broadcast_to(A, (H, 4, 4)), np.broadcast_to(B, (H, 4, 2)), Q, R, Qf)
    x, U = x0.copy(), []
    for t in range(H):
        U.append(sol.K[t] @ x)
        x = A @ x + B @ U[-1]
    np.testing.assert_allclose(plan.actions, np.array(U), rtol=1e-9, atol=1e-10)
    assert plan.cost == pytest.approx(sol.value(x0), rel=1e-10)  # 1/2 x0'P0 x0
    assert plan.status is Status.CONVERGED and plan.iterations == 1
    assert plan.trace[0].step == 1.0
    np.testing.assert_allclose(plan.K, sol.K, rtol=1e-9, atol=1e-10)


def test_ddp_equals_ilqr_on_linear_dynamics():
    problem, _, x0 = _lq_problem(1, bounded=True)
    a = ILQR(problem, ILQRConfig()).plan(x0)
    b = ILQR(problem, DDPConfig()).plan(x0)
    assert b.info["mode"] == "ddp"
    np.testing.assert_array_equal(a.actions, b.actions)
    assert [t.cost for t in a.trace] == [t.cost for t in b.trace]


# ---------------------------------------------------------------------------------- nonlinear


def _unicycle(H=30, lim=INF, **kw):
    dyn = Unicycle(max_speed=1e3, max_turn_rate=1e3, **kw)
    cost = QuadraticCost([100.0] * 3, [1.0, 1.0], [100.0] * 3)
    return Problem(dyn, cost, H, action_low=[-lim, -lim], action_high=[lim, lim])


def _fd_gradient(problem, x0, U, eps=1e-6):
    g = np.zeros(U.size)
    for i in range(U.size):
        d = np.zeros(U.size)
        d[i] = eps
        up, um = (U.ravel() + d).reshape(U.shape), (U.ravel() - d).reshape(U.shape)
        g[i] = (problem.evaluate(x0, up[None])[0] - problem.evaluate(x0, um[None])[0]) / (2 * eps)
    return g.reshape(U.shape)


@pytest.mark.parametrize("fused", [True, False])
def test_unconstrained_optimum_has_zero_cost_gradient(fused):
    problem = _unicycle()
    x0 = np.array([-1.0, -1.0, 1.0])
    plan = ILQR(problem, ILQRConfig(fused=fused)).plan(x0)
    assert plan.status is Status.CONVERGED and plan.info["fused"] is fused
    g = _fd_gradient(problem, x0, plan.actions)
    assert np.abs(g).max() < 1e-4 * max(1.0, np.abs(plan.actions).max())
    assert plan.cost == pytest.approx(problem.evaluate(x0, plan.actions[None])[0], rel=1e-12)
    np.testing.assert_allclose(plan.states, problem.rollout(x0, plan.actions[None])[0], rtol=1e-12)
    costs = [t.cost for t in plan.trace]
    assert all(b <= a for a, b in zip(costs, costs[1:]))  # monotone: the line search accepts descent only


def test_box_constrained_optimum_satisfies_kkt_for_the_controls():
    problem = _unicycle(lim=0.5)
    x0 = np.array([-1.0, -1.0, 1.0])
    # DDP: iLQR converges only linearly here (large costates make its Gauss-Newton model poor)
    plan = ILQR(problem, DDPConfig(iterations=200)).plan(x0)
    assert plan.status is Status.CONVERGED
    U = plan.actions
    assert np.all(np.abs(U) <= 0.5)
    g = _fd_gradient(problem, x0, U)
    at_lo, at_hi = U <= -0.5 + 1e-9, U >= 0.5 - 1e-9  # the box QP's u_bar + (low - u_bar) may round
    inside = ~(at_lo | at_hi)
    assert at_lo.any() or at_hi.any()  # the bounds are active on this problem
    assert np.abs(g[inside]).max() < 1e-3
    assert np.all(g[at_lo] > -1e-3) and np.all(g[at_hi] < 1e-3)
    # clamped directions get no feedback
    assert np.all(plan.K[at_lo | at_hi] == 0.0)


class _Recording:
    """A model that records every action it is stepped with (not an analytic system, so the
    Python loop runs)."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []
        for a in ("nx", "nu", "dt", "action_low", "action_high"):
            setattr(self, a, getattr(inner, a))

    def rollout(self, x0, U):
        self.seen.append(np.array(U).reshape(-1, self.nu))
        return self.inner.rollout(x0, U)

    def step(self, X, U):
        self.seen.append(np.array(U).reshape(-1, self.nu))
        return self.inner.step(X, U)

    def linearize(self, X, U):
        return self.inner.linearize(X, U)


def test_no_iterate_leaves_the_box():
    inner = _unicycle(lim=0.5)
    rec = _Recording(inner.dynamics)
    problem = Problem(rec, inner.cost, inner.horizon, action_low=[-0.3, -0.5], action_high=[0.5, 0.2])
    plan = ILQR(problem, ILQRConfig(iterations=30)).plan([-1.0, -1.0, 1.0], warm_start=np.ones((30, 2)))
    seen = np.concatenate(rec.seen)
    assert len(seen) > 30 * 30
    assert np.all(seen >= [-0.3, -0.5]) and np.all(seen <= [0.5, 0.2])
    assert np.all(plan.actions >= [-0.3, -0.5]) and np.all(plan.actions <= [0.5, 0.2])


@pytest.mark.parametrize("lim", [INF, 0.6])
@pytest.mark.parametrize("mode", ["ilqr", "ddp"])
def test_fused_solve_takes_the_same_steps_as_the_python_loop(mode, lim):
    problem = _unicycle(H=25, lim=lim)
    x0 = np.array([-1.0, -1.0, 1.0])
    a = ILQR(problem, ILQRConfig(mode=mode, fused=True)).plan(x0)
    b = ILQR(problem, ILQRConfig(mode=mode, fused=False)).plan(x0)
    assert a.info["fused"] and not b.info["fused"]
    assert a.iterations == b.iterations and a.status is b.status
    assert a.info["reason"] == b.info["reason"]
    assert [t.step for t in a.trace] == [t.step for t in b.trace]
    np.testing.assert_allclose([t.cost for t in a.trace], [t.cost for t in b.trace], rtol=1e-10)
    np.testing.assert_allclose(a.actions, b.actions, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(a.K, b.K, rtol=1e-6, atol=1e-8)


def test_ddp_and_ilqr_agree_at_the_optimum_of_a_nonlinear_problem():
    dyn = Pendulum(max_torque=50.0)
    problem = Problem(dyn, QuadraticCost([10.0, 1.0], [0.1], [100.0, 10.0], angle_dims=(0,)), 40)
    x0 = np.array([np.pi - 0.3, 0.0])
    a = ILQR(problem, ILQRConfig()).plan(x0)
    b = ILQR(problem, DDPConfig()).plan(x0)
    assert a.status is Status.CONVERGED and b.status is Status.CONVERGED
    assert b.cost == pytest.approx(a.cost, rel=1e-8)
    np.testing.assert_allclose(b.actions, a.actions, atol=1e-4 * np.abs(a.actions).max())
    # the two differ on the way there: DDP's second-order terms do something
    assert [t.cost for t in a.trace] != [t.cost for t in b.trace]


def test_warm_started_resolve_takes_no_step():
    problem = _unicycle(H=50)
    x0 = np.array([-1.0, -1.0, 1.0])
    planner = ILQR(problem)
    first = planner.plan(x0)
    again = planner.plan(x0, warm_start=first)
    assert again.status is Status.CONVERGED and again.iterations == 0
    np.testing.assert_array_equal(again.actions, first.actions)


@pytest.mark.parametrize("mode", ["ilqr", "ddp"])
def test_cartpole_swingup_fused_and_loop_agree_with_angle_costs(mode):
    # away from the goal the angle residuals' curvature is negative: iLQR leaves it out of the
    # cost Hessian, DDP keeps it, on both paths (the fused solve once had the two swapped)
    dyn = CartPole()
    cost = QuadraticCost([1.0, 5.0, 0.1, 0.1], [0.01], [10.0, 50.0, 1.0, 1.0], angle_dims=(1,))
    problem = Problem(dyn, cost, 60)
    x0 = np.array([0.0, 2.5, 0.0, 0.0])
    a = ILQR(problem, ILQRConfig(iterations=40, mode=mode)).plan(x0)
    b = ILQR(problem, ILQRConfig(iterations=40, mode=mode, fused=False)).plan(x0)
    assert a.info["fused"] and not b.info["fused"]
    assert a.iterations == b.iterations > 0
    assert [t.step for t in a.trace] == [t.step for t in b.trace]
    np.testing.assert_allclose([t.cost for t in a.trace], [t.cost for t in b.trace], rtol=1e-9)
    assert np.all(np.abs(a.actions) <= 10.0)


# ---------------------------------------------------------------------------------- stationary starts


def _cartpole_problem(H=40):
    cost = QuadraticCost([1.0, 5.0, 0.1, 0.1], [0.01], [10.0, 50.0, 1.0, 1.0], angle_dims=(1,))
    return Problem(CartPole(), cost, H)


@pytest.mark.parametrize("mode, fused", [("ilqr", True), ("ilqr", False), ("ddp", True)])
def test_a_stationary_start_that_is_no_minimum_is_left(mode, fused):
    # hanging still under zero force: the gradient is zero and the Gauss-Newton model flat there
    problem = _cartpole_problem()
    x0 = np.array([0.0, np.pi, 0.0, 0.0])
    U0 = np.zeros((problem.horizon, 1))
    J0 = float(problem.cost(problem.dynamics.rollout(x0, U0[None]), U0[None])[0])
    plan = ILQR(problem, mode=mode, fused=fused).plan(x0)
    assert plan.iterations > 0 and "left it" in plan.info["stationary_start"]
    assert plan.cost < 0.9 * J0
    X = problem.dynamics.rollout(x0, np.asarray(plan.actions)[None])
    assert plan.cost == pytest.approx(float(problem.cost(X, np.asarray(plan.actions)[None])[0]), rel=1e-9)
    assert np.all(np.diff([t.cost for t in plan.trace]) <= 0.0)
    assert np.abs(plan.actions).max() > 1.0
    assert np.abs(np.asarray(plan.states)[:, 1] - np.pi).max() > 1.0  # the pole left the bottom
    again = ILQR(problem, mode=mode, fused=fused).plan(x0)
    np.testing.assert_array_equal(again.actions, plan.actions)  # the nudge is deterministic


@pytest.mark.parametrize("fused", [True, False])
def test_a_stationary_start_at_the_minimum_stays(fused):
    problem = _cartpole_problem()
    plan = ILQR(problem, fused=fused).plan(np.zeros(4))  # upright at rest: cost 0, a minimum
    assert plan.status is Status.CONVERGED and plan.iterations == 0 and plan.cost == 0.0
    np.testing.assert_array_equal(plan.actions, 0.0)
    assert "no lower cost" in plan.info["stationary_start"]


# ---------------------------------------------------------------------------------- stops


def test_status_says_why_it_stopped():
    problem = _unicycle()
    x0 = np.array([-1.0, -1.0, 1.0])
    p1 = ILQR(problem, ILQRConfig(iterations=1)).plan(x0)
    assert p1.status is Status.MAX_ITERATIONS and p1.iterations == 1 and len(p1.trace) == 1
    # a deadline already passed: one iteration, then DEADLINE (the Python loop)
    p2 = ILQR(problem).plan(x0, deadline=time.perf_counter() - 1.0)
    assert p2.status is Status.DEADLINE and p2.iterations == 1 and p2.info["fused"] is False
    # a cost concave in u: Quu is never positive definite below reg_max
    concave = FunctionCost(lambda X, U: np.sum(X ** 2, -1) - np.sum(U ** 2, -1))
    p3 = ILQR(Problem(problem.dynamics, concave, 10), ILQRConfig(reg_max=1.0)).plan(x0)
    assert p3.status is Status.STALLED and p3.info["reason"] == "regularisation_limit"


def test_config_errors_name_the_argument():
    with pytest.raises(InvalidArgumentError, match="iterations"):
        ILQRConfig(iterations=0)
    with pytest.raises(InvalidArgumentError, match="mode"):
        ILQRConfig(mode="newton")
    with pytest.raises(InvalidArgumentError, match="reg_min must be <= reg_max"):
        ILQRConfig(reg_min=1.0, reg_max=0.1)
    with pytest.raises(InvalidArgumentError, match="accept_ratio"):
        ILQRConfig(accept_ratio=1.0)
    with pytest.raises(InvalidArgumentError, match="reg_factor"):
        ILQRConfig(reg_factor=1.0)
    with pytest.raises(InvalidArgumentError, match="fused"):
        ILQRConfig(fused="yes")
    problem = _unicycle()
    with pytest.raises(InvalidArgumentError, match="warm_start must have shape"):
        ILQR(problem).plan(np.zeros(3), warm_start=np.zeros((3, 2)))
    with pytest.raises(InvalidArgumentError, match="x0 must have shape"):
        ILQR(problem).plan(np.zeros(4))
    with pytest.raises(InvalidArgumentError, match="action_low must be <= action_high"):
        Problem(problem.dynamics, problem.cost, 5, action_low=[1.0, 1.0], action_high=[0.0, 0.0])


# ---------------------------------------------------------------------------------- derivatives


@pytest.mark.parametrize("model", [Pendulum(), CartPole(), Unicycle(), DoubleIntegrator(dim=2)])
def test_fd_linearize_matches_exact_jacobians(model):
    rng = np.random.default_rng(0)
    H = 6
    X = rng.normal(size=(H + 1, model.nx))
    U = rng.normal(size=(H, model.nu))
    A, B = model.linearize(X, U)
    Af, Bf = fd_linearize(model, X, U)
    np.testing.assert_allclose(Af, A, atol=1e-7)
    np.testing.assert_allclose(Bf, B, atol=1e-7)


def test_finite_difference_quadratize_matches_the_exact_quadratic_one():
    dyn = CartPole()
    cost = QuadraticCost([1.0, 5.0, 0.1, 0.2], [0.3], [10.0, 50.0, 1.0, 1.0], angle_dims=(1,),
                         x_goal=[0.5, 0.0, 0.0, 0.0])
    same = FunctionCost(lambda X, U: np.stack([[cost.stage(x, u) for x, u in zip(xs, us)]
                                               for xs, us in zip(X, U)]),
                        lambda XT: np.array([cost.terminal(x) for x in XT]))
    rng = np.random.default_rng(1)
    X, U = rng.normal(size=(6, 4)) * 2, rng.normal(size=(5, 1))
    exact = quadratize(cost, X, U)
    fd = quadratize(same, X, U)
    for e, f in zip(exact, fd):
        np.testing.assert_allclose(f, e, atol=2e-4 * max(1.0, np.abs(e).max()))


def test_second_order_terms_match_second_differences_of_the_step():
    model = Pendulum()
    rng = np.random.default_rng(2)
    X, U = rng.normal(size=(4, 2)), rng.normal(size=(3, 1))
    fxx, fux, fuu = second_order(model.linearize, model.integrate, X, U, 2)
    h = 1e-3
    z0 = np.concatenate([X[1], U[1]])

    def f(z):
        return model.step_one(z[:2], z[2:])

    Hz = np.zeros((2, 3, 3))
    for i in range(3):
        for j in range(3):
            ei, ej = np.eye(3)[i] * h, np.eye(3)[j] * h
            Hz[:, i, j] = (f(z0 + ei + ej) - f(z0 + ei - ej) - f(z0 - ei + ej) + f(z0 - ei - ej)) / (4 * h * h)
    np.testing.assert_allclose(fxx[1], Hz[:, :2, :2], atol=1e-5)
    np.testing.assert_allclose(fux[1], Hz[:, 2:, :2], atol=1e-5)
    np.testing.assert_allclose(fuu[1], Hz[:, 2:, 2:], atol=1e-5)


def test_a_model_without_linearize_uses_finite_differences():
    inner = _unicycle(H=20).dynamics

    class NoJacobian:
        nx, nu, dt = inner.nx, inner.nu, inner.dt
        action_low, action_high = inner.action_low, inner.action_high
        rollout = staticmethod(inner.rollout)
        step = staticmethod(inner.step)

    cost = QuadraticCost([100.0] * 3, [1.0, 1.0], [100.0] * 3)
    a = ILQR(Problem(NoJacobian(), cost, 20)).plan([-1.0, -1.0, 1.0])
    b = ILQR(Problem(inner, cost, 20)).plan([-1.0, -1.0, 1.0])
    assert a.status is Status.CONVERGED
    assert a.cost == pytest.approx(b.cost, rel=1e-8)


# ---------------------------------------------------------------------------------- MPC feedback


class _NoFeedback:
    """The same planner with the gains dropped from its plans."""

    def __init__(self, inner):
        self.inner, self.problem = inner, inner.problem

    def plan(self, x0, **kw):
        import dataclasses

        return dataclasses.replace(self.inner.plan(x0, **kw), K=None, k=None)


def _disturbed_run(controller, dyn, x0, steps, push_at, push):
    x = x0.copy()
    xs = [x]
    for t in range(steps):
        u = controller.act(x)
        x = dyn.step_one(x, u)
        if t == push_at:
            x = x + push
        xs.append(x)
    return np.array(xs)


class _FromLQR:
    """iLQR started from the LQR policy's plan: from zero actions the pole falls over first and
    iLQR settles in the local optimum that swings it all the way round."""

    def __init__(self, problem):
        from recede.planners.lqr import LQR

        self.lqr, self.ilqr, self.problem = LQR(problem), ILQR(problem), problem

    def plan(self, x0, **kw):
        kw["warm_start"] = self.lqr.plan(x0)
        return self.ilqr.plan(x0, **kw)


def test_mpc_feedback_between_replans_rejects_a_push():
    from recede.controllers import MPC

    dyn = CartPole()
    cost = QuadraticCost([1.0, 10.0, 0.1, 0.1], [0.1], [10.0, 100.0, 1.0, 1.0], angle_dims=(1,))
    problem = Problem(dyn, cost, 40)
    x0 = np.array([0.0, 0.1, 0.0, 0.0])
    push = np.array([0.0, 0.0, 0.0, 0.5])  # a kick to the pole's rate after step 2
    runs = {}
    for name, planner in (("feedback", _FromLQR(problem)), ("open loop", _NoFeedback(_FromLQR(problem)))):
        mpc = MPC(planner, replan_every=40)  # one plan for the whole run
        runs[name] = _disturbed_run(mpc, dyn, x0, 40, 2, push)
        assert mpc.plan.status is Status.CONVERGED
    # the gains of the plan hold the pole; without them the push topples it
    assert np.abs(runs["feedback"][-10:, 1]).max() < 0.05
    assert np.abs(runs["open loop"][-10:, 1]).max() > 1.0
    # and without a push the feedback changes nothing: the plan is followed exactly
    mpc = MPC(_FromLQR(problem), replan_every=40)
    free = _disturbed_run(mpc, dyn, x0, 40, 2, np.zeros(4))
    np.testing.assert_allclose(free, mpc.plan.states, atol=1e-12)


# ---------------------------------------------------------------------------------- LQR planner


def test_lqr_planner_plans_the_lqr_policy_and_mpc_applies_it():
    from recede.controllers import MPC, LQRController

    dyn = CartPole()
    cost = QuadraticCost([1.0, 10.0, 0.1, 0.1], [0.1], [1.0, 1.0, 1.0, 1.0], angle_dims=(1,))
    problem = Problem(dyn, cost, 20)
    from recede.planners.lqr import LQR

    planner = LQR(problem)
    ctrl = LQRController(problem)
    np.testing.assert_array_equal(planner.K, ctrl.K)
    x0 = np.array([0.1, 0.1, 0.0, 0.0])
    plan = planner.plan(x0)
    x = x0
    for t in range(20):  # the plan is the closed loop of u = K x
        np.testing.assert_allclose(plan.actions[t], ctrl.act(x), rtol=1e-12)
        x = dyn.step_one(x, plan.actions[t])
        np.testing.assert_allclose(plan.states[t + 1], x, rtol=1e-12)
    assert plan.cost == pytest.approx(problem.evaluate(x0, plan.actions[None])[0])
    mpc = MPC(planner, replan_every=5)
    y = x0 + np.array([0.0, 0.02, 0.0, 0.0])
    for _ in range(12):  # between replans MPC's feedback reproduces the LQR law
        np.testing.assert_allclose(mpc.act(y), ctrl.act(y), rtol=1e-9, atol=1e-12)
        y = dyn.step_one(y, ctrl.act(y))
    with pytest.raises(InvalidArgumentError, match="tol"):
        from recede.planners.lqr import LQRConfig

        LQRConfig(tol=-1.0)
    with pytest.raises(InvalidArgumentError, match="Q, R and x_goal"):
        LQR(Problem(dyn, FunctionCost(lambda X, U: np.sum(X ** 2, -1)), 5))
