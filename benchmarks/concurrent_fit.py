"""Two processes each fitting an ensemble at the same time, against one alone, with and without
``GOMP_SPINCOUNT`` reaching torch's OpenMP.

``recede._threads`` sets ``GOMP_SPINCOUNT=1e7`` (~0.27 s of spinning before an idle OpenMP worker
sleeps) for Numba's MPC kernels. torch ships its own ``libgomp.so.1`` (``torch/lib``), which reads
the variable once, when it is loaded. Modes:

- ``spin``: ``import recede`` first (the variable is set), then torch: what a user gets today.
- ``scoped``: ``import recede``, then the variable is removed before torch loads its libgomp.
- ``unset``: no ``GOMP_SPINCOUNT`` at all (libgomp's default).
- ``passive``: as ``spin``, with ``OMP_WAIT_POLICY=PASSIVE`` for torch (idle workers sleep at once).
- ``one-thread``: as ``spin``, with ``torch.set_num_threads(1)`` in each process (what a sweep
  worker sharing the cores with others should do).

Prints the median fit time of one process alone and of each of two started together, and their
ratio (1 = the two did not slow each other; 2 = they shared the cores evenly; more = spinning
threads stole time from working ones).

    python benchmarks/concurrent_fit.py [--repeats 3] [--rows 4000] [--epochs 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def worker(args) -> None:
    if args.mode == "unset":
        os.environ.pop("GOMP_SPINCOUNT", None)
    import recede  # noqa: F401  (sets GOMP_SPINCOUNT unless already set)

    if args.mode == "scoped":
        os.environ.pop("GOMP_SPINCOUNT", None)
    if args.mode == "passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    import numpy as np
    import torch

    if args.mode == "one-thread":
        torch.set_num_threads(1)

    from recede.data import TransitionDataset
    from recede.models.ensemble import Ensemble

    rng = np.random.default_rng(0)
    n, nx, nu = args.rows, 4, 1
    X = rng.normal(size=(n, nx))
    U = rng.uniform(-1, 1, size=(n, nu))
    data = TransitionDataset(
        observations=X, actions=U, next_observations=X + 0.1 * np.tanh(X) + 0.05 * U,
        rewards=rng.normal(size=n), terminated=np.zeros(n, bool), truncated=np.zeros(n, bool),
        episode_ids=np.arange(n) // 200)
    model = Ensemble(nx, nu, members=5, hidden=200, layers=4, seed=0)
    model.fit(data.subset(np.arange(min(n, 500))), epochs=1)  # warm-up: allocator, autograd
    # wait for the start signal so that concurrent workers fit at the same time
    while time.time() < args.start_at:
        time.sleep(0.005)
    t = time.perf_counter()
    model.fit(data, epochs=args.epochs, patience=args.epochs + 1, seed=1)
    print(json.dumps({"fit_s": time.perf_counter() - t, "threads": torch.get_num_threads(),
                      "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT")}))


def run(mode: str, k: int, args) -> list[float]:
    start_at = time.time() + args.lead
    cmd = [sys.executable, __file__, "--worker", "--mode", mode, "--rows", str(args.rows),
           "--epochs", str(args.epochs), "--start-at", repr(start_at)]
    env = {key: v for key, v in os.environ.items() if key != "GOMP_SPINCOUNT"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(k)]
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"worker failed ({p.returncode})")
        out.append(json.loads(stdout.strip().splitlines()[-1])["fit_s"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--modes", default="spin,scoped,unset")
    ap.add_argument("--lead", type=float, default=15.0, help="seconds for workers to import")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="spin", help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    print(f"cpus {os.cpu_count()}, rows {args.rows}, epochs {args.epochs}, "
          f"repeats {args.repeats} (median)")
    print(f"{'mode':8} {'alone s':>8} {'2 at once s':>12} {'ratio':>6}")
    for mode in args.modes.split(","):
        alone, pair = [], []
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits both
            alone += run(mode, 1, args)
            pair += run(mode, 2, args)
        a, p = statistics.median(alone), statistics.median(pair)
        print(f"{mode:8} {a:8.2f} {p:12.2f} {p / a:6.2f}", flush=True)


if __name__ == "__main__":
    main()
