"""Policies as proposals inside the sampling planners (issue 20, item 4): share 0 is today's planner
bit for bit, the proposal rows are the policy's closed-loop rollouts, a perfect policy's proposal
makes the plan optimal, and bad input is refused."""

import numpy as np
import pytest
import scipy.linalg

from recede import CEM, MCTS, Problem, QuadraticCost
from recede.errors import InvalidArgumentError
from recede.models.analytic import DoubleIntegrator
from recede.models.linear import LinearDynamics
from recede.planners.base import policy_rollout
from recede.planners.icem import ICEM
from recede.planners.mppi import MPPI
from recede.planners.registry import make_planner

PLANNERS = {"cem": CEM, "icem": ICEM, "mppi": MPPI}
SMALL = {"cem": dict(samples=24, iterations=3), "icem": dict(samples=24, iterations=3),
         "mppi": dict(samples=24, iterations=3)}

A = np.array([[1.0, 0.1], [0.0, 1.0]])
B = np.array([[0.005], [0.1]])
Q, R = np.diag([1.0, 0.1]), np.array([[0.01]])
P = scipy.linalg.solve_discrete_are(A, B, Q, R)
K = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)  # u = -K x
X0 = np.array([1.0, -0.5])


def lq_problem(H=8, bound=50.0):
    """Double integrator with the infinite-horizon Riccati matrix as terminal cost: the stationary
    gain ``u = -K x`` is then optimal over any horizon, with cost ``x0'P x0 / 2``; the bounds are
    wide enough never to bind along that trajectory from X0."""
    dyn = LinearDynamics(A, B, action_low=[-bound], action_high=[bound])
    return Problem(dyn, QuadraticCost(Q=Q, R=R, Qf=P), H)


class Linear:
    """A mock policy u = G x that counts its calls."""

    def __init__(self, G):
        self.G, self.calls = np.asarray(G, float), 0

    def act_batch(self, X):
        self.calls += 1
        return np.asarray(X) @ self.G.T


def same_plan(a, b):
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.states, b.states)
    assert a.cost == b.cost and a.iterations == b.iterations and a.status is b.status
    fields = ("iteration", "cost", "sample_best", "sample_mean", "finite", "std", "ess")
    np.testing.assert_array_equal([[getattr(t, f) for f in fields] for t in a.trace],
                                  [[getattr(t, f) for f in fields] for t in b.trace])


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_share_zero_is_bit_identical_to_the_planner_without_a_policy(name):
    problem = lq_problem()
    warm = np.full((problem.horizon, 1), 0.3)
    ref = PLANNERS[name](problem, **SMALL[name])
    policy = Linear(-K)
    with_policy = PLANNERS[name](problem, proposal=policy, proposal_share=0.0, **SMALL[name])
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(2):  # two plans: the generator's state after the first must match too
        a, b = ref.plan(X0, warm_start=warm, rng=rng_a), with_policy.plan(X0, warm_start=warm, rng=rng_b)
        same_plan(a, b)
        np.testing.assert_array_equal(ref._U, with_policy._U)
    assert policy.calls == 0
    assert rng_a.integers(1 << 62) == rng_b.integers(1 << 62)


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_proposal_rows_are_the_policys_closed_loop_rollouts(name):
    problem = lq_problem()
    H, samples, iters, share = problem.horizon, 20, 3, 0.25
    policy = Linear(-K)
    planner = PLANNERS[name](problem, proposal=policy, proposal_share=share, proposal_std=0.0,
                             samples=samples, iterations=iters)
    planner.plan(X0, rng=3)
    # one batched rollout per plan: H calls of act_batch, whatever the iterations
    assert policy.calls == H
    # noise-free: every proposal row is the closed loop x_{t+1} = (A - B K) x_t, u_t = -K x_t
    x, ref = X0.copy(), np.empty((H, 1))
    for t in range(H):
        ref[t] = -K @ x
        x = A @ x + B @ ref[t]
    n = planner.population(iters - 1)
    k = int(round(share * n))
    last = planner._U[:n]
    np.testing.assert_allclose(last[n - k:], np.broadcast_to(ref, (k, H, 1)), rtol=1e-12, atol=1e-12)
    assert not np.allclose(last[1:n - k], ref)  # the other rows are the planner's own samples


