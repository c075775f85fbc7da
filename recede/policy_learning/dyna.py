"""Dyna and MBPO on learned ensembles, online and from logged data (MOPO-style).

``dyna(task, config, seed=s)`` is the Dyna loop, generic over where the synthetic actions come
from; :func:`mbpo_config` gives MBPO's settings (Janner et al. 2019) per task, and with
``dataset=`` the same loop runs offline, with a pessimistic reward (Yu et al. 2020, MOPO).

Online, per env step:

1. act in the real env (uniformly at random for the first ``sac.learning_starts`` steps, then a
   sample from the policy) and store ``(x, u, r, x', terminated)`` in the **real buffer**; ``x`` is
   the task's model state (``task.state_of(env)``), what the ensemble models;
2. every ``model_every`` steps refit the ensemble on the real buffer: warm-started, with
   held-out early stopping (:meth:`~recede.models.ensemble.Ensemble.fit`);
3. every ``rollout_every`` steps branch ``rollouts * rollout_every`` rollouts from states drawn
   from the real buffer and run them ``k`` steps through the ensemble (:func:`branch`): each
   step each row follows one elite drawn at random (TS1) and samples its Gaussian; the reward is
   the task's (:meth:`~recede.envs.ModelEnv.rewards`; or the learned reward head with
   ``learned_reward``) minus ``penalty`` times the disagreement ``u(x, u)``; termination is the
   task's own rule on the predicted state. ``k`` follows ``rollout_schedule``. The synthetic
   transitions go into the **model buffer**, which keeps the last ``retain`` epochs
   (``retain * epoch_length * rollouts * k`` transitions);
4. ``sac.updates_per_step`` SAC updates (:func:`~recede.policy_learning.sac.sac_update`), each
   on ``sac.batch_size`` transitions of which ``round(real_ratio * batch_size)`` are real and the
   rest synthetic;
5. every ``eval_every`` steps: ``eval_episodes`` deterministic episodes in the real env.

Offline (``dataset=``): the real buffer is the dataset, the ensemble is fit once on it, and the
loop runs ``steps`` iterations of 3-5 without env steps (``EvalLog.env_steps`` then counts
iterations); the real env serves only to evaluate.

Where the synthetic actions come from (``action_source``, the three Dyna flavours): ``policy``
(MBPO: the current policy's sample), ``buffer`` (a logged action: the start row's at the first
step, a random real row's later) or ``uniform`` (uniform in the bounds).

Everything random is drawn from streams of ``seed``: same seed, same run. Checkpoints
(``out=DIR``, every ``checkpoint_every`` steps) hold the agent and its optimisers, the ensemble
and its optimiser, both buffers, every generator and the env's state, written atomically;
``resume=True`` continues and reproduces the uninterrupted run bit for bit on the CPU.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from recede._io import atomic_directory, deferred_interrupt
from recede._options import OptionEnum, as_enum
from recede.data.replay import ReplayBuffer
from recede.errors import Interrupted, InvalidArgumentError
from recede.models.ensemble import Ensemble, EnsembleConfig, TrainConfig, torch_threads
from recede.policies import NetworkPolicy, save_policy, task_sizes
from recede.policy_learning.common import (
    EvalLog, agent_streams, check_float, check_int, env_restore, env_snapshot, evals_from_json, evals_to_json,
    evaluate, out_dir, read_json, resolve_task, torch_generator, write_evals_csv, write_json,
)
from recede.policy_learning.sac import SACAgents, SACConfig, _load_opt, _opt_tensors, sac_update

FORMAT = "recede.Dyna/1"


class ActionSource(OptionEnum):
    """Where branched rollouts take their actions from."""

    POLICY = "policy"
    BUFFER = "buffer"
    UNIFORM = "uniform"


class Uncertainty(OptionEnum):
    """The disagreement ``u(x, u)`` that the pessimistic reward subtracts.

    max_std: the largest, over elites, of the norm of the predicted standard deviation (MOPO).
    pairwise: the mean, over pairs of elites, of the distance between their predicted means."""

    MAX_STD = "max_std"
    PAIRWISE = "pairwise"


_SAC_MBPO = dict(learning_starts=5000, updates_per_step=20, q_lr=3e-4, policy_lr=3e-4, eval_every=1000,
                 checkpoint_every=5000)


@dataclass(frozen=True)
class DynaConfig:
    """Dyna/MBPO's options (defaults: MBPO's for Hopper; see :func:`mbpo_config` per task).

    steps: real env steps (offline: iterations). sac: the learner (``updates_per_step`` = G,
    ``learning_starts`` = random real steps before the first model fit, ``batch_size``,
    ``hidden``, learning rates, ``target_entropy``...; its eval/checkpoint fields are unused:
    this config's own apply). model: the ensemble (``members``, ``elites``, ``hidden``,
    ``layers``; ``predict_reward`` for a learned reward). train: how it is fit (``holdout``,
    ``patience``, ``epochs``...). model_every: steps between refits. rollout_every: steps
    between rollout batches, each branching ``rollouts * rollout_every`` states. rollout_schedule:
    ``(start step, end step, k start, k end)``: ``k`` is ``k start`` until ``start step``, then
    rises linearly to ``k end`` at ``end step`` (rounded down). retain: epochs of synthetic data
    the model buffer keeps. epoch_length: steps per epoch. real_ratio: share of real transitions
    in each batch. action_source: see :class:`ActionSource`. penalty: ``λ`` of the pessimistic
    reward ``r - λ u(x, u)`` (0: none). uncertainty: see :class:`Uncertainty`. learned_reward:
    score rollouts with the model's reward head instead of the task's reward (needs
    ``model.predict_reward``). eval_every, eval_episodes, checkpoint_every: as SAC's. threads:
    torch threads of the SAC networks (small networks run fastest on one); the ensemble's fits
    and rollouts keep torch's own setting (their large batches gain from every core).
    """

    steps: int = 100_000
    sac: SACConfig = SACConfig(**_SAC_MBPO)
    model: EnsembleConfig = EnsembleConfig(members=7, elites=5, hidden=200, layers=4)
    train: TrainConfig = TrainConfig(holdout=0.2, patience=5, epochs=100)
    model_every: int = 250
    rollout_every: int = 250
    rollouts: int = 400
    rollout_schedule: tuple[int, int, int, int] = (20_000, 100_000, 1, 15)
    retain: int = 1
    epoch_length: int = 1000
    real_ratio: float = 0.05
    action_source: ActionSource = ActionSource.POLICY
    penalty: float = 0.0
    uncertainty: Uncertainty = Uncertainty.MAX_STD
    learned_reward: bool = False
    eval_every: int = 1000
    eval_episodes: int = 5
    checkpoint_every: int = 5000
    threads: int | None = 1

    def __post_init__(self):
        check_int("steps", self.steps, 1)
        for name, cls in (("sac", SACConfig), ("model", EnsembleConfig), ("train", TrainConfig)):
            if not isinstance(getattr(self, name), cls):
                raise InvalidArgumentError(f"{name} must be a {cls.__name__}, got {getattr(self, name)!r}")
        check_int("model_every", self.model_every, 1)
        check_int("rollout_every", self.rollout_every, 1)
        check_int("rollouts", self.rollouts, 1)
        sched = self.rollout_schedule
        if (not isinstance(sched, (tuple, list)) or len(sched) != 4
                or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in sched)):
            raise InvalidArgumentError(f"rollout_schedule must be 4 integers (start step, end step, k start, "
                                       f"k end), got {sched!r}")
        s0, s1, k0, k1 = (int(v) for v in sched)
        if s0 < 0 or s1 < s0:
            raise InvalidArgumentError(f"rollout_schedule: the end step must not come before the start step "
                                       f"(both >= 0), got start {s0}, end {s1}")
        if k0 < 1 or k1 < 1:
            raise InvalidArgumentError(f"rollout_schedule: rollout lengths must be >= 1, got {k0} and {k1}")
        if k1 < k0:
            raise InvalidArgumentError(f"rollout_schedule: the rollout length must not decrease in time, "
                                       f"got k start {k0} > k end {k1}")
        object.__setattr__(self, "rollout_schedule", (s0, s1, k0, k1))
        check_int("retain", self.retain, 1)
        check_int("epoch_length", self.epoch_length, 1)
        check_float("real_ratio", self.real_ratio, 0.0, 1.0)
        object.__setattr__(self, "action_source", as_enum(ActionSource, "action_source", self.action_source))
        object.__setattr__(self, "uncertainty", as_enum(Uncertainty, "uncertainty", self.uncertainty))
        if isinstance(self.penalty, bool) or not isinstance(self.penalty, (int, float)) or not (
                math.isfinite(self.penalty) and self.penalty >= 0):
            raise InvalidArgumentError(f"penalty must be a finite number >= 0 (the pessimism λ), got {self.penalty!r}")
        if not isinstance(self.learned_reward, bool):
            raise InvalidArgumentError(f"learned_reward must be True or False, got {self.learned_reward!r}")
        if self.learned_reward and not self.model.predict_reward:
            raise InvalidArgumentError("learned_reward needs a model with a reward head: set model.predict_reward")
        check_int("eval_every", self.eval_every, 1)
        check_int("eval_episodes", self.eval_episodes, 1)
        check_int("checkpoint_every", self.checkpoint_every, 1)
        if self.threads is not None:
            check_int("threads", self.threads, 1)

    def rollout_length(self, step: int) -> int:
        """``k`` at env step (offline: iteration) ``step``."""
        s0, s1, k0, k1 = self.rollout_schedule
        if step <= s0 or s1 == s0:
            return k0 if step <= s0 else k1
        frac = min(1.0, (step - s0) / (s1 - s0))
        return int(k0 + frac * (k1 - k0))

    def model_capacity(self, k: int) -> int:
        """Transitions the model buffer keeps at rollout length ``k``: ``retain`` epochs' worth."""
        return self.retain * self.epoch_length * self.rollouts * k


