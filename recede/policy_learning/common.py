"""Building blocks the model-free learners share (SAC, PPO; MBPO and imitation later): the
environments of ``K`` agents, deterministic evaluation, env snapshots for exact resumes, and
checkpoint files. The algorithms' own loops live in their files (:mod:`.sac`, :mod:`.ppo`).

Every agent acts on **features** ``task.observation(x)`` of the model state ``x`` (the policy's
observation), in a real env (the task's own, or a Gymnasium robot) or in a
:class:`~recede.envs.ModelEnv` over any recede model, so a trained policy acts on states exactly
as it was trained, in closed loop and through a model.

Shapes: ``K`` agents, ``nobs`` features, ``nu`` actions.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from recede._io import atomic_file
from recede.envs import get_task
from recede.errors import InvalidArgumentError
from recede.experiments.episode import json_safe


def check_seeds(seeds) -> tuple[int, ...]:
    """Distinct non-negative int seeds, at least one."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seeds = (seeds,)
    try:
        out = tuple(seeds)
    except TypeError:
        raise InvalidArgumentError(f"seeds must be a list of ints >= 0, got {seeds!r}") from None
    if not out or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in out):
        raise InvalidArgumentError(f"seeds must be a non-empty list of ints >= 0, got {list(out)!r}")
    if len(set(out)) != len(out):
        raise InvalidArgumentError(f"seeds must be distinct, got {list(out)!r}")
    return tuple(int(s) for s in out)


def check_hidden(hidden) -> tuple[int, ...]:
    """A policy's hidden layer widths as a tuple of ints >= 1 (``()``: the linear class)."""
    if not isinstance(hidden, (tuple, list)) or any(
            isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in hidden):
        raise InvalidArgumentError(f"hidden must be a tuple of ints >= 1 (or () for a linear policy), "
                                   f"got {hidden!r}")
    return tuple(int(h) for h in hidden)


def check_int(name, v, minimum):
    """A config field: an int >= ``minimum``, else a named error."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise InvalidArgumentError(f"{name} must be an int >= {minimum}, got {v!r}")


def check_float(name, v, lo, hi, *, lo_open=False, hi_open=False):
    """A config field: a finite number in ``[lo, hi]`` (ends open as asked), else a named error."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or \
            (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi):
        a, b = ("(" if lo_open else "["), (")" if hi_open else "]")
        raise InvalidArgumentError(f"{name} must be a number in {a}{lo:g}, {hi:g}{b}, got {v!r}")


def check_resume_state(state, path: str, fmt: str, algo: str, task, seeds, cfg, resumable) -> None:
    """Refuse a checkpoint's ``state.json`` of another format, task, seeds or config (fields
    outside ``resumable`` must be equal), naming what differs."""
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise InvalidArgumentError(f"{path}: not a {algo} checkpoint (format {fmt!r})")
    if state["task"] != task.name:
        raise InvalidArgumentError(f"resume: the checkpoint is for task {state['task']!r}, not {task.name!r}")
    if list(state["seeds"]) != list(seeds):
        raise InvalidArgumentError(f"resume: the checkpoint is for seeds {state['seeds']}, not {list(seeds)}")
    saved = dict(state["config"])
    saved["hidden"] = tuple(saved["hidden"])
    mine = dataclasses.asdict(cfg)
    diff = sorted(k for k in mine if k not in resumable and saved.get(k) != mine[k])
    if diff:
        raise InvalidArgumentError("resume: the checkpoint was trained with other options: " +
                                   ", ".join(f"{k}={saved.get(k)!r} (now {mine[k]!r})" for k in diff))