def test_noisy_proposals_are_the_closed_loop_under_their_noise():
    problem = lq_problem()
    H = problem.horizon
    planner = CEM(problem, proposal=Linear(-K), proposal_share=0.5, proposal_std=0.2, samples=10,
                  iterations=2)
    props = planner.proposals(X0, seed=11)
    assert props.shape == (10, H, 1)  # 5 rows per iteration
    noise = np.random.default_rng(11).standard_normal((10, H, 1)) * 0.2 * 50.0
    noise[0] = 0.0
    X = np.repeat(X0[None], 10, axis=0)
    for t in range(H):  # a slow reference loop: the policy acts on the noisy trajectory's state
        u = np.clip(X @ (-K).T + noise[:, t], -50.0, 50.0)
        np.testing.assert_allclose(props[:, t], u, rtol=1e-12, atol=1e-12)
        X = X @ A.T + u @ B.T
    assert np.all(np.abs(props) <= 50.0)


@pytest.mark.parametrize("name", ["cem", "icem"])
def test_a_perfect_policy_as_proposal_makes_the_plan_optimal(name):
    problem = lq_problem()
    optimum = 0.5 * X0 @ P @ X0
    lqr_cost = problem.evaluate(X0, policy_rollout(problem, Linear(-K), X0, 1))[0]
    assert lqr_cost == pytest.approx(optimum, rel=1e-9)  # the oracle itself
    planner = PLANNERS[name](problem, proposal=Linear(-K), proposal_share=0.1, **SMALL[name])
    plan = planner.plan(X0, rng=0)
    assert plan.cost <= lqr_cost and plan.cost == pytest.approx(optimum, rel=1e-9)
    without = PLANNERS[name](problem, **SMALL[name]).plan(X0, rng=0)
    assert without.cost > 1.01 * optimum  # this budget alone does not find it


def test_share_one_keeps_the_nominal_row():
    problem = lq_problem()
    warm = np.full((problem.horizon, 1), 0.3)
    for name in sorted(PLANNERS):
        planner = PLANNERS[name](problem, proposal=Linear(-K), proposal_share=1.0, proposal_std=0.0,
                                 samples=6, iterations=1)
        plan = planner.plan(X0, warm_start=warm, rng=0)
        assert planner._n_prop == (5,)
        np.testing.assert_array_equal(planner._U[0], warm)  # row 0: the nominal, never replaced
        assert plan.info["samples"] == 6


def test_make_planner_passes_the_policy():
    problem = lq_problem()
    policy = Linear(-K)
    planner = make_planner("mppi", problem, proposal_policy=policy, proposal_share=0.5, samples=8)
    assert planner.proposal is policy
    with pytest.raises(InvalidArgumentError, match="planner 'ilqr' takes no proposal policy"):
        make_planner("ilqr", problem, proposal_policy=policy)


@pytest.mark.parametrize("name", sorted(PLANNERS))
@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "0.5", True])
def test_share_outside_the_unit_interval_is_refused(name, value):
    with pytest.raises(InvalidArgumentError, match=r"proposal_share must be in \[0, 1\], got"):
        PLANNERS[name](lq_problem(), proposal=Linear(-K), proposal_share=value)


def test_bad_proposal_input_is_refused():
    problem = lq_problem()
    with pytest.raises(InvalidArgumentError, match=r"proposal_share=0.2 needs a proposal policy"):
        CEM(problem, proposal_share=0.2)
    with pytest.raises(InvalidArgumentError, match=r"proposal must be a policy with act_batch"):
        CEM(problem, proposal=lambda X: X, proposal_share=0.2)
    with pytest.raises(InvalidArgumentError, match=r"proposal_std must be a finite number >= 0"):
        CEM(problem, proposal=Linear(-K), proposal_share=0.2, proposal_std=-1.0)
    wrong = CEM(problem, proposal=Linear(np.zeros((2, 2))), proposal_share=0.2, samples=10)
    with pytest.raises(InvalidArgumentError,
                       match=r"act_batch must return shape \(10, 1\) for states \(10, 2\), got \(10, 2\)"):
        wrong.plan(X0, rng=0)


# ------------------------------------------------------------------------------------- MCTS

