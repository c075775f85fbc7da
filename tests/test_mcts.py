"""MCTS against oracles: exhaustive search of a small discrete problem, a stochastic bandit,
PUCT's prior with equal values, re-rooting that keeps the subtree's statistics, and the fused
(in-Numba) search against the batched path."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from recede import MCTS, MCTSConfig, MPC, Problem
from recede.costs import FunctionCost, QuadraticCost, stage_costs
from recede.errors import InvalidArgumentError
from recede.models.analytic import CartPole, DoubleIntegrator, Pendulum
from recede.problem import Status

ARMS = (-1.0, 0.0, 1.0)


def _di_problem(horizon=5, integrator="euler"):
    d = DoubleIntegrator(max_accel=1.0, dt=0.2, integrator=integrator)
    return Problem(d, QuadraticCost([1.0, 0.2], [0.05], [5.0, 1.0]), horizon)


def _exhaustive(problem, x0, arms, discount=1.0):
    """Every sequence of primitives: discounted costs (n,), first actions (n,)."""
    H = problem.horizon
    seqs = np.array(list(itertools.product(arms, repeat=H)))[:, :, None]
    X = problem.dynamics.rollout(x0, seqs)
    C = stage_costs(problem.cost, X, seqs)
    w = discount ** np.arange(H + 1)
    return C @ w, seqs[:, 0, 0], seqs


def _paths(tree):
    """Map each live node's path of primitives from the root to (visits, value_sum, edge_cost)."""
    root = tree["root"]
    out = {}
    for n in np.flatnonzero(tree["live"]):
        path, m = [], n
        while m != root:
            path.append(int(tree["primitive"][m]))
            m = tree["parent"][m]
        out[tuple(reversed(path))] = (int(tree["visits"][n]), float(tree["value_sum"][n]),
                                      float(tree["edge_cost"][n]))
    return out


# ------------------------------------------------------------------------- exhaustive oracle

@pytest.mark.parametrize("backup", ["mean", "best"])
@pytest.mark.parametrize("fused", [True, False])
def test_exhaustive_search_oracle(backup, fused):
    """Depth 5, three primitives (243 sequences): with enough simulations MCTS returns the first
    action of the best sequence, and its best simulation is that sequence's cost."""
    p = _di_problem()
    x0 = np.array([1.0, 0.5])
    costs, first, seqs = _exhaustive(p, x0, ARMS)
    best_first = first[np.argmin(costs)]
    # the optimum is unique enough to be a fair oracle: other first actions cost clearly more
    assert min(costs[first != best_first]) > costs.min() + 1e-3
    pl = MCTS(p, actions=ARMS, simulations=6000, backup=backup, fused=fused, batch=8,
              exploration=0.5)
    plan = pl.plan(x0, rng=0)
    assert plan.info["fused"] is fused
    assert plan.actions[0, 0] == best_first
    assert plan.info["best_cost"] == pytest.approx(costs.min(), rel=1e-12)
    if backup == "best":  # the most-visited path is then the best sequence itself
        np.testing.assert_array_equal(plan.actions, seqs[np.argmin(costs)])
        assert plan.cost == pytest.approx(costs.min(), rel=1e-12)
    tree = pl.tree()
    assert np.all(tree["virtual_loss"] == 0)
    assert tree["visits"][tree["root"]] == 6000


def test_discounted_exhaustive_oracle():
    """With discount 0.7 the answer is the best sequence under discounted stage costs."""
    p = _di_problem()
    x0 = np.array([-1.2, 0.8])
    for gamma in (0.7, 1.0):
        costs, first, seqs = _exhaustive(p, x0, ARMS, gamma)
        plan = MCTS(p, actions=ARMS, simulations=6000, backup="best", discount=gamma,
                    exploration=0.5).plan(x0, rng=1)
        assert plan.info["best_cost"] == pytest.approx(costs.min(), rel=1e-12)
        np.testing.assert_array_equal(plan.actions, seqs[np.argmin(costs)])


def test_repeat_holds_primitives_and_truncates_the_last_edge():
    """repeat=2 on a horizon of 5: edges of 2, 2 and 1 steps; the oracle enumerates held pairs."""
    p = _di_problem()
    x0 = np.array([1.0, 0.0])
    seqs = np.array([[a, a, b, b, c] for a, b, c in itertools.product(ARMS, repeat=3)])[:, :, None]
    costs = p.evaluate(x0, seqs)
    plan = MCTS(p, actions=ARMS, repeat=2, simulations=3000, backup="best").plan(x0, rng=0)
    np.testing.assert_array_equal(plan.actions, seqs[np.argmin(costs)])
    assert plan.info["depth"] == 3
    assert plan.info["best_cost"] == pytest.approx(costs.min(), rel=1e-12)


