"""Proximal policy optimisation (Schulman et al. 2017, clipped objective), ``K`` seeds as one batch.

``ppo(task, config, seeds=[0, 1, 2])`` trains ``K`` independent agents in one process. Each agent
has ``num_envs`` envs of its own, its own generators and its own reward statistics; their actors
and critics are stacked into one batched module per role, so one update of ``K`` agents is one
``baddbmm`` per layer. Agent ``k`` draws everything from streams seeded by its own seed only
(:func:`~recede.policy_learning.common.agent_streams`), every loss is a sum of per-agent terms and
the gradient norm is clipped per agent, so an agent trained in a batch follows the same trajectory
as the agent trained alone (bit for bit on the CPU; ``tests/policy_learning/test_ppo.py`` checks it).

The loop, per iteration (CleanRL's ``ppo_continuous_action.py``, batched over agents):

1. anneal the learning rate linearly to 0 over the run (``anneal_lr``);
2. ``rollout_steps`` steps of every agent's ``num_envs`` envs with actions sampled from the
   policy (:class:`~recede.policies.ClippedGaussianPolicyNet`: a Gaussian of state-independent
   std in normalised action units, clipped to the bounds in the env). Observations are normalised
   by running statistics kept inside the actor (``normalize_obs``; the saved policy carries them),
   rewards scaled by the running std of the discounted return (``normalize_reward``, as
   Gymnasium's ``NormalizeReward``; both clipped to +-10);
3. advantages by GAE(``gamma``, ``gae_lambda``) (:func:`gae`): an episode that ended by its time
   limit (truncated) bootstraps from the critic's value of its true final observation, one that
   terminated does not; returns = advantages + values;
4. ``epochs`` passes over the rollout in ``minibatches`` shuffled minibatches per agent: the clipped
   surrogate (``clip``) on per-minibatch normalised advantages, the value loss (clipped around the
   rollout's values by ``clip_value`` unless None), minus ``entropy_coef`` times the entropy, one
   Adam step (eps 1e-5) after clipping each agent's gradient norm to ``max_grad_norm``;
5. every ``eval_every`` env steps (at the end of the iteration that reaches it) and after the last:
   ``eval_episodes`` episodes per agent in a fresh real env with the deterministic policy (the
   mean action clipped to the bounds).

``steps`` counts env steps per agent over its ``num_envs`` envs (CleanRL's ``total_timesteps``); a
run does ``ceil(steps / (num_envs * rollout_steps))`` whole iterations.

Where it trains: the task's real envs, or, given ``model=``, a :class:`~recede.envs.ModelEnv` over
that model (``K * num_envs`` sub-envs); evaluation always runs in the real env. Agent ``k`` owns
envs ``k * num_envs .. k * num_envs + num_envs - 1``; features are ``task.observation(x)``.

Checkpoints (``out=DIR``) hold the state at an iteration boundary: every ``checkpoint_every`` env
steps, at the end, and on Ctrl-C (the last boundary reached: the interrupted iteration is redone on
resume) ``DIR/checkpoint/`` holds the networks, the optimiser, the observation and reward
statistics, every generator and the envs' states, written atomically; ``resume=True`` continues
from it and reproduces the uninterrupted run (real envs; a model env restarts its episodes). A
resume may ask for more ``steps``: with ``anneal_lr`` the learning rate then follows the new length.
At the end ``DIR/seed_<s>/`` holds each agent's policy (a :func:`~recede.policies.load_policy`
checkpoint of kind ``gaussian_clip``) and ``DIR/evals.csv`` the evaluations.

Shapes: ``K`` agents, ``M = num_envs`` envs per agent, ``T = rollout_steps``; rollout tensors are
``(T, K, M, ...)``, minibatches ``(K, n, ...)``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from recede._io import atomic_directory, deferred_interrupt
from recede.errors import Interrupted, InvalidArgumentError
from recede.experiments.episode import json_safe
from recede.models.ensemble import torch_threads
from recede.models.layers import ACTIVATIONS
from recede.policies import ClippedGaussianPolicyNet, NetworkPolicy, VNet, orthogonal_init, save_policy, task_sizes
from recede.policy_learning.common import (
    check_float, check_int, check_resume_state,
    EvalLog, agent_streams, check_seeds, evals_from_json, evals_to_json, evaluate, make_envs, out_dir,
    read_json, resolve_task, torch_generator, write_evals_csv, write_json,
)

FORMAT = "recede.PPO/1"
CLIP_REWARD = 10.0  # normalised rewards are clipped to +-10 (CleanRL; observations: ObsNormalizer.clip)
# options that may change on resume (they do not change what the agents learn, or extend the run)
RESUMABLE_CHANGES = ("steps", "eval_every", "eval_episodes", "checkpoint_every", "threads")


def _bool(name, v):
    if not isinstance(v, (bool, np.bool_)):
        raise InvalidArgumentError(f"{name} must be True or False, got {v!r}")


@dataclass(frozen=True)
class PPOConfig:
    """PPO's options (defaults: CleanRL's ``ppo_continuous_action.py``, the PPO paper's MuJoCo
    settings).

    steps: env steps per agent, over its ``num_envs`` envs. rollout_steps: steps per env per
    iteration (an iteration collects ``num_envs * rollout_steps`` per agent). epochs, minibatches:
    passes over each rollout and minibatches per pass (they must divide the rollout). clip: the
    surrogate's ratio clip; clip_value: the value loss's clip around the rollout's values (None:
    unclipped). max_grad_norm: each agent's gradient norm bound (None: no clipping). anneal_lr: the
    learning rate falls linearly from ``lr`` to 0. normalize_advantages: per minibatch and agent.
    normalize_obs / normalize_reward: running observation statistics (kept in the policy) and
    return-std reward scaling. hidden, activation: actor's and critic's layers; log_std_init: the
    initial log std of the actions in normalised units (0: std of half the action range).
    threads: torch threads (small networks run fastest on one). eval_every / eval_episodes:
    deterministic evaluation in the real env (also after the last iteration). checkpoint_every:
    env steps between checkpoints when the run writes to a directory.
    """

    steps: int = 1_000_000
    num_envs: int = 1
    rollout_steps: int = 2048
    epochs: int = 10
    minibatches: int = 32
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    clip_value: float | None = 0.2
    entropy_coef: float = 0.0
    value_coef: float = 0.5
    max_grad_norm: float | None = 0.5
    lr: float = 3e-4
    anneal_lr: bool = True
    normalize_advantages: bool = True
    normalize_obs: bool = True
    normalize_reward: bool = True
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0
    eval_every: int = 10_000
    eval_episodes: int = 5
    checkpoint_every: int = 50_000
    threads: int | None = 1

    def __post_init__(self):
        check_int("steps", self.steps, 1)
        check_int("num_envs", self.num_envs, 1)
        check_int("rollout_steps", self.rollout_steps, 1)
        check_int("epochs", self.epochs, 1)
        check_int("minibatches", self.minibatches, 1)
        batch = self.num_envs * self.rollout_steps
        if batch % self.minibatches:
            raise InvalidArgumentError(f"minibatches must divide num_envs * rollout_steps ({batch}), "
                                       f"got {self.minibatches}")
        if self.normalize_advantages and batch // self.minibatches < 2:
            raise InvalidArgumentError(f"minibatches must leave >= 2 samples per minibatch to normalise "
                                       f"advantages (num_envs * rollout_steps = {batch}), got {self.minibatches}")
        check_float("gamma", self.gamma, 0.0, 1.0)
        check_float("gae_lambda", self.gae_lambda, 0.0, 1.0)
        check_float("clip", self.clip, 0.0, math.inf, lo_open=True, hi_open=True)
        if self.clip_value is not None:
            check_float("clip_value", self.clip_value, 0.0, math.inf, lo_open=True, hi_open=True)
        check_float("entropy_coef", self.entropy_coef, -math.inf, math.inf, lo_open=True, hi_open=True)
        check_float("value_coef", self.value_coef, 0.0, math.inf, hi_open=True)
        if self.max_grad_norm is not None:
            check_float("max_grad_norm", self.max_grad_norm, 0.0, math.inf, lo_open=True, hi_open=True)
        check_float("lr", self.lr, 0.0, 1.0, lo_open=True)
        for name in ("anneal_lr", "normalize_advantages", "normalize_obs", "normalize_reward"):
            _bool(name, getattr(self, name))
        hidden = tuple(self.hidden) if isinstance(self.hidden, (list, tuple)) else (self.hidden,)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in hidden):
            raise InvalidArgumentError(f"hidden must be layer widths >= 1, got {self.hidden!r}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        if self.activation not in ACTIVATIONS:
            raise InvalidArgumentError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        check_float("log_std_init", self.log_std_init, -20.0, 2.0)
        check_int("eval_every", self.eval_every, 1)
        check_int("eval_episodes", self.eval_episodes, 1)
        check_int("checkpoint_every", self.checkpoint_every, 1)
        if self.threads is not None:
            check_int("threads", self.threads, 1)

    @property
    def batch(self) -> int:
        """Env steps per agent per iteration (``num_envs * rollout_steps``)."""
        return self.num_envs * self.rollout_steps

    @property
    def iterations(self) -> int:
        """Iterations of the run: ``ceil(steps / batch)``."""
        return -(-self.steps // self.batch)


@dataclass(frozen=True)
class IterLog:
    """One iteration, per agent (``[k]`` for ``seeds[k]``): the losses, entropy, approximate KL
    (``mean((r - 1) - log r)``) and share of clipped ratios averaged over the iteration's
    minibatches; the explained variance of the returns by the rollout's values; the mean return of
    the training episodes that ended in the iteration (None: none ended); the action std (in
    normalised units, averaged over the action dims)."""

    iteration: int
    env_steps: int
    lr: float
    policy_loss: tuple[float, ...]
    value_loss: tuple[float, ...]
    entropy: tuple[float, ...]
    approx_kl: tuple[float, ...]
    clip_fraction: tuple[float, ...]
    explained_variance: tuple[float | None, ...]
    train_return: tuple[float | None, ...]
    action_std: tuple[float, ...]
    wall_s: float


@dataclass(frozen=True)
class PPOResult:
    """What a run returns: its config and seeds, every evaluation (``evals``, in order), every
    iteration (``iterations``), the env steps per agent, the wall time, the step it resumed from
    (0: a fresh run), whether Ctrl-C stopped it, and each agent's deterministic policy
    (``policies[k]`` for ``seeds[k]``)."""

    config: PPOConfig
    seeds: tuple[int, ...]
    evals: tuple[EvalLog, ...]
    iterations: tuple[IterLog, ...]
    env_steps: int
    wall_s: float
    resumed_from: int
    interrupted: bool
    policies: tuple[NetworkPolicy, ...] = dataclasses.field(repr=False)

    def curve(self, seed: int) -> list[tuple[int, float]]:
        """``(env_steps, mean return)`` of seed ``seed``'s evaluations."""
        return [(e.env_steps, e.return_mean) for e in self.evals if e.seed == seed]


def gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor, terminated: torch.Tensor,
        done: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a rollout, all arguments ``(T, ...)``.

    ``values[t]``: V of the state acted in at ``t``; ``next_values[t]``: V of the state the step
    led to (the episode's true final state where it ended at ``t``), used unless ``terminated[t]``;
    ``done[t]`` (terminated or truncated) stops the trace. ``delta_t = r_t + gamma (1 - term_t)
    V'_t - V_t``, ``A_t = delta_t + gamma lam (1 - done_t) A_{t+1}``, ``A_T = 0``. Returns the
    advantages and the value targets ``A + V``."""
    boot = torch.where(terminated, torch.zeros_like(next_values), next_values)
    delta = rewards + gamma * boot - values
    carry = torch.where(done, torch.zeros_like(values), torch.full_like(values, gamma * lam))
    adv = torch.empty_like(values)
    last = torch.zeros_like(values[0])
    for t in range(values.shape[0] - 1, -1, -1):
        last = delta[t] + carry[t] * last
        adv[t] = last
    return adv, adv + values


class _Agents(torch.nn.Module):
    """The ``K`` agents' networks: actor (with the observation statistics) and critic."""

    def __init__(self, K, nobs, nu, low, high, cfg: PPOConfig, seeds):
        super().__init__()
        self.actor = ClippedGaussianPolicyNet(K, nobs, nu, low, high, hidden=cfg.hidden, activation=cfg.activation,
                                              seeds=seeds, normalize=cfg.normalize_obs,
                                              log_std_init=cfg.log_std_init)
        self.critic = VNet(K, nobs, heads=1, hidden=cfg.hidden, activation=cfg.activation, seeds=seeds)
        orthogonal_init(self.critic.mlp, [math.sqrt(2.0)] * len(cfg.hidden) + [1.0], seeds=seeds, salt=6)


class _RewardScale:
    """Per agent: rewards divided by the running std of the discounted return of its envs (the
    running moments as Gymnasium's ``RunningMeanStd``: count starts at 1e-4), clipped to
    +-``CLIP_REWARD``. The discounted return restarts with each episode (Gymnasium's wrapper
    restarts it only on termination)."""

    def __init__(self, K: int, M: int, gamma: float):
        self.gamma = gamma
        self.ret = np.zeros((K, M))
        self.mean, self.var, self.count = np.zeros(K), np.ones(K), np.full(K, 1e-4)

    def __call__(self, rew: np.ndarray, done: np.ndarray) -> np.ndarray:
        """rew, done: (K, M) -> scaled rewards (K, M)."""
        self.ret = self.ret * self.gamma + rew
        n = self.ret.shape[1]
        bmean, bvar = self.ret.mean(axis=1), self.ret.var(axis=1)
        tot = self.count + n
        delta = bmean - self.mean
        self.mean = self.mean + delta * n / tot
        self.var = (self.var * self.count + bvar * n + delta ** 2 * self.count * n / tot) / tot
        self.count = tot
        self.ret[done] = 0.0
        return np.clip(rew / np.sqrt(self.var + 1e-8)[:, None], -CLIP_REWARD, CLIP_REWARD)

    def state(self) -> dict:
        return {"ret": self.ret.tolist(), "mean": self.mean.tolist(), "var": self.var.tolist(),
                "count": self.count.tolist()}

    def load(self, s: dict) -> None:
        self.ret = np.asarray(s["ret"], dtype=np.float64).reshape(self.ret.shape)
        self.mean, self.var, self.count = (np.asarray(s[k], dtype=np.float64) for k in ("mean", "var", "count"))


def _env_seed(agent_env_seed: int, m: int) -> int:
    """Env ``m`` of an agent: its first env has the agent's env seed, the others seeds derived
    from it (so an agent's envs depend on its seed only)."""
    return agent_env_seed if m == 0 else int(np.random.SeedSequence([agent_env_seed, m]).generate_state(1)[0])


def _clip_grad_norms(params: list[torch.nn.Parameter], max_norm: float, K: int) -> None:
    """Scale member ``k``'s gradients (row ``k`` of every parameter) so that their joint norm is at
    most ``max_norm`` (``torch.nn.utils.clip_grad_norm_`` per agent: one global norm would couple
    the agents). Each member's norm is reduced on its own, so it is the same in any batch."""
    grads = [p.grad for p in params if p.grad is not None]
    for k in range(K):
        norm = torch.stack([g[k].pow(2).sum() for g in grads]).sum().sqrt()
        coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        for g in grads:
            g[k].mul_(coef)


def ppo(task, config: PPOConfig | None = None, *, seeds: Sequence[int] = (0,), model=None,
        out: str | None = None, resume: bool = False, device: str | torch.device = "cpu",
        on_step: Callable[[int], None] | None = None, on_eval: Callable[[list[EvalLog]], None] | None = None,
        make_env: Callable | None = None) -> PPOResult:
    """Train PPO on ``task`` for every seed in ``seeds`` as one batch; see the module docstring.

    model: train in a :class:`~recede.envs.ModelEnv` over this model instead of the real env.
    out: a directory for checkpoints, policies and ``evals.csv``. resume: continue from
    ``out/checkpoint`` (which must exist, for the same task, seeds and config but for
    ``RESUMABLE_CHANGES``). on_step(t) runs after every env step of all agents' envs (``t``: env
    steps per agent so far), on_eval(logs) after every evaluation. make_env: the real env's
    constructor (default ``task.make_env``). Ctrl-C raises :class:`~recede.errors.Interrupted` whose
    ``partial`` is the result at the last iteration boundary (after writing its checkpoint when
    ``out`` is given).
    """
    cfg = PPOConfig() if config is None else config
    if not isinstance(cfg, PPOConfig):
        raise InvalidArgumentError(f"config must be a PPOConfig, got {type(cfg).__name__}")
    task = resolve_task(task)
    seeds = check_seeds(seeds)
    out = out_dir(out)
    if resume and out is None:
        raise InvalidArgumentError("resume needs out, the directory holding the checkpoint")
    device = torch.device(device)
    K, M = len(seeds), cfg.num_envs
    _, nobs, nu = task_sizes(task)
    streams = [agent_streams(s) for s in seeds]
    rngs = [s[0] for s in streams]
    gens = [torch_generator(s[1], device) for s in streams]
    envs = make_envs(task, K * M, [_env_seed(s[2], m) for s in streams for m in range(M)], model, make_env)
    try:
        with torch_threads(cfg.threads):
            return _train(task, cfg, seeds, envs, rngs, gens, nobs, nu, out, resume, device, on_step, on_eval,
                          make_env)
    finally:
        envs.close()


def _train(task, cfg, seeds, envs, rngs, gens, nobs, nu, out, resume, device, on_step, on_eval, make_env):
    K, M, T = len(seeds), cfg.num_envs, cfg.rollout_steps
    agents = _Agents(K, nobs, nu, envs.low, envs.high, cfg, seeds).to(device)
    actor, critic = agents.actor, agents.critic
    params = list(agents.parameters())
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}  # one kernel per step
    opt = torch.optim.Adam(params, lr=cfg.lr, eps=1e-5, **fused)
    rscale = _RewardScale(K, M, cfg.gamma)
    evals: list[EvalLog] = []
    iters: list[IterLog] = []
    ckpt = None if out is None else os.path.join(out, "checkpoint")

    def tensor(a):
        return torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)

    def feats_of(raw):  # raw features (K * M, nobs) -> the networks' inputs (K, M, nobs)
        o = tensor(raw).view(K, M, nobs)
        return actor.norm(o) if cfg.normalize_obs else o

    obs = envs.reset()
    if cfg.normalize_obs:
        actor.norm.update(tensor(obs).view(K, M, nobs))
    start, wall0 = 0, 0.0
    if resume:
        start, wall0, obs = _load_checkpoint(ckpt, task, cfg, seeds, agents, opt, rngs, gens, envs, rscale,
                                             evals, iters, obs)
    t0 = time.perf_counter() - wall0
    step = start

    def capture() -> tuple[dict, dict]:  # everything at an iteration boundary, in memory
        t = {f"net.{k}": v.detach().clone() for k, v in agents.state_dict().items()}
        for j, p in enumerate(params):
            st = opt.state.get(p)
            if st:
                t[f"opt.{j}.exp_avg"], t[f"opt.{j}.exp_avg_sq"] = st["exp_avg"].clone(), st["exp_avg_sq"].clone()
                t[f"opt.{j}.step"] = torch.tensor([float(st["step"])], dtype=torch.float64)
        for k, g in enumerate(gens):
            t[f"torch_gen.{k}"] = g.get_state().clone()
        state = {"format": FORMAT, "task": task.name, "seeds": list(seeds), "config": dataclasses.asdict(cfg),
                 "step": int(step), "wall_s": time.perf_counter() - t0, "evals": len(evals),
                 "iterations": len(iters), "obs": np.asarray(obs).tolist(),  # (the logs so far: their count)
                 "rngs": [r.bit_generator.state for r in rngs], "envs": envs.snapshot(),
                 "reward_scale": rscale.state()}
        return t, state

    def noise(n):  # (K, n, nu) standard normal, agent k's rows from agent k's generator
        return torch.stack([torch.randn((n, nu), generator=g, device=device) for g in gens])

    def act_mean(feats):
        with torch.inference_mode():
            return actor.mean_action(tensor(feats)[:, None]).double().cpu().numpy()[:, 0]

    def run_eval():
        logs = evaluate(task, act_mean, seeds, episodes=cfg.eval_episodes, env_steps=step, t0=t0,
                        eval_round=len(evals) // K, make_env=make_env)
        evals.extend(logs)
        if on_eval is not None:
            on_eval(logs)

    def result(interrupted):
        pols = tuple(_policy(actor, k, task, seeds[k], step, cfg) for k in range(K))
        return PPOResult(config=cfg, seeds=seeds, evals=tuple(evals), iterations=tuple(iters), env_steps=step,
                         wall_s=time.perf_counter() - t0, resumed_from=start, interrupted=interrupted,
                         policies=pols)

    # the rollout, (T, K, M, ...): features acted on, normalised actions, their log-probabilities,
    # values, scaled rewards, the value of the true final state where a time limit cut the episode
    shape = (T, K, M)
    b_obs = torch.zeros(*shape, nobs, device=device)
    b_z = torch.zeros(*shape, nu, device=device)
    b_logp, b_val, b_rew, b_fval = (torch.zeros(shape, device=device) for _ in range(4))
    b_term, b_done = (torch.zeros(shape, dtype=torch.bool, device=device) for _ in range(2))
    rows = torch.arange(K, device=device)[:, None]
    n, mb = T * M, (T * M) // cfg.minibatches

    boundary = capture()
    try:
        while step < cfg.steps:
            it = step // cfg.batch
            lr = cfg.lr * (1.0 - it / cfg.iterations) if cfg.anneal_lr else cfg.lr
            for group in opt.param_groups:
                group["lr"] = lr
            ended = [len(f) for f in envs.finished]  # training episodes ended so far, per env

            # 1. the rollout
            for t in range(T):
                with torch.no_grad():
                    x = feats_of(obs)
                    mu, log_std = actor.head(x)
                    z = mu + log_std.exp() * noise(M)
                    b_obs[t], b_z[t] = x, z
                    b_logp[t] = actor.log_prob(z, mu, log_std)
                    b_val[t] = critic(x)[:, 0]
                    actions = actor.to_action(z).double().cpu().numpy().reshape(K * M, nu)
                nxt, rew, term, trunc, final = envs.step(actions)
                rew = np.where(np.isfinite(rew), rew, 0.0).reshape(K, M)
                done = np.logical_or(term, trunc).reshape(K, M)
                if cfg.normalize_reward:
                    rew = rscale(rew, done)
                b_rew[t] = tensor(rew)
                b_term[t] = torch.as_tensor(term.reshape(K, M), device=device)
                b_done[t] = torch.as_tensor(done, device=device)
                obs = nxt
                if cfg.normalize_obs:
                    actor.norm.update(tensor(obs).view(K, M, nobs))
                cut = np.logical_and(trunc, ~term)
                if cut.any():
                    with torch.no_grad():
                        v = critic(feats_of(np.nan_to_num(final, nan=0.0, posinf=0.0, neginf=0.0)))[:, 0]
                        b_fval[t] = torch.where(b_done[t] & ~b_term[t], v, torch.zeros_like(v))
                else:
                    b_fval[t] = 0.0
                if on_step is not None:
                    on_step(step + (t + 1) * M)

            # 2. advantages
            with torch.no_grad():
                v_last = critic(feats_of(obs))[:, 0]
                next_val = torch.where(b_done, b_fval, torch.cat([b_val[1:], v_last[None]]))
                adv, ret = gae(b_rew, b_val, next_val, b_term, b_done, cfg.gamma, cfg.gae_lambda)

            def flat(x):  # (T, K, M, ...) -> (K, T * M, ...)
                return x.transpose(0, 1).reshape(K, n, *x.shape[3:])

            f_obs, f_z, f_logp, f_val, f_adv, f_ret = map(flat, (b_obs, b_z, b_logp, b_val, adv, ret))

            # 3. the update
            stats = torch.zeros(5, K, device=device)  # policy loss, value loss, entropy, approx KL, clip share
            for _ in range(cfg.epochs):
                perms = torch.as_tensor(np.stack([r.permutation(n) for r in rngs]), device=device)
                for j in range(cfg.minibatches):
                    idx = perms[:, j * mb:(j + 1) * mb]
                    o, z, old_logp = f_obs[rows, idx], f_z[rows, idx], f_logp[rows, idx]
                    a, r, old_v = f_adv[rows, idx], f_ret[rows, idx], f_val[rows, idx]
                    mu, log_std = actor.head(o)
                    log_ratio = actor.log_prob(z, mu, log_std) - old_logp
                    ratio = log_ratio.exp()
                    if cfg.normalize_advantages:
                        a = (a - a.mean(dim=1, keepdim=True)) / (a.std(dim=1, keepdim=True) + 1e-8)
                    pg_loss = torch.max(-a * ratio, -a * ratio.clamp(1.0 - cfg.clip, 1.0 + cfg.clip)).mean(dim=1)
                    v = critic(o)[:, 0]
                    if cfg.clip_value is None:
                        v_loss = 0.5 * (v - r).pow(2).mean(dim=1)
                    else:
                        v_clipped = old_v + (v - old_v).clamp(-cfg.clip_value, cfg.clip_value)
                        v_loss = 0.5 * torch.max((v - r).pow(2), (v_clipped - r).pow(2)).mean(dim=1)
                    entropy = (log_std + 0.5 * (1.0 + math.log(2.0 * math.pi))).sum(-1).mean(dim=1)
                    loss = (pg_loss - cfg.entropy_coef * entropy + cfg.value_coef * v_loss).sum()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.max_grad_norm is not None:
                        _clip_grad_norms(params, cfg.max_grad_norm, K)
                    opt.step()
                    with torch.no_grad():
                        stats += torch.stack([pg_loss, v_loss, entropy, ((ratio - 1.0) - log_ratio).mean(dim=1),
                                              ((ratio - 1.0).abs() > cfg.clip).float().mean(dim=1)])

            step += cfg.batch
            iters.append(_iter_log(it, step, lr, stats / (cfg.epochs * cfg.minibatches), f_val, f_ret, envs,
                                   ended, actor, K, M, t0))
            if step // cfg.eval_every > (step - cfg.batch) // cfg.eval_every or step >= cfg.steps:
                run_eval()
            with deferred_interrupt():
                boundary = capture()
                if ckpt is not None and step // cfg.checkpoint_every > (step - cfg.batch) // cfg.checkpoint_every \
                        and step < cfg.steps:
                    _write_checkpoint(ckpt, *boundary, evals, iters)
    except KeyboardInterrupt:
        with deferred_interrupt():
            # back to the last boundary: its checkpoint, and the result as of then
            _restore(boundary, agents, params, opt)
            step = int(boundary[1]["step"])
            del iters[boundary[1]["iterations"]:]
            del evals[boundary[1]["evals"]:]
            if ckpt is not None:
                _write_checkpoint(ckpt, *boundary, evals, iters)
            partial = result(True)
            _write_outputs(out, partial, task)
        raise Interrupted(partial) from None
    res = result(False)
    with deferred_interrupt():
        if ckpt is not None:
            _write_checkpoint(ckpt, *boundary, evals, iters)
        _write_outputs(out, res, task)
    return res


def _iter_log(it, step, lr, stats, f_val, f_ret, envs, ended, actor, K, M, t0) -> IterLog:
    s = stats.double().cpu().numpy()
    var_ret = f_ret.double().var(dim=1)
    ev = (1.0 - (f_ret - f_val).double().var(dim=1) / var_ret).cpu().numpy()
    ev = [None if not np.isfinite(e) or v == 0 else float(e) for e, v in zip(ev, var_ret.cpu().numpy())]
    rets = []
    for k in range(K):  # the episodes of agent k's envs that ended in this iteration
        new = [r for i in range(k * M, k * M + M) for r in envs.finished[i][ended[i]:]]
        rets.append(float(np.mean(new)) if new else None)
    std = actor.log_std.detach().exp().double().mean(dim=(1, 2)).cpu().numpy()
    return IterLog(iteration=it + 1, env_steps=int(step), lr=float(lr),
                   policy_loss=tuple(map(float, s[0])), value_loss=tuple(map(float, s[1])),
                   entropy=tuple(map(float, s[2])), approx_kl=tuple(map(float, s[3])),
                   clip_fraction=tuple(map(float, s[4])), explained_variance=tuple(ev), train_return=tuple(rets),
                   action_std=tuple(map(float, std)), wall_s=time.perf_counter() - t0)


def _iter_to_json(i: IterLog) -> dict:
    return json_safe(dataclasses.asdict(i))


def _iter_from_json(d: dict) -> IterLog:
    return IterLog(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _policy(actor, k, task, seed, step, cfg) -> NetworkPolicy:
    net = copy.deepcopy(actor)  # the policy keeps a snapshot, not the live training network
    return NetworkPolicy(net, task, member=k, meta={"algo": "ppo", "seed": int(seed), "env_steps": int(step),
                                                    "config": dataclasses.asdict(cfg)})


def _write_outputs(out, res: PPOResult, task) -> None:
    if out is None:
        return
    for p in res.policies:
        save_policy(p.net, os.path.join(out, f"seed_{p.meta['seed']}"), member=p.member, task=task, meta=p.meta)
    write_evals_csv(os.path.join(out, "evals.csv"), res.evals)


# ----------------------------------------------------------------------------- checkpoints


def _restore(boundary, agents, params, opt) -> None:
    """Load an in-memory boundary's networks and optimiser state into the live ones."""
    t = boundary[0]
    agents.load_state_dict({k[4:]: v for k, v in t.items() if k.startswith("net.")})
    sd = opt.state_dict()
    sd["state"] = {j: {"step": t[f"opt.{j}.step"][0].clone().float(), "exp_avg": t[f"opt.{j}.exp_avg"].clone(),
                       "exp_avg_sq": t[f"opt.{j}.exp_avg_sq"].clone()}
                   for j in range(len(params)) if f"opt.{j}.exp_avg" in t}
    opt.load_state_dict(sd)  # casts and places the state as the optimiser keeps it


def _write_checkpoint(path, tensors: dict, state: dict, evals: list[EvalLog], iters: list[IterLog]) -> None:
    """Write a boundary (its tensors, and its state whose logs are counts of ``evals``, ``iters``)."""
    from safetensors.torch import save

    blob = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    state = dict(state, evals=evals_to_json(evals[:state["evals"]]),
                 iterations=[_iter_to_json(i) for i in iters[:state["iterations"]]],
                 weights_sha256=hashlib.sha256(blob).hexdigest())
    with atomic_directory(path, "out") as tmp:
        with open(os.path.join(tmp, "agents.safetensors"), "wb") as f:
            f.write(blob)
        write_json(os.path.join(tmp, "state.json"), state)


def _load_checkpoint(path, task, cfg, seeds, agents, opt, rngs, gens, envs, rscale, evals, iters, obs):
    from safetensors.torch import load

    if not os.path.isdir(path):
        raise InvalidArgumentError(f"resume: no checkpoint at {path!r} (train without resume first)")
    state = read_json(os.path.join(path, "state.json"), "resume")
    check_resume_state(state, path, FORMAT, "PPO", task, seeds, cfg, RESUMABLE_CHANGES)
    wpath = os.path.join(path, "agents.safetensors")
    try:
        with open(wpath, "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        raise InvalidArgumentError(f"{path}: no agents.safetensors") from None
    if hashlib.sha256(blob).hexdigest() != state.get("weights_sha256"):
        raise InvalidArgumentError(f"{wpath}: checksum does not match state.json (corrupted)")
    t = load(blob)
    params = list(agents.parameters())
    for j, p in enumerate(params):
        a = t.get(f"opt.{j}.exp_avg")
        if a is not None and a.shape != p.shape:
            raise InvalidArgumentError(f"{wpath}: optimiser state {j} has shape {tuple(a.shape)}, "
                                       f"expected {tuple(p.shape)}")
    try:
        _restore((t, state), agents, params, opt)
    except (RuntimeError, KeyError) as e:
        raise InvalidArgumentError(f"{wpath}: networks do not match the config ({e})") from None
    for k, g in enumerate(gens):
        g.set_state(t[f"torch_gen.{k}"])
    for k, r in enumerate(rngs):
        r.bit_generator.state = state["rngs"][k]
    rscale.load(state["reward_scale"])
    evals.extend(evals_from_json(state["evals"]))
    iters.extend(_iter_from_json(d) for d in state["iterations"])
    if state["envs"]:
        envs.restore(state["envs"])
        obs = np.asarray(state["obs"], dtype=np.float64)
    return int(state["step"]), float(state["wall_s"]), obs
