"""Imitation: behaviour cloning and DAgger, with any recede controller as the expert.

- :func:`bc` fits a policy network to ``(state, action)`` pairs: a
  :class:`~recede.data.TransitionDataset` (whose observations are model states, as recede's own
  data is) or arrays ``(X (N, nx), U (N, nu))``. MSE (in units of the action bounds' half-width)
  or the Gaussian NLL, minibatch Adam, early stopping on a held-out share, seeded. ``hidden=()``
  fits the linear class :class:`~recede.policies.LinearPolicyNet` (a linear expert is in it).
- :func:`expert_demos` runs the expert for ``labels`` steps and returns the states it visited and
  its actions there: behaviour cloning from demonstrations, at a label count.
- :func:`dagger`: round 0 runs the expert; round ``i`` runs the learner mixed with the expert
  (per step, the expert's action with probability ``beta_i``), has the expert label every visited
  state, aggregates and refits. A ``labels`` budget caps the expert calls.

The expert is a :class:`~recede.controllers.base.Controller` (MPC around a planner, LQR, a loaded
policy) or a picklable :class:`ExpertSpec` that builds one (needed for ``workers > 1``). Every
label is a **fresh** decision from that state: the expert is reset with the label's own seed
(derived from the run's seed, the round, the episode and the step) before it acts, so an MPC
expert plans from scratch, without a warm start, and a label does not depend on which states were
labelled before it or in which process. A :class:`Labeller` batches the labels: one ``act_batch``
call where the expert has one (LQR, policies), else over ``workers`` processes.

Shapes: ``X: (N, nx)`` model states, ``U: (N, nu)`` actions; a policy acts on
``task.observation(X)``.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from recede.controllers import MPC
from recede.data import TransitionDataset
from recede.envs import get_task
from recede.errors import InvalidArgumentError
from recede.experiments.episode import episode_spec
from recede.models.ensemble import torch_threads
from recede.planners.registry import make_planner
from recede.policies import DeterministicPolicyNet, GaussianPolicyNet, LinearPolicyNet, NetworkPolicy, task_sizes
from recede.policy_learning.common import check_float, check_hidden, check_int

LOSSES = ("mse", "nll")
SCHEDULES = ("linear", "exponential")


# ----------------------------------------------------------------------------- behaviour cloning


@dataclass(frozen=True)
class BCConfig:
    """Behaviour cloning's settings.

    loss: ``"mse"`` (a deterministic policy; squared error in units of the action bounds'
    half-width) or ``"nll"`` (a tanh-squashed Gaussian policy; the negative log-likelihood of the
    expert's action, clipped just inside the bounds, before the squash). hidden: the hidden
    layers; ``()`` is the linear policy class (MSE only). normalize: standardise the features
    with the training data's statistics. Minibatch Adam (``lr``, ``batch_size``) for at most
    ``epochs`` passes; ``holdout`` of the pairs (at least one when there are two or more) is held
    out, training stops after ``patience`` epochs without a better held-out loss, and the best
    epoch's weights are kept. threads: torch threads.
    """

    loss: str = "mse"
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    normalize: bool = True
    lr: float = 1e-3
    batch_size: int = 256
    epochs: int = 200
    holdout: float = 0.1
    patience: int = 20
    weight_decay: float = 0.0
    threads: int = 1

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise InvalidArgumentError(f"loss must be one of {list(LOSSES)}, got {self.loss!r}")
        object.__setattr__(self, "hidden", check_hidden(self.hidden))
        if not self.hidden and self.loss != "mse":
            raise InvalidArgumentError(f"loss must be 'mse' for a linear policy (hidden=()), got {self.loss!r}")
        check_float("lr", self.lr, 0.0, 1.0, lo_open=True)
        check_int("batch_size", self.batch_size, 1)
        check_int("epochs", self.epochs, 1)
        check_float("holdout", self.holdout, 0.0, 1.0, hi_open=True)
        check_int("patience", self.patience, 1)
        check_float("weight_decay", self.weight_decay, 0.0, math.inf, hi_open=True)
        check_int("threads", self.threads, 1)


@dataclass(frozen=True)
class BCResult:
    """A fitted policy (acting on model states), the best epoch's training and held-out losses
    (the held-out one NaN without a held-out share), the epochs run and the wall time."""

    policy: NetworkPolicy
    train_loss: float
    holdout_loss: float
    epochs: int
    pairs: int
    wall_s: float


def _pairs(task, data) -> tuple[np.ndarray, np.ndarray]:
    nx, _, nu = task_sizes(task)
    if isinstance(data, TransitionDataset):
        X, U = data.observations, data.actions
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        X, U = (np.asarray(a, dtype=np.float64) for a in data)
    else:
        raise InvalidArgumentError(f"data must be a TransitionDataset or a pair (X, U), got {type(data).__name__}")
    if X.ndim != 2 or X.shape[1] != nx:
        raise InvalidArgumentError(f"data: states must have shape (N, {nx}) for task {task.name!r}, got {X.shape}")
    if U.ndim != 2 or U.shape[1] != nu or U.shape[0] != X.shape[0]:
        raise InvalidArgumentError(f"data: actions must have shape ({X.shape[0]}, {nu}) for task "
                                   f"{task.name!r}, got {U.shape}")
    if X.shape[0] < 1:
        raise InvalidArgumentError("data: needs at least one (state, action) pair, got 0")
    if not (np.isfinite(X).all() and np.isfinite(U).all()):
        raise InvalidArgumentError("data: states and actions must be finite")
    return X, U


def action_bounds(task) -> tuple[np.ndarray, np.ndarray]:
    """The task's action bounds ``(low, high)`` (its env's)."""
    env = task.make_env()
    try:
        sp = env.action_space
        return np.asarray(sp.low, dtype=np.float64), np.asarray(sp.high, dtype=np.float64)
    finally:
        env.close()


def _new_net(task, config: BCConfig, seed: int):
    _, nobs, nu = task_sizes(task)
    low, high = action_bounds(task)
    kw = dict(hidden=config.hidden, activation=config.activation, seeds=[seed], normalize=config.normalize)
    if not config.hidden:
        return LinearPolicyNet(1, nobs, nu, low, high, **kw)
    cls = GaussianPolicyNet if config.loss == "nll" else DeterministicPolicyNet
    return cls(1, nobs, nu, low, high, **kw)


def _loss(net, obs: torch.Tensor, act: torch.Tensor, loss: str) -> torch.Tensor:
    b = net.bounds
    if loss == "nll":
        mu, log_std = net(obs)
        z = torch.atanh(((act - b.centre) / b.scale).clamp(-1.0 + 1e-4, 1.0 - 1e-4))
        return (0.5 * ((z - mu) * torch.exp(-log_std)).pow(2) + log_std).sum(-1).mean() + 0.5 * math.log(2 * math.pi)
    pred = net.linear(obs) if isinstance(net, LinearPolicyNet) else net(obs)
    return ((pred - act) / b.scale).pow(2).sum(-1).mean()


def bc(task, data, *, config: BCConfig = BCConfig(), seed: int = 0) -> BCResult:
    """Fit a policy for ``task`` to ``data`` (a TransitionDataset whose observations are model
    states, or ``(X (N, nx), U (N, nu))``) by behaviour cloning (see :class:`BCConfig`). Same
    seed and data, same weights."""
    task = get_task(task)
    if not isinstance(config, BCConfig):
        raise InvalidArgumentError(f"config must be a BCConfig, got {type(config).__name__}")
    check_int("seed", seed, 0)
    X, U = _pairs(task, data)
    t0 = time.perf_counter()
    obs_all = np.asarray(task.observation(X), dtype=np.float32)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 20]))
    N = X.shape[0]
    order = rng.permutation(N)
    n_hold = int(round(config.holdout * N)) if N >= 2 else 0
    n_hold = min(max(n_hold, 1 if config.holdout > 0 and N >= 2 else 0), N - 1)
    hold, train = order[:n_hold], order[n_hold:]
    with torch_threads(config.threads):
        net = _new_net(task, config, seed)
        o_tr = torch.from_numpy(obs_all[train])[None]
        a_tr = torch.from_numpy(U[train].astype(np.float32))[None]
        o_ho = torch.from_numpy(obs_all[hold])[None]
        a_ho = torch.from_numpy(U[hold].astype(np.float32))[None]
        if config.normalize:
            net.norm.update(o_tr)
        params = [p for n, p in net.named_parameters() if not n.startswith("norm.")]
        opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        g = torch.Generator()
        g.manual_seed(int(rng.integers(2 ** 62)))
        best, best_state, best_train, stale, epochs = math.inf, None, math.nan, 0, 0
        n = o_tr.shape[1]
        for epoch in range(config.epochs):
            perm = torch.randperm(n, generator=g)
            total = 0.0
            for i in range(0, n, config.batch_size):
                idx = perm[i:i + config.batch_size]
                loss = _loss(net, o_tr[:, idx], a_tr[:, idx], config.loss)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            epochs = epoch + 1
            with torch.no_grad():
                score = float(_loss(net, o_ho, a_ho, config.loss)) if n_hold else total / n
            if score < best:
                best, best_train, stale = score, total / n, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                stale += 1
                if stale >= config.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
    meta = {"algo": "bc", "seed": int(seed), "pairs": int(N), "loss": config.loss}
    return BCResult(policy=NetworkPolicy(net, task, meta=meta), train_loss=float(best_train),
                    holdout_loss=float(best) if n_hold else math.nan, epochs=epochs, pairs=int(N),
                    wall_s=time.perf_counter() - t0)


# ----------------------------------------------------------------------------- experts


@dataclass(frozen=True)
class ExpertSpec:
    """A picklable recipe for an expert of task ``task``: ``kind`` ``"mpc"`` (``planner`` with
    ``options`` over ``horizon`` steps, re-planning from scratch at every state), ``"lqr"`` (the
    task's problem linearised at its goal) or ``"policy"`` (the checkpoint at ``path``).
    :meth:`build` makes the controller (in any process)."""

    task: str
    kind: str
    planner: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    horizon: int | None = None
    path: str | None = None

    def build(self):
        task = get_task(self.task)
        if self.kind == "mpc":
            planner = make_planner(self.planner, task.problem(self.horizon), **dict(self.options))
            return MPC(planner, warm_start=False)
        if self.kind == "lqr":
            from recede.controllers import LQRController

            return LQRController(task.problem(self.horizon))
        if self.kind == "policy":
            from recede.policies import load_policy

            return load_policy(self.path, task)
        raise InvalidArgumentError(f"expert kind must be mpc, lqr or policy, got {self.kind!r}")

    def describe(self) -> str:
        return {"mpc": f"mpc:{self.planner}", "lqr": "lqr"}.get(self.kind, f"policy:{self.path}")


def expert_spec(task, expert: str, *, horizon: int | None = None,
                options: Mapping[str, Any] | None = None) -> ExpertSpec:
    """``"mpc:PLANNER"``, ``"lqr"`` or ``"policy:DIR"`` -> a checked :class:`ExpertSpec` of
    ``task`` (MPC options layered over the task's defaults, as ``recede run`` does)."""
    task = get_task(task)
    kind, _, arg = str(expert).partition(":")
    if kind == "mpc" and arg:
        spec = episode_spec(task, arg, options or {}, horizon=horizon)
        return ExpertSpec(task=task.name, kind="mpc", planner=arg, options=dict(spec.options), horizon=spec.horizon)
    if options:
        raise InvalidArgumentError(f"options apply to an mpc expert, not {expert!r}")
    if kind == "lqr" and not arg:
        return ExpertSpec(task=task.name, kind="lqr", horizon=horizon or task.horizon)
    if kind == "policy" and arg:
        return ExpertSpec(task=task.name, kind="policy", path=os.path.abspath(arg))
    raise InvalidArgumentError(f"expert must be mpc:PLANNER, lqr or policy:DIR, got {expert!r}")


def _seed_of(key: Sequence[int]) -> int:
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _label_one(expert, x: np.ndarray, key) -> np.ndarray:
    expert.reset(_seed_of(key))
    return np.asarray(expert.act(x), dtype=np.float64)


_WORKER_EXPERT = None


def _worker_init(spec: ExpertSpec, threads: int) -> None:
    global _WORKER_EXPERT
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    torch.set_num_threads(1)
    _WORKER_EXPERT = spec.build()


def _worker_label(X: np.ndarray, keys) -> tuple[np.ndarray, list[float]]:
    out, times = [], []
    for x, k in zip(X, keys):
        t0 = time.perf_counter()
        out.append(_label_one(_WORKER_EXPERT, x, k))
        times.append(time.perf_counter() - t0)
    return np.stack(out), times


class Labeller:
    """The expert's labels for batches of states: ``label(X (N, nx), keys) -> U (N, nu)``, each
    row a fresh decision of the expert seeded by its ``key`` (a tuple of ints). ``expert``: a
    Controller, or an :class:`ExpertSpec` (built here, and in ``workers`` processes when
    ``workers > 1``). Experts with ``act_batch`` (LQR, policies) label a batch in one call.
    Refuses an expert that cannot act on the task's states (probed on the task's initial state).
    ``times`` holds the seconds of each label (a batch's time shared by its rows). Close it (or
    use ``with``) to stop its processes. The workers start by forkserver (or spawn), each with
    ``cpu_count // workers`` Numba threads; a script that asks for ``workers > 1`` must guard
    its entry point with ``if __name__ == "__main__":``, as any such pool needs."""

    def __init__(self, task, expert, *, workers: int = 1):
        self.task = get_task(task)
        check_int("workers", workers, 1)
        self.spec = expert if isinstance(expert, ExpertSpec) else None
        self.expert = expert.build() if self.spec is not None else expert
        if not (hasattr(self.expert, "act") and hasattr(self.expert, "reset")):
            raise InvalidArgumentError(f"expert must be a recede Controller (act, reset) or an ExpertSpec, "
                                       f"got {expert!r}")
        if workers > 1 and self.spec is None:
            raise InvalidArgumentError(f"workers={workers} needs the expert as an ExpertSpec (a picklable "
                                       f"recipe the worker processes build it from), got {expert!r}")
        self.nx, _, self.nu = task_sizes(self.task)
        self.batched = hasattr(self.expert, "act_batch")
        self.workers = int(workers)
        self.times: list[float] = []
        self._pool = None
        self._probe()
        if self.workers > 1 and not self.batched:
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                                              else "spawn")
            threads = max(1, (os.cpu_count() or 1) // self.workers)
            self._pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_worker_init,
                                                                initargs=(self.spec, threads))

    def _probe(self) -> None:
        env = _reset_env(self.task, 0)
        try:
            x = self.task.state_of(env)
        finally:
            env.close()
        name = self.spec.describe() if self.spec is not None else type(self.expert).__name__
        try:
            u = _label_one(self.expert, x, (0,))
        except Exception as e:  # noqa: BLE001  (any failure to act is a mismatch with the task)
            raise InvalidArgumentError(f"expert {name} cannot act on task {self.task.name!r} (states of "
                                       f"size {self.nx}): {e}") from None
        if u.shape != (self.nu,) or not np.isfinite(u).all():
            raise InvalidArgumentError(f"expert {name} returned an action of shape {u.shape} on task "
                                       f"{self.task.name!r}, which has {self.nu} actions")

    def label(self, X: np.ndarray, keys: Sequence[tuple]) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64).reshape(-1, self.nx)
        if len(X) == 0:
            return np.zeros((0, self.nu))
        if self.batched:
            t0 = time.perf_counter()
            U = np.asarray(self.expert.act_batch(X), dtype=np.float64)
            self.times += [(time.perf_counter() - t0) / len(X)] * len(X)
            return U.reshape(len(X), self.nu)
        if self._pool is None:
            U, times = [], []
            for x, k in zip(X, keys):
                t0 = time.perf_counter()
                U.append(_label_one(self.expert, x, k))
                times.append(time.perf_counter() - t0)
            self.times += times
            return np.stack(U)
        chunks = np.array_split(np.arange(len(X)), min(self.workers, len(X)))
        futs = [self._pool.submit(_worker_label, X[c], [keys[i] for i in c]) for c in chunks]
        out = []
        for f in futs:
            U, times = f.result()
            out.append(U)
            self.times += times
        return np.concatenate(out)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _reset_env(task, seed: int):
    env = task.make_env()
    env.reset(seed=int(seed))
    return env


