"""Wall time of one 20-trial sweep of analytic-task episodes (cartpole-swingup, CEM and MPPI at
their task defaults, seeds 0..9), serial and on the local pool, measured in the same invocation
(issue 22 asked for the pool with 2 workers to take <= 0.55x the serial time on 2 cores).

    python benchmarks/sweep_speedup.py [--workers 2] [--steps 160]

Three timings, each after the Numba cache is warm and recede imported:
- serial: ``workers=1`` in this process, whose Numba kernels run their rollouts on every core
  (the default);
- serial, one thread: the same in a child process held to one Numba/OpenMP/BLAS thread (as each
  pool worker is); its imports are not timed;
- pool: ``workers`` spawned worker processes of one thread each; the time includes starting
  them (imports, cache loads), which ``startup`` estimates as the pool's time minus the one-thread
  trial time divided among the workers.

The pool's parallelism is across trials; the serial run's is across the samples inside each
plan. Against the default serial run the pool gains only what the serial run's parallel kernels
leave on the table; against a one-thread serial run it gains up to ``workers``x less the workers'
start-up. See the printed lines for this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _sweep(steps: int, seeds=range(10)):
    from recede.sweeps import SweepSpec

    return SweepSpec.make("run", {"planner": ["cem", "mppi"]}, list(seeds), {"task": "cartpole-swingup", "steps": steps})


def _timed(sweep, path, workers):
    from recede.sweeps import run_sweep

    t0 = time.perf_counter()
    records = run_sweep(sweep, path, workers=workers)
    return time.perf_counter() - t0, records


def _child(steps: int, path: str) -> None:
    """The one-thread serial run (this process was started with one thread of everything)."""
    with tempfile.TemporaryDirectory() as d:
        _timed(_sweep(2, [99]), os.path.join(d, "warm.jsonl"), 1)
    t, records = _timed(_sweep(steps), path, 1)
    print(json.dumps({"wall": t, "trial_s": sum(r["timing"]["wall_s"] for r in records)}))


def strip(records):
    return [{k: v for k, v in r.items() if k != "timing"} for r in records]


def main(argv=None) -> int:
    from recede.sweeps.runner import ONE_THREAD

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=160)
    ap.add_argument("--child", metavar="PATH", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args.steps, args.child)
        return 0
    sweep = _sweep(args.steps)
    n = len(sweep.trials())
    with tempfile.TemporaryDirectory() as d:
        _timed(_sweep(2, [99]), os.path.join(d, "warm.jsonl"), 1)  # Numba's cache loaded (or compiled) first
        t_serial, serial = _timed(sweep, os.path.join(d, "serial.jsonl"), 1)
        env = {**os.environ, **ONE_THREAD, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--steps", str(args.steps), "--child",
                              os.path.join(d, "one.jsonl")], env=env, capture_output=True, text=True, check=True)
        one = json.loads(out.stdout.strip().splitlines()[-1])
        t_pool, pooled = _timed(sweep, os.path.join(d, "pool.jsonl"), args.workers)
        with open(os.path.join(d, "one.jsonl")) as f:
            one_records = [json.loads(x) for x in f.read().splitlines()[1:]]
    order = {t.id: i for i, t in enumerate(sweep.trials())}
    one_records.sort(key=lambda r: order[r["id"]])
    same = strip(serial) == strip(pooled) == strip(one_records)
    startup = t_pool - one["trial_s"] / args.workers
    print(f"{n} trials of cartpole-swingup ({args.steps} steps each), records equal on all three: {same}")
    print(f"  serial (Numba on every core) {t_serial:6.1f} s")
    print(f"  serial, one thread           {one['wall']:6.1f} s")
    print(f"  pool of {args.workers} one-thread workers  {t_pool:6.1f} s  (start-up about {startup:.1f} s)")
    print(f"  pool / serial = {t_pool / t_serial:.2f};  pool / serial one thread = {t_pool / one['wall']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
