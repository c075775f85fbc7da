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
    wrong)."""
    if trial.command == "run":
        from recede.experiments.episode import episode_spec

        return episode_spec(trial.task, trial.planner, dict(trial.options), seed=trial.seed, steps=trial.steps,
                            horizon=trial.horizon)
    raise InvalidArgumentError(f"command {trial.command!r} is not one a sweep runs")


def run_trial(trial: TrialSpec) -> dict:
    """Run ``trial`` and return its record (JSON-ready)."""
    from recede._version import __version__
    from recede.experiments.episode import json_safe, run_episode

    t0 = time.perf_counter()
    spec = resolve(trial)
    episode = run_episode(spec)
    d = episode.log.to_dict()
    steps_log = d.get("log", {})
    record = {
        "id": trial.id,
        "trial": trial.as_dict(),
        "summary": {"return": d["return"], "success": d["success"], "steps": d["steps"],
                    "terminated": d["terminated"]},
        # the per-step reward; its cumulative sum is the return curve
        "curve": {"rewards": steps_log.get("rewards", [])},
        "timing": {"wall_s": time.perf_counter() - t0, "plan_ms_median": d["plan_ms_median"],
                   "plan_ms_p99": d["plan_ms_p99"]},
        "version": __version__,
        "git": git_revision(),
    }
    return json_safe(record)
