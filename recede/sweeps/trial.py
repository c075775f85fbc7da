"""The trial function: one :class:`~recede.sweeps.spec.TrialSpec` in, one JSON-ready record
out. Records hold the trial (id, spec), its summary, per-step curve where the command has one,
timings, recede's version and the git revision of the checkout it ran from (when there is one)."""

from __future__ import annotations

import functools
import os
import subprocess
import time

from recede.errors import InvalidArgumentError
from recede.sweeps.spec import TrialSpec


@functools.lru_cache(maxsize=1)
def git_revision() -> str | None:
    """The git revision of the checkout recede runs from, or None (an installed wheel)."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.isdir(os.path.join(here, ".git")) and not os.path.isfile(os.path.join(here, ".git")):
        return None
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def resolve(trial: TrialSpec):
    """The command's own validated spec of ``trial`` (raises InvalidArgumentError naming what is
    wrong): an EpisodeSpec for ``run``; ``(task, train function, config)`` for ``train-policy``."""
    if trial.command == "run":
        from recede.experiments.episode import episode_spec

        return episode_spec(trial.task, trial.planner, dict(trial.options), seed=trial.seed, steps=trial.steps,
                            horizon=trial.horizon)
    if trial.command == "train-policy":
        return _learner_spec(trial)
    raise InvalidArgumentError(f"command {trial.command!r} is not one a sweep runs")


def _learner_spec(trial: TrialSpec):
    import dataclasses

    from recede._learners import LEARNERS, learner
    from recede.envs import get_task

    if trial.planner not in LEARNERS:
        raise InvalidArgumentError(f"algo must be one of {sorted(LEARNERS)}, got {trial.planner!r}")
    if trial.horizon is not None:
        raise InvalidArgumentError(f"train-policy trials have no horizon, got horizon={trial.horizon!r}")
    task = get_task(trial.task)
    train, config_cls = learner(trial.planner)
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls) if f.name != "steps"}
    values = {}
    for name, v in trial.options:
        if name not in defaults:
            raise InvalidArgumentError(f"train-policy {trial.planner} has no option {name!r}; its options: "
                                       f"{', '.join(defaults)} (and steps)")
        if isinstance(defaults[name], tuple):  # layer widths: 64x64 (commas split grid values), 64, or a list
            if isinstance(v, str):
                try:
                    v = tuple(int(w) for w in v.lower().split("x"))
                except ValueError:
                    raise InvalidArgumentError(f"train-policy {trial.planner}: {name} must be widths like 64x64 "
                                               f"or a list, got {v!r}") from None
            elif isinstance(v, int) and not isinstance(v, bool):
                v = (v,)
            elif isinstance(v, list):
                v = tuple(v)
        values[name] = v
    if trial.steps is not None:
        values["steps"] = trial.steps
    try:
        config = config_cls(**values)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"train-policy {trial.planner} options {values}: {e}") from None
    return task, train, config


def _mean_samples(samples) -> float | None:
    """Sequences evaluated per plan, averaged over the steps that planned (None: no sampler)."""
    ran = [v for v in samples or () if v is not None]
    return float(sum(ran) / len(ran)) if ran else None


def run_trial(trial: TrialSpec) -> dict:
    """Run ``trial`` and return its record (JSON-ready)."""
    from recede._version import __version__
    from recede.experiments.episode import json_safe, run_episode

    t0 = time.perf_counter()
    spec = resolve(trial)
    if trial.command == "train-policy":
        return json_safe(_learner_record(trial, spec, t0, __version__))
    episode = run_episode(spec)
    d = episode.log.to_dict()
    steps_log = d.get("log", {})
    record = {
        "id": trial.id,
        "trial": trial.as_dict(),
        "summary": {"return": d["return"], "success": d["success"], "steps": d["steps"],
                    "terminated": d["terminated"], "samples_per_plan": _mean_samples(episode.log.plan_samples)},
        # the per-step reward; its cumulative sum is the return curve
        "curve": {"rewards": steps_log.get("rewards", [])},
        "timing": {"wall_s": time.perf_counter() - t0, "plan_ms_median": d["plan_ms_median"],
                   "plan_ms_p99": d["plan_ms_p99"]},
        "version": __version__,
        "git": git_revision(),
    }
    return json_safe(record)


def _learner_record(trial: TrialSpec, spec, t0: float, version: str) -> dict:
    task, train, config = spec
    result = train(task, config, seeds=[trial.seed], out=None, device="cpu")
    evals = [e for e in result.evals if e.seed == trial.seed]
    final = evals[-1] if evals else None
    success = None
    if final is not None and final.successes is not None:
        success = final.successes / len(final.returns)
    return {
        "id": trial.id,
        "trial": trial.as_dict(),
        # the final evaluation's mean return (deterministic episodes in the real env); success: its rate
        "summary": {"return": None if final is None else final.return_mean, "success": success,
                    "steps": result.env_steps, "terminated": False},
        # the evaluations: the learning curve
        "curve": {"env_steps": [e.env_steps for e in evals], "returns": [e.return_mean for e in evals]},
        "timing": {"wall_s": time.perf_counter() - t0, "plan_ms_median": None, "plan_ms_p99": None},
        "version": version,
        "git": git_revision(),
    }
