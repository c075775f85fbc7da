"""Planners: ``planner.plan(x0, *, warm_start=None, rng=None, deadline=None) -> Plan`` over a ``Problem``."""

from recede.planners.base import Planner, as_generator, shift_actions
from recede.planners.cem import CEM, CEMConfig
from recede.planners.icem import ICEM, Execute, ICEMConfig, colored_noise
from recede.planners.ilqr import ILQR, DDPConfig, ILQRConfig, ILQRLog, Mode, box_qp
from recede.planners.lqr import LQR, TVLQR, LQRConfig, lqr_at_equilibrium, lqr_infinite, tvlqr
from recede.planners.mcts import MCTS, MCTSConfig, Proposal, RolloutPolicy, Selection
from recede.planners.mppi import MPPI, MPPIConfig
from recede.planners.random_shooting import RandomShooting, RandomShootingConfig

__all__ = [
    "CEM", "CEMConfig", "DDPConfig", "Execute", "ICEM", "ICEMConfig", "ILQR", "ILQRConfig",
    "ILQRLog", "LQR", "LQRConfig", "MCTS", "MCTSConfig", "MPPI", "MPPIConfig", "Mode", "Planner",
    "Proposal", "RolloutPolicy", "Selection",
    "RandomShooting", "RandomShootingConfig", "TVLQR",
    "as_generator", "box_qp", "colored_noise", "lqr_at_equilibrium", "lqr_infinite", "shift_actions", "tvlqr",
]