# Per task: MBPO's settings (the official jannerm/mbpo configs: rollout schedules in env steps,
# target entropies; 20 updates per step everywhere, where the official HalfCheetah uses 40).
# Entries are overrides of DynaConfig fields; "sac" entries of SACConfig's.
MBPO_DEFAULTS: dict[str, dict] = {
    "hopper": {"rollout_schedule": (20_000, 100_000, 1, 15), "sac": {"target_entropy": -1.0}},
    "half-cheetah": {"rollout_schedule": (20_000, 100_000, 1, 1), "sac": {"target_entropy": -3.0}},
    "walker2d": {"rollout_schedule": (20_000, 100_000, 1, 1), "sac": {"target_entropy": -3.0}},
    "ant": {"rollout_schedule": (20_000, 100_000, 1, 25), "sac": {"target_entropy": -4.0}},
    # no official config used here: epochs of 250 steps, k = 1, target entropy -0.05 (mbrl-lib's
    # inverted-pendulum override as remembered, not checked against its file), 500 random steps
    # (a random InvertedPendulum episode lasts ~5-10 steps, so 500 cover ~70 falls)
    "inverted-pendulum": {"rollout_schedule": (0, 0, 1, 1), "epoch_length": 250, "eval_every": 250,
                          "sac": {"target_entropy": -0.05, "learning_starts": 500}},
}


