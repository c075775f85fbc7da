"""Controllers: MPC around any planner, and the closed-loop runner."""

from recede.controllers.mpc import MPC
from recede.controllers.runner import RunLog, run_closed_loop

__all__ = ["MPC", "RunLog", "run_closed_loop"]
