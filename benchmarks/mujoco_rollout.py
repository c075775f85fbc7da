"""MuJoCo rollouts through recede against the bare ``mujoco.rollout`` and a Python loop.

Prints, all measured in this one run on HalfCheetah-v5 (1000 sequences x 30 control steps x
frame_skip 5 = 150,000 physics steps per batch), medians of repeated timings:

1. ``Problem.costs`` (what a planner calls: rollout + divergence check + the reward cost) /
   one bare ``mujoco.rollout`` call of the same work on a persistent pool with preallocated
   outputs and pre-expanded controls (target <= 1.10). Each pair is timed back to back,
   alternating, and the median per-pair ratio is reported (the machine is noisy).
2. The same for ``MujocoDynamics.rollout`` alone (states only, no cost).
3. A plain Python ``mj_step`` loop over the same batch on one MjData / recede's batch: the
   speed-up from the thread pool and from leaving Python.

Usage: python benchmarks/mujoco_rollout.py [--repeats 9] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time

import mujoco
import numpy as np
from mujoco import rollout as mj_rollout

from recede.envs import get_task
from recede.models.mujoco import MujocoDynamics, default_threads


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def paired_ratio(ours, bare, repeats: int):
    ours(), bare()
    a, b = [], []
    for i in range(repeats):
        if i % 2:
            b.append(timed(bare)); a.append(timed(ours))
        else:
            a.append(timed(ours)); b.append(timed(bare))
    a, b = np.array(a), np.array(b)
    return float(np.median(a / b)), float(np.median(a)), float(np.median(b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--horizon", type=int, default=30)
    args = parser.parse_args()

    task = get_task("HalfCheetah-v5")
    env = task.make_env()
    env.reset(seed=0)
    x0 = task.state_of(env)
    dyn = MujocoDynamics(env.unwrapped.model, frame_skip=env.unwrapped.frame_skip, nthread=args.threads)
    problem = task.problem(args.horizon, dynamics=dyn)
    B, H, fs, m = args.batch, args.horizon, dyn.frame_skip, dyn.model
    rng = np.random.default_rng(0)
    U = rng.uniform(dyn.action_low, dyn.action_high, size=(B, H, dyn.nu))
    print(f"HalfCheetah-v5: {B} sequences x {H} control steps x frame_skip {fs} = "
          f"{B * H * fs:,} physics steps per batch; {args.threads} threads; "
          f"mujoco {mujoco.__version__}; {os.cpu_count()} cpus")

    # the bare limit: one persistent pool, outputs preallocated, controls already expanded
    pool = mj_rollout.Rollout(nthread=0 if args.threads == 1 else args.threads)
    datas = [mujoco.MjData(m) for _ in range(args.threads)]
    init = dyn.full_state(np.tile(x0, (B, 1)))
    ctrl = np.ascontiguousarray(np.repeat(U, fs, axis=1))
    nstate = mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_FULLPHYSICS.value)
    state = np.empty((B, H * fs, nstate))
    sens = np.empty((B, H * fs, m.nsensordata))
    models = [m] * B

    def bare():
        pool.rollout(models, datas, init, ctrl, skip_checks=True, nstep=H * fs,
                     initial_warmstart=None, state=state, sensordata=sens, chunk_size=None,
                     control_spec=mujoco.mjtState.mjSTATE_CTRL.value)

    ratio, t_costs, t_bare = paired_ratio(lambda: problem.costs(x0, U), bare, args.repeats)
    print(f"1. Problem.costs {t_costs * 1e3:8.1f} ms  bare mujoco.rollout {t_bare * 1e3:8.1f} ms  "
          f"ratio {ratio:.3f}  (target <= 1.10)")
    ratio2, t_roll, t_bare2 = paired_ratio(lambda: dyn.rollout(x0, U), bare, args.repeats)
    print(f"2. MujocoDynamics.rollout {t_roll * 1e3:8.1f} ms  bare {t_bare2 * 1e3:8.1f} ms  "
          f"ratio {ratio2:.3f}")

    d = mujoco.MjData(m)

    def python_loop():
        for b in range(B):
            mujoco.mj_setState(m, d, init[b], mujoco.mjtState.mjSTATE_FULLPHYSICS.value)
            d.qacc_warmstart[:] = 0.0
            for t in range(H):
                d.ctrl[:] = U[b, t]
                for _ in range(fs):
                    mujoco.mj_step(m, d)

    loops = [timed(python_loop) for _ in range(max(3, args.repeats // 3))]
    ours = [timed(lambda: problem.costs(x0, U)) for _ in range(max(3, args.repeats // 3))]
    print(f"3. Python mj_step loop {np.median(loops) * 1e3:8.1f} ms  recede {np.median(ours) * 1e3:8.1f} ms"
          f"  speed-up {np.median(loops) / np.median(ours):.2f}x")

    pool.close()
    env.close()


if __name__ == "__main__":
    main()
