"""Learning on models: PETS (collect, fit an ensemble, plan on it, repeat)."""

from recede.policy_learning.pets import (
    MODEL_RUN_DEFAULTS, PETS_DEFAULTS, PETSResult, RandomPolicy, TrialLog, collect, model_for,
    model_run_defaults, pets, pets_defaults,
)

__all__ = ["MODEL_RUN_DEFAULTS", "PETS_DEFAULTS", "PETSResult", "RandomPolicy", "TrialLog", "collect",
           "model_for", "model_run_defaults", "pets", "pets_defaults"]