def test_mcts_centres_on_the_policys_rollout_as_on_that_warm_start():
    """The policy's noise-free closed loop takes the warm start's place: the same search as MCTS
    without a policy warm-started with that very sequence (the batched path, a linear model)."""
    problem = lq_problem()
    opts = dict(proposal="gaussian", rollout="warm_start", simulations=200,
                batch=8)
    policy = Linear(-K)
    guided = MCTS(problem, proposal_policy=policy, **opts)
    a = guided.plan(X0, rng=4)
    assert policy.calls == problem.horizon
    centre = policy_rollout(problem, Linear(-K), X0, 1)[0]
    b = MCTS(problem, **opts).plan(X0, warm_start=centre, rng=4)
    same_plan(a, b)
    assert a.info == b.info
    # the first widening draw at the root is the policy's first action itself; the default
    # policy's first simulation is the policy's sequence, so the best return is at most its cost
    tree = guided.tree()
    first = np.flatnonzero(tree["live"] & (tree["parent"] == tree["root"]))[0]
    np.testing.assert_array_equal(tree["action"][first], centre[0])
    assert a.info["best_cost"] <= problem.evaluate(X0, centre[None])[0] * (1 + 1e-12)


def test_mcts_puct_prior_follows_the_policy_level_by_level():
    """All costs zero: PUCT's visits follow its prior. With a policy, the prior at level l is a
    Gaussian around the policy's action at step l of its own closed loop (the fused path)."""
    d = DoubleIntegrator(max_accel=2.0)
    problem = Problem(d, QuadraticCost([0.0, 0.0], [0.0], [0.0, 0.0]), 3)
    prims = np.array([-2.0, -1.0, 1.0, 2.0])

    class Feedback:  # u = 1.2 - 4 v: a different action at every step of its closed loop
        def act_batch(self, X):
            return 1.2 - 4.0 * np.asarray(X)[:, 1:2]

    sims = 6000
    pl = MCTS(problem, actions=tuple(prims), selection="puct", proposal_std=0.5,
              proposal_policy=Feedback(), simulations=sims)
    pl.plan(np.zeros(2), rng=0)
    # the oracle: the closed loop by hand, then the Gaussian weights (sigma = 0.5 * 2)
    x, u = np.zeros(2), np.empty(3)
    for t in range(3):
        u[t] = 1.2 - 4.0 * x[1]
        x = d.step(x[None], u[t:t + 1][None])[0]
    w = np.exp(-0.5 * (prims[None] - u[:, None]) ** 2)
    prior = w / w.sum(axis=1, keepdims=True)
    assert np.ptp(u) > 0.5  # the levels' priors do differ
    t = pl.tree()
    root_kids = np.flatnonzero(t["live"] & (t["parent"] == t["root"]))
    share = np.zeros(4)
    share[t["primitive"][root_kids]] = t["visits"][root_kids] / sims
    np.testing.assert_allclose(share, prior[0], atol=0.01)
    top = root_kids[np.argmax(t["visits"][root_kids])]
    kids = np.flatnonzero(t["live"] & (t["parent"] == top))
    share = np.zeros(4)
    share[t["primitive"][kids]] = t["visits"][kids] / t["visits"][kids].sum()
    np.testing.assert_allclose(share, prior[1], atol=0.02)


def test_mcts_refuses_a_policy_nothing_reads():
    problem = lq_problem()
    with pytest.raises(InvalidArgumentError, match=r"proposal_policy needs an option that reads it"):
        MCTS(problem, proposal_policy=Linear(-K), proposal="uniform", rollout="random")
    with pytest.raises(InvalidArgumentError, match=r"proposal_policy must be a policy with act_batch"):
        MCTS(problem, proposal_policy=object(), proposal="gaussian")
    unbounded = Problem(LinearDynamics(A, B), QuadraticCost(Q=Q, R=R), 3)
    with pytest.raises(InvalidArgumentError, match=r"PUCT prior needs finite action bounds"):
        MCTS(unbounded, proposal_policy=Linear(-K), actions=(-1.0, 1.0), selection="puct")
    planner = make_planner("mcts", problem, proposal_policy=Linear(-K), proposal="gaussian")
    assert isinstance(planner, MCTS) and planner.proposal_policy is not None


