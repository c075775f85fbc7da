"""Controllers: MPC around any planner, LQR at an equilibrium, and the closed-loop runner."""

from recede.controllers.lqr import LQRController
from recede.controllers.mpc import MPC
from recede.controllers.runner import RunLog, run_closed_loop

__all__ = ["LQRController", "MPC", "RunLog", "run_closed_loop"]
