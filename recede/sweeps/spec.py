"""Sweep specs: a grid (and seeds) expanded into trials, each a frozen, picklable spec with a
stable id.

A :class:`TrialSpec` is one run of one command (today ``run``: one closed-loop MPC episode) on
one task, with its options and seed. A :class:`SweepSpec` holds the commands' fixed settings,
the grid (``{name: [values, ...]}``; ``task`` and ``planner`` may be swept like any option) and
the seeds; :meth:`SweepSpec.trials` expands it in a stable order: the grid's names in the order
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

COMMANDS = ("run",)
# names a "run" grid may sweep besides the planner's options
RUN_KEYS = ("task", "planner", "horizon", "steps")


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _freeze(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((str(k), _plain(v)) for k, v in options.items()))


def _plain(v):
    if isinstance(v, (list, tuple)):
        return tuple(_plain(x) for x in v)
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return v.item()
    return v


@dataclass(frozen=True)
class TrialSpec:
    """One trial: ``command`` on ``task`` with ``planner`` and its ``options`` (sorted pairs),
    ``seed``, and ``steps`` / ``horizon`` (None: the task's)."""

    command: str
    task: str
    planner: str
    options: tuple[tuple[str, Any], ...]
    seed: int
    steps: int | None = None
    horizon: int | None = None

    def as_dict(self) -> dict:
        return {"command": self.command, "task": self.task, "planner": self.planner,
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


@dataclass(frozen=True)
class SweepSpec:
    """``command`` over ``grid`` (name -> values, in order) and ``seeds``, with ``fixed``
    settings (``task``, ``planner``, ``steps``, ``horizon`` and planner options) shared by
    every trial; a grid name overrides a fixed one."""

    command: str
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    seeds: tuple[int, ...]
    fixed: tuple[tuple[str, Any], ...] = field(default=())

    @staticmethod
    def make(command: str, grid: Mapping[str, Sequence[Any]], seeds: Sequence[int],
             fixed: Mapping[str, Any] | None = None) -> "SweepSpec":
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
        seeds = tuple(int(s) for s in seeds)
        if not seeds:
            raise InvalidArgumentError("seeds: need at least one seed")
        if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise InvalidArgumentError(f"seeds must be distinct integers >= 0, got {list(seeds)}")
        fixed = dict(fixed or {})
        if "task" not in fixed and "task" not in dict(items):
            raise InvalidArgumentError("a sweep needs a task: fix one or sweep 'task'")
        return SweepSpec(command, tuple(items), seeds, _freeze(fixed))

    def trials(self) -> list[TrialSpec]:
        """Every trial, in the stable order (grid names as given, first slowest; seeds last)."""
        names = [n for n, _ in self.grid]
        out = []
        for combo in itertools.product(*(v for _, v in self.grid)):
            settings = {**dict(self.fixed), **dict(zip(names, combo))}
            task = settings.pop("task", None)
            planner = settings.pop("planner", "cem")
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
