"""Small Numba numerics for the hot loops.

``sincos(x)`` returns ``(sin x, cos x)`` together, inlined into the caller: one range reduction
shared by both, no libm calls. The analytic systems evaluate a sine and a cosine at every RK4
stage, and libm's two calls were most of a rollout's time.

Method: Cody-Waite reduction ``x = n pi/2 + r`` with pi/2 split into three parts (the first two
with 33 significant bits, so ``n * part`` is exact for ``|n| < 2^20``), then Taylor polynomials
on ``|r| <= pi/4`` carried to the z^19 (sine) and z^18 (cosine) terms, whose truncation errors
(< 1e-19) are far below half an ulp. Results agree with libm to within 1-2 ulp (the tests check
against ``math.sin``/``math.cos``). Outside ``|x| < 1e6`` (and for NaN/inf) it defers to libm.

``sincos_poly(x)`` is the same computation without that branch (identical bits for
``|x| < 1e6``), for loops that must vectorise across SIMD lanes; it is less accurate beyond.
"""

import math

import numba
import numpy as np

_INV_PIO2 = 0.6366197723675814
_PIO2_1 = 1.5707963267341256  # first 33 bits of pi/2
_PIO2_2 = 6.077100506303966e-11  # next 33 bits
_PIO2_3 = 2.0222662487959506e-21  # the rest, rounded

# 1/n! with alternating signs
_S3, _S5, _S7 = -1.0 / 6.0, 1.0 / 120.0, -1.0 / 5040.0
_S9, _S11, _S13 = 1.0 / 362880.0, -1.0 / 39916800.0, 1.0 / 6227020800.0
_S15, _S17 = -1.0 / 1307674368000.0, 1.0 / 355687428096000.0
_C2, _C4, _C6 = -0.5, 1.0 / 24.0, -1.0 / 720.0
_C8, _C10, _C12 = 1.0 / 40320.0, -1.0 / 3628800.0, 1.0 / 479001600.0
_C14, _C16 = -1.0 / 87178291200.0, 1.0 / 20922789888000.0
_C18 = -1.0 / 6402373705728000.0


@numba.njit(cache=True, inline="always", error_model="numpy")
def sincos_poly(x):
    """(sin x, cos x) for a float x, branch-free: the polynomial path of ``sincos`` for every x.

    The same bits as ``sincos`` for ``|x| < 1e6``. Beyond that there is no libm fallback and the
    reduction loses accuracy: errors grow like ``|x| * 2^-53``, so past ~1e15 the results are
    meaningless (and may leave [-1, 1]); NaN and inf give NaN. Only diverged states get there.
    Only float arithmetic and selects, no integer conversion or call, so a loop of it over SIMD
    lanes vectorises (the lane-blocked rollouts in ``recede.models.analytic`` use it for all
    arguments).
    """
    n = np.floor(x * _INV_PIO2 + 0.5)
    r = ((x - n * _PIO2_1) - n * _PIO2_2) - n * _PIO2_3
    z = r * r
    s = r + r * z * (_S3 + z * (_S5 + z * (_S7 + z * (_S9 + z * (_S11 + z * (
        _S13 + z * (_S15 + z * _S17)))))))
    c = 1.0 + z * (_C2 + z * (_C4 + z * (_C6 + z * (_C8 + z * (_C10 + z * (
        _C12 + z * (_C14 + z * (_C16 + z * _C18))))))))
    # quadrant q = n mod 4 (exact in floats), applied by selects, not branches (q is
    # unpredictable in a batch): sin x = [s, c, -s, -c][q], cos x = [c, -s, -c, s][q]
    q = n - 4.0 * np.floor(0.25 * n)
    swap = (q == 1.0) | (q == 3.0)
    sin_x = (c if swap else s) * (-1.0 if q >= 2.0 else 1.0)
    cos_x = (s if swap else c) * (-1.0 if (q == 1.0) | (q == 2.0) else 1.0)
    return sin_x, cos_x


@numba.njit(cache=True, inline="always", error_model="numpy")
def sincos(x):
    """(sin x, cos x) for a float x: ``sincos_poly`` for ``|x| < 1e6``, else libm."""
    if not abs(x) < 1e6:
        return math.sin(x), math.cos(x)
    return sincos_poly(x)