# ------------------------------------------------------------------------------ bandit, PUCT

def _bandit(means, noise, seed):
    """Horizon 1: the cost of arm a is means[a] + Gaussian noise (drawn per evaluation)."""
    rng = np.random.default_rng(seed)
    arms = np.arange(len(means), dtype=float)
    m = np.asarray(means)

    def running(X, U):
        a = np.rint(U[..., 0]).astype(int)
        return m[a] + noise * rng.normal(size=a.shape)

    d = DoubleIntegrator(max_accel=float(len(means)))
    return Problem(d, FunctionCost(running), 1), tuple(arms)


def test_bandit_visit_share_of_the_best_arm_grows_towards_one():
    means = (1.0, 0.6, 0.8, 0.2, 0.9)
    shares = {}
    for n in (100, 1000, 10000):
        s = []
        for seed in range(3):
            p, arms = _bandit(means, 0.3, seed)
            pl = MCTS(p, actions=arms, simulations=n, exploration=2 ** 0.5, batch=1)
            pl.plan(np.zeros(2), rng=seed)
            t = pl.tree()
            kids = np.flatnonzero(t["live"] & (t["parent"] == t["root"]))
            visits = dict(zip(t["primitive"][kids], t["visits"][kids]))
            assert len(visits) == len(means) and min(visits.values()) >= 1  # every arm tried
            s.append(visits[int(np.argmin(means))] / n)
        shares[n] = float(np.mean(s))
    assert shares[100] < shares[1000] < shares[10000]
    assert shares[10000] > 0.9


def test_puct_visits_follow_the_prior_when_values_are_equal():
    """All costs zero: PUCT's exploration term alone decides, so visits are proportional to
    the prior (up to rounding of counts)."""
    d = DoubleIntegrator(max_accel=2.0)
    p = Problem(d, QuadraticCost([0.0, 0.0], [0.0], [0.0, 0.0]), 3)
    prior = (0.5, 0.3, 0.15, 0.05)
    pl = MCTS(p, actions=(-2.0, -1.0, 1.0, 2.0), prior=prior, selection="puct", simulations=4000)
    pl.plan(np.zeros(2), rng=0)
    t = pl.tree()
    kids = np.flatnonzero(t["live"] & (t["parent"] == t["root"]))
    share = np.zeros(4)
    share[t["primitive"][kids]] = t["visits"][kids] / 4000
    np.testing.assert_allclose(share, prior, atol=0.01)


# ----------------------------------------------------------------------------------- reuse

@pytest.mark.parametrize("discrete", [True, False])
def test_reroot_keeps_the_subtree_statistics(discrete):
    p = _di_problem(horizon=8, integrator="rk4")
    opts = dict(actions=ARMS) if discrete else dict(proposal="uniform")
    pl = MCTS(p, simulations=3000, **opts)
    x0 = np.array([1.0, 0.0])
    plan = pl.plan(x0, rng=0)
    before = pl.tree()
    child = pl._chain[0]
    # the chosen child's subtree, keyed by the actions along the path below it
    def keyed(tree, top):
        out = {}
        for n in np.flatnonzero(tree["live"]):
            path, m = [], n
            while m != top and m >= 0:
                path.append(tuple(tree["action"][m]))
                m = tree["parent"][m]
            if m == top:
                out[tuple(reversed(path))] = (tree["visits"][n], tree["value_sum"][n],
                                              tree["edge_cost"][n], tuple(tree["state"][n]))
        return out
    kept = keyed(before, child)
    assert pl.reroot(1, plan.states[1])
    after = pl.tree()
    assert after["root"] == 0
    new = keyed(after, 0)
    root_old, root_new = kept.pop(()), new.pop(())
    assert new == kept  # every kept node: same visits, value sums, edge costs and states
    assert root_new[0] == root_old[0]
    # the root's returns drop its old edge: W' = W - N * edge
    assert root_new[1] == pytest.approx(root_old[1] - root_old[0] * root_old[2], rel=1e-12)
    # planning on from there adds the new simulations to the kept ones
    plan2 = pl.plan(plan.states[1], rng=1)
    assert plan2.info["reused"] == len(new) + 1
    assert plan2.info["root_visits"] == root_old[0] + 3000


def test_reroot_refuses_a_state_that_does_not_match():
    p = _di_problem(horizon=6, integrator="rk4")
    pl = MCTS(p, actions=ARMS, simulations=500)
    plan = pl.plan(np.array([1.0, 0.0]), rng=0)
    assert not pl.reroot(1, plan.states[1] + 1e-3)
    assert pl.tree() == {}
    pl2 = MCTS(p, actions=ARMS, simulations=500, repeat=2)
    plan = pl2.plan(np.array([1.0, 0.0]), rng=0)
    assert not pl2.reroot(1, plan.states[1])  # mid-edge: nothing to keep


