"""Thread-pool settings applied before Numba starts its pool.

An MPC loop calls a parallel kernel every few milliseconds and sleeps in between. GNU OpenMP's
worker threads go to sleep after a short spin and take milliseconds to wake, which showed up as a
7 ms stall on the first kernel call after each idle period (see benchmarks/planner_overhead.py).
Spinning for about a quarter of a second covers any control period we run at, and costs nothing
while kernels are busy. Users who set these variables themselves keep their values.
"""

import os

# ~27 ns per spin here: 1e7 spins ~ 0.27 s of waiting before a worker sleeps.
os.environ.setdefault("GOMP_SPINCOUNT", "10000000")
# Intel's OpenMP runtime (if Numba was linked against it) reads this instead.
os.environ.setdefault("KMP_BLOCKTIME", "300")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
