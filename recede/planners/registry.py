"""Planner names for the command line and for configs: name -> (planner class, config class)."""

from __future__ import annotations

import dataclasses

from recede.errors import InvalidArgumentError, UnknownNameError
from recede.planners.cem import CEM, CEMConfig
from recede.planners.icem import ICEM, ICEMConfig
from recede.planners.ilqr import ILQR, DDPConfig, ILQRConfig
from recede.planners.lqr import LQR, LQRConfig
from recede.planners.mcts import MCTS, MCTSConfig
from recede.planners.mppi import MPPI, MPPIConfig
from recede.planners.random_shooting import RandomShooting, RandomShootingConfig
from recede.problem import Problem

PLANNERS: dict[str, tuple[type, type]] = {
    "random": (RandomShooting, RandomShootingConfig),
    "cem": (CEM, CEMConfig),
    "icem": (ICEM, ICEMConfig),
    "mppi": (MPPI, MPPIConfig),
    "lqr": (LQR, LQRConfig),
    "ilqr": (ILQR, ILQRConfig),
    "ddp": (ILQR, DDPConfig),
    "mcts": (MCTS, MCTSConfig),
}


def planner_class(name: str) -> tuple[type, type]:
    try:
        return PLANNERS[name]
    except (KeyError, TypeError):
        raise UnknownNameError(
            f"unknown planner {name!r}; known planners: {', '.join(sorted(PLANNERS))}"
        ) from None


def planner_options(name: str) -> dict[str, object]:
    """The options of planner ``name`` with their defaults."""
    _, config = planner_class(name)
    return {f.name: f.default for f in dataclasses.fields(config)}


def planner_config(name: str, **options):
    """The validated config of planner ``name``; options not of this planner raise, naming them."""
    _, config = planner_class(name)
    known = planner_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InvalidArgumentError(
            f"planner {name!r} has no option {unknown[0]!r}; its options: {', '.join(known)}"
        )
    return config(**options)


def make_planner(name: str, problem: Problem, *, proposal_policy=None, **options):
    """Build planner ``name`` on ``problem``; options not of this planner raise, naming them.
    ``proposal_policy``: a policy (``act_batch(X) -> U``) whose rollouts the sampling planners
    mix into their samples (option ``proposal_share``) and MCTS centres its search on."""
    cls = planner_class(name)[0]
    config = planner_config(name, **options)
    if proposal_policy is None:
        return cls(problem, config)
    if cls in (CEM, ICEM, MPPI):
        return cls(problem, config, proposal=proposal_policy)
    if cls is MCTS:
        return cls(problem, config, proposal_policy=proposal_policy)
    raise InvalidArgumentError(
        f"planner {name!r} takes no proposal policy; these do: cem, icem, mppi, mcts")
