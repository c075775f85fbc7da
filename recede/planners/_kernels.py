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


def _ziggurat_tables(n=128, r=3.442619855899, v=9.91256303526217e-3):
    """Layer edges x[0..n] and core ratios x[i+1]/x[i] of the 128-layer normal ziggurat
    (Marsaglia & Tsang 2000, in Doornik's 2005 floating-point form)."""
    x = np.zeros(n + 1)
    f = np.exp(-0.5 * r * r)
    x[0], x[1] = v / f, r
    for i in range(2, n):
        x[i] = np.sqrt(-2.0 * np.log(v / x[i - 1] + f))
        f = np.exp(-0.5 * x[i] * x[i])
    return x, x[1:] / x[:-1]


_ZIG_X, _ZIG_RATIO = _ziggurat_tables()
_ZIG_R = 3.442619855899


@numba.njit(cache=True, inline="always", error_model="numpy")
def _normal(seed, k, zx, zratio):
    """One standard normal for entry ``k``: ziggurat on the counter stream (k, 0), (k, 1), ...

    ~99% of draws take one 64-bit random (layer from its low 7 bits, value from its top 53).
    """
    c = np.uint64(k) << np.uint64(32)
    while True:
        z = _splitmix64(np.uint64(seed) + c * _GOLDEN)
        c += np.uint64(1)
        i = np.int64(z & np.uint64(127))
        u = 2.0 * ((np.float64(z >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)) - 1.0
        if abs(u) < zratio[i]:
            return u * zx[i]
        if i == 0:  # the tail beyond R, by Marsaglia's exponential rejection
            while True:
                x = np.log(_uniform01(seed, c)) / _ZIG_R
                y = np.log(_uniform01(seed, c + np.uint64(1)))
                c += np.uint64(2)
                if -2.0 * y >= x * x:
                    return x - _ZIG_R if u < 0.0 else _ZIG_R - x
        x = u * zx[i]
        f0 = np.exp(-0.5 * (zx[i] * zx[i] - x * x))
        f1 = np.exp(-0.5 * (zx[i + 1] * zx[i + 1] - x * x))
        if f1 + _uniform01(seed, c) * (f0 - f1) < 1.0:
            return x
        c += np.uint64(1)


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _sample_gaussian(mean, std, low, high, seed, out, start, zx, zratio):
    B, H, nu = out.shape
    for b in numba.prange(start, B):
        for t in range(H):
            for j in range(nu):
                z = _normal(seed, (b * H + t) * nu + j, zx, zratio)
                out[b, t, j] = _clip(mean[t, j] + std[t, j] * z, low[j], high[j])


def sample_gaussian(mean, std, low, high, seed, out, start):
    """out[b] = clip(mean + std * N(0, 1), low, high) for b >= start.

    mean, std: (H, nu); low, high: (nu,); out: (B, H, nu).
    """
    _sample_gaussian(mean, std, low, high, seed, out, start, _ZIG_X, _ZIG_RATIO)


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


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _fill_normal(seed, out, start, zx, zratio):
    B = out.shape[0]
    m = out.size // B if B else 0
    flat = out.reshape(B, m)
    for b in numba.prange(start, B):
        for i in range(m):
            flat[b, i] = _normal(seed, b * m + i, zx, zratio)


def fill_normal(seed, out, start=0):
    """out[b] ~ N(0, 1) entry-wise for b >= start; out: C-contiguous (B, ...). Counter-based:
    entry (b, i) is a pure function of (seed, b, i)."""
    _fill_normal(seed, out, start, _ZIG_X, _ZIG_RATIO)


@numba.njit(cache=True, error_model="numpy")
def mppi_weights(U, costs, mean, sigma_inv, temperature, control_cost, weights):
    """Path-integral weights of the samples ``U: (B, H, nu)`` around ``mean: (H, nu)``.

    S_b = costs_b + control_cost * temperature * sum_t mean_t' sigma_inv (U_bt - mean_t);
    weights_b = exp(-(S_b - min S) / temperature) / sum (0 for a non-finite cost). Returns the
    effective sample size 1 / sum w^2 (0 when every cost is non-finite).
    """
    B, H, nu = U.shape
    S = np.empty(B)
    lo = np.inf
    gamma = control_cost * temperature
    for b in range(B):
        s = costs[b]
        if gamma != 0.0 and np.isfinite(s):
            acc = 0.0
            for t in range(H):
                for i in range(nu):
                    r = 0.0
                    for j in range(nu):
                        r += sigma_inv[i, j] * (U[b, t, j] - mean[t, j])
                    acc += mean[t, i] * r
            s += gamma * acc
        S[b] = s
        if np.isfinite(s) and s < lo:
            lo = s
    if not np.isfinite(lo):
        weights[:] = 0.0
        return 0.0
    total = 0.0
    for b in range(B):
        w = np.exp(-(S[b] - lo) / temperature) if np.isfinite(S[b]) else 0.0
        weights[b] = w
        total += w
    sq = 0.0
    for b in range(B):
        weights[b] /= total
        sq += weights[b] * weights[b]
    return 1.0 / sq


@numba.njit(cache=True, error_model="numpy")
def weighted_mean(U, weights, out):
    """out[t, j] = sum_b weights[b] U[b, t, j] (weights summing to one)."""
    B, H, nu = U.shape
    out[:] = 0.0
    for b in range(B):
        w = weights[b]
        if w != 0.0:
            for t in range(H):
                for j in range(nu):
                    out[t, j] += w * U[b, t, j]
