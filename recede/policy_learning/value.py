"""Learned values for planning: fit a value ensemble on a planner's own closed-loop data (POLO).

The data are closed-loop episodes ``(states X: (T+1, nx), costs c: (T,), terminated)``, from MPC
runs (:func:`collect_episodes`) or any :class:`~recede.controllers.RunLog` (costs are minus the
env's rewards). The targets are n-step discounted costs-to-go,

    G_t = sum_{i<m} gamma^i c_{t+i} + gamma^m V(x_{t+m}),   m = min(n, T - t),

with ``V(x_T) = 0`` after a termination and the previous round's fit elsewhere (round 0 uses 0,
or ``initial`` if given); ``rounds`` repeats the fit on targets bootstrapped from the last one
(fitted value iteration). ``n_step=None`` sums to the episode's end.

Each of the ``E`` members of one :class:`~recede.policies.VNet` sees its own bootstrap resample
of the training states (and its own initial weights), so the members disagree where data are
thin: that spread is what the optimistic soft minimum (``optimism``) works on. Features are the
task's ``observation`` of the state, standardised; targets are standardised too. Training stops
when the held-out loss has not improved for ``patience`` epochs, keeping the best weights.

The fitted :class:`~recede.policies.ValueFunction` is a numpy callable: wrapped in
:class:`recede.costs.ValueTerminalCost` it is the terminal cost of a short-horizon problem
(:func:`value_problem`), ``recede run TASK --value DIR``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from recede.costs import ValueTerminalCost
from recede.errors import InvalidArgumentError
from recede.models.ensemble import torch_threads
from recede.policies import ValueFunction, VNet
from recede.policies.value import check_optimism
from recede.policy_learning.common import check_float, check_int
from recede.problem import Problem


@dataclass(frozen=True)
class ValueConfig:
    """
    members: value networks in the ensemble. hidden, activation: their layers.
    n_step: steps summed before bootstrapping (None: to the episode's end). discount: gamma in (0, 1].
    rounds: fits, each on targets bootstrapped from the previous one.
    epochs: most passes over the data per fit; batch_size, lr, weight_decay: Adam's.
    holdout: share of the states held out for early stopping; patience: epochs without a better
    held-out loss before stopping (the step size halves every patience / 3 of them). optimism: the saved value's soft-minimum temperature
    (None: the members' mean). threads: torch threads.
    """

    members: int = 5
    hidden: tuple[int, ...] = (128, 128)
    activation: str = "silu"
    n_step: int | None = None
    discount: float = 1.0
    rounds: int = 1
    epochs: int = 400
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    holdout: float = 0.1
    patience: int = 30
    optimism: float | None = None
    threads: int = 1

    def __post_init__(self):
        check_int("members", self.members, 1)
        if not isinstance(self.hidden, (tuple, list)) or not all(
                isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in self.hidden):
            raise InvalidArgumentError(f"hidden must be a tuple of layer widths >= 1, got {self.hidden!r}")
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if self.n_step is not None:
            check_int("n_step", self.n_step, 1)
        check_float("discount", self.discount, 0.0, 1.0, lo_open=True)
        for name in ("rounds", "epochs", "batch_size", "patience", "threads"):
            check_int(name, getattr(self, name), 1)
        check_float("lr", self.lr, 0.0, math.inf, lo_open=True, hi_open=True)
        check_float("weight_decay", self.weight_decay, 0.0, math.inf, hi_open=True)
        check_float("holdout", self.holdout, 0.0, 1.0, lo_open=True, hi_open=True)
        check_optimism(self.optimism)


@dataclass(frozen=True)
class ClosedLoop:
    """One closed-loop episode: states ``X: (T+1, nx)``, costs ``c: (T,)`` (minus the rewards),
    and whether it ended by termination (then nothing follows ``X[T]``)."""

    X: np.ndarray
    c: np.ndarray
    terminated: bool = False

    def __post_init__(self):
        X = np.asarray(self.X, dtype=np.float64)
        c = np.asarray(self.c, dtype=np.float64)
        if X.ndim != 2 or c.ndim != 1 or X.shape[0] != c.shape[0] + 1:
            raise InvalidArgumentError(f"an episode needs X: (T+1, nx) and c: (T,), got {X.shape} and {c.shape}")
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(c))):
            raise InvalidArgumentError("an episode's states and costs must be finite")
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "c", c)

    @classmethod
    def from_log(cls, log) -> ClosedLoop:
        """From a :class:`~recede.controllers.RunLog` (costs = minus its rewards)."""
        return cls(log.states, -np.asarray(log.rewards, dtype=np.float64), bool(log.terminated))


def value_targets(episodes: Sequence[ClosedLoop], *, n_step: int | None = None, discount: float = 1.0,
                  value: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """States ``(N, nx)`` and their n-step targets ``(N,)`` over every step ``t < T`` of every
    episode (see the module docstring); ``value`` bootstraps (None: 0)."""
    Xs, Gs = [], []
    for ep in episodes:
        T = ep.c.shape[0]
        if T == 0:
            continue
        n = T if n_step is None else min(int(n_step), T)
        # V at every state (0 at a terminal end), then G_t by a backwards-free window sum
        boot = np.zeros(T + 1) if value is None else np.asarray(value(ep.X), dtype=np.float64).reshape(T + 1)
        if ep.terminated:
            boot[T] = 0.0
        g = discount ** np.arange(T + 1)
        # prefix sums of discounted costs: S[t] = sum_{i<t} g^i c_i
        S = np.concatenate([[0.0], np.cumsum(g[:T] * ep.c)])
        t = np.arange(T)
        end = np.minimum(t + n, T)
        G = (S[end] - S[t]) / g[t] + g[end - t] * boot[end]
        Xs.append(ep.X[:T])
        Gs.append(G)
    if not Xs:
        raise InvalidArgumentError("episodes must hold at least one step")
    return np.concatenate(Xs), np.concatenate(Gs)


@dataclass
class ValueFit:
    """What :func:`fit_value` returns: the value, the held-out RMSE of each round (in cost units,
    the members' mean), the epochs each round ran, the number of training states and seconds."""

    value: ValueFunction
    holdout_rmse: list[float]
    epochs: list[int]
    states: int
    seconds: float


def fit_value(episodes: Sequence[ClosedLoop], *, config: ValueConfig = ValueConfig(), seed: int = 0,
              observe: Callable[[np.ndarray], np.ndarray] | None = None, task=None,
              initial: Callable[[np.ndarray], np.ndarray] | None = None) -> ValueFit:
    """Fit a value ensemble on ``episodes`` (see the module docstring). ``observe``: the features
    of states (default ``task.observation`` with a task, else the raw states). Same seed, same
    weights."""
    if isinstance(episodes, ClosedLoop):
        episodes = [episodes]
    episodes = list(episodes)
    if not episodes or not all(isinstance(e, ClosedLoop) for e in episodes):
        raise InvalidArgumentError("episodes must be a non-empty sequence of ClosedLoop episodes")
    check_int("seed", seed, 0)
    cfg = config
    nx = episodes[0].X.shape[1]
    if any(e.X.shape[1] != nx for e in episodes):
        raise InvalidArgumentError(f"every episode must have states of size {nx}")
    if task is not None and int(task.dynamics().nx) != nx:
        raise InvalidArgumentError(f"episodes have states of size {nx}, but task {task.name!r} has "
                                   f"nx={task.dynamics().nx}")
    observe = observe if observe is not None else (task.observation if task is not None else None)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    value, rmses, epochs = initial, [], []
    fitted = None
    for r in range(cfg.rounds):
        X, G = value_targets(episodes, n_step=cfg.n_step, discount=cfg.discount, value=value)
        fitted, rmse, ep = _fit_round(X, G, cfg, rng, observe, task, nx, seed + 7919 * r)
        value = fitted
        rmses.append(rmse)
        epochs.append(ep)
    fitted.meta.update({"fit": asdict(cfg), "seed": seed, "states": int(X.shape[0]),
                        "episodes": len(episodes), "holdout_rmse": rmses})
    return ValueFit(fitted, rmses, epochs, int(X.shape[0]), time.perf_counter() - t0)


def _fit_round(X, G, cfg: ValueConfig, rng, observe, task, nx, net_seed):
    N = X.shape[0]
    feats = np.asarray(observe(X) if observe is not None else X, dtype=np.float32)
    perm = rng.permutation(N)
    n_hold = max(1, int(round(cfg.holdout * N))) if N > 1 else 0
    hold, train = perm[:n_hold], perm[n_hold:]
    if train.size == 0:
        raise InvalidArgumentError(f"too few states to fit a value: {N}")
    mean, std = float(G[train].mean()), float(G[train].std())
    std = std if std > 1e-12 else 1.0
    E = cfg.members
    torch.manual_seed(net_seed)
    net = VNet(E, feats.shape[1], hidden=cfg.hidden, activation=cfg.activation,
               seeds=[net_seed + k for k in range(E)], normalize=True)
    with torch.no_grad():
        f = torch.from_numpy(feats[train])
        net.norm.mean.copy_(f.mean(dim=0).expand(E, 1, -1))
        net.norm.var.copy_(f.var(dim=0, unbiased=False).expand(E, 1, -1))
        net.norm.count.fill_(float(train.size))
    ft = torch.from_numpy(feats)
    yt = torch.from_numpy(((G - mean) / std).astype(np.float32))
    # each member trains on its own bootstrap resample of the training states
    boot = torch.from_numpy(train[rng.integers(0, train.size, size=(E, train.size))])
    gen = torch.Generator().manual_seed(net_seed)
    opt = torch.optim.Adam(net.mlp.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_state, since, ran = math.inf, None, 0, 0
    B = min(cfg.batch_size, train.size)
    steps = max(1, train.size // B)
    hold_t = torch.from_numpy(hold)
    with torch_threads(cfg.threads):
        for epoch in range(cfg.epochs):
            ran = epoch + 1
            order = torch.stack([torch.randperm(train.size, generator=gen) for _ in range(E)])
            for s in range(steps):
                idx = torch.gather(boot, 1, order[:, s * B:(s + 1) * B])  # (E, B)
                pred = net(ft[idx])[:, 0]  # (E, B)
                loss = torch.mean((pred - yt[idx]) ** 2)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            with torch.no_grad():
                ph = net(ft[hold_t].unsqueeze(0).expand(E, -1, -1))[:, 0]
                hl = float(torch.mean((ph.mean(dim=0) - yt[hold_t]) ** 2))
            if hl < best * (1.0 - 1e-4):
                best, since = hl, 0
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
            else:
                since += 1
                if since >= cfg.patience:
                    break
                if since % max(1, cfg.patience // 3) == 0:  # a plateau: halve the step size
                    for group in opt.param_groups:
                        group["lr"] *= 0.5
    net.load_state_dict(best_state)
    net.eval()
    value = ValueFunction(net, nx=nx, observe=observe, target_mean=mean, target_std=std,
                          optimism=cfg.optimism, task=task)
    return value, math.sqrt(best) * std, ran


def value_problem(problem: Problem, value, *, horizon: int | None = None, scale: float = 1.0) -> Problem:
    """``problem`` with ``value`` as its terminal cost (:class:`ValueTerminalCost`), over
    ``horizon`` steps (default the problem's)."""
    return Problem(problem.dynamics, ValueTerminalCost(problem.cost, value, scale=scale, nx=problem.nx),
                   problem.horizon if horizon is None else horizon,
                   action_low=problem.action_low, action_high=problem.action_high)


class _StartFrom:
    """An analytic task's env whose resets start from ``x0``."""

    def __init__(self, env, x0: np.ndarray):
        self._env, self._x0 = env, x0

    def reset(self, *, seed=None, options=None):
        return self._env.reset(seed=seed, options={**(options or {}), "state": self._x0})

    def __getattr__(self, name):
        return getattr(self._env, name)


class _Noisy:
    """A controller with Gaussian noise ``std`` (times the action half-range) added to its
    actions, clipped to the bounds: the collection's exploration around the planner."""

    def __init__(self, controller, low, high, std: float, rng: np.random.Generator):
        self.controller, self.low, self.high, self.rng = controller, low, high, rng
        self.scale = std * 0.5 * (high - low)

    def reset(self, rng=None) -> None:
        self.controller.reset(rng)

    def act(self, x):
        u = self.controller.act(x)
        if np.any(self.scale > 0):
            u = np.clip(u + self.scale * self.rng.standard_normal(u.shape), self.low, self.high)
        return u


def collect_episodes(task, planner: str = "cem", *, horizon: int | None = None, episodes: int = 5, seed: int = 0,
                     options=None, value=None, noise: float = 0.0, steps: int | None = None,
                     spread: Sequence[float] | None = None,
                     on_episode: Callable[[int, object], None] | None = None) -> list[ClosedLoop]:
    """Run MPC with ``planner`` (the task's options for it, then ``options``) for ``episodes``
    episodes of the task's env, seeds ``seed, seed + 1, ...``, and return them as
    :class:`ClosedLoop` data. ``value``: plan with it as the terminal cost (POLO's later rounds);
    ``noise``: Gaussian noise on the executed actions (times the half-range), for coverage.
    ``spread``: start each episode uniformly within the task's initial state +- ``spread`` (one
    number per state dimension; analytic tasks) instead of the task's own start, so the value
    sees the states a short horizon's plans end in, not only the expert's path.
    ``on_episode(i, log)`` after each (progress)."""
    from recede.controllers import MPC
    from recede.experiments.episode import layer_options, run_controller
    from recede.planners.registry import make_planner

    check_int("episodes", episodes, 1)
    check_int("seed", seed, 0)
    check_float("noise", noise, 0.0, math.inf, hi_open=True)
    nx = int(task.dynamics().nx)
    if spread is not None:
        spread = np.asarray(spread, dtype=np.float64).reshape(-1)
        if spread.shape != (nx,) or not np.all(np.isfinite(spread)) or np.any(spread < 0):
            raise InvalidArgumentError(f"spread must be {nx} finite numbers >= 0 (one per state "
                                       f"dimension of {task.name!r}), got {spread.tolist()}")
        if getattr(task, "asset", None) is not None or not hasattr(task, "initial_state"):
            raise InvalidArgumentError(f"spread needs an analytic task (its env starts from a given "
                                       f"state); {task.name!r} is not one")
    options = layer_options(planner, task, options or {})
    H = task.horizon_for(planner) if horizon is None else horizon
    check_int("horizon", H, 1)
    problem = task.problem(H)
    if value is not None:
        problem = value_problem(problem, value)
    out = []
    for i in range(episodes):
        env = task.make_env()
        try:
            mpc = MPC(make_planner(planner, problem, **options), rng=seed + i)
            ctrl = _Noisy(mpc, problem.action_low, problem.action_high, noise,
                          np.random.default_rng([seed, i, 1]))
            if spread is not None:
                env = _StartFrom(env, np.asarray(task.initial_state) + spread * np.random.default_rng(
                    [seed, i, 2]).uniform(-1.0, 1.0, nx))
            log = run_controller(task, env, ctrl, seed=seed + i, steps=steps)
        finally:
            env.close()
        out.append(ClosedLoop.from_log(log))
        if on_episode is not None:
            on_episode(i, log)
    return out
