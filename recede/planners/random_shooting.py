"""Random shooting: evaluate uniformly drawn action sequences, keep the best."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recede.planners._kernels import sample_uniform
from recede.planners.base import SamplingPlanner, check_positive_int, resolve_config
from recede.problem import Problem


@dataclass(frozen=True)
class RandomShootingConfig:
    """samples: sequences per iteration (row 0 is the warm start); iterations: independent batches."""

    samples: int = 1000
    iterations: int = 1

    def __post_init__(self):
        check_positive_int("samples", self.samples)
        check_positive_int("iterations", self.iterations)


class RandomShooting(SamplingPlanner):
    """Uniform random shooting inside the action bounds. ``RandomShooting(problem, samples=500)``."""

    def __init__(self, problem: Problem, config: RandomShootingConfig | None = None, **options):
        config = resolve_config(RandomShootingConfig, config, options)
        super().__init__(problem, config)

    def sample(self, i: int, seed: int, U: np.ndarray) -> None:
        sample_uniform(self._low, self._high, seed, U, 1)
