"""Uniform random actions inside the bounds: the exploration policy of PETS and ``recede collect``."""

from __future__ import annotations

import numpy as np

from recede.errors import InvalidArgumentError
from recede.planners.base import as_generator


class RandomPolicy:
    """``act(x)`` and ``act_batch(X)`` draw actions uniformly in ``[low, high]`` from ``rng``
    (a seed or ``numpy.random.Generator``); the state is ignored. A :class:`~recede.Policy`."""

    def __init__(self, low, high, rng=None):
        self.action_low = np.asarray(low, dtype=np.float64).reshape(-1)
        self.action_high = np.asarray(high, dtype=np.float64).reshape(-1)
        if self.action_low.shape != self.action_high.shape:
            raise InvalidArgumentError(f"low and high must have the same shape, got "
                                       f"{self.action_low.shape} and {self.action_high.shape}")
        if not (np.all(np.isfinite(self.action_low)) and np.all(np.isfinite(self.action_high))):
            raise InvalidArgumentError(f"a random policy needs finite action bounds, got "
                                       f"{self.action_low}, {self.action_high}")
        self.nu = self.action_low.shape[0]
        self._rng = as_generator(rng)

    def reset(self, rng=None) -> None:
        """Reseed when ``rng`` is given; otherwise keep drawing from the current generator."""
        if rng is not None:
            self._rng = as_generator(rng)

    def act(self, x) -> np.ndarray:
        return self._rng.uniform(self.action_low, self.action_high)

    def act_batch(self, X) -> np.ndarray:
        X = np.asarray(X)
        return self._rng.uniform(self.action_low, self.action_high, size=X.shape[:-1] + (self.nu,))
