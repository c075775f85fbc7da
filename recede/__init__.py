"""recede: model-based planning and control.

Shapes, written once and used in every docstring:

- ``nx`` state size, ``nu`` action size, ``H`` horizon, ``B`` batch of candidate sequences,
  ``P`` particles.
- one state ``x: (nx,)``; states ``X: (B, H+1, nx)``; actions ``U: (B, H, nu)``; costs ``(B,)``;
  one plan's actions ``(H, nu)`` and states ``(H+1, nx)``.
- Arrays are float64 numpy at every public boundary.

Feedback sign, everywhere: ``u = u_bar + k + K (x - x_bar)``.
"""

from recede import _threads  # noqa: F401  (must run before Numba starts its thread pool)
from recede import _cache  # noqa: F401  (must run before any cache=True kernel is defined)
from recede._compile_notice import set_compile_notice  # noqa: F401  (re-exported; listens from here on)
from recede._version import __version__  # noqa: F401  (re-exported)
from recede.controllers import (
    MPC, Controller, LQRController, Policy, RandomPolicy, RunLog, run_closed_loop,
)
from recede.costs import Cost, FunctionCost, QuadraticCost
from recede.envs import Task, get_task, list_tasks
from recede.errors import (
    Interrupted, InvalidArgumentError, PlanningError, RecedeError, UnknownNameError,
)
from recede.models.base import Differentiable, Dynamics
from recede.planners import (
    CEM, ICEM, ILQR, LQR, MCTS, MPPI, CEMConfig, DDPConfig, ICEMConfig, ILQRConfig, LQRConfig,
    MCTSConfig, MPPIConfig,
    Planner, RandomShooting, RandomShootingConfig,
)
from recede.planners.registry import make_planner
from recede.problem import IterLog, Plan, Problem, Status


def __getattr__(name):
    if name == "MujocoDynamics":  # imported on first use: it starts MuJoCo's thread pools
        from recede.models.mujoco import MujocoDynamics

        return MujocoDynamics
    raise AttributeError(f"module 'recede' has no attribute {name!r}")

__all__ = [
    "CEM", "CEMConfig", "Controller", "Cost", "DDPConfig", "Differentiable", "Dynamics",
    "FunctionCost", "ICEM", "ICEMConfig", "ILQR", "ILQRConfig", "Interrupted", "InvalidArgumentError",
    "IterLog", "LQR", "LQRConfig", "LQRController", "MCTS", "MCTSConfig", "MPC", "MPPI",
    "MPPIConfig", "MujocoDynamics", "Plan", "Planner", "PlanningError", "Policy", "Problem",
    "QuadraticCost", "RandomPolicy", "RandomShooting", "RandomShootingConfig", "RecedeError",
    "RunLog", "Status", "Task", "UnknownNameError", "get_task", "list_tasks", "make_planner",
    "run_closed_loop", "set_compile_notice",
]
