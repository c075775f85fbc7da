"""Planners: ``planner.plan(x0, *, warm_start=None, rng=None, deadline=None) -> Plan`` over a ``Problem``."""

from recede.planners.base import Planner, as_generator, shift_actions
from recede.planners.cem import CEM, CEMConfig
from recede.planners.icem import ICEM, Execute, ICEMConfig, colored_noise
from recede.planners.lqr import TVLQR, lqr_at_equilibrium, lqr_infinite, tvlqr
from recede.planners.mppi import MPPI, MPPIConfig
from recede.planners.random_shooting import RandomShooting, RandomShootingConfig

__all__ = [
    "CEM", "CEMConfig", "Execute", "ICEM", "ICEMConfig", "MPPI", "MPPIConfig", "Planner",
    "RandomShooting", "RandomShootingConfig", "TVLQR",
    "as_generator", "colored_noise", "lqr_at_equilibrium", "lqr_infinite", "shift_actions", "tvlqr",
]
