"""The controller interfaces: what a closed loop asks of whatever chooses the actions.

A :class:`Controller` maps one state to one action and can be reset between episodes. MPC around
any planner, :class:`~recede.controllers.LQRController`, :class:`~recede.controllers.RandomPolicy`
and every learned policy satisfy it. A :class:`Policy` is a controller that also acts on a batch
of states at once, so it can be rolled out through a model (``act_batch(X) -> U``).

Shapes: ``x: (nx,) -> u: (nu,)``; ``X: (..., nx) -> U: (..., nu)``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Controller(Protocol):
    """``act(x) -> u`` inside the action bounds; ``reset(rng)`` forgets the episode (and reseeds
    when ``rng``, a seed or ``numpy.random.Generator``, is given)."""

    def act(self, x: np.ndarray) -> np.ndarray: ...

    def reset(self, rng=None) -> None: ...


@runtime_checkable
class Policy(Controller, Protocol):
    """A controller that is also batched: ``act_batch(X: (..., nx)) -> U: (..., nu)``."""

    def act_batch(self, X: np.ndarray) -> np.ndarray: ...
