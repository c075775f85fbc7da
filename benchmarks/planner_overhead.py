"""How close the planners get to the bare limit, and whether the MPC loop stalls.

Prints, all measured in this one run (medians of repeated timings):
1. CEM (1000 samples, horizon 50, 5 iterations) on cartpole: wall time / 5 bare calls of the
   same Numba rollout kernel on a preallocated batch (target <= 1.25).
2. The Numba rollout against a vectorised numpy implementation of the same cartpole RK4
   dynamics, same batch (target >= 3x).
3. A 300-step closed-loop CEM-MPC run on cartpole-swingup paced at the task's control period:
   p99 / median planning time (target <= 1.5; thread-pool wake-up stalls would show here).
4. Resident memory at the start and end of a 2,000-step MPC run (should not grow).

Usage: python benchmarks/planner_overhead.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import recede
from recede.models.analytic import CartPole, rollout_kernel


def once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def numpy_cartpole_rollout(dyn: CartPole, x0: np.ndarray, U: np.ndarray) -> np.ndarray:
    """The same RK4 cart-pole as the Numba kernel, vectorised over the batch with numpy."""
    mc, mp, l, g = dyn.params

    def f(x, u):
        th, xd, thd = x[:, 1], x[:, 2], x[:, 3]
        s, c = np.sin(th), np.cos(th)
        xdd = (u + mp * s * (l * thd * thd - g * c)) / (mc + mp * s * s)
        thdd = (g * s - c * xdd) / l
        return np.stack([xd, thd, xdd, thdd], axis=1)

    B, H, _ = U.shape
    X = np.empty((B, H + 1, 4))
    X[:, 0] = x0
    h = dyn.dt / dyn.substeps
    x = X[:, 0].copy()
    for t in range(H):
        u = U[:, t, 0]
        for _ in range(dyn.substeps):
            k1 = f(x, u)
            k2 = f(x + 0.5 * h * k1, u)
            k3 = f(x + 0.5 * h * k2, u)
            k4 = f(x + h * k3, u)
            x = x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
        X[:, t + 1] = x
    return X


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()

    task = recede.get_task("cartpole-swingup")
    dyn = task.dynamics()
    B, H, iters = 1000, 50, 5
    rng = np.random.default_rng(0)
    x0 = np.array([0.0, np.pi, 0.0, 0.0])
    U = rng.uniform(dyn.action_low, dyn.action_high, size=(B, H, 1))
    X = np.empty((B, H + 1, 4))
    x0b = np.ascontiguousarray(np.broadcast_to(x0, (B, 4)))

    # 1. planner overhead over the bare kernel: the two timed alternately, so that both see the
    # same state of this shared machine; the ratio is the median of the per-pair ratios
    planner = recede.CEM(task.problem(H, dyn), samples=B, iterations=iters)

    def bare_calls():
        for _ in range(iters):
            rollout_kernel(*dyn.kernel_args, x0b, U, X)

    plan = lambda: planner.plan(x0, rng=0)  # noqa: E731
    plan(), bare_calls()  # load the kernels
    pairs = np.array([(once(plan), once(bare_calls)) for _ in range(args.repeats)])
    cem, bare5 = np.median(pairs, axis=0)
    bare = bare5 / iters
    ratio = float(np.median(pairs[:, 0] / pairs[:, 1]))
    print(f"1. CEM {B} samples x H {H} x {iters} iterations: {cem * 1e3:.2f} ms; "
          f"{iters} bare rollouts {bare5 * 1e3:.2f} ms; ratio {ratio:.3f} (target <= 1.25)")

    # 2. numba against numpy on the same dynamics
    Xn = numpy_cartpole_rollout(dyn, x0, U)
    rollout_kernel(*dyn.kernel_args, x0b, U, X)
    assert np.allclose(Xn, X, rtol=1e-10, atol=1e-10), "numpy reference disagrees with the kernel"
    t_np = median_time(lambda: numpy_cartpole_rollout(dyn, x0, U), max(3, args.repeats // 3))
    print(f"2. rollout {B} x {H}: numba {bare * 1e3:.2f} ms, numpy {t_np * 1e3:.2f} ms, "
          f"speed-up {t_np / bare:.1f}x (target >= 3x)")

    # 3. paced closed loop: planning-time tail
    mpc = recede.MPC(recede.CEM(task.problem(), **task.planner_defaults["cem"]), rng=0)
    mpc.act(x0)  # load the kernels
    mpc.reset(0)
    times, x = [], x0.copy()
    next_tick = time.perf_counter()
    for _ in range(300):
        u = mpc.act(x)
        times.append(mpc.last_plan_time)
        x = dyn.step_one(x, u)
        next_tick += dyn.dt
        time.sleep(max(0.0, next_tick - time.perf_counter()))
    t = np.array(times) * 1e3
    print(f"3. paced MPC, 300 steps at dt = {dyn.dt} s: median {np.median(t):.2f} ms, "
          f"p99 {np.percentile(t, 99):.2f} ms, p99/median {np.percentile(t, 99) / np.median(t):.2f} "
          f"(target <= 1.5)")

    # 4. memory over a long run
    mpc.reset(1)
    x = x0.copy()
    start = None
    for i in range(2000):
        x = dyn.step_one(x, mpc.act(x))
        if i == 99:
            start = rss_mb()
    print(f"4. RSS over 2,000 MPC steps: {start:.1f} MiB after 100 steps, {rss_mb():.1f} MiB at the end")


if __name__ == "__main__":
    main()
