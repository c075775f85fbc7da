"""Planning time per step with a learned terminal value against the long horizon, same states.

    python benchmarks/value_plan_time.py TASK --planner cem --value DIR --long 40 --short 13 [--states 40]

Runs MPC at the long horizon for ``--states`` steps from seed 0, then times one plan from each
visited state at the long horizon (the task's own cost, fused kernels where the model has them)
and at the short horizon with the value as the terminal cost, interleaved, and prints the
medians and their ratio. Run it on a quiet machine: both arms use the same cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recede.envs import get_task  # noqa: E402
from recede.experiments import episode_spec, run_episode  # noqa: E402
from recede.experiments.episode import layer_options  # noqa: E402
from recede.planners.registry import make_planner  # noqa: E402
from recede.policies import load_value  # noqa: E402
from recede.policy_learning.value import value_problem  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task")
    p.add_argument("--planner", default="cem")
    p.add_argument("--value", required=True)
    p.add_argument("--long", type=int, required=True)
    p.add_argument("--short", type=int, required=True)
    p.add_argument("--states", type=int, default=40)
    args = p.parse_args()
    task = get_task(args.task)
    value = load_value(args.value, task)
    log = run_episode(episode_spec(task, args.planner, seed=0, horizon=args.long, steps=args.states)).log
    opts = layer_options(args.planner, task)
    long_p = make_planner(args.planner, task.problem(args.long), **opts)
    short_p = make_planner(args.planner, value_problem(task.problem(args.short), value), **opts)
    for pl in (long_p, short_p):  # warm: compile, load
        pl.plan(log.states[0], rng=0)
    t_long, t_short = [], []
    for i, x in enumerate(log.states[:-1]):
        for pl, out in ((long_p, t_long), (short_p, t_short)):
            t0 = time.perf_counter()
            pl.plan(x, rng=i)
            out.append(time.perf_counter() - t0)
    a, b = np.median(t_long) * 1e3, np.median(t_short) * 1e3
    print(f"{task.name} {args.planner}: {len(t_long)} states; plan ms median: H={args.long} {a:.2f}, "
          f"H={args.short} + value {b:.2f}; ratio {b / a:.2f}")


if __name__ == "__main__":
    main()