def _run_episode(task, controller, seed: int, steps: int | None = None) -> float:
    """The return of one episode of ``controller`` acting on model states from
    ``env.reset(seed=seed)``."""
    env = _reset_env(task, seed)
    try:
        ret, n = 0.0, 0
        limit = task.episode_steps if steps is None else steps
        while n < limit:
            _, r, te, tr, _ = env.step(controller.act(task.state_of(env)))
            ret += float(r)
            n += 1
            if te or tr:
                break
        return ret
    finally:
        env.close()


def eval_seeds(seed: int, episodes: int) -> list[int]:
    """The env seeds of the evaluation episodes of run seed ``seed`` (the same for the learner
    and the expert, and for every label count)."""
    return [_seed_of((seed, 77, e)) % 2 ** 31 for e in range(episodes)]


def evaluate_controller(task, controller, seeds: Sequence[int]) -> np.ndarray:
    """Returns ``(len(seeds),)`` of ``controller`` over episodes from ``env.reset(seed=s)``."""
    task = get_task(task)
    out = []
    for s in seeds:
        controller.reset(s)
        out.append(_run_episode(task, controller, s))
    return np.array(out)


# ----------------------------------------------------------------------------- collecting


def beta_schedule(schedule: str, param: float, rounds: int) -> list[float]:
    """``beta_i`` for rounds ``0..rounds-1``: 1 at round 0, then ``max(0, 1 - i * param)``
    (``"linear"``) or ``param ** i`` (``"exponential"``); ``param`` in [0, 1]."""
    if schedule not in SCHEDULES:
        raise InvalidArgumentError(f"beta schedule must be one of {list(SCHEDULES)}, got {schedule!r}")
    check_float("beta_param", param, 0.0, 1.0)
    if schedule == "linear":
        return [max(0.0, 1.0 - i * param) for i in range(rounds)]
    return [1.0] + [float(param) ** i for i in range(1, rounds)]


