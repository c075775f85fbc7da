"""Learning on models: PETS (collect, fit an ensemble, plan on it, repeat)."""

from recede.policy_learning.pets import (
    PETS_DEFAULTS, PETSResult, RandomPolicy, TrialLog, collect, model_for, pets, pets_defaults,
)

__all__ = ["PETS_DEFAULTS", "PETSResult", "RandomPolicy", "TrialLog", "collect", "model_for",
           "pets", "pets_defaults"]
