"""Sweep specs: a grid (and seeds) expanded into trials, each a frozen, picklable spec with a
stable id.

A :class:`TrialSpec` is one run of one command on one task, with its options and seed:
``run`` (one closed-loop MPC episode, as ``recede run``) or ``train-policy`` (one learner, one
seed, as ``recede train-policy``). A :class:`SweepSpec` holds the command's fixed settings, the
grid (``{name: [values, ...]}``; ``task`` and ``planner``/``algo`` may be swept like any option),
an optional random search and the seeds; :meth:`SweepSpec.trials` expands it in a stable order: the grid's names in the order
given, the first name varying slowest, seeds innermost. A trial's id is a hash of its canonical
JSON, so it is the same in every process and on every machine; the sweep's id hashes its trials'
ids in order, so a results file can tell which sweep wrote it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from recede.errors import InvalidArgumentError

COMMANDS = ("run", "train-policy")
# per command: the setting that names the method (and its default)
METHOD = {"run": ("planner", "cem"), "train-policy": ("algo", "sac")}


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _freeze(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((str(k), _plain(v)) for k, v in options.items()))


def _plain_tree(v):
    if isinstance(v, Mapping):
        return {str(k): _plain_tree(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain_tree(x) for x in v]
    return _plain(v)


def _plain(v):
    if isinstance(v, (list, tuple)):
        return tuple(_plain(x) for x in v)
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return v.item()
    return v


@dataclass(frozen=True)
class TrialSpec:
    """One trial: ``command`` on ``task`` with ``planner`` and its ``options`` (sorted pairs),
    ``seed``, and ``steps`` / ``horizon`` (None: the task's). For ``train-policy`` trials
    ``planner`` holds the learner (``algo``: sac, ppo), ``steps`` the env steps and ``options``
    the learner's config fields."""

    command: str
    task: str
    planner: str
    options: tuple[tuple[str, Any], ...]
    seed: int
    steps: int | None = None
    horizon: int | None = None

    def as_dict(self) -> dict:
        return {"command": self.command, "task": self.task, METHOD[self.command][0]: self.planner,
                "options": {k: list(v) if isinstance(v, tuple) else v for k, v in self.options},
                "seed": self.seed, "steps": self.steps, "horizon": self.horizon}

    @property
    def id(self) -> str:
        """A stable id: the first 16 hex digits of the SHA-256 of the trial's canonical JSON."""
        return hashlib.sha256(_canonical(self.as_dict()).encode()).hexdigest()[:16]

    @property
    def config(self) -> dict:
        """The trial without its seed (trials that differ only in the seed share it)."""
        d = self.as_dict()
        del d["seed"]
        return d

    @property
    def config_key(self) -> str:
        return _canonical(self.config)


def parse_seeds(value) -> tuple[int, ...]:
    """Seeds from ``"A..B"`` (inclusive), ``"1,5,7"``, an integer or a list of integers."""
    if isinstance(value, str):
        text = value.strip()
        try:
            if ".." in text:
                a, b = (int(v) for v in text.split(".."))
            else:
                seeds = [int(v) for v in text.split(",")]
        except ValueError:
            raise InvalidArgumentError(f"seeds must be A..B or a comma list of integers, got {value!r}") from None
        if ".." in text:
            if a > b:
                raise InvalidArgumentError(f"seeds {text!r} count down; write {b}..{a}")
            seeds = list(range(a, b + 1))
    elif isinstance(value, bool):
        raise InvalidArgumentError(f"seeds must be integers, got {value!r}")
    elif isinstance(value, int):
        seeds = [value]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        seeds = list(value)
    else:
        raise InvalidArgumentError(f"seeds must be A..B, a comma list or a list of integers, got {value!r}")
    return tuple(seeds)


DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")


def parse_distribution(name: str, dist) -> tuple[str, tuple]:
    """A random-search distribution: ``{"uniform": [lo, hi]}``, ``{"log_uniform": [lo, hi]}``,
    ``{"int_uniform": [lo, hi]}`` (both ends included) or ``{"choice": [v1, v2, ...]}``; on the
    command line ``uniform:LO,HI``, ``log:LO,HI``, ``int:LO,HI``, ``choice:V1,V2``."""
    where = f"random: option {name!r}"
    if not (isinstance(dist, Mapping) and len(dist) == 1):
        raise InvalidArgumentError(f"{where} needs one of {list(DISTRIBUTIONS)} with its arguments, got {dist!r}")
    (kind, args), = dist.items()
    if kind not in DISTRIBUTIONS:
        raise InvalidArgumentError(f"{where}: unknown distribution {kind!r}; known: {list(DISTRIBUTIONS)}")
    args = tuple(_plain(a) for a in (args if isinstance(args, (list, tuple)) else [args]))
    if kind == "choice":
        if not args:
            raise InvalidArgumentError(f"{where}: choice has no values")
        return kind, args
    if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise InvalidArgumentError(f"{where}: {kind} needs [low, high] numbers, got {list(args)}")
    lo, hi = args
    if not lo < hi:
        raise InvalidArgumentError(f"{where}: {kind} needs low < high, got [{lo}, {hi}]")
    if kind == "log_uniform" and lo <= 0:
        raise InvalidArgumentError(f"{where}: log_uniform needs low > 0, got {lo}")
    if kind == "int_uniform" and not all(isinstance(a, int) for a in args):
        raise InvalidArgumentError(f"{where}: int_uniform needs integer bounds, got [{lo}, {hi}]")
    return kind, (lo, hi)


def draw_configs(space: Mapping[str, Any], n: int, seed: int) -> tuple[tuple[tuple[str, Any], ...], ...]:
    """``n`` settings drawn from ``space`` (name -> distribution) with ``numpy.random.default_rng(
    seed)``, names in the order given. Floats are kept to 4 significant digits, so that labels and
    trial ids stay readable; the draws are the same on every machine."""
    import numpy as np

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidArgumentError(f"random: trials must be an integer >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidArgumentError(f"random: seed must be an integer >= 0, got {seed!r}")
    if not isinstance(space, Mapping) or not space:
        raise InvalidArgumentError(f"random: needs at least one option and its distribution, got {space!r}")
    dists = [(str(k), *parse_distribution(str(k), v)) for k, v in space.items()]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        draw = {}
        for name, kind, args in dists:
            if kind == "choice":
                v = args[int(rng.integers(len(args)))]
            elif kind == "int_uniform":
                v = int(rng.integers(args[0], args[1] + 1))
            elif kind == "uniform":
                v = float(f"{rng.uniform(args[0], args[1]):.4g}")
            else:
                v = float(f"{np.exp(rng.uniform(np.log(args[0]), np.log(args[1]))):.4g}")
            draw[name] = v
        out.append(tuple(draw.items()))
    return tuple(out)


@dataclass(frozen=True)
class SweepSpec:
    """``command`` over ``grid`` (name -> values, in order) and ``seeds``, with ``fixed``
    settings (``task``, ``planner``, ``steps``, ``horizon`` and planner options) shared by
    every trial; a grid name overrides a fixed one."""

    command: str
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    seeds: tuple[int, ...]
    fixed: tuple[tuple[str, Any], ...] = field(default=())
    #: random search: the drawn settings (each crossed with the grid) and how they were drawn
    draws: tuple[tuple[tuple[str, Any], ...], ...] = field(default=())
    random: tuple[tuple[str, Any], ...] = field(default=())

    @staticmethod
    def make(command: str, grid: Mapping[str, Sequence[Any]], seeds, fixed: Mapping[str, Any] | None = None,
             random: Mapping[str, Any] | None = None) -> "SweepSpec":
        """``random``: ``{"trials": N, "seed": S, "space": {name: distribution}}`` (see
        :func:`parse_distribution`): N settings drawn once, each crossed with the grid."""
        if command not in COMMANDS:
            raise InvalidArgumentError(f"command must be one of {list(COMMANDS)}, got {command!r}")
        if not isinstance(grid, Mapping):
            raise InvalidArgumentError(f"grid must map option names to lists of values, got {grid!r}")
        items = []
        for name, values in grid.items():
            vals = tuple(_plain(v) for v in (values if isinstance(values, (list, tuple)) else [values]))
            if not vals:
                raise InvalidArgumentError(f"grid: option {name!r} has no values")
            items.append((str(name), vals))
        draws: tuple = ()
        random_key: tuple = ()
        if random is not None:
            if not isinstance(random, Mapping):
                raise InvalidArgumentError(f"random must be a table with trials, seed and space, got {random!r}")
            unknown = sorted(set(random) - {"trials", "seed", "space"})
            if unknown:
                raise InvalidArgumentError(f"random: unknown key(s) {unknown}; known: ['seed', 'space', 'trials']")
            space = random.get("space", {})
            draws = draw_configs(space, random.get("trials", 0), random.get("seed", 0))
            both = sorted(set(space) & set(dict(items)))
            if both:
                raise InvalidArgumentError(f"random: option(s) {both} are also in the grid; sweep each one once")
            random_key = (("seed", random.get("seed", 0)), ("space", _plain_tree(space)),
                          ("trials", random.get("trials")))
        if not items and not draws:
            raise InvalidArgumentError("grid is empty: give at least one swept setting (--grid NAME=V1,V2) "
                                       "or a random search")
        seeds = parse_seeds(seeds if isinstance(seeds, (str, int)) else [_plain(v) for v in seeds])
        if not seeds:
            raise InvalidArgumentError("seeds: need at least one seed")
        if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise InvalidArgumentError(f"seeds must be distinct integers >= 0, got {list(seeds)}")
        fixed = dict(fixed or {})
        if "task" not in fixed and "task" not in dict(items):
            raise InvalidArgumentError("a sweep needs a task: fix one or sweep 'task'")
        return SweepSpec(command, tuple(items), seeds, _freeze(fixed), draws, random_key)

    def trials(self) -> list[TrialSpec]:
        """Every trial, in the stable order (grid names as given, first slowest; then the random
        draws; seeds last)."""
        names = [n for n, _ in self.grid]
        out = []
        for combo, draw in itertools.product(itertools.product(*(v for _, v in self.grid)), self.draws or [()]):
            settings = {**dict(self.fixed), **dict(draw), **dict(zip(names, combo))}
            task = settings.pop("task", None)
            planner = settings.pop(*METHOD[self.command])
            steps = settings.pop("steps", None)
            horizon = settings.pop("horizon", None)
            for seed in self.seeds:
                out.append(TrialSpec(self.command, str(task), str(planner), _freeze(settings), seed,
                                     None if steps is None else int(steps),
                                     None if horizon is None else int(horizon)))
        return out

    @property
    def id(self) -> str:
        """The sweep's id: a hash of its trials' ids in order."""
        return hashlib.sha256(",".join(t.id for t in self.trials()).encode()).hexdigest()[:16]

    def check(self) -> None:
        """Build every trial's resolved spec before any runs: an unknown option, task or planner
        names itself and what is known."""
        from recede.sweeps.trial import resolve

        for t in self.trials():
            resolve(t)


TOML_KEYS = ("command", "task", "planner", "steps", "horizon", "seeds", "options", "grid", "random")


def load_toml(path: str) -> SweepSpec:
    """A sweep from a TOML file::

        command = "run"              # optional, the default
        task = "cartpole-swingup"    # or sweep it in [grid]
        planner = "cem"              # or sweep it in [grid]
        steps = 100                  # optional: steps per episode
        seeds = "0..4"               # or [0, 1, 2] or 3

        [options]                    # fixed planner options of every trial
        iterations = 4

        [grid]                       # swept settings, the first varying slowest
        planner = ["cem", "icem", "mppi"]
        samples = [50, 100, 200]

        [random]                     # optional random search, crossed with the grid
        trials = 8
        seed = 0
        [random.space]
        init_std = {uniform = [0.1, 1.0]}
        min_std = {log_uniform = [0.001, 0.1]}
    """
    import tomllib

    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise InvalidArgumentError(f"spec: no such file {path!r}") from None
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgumentError(f"spec: {path!r} is not valid TOML: {e}") from None
    unknown = sorted(set(doc) - set(TOML_KEYS))
    if unknown:
        raise InvalidArgumentError(f"spec {path!r}: unknown key(s) {unknown}; known: {list(TOML_KEYS)}")
    for key in ("options", "grid", "random"):
        if key in doc and not isinstance(doc[key], dict):
            raise InvalidArgumentError(f"spec {path!r}: {key} must be a table, got {doc[key]!r}")
    fixed = dict(doc.get("options", {}))
    for key in ("task", "planner", "steps", "horizon"):
        if key in doc:
            if key in fixed:
                raise InvalidArgumentError(f"spec {path!r}: {key!r} is given both at the top and in [options]")
            fixed[key] = doc[key]
    grid = {k: (v if isinstance(v, list) else [v]) for k, v in doc.get("grid", {}).items()}
    return SweepSpec.make(doc.get("command", "run"), grid, doc.get("seeds", [0]), fixed, doc.get("random"))