@dataclass
class _Collected:
    X: np.ndarray
    U: np.ndarray
    label_s: float  # seconds spent labelling


def collect_round(task, labeller: Labeller, learner, beta: float, labels: int, *, seed: int, round_: int,
                  episodes: int, steps: int | None = None) -> _Collected:
    """Run ``episodes`` envs in lockstep (a finished episode restarts) until ``labels`` states
    have been visited; every visited state is labelled by the expert (one batch per step), and
    each env takes the expert's label with probability ``beta`` (else the learner's action)."""
    limit = task.episode_steps if steps is None else int(steps)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 21, int(round_)]))
    envs = [task.make_env() for _ in range(episodes)]
    started = [0] * episodes  # episodes each env has started
    t = [0] * episodes
    X, U, label_s = [], [], 0.0
    try:
        def restart(i):
            envs[i].reset(seed=_seed_of((seed, 22, round_, i, started[i])) % 2 ** 31)
            started[i] += 1
            t[i] = 0

        for i in range(episodes):
            restart(i)
        while len(X) < labels:
            n = min(episodes, labels - len(X))
            S = np.stack([task.state_of(envs[i]) for i in range(n)])
            keys = [(seed, 23, round_, i, started[i], t[i]) for i in range(n)]
            t0 = time.perf_counter()
            L = labeller.label(S, keys)
            label_s += time.perf_counter() - t0
            coins = rng.random(n) < beta
            A = L.copy()
            if learner is not None and not coins.all():
                A[~coins] = learner.act_batch(S[~coins])
            for i in range(n):
                _, _, te, tr, _ = envs[i].step(A[i])
                t[i] += 1
                if te or tr or t[i] >= limit:
                    restart(i)
            X.extend(S)
            U.extend(L)
    finally:
        for e in envs:
            e.close()
    return _Collected(np.array(X).reshape(-1, labeller.nx), np.array(U).reshape(-1, labeller.nu), label_s)