def mbpo_config(task, **overrides) -> DynaConfig:
    """MBPO's :class:`DynaConfig` for ``task`` (``MBPO_DEFAULTS``; other tasks get Hopper's),
    with ``overrides`` of its fields applied on top."""
    task = resolve_task(task)
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in MBPO_DEFAULTS.get(task.name, {}).items()}
    sac = dict(_SAC_MBPO)
    sac.update(d.pop("sac", {}))
    cfg = DynaConfig(sac=SACConfig(**sac), **d)
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


def apply_options(cfg: DynaConfig, options: dict) -> DynaConfig:
    """``cfg`` with ``options`` applied: ``{"name": value}`` for DynaConfig's fields, or
    ``"sac.name"``, ``"model.name"``, ``"train.name"`` for the nested configs' fields. Values may
    be strings as typed on a command line (``"0.1"``, ``"1000,5000,1,5"``, ``"policy"``)."""
    top: dict = {}
    nested: dict[str, dict] = {"sac": {}, "model": {}, "train": {}}
    for name, value in options.items():
        part, _, sub = name.partition(".")
        if sub:
            if part not in nested:
                raise InvalidArgumentError(f"option {name!r}: the prefix must be sac., model. or train., got {part!r}")
            target = getattr(cfg, part)
            fields = {f.name: f for f in dataclasses.fields(target)}
            if sub not in fields:
                raise InvalidArgumentError(f"option {name!r}: {type(target).__name__} has no field {sub!r} "
                                           f"(fields: {', '.join(sorted(fields))})")
            nested[part][sub] = _parse(name, value, getattr(target, sub), fields[sub])
        else:
            fields = {f.name: f for f in dataclasses.fields(DynaConfig)}
            if name not in fields or name in nested:
                raise InvalidArgumentError(
                    f"unknown option {name!r}; options: {', '.join(sorted(set(fields) - set(nested)))}, "
                    f"or sac.NAME, model.NAME, train.NAME")
            top[name] = _parse(name, value, getattr(cfg, name), fields[name])
    try:
        for part, kv in nested.items():
            if kv:
                top[part] = dataclasses.replace(getattr(cfg, part), **kv)
        return dataclasses.replace(cfg, **top)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"option: {e}") from None


def _parse(name: str, value, current, fld):
    if not isinstance(value, str):
        return value
    text = value.strip()
    ann = str(fld.type)
    try:
        if text.lower() == "none" and ("None" in ann or current is None):
            return None
        if isinstance(current, bool) or ann == "bool":
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if isinstance(current, tuple):
            return tuple(int(v) for v in text.replace("(", "").replace(")", "").split(",") if v.strip())
        if isinstance(current, OptionEnum):
            return text
        if isinstance(current, int) and "float" not in ann:
            return int(text)
        if isinstance(current, (int, float)) or "float" in ann:
            return float(text)
        if "int" in ann:
            return int(text)
        return text
    except ValueError:
        raise InvalidArgumentError(f"option {name}: cannot read {value!r} as a value of type {ann}") from None


# ----------------------------------------------------------------------------- branched rollouts


@dataclass(frozen=True)
class Branch:
    """Transitions of one batch of branched rollouts, flattened over steps (rows of rollouts
    still alive at each step): states, actions, rewards (penalised), next states, terminated,
    the disagreement ``u`` of each transition, and the step each row was taken at."""

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_states: np.ndarray
    terminated: np.ndarray
    uncertainty: np.ndarray
    depth: np.ndarray


def disagreement(mean, var, kind: Uncertainty | str = Uncertainty.MAX_STD) -> np.ndarray:
    """``u(x, u)`` per row from the elites' predictions ``mean, var: (E, N, d)`` (data units;
    numpy arrays or torch tensors): ``max_e ||sqrt(var_e)||`` (max_std, MOPO) or the mean over
    pairs ``e < f`` of ``||mean_e - mean_f||`` (pairwise; 0 for one elite). Returns ``(N,)``
    float64."""
    kind = as_enum(Uncertainty, "uncertainty", kind)
    with torch.inference_mode():
        return _disagreement(torch.as_tensor(mean), torch.as_tensor(var), kind).double().numpy()


