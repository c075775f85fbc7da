"""iCEM, the improved cross-entropy method (Pinneri et al., CoRL 2020).

What it adds to CEM, each a config option:

- **coloured noise**: samples are ``mean + std * n`` with ``n`` Gaussian sequences whose power
  spectrum falls as ``1 / f^beta`` along time (``beta = 0`` white as in CEM; 2 to 3 for the
  smooth, low-frequency actions that swing-ups and locomotion want);
- **population decay**: iteration ``i`` draws ``max(samples * decay^-i, 2 * n_elite)`` sequences;
- **kept elites**: a fraction of the elites enters the next iteration's batch, and the last
  iteration's, shifted by the steps executed since (:meth:`ICEM.advance`), the next plan's;
- the **mean** itself is evaluated in the last iteration;
- the best sequence found so far is row 0 of every batch (as in every sampling planner here);
- the plan executes the **best** sequence found (default) or the final **mean**.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from recede.errors import InvalidArgumentError
from recede.planners._kernels import elite_refit, fill_normal
from recede.planners.base import (
    SamplingPlanner, as_enum, check_fraction, check_number, check_positive_int,
    check_proposal_options, check_std_range, resolve_config, shift_actions,
)
from recede.problem import Problem


class Execute(enum.Enum):
    """What a plan returns: the best sequence evaluated, or the sampling distribution's mean."""

    BEST = "best"
    MEAN = "mean"


def _spectrum_scale(H: int, beta: float) -> tuple[np.ndarray, float]:
    """Amplitudes ``f^(-beta/2)`` over ``rfftfreq(H)`` (the zero frequency given the lowest
    nonzero one's, as in Timmer & Koenig 1995 and the ``colorednoise`` package) and the standard
    deviation of the resulting sequence, by which it is divided to give unit variance.

    With real and imaginary parts N(0, s_k^2), the zero and (even H) Nyquist terms real and
    scaled by sqrt(2), var y_t = (2 s_0^2 + 4 sum_interior s_k^2 + 2 s_nyq^2) / H^2.
    """
    f = np.fft.rfftfreq(H)
    f[0] = 1.0 / H
    scale = f ** (-0.5 * beta)
    sq = scale * scale
    var = 2.0 * sq[0]
    if H % 2 == 0:
        var += 4.0 * float(np.sum(sq[1:-1])) + 2.0 * sq[-1]
    else:
        var += 4.0 * float(np.sum(sq[1:]))
    return scale, math.sqrt(var) / H


def colored_noise(beta: float, n: int, H: int, nu: int, seed: int) -> np.ndarray:
    """``n`` independent Gaussian sequences ``(n, H, nu)`` with unit variance and power spectrum
    proportional to ``1 / f^beta`` along the time axis (``beta = 0``: white noise).

    Deterministic in ``seed`` (counter-based normals, see ``recede.planners._kernels``).
    """
    check_number("beta", beta)
    for name, v in (("n", n), ("H", H), ("nu", nu)):
        check_positive_int(name, v)
    if beta == 0 or H == 1:
        z = np.empty((n, H, nu))
        fill_normal(seed, z)
        return z
    scale, sigma = _spectrum_scale(H, float(beta))
    nf = scale.shape[0]
    z = np.empty((n, nu, 2, nf))
    fill_normal(seed, z)
    re, im = z[:, :, 0] * scale, z[:, :, 1] * scale
    im[..., 0] = 0.0
    re[..., 0] *= math.sqrt(2.0)
    if H % 2 == 0:
        im[..., -1] = 0.0
        re[..., -1] *= math.sqrt(2.0)
    y = np.fft.irfft(re + 1j * im, n=H, axis=-1) / sigma  # (n, nu, H)
    return np.ascontiguousarray(y.transpose(0, 2, 1))