def _labeller_for(task, expert, workers: int) -> tuple[Labeller, bool]:
    if isinstance(expert, Labeller):
        return expert, False
    return Labeller(task, expert, workers=workers), True


def expert_demos(task, expert, labels: int, *, seed: int = 0, episodes: int = 4, labels_per_round: int | None = None,
                 workers: int = 1, steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(X (labels, nx), U (labels, nu))``: the states the expert visits, running alone, and its
    actions there; collected in rounds of ``labels_per_round`` as :func:`dagger` collects (its
    round 0 is the first ``labels_per_round`` of these), so BC at a label count is fit to the
    first pairs of a longer run."""
    c = _expert_demos(task, expert, labels, seed=seed, episodes=episodes, labels_per_round=labels_per_round,
                      workers=workers, steps=steps)
    return c.X, c.U


def _expert_demos(task, expert, labels, *, seed, episodes, labels_per_round, workers, steps) -> _Collected:
    task = get_task(task)
    check_int("labels", labels, 1)
    per = labels if labels_per_round is None else labels_per_round
    check_int("labels_per_round", per, 1)
    labeller, own = _labeller_for(task, expert, workers)
    try:
        parts, r, n = [], 0, 0
        while n < labels:
            parts.append(collect_round(task, labeller, None, 1.0, min(per, labels - n), seed=seed, round_=r,
                                       episodes=episodes, steps=steps))
            n += len(parts[-1].X)
            r += 1
    finally:
        if own:
            labeller.close()
    return _Collected(np.concatenate([c.X for c in parts]), np.concatenate([c.U for c in parts]),
                      sum(c.label_s for c in parts))


# ----------------------------------------------------------------------------- DAgger


@dataclass(frozen=True)
class DAggerConfig:
    """DAgger's settings.

    labels: the budget of expert calls (every visited state costs one); labels_per_round: states
    visited (and labelled) per round, the last round truncated to the budget; episodes: envs run
    in lockstep per round (their states are labelled as one batch, spread over the workers);
    steps: the most steps of an episode (default: the task's); beta: ``"linear"`` or
    ``"exponential"`` with ``beta_param`` (see :func:`beta_schedule`; round 0 is the expert
    alone); eval_episodes: deterministic evaluation episodes of the learner after each round
    (0: none); eval_at: evaluate only at these label counts (a round ends early where it would
    pass one; default: after every round);
    workers: labelling processes (needs an :class:`ExpertSpec`); bc: the refit's settings.
    """

    labels: int = 5000
    labels_per_round: int = 1000
    episodes: int = 4
    steps: int | None = None
    beta: str = "exponential"
    beta_param: float = 0.5
    eval_episodes: int = 5
    eval_at: tuple[int, ...] | None = None
    workers: int = 1
    bc: BCConfig = BCConfig()

    def __post_init__(self):
        check_int("labels", self.labels, 1)
        check_int("labels_per_round", self.labels_per_round, 1)
        check_int("episodes", self.episodes, 1)
        if self.steps is not None:
            check_int("steps", self.steps, 1)
        beta_schedule(self.beta, self.beta_param, 1)
        check_int("eval_episodes", self.eval_episodes, 0)
        check_int("workers", self.workers, 1)
        if self.eval_at is not None:
            for v in self.eval_at:
                check_int("eval_at", v, 1)
        if not isinstance(self.bc, BCConfig):
            raise InvalidArgumentError(f"bc must be a BCConfig, got {type(self.bc).__name__}")


@dataclass(frozen=True)
class RoundLog:
    """One DAgger round: its beta, the labels so far, the labels of this round per second of
    labelling, the learner's evaluation returns (empty when not evaluated) and the wall time."""

    round: int
    beta: float
    labels: int
    labels_per_s: float
    returns: tuple[float, ...]
    wall_s: float

    @property
    def return_mean(self) -> float:
        return float(np.mean(self.returns)) if self.returns else math.nan

    @property
    def return_std(self) -> float:
        return float(np.std(self.returns)) if self.returns else math.nan


@dataclass(frozen=True)
class DAggerResult:
    """The final policy, every round's log, the aggregated data ``(X, U)`` and the wall time."""

    policy: NetworkPolicy
    rounds: tuple[RoundLog, ...]
    X: np.ndarray
    U: np.ndarray
    wall_s: float


def dagger(task, expert, *, config: DAggerConfig = DAggerConfig(), seed: int = 0,
           on_round: Callable[[RoundLog, NetworkPolicy], None] | None = None) -> DAggerResult:
    """DAgger (Ross et al., 2011) with ``expert`` (a Controller, an :class:`ExpertSpec` or a
    :class:`Labeller`) on ``task``: see the module docstring and :class:`DAggerConfig`.
    ``on_round(log, policy)`` runs after every round. Same seed, same policy."""
    task = get_task(task)
    if not isinstance(config, DAggerConfig):
        raise InvalidArgumentError(f"config must be a DAggerConfig, got {type(config).__name__}")
    check_int("seed", seed, 0)
    t_start = time.perf_counter()
    beta_schedule(config.beta, config.beta_param, 1)
    labeller, own = _labeller_for(task, expert, config.workers)
    ev_seeds = eval_seeds(seed, config.eval_episodes)
    marks = sorted({v for v in (config.eval_at or ()) if v < config.labels} | {config.labels})
    Xs, Us, logs, policy = [], [], [], None
    try:
        total, r = 0, 0
        while total < config.labels:
            t0 = time.perf_counter()
            beta = beta_schedule(config.beta, config.beta_param, r + 1)[r]
            # a round ends at its size, or at the next label count to evaluate at
            n = min(config.labels_per_round, next(m for m in marks if m > total) - total)
            c = collect_round(task, labeller, policy, beta, n, seed=seed, round_=r, episodes=config.episodes,
                              steps=config.steps)
            Xs.append(c.X)
            Us.append(c.U)
            total += len(c.X)
            policy = bc(task, (np.concatenate(Xs), np.concatenate(Us)), config=config.bc, seed=seed).policy
            due = config.eval_at is None or total in marks
            rets = tuple(evaluate_controller(task, policy, ev_seeds).tolist()) if due and ev_seeds else ()
            log = RoundLog(round=r, beta=float(beta), labels=total,
                           labels_per_s=len(c.X) / c.label_s if c.label_s > 0 else math.inf, returns=rets,
                           wall_s=time.perf_counter() - t0)
            logs.append(log)
            policy.meta.update(algo="dagger", labels=total, rounds=r + 1)
            if on_round is not None:
                on_round(log, policy)
            r += 1
    finally:
        if own:
            labeller.close()
    return DAggerResult(policy=policy, rounds=tuple(logs), X=np.concatenate(Xs), U=np.concatenate(Us),
                        wall_s=time.perf_counter() - t_start)


def time_per_action(controller, X: np.ndarray, repeats: int = 1) -> float:
    """Median seconds of ``controller.act(x)`` over the states ``X``."""
    times = []
    for _ in range(repeats):
        for x in X:
            t0 = time.perf_counter()
            controller.act(x)
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


# ----------------------------------------------------------------------------- curves


class FreshExpert:
    """The labeller's expert as a controller that decides every step afresh, as it labels: at
    step ``t`` of the episode it is reset with the seed of ``(seed, t)`` before acting (an MPC
    expert plans from scratch). This is the expert a learner imitates."""

    def __init__(self, expert):
        self.expert = expert
        self.reset()

    def reset(self, rng=None) -> None:
        self._seed = 0 if rng is None else int(rng) if not isinstance(rng, np.random.Generator) \
            else int(rng.integers(2 ** 31))
        self._t = 0

    def act(self, x) -> np.ndarray:
        u = _label_one(self.expert, np.asarray(x, dtype=np.float64), (self._seed, 24, self._t))
        self._t += 1
        return u


def _worker_eval(task_name: str, seed: int) -> float:
    fresh = FreshExpert(_WORKER_EXPERT)
    fresh.reset(seed)
    return _run_episode(get_task(task_name), fresh, seed)


def evaluate_expert(labeller: Labeller, seeds: Sequence[int]) -> np.ndarray:
    """Returns of the expert deciding afresh every step (:class:`FreshExpert`) over episodes from
    ``env.reset(seed=s)``, one episode per worker process at a time where the labeller has them."""
    if labeller._pool is not None:
        futs = [labeller._pool.submit(_worker_eval, labeller.task.name, int(s)) for s in seeds]
        return np.array([f.result() for f in futs])
    return evaluate_controller(labeller.task, FreshExpert(labeller.expert), seeds)


@dataclass(frozen=True)
class CurvePoint:
    """One point of an imitation curve: ``method`` (``bc``, ``dagger`` or ``expert``) of run seed
    ``seed`` after ``labels`` expert labels (0 for the expert), its evaluation returns, the labels
    per second of labelling that produced its data, and the wall time since the seed started."""

    method: str
    seed: int
    labels: int
    returns: tuple[float, ...]
    labels_per_s: float
    wall_s: float

    @property
    def return_mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def return_std(self) -> float:
        return float(np.std(self.returns))


@dataclass(frozen=True)
class ImitationCurve:
    """Every point, the final policy per ``(method, seed)``, and the median seconds per action of
    the learned policies (``policy_s``) and of the expert's labels (``expert_s``)."""

    points: tuple[CurvePoint, ...]
    policies: Mapping[tuple[str, int], NetworkPolicy]
    policy_s: float
    expert_s: float


METHODS = ("bc", "dagger")


def imitation_curve(task, labeller: Labeller, *, methods: Sequence[str] = METHODS, labels: Sequence[int] = (1000,),
                    seeds: Sequence[int] = (0,), config: DAggerConfig = DAggerConfig(),
                    on_point: Callable[[CurvePoint], None] | None = None) -> ImitationCurve:
    """BC from the expert's demonstrations and DAgger, each at every label count of ``labels``,
    for every seed, against the expert (evaluated on the same episodes). DAgger runs once per
    seed up to the largest count (``config`` with ``labels`` and ``eval_at`` set from
    ``labels``); BC is fit to the first ``n`` pairs of one demonstration run per seed."""
    task = get_task(task)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods or len(set(methods)) != len(methods):
        raise InvalidArgumentError(f"methods must be distinct names among {list(METHODS)}, got {list(methods)!r}")
    counts = sorted({int(n) for n in labels})
    for n in labels:
        check_int("labels", n, 1)
    if len(counts) != len(list(labels)):
        raise InvalidArgumentError(f"labels must be distinct counts, got {list(labels)!r}")
    if config.eval_episodes < 1:
        raise InvalidArgumentError(f"eval_episodes must be >= 1 for a curve, got {config.eval_episodes}")
    cfg = dataclasses.replace(config, labels=counts[-1], eval_at=tuple(counts))
    points, policies = [], {}

    def add(p):
        points.append(p)
        if on_point is not None:
            on_point(p)

    all_X = []
    for seed in seeds:
        t0 = time.perf_counter()
        ev = eval_seeds(seed, cfg.eval_episodes)
        add(CurvePoint("expert", seed, 0, tuple(evaluate_expert(labeller, ev).tolist()), math.nan,
                       time.perf_counter() - t0))
        if "bc" in methods:
            t0 = time.perf_counter()
            c = _expert_demos(task, labeller, counts[-1], seed=seed, episodes=cfg.episodes,
                              labels_per_round=cfg.labels_per_round, workers=1, steps=cfg.steps)
            rate = len(c.X) / c.label_s if c.label_s > 0 else math.inf
            for n in counts:
                pol = bc(task, (c.X[:n], c.U[:n]), config=cfg.bc, seed=seed).policy
                add(CurvePoint("bc", seed, n, tuple(evaluate_controller(task, pol, ev).tolist()), rate,
                               time.perf_counter() - t0))
            policies[("bc", seed)] = pol
            all_X.append(c.X)
        if "dagger" in methods:
            t0 = time.perf_counter()

            def on_round(log, pol, seed=seed, t0=t0):
                if log.labels in counts:
                    add(CurvePoint("dagger", seed, log.labels, log.returns, log.labels_per_s,
                                   time.perf_counter() - t0))

            res = dagger(task, labeller, config=cfg, seed=seed, on_round=on_round)
            policies[("dagger", seed)] = res.policy
            all_X.append(res.X)
    X = np.concatenate(all_X)
    sample = X[np.random.default_rng(0).choice(len(X), size=min(200, len(X)), replace=False)]
    policy_s = float(np.median([time_per_action(p, sample) for p in policies.values()]))
    return ImitationCurve(points=tuple(points), policies=policies, policy_s=policy_s,
                          expert_s=float(np.median(labeller.times)) if labeller.times else math.nan)
