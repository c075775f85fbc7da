"""Fused rollout + quadratic cost of the analytic systems: lane-blocked kernel vs scalar one.

For pendulum-, cartpole- and acrobot-swingup (horizon 15, 500 action sequences, the planners'
fused path ``Problem.costs`` -> ``rollout_quadratic_cost_kernel``), prints the time per sample
and control step (ns; a control step is ``substeps`` RK4 steps plus one cost stage) of

- ``lane``: ``rollout_quadratic_cost_kernel``, blocks of samples vectorised across SIMD lanes;
- ``scalar``: ``_rollout_quadratic_cost_scalar``, one sample at a time (the previous kernel),

single-threaded and with 2 threads. Each figure is the median over ``--rounds`` rounds of the
median of ``--calls`` calls; the two kernels are timed in alternating rounds (the machine may be
shared). Also checks that both give bit-identical costs.

Usage: python benchmarks/analytic_rollout.py [--calls 200] [--rounds 5] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from recede.envs import get_task
from recede.models import analytic

TASKS = ("pendulum-swingup", "cartpole-swingup", "acrobot-swingup")


def median_call(fn, calls: int) -> float:
    times = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--horizon", type=int, default=15)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()

    kernels = {"lane": analytic.rollout_quadratic_cost_kernel}
    scalar = getattr(analytic, "_rollout_quadratic_cost_scalar", None)
    if scalar is not None:
        kernels["scalar"] = scalar

    rng = np.random.default_rng(0)
    print(f"B={args.samples} H={args.horizon}; ns per sample and control step "
          f"(median of {args.rounds} rounds x median of {args.calls} calls)")
    print(f"{'system':<18}{'substeps':>9}{'threads':>8}" + "".join(f"{k:>10}" for k in kernels)
          + ("   speed-up" if scalar is not None else ""))
    for name in TASKS:
        task = get_task(name)
        problem = task.problem(args.horizon)
        dyn, cost = problem.dynamics, problem.cost
        if not hasattr(dyn, "kernel_args"):  # a MuJoCo task
            continue
        cost = getattr(cost, "quadratic", cost)  # a swing-up cost: time its quadratic part
        x0 = np.array(task.initial_state, dtype=np.float64)
        U = rng.uniform(dyn.action_low, dyn.action_high, (args.samples, args.horizon, dyn.nu))
        outs = {k: np.empty(args.samples) for k in kernels}
        kargs = (*dyn.kernel_args, x0, U, *cost.kernel_args)
        calls = {k: (lambda f=f, o=outs[k], a=kargs: f(*a, o)) for k, f in kernels.items()}
        for c in calls.values():
            c()
        if scalar is not None and not np.array_equal(outs["lane"], outs["scalar"]):
            raise SystemExit(f"{name}: lane and scalar costs differ")
        steps = args.samples * args.horizon
        for nthreads in args.threads:
            numba.set_num_threads(nthreads)
            for c in calls.values():
                c()
            res = {k: [] for k in kernels}
            for _ in range(args.rounds):
                for k, c in calls.items():
                    res[k].append(median_call(c, args.calls))
            ns = {k: float(np.median(v)) * 1e9 / steps for k, v in res.items()}
            line = f"{name:<18}{dyn.substeps:>9}{nthreads:>8}" + "".join(
                f"{ns[k]:>10.1f}" for k in kernels)
            if scalar is not None:
                line += f"{ns['scalar'] / ns['lane']:>10.2f}x"
            print(line, flush=True)


if __name__ == "__main__":
    main()