def torch_generator(seed: int, device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def agent_streams(seed: int) -> tuple[np.random.Generator, int, int]:
    """An agent's numpy generator (actions, sampling) and the seeds of its torch generator and
    its envs, all derived from ``seed`` alone (so an agent is the same in any batch)."""
    ss = np.random.SeedSequence([int(seed), 18])
    rng_seed, torch_seed, env_seed = ss.generate_state(3, dtype=np.uint32)
    return np.random.default_rng(int(rng_seed)), int(torch_seed), int(env_seed)


# ----------------------------------------------------------------------------- environments


def exploring_start(task) -> Callable[[np.random.Generator], np.ndarray]:
    """Training starts that visit the whole circle of every angle: each angle of the task's model
    uniform in ``[-pi, pi)``, every other dimension from the task's own start box
    (``initial_state +- initial_spread``). Analytic tasks only (their envs take
    ``reset(options={"state": x})``). A swing-up's own start, hanging still, hardly ever shows a
    learner the upright states; starting everywhere does (as Gymnasium's Pendulum-v1 starts)."""
    if not hasattr(task, "initial_state") or not hasattr(task, "initial_spread"):
        raise InvalidArgumentError(f"exploring_starts needs an analytic task with an initial state box; "
                                   f"task {getattr(task, 'name', task)!r} has none")
    x0 = np.asarray(task.initial_state, dtype=np.float64)
    spread = np.asarray(task.initial_spread, dtype=np.float64)
    angles = np.zeros(x0.shape, dtype=bool)
    angles[list(getattr(task.dynamics(), "angle_dims", ()) or ())] = True
    if not angles.any():
        raise InvalidArgumentError(f"exploring_starts needs a task with angles; task {task.name!r} has none")

    def draw(rng: np.random.Generator) -> np.ndarray:
        x = x0 + rng.uniform(-1.0, 1.0, size=x0.shape) * spread
        return np.where(angles, rng.uniform(-np.pi, np.pi, size=x0.shape), x)

    return draw


class RealEnvs:
    """``K`` real envs of ``task``, stepped one after another; observations are the task's
    features of each env's model state. ``start(rng) -> x``: draw each training episode's start
    state with the agent's generator ``start_rngs[k]`` instead of the env's own distribution."""

    def __init__(self, task, k: int, env_seeds: Sequence[int], make_env: Callable | None = None,
                 start: Callable[[np.random.Generator], np.ndarray] | None = None,
                 start_rngs: Sequence[np.random.Generator] | None = None):
        self.task = task
        self.start, self.start_rngs = start, start_rngs
        self.envs = [(make_env or task.make_env)() for _ in range(k)]
        self.env_seeds = list(env_seeds)
        self.episodes = [0] * k  # episodes started, per agent (seeds the next reset)
        self.lengths = [0] * k
        self.returns = [0.0] * k
        self.finished: list[list[float]] = [[] for _ in range(k)]  # training episodes' returns
        sp = self.envs[0].action_space
        self.low, self.high = np.asarray(sp.low, dtype=np.float64), np.asarray(sp.high, dtype=np.float64)

    def features(self, i: int) -> np.ndarray:
        return np.asarray(self.task.observation(self.task.state_of(self.envs[i])[None])[0], dtype=np.float64)

    def _reset(self, i: int) -> np.ndarray:
        # seeded once; later episodes draw their starts from the env's own stream (as a ModelEnv's
        # copies do, so training on a ModelEnv over the task's own model repeats the real run)
        seed = self.env_seeds[i] if self.episodes[i] == 0 else None
        if self.start is None:
            self.envs[i].reset(seed=seed)
        else:
            self.envs[i].reset(seed=seed, options={"state": self.start(self.start_rngs[i])})
        self.episodes[i] += 1
        self.lengths[i], self.returns[i] = 0, 0.0
        return self.features(i)

    def reset(self) -> np.ndarray:
        return np.stack([self._reset(i) for i in range(len(self.envs))])

    def step(self, actions: np.ndarray):
        """-> next features (K, nobs) (after a reset where an episode ended), rewards (K,),
        terminated (K,), truncated (K,), the true final features (K, nobs)."""
        K = len(self.envs)
        nxt, final = [], []
        rew, term, trunc = np.zeros(K), np.zeros(K, dtype=bool), np.zeros(K, dtype=bool)
        for i, env in enumerate(self.envs):
            _, r, te, tr, _ = env.step(actions[i])
            f = self.features(i)
            rew[i], term[i], trunc[i] = r, te, tr
            self.lengths[i] += 1
            self.returns[i] += r
            final.append(f)
            if te or tr:
                self.finished[i].append(self.returns[i])
                f = self._reset(i)
            nxt.append(f)
        return np.stack(nxt), rew, term, trunc, np.stack(final)

    def close(self) -> None:
        for env in self.envs:
            env.close()

    # exact resumes: everything that decides what the envs do next
    def snapshot(self) -> list[dict]:
        return [{"env": env_snapshot(e), "episodes": self.episodes[i], "length": self.lengths[i],
                 "return": self.returns[i], "finished": list(self.finished[i]),
                 "start_rng": None if self.start_rngs is None else self.start_rngs[i].bit_generator.state}
                for i, e in enumerate(self.envs)]

    def restore(self, snaps: list[dict]) -> None:
        for i, (e, s) in enumerate(zip(self.envs, snaps)):
            env_restore(e, s["env"])
            self.episodes[i], self.lengths[i] = int(s["episodes"]), int(s["length"])
            self.returns[i], self.finished[i] = float(s["return"]), [float(v) for v in s["finished"]]
            if self.start_rngs is not None and s.get("start_rng") is not None:
                self.start_rngs[i].bit_generator.state = s["start_rng"]


class ModelEnvs(RealEnvs):
    """``K`` agents' envs as one :class:`~recede.envs.ModelEnv` over a recede model: one batched
    model step for all agents; each sub-env has its agent's seed."""

    def __init__(self, task, k: int, env_seeds: Sequence[int], model):
        from recede.envs import ModelEnv

        self.task = task
        self.venv = ModelEnv(task, k, dynamics=model)
        self.envs = []
        self.env_seeds = list(env_seeds)
        self.episodes, self.lengths, self.returns = [1] * k, [0] * k, [0.0] * k
        self.finished = [[] for _ in range(k)]
        sp = self.venv.single_action_space
        self.low, self.high = np.asarray(sp.low, dtype=np.float64), np.asarray(sp.high, dtype=np.float64)

    def reset(self) -> np.ndarray:
        obs, _ = self.venv.reset(seed=[int(s) for s in self.env_seeds])
        return np.asarray(obs, dtype=np.float64)

    def step(self, actions: np.ndarray):
        obs, rew, term, trunc, info = self.venv.step(np.asarray(actions, dtype=np.float64))
        obs = np.asarray(obs, dtype=np.float64)
        final = obs.copy()
        done = np.logical_or(term, trunc)
        rew = np.asarray(rew, dtype=np.float64)
        for i in range(len(rew)):
            self.lengths[i] += 1
            self.returns[i] += rew[i]
            if done[i]:
                final[i] = np.asarray(info["final_obs"][i], dtype=np.float64)
                self.finished[i].append(self.returns[i])
                self.lengths[i], self.returns[i] = 0, 0.0
                self.episodes[i] += 1
        return obs, rew, np.asarray(term, dtype=bool), np.asarray(trunc, dtype=bool), final

    def close(self) -> None:
        self.venv.close()

    def snapshot(self) -> list[dict]:
        return []  # a model env resumes from a fresh reset (see the learners' docstrings)

    def restore(self, snaps: list[dict]) -> None:
        pass


def make_envs(task, k: int, env_seeds: Sequence[int], model=None, make_env: Callable | None = None, *,
              start=None, start_rngs=None):
    if model is None:
        return RealEnvs(task, k, env_seeds, make_env, start, start_rngs)
    if start is not None:
        raise InvalidArgumentError("exploring_starts applies to training in the real env, not in a model")
    return ModelEnvs(task, k, env_seeds, model)


# ----------------------------------------------------------------------------- env snapshots


def _wrappers(env):
    w = env
    while True:
        yield w
        if not hasattr(w, "env"):
            return
        w = w.env


def env_snapshot(env) -> dict:
    """What decides an env's future: its wrappers' step counters, its generator's state and its
    simulator state (MuJoCo: the full integration state; recede's analytic envs: the state and the
    episode so far). JSON-ready."""
    snap: dict[str, Any] = {"wrappers": {}}
    for j, w in enumerate(_wrappers(env)):
        for attr in ("_elapsed_steps", "_has_reset"):
            if attr in vars(w):
                snap["wrappers"][f"{j}.{attr}"] = vars(w)[attr]
    base = env.unwrapped
    snap["np_random"] = base.np_random.bit_generator.state
    if hasattr(base, "model") and hasattr(base, "data"):
        import mujoco

        m, d = base.model, base.data
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        s = np.empty(mujoco.mj_stateSize(m, spec))
        mujoco.mj_getState(m, d, s, spec)
        snap["mujoco"] = s.tolist()
    elif hasattr(base, "state"):
        snap["state"] = np.asarray(base.state, dtype=np.float64).tolist()
    for attr in ("_t", "_history"):
        if hasattr(base, attr):
            v = getattr(base, attr)
            snap[attr] = [np.asarray(x).tolist() for x in v] if isinstance(v, list) else v
    return snap


def env_restore(env, snap: dict) -> None:
    """Put ``env`` (reset once, of the same kind) back into the state :func:`env_snapshot` saw."""
    ws = list(_wrappers(env))
    for key, v in snap["wrappers"].items():
        j, attr = key.split(".", 1)
        setattr(ws[int(j)], attr, v)
    base = env.unwrapped
    base.np_random.bit_generator.state = snap["np_random"]
    if "mujoco" in snap:
        import mujoco

        mujoco.mj_setState(base.model, base.data, np.asarray(snap["mujoco"]), mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(base.model, base.data)
    elif "state" in snap:
        base.state = np.asarray(snap["state"], dtype=np.float64)
    if "_t" in snap:
        base._t = snap["_t"]
    if "_history" in snap:
        base._history = [np.asarray(x, dtype=np.float64) for x in snap["_history"]]


# ----------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class EvalLog:
    """One evaluation of one agent: ``episodes`` deterministic episodes in the real env after
    ``env_steps`` of its training steps. ``successes``: episodes the task's criterion judged a
    success (``None`` where it judges none)."""

    seed: int
    env_steps: int
    returns: tuple[float, ...]
    successes: int | None
    lengths: tuple[int, ...]
    wall_s: float

    @property
    def return_mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def return_std(self) -> float:
        return float(np.std(self.returns))


def evaluate(task, act: Callable[[np.ndarray], np.ndarray], seeds: Sequence[int], *, episodes: int,
             env_steps: int, t0: float, eval_round: int, make_env: Callable | None = None) -> list[EvalLog]:
    """Run ``episodes`` episodes per agent in fresh real envs, all agents in lockstep:
    ``act(features (K, nobs)) -> actions (K, nu)`` (agent ``k`` acts on row ``k``; rows of agents
    whose episode has ended are ignored). Env seeds depend on the agent's seed and the round only."""
    K = len(seeds)
    envs = [(make_env or task.make_env)() for _ in range(K)]
    rets = [[] for _ in range(K)]
    lens = [[] for _ in range(K)]
    wins: list[list[bool]] = [[] for _ in range(K)]
    try:
        for ep in range(episodes):
            for k, e in enumerate(envs):
                e.reset(seed=(agent_streams(seeds[k])[2] + 7_777_777 * (eval_round + 1) + ep) % 2 ** 31)
            alive = np.ones(K, dtype=bool)
            ret, n = np.zeros(K), np.zeros(K, dtype=int)
            term = np.zeros(K, dtype=bool)
            while alive.any():
                feats = np.stack([task.observation(task.state_of(e)[None])[0] for e in envs])
                a = act(feats)
                for k, e in enumerate(envs):
                    if not alive[k]:
                        continue
                    _, r, te, tr, info = e.step(a[k])
                    ret[k] += r
                    n[k] += 1
                    if te or tr:
                        alive[k] = False
                        term[k] = te
                        ok = info.get("success")
                        if ok is None:
                            ok = task.judge(e, bool(te), int(n[k]))
                        if ok is not None:
                            wins[k].append(bool(ok))
            for k in range(K):
                rets[k].append(float(ret[k]))
                lens[k].append(int(n[k]))
    finally:
        for e in envs:
            e.close()
    wall = time.perf_counter() - t0
    return [EvalLog(seed=int(seeds[k]), env_steps=int(env_steps), returns=tuple(rets[k]),
                    successes=int(sum(wins[k])) if wins[k] else None, lengths=tuple(lens[k]), wall_s=wall)
            for k in range(K)]


def write_evals_csv(path: str, evals: Sequence[EvalLog]) -> None:
    """One row per evaluation: seed, env_steps, return mean and std, successes, episodes, wall."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["seed", "env_steps", "return_mean", "return_std", "successes", "episodes", "wall_s"])
    for e in evals:
        w.writerow([e.seed, e.env_steps, repr(e.return_mean), repr(e.return_std),
                    "" if e.successes is None else e.successes, len(e.returns), f"{e.wall_s:.3f}"])
    with atomic_file(path, "path") as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())


def evals_to_json(evals: Sequence[EvalLog]) -> list[dict]:
    return [json_safe(dataclasses.asdict(e)) for e in evals]


def evals_from_json(rows) -> list[EvalLog]:
    return [EvalLog(seed=int(r["seed"]), env_steps=int(r["env_steps"]), returns=tuple(float(v) for v in r["returns"]),
                    successes=None if r["successes"] is None else int(r["successes"]),
                    lengths=tuple(int(v) for v in r["lengths"]), wall_s=float(r["wall_s"])) for r in rows]


def write_json(path: str, obj) -> None:
    with atomic_file(path, "path") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, allow_nan=False)
            f.write("\n")


def read_json(path: str, what: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InvalidArgumentError(f"{what}: {path!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidArgumentError(f"{path}: not valid JSON ({e})") from None


def resolve_task(task):
    return get_task(task) if isinstance(task, str) else task


def out_dir(path: str | None, name: str = "out") -> str | None:
    if path is None:
        return None
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise InvalidArgumentError(f"{name} must be a directory, got the file {path!r}")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise InvalidArgumentError(f"{name}: the directory of {path!r} does not exist")
    os.makedirs(path, exist_ok=True)
    return path