@dataclass(frozen=True)
class ICEMConfig:
    """
    samples: population of the first iteration (row 0 is the best sequence so far).
    iterations: refits per plan.
    elite_fraction: elites as a share of ``samples``, in (0, 1]; at least one.
    decay: population decay factor >= 1: iteration i draws max(samples / decay^i, 2 n_elite).
    beta: colour of the noise, >= 0 (0 white, 1 pink, 2 brown).
    keep_elites: share of the elites carried into the next iteration and the next plan, [0, 1].
    init_std, min_std: sampling std as a fraction of the half-range of the action bounds.
    smoothing: momentum in [0, 1): new = smoothing * old + (1 - smoothing) * elite statistic.
    add_mean: evaluate the mean in the last iteration.
    execute: "best" (the best sequence evaluated) or "mean" (the final mean).
    proposal_share: in [0, 1], the share of each iteration's samples that are the ``proposal``
        policy's own rollouts plus noise (0: none, exactly the planner without a policy; row 0
        always stays the nominal); proposal_std: their action noise as a fraction of the
        half-range of the action bounds (the first proposal is noise-free).
    """

    samples: int = 300
    iterations: int = 3
    elite_fraction: float = 0.1
    decay: float = 1.25
    beta: float = 2.0
    keep_elites: float = 0.3
    init_std: float = 0.5
    min_std: float = 0.02
    smoothing: float = 0.1
    add_mean: bool = True
    execute: str = "best"
    proposal_share: float = 0.0
    proposal_std: float = 0.1

    def __post_init__(self):
        check_positive_int("samples", self.samples)
        check_positive_int("iterations", self.iterations)
        check_fraction("elite_fraction", self.elite_fraction)
        check_fraction("keep_elites", self.keep_elites, low_open=False)
        check_fraction("smoothing", self.smoothing, low_open=False, high_open=True)
        check_number("decay", self.decay, 1.0)
        check_number("beta", self.beta)
        check_std_range(self.init_std, self.min_std)
        if not isinstance(self.add_mean, bool):
            raise InvalidArgumentError(f"add_mean must be True or False, got {self.add_mean!r}")
        as_enum(Execute, "execute", self.execute)
        check_proposal_options(self.proposal_share, self.proposal_std)
        if self.samples < 2:
            raise InvalidArgumentError(f"samples must be >= 2 for iCEM, got {self.samples}")

    @property
    def n_elite(self) -> int:
        return max(1, int(round(self.elite_fraction * self.samples)))

    @property
    def n_keep(self) -> int:
        return int(round(self.keep_elites * self.n_elite))

    def population(self, i: int) -> int:
        n = int(round(self.samples * self.decay ** (-i)))
        return min(self.samples, max(n, 2 * self.n_elite, 2))


class ICEM(SamplingPlanner):
    """iCEM: CEM with coloured noise, population decay and kept elites. ``ICEM(problem, beta=2.5)``."""

    def __init__(self, problem: Problem, config: ICEMConfig | None = None, *, proposal=None,
                 **options):
        config = resolve_config(ICEMConfig, config, options)
        super().__init__(problem, config, proposal)
        H, nu = problem.horizon, problem.nu
        self._execute = Execute(config.execute)
        self._min_std = np.tile(config.min_std * self._half, (H, 1))
        self._mean = np.empty((H, nu))
        self._std = np.empty((H, nu))
        self._kept = np.empty((0, H, nu))  # elites carried between iterations and plans
        self._memory = np.empty((0, H, nu))  # the last plan's kept elites, shifted by advance()

    def population(self, i: int) -> int:
        return self.config.population(i)

    def advance(self, n: int) -> None:
        check_positive_int("n", n, minimum=0)
        if n and self._memory.shape[0]:
            self._memory = shift_actions(self._memory, n)

    def begin(self, nominal: np.ndarray, warm: bool) -> None:
        self._mean[:] = nominal
        self._std[:] = self.config.init_std * self._half
        # a plan from scratch forgets the last one's elites; a warm-started one reuses them
        self._kept = self._memory if warm else self._memory[:0]

    def sample(self, i: int, seed: int, U: np.ndarray) -> None:
        c = self.config
        n, H, nu = U.shape
        start = 1
        k = min(self._kept.shape[0], n - 1)
        if k:
            U[1:1 + k] = self._kept[:k]
            start += k
        last = i == c.iterations - 1
        if last and c.add_mean and start < n:
            np.clip(self._mean, self._low, self._high, out=U[start])  # averaging may round 1 ulp out
            start += 1
        if start < n:
            noise = colored_noise(c.beta, n - start, H, nu, seed)
            np.clip(self._mean + self._std * noise, self._low, self._high, out=U[start:])

    def update(self, U: np.ndarray, costs: np.ndarray) -> float:
        c = self.config
        n_elite = min(c.n_elite, U.shape[0])
        elite_refit(U, costs, n_elite, self._mean, self._std, c.smoothing, self._min_std)
        order = np.argsort(costs, kind="mergesort")[: min(c.n_keep, n_elite)]
        self._kept = U[order[np.isfinite(costs[order])]].copy()
        self._memory = self._kept
        return float(self._std.mean())

    def result(self, x0, best, best_cost):
        if self._execute is Execute.MEAN:
            return self._evaluate(x0, np.clip(self._mean, self._low, self._high))
        return best, best_cost, None