def test_mpc_reuses_the_tree():
    p = _di_problem(horizon=8, integrator="rk4")
    mpc = MPC(MCTS(p, actions=ARMS, simulations=400), rng=0)
    x = np.array([1.0, 0.0])
    reused = []
    for _ in range(4):
        u = mpc.act(x)
        reused.append(mpc.plan.info["reused"])
        x = p.dynamics.step_one(x, u)
    assert reused[0] == 0 and all(r > 0 for r in reused[1:])


# ------------------------------------------------------------------- paths, budgets, seeds

@pytest.mark.parametrize("opts", [
    dict(actions=ARMS),
    dict(actions=ARMS, selection="puct", prior=(0.2, 0.5, 0.3)),
    dict(proposal="uniform"),
    dict(proposal="gaussian", rollout="warm_start", rollout_std=0.2, discount=0.9),
    dict(levels=4, repeat=3, backup="best"),
])
def test_fused_and_batched_paths_agree(opts):
    """With batch=1 the batched path (rollouts through ``dynamics.rollout`` and the cost's
    ``stage_costs``) takes the same decisions as the in-Numba search."""
    p = Problem(Pendulum(), QuadraticCost([1.0, 0.1], [0.01], [1.0, 0.1], angle_dims=(0,)), 12)
    x0 = np.array([2.5, 0.3])
    warm = np.linspace(-1, 1, 12)[:, None]
    a = MCTS(p, simulations=400, **opts)
    b = MCTS(p, simulations=400, fused=False, batch=1, **opts)
    pa = a.plan(x0, rng=3, warm_start=warm)
    pb = b.plan(x0, rng=3, warm_start=warm)
    assert pa.info["fused"] and not pb.info["fused"]
    ta, tb = a.tree(), b.tree()
    np.testing.assert_array_equal(ta["visits"], tb["visits"])
    np.testing.assert_array_equal(ta["action"], tb["action"])
    np.testing.assert_allclose(ta["value_sum"], tb["value_sum"], rtol=1e-10)
    np.testing.assert_allclose(ta["state"], tb["state"], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(pa.actions, pb.actions)


def test_batched_waves_use_virtual_loss_and_leave_none_behind():
    p = _di_problem()
    pl = MCTS(p, actions=ARMS, simulations=2000, fused=False, batch=64, backup="best")
    plan = pl.plan(np.array([1.0, 0.5]), rng=0)
    t = pl.tree()
    assert np.all(t["virtual_loss"] == 0)
    costs, _, seqs = _exhaustive(p, np.array([1.0, 0.5]), ARMS)
    assert plan.info["best_cost"] == pytest.approx(costs.min(), rel=1e-12)


def test_same_seed_same_tree_and_actions_within_bounds():
    p = Problem(CartPole(), QuadraticCost([1, 2, .05, .05], [1e-3], [1, 2, .05, .05],
                                          angle_dims=(1,)), 20)
    x0 = np.array([0.0, 3.0, 0.0, 0.0])
    plans = [MCTS(p, simulations=300).plan(x0, rng=s) for s in (5, 5, 6)]
    np.testing.assert_array_equal(plans[0].actions, plans[1].actions)
    assert not np.array_equal(plans[0].actions, plans[2].actions)
    for plan in plans:
        assert np.all(np.abs(plan.actions) <= 10.0)
        assert plan.cost == pytest.approx(p.evaluate(x0, plan.actions[None])[0])


def test_node_budget_and_deadline_stop_the_search():
    p = _di_problem(horizon=10, integrator="rk4")
    plan = MCTS(p, actions=ARMS, simulations=10_000, max_nodes=200).plan(np.ones(2), rng=0)
    assert plan.info["stop"] == "nodes" and plan.info["nodes"] <= 200
    assert plan.iterations < 10_000 and plan.status is Status.MAX_ITERATIONS
    pl = MCTS(p, actions=ARMS, simulations=10**8, max_nodes=10**6)
    pl.plan(np.ones(2), rng=0, deadline=time.perf_counter() + 1.0)  # compiled, warm
    t0 = time.perf_counter()
    plan = pl.plan(np.ones(2), rng=0, deadline=t0 + 0.05)
    assert plan.status is Status.DEADLINE and plan.info["stop"] == "deadline"
    assert 0 < plan.iterations < 10**8
    plan = MCTS(p, actions=ARMS, simulations=10**6, fused=False).plan(
        np.ones(2), rng=0, deadline=time.perf_counter() + 0.05)
    assert plan.status is Status.DEADLINE


def test_cost_without_stage_costs_puts_the_total_last():
    """A cost that only gives totals still works (undiscounted); discount then needs them."""
    class Total:
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, X, U):
            return self.inner(X, U)

    p0 = _di_problem()
    p = Problem(p0.dynamics, Total(p0.cost), 5)
    x0 = np.array([1.0, 0.5])
    costs, _, _ = _exhaustive(p0, x0, ARMS)
    plan = MCTS(p, actions=ARMS, simulations=3000, backup="best").plan(x0, rng=0)
    assert plan.info["best_cost"] == pytest.approx(costs.min(), rel=1e-12)
    with pytest.raises(InvalidArgumentError, match="discount must be 1 for a cost without stage_costs"):
        MCTS(p, actions=ARMS, discount=0.9)