# -------------------------------------------------------------------------------------- CLI

def _cli(*argv):
    import contextlib
    import io

    from recede.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def proposal_dir(tmp_path_factory):
    """An untrained (random-weight) policy of pendulum-swingup, and one of its sizes saved as
    another task's."""
    from recede.envs import get_task
    from recede.policies import GaussianPolicyNet, save_policy, task_sizes

    task = get_task("pendulum-swingup")
    _, nobs, nu = task_sizes(task)
    d = task.dynamics()
    root = tmp_path_factory.mktemp("proposal")
    (root / "trained").mkdir()  # as train-policy's output holds seed_<s>/
    for name, as_task in (("own", task), ("other", "acrobot-swingup"), ("trained/seed_0", task)):
        net = GaussianPolicyNet(1, nobs, nu, np.array(d.action_low), np.array(d.action_high),
                                hidden=(8,), seeds=[0])
        save_policy(net, str(root / name), task=as_task, meta={"algo": "sac", "seed": 0})
    return root


def test_run_proposal_is_the_library_planner_with_that_policy(proposal_dir, tmp_path):
    import json

    from recede.envs import get_task
    from recede.experiments import episode_spec, run_episode
    from recede.policies import load_policy

    task = get_task("pendulum-swingup")
    out = tmp_path / "run.json"
    code, stdout, stderr = _cli("run", task.name, "--planner", "cem", "--proposal", proposal_dir / "own",
                                "--proposal-share", "0.25", "--samples", 16, "--iterations", 2,
                                "--steps", 3, "--seed", 1, "--json", out, "--no-progress")
    assert code == 0, stderr
    record = json.loads(out.read_text())
    assert record["options"]["proposal_share"] == 0.25 and record["proposal"] == str(proposal_dir / "own")
    rows = dict(line.split(None, 1) for line in stdout.splitlines())
    assert rows["proposal"] == f"{proposal_dir / 'own'} (share 0.25)"
    spec = episode_spec(task, "cem", dict(samples=16, iterations=2, proposal_share=0.25), seed=1, steps=3)
    ref = run_episode(spec, proposal_policy=load_policy(str(proposal_dir / "own"), task))
    np.testing.assert_array_equal(record["log"]["actions"], ref.log.actions)
    spec0 = episode_spec(task, "cem", dict(samples=16, iterations=2), seed=1, steps=3)
    assert not np.array_equal(run_episode(spec0).log.actions, ref.log.actions)  # it mattered


@pytest.mark.parametrize("argv, message", [
    (["--planner", "cem", "--proposal", "{own}", "--proposal-share", "1.5"],
     "argument --proposal-share: must be in [0, 1], got 1.5"),
    (["--planner", "mppi", "--proposal", "{own}", "--proposal-share", "-0.1"],
     "argument --proposal-share: must be in [0, 1], got -0.1"),
    (["--planner", "cem", "--proposal-share", "0.2"], "argument --proposal-share: only with --proposal DIR"),
    (["--planner", "ilqr", "--proposal", "{own}"],
     "argument --proposal: planner 'ilqr' takes no proposal policy; these do: cem, icem, mppi, mcts"),
    (["--planner", "cem", "--proposal", "{other}"],
     "argument --proposal: policy '{other}' was trained on task 'acrobot-swingup', not 'pendulum-swingup'"),
    (["--planner", "cem", "--proposal", "{root}"],
     "argument --proposal: policy checkpoint '{root}' has no policy.json; '{root}' is the output of "
     "'recede train-policy': pass one of its policies, e.g. --proposal {root}/seed_0"),
    (["--policy", "{own}", "--proposal", "{own}"],
     "argument --policy: not allowed with --proposal: a policy acts on its own, without a planner or "
     "a planning model"),
])
def test_run_proposal_bad_input(proposal_dir, argv, message):
    fill = {"own": proposal_dir / "own", "other": proposal_dir / "other", "root": proposal_dir / "trained"}
    code, stdout, stderr = _cli("run", "pendulum-swingup", *[a.format(**fill) for a in argv],
                                "--steps", 2, "--no-progress")
    assert code == 2 and stdout == ""
    assert stderr == f"recede: error: {message.format(**fill)}\n"
