"""Sweeps: many trials (commands x tasks x options x seeds) on a process pool, results that
survive a crash (work in progress, issue 22: the Ray backend and the reports come next)."""

from recede.sweeps.runner import run_sweep
from recede.sweeps.spec import SweepSpec, TrialSpec
from recede.sweeps.trial import run_trial

__all__ = ["SweepSpec", "TrialSpec", "run_sweep", "run_trial"]
