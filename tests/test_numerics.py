"""The inlined sincos against libm."""

import math

import numba
import numpy as np

from recede._numerics import sincos


@numba.njit
def _both(x, s, c):
    for i in range(x.shape[0]):
        s[i], c[i] = sincos(x[i])


def test_sincos_agrees_with_libm_to_an_ulp_or_two():
    rng = np.random.default_rng(0)
    x = np.concatenate([
        rng.uniform(-10, 10, 200_000), rng.uniform(-1e5, 1e5, 100_000),
        np.arange(-200, 201) * (math.pi / 2),  # the reduction's worst cases
        np.arange(-200, 201) * (math.pi / 2) + 1e-9,
        [0.0, -0.0, 1e-300, math.pi / 4, 3 * math.pi / 4, 2e6, -3e7, np.inf, -np.inf, np.nan],
    ])
    s, c = np.empty_like(x), np.empty_like(x)
    _both(x, s, c)
    ref_s = np.array([math.sin(v) if math.isfinite(v) else np.nan for v in x])
    ref_c = np.array([math.cos(v) if math.isfinite(v) else np.nan for v in x])
    finite = np.isfinite(x)
    # within 2 ulp of 1 in absolute terms, everywhere
    assert np.abs(s - ref_s)[finite].max() <= 2.5e-16
    assert np.abs(c - ref_c)[finite].max() <= 2.5e-16
    assert np.all(np.isnan(s[~finite])) and np.all(np.isnan(c[~finite]))
    # most results are bit-identical to libm
    assert np.mean(s[finite] == ref_s[finite]) > 0.8 and np.mean(c[finite] == ref_c[finite]) > 0.8
    # relative accuracy for small arguments, where sin x ~ x
    small = np.abs(x) < 1e-3
    np.testing.assert_allclose(s[small & finite], ref_s[small & finite], rtol=3e-16, atol=0)
