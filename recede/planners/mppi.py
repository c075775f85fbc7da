"""Model-predictive path integral control (Williams et al. 2017, information-theoretic form).

Each iteration samples ``U_b = clip(mean + eps_b)`` with ``eps ~ N(0, Sigma)`` per time step
(row 0 is the mean itself, noise-free, unless ``nominal_sample=False``), scores

    S_b = cost_b + control_cost * temperature * sum_t mean_t' Sigma^-1 (U_bt - mean_t),

and moves the mean to the path-integral average ``sum_b w_b U_b`` with
``w_b = exp(-(S_b - min S) / temperature) / eta``. A low temperature follows the best sample,
a high one the plain average. The update may be smoothed over time (Savitzky-Golay) and damped
(``smoothing``). The plan executes the final mean; its cost is evaluated, not estimated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recede.errors import InvalidArgumentError
from recede.planners._kernels import mppi_weights, sample_gaussian, weighted_mean
from recede.planners.base import (
    SamplingPlanner, check_fraction, check_number, check_positive_int, check_proposal_options,
    resolve_config,
)
from recede.planners.icem import colored_noise
from recede.problem import Problem


@dataclass(frozen=True)
class MPPIConfig:
    """
    samples: sequences per iteration (row 0 is the current mean, noise-free).
    iterations: path-integral updates per plan (1 is classic MPPI).
    temperature: lambda > 0, in the units of the cost.
    noise_std: exploration std as a fraction of the half-range of the action bounds; a number
        or one per action dimension. Ignored when ``covariance`` is given.
    covariance: exploration covariance (nu, nu) in action units (symmetric positive definite),
        or None for diag((noise_std * half-range)^2).
    control_cost: weight of the control-cost term as a multiple of the temperature (1 is the
        information-theoretic MPPI of Williams et al.; 0 drops the term).
    nominal_sample: keep the mean itself, noise-free, as sample 0 (True); False samples every row
        (as pytorch-mppi does): the average can then leave a local optimum the mean sits in.
    smoothing: in [0, 1): mean = smoothing * old + (1 - smoothing) * path-integral average.
    anneal: in (0, 1]: iteration i explores with anneal^i times the noise (coarse to fine
        within a plan, as in DIAL-MPC's annealing); the control-cost term uses that
        iteration's covariance. 1 keeps the noise fixed (classic MPPI).
    beta: colour of the exploration noise along time, 1/f^beta (0 white, the classic MPPI;
        2 smooth, for swing-ups); the covariance holds per time step either way.
    filter_window: odd window of a Savitzky-Golay filter over time applied to the update,
        0 for none; filter_order: its polynomial order (< filter_window).
    proposal_share: in [0, 1], the share of each iteration's samples that are the ``proposal``
        policy's own rollouts plus noise (0: none, exactly the planner without a policy; row 0
        always stays the nominal); proposal_std: their action noise as a fraction of the
        half-range of the action bounds (the first proposal is noise-free).
    """

    samples: int = 500
    iterations: int = 1
    temperature: float = 1.0
    noise_std: float | tuple[float, ...] = 0.5
    covariance: tuple[tuple[float, ...], ...] | None = None
    control_cost: float = 1.0
    beta: float = 0.0
    anneal: float = 1.0
    nominal_sample: bool = True
    smoothing: float = 0.0
    filter_window: int = 0
    filter_order: int = 2
    proposal_share: float = 0.0
    proposal_std: float = 0.1

    def __post_init__(self):
        check_positive_int("samples", self.samples)
        check_positive_int("iterations", self.iterations)
        check_number("temperature", self.temperature, strict=True)
        std = np.atleast_1d(np.asarray(self.noise_std, dtype=np.float64)) if not isinstance(
            self.noise_std, (str, bool)) else np.array([np.nan])
        if std.ndim != 1 or not np.all(np.isfinite(std)) or np.any(std <= 0):
            raise InvalidArgumentError(
                f"noise_std must be a number > 0 or one per action dimension, got {self.noise_std!r}")
        check_number("control_cost", self.control_cost)
        check_fraction("smoothing", self.smoothing, low_open=False, high_open=True)
        check_fraction("anneal", self.anneal)
        if not isinstance(self.nominal_sample, bool):
            raise InvalidArgumentError(f"nominal_sample must be True or False, got {self.nominal_sample!r}")
        check_number("beta", self.beta)
        check_positive_int("filter_window", self.filter_window, minimum=0)
        check_positive_int("filter_order", self.filter_order, minimum=0)
        check_proposal_options(self.proposal_share, self.proposal_std)
        if self.filter_window and (self.filter_window % 2 == 0 or self.filter_window <= self.filter_order):
            raise InvalidArgumentError(
                f"filter_window must be 0 or odd and > filter_order={self.filter_order}, "
                f"got {self.filter_window}")
        if self.covariance is not None:
            cov = np.asarray(self.covariance, dtype=np.float64)
            if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or not np.all(np.isfinite(cov)):
                raise InvalidArgumentError(
                    f"covariance must be a finite square matrix, got {self.covariance!r}")
            if not np.allclose(cov, cov.T) or np.linalg.eigvalsh(cov).min() <= 0:
                raise InvalidArgumentError(
                    f"covariance must be symmetric positive definite, got {self.covariance!r}")


class MPPI(SamplingPlanner):
    """MPPI: path-integral averaging of noisy action sequences. ``MPPI(problem, temperature=0.1)``."""

    def __init__(self, problem: Problem, config: MPPIConfig | None = None, *, proposal=None,
                 **options):
        config = resolve_config(MPPIConfig, config, options)
        super().__init__(problem, config, proposal)
        H, nu = problem.horizon, problem.nu
        if config.covariance is not None:
            cov = np.asarray(config.covariance, dtype=np.float64)
            if cov.shape != (nu, nu):
                raise InvalidArgumentError(f"covariance must have shape ({nu}, {nu}), got {cov.shape}")
        else:
            std = np.broadcast_to(np.atleast_1d(np.asarray(config.noise_std, float)), (nu,)) \
                if np.size(config.noise_std) in (1, nu) else None
            if std is None:
                raise InvalidArgumentError(
                    f"noise_std must be a number or have {nu} entries, got {config.noise_std!r}")
            cov = np.diag((std * self._half) ** 2)
        if config.filter_window > H:
            raise InvalidArgumentError(
                f"filter_window must be <= the horizon {H}, got {config.filter_window}")
        self.covariance = cov
        self._diagonal = bool(np.all(cov == np.diag(np.diag(cov))))
        self._std = np.tile(np.sqrt(np.diag(cov)), (H, 1))
        if self._diagonal:  # a zero-width action bound explores nothing and costs nothing
            var = np.diag(cov)
            self._chol = np.diag(np.sqrt(var))
            self._sigma_inv = np.diag(np.divide(1.0, var, out=np.zeros_like(var), where=var > 0))
        else:
            self._chol = np.linalg.cholesky(cov)
            self._sigma_inv = np.linalg.inv(cov)
            self._sigma_inv = 0.5 * (self._sigma_inv + self._sigma_inv.T)
        self._mean = np.empty((H, nu))
        self._new = np.empty((H, nu))
        self._weights = np.empty(self._U.shape[0])
        self._inf = np.full(nu, np.inf)
        self.last_weights = None  # (samples,) weights of the last iteration
        self.last_ess = float("nan")
        self._scale = 1.0

    def begin(self, nominal: np.ndarray, warm: bool) -> None:
        self._mean[:] = nominal

    def center(self, best: np.ndarray) -> np.ndarray:
        return self._mean

    def sample(self, i: int, seed: int, U: np.ndarray) -> None:
        n, H, nu = U.shape
        self._scale = self.config.anneal ** i
        start = 1 if self.config.nominal_sample else 0
        if n == start:
            return
        if self._diagonal and self.config.beta == 0:
            std = self._std if self._scale == 1.0 else self._std * self._scale
            sample_gaussian(self._mean, std, self._low, self._high, seed, U, start)
            return
        z = colored_noise(self.config.beta, n - start, H, nu, seed)
        eps = z * self._std if self._diagonal else z @ self._chol.T
        if self._scale != 1.0:
            eps *= self._scale
        np.clip(self._mean + eps, self._low, self._high, out=U[start:])

    def update(self, U: np.ndarray, costs: np.ndarray) -> float:
        c = self.config
        w = self._weights[: U.shape[0]]
        sigma_inv = self._sigma_inv if self._scale == 1.0 else self._sigma_inv / self._scale ** 2
        ess = mppi_weights(U, costs, self._mean, sigma_inv, c.temperature, c.control_cost, w)
        self.last_weights = w.copy()
        self.last_ess = ess
        if ess == 0.0:  # every sample diverged: keep the mean
            return float("nan")
        weighted_mean(U, w, self._new)
        np.clip(self._new, self._low, self._high, out=self._new)  # a convex combination, up to rounding
        if c.filter_window:
            from scipy.signal import savgol_filter

            step = savgol_filter(self._new - self._mean, c.filter_window, c.filter_order, axis=0,
                                 mode="interp")
            self._new[:] = np.clip(self._mean + step, self._low, self._high)
        if c.smoothing:
            self._new *= 1.0 - c.smoothing
            self._new += c.smoothing * self._mean
        self._mean[:] = self._new
        return float("nan")

    def result(self, x0, best, best_cost):
        return self._evaluate(x0, self._mean.copy())