def _disagreement(mean: torch.Tensor, var: torch.Tensor, kind: Uncertainty) -> torch.Tensor:
    if kind is Uncertainty.MAX_STD:
        return var.clamp(min=0.0).sum(dim=2).sqrt().amax(dim=0)
    E = mean.shape[0]
    tot = torch.zeros(mean.shape[1], dtype=mean.dtype)
    for e in range(E):
        for f in range(e + 1, E):
            tot += (mean[e] - mean[f]).square().sum(dim=1).sqrt()
    return tot / max(1.0, E * (E - 1) / 2)


def branch(model, rule, X0: np.ndarray, k: int, act: Callable[[np.ndarray, int], np.ndarray],
           rng: np.random.Generator, *, penalty: float = 0.0, uncertainty: Uncertainty | str = Uncertainty.MAX_STD,
           learned_reward: bool = False) -> Branch:
    """Roll the start states ``X0: (N, nx)`` out ``k`` steps through ``model``.

    model: anything with ``nx`` and ``predict(X, U) -> (mean, var)`` of shape ``(E, N, d)``, the
    elites' Gaussians over ``x'`` (and the reward when ``d = nx + 1``), such as an
    :class:`~recede.models.ensemble.Ensemble` (run in its planning precision: bfloat16 where the
    CPU computes it natively and accurately enough; its float32 outputs stay float32 until the
    chosen elite's sample). rule: ``rewards(X, U, X1) -> (r, terminated)``, the task's (a
    :class:`~recede.envs.ModelEnv`; its ``action_low``/``action_high`` clip the actions).
    act(X, t) -> U: the actions at step ``t``. Each row, each step, follows one elite drawn from
    ``rng`` and samples its Gaussian (``mean + sqrt(var) z``); the reward is the task's (or that
    elite's mean reward with ``learned_reward``) minus ``penalty * u`` (``u`` per
    ``uncertainty``, see :func:`disagreement`). Rows that terminate (or leave the finite states)
    stop."""
    kind = as_enum(Uncertainty, "uncertainty", uncertainty)
    X = np.asarray(X0, dtype=np.float64)
    nx = model.nx
    parts: list[tuple] = []
    for t in range(k):
        if X.shape[0] == 0:
            break
        U = np.clip(np.asarray(act(X, t), dtype=np.float64), rule.action_low, rule.action_high)
        if isinstance(model, Ensemble):
            mean, var = model.predict_tensors(X, U, planning=True)
        else:
            mean, var = (torch.as_tensor(np.asarray(a, dtype=np.float64)) for a in model.predict(X, U))
        E, N, d = mean.shape
        e = rng.integers(E, size=N)
        z = rng.standard_normal((N, d))
        with torch.inference_mode():
            rows = torch.arange(N)
            ei = torch.from_numpy(e)
            mu = mean[ei, rows].double()
            sample = (mu + var[ei, rows].double().clamp(min=0.0).sqrt() * torch.from_numpy(z)).numpy()
            u = _disagreement(mean, var, kind).double().numpy()
            mu = mu.numpy()
        X1 = sample[:, :nx]
        finite = np.isfinite(X1).all(axis=1)
        X1s = np.where(finite[:, None], X1, X)  # a non-finite prediction: scored on x, then dropped
        r, term = rule.rewards(X, U, X1s)
        if learned_reward:
            if d != nx + 1:
                raise InvalidArgumentError("learned_reward needs a model that predicts the reward")
            r = mu[:, nx]
        r = np.asarray(r, dtype=np.float64) - penalty * u if penalty else np.asarray(r, dtype=np.float64)
        term = np.asarray(term, dtype=bool) | ~finite
        keep = finite & np.isfinite(r)
        parts.append((X[keep], U[keep], r[keep], X1[keep], term[keep], u[keep], np.full(int(keep.sum()), t)))
        alive = keep & ~term
        X = X1[alive]
    if not parts:
        z = np.zeros((0, nx))
        return Branch(z, np.zeros((0, getattr(model, "nu", 0))), np.zeros(0), z, np.zeros(0, bool), np.zeros(0),
                      np.zeros(0, np.int64))
    cols = list(zip(*parts))
    return Branch(*(np.concatenate(c) for c in cols))


def mixed_batch(real: ReplayBuffer, synthetic: ReplayBuffer, batch_size: int, real_ratio: float,
                rng: np.random.Generator):
    """One training batch: ``round(real_ratio * batch_size)`` transitions drawn uniformly (with
    replacement) from ``real`` and the rest from ``synthetic`` (all from ``real`` while
    ``synthetic`` is empty), real rows first: ``(states, actions, rewards, next_states,
    terminated)``."""
    n_real = int(round(real_ratio * batch_size)) if len(synthetic) else batch_size
    parts = []
    for buf, n in ((real, n_real), (synthetic, batch_size - n_real)):
        if n:
            i = buf.sample_indices(n, rng)
            parts.append((buf.obs[i], buf.actions[i], buf.rewards[i], buf.next_obs[i], buf.terminated[i]))
    return tuple(np.concatenate(c) for c in zip(*parts))


# ----------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class ModelFit:
    """One refit of the ensemble: at env step (offline: iteration) ``step``, on ``rows`` real
    transitions; its epochs, mean held-out MSE (normalised units) and seconds."""

    step: int
    rows: int
    epochs: int
    holdout_mse: float
    seconds: float


