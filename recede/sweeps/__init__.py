"""Sweeps: many trials (commands x tasks x options x seeds) on a process pool, results that
survive a crash, on a local process pool or on Ray, and reports over seeds."""

from recede.sweeps.runner import TrialsFailedError, run_sweep
from recede.sweeps.spec import SweepSpec, TrialSpec, load_toml
from recede.sweeps.trial import run_trial

__all__ = ["SweepSpec", "TrialSpec", "TrialsFailedError", "load_toml", "run_sweep", "run_trial"]
