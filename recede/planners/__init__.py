"""Planners: ``planner.plan(x0, *, warm_start=None, rng=None) -> Plan`` over a ``Problem``."""

from recede.planners.base import Planner, as_generator, shift_actions
from recede.planners.cem import CEM, CEMConfig
from recede.planners.random_shooting import RandomShooting, RandomShootingConfig

__all__ = [
    "CEM", "CEMConfig", "Planner", "RandomShooting", "RandomShootingConfig",
    "as_generator", "shift_actions",
]