@dataclass(frozen=True)
class DynaResult:
    """What a run returns: config, seed, evaluations, model fits, env steps (offline:
    iterations), wall time and where it went (``timings``: seconds in env steps, model fits,
    rollouts, SAC updates and evaluations), whether it ran offline, the step it resumed from,
    whether Ctrl-C stopped it, the policy (deterministic), the ensemble, and the real and model
    buffers (of model states)."""

    config: DynaConfig
    seed: int
    evals: tuple[EvalLog, ...]
    fits: tuple[ModelFit, ...]
    env_steps: int
    wall_s: float
    timings: dict
    offline: bool
    resumed_from: int
    interrupted: bool
    policy: NetworkPolicy = field(repr=False)
    model: Ensemble = field(repr=False)
    real_buffer: ReplayBuffer = field(repr=False)
    model_buffer: ReplayBuffer = field(repr=False)

    def curve(self) -> list[tuple[int, float]]:
        return [(e.env_steps, e.return_mean) for e in self.evals]


_TIMINGS = ("env", "model_fit", "rollouts", "updates", "eval")


def dyna(task, config: DynaConfig | None = None, *, seed: int = 0, dataset=None, model: Ensemble | None = None,
         out: str | None = None, resume: bool = False, device: str | torch.device = "cpu",
         on_step: Callable[[int, dict], None] | None = None,
         on_eval: Callable[[list[EvalLog]], None] | None = None, make_env: Callable | None = None) -> DynaResult:
    """Run Dyna/MBPO on ``task``; see the module docstring.

    dataset: a :class:`~recede.data.TransitionDataset` of model states: run offline on it.
    model: the ensemble to start from (default: a fresh one shaped by ``config.model`` for the
    task, seeded by ``seed``); offline, a model that is already trained is used as it is.
    out: a directory for checkpoints, the policy (``out/policy``), the ensemble (``out/model``)
    and ``out/evals.csv``. resume: continue from ``out/checkpoint``. device: where the SAC
    networks live (the ensemble runs on the CPU). on_step(step, info) runs after every step with
    ``info = {"model_mse": ..., "eval_return": ..., "timings": ...}`` (latest, or None; seconds so far
    per part); on_eval(logs) after each
    evaluation. Ctrl-C raises :class:`~recede.errors.Interrupted` with the result so far (after
    a checkpoint when ``out`` is given)."""
    from recede.envs import ModelEnv
    from recede.policy_learning.pets import model_for

    cfg = config or DynaConfig()
    if not isinstance(cfg, DynaConfig):
        raise InvalidArgumentError(f"config must be a DynaConfig, got {type(cfg).__name__}")
    task = resolve_task(task)
    check_int("seed", seed, 0)
    if resume and out is None:
        raise InvalidArgumentError("resume needs out, the directory holding the checkpoint")
    if resume and not os.path.isdir(os.path.join(os.fspath(out), "checkpoint")):
        raise InvalidArgumentError(f"resume: no checkpoint at {os.path.join(os.fspath(out), 'checkpoint')!r} "
                                   f"(train without resume first)")
    nx, nobs, nu = task_sizes(task)
    if dataset is not None:
        ds_nx, ds_nu = np.asarray(dataset.observations).shape[1], np.asarray(dataset.actions).shape[1]
        if (ds_nx, ds_nu) != (nx, nu):
            raise InvalidArgumentError(
                f"dataset: its transitions have states of size {ds_nx} and actions of size {ds_nu}, but task "
                f"{task.name!r} has model states of size {nx} and {nu} actions")
        if len(dataset) < 2:
            raise InvalidArgumentError(f"dataset must hold at least 2 transitions, got {len(dataset)}")
    if model is None:
        opts = cfg.model.to_json()
        if not cfg.model.angle_dims:
            del opts["angle_dims"]  # the task's own angle dims
        opts.pop("bf16", None)
        model = model_for(task, seed=seed, **opts)
    elif not isinstance(model, Ensemble) or (model.nx, model.nu) != (nx, nu):
        raise InvalidArgumentError(f"model must be an Ensemble with nx={nx}, nu={nu}, got {model!r}")
    out = out_dir(out)
    device = torch.device(device)
    rule = ModelEnv(task, 1, dynamics=model)
    try:
        model_threads = torch.get_num_threads()  # the ensemble's large batches use every thread
        with torch_threads(cfg.threads):
            return _Run(task, cfg, seed, dataset, model, rule, out, resume, device, on_step, on_eval,
                        make_env, nx, nobs, nu, model_threads).train()
    finally:
        rule.close()


