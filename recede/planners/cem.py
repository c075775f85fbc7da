"""Cross-entropy method: refit a diagonal Gaussian over action sequences to the elite samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recede.planners._kernels import elite_refit, sample_gaussian
from recede.planners.base import (
    SamplingPlanner, check_fraction, check_positive_int, check_proposal_options, check_std_range,
    resolve_config,
)
from recede.problem import Problem


@dataclass(frozen=True)
class CEMConfig:
    """
    samples: sequences per iteration (row 0 is the nominal: the warm start, then the best so far).
    iterations: refits per plan.
    elite_fraction: share of samples refit to, in (0, 1]; at least one elite.
    init_std, min_std: sampling std as a fraction of the half-range of the action bounds.
    smoothing: in [0, 1): new = smoothing * old + (1 - smoothing) * elite statistic.
    proposal_share: in [0, 1], the share of each iteration's samples that are the ``proposal``
        policy's own rollouts plus noise (0: none, exactly the planner without a policy; row 0
        always stays the nominal); proposal_std: their action noise as a fraction of the
        half-range of the action bounds (the first proposal is noise-free).
    """

    samples: int = 500
    iterations: int = 5
    elite_fraction: float = 0.1
    init_std: float = 0.5
    min_std: float = 0.02
    smoothing: float = 0.1
    proposal_share: float = 0.0
    proposal_std: float = 0.1

    def __post_init__(self):
        check_positive_int("samples", self.samples)
        check_positive_int("iterations", self.iterations)
        check_fraction("elite_fraction", self.elite_fraction)
        check_fraction("smoothing", self.smoothing, low_open=False, high_open=True)
        check_std_range(self.init_std, self.min_std)
        check_proposal_options(self.proposal_share, self.proposal_std)

    @property
    def n_elite(self) -> int:
        return max(1, int(round(self.elite_fraction * self.samples)))


class CEM(SamplingPlanner):
    """CEM with the mean warm-started from the (shifted) previous plan. ``CEM(problem, samples=1000)``."""

    def __init__(self, problem: Problem, config: CEMConfig | None = None, *, proposal=None,
                 **options):
        config = resolve_config(CEMConfig, config, options)
        super().__init__(problem, config, proposal)
        H = problem.horizon
        self._min_std = np.tile(config.min_std * self._half, (H, 1))
        self._mean = np.empty((H, problem.nu))
        self._std = np.empty((H, problem.nu))

    def begin(self, nominal: np.ndarray, warm: bool) -> None:
        self._mean[:] = nominal
        self._std[:] = self.config.init_std * self._half

    def sample(self, i: int, seed: int, U: np.ndarray) -> None:
        sample_gaussian(self._mean, self._std, self._low, self._high, seed, U, 1)

    def update(self, U: np.ndarray, costs: np.ndarray) -> float:
        c = self.config
        elite_refit(U, costs, c.n_elite, self._mean, self._std, c.smoothing, self._min_std)
        return float(self._std.mean())
