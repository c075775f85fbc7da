"""Numba kernels shared by the sampling planners.

Random numbers come from a counter-based generator (SplitMix64 of ``seed + index``): every
entry of ``U[b, t, j]`` is a pure function of the seed and its index, so a parallel sampler gives
the same numbers whatever the thread schedule. The planner draws one 63-bit seed per iteration
from the user's ``numpy.random.Generator``: same generator state, same plan, bit for bit.
"""

import numba
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TWO_PI = 2.0 * np.pi


@numba.njit(cache=True, inline="always")
def _splitmix64(z):
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, inline="always")
def _uniform01(seed, index):
    """Uniform in (0, 1): 53 random bits, offset by half a step so 0 never occurs."""
    z = _splitmix64(np.uint64(seed) + np.uint64(index) * _GOLDEN)
    return (np.float64(z >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, inline="always")
def _clip(v, lo, hi):
    return lo if v < lo else (hi if v > hi else v)


@numba.njit(cache=True, parallel=True)
def sample_gaussian(mean, std, low, high, seed, out, start):
    """out[b] = clip(mean + std * N(0, 1), low, high) for b >= start (Box-Muller).

    mean, std: (H, nu); low, high: (nu,); out: (B, H, nu).
    """
    B, H, nu = out.shape
    for b in numba.prange(start, B):
        for t in range(H):
            for j in range(nu):
                k = np.uint64(2 * ((b * H + t) * nu + j))
                u1 = _uniform01(seed, k)
                u2 = _uniform01(seed, k + np.uint64(1))
                z = np.sqrt(-2.0 * np.log(u1)) * np.cos(_TWO_PI * u2)
                out[b, t, j] = _clip(mean[t, j] + std[t, j] * z, low[j], high[j])


@numba.njit(cache=True, parallel=True)
def sample_uniform(low, high, seed, out, start):
    """out[b] ~ U(low, high) independently per entry, for b >= start. out: (B, H, nu)."""
    B, H, nu = out.shape
    for b in numba.prange(start, B):
        for t in range(H):
            for j in range(nu):
                u = _uniform01(seed, np.uint64((b * H + t) * nu + j))
                out[b, t, j] = low[j] + (high[j] - low[j]) * u


@numba.njit(cache=True)
def elite_refit(U, costs, n_elite, mean, std, smoothing, min_std):
    """Refit ``mean, std: (H, nu)`` in place to the ``n_elite`` lowest-cost rows of ``U``.

    new = smoothing * old + (1 - smoothing) * elite statistic; ``std`` is floored at ``min_std``
    (H, nu). Ties are broken by index (stable sort). Returns the index of the best row.
    """
    order = np.argsort(costs, kind="mergesort")
    _, H, nu = U.shape
    inv = 1.0 / n_elite
    for t in range(H):
        for j in range(nu):
            m = 0.0
            for i in range(n_elite):
                m += U[order[i], t, j]
            m *= inv
            v = 0.0
            for i in range(n_elite):
                d = U[order[i], t, j] - m
                v += d * d
            s = np.sqrt(v * inv)
            mean[t, j] = smoothing * mean[t, j] + (1.0 - smoothing) * m
            s = smoothing * std[t, j] + (1.0 - smoothing) * s
            std[t, j] = s if s > min_std[t, j] else min_std[t, j]
    return order[0]
