"""ModelEnv's speed against its bare limit: ``ModelEnv.step`` vs. the model's own batched
``dynamics.step`` on the same states, in environment steps (copies x calls) per second.

    python benchmarks/model_env.py [--envs 256] [--calls 100]

Models: the analytic cart-pole (``cartpole-swingup``) and an untrained ``Ensemble`` of the
default size (5 members, 4 x 200 hidden) on the same task. The ratio is what the env adds on
top of the model step: actions clipped, reward, termination, observation, autoreset.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from recede.envs import ModelEnv, get_task
from recede.models.ensemble import Ensemble


def rates(fns, calls: int, envs: int, rounds: int = 5) -> list[float]:
    """Env steps per second of each of ``fns``, best of ``rounds`` interleaved rounds (the best
    round is the one least disturbed by other work on the machine)."""
    best = [np.inf] * len(fns)
    for fn in fns:
        fn()  # warm: kernels loaded, buffers allocated
    for _ in range(rounds):
        for k, fn in enumerate(fns):
            t = time.perf_counter()
            for _ in range(calls):
                fn()
            best[k] = min(best[k], time.perf_counter() - t)
    return [envs * calls / b for b in best]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", type=int, default=256)
    ap.add_argument("--calls", type=int, default=100)
    args = ap.parse_args()
    N, calls = args.envs, args.calls
    task = get_task("cartpole-swingup")
    true = task.dynamics()
    models = {"analytic": true,
              "ensemble": Ensemble(true.nx, true.nu, dt=true.dt, action_low=true.action_low,
                                   action_high=true.action_high, angle_dims=true.angle_dims)}
    rng = np.random.default_rng(0)
    U = rng.uniform(true.action_low, true.action_high, size=(N, true.nu))
    print(f"cartpole-swingup, N={N} envs, {calls} calls each (env steps per second)")
    for name, model in models.items():
        env = ModelEnv(task, N, dynamics=model)
        env.reset(seed=0)
        X = env.states
        full, bare = rates([lambda: env.step(U), lambda: model.step(X, U)], calls, N)
        print(f"  {name:9s} ModelEnv.step {full:12,.0f}/s   bare dynamics.step {bare:12,.0f}/s   "
              f"ratio {full / bare:.2f}")


if __name__ == "__main__":
    main()