class _Run:
    def __init__(self, task, cfg: DynaConfig, seed, dataset, model, rule, out, resume, device, on_step, on_eval,
                 make_env, nx, nobs, nu, model_threads):
        self.task, self.cfg, self.seed, self.model, self.rule = task, cfg, int(seed), model, rule
        self.out, self.resume, self.device = out, resume, device
        self.on_step, self.on_eval, self.make_env = on_step, on_eval, make_env
        self.nx, self.nobs, self.nu = nx, nobs, nu
        self.model_threads = model_threads
        self.offline = dataset is not None
        rng, torch_seed, env_seed = agent_streams(seed)
        self.rng = rng  # actions while exploring, batch draws
        self.roll_rng = np.random.default_rng([seed, 19, 1])  # branch starts, elites, model noise, actions
        self.gen = torch_generator(torch_seed, device)
        self.env_seed = env_seed
        self.low = np.array(rule.action_low)
        self.high = np.array(rule.action_high)
        sc = cfg.sac
        self.target_entropy = -float(nu) if sc.target_entropy is None else float(sc.target_entropy)
        alpha0 = sc.alpha if sc.alpha is not None else sc.initial_alpha
        self.agents = SACAgents(1, nobs, nu, self.low, self.high, sc, [self.seed], max(alpha0, 1e-30)).to(device)
        fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
        self.q_opt = torch.optim.Adam(self.agents.critic.parameters(), lr=sc.q_lr, **fused)
        self.pi_opt = torch.optim.Adam(self.agents.actor.parameters(), lr=sc.policy_lr, **fused)
        self.a_opt = torch.optim.Adam([self.agents.log_alpha], lr=sc.q_lr)
        if self.offline:
            self.real = ReplayBuffer.from_dataset(dataset)
        else:
            self.real = ReplayBuffer(min(sc.buffer_size, cfg.steps), nx, nu)
        self.k = cfg.rollout_length(0)
        self.synth = ReplayBuffer(cfg.model_capacity(self.k), nx, nu)
        self.evals: list[EvalLog] = []
        self.fits: list[ModelFit] = []
        self.timings = {k: 0.0 for k in _TIMINGS}
        self.step = 0
        self.start = 0
        self.env = None
        self.episodes = 0
        self.x = None

    # ------------------------------------------------------------- pieces

    def tensor(self, a):
        return torch.as_tensor(np.asarray(a), dtype=torch.float32, device=self.device)

    def noise(self, n):
        return torch.randn((n, self.nu), generator=self.gen, device=self.device)[None]

    def policy_sample(self, X):
        feats = np.asarray(self.task.observation(X), dtype=np.float64)
        with torch.no_grad():
            a, _ = self.agents.actor.sample(self.tensor(feats)[None], self.noise(X.shape[0]))
        return a[0].double().cpu().numpy()

    def act_mean(self, feats):
        with torch.inference_mode():
            return self.agents.actor.mean_action(self.tensor(feats)[:, None]).double().cpu().numpy()[:, 0]

    def reset_env(self):
        self.env.reset(seed=self.env_seed if self.episodes == 0 else None)
        self.episodes += 1
        self.x = np.asarray(self.task.state_of(self.env), dtype=np.float64)

    def env_step(self):
        t0 = time.perf_counter()
        if self.step < self.cfg.sac.learning_starts:
            u = self.rng.uniform(self.low, self.high)
        else:
            u = self.policy_sample(self.x[None])[0]
        _, r, te, tr, _ = self.env.step(u)
        x1 = np.asarray(self.task.state_of(self.env), dtype=np.float64)
        ok = np.all(np.isfinite(x1)) and np.isfinite(r)
        if ok:  # a diverged simulation is not data
            self.real.add(self.x, u, float(r), x1, bool(te), bool(tr), self.episodes - 1)
        if te or tr or not ok:
            self.reset_env()
        else:
            self.x = x1
        self.timings["env"] += time.perf_counter() - t0

    def fit_model(self):
        t0 = time.perf_counter()
        ds = self.real.to_dataset()
        tc = dataclasses.replace(self.cfg.train, seed=int(np.random.SeedSequence([self.seed, 23, len(self.fits)])
                                                           .generate_state(1)[0] % 2**31))
        with torch_threads(self.model_threads):
            res = self.model.fit(ds, tc)
        mse = float(np.mean(res.best_holdout_mse))
        self.fits.append(ModelFit(step=self.step, rows=len(ds), epochs=len(res.epochs), holdout_mse=mse,
                                  seconds=time.perf_counter() - t0))
        self.timings["model_fit"] += time.perf_counter() - t0

    def rollout(self):
        t0 = time.perf_counter()
        cfg = self.cfg
        k = cfg.rollout_length(self.step)
        if k != self.k:
            self.k = k
            self.synth = self.synth.resized(cfg.model_capacity(k))
        n = cfg.rollouts * cfg.rollout_every
        idx = self.real.sample_indices(n, self.roll_rng)
        X0 = self.real.obs[idx]
        src = cfg.action_source
        rr = self.roll_rng

        def act(X, t):
            if src is ActionSource.POLICY:
                return self.policy_sample(X)
            if src is ActionSource.UNIFORM:
                return rr.uniform(self.low, self.high, size=(X.shape[0], self.nu))
            if t == 0:
                return self.real.actions[idx]
            return self.real.actions[self.real.sample_indices(X.shape[0], rr)]

        with torch_threads(self.model_threads):
            b = branch(self.model, self.rule, X0, k, act, rr, penalty=cfg.penalty, uncertainty=cfg.uncertainty,
                       learned_reward=cfg.learned_reward)
        if len(b.rewards):
            self.synth.add_batch(b.states, b.actions, b.rewards, b.next_states, b.terminated)
        self.timings["rollouts"] += time.perf_counter() - t0

    def sample_batch(self):
        X, U, R, X1, D = mixed_batch(self.real, self.synth, self.cfg.sac.batch_size, self.cfg.real_ratio, self.rng)
        obs = np.asarray(self.task.observation(X), dtype=np.float64)
        obs1 = np.asarray(self.task.observation(X1), dtype=np.float64)
        sc = self.cfg.sac
        R = R * sc.reward_scale if sc.reward_scale != 1.0 else R
        return tuple(self.tensor(a)[None] for a in (obs, U, R, obs1, D.astype(np.float64)))

    def update(self):
        t0 = time.perf_counter()
        sc = self.cfg.sac
        for _ in range(sc.updates_per_step):
            sac_update(self.agents, (self.q_opt, self.pi_opt, self.a_opt), self.sample_batch(), self.noise,
                       gamma=sc.gamma, tau=sc.tau, target_entropy=self.target_entropy, tune_alpha=sc.alpha is None)
        self.timings["updates"] += time.perf_counter() - t0

    def run_eval(self):
        t0 = time.perf_counter()
        logs = evaluate(self.task, self.act_mean, [self.seed], episodes=self.cfg.eval_episodes,
                        env_steps=self.step, t0=self.t0, eval_round=len(self.evals), make_env=self.make_env)
        self.evals.extend(logs)
        self.timings["eval"] += time.perf_counter() - t0
        if self.on_eval is not None:
            self.on_eval(logs)

    def info(self) -> dict:
        return {"model_mse": self.fits[-1].holdout_mse if self.fits else None,
                "eval_return": self.evals[-1].return_mean if self.evals else None,
                "timings": dict(self.timings)}

    def iteration(self):
        """One env step (offline: one iteration) with everything due after it."""
        cfg = self.cfg
        if not self.offline:
            self.env_step()
        self.step += 1
        s = self.step
        if self.offline:
            if s % cfg.rollout_every == 1 or cfg.rollout_every == 1:
                self.rollout()
            self.update()
            return
        if s < cfg.sac.learning_starts:
            return
        if (s - cfg.sac.learning_starts) % cfg.model_every == 0:
            self.fit_model()
        if self.fits and (s - cfg.sac.learning_starts) % cfg.rollout_every == 0:
            self.rollout()
        if len(self.synth) or cfg.real_ratio == 1.0:
            self.update()

    # ------------------------------------------------------------- driver

    def train(self) -> DynaResult:
        if not self.offline:
            self.env = (self.make_env or self.task.make_env)()
        try:
            return self._train()
        finally:
            if self.env is not None:
                self.env.close()

    def _train(self) -> DynaResult:
        cfg = self.cfg
        ckpt = None if self.out is None else os.path.join(self.out, "checkpoint")
        wall0 = 0.0
        if self.resume:
            wall0 = self.load(ckpt)
        else:
            if self.env is not None:
                self.reset_env()
            if self.offline and not self.model.trained_epochs:
                self.fit_model()
        self.start = self.step
        self.t0 = time.perf_counter() - wall0

        def checkpoint():
            if ckpt is not None:
                self.save(ckpt)

        try:
            if self.resume and self.step % cfg.eval_every == 0 and self.step > 0 and (
                    not self.evals or self.evals[-1].env_steps != self.step):
                self.run_eval()
            while self.step < cfg.steps:
                with deferred_interrupt():
                    self.iteration()
                if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                    self.run_eval()
                if self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                    with deferred_interrupt():
                        checkpoint()
                if self.on_step is not None:
                    self.on_step(self.step, self.info())
        except KeyboardInterrupt:
            with deferred_interrupt():
                checkpoint()
                partial = self.result(True)
                self.write_outputs(partial)
            raise Interrupted(partial) from None
        res = self.result(False)
        with deferred_interrupt():
            checkpoint()
            self.write_outputs(res)
        return res

    def result(self, interrupted: bool) -> DynaResult:
        import copy

        pol = NetworkPolicy(copy.deepcopy(self.agents.actor), self.task, member=0,
                            meta={"algo": "mbpo", "seed": self.seed, "env_steps": int(self.step),
                                  "offline": self.offline, "config": _config_json(self.cfg)})
        return DynaResult(config=self.cfg, seed=self.seed, evals=tuple(self.evals), fits=tuple(self.fits),
                          env_steps=self.step, wall_s=time.perf_counter() - self.t0, timings=dict(self.timings),
                          offline=self.offline, resumed_from=self.start, interrupted=interrupted, policy=pol,
                          model=self.model, real_buffer=self.real, model_buffer=self.synth)

    def write_outputs(self, res: DynaResult) -> None:
        if self.out is None:
            return
        save_policy(res.policy.net, os.path.join(self.out, "policy"), member=0, task=self.task, meta=res.policy.meta)
        if self.fits or self.model.trained_epochs:
            self.model.save(os.path.join(self.out, "model"))
        write_evals_csv(os.path.join(self.out, "evals.csv"), res.evals)

    # ------------------------------------------------------------- checkpoints

    def save(self, path: str) -> None:
        import hashlib

        from safetensors.torch import save

        t = {f"net.{k}": v.detach().cpu().contiguous() for k, v in self.agents.state_dict().items()}
        for name, opt in (("q_opt", self.q_opt), ("pi_opt", self.pi_opt), ("a_opt", self.a_opt)):
            t.update({k: v.detach().cpu().contiguous() for k, v in _opt_tensors(name, opt).items()})
        t["torch_gen"] = self.gen.get_state().cpu()
        blob = save(t)
        state = {
            "format": FORMAT, "task": self.task.name, "seed": self.seed, "offline": self.offline,
            "config": _config_json(self.cfg), "step": int(self.step), "wall_s": float(time.perf_counter() - self.t0),
            "evals": evals_to_json(self.evals), "fits": [dataclasses.asdict(f) for f in self.fits],
            "timings": self.timings, "k": self.k, "episodes": self.episodes,
            "x": None if self.x is None else self.x.tolist(),
            "env": None if self.env is None else env_snapshot(self.env),
            "rngs": [self.rng.bit_generator.state, self.roll_rng.bit_generator.state],
            "weights_sha256": hashlib.sha256(blob).hexdigest(),
        }
        with atomic_directory(path, "out") as tmp:
            with open(os.path.join(tmp, "agents.safetensors"), "wb") as f:
                f.write(blob)
            for name, buf in (("real", self.real), ("synthetic", self.synth)):
                with open(os.path.join(tmp, f"{name}.npz"), "wb") as f:
                    np.savez(f, **buf.state_dict())
            self.model.save(os.path.join(tmp, "model"))
            write_json(os.path.join(tmp, "state.json"), state)

    def load(self, path: str) -> float:
        import hashlib

        from safetensors.torch import load

        state = read_json(os.path.join(path, "state.json"), "resume")
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            got = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise InvalidArgumentError(f"resume: {path} is not a Dyna checkpoint (format {got!r}, expected {FORMAT!r})")
        if state.get("task") != self.task.name:
            raise InvalidArgumentError(f"resume: the checkpoint at {path} is for task {state.get('task')!r}, "
                                       f"not {self.task.name!r}")
        if state.get("seed") != self.seed:
            raise InvalidArgumentError(f"resume: the checkpoint at {path} is for seed {state.get('seed')}, "
                                       f"not {self.seed}")
        if bool(state.get("offline")) != self.offline:
            raise InvalidArgumentError(f"resume: the checkpoint at {path} is of an "
                                       f"{'offline' if state.get('offline') else 'online'} run")
        mine, theirs = _config_json(self.cfg), state.get("config", {})
        free = ("steps", "eval_every", "checkpoint_every")
        diff = sorted(k for k in set(mine) | set(theirs) if k not in free and mine.get(k) != theirs.get(k))
        if diff:
            raise InvalidArgumentError(f"resume: the checkpoint at {path} was made with other options "
                                       f"({', '.join(diff)}); only {', '.join(free)} may change")
        wpath = os.path.join(path, "agents.safetensors")
        with open(wpath, "rb") as f:
            blob = f.read()
        if hashlib.sha256(blob).hexdigest() != state.get("weights_sha256"):
            raise InvalidArgumentError(f"{wpath}: checksum does not match state.json (corrupted)")
        t = load(blob)
        self.agents.load_state_dict({k[4:]: v for k, v in t.items() if k.startswith("net.")})
        for name, opt in (("q_opt", self.q_opt), ("pi_opt", self.pi_opt), ("a_opt", self.a_opt)):
            _load_opt(name, opt, t, wpath)
        self.gen.set_state(t["torch_gen"])
        self.rng.bit_generator.state = state["rngs"][0]
        self.roll_rng.bit_generator.state = state["rngs"][1]
        for name in ("real", "synthetic"):
            p = os.path.join(path, f"{name}.npz")
            try:
                with np.load(p, allow_pickle=False) as z:
                    buf = ReplayBuffer.from_state_dict({n: z[n] for n in z.files}, p)
            except (OSError, ValueError) as e:
                raise InvalidArgumentError(f"{p}: cannot read ({e})") from None
            if name == "real" and not self.offline and buf.capacity < self.real.capacity:
                buf = buf.resized(self.real.capacity)  # resumed with more steps: room for them
            setattr(self, "real" if name == "real" else "synth", buf)
        m = Ensemble.load(os.path.join(path, "model"))
        self.model.__dict__.update(m.__dict__)  # the rule and the caller keep their reference
        self.step = int(state["step"])
        self.k = int(state["k"])
        self.episodes = int(state["episodes"])
        self.evals = evals_from_json(state["evals"])
        self.fits = [ModelFit(**f) for f in state["fits"]]
        self.timings = {k: float(state["timings"].get(k, 0.0)) for k in _TIMINGS}
        if self.env is not None and state.get("env") is not None:
            env_restore(self.env, state["env"])
            self.x = np.asarray(state["x"], dtype=np.float64)
        return float(state["wall_s"])


def _config_json(cfg: DynaConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["model"] = cfg.model.to_json()
    d["action_source"] = cfg.action_source.value
    d["uncertainty"] = cfg.uncertainty.value
    d["rollout_schedule"] = list(cfg.rollout_schedule)
    d["sac"]["hidden"] = list(cfg.sac.hidden)
    return d


def config_from_json(d: dict) -> DynaConfig:
    """The :class:`DynaConfig` that a checkpoint's ``state.json`` records (the inverse of the
    form checkpoints write)."""
    d = dict(d)
    sac, model, train = SACConfig(**d.pop("sac")), EnsembleConfig(**d.pop("model")), TrainConfig(**d.pop("train"))
    names = {f.name for f in dataclasses.fields(DynaConfig)}
    return DynaConfig(sac=sac, model=model, train=train, **{k: v for k, v in d.items() if k in names})
