"""Wall time of one 20-trial sweep of analytic-task episodes, serial and on the local pool,
measured in the same invocation (issue 22: the pool with 2 workers should take <= 0.55x the
serial time on a 2-core machine).

    python benchmarks/sweep_speedup.py [--workers 2] [--steps 160]

Measured here (2 cores): serial 14.7-19.4 s, 2 workers 14.0-18.3 s (0.94-0.98x): the serial
run already spreads its parallel Numba rollouts over both cores. With the whole process held to
one Numba thread (NUMBA_NUM_THREADS=1 python benchmarks/sweep_speedup.py) serial takes 25.9 s and
the pool 16.9 s (0.65x). A forkserver that imports recede once before forking workers measured
the same as spawn (0.95x against 0.98x), so the pool keeps spawn.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from recede.sweeps import SweepSpec, run_sweep

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=160)
    args = ap.parse_args(argv)
    sweep = SweepSpec.make("run", {"planner": ["cem", "mppi"]}, range(10),
                           {"task": "cartpole-swingup", "steps": args.steps})
    n = len(sweep.trials())
    with tempfile.TemporaryDirectory() as d:
        run_sweep(SweepSpec.make("run", {"planner": ["cem", "mppi"]}, [99], {"task": "cartpole-swingup", "steps": 2}),
                  os.path.join(d, "warm.jsonl"), workers=1)  # Numba's cache loaded/compiled first
        t0 = time.perf_counter()
        serial = run_sweep(sweep, os.path.join(d, "serial.jsonl"), workers=1)
        t_serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        pooled = run_sweep(sweep, os.path.join(d, "pool.jsonl"), workers=args.workers)
        t_pool = time.perf_counter() - t0
    same = all({k: v for k, v in a.items() if k != "timing"} == {k: v for k, v in b.items() if k != "timing"}
               for a, b in zip(serial, pooled))
    print(f"{n} trials of cartpole-swingup ({args.steps} steps): serial {t_serial:.1f} s, "
          f"{args.workers} workers {t_pool:.1f} s, ratio {t_pool / t_serial:.2f}; records equal: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