# ------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("opts, message", [
    (dict(actions=()), "actions must be a non-empty sequence of action primitives"),
    (dict(actions=[]), "actions must be a non-empty sequence of action primitives"),
    (dict(widening_alpha=0.0), r"widening_alpha must be in \(0, 1\), got 0.0"),
    (dict(widening_alpha=1.0), r"widening_alpha must be in \(0, 1\), got 1.0"),
    (dict(widening_alpha=1.5), r"widening_alpha must be in \(0, 1\), got 1.5"),
    (dict(simulations=0), "simulations must be an integer >= 1, got 0"),
    (dict(simulations=-5), "simulations must be an integer >= 1, got -5"),
    (dict(max_nodes=1), "max_nodes must be an integer >= 2, got 1"),
    (dict(batch=0), "batch must be an integer >= 1, got 0"),
    (dict(discount=0.0), r"discount must be in \(0, 1\], got 0.0"),
    (dict(discount=1.1), r"discount must be in \(0, 1\], got 1.1"),
    (dict(selection="ucb"), r"selection must be one of \['uct', 'puct'\], got 'ucb'"),
    (dict(widening_k=0.0), "widening_k must be a finite number > 0, got 0.0"),
    (dict(levels=1), "levels must be 0"),
    (dict(levels=3, actions=ARMS), "give either actions or levels, not both"),
    (dict(prior=(1.0, 0.0, 1.0), actions=ARMS), "prior must be a sequence of positive numbers"),
    (dict(prior=(1.0, 2.0)), "prior needs discrete actions"),
    (dict(exploration=-1.0), "exploration must be a finite number >= 0, got -1.0"),
    (dict(repeat=0), "repeat must be an integer >= 1, got 0"),
])
def test_bad_options_are_refused(opts, message):
    with pytest.raises(InvalidArgumentError, match=message):
        MCTSConfig(**opts)


def test_bad_input_against_the_problem():
    p = _di_problem()
    with pytest.raises(InvalidArgumentError, match=r"actions must lie within the action bounds"):
        MCTS(p, actions=(-2.0, 0.0))
    with pytest.raises(InvalidArgumentError, match=r"actions must hold primitives of 1 numbers"):
        MCTS(p, actions=((0.0, 1.0),))
    with pytest.raises(InvalidArgumentError, match=r"prior must have one entry per primitive \(3\)"):
        MCTS(p, actions=ARMS, prior=(1.0, 1.0))
    with pytest.raises(InvalidArgumentError, match="x0 must have shape"):
        MCTS(p, actions=ARMS).plan(np.zeros(3))
    with pytest.raises(InvalidArgumentError, match="deadline must be a finite"):
        MCTS(p, actions=ARMS).plan(np.zeros(2), deadline=float("nan"))


# --------------------------------------------------------------------------- stage costs

def test_stage_costs_sum_to_the_cost():
    rng = np.random.default_rng(0)
    from recede.envs.robots import RewardCost
    from recede.swingup import SwingUpCost

    d = CartPole()
    X, U = rng.normal(size=(4, 7, 4)), rng.normal(size=(4, 6, 1))
    costs = [
        QuadraticCost([1, 2, .1, .1], [.01], [3, 1, 1, 1], angle_dims=(1,)),
        QuadraticCost(np.eye(4) + 0.1, [.01], None),
        FunctionCost(lambda X, U: (X ** 2).sum(-1) + U[..., 0], lambda x: x[:, 0]),
        SwingUpCost(d, [1, 2, .1, .1], [.01], energy_weight=0.5, value_cap=3.0, x_goal=np.zeros(4)),
        RewardCost(lambda X, U, S: X[:, 1:, 0] - U[..., 0] ** 2,
                   lambda X, S: X[:, 1:, 1] > 1.0, terminal_value=lambda x: x[:, 2]),
    ]
    for c in costs:
        C = stage_costs(c, X, U)
        assert C.shape == (4, 7)
        np.testing.assert_allclose(C.sum(axis=1), c(X, U), rtol=1e-12, atol=1e-12)
