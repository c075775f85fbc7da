"""Soft actor-critic (Haarnoja et al. 2018, with automatic entropy tuning), ``K`` seeds as one batch.

``sac(task, config, seeds=[0, 1, 2])`` trains ``K`` independent agents in one process. Each agent
has its own env, replay buffer, generators and temperature; their networks are stacked into one
batched module per role (actor, twin critics, target critics), so one update of ``K`` agents is
one ``baddbmm`` per layer. Agent ``k`` draws everything from streams seeded by its own seed only
(:func:`~recede.policy_learning.common.agent_streams`), and every loss is a sum of per-agent
terms, so an agent trained in a batch follows the same trajectory as the agent trained alone (bit
for bit on the CPU; ``tests/policy_learning/test_sac.py`` checks it).

The loop, per env step (CleanRL's ``sac_continuous_action.py``, batched):

1. act: uniformly at random for the first ``learning_starts`` steps, then a sample from the policy;
2. step every agent's env; store ``(obs, a, r, obs', terminated)`` in its buffer (``obs'`` the
   true final observation where the episode ended; a time-limit truncation bootstraps);
3. ``updates_per_step`` times (the update-to-data ratio): sample ``batch_size`` transitions per
   agent, regress both critics on ``r + gamma (1 - terminated) (min_j Q'_j(obs', a') - alpha log pi(a'|obs'))``,
   step the actor on ``alpha log pi(a|obs) - min_j Q_j(obs, a)``, the temperature towards
   ``target_entropy`` (default ``-nu``), and the target critics by Polyak averaging (``tau``);
4. every ``eval_every`` steps: ``eval_episodes`` episodes per agent in a fresh real env with the
   deterministic (mean) policy.

Where it trains: the task's real env (analytic tasks, MuJoCo tasks, the Gymnasium v5 robots), or,
given ``model=``, a :class:`~recede.envs.ModelEnv` over that model (a learned ensemble, any recede
``Dynamics``); evaluation always runs in the real env. Features are ``task.observation(x)``.

Checkpoints (``out=DIR``): every ``checkpoint_every`` steps ``DIR/checkpoint/`` holds the networks,
the optimisers, the temperatures, every generator, every buffer and the envs' states, written
atomically; ``resume=True`` continues from it and reproduces the uninterrupted run (real envs; a
model env restarts its episodes). At the end ``DIR/seed_<s>/`` holds each agent's policy (a
:func:`~recede.policies.load_policy` checkpoint) and ``DIR/evals.csv`` the evaluations.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from recede._io import atomic_directory, deferred_interrupt
from recede.data.replay import ReplayBuffer
from recede.errors import Interrupted, InvalidArgumentError
from recede.models.ensemble import torch_threads
from recede.policies import GaussianPolicyNet, NetworkPolicy, QNet, save_policy, task_sizes
from recede.policy_learning.common import (
    check_float, check_int, check_resume_state,
    EvalLog, agent_streams, check_seeds, exploring_start, evals_from_json, evals_to_json, evaluate, make_envs, out_dir,
    read_json, resolve_task, torch_generator, write_evals_csv, write_json,
)

FORMAT = "recede.SAC/1"


@dataclass(frozen=True)
class SACConfig:
    """SAC's options (defaults: the SAC paper's and CleanRL's, for the MuJoCo robots).

    steps: env steps per agent. learning_starts: uniformly random steps before learning.
    updates_per_step: gradient updates per env step (the update-to-data ratio). alpha: a fixed
    temperature, or None to tune it towards ``target_entropy`` (default ``-nu``) from
    ``initial_alpha``. reward_scale: the critics learn ``reward_scale`` times the env's reward
    (the SAC paper's reward scale; against the entropy bonus it sets how greedy the policy is;
    evaluation reports the env's own return). hidden: the actor's and critics' layer widths. threads: torch threads
    (small networks run fastest on one). exploring_starts: start training episodes with every
    angle anywhere on its circle (:func:`~recede.policy_learning.common.exploring_start`;
    analytic tasks); evaluation always starts from the task's own states. eval_every / eval_episodes: deterministic evaluation in
    the real env (also after the last step). checkpoint_every: steps between checkpoints when the
    run writes to a directory.
    """

    steps: int = 100_000
    learning_starts: int = 5_000
    batch_size: int = 256
    buffer_size: int = 1_000_000
    gamma: float = 0.99
    tau: float = 0.005
    policy_lr: float = 3e-4
    q_lr: float = 1e-3
    alpha: float | None = None
    initial_alpha: float = 1.0
    target_entropy: float | None = None
    updates_per_step: int = 1
    reward_scale: float = 1.0
    hidden: tuple[int, ...] = (256, 256)
    exploring_starts: bool = False
    eval_every: int = 5_000
    eval_episodes: int = 5
    checkpoint_every: int = 10_000
    threads: int | None = 1

    def __post_init__(self):
        check_int("steps", self.steps, 1)
        check_int("learning_starts", self.learning_starts, 0)
        check_int("batch_size", self.batch_size, 1)
        check_int("buffer_size", self.buffer_size, 1)
        check_float("gamma", self.gamma, 0.0, 1.0, hi_open=True)
        check_float("tau", self.tau, 0.0, 1.0, lo_open=True)
        check_float("policy_lr", self.policy_lr, 0.0, 1.0, lo_open=True)
        check_float("q_lr", self.q_lr, 0.0, 1.0, lo_open=True)
        if self.alpha is not None:
            check_float("alpha", self.alpha, 0.0, math.inf, hi_open=True)
        check_float("initial_alpha", self.initial_alpha, 0.0, math.inf, lo_open=True, hi_open=True)
        if self.target_entropy is not None:
            check_float("target_entropy", self.target_entropy, -math.inf, math.inf, lo_open=True, hi_open=True)
        check_int("updates_per_step", self.updates_per_step, 1)
        check_float("reward_scale", self.reward_scale, 0.0, math.inf, lo_open=True, hi_open=True)
        hidden = tuple(self.hidden) if isinstance(self.hidden, (list, tuple)) else (self.hidden,)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in hidden):
            raise InvalidArgumentError(f"hidden must be layer widths >= 1, got {self.hidden!r}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        check_int("eval_every", self.eval_every, 1)
        check_int("eval_episodes", self.eval_episodes, 1)
        check_int("checkpoint_every", self.checkpoint_every, 1)
        if self.threads is not None:
            check_int("threads", self.threads, 1)


@dataclass(frozen=True)
class SACResult:
    """What a run returns: its config and seeds, every evaluation (``evals``, in order), the env
    steps per agent, the wall time, the step it resumed from (0: a fresh run), whether Ctrl-C
    stopped it, and each agent's deterministic policy (``policies[k]`` for ``seeds[k]``)."""

    config: SACConfig
    seeds: tuple[int, ...]
    evals: tuple[EvalLog, ...]
    env_steps: int
    wall_s: float
    resumed_from: int
    interrupted: bool
    policies: tuple[NetworkPolicy, ...] = dataclasses.field(repr=False)

    def curve(self, seed: int) -> list[tuple[int, float]]:
        """``(env_steps, mean return)`` of seed ``seed``'s evaluations."""
        return [(e.env_steps, e.return_mean) for e in self.evals if e.seed == seed]


class SACAgents(torch.nn.Module):
    """The ``K`` agents' networks: actor, twin critics and their targets, log-temperatures ``(K, 1)``."""

    def __init__(self, K, nobs, nu, low, high, cfg: SACConfig, seeds, alpha0: float):
        super().__init__()
        self.actor = GaussianPolicyNet(K, nobs, nu, low, high, hidden=cfg.hidden, seeds=seeds)
        self.critic = QNet(K, nobs, nu, heads=2, hidden=cfg.hidden, seeds=seeds)
        self.target = QNet(K, nobs, nu, heads=2, hidden=cfg.hidden, seeds=seeds)
        self.target.load_state_dict(self.critic.state_dict())
        self.target.requires_grad_(False)
        self.log_alpha = torch.nn.Parameter(torch.full((K, 1), math.log(alpha0)))


def sac(task, config: SACConfig | None = None, *, seeds: Sequence[int] = (0,), model=None,
        out: str | None = None, resume: bool = False, device: str | torch.device = "cpu",
        on_step: Callable[[int], None] | None = None, on_eval: Callable[[list[EvalLog]], None] | None = None,
        make_env: Callable | None = None) -> SACResult:
    """Train SAC on ``task`` for every seed in ``seeds`` as one batch; see the module docstring.

    model: train in a :class:`~recede.envs.ModelEnv` over this model instead of the real env.
    out: a directory for checkpoints, policies and ``evals.csv``. resume: continue from
    ``out/checkpoint`` (which must exist, for the same task, seeds and config). on_step(t) runs
    after every env step, on_eval(logs) after every evaluation. make_env: the real env's
    constructor (default ``task.make_env``). Ctrl-C raises :class:`~recede.errors.Interrupted`
    whose ``partial`` is the result so far (after writing a checkpoint when ``out`` is given).
    """
    cfg = config or SACConfig()
    task = resolve_task(task)
    seeds = check_seeds(seeds)
    if resume and out is None:
        raise InvalidArgumentError("resume needs out, the directory holding the checkpoint")
    if resume and not os.path.isdir(os.path.join(os.fspath(out), "checkpoint")):
        raise InvalidArgumentError(f"resume: no checkpoint at {os.path.join(os.fspath(out), 'checkpoint')!r} "
                                   f"(train without resume first)")
    out = out_dir(out)
    device = torch.device(device)
    K = len(seeds)
    nx, nobs, nu = task_sizes(task)
    streams = [agent_streams(s) for s in seeds]
    rngs = [s[0] for s in streams]
    gens = [torch_generator(s[1], device) for s in streams]
    start = exploring_start(task) if cfg.exploring_starts else None
    envs = make_envs(task, K, [s[2] for s in streams], model, make_env, start=start,
                     start_rngs=[np.random.default_rng([s, 29]) for s in seeds] if start else None)
    try:
        return _train(task, cfg, seeds, envs, rngs, gens, nobs, nu, out, resume, device, on_step, on_eval,
                      make_env)
    finally:
        envs.close()


def _train(task, cfg, seeds, envs, rngs, gens, nobs, nu, out, resume, device, on_step, on_eval, make_env):
    K = len(seeds)
    low, high = envs.low, envs.high
    target_entropy = -float(nu) if cfg.target_entropy is None else float(cfg.target_entropy)
    alpha0 = cfg.alpha if cfg.alpha is not None else cfg.initial_alpha
    with torch_threads(cfg.threads):
        agents = SACAgents(K, nobs, nu, low, high, cfg, seeds, max(alpha0, 1e-30)).to(device)
        fused = {"fused": True} if device.type in ("cpu", "cuda") else {}  # one kernel per step
        q_opt = torch.optim.Adam(agents.critic.parameters(), lr=cfg.q_lr, **fused)
        pi_opt = torch.optim.Adam(agents.actor.parameters(), lr=cfg.policy_lr, **fused)
        a_opt = torch.optim.Adam([agents.log_alpha], lr=cfg.q_lr)
        buffers = [ReplayBuffer(min(cfg.buffer_size, cfg.steps), nobs, nu) for _ in range(K)]
        evals: list[EvalLog] = []
        start, wall0 = 0, 0.0
        obs = envs.reset()
        ckpt = None if out is None else os.path.join(out, "checkpoint")
        if resume:
            start, wall0, evals, obs = _load_checkpoint(ckpt, task, cfg, seeds, agents, q_opt, pi_opt, a_opt,
                                                        buffers, rngs, gens, envs, obs)
        t0 = time.perf_counter() - wall0
        step = start

        def noise(n):  # (K, n, nu) standard normal, agent k's rows from agent k's generator
            return torch.stack([torch.randn((n, nu), generator=g, device=device) for g in gens])

        def tensor(a):
            return torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)

        def update():
            idx = [b.sample_indices(cfg.batch_size, r) for b, r in zip(buffers, rngs)]
            batch = tuple(tensor(np.stack([getattr(b, f)[i] for b, i in zip(buffers, idx)]))
                          for f in ("obs", "actions", "rewards", "next_obs", "terminated"))
            if cfg.reward_scale != 1.0:
                batch = (batch[0], batch[1], batch[2] * cfg.reward_scale, batch[3], batch[4])
            sac_update(agents, (q_opt, pi_opt, a_opt), batch, noise, gamma=cfg.gamma, tau=cfg.tau,
                       target_entropy=target_entropy, tune_alpha=cfg.alpha is None)

        def act_mean(feats):
            with torch.inference_mode():
                return agents.actor.mean_action(tensor(feats)[:, None]).double().cpu().numpy()[:, 0]

        def run_eval():
            logs = evaluate(task, act_mean, seeds, episodes=cfg.eval_episodes, env_steps=step, t0=t0,
                            eval_round=len(evals) // K, make_env=make_env)
            evals.extend(logs)
            if on_eval is not None:
                on_eval(logs)

        def result(interrupted):
            pols = tuple(_policy(agents.actor, k, task, seeds[k], step, cfg) for k in range(K))
            return SACResult(config=cfg, seeds=seeds, evals=tuple(evals), env_steps=step,
                             wall_s=time.perf_counter() - t0, resumed_from=start, interrupted=interrupted,
                             policies=pols)

        def train_step(obs, step):
            """Act, step every env, store, and update ``updates_per_step`` times."""
            if step < cfg.learning_starts:
                actions = np.stack([r.uniform(low, high) for r in rngs])
            else:
                with torch.no_grad():
                    actions = agents.actor.sample(tensor(obs)[:, None], noise(1))[0][:, 0].double().cpu().numpy()
            nxt, rew, term, trunc, final = envs.step(actions)
            for k, b in enumerate(buffers):
                # a terminal transition is never bootstrapped: a non-finite final state (a diverged
                # simulation) is stored as zeros rather than poisoning the batch with NaN
                f = final[k] if np.all(np.isfinite(final[k])) else np.zeros_like(final[k])
                b.add(obs[k], actions[k], rew[k] if np.isfinite(rew[k]) else 0.0, f, term[k], trunc[k],
                      envs.episodes[k])
            step += 1
            if step >= cfg.learning_starts:
                for _ in range(cfg.updates_per_step):
                    update()
            return nxt, step

        def checkpoint():
            if ckpt is not None:
                _save_checkpoint(ckpt, task, cfg, seeds, step, time.perf_counter() - t0, evals, obs, agents,
                                 q_opt, pi_opt, a_opt, buffers, rngs, gens, envs)

        try:
            if resume and step % cfg.eval_every == 0 and step > 0 and (not evals or evals[-1].env_steps != step):
                run_eval()  # Ctrl-C cut the evaluation due at this step
            while step < cfg.steps:
                with deferred_interrupt():  # a step happens whole, so the checkpoint it leaves is exact
                    obs, step = train_step(obs, step)
                if step % cfg.eval_every == 0 or step == cfg.steps:
                    run_eval()
                if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                    with deferred_interrupt():
                        checkpoint()
                if on_step is not None:
                    on_step(step)
        except KeyboardInterrupt:
            with deferred_interrupt():
                checkpoint()
                partial = result(True)
                _write_outputs(out, partial, task)
            raise Interrupted(partial) from None
        res = result(False)
        with deferred_interrupt():
            checkpoint()
            _write_outputs(out, res, task)
        return res


def sac_update(agents: SACAgents, optimizers, batch, noise: Callable[[int], torch.Tensor], *, gamma: float,
               tau: float, target_entropy: float, tune_alpha: bool, update_actor: bool = True,
               update_critic: bool = True) -> dict[str, torch.Tensor]:
    """One SAC update of ``K`` agents on ``batch = (obs, actions, rewards, next_obs, terminated)``
    (``(K, B, ...)`` tensors); ``noise(B) -> (K, B, nu)`` standard normal draws. Every loss is a
    sum of per-agent means, so agents never mix. ``update_actor=False`` evaluates the current
    actor (the critics and targets learn its Q function; the actor and temperature stay);
    ``update_critic=False`` improves the actor against the critics as they are."""
    q_opt, pi_opt, a_opt = optimizers
    o, a, r, o2, d = batch
    B = o.shape[1]
    alpha = agents.log_alpha.exp().detach()  # (K, 1)
    out = {}
    if update_critic:
        with torch.no_grad():
            a2, logp2 = agents.actor.sample(o2, noise(B))
            q_next = agents.target(o2, a2).min(dim=1).values - alpha * logp2
            y = r + gamma * (1.0 - d) * q_next
        q = agents.critic(o, a)  # (K, 2, B)
        q_loss = (q - y.unsqueeze(1)).pow(2).mean(dim=2).sum()
        q_opt.zero_grad(set_to_none=True)
        q_loss.backward()
        q_opt.step()
        out["q_loss"] = q_loss.detach()
    if update_actor:
        agents.critic.requires_grad_(False)  # the actor's loss needs dQ/da only
        try:
            a_pi, logp = agents.actor.sample(o, noise(B))
            q_pi = agents.critic(o, a_pi).min(dim=1).values
            pi_loss = (alpha * logp - q_pi).mean(dim=1).sum()
            pi_opt.zero_grad(set_to_none=True)
            pi_loss.backward()
            pi_opt.step()
        finally:
            agents.critic.requires_grad_(True)
        out["pi_loss"] = pi_loss.detach()
        if tune_alpha:
            a_loss = -(agents.log_alpha * (logp.detach() + target_entropy)).mean(dim=1).sum()
            a_opt.zero_grad(set_to_none=True)
            a_loss.backward()
            a_opt.step()
    if update_critic:
        with torch.no_grad():
            torch._foreach_lerp_(list(agents.target.parameters()), list(agents.critic.parameters()), tau)
    return out


def _policy(actor, k, task, seed, step, cfg) -> NetworkPolicy:
    import copy

    net = copy.deepcopy(actor)  # the policy keeps a snapshot, not the live training network
    return NetworkPolicy(net, task, member=k, meta={"algo": "sac", "seed": int(seed), "env_steps": int(step),
                                                    "config": dataclasses.asdict(cfg)})


def _write_outputs(out, res: SACResult, task) -> None:
    if out is None:
        return
    for p in res.policies:
        save_policy(p.net, os.path.join(out, f"seed_{p.meta['seed']}"), member=p.member, task=task, meta=p.meta)
    write_evals_csv(os.path.join(out, "evals.csv"), res.evals)


# ----------------------------------------------------------------------------- checkpoints


def _opt_tensors(prefix: str, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for j, p in enumerate(opt.param_groups[0]["params"]):
        st = opt.state.get(p)
        if st:
            out[f"{prefix}.{j}.exp_avg"] = st["exp_avg"]
            out[f"{prefix}.{j}.exp_avg_sq"] = st["exp_avg_sq"]
            out[f"{prefix}.{j}.step"] = torch.as_tensor(float(st["step"])).reshape(1)
    return out


def _load_opt(prefix: str, opt: torch.optim.Optimizer, t: dict, where: str) -> None:
    for j, p in enumerate(opt.param_groups[0]["params"]):
        if f"{prefix}.{j}.exp_avg" not in t:
            continue
        a, s = t[f"{prefix}.{j}.exp_avg"], t[f"{prefix}.{j}.exp_avg_sq"]
        if a.shape != p.shape or s.shape != p.shape:
            raise InvalidArgumentError(f"{where}: optimiser state {prefix}.{j} has shape {tuple(a.shape)}, "
                                       f"expected {tuple(p.shape)}")
        opt.state[p] = {"step": torch.tensor(float(t[f"{prefix}.{j}.step"][0])),
                        "exp_avg": a.clone().to(p.device), "exp_avg_sq": s.clone().to(p.device)}


def _save_checkpoint(path, task, cfg, seeds, step, wall, evals, obs, agents, q_opt, pi_opt, a_opt, buffers,
                     rngs, gens, envs) -> None:
    import hashlib

    from safetensors.torch import save

    t = {f"net.{k}": v.detach().cpu().contiguous() for k, v in agents.state_dict().items()}
    for name, opt in (("q_opt", q_opt), ("pi_opt", pi_opt), ("a_opt", a_opt)):
        t.update({k: v.detach().cpu().contiguous() for k, v in _opt_tensors(name, opt).items()})
    for k, g in enumerate(gens):
        t[f"torch_gen.{k}"] = g.get_state().cpu()
    blob = save(t)
    state = {
        "format": FORMAT, "task": task.name, "seeds": list(seeds), "config": dataclasses.asdict(cfg),
        "step": int(step), "wall_s": float(wall), "evals": evals_to_json(evals),
        "obs": np.asarray(obs).tolist(), "rngs": [r.bit_generator.state for r in rngs],
        "envs": envs.snapshot(), "weights_sha256": hashlib.sha256(blob).hexdigest(),
    }
    with atomic_directory(path, "out") as tmp:
        with open(os.path.join(tmp, "agents.safetensors"), "wb") as f:
            f.write(blob)
        for k, b in enumerate(buffers):
            with open(os.path.join(tmp, f"buffer_{k}.npz"), "wb") as f:
                np.savez(f, **b.state_dict())
        write_json(os.path.join(tmp, "state.json"), state)


def _load_checkpoint(path, task, cfg, seeds, agents, q_opt, pi_opt, a_opt, buffers, rngs, gens, envs, obs):
    import hashlib

    from safetensors.torch import load

    if not os.path.isdir(path):
        raise InvalidArgumentError(f"resume: no checkpoint at {path!r} (train without resume first)")
    state = read_json(os.path.join(path, "state.json"), "resume")
    check_resume_state(state, path, FORMAT, "SAC", task, seeds, cfg, ("steps", "eval_every", "checkpoint_every"))
    wpath = os.path.join(path, "agents.safetensors")
    try:
        with open(wpath, "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        raise InvalidArgumentError(f"{path}: no agents.safetensors") from None
    if hashlib.sha256(blob).hexdigest() != state.get("weights_sha256"):
        raise InvalidArgumentError(f"{wpath}: checksum does not match state.json (corrupted)")
    t = load(blob)
    sd = {k[4:]: v for k, v in t.items() if k.startswith("net.")}
    try:
        agents.load_state_dict(sd)
    except RuntimeError as e:
        raise InvalidArgumentError(f"{wpath}: networks do not match the config ({e})") from None
    for name, opt in (("q_opt", q_opt), ("pi_opt", pi_opt), ("a_opt", a_opt)):
        _load_opt(name, opt, t, wpath)
    for k, g in enumerate(gens):
        g.set_state(t[f"torch_gen.{k}"])
    for k, r in enumerate(rngs):
        r.bit_generator.state = state["rngs"][k]
    for k in range(len(buffers)):
        try:
            with np.load(os.path.join(path, f"buffer_{k}.npz"), allow_pickle=False) as z:
                b = ReplayBuffer.from_state_dict({n: z[n] for n in z.files}, f"{path}/buffer_{k}.npz")
        except (OSError, ValueError) as e:
            raise InvalidArgumentError(f"{path}/buffer_{k}.npz: cannot read ({e})") from None
        if (b.nobs, b.nu) != (buffers[k].nobs, buffers[k].nu):
            raise InvalidArgumentError(f"{path}/buffer_{k}.npz: holds nobs={b.nobs}, nu={b.nu}, expected "
                                       f"nobs={buffers[k].nobs}, nu={buffers[k].nu}")
        buffers[k] = b if b.capacity >= buffers[k].capacity else b.resized(buffers[k].capacity)
    if state["envs"]:
        envs.restore(state["envs"])
        obs = np.asarray(state["obs"], dtype=np.float64)
    return int(state["step"]), float(state["wall_s"]), evals_from_json(state["evals"]), obs
