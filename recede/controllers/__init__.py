"""Controllers (MPC, LQR, random) and the closed-loop runner."""

from recede.controllers.base import Controller, Policy
from recede.controllers.lqr import LQRController
from recede.controllers.mpc import MPC
from recede.controllers.random import RandomPolicy
from recede.controllers.runner import RunLog, run_closed_loop

__all__ = ["Controller", "LQRController", "MPC", "Policy", "RandomPolicy", "RunLog", "run_closed_loop"]
