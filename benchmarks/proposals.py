"""A trained policy's proposals inside a sampling planner, at equal samples (TD-MPC, LOOP).

    python benchmarks/proposals.py TASK --policy DIR --planner cem [--option samples=60 ...] \
        [--share 0.25] [--seeds 0..2] [--steps 300] [--json PATH]

Runs, on the same seeds in one invocation: the policy alone, the planner without proposals and
the planner with ``--share`` of its samples from the policy's closed-loop rollouts (same samples
per plan). Prints per arm the return mean and std over seeds and the median planning time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recede.envs import get_task  # noqa: E402
from recede.experiments import episode_spec, run_episode  # noqa: E402
from recede.experiments.episode import run_controller, summarize  # noqa: E402
from recede.policies import load_policy  # noqa: E402


def seeds_arg(text):
    if ".." in text:
        a, b = text.split("..")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task")
    p.add_argument("--policy", required=True)
    p.add_argument("--planner", default="cem")
    p.add_argument("--option", action="append", default=[])
    p.add_argument("--share", type=float, default=0.25)
    p.add_argument("--horizon", type=int, default=None)
    p.add_argument("--seeds", type=seeds_arg, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    task = get_task(args.task)
    policy = load_policy(args.policy, task)
    options = {}
    for item in args.option:
        k, _, v = item.partition("=")
        options[k] = json.loads(v)
    rows = []
    logs = []
    for seed in args.seeds:
        env = task.make_env()
        try:
            logs.append(run_controller(task, env, policy, seed=seed, steps=args.steps))
        finally:
            env.close()
        print(f"  policy alone seed {seed}: return {logs[-1].total_return:9.2f}", flush=True)
    rows.append(summarize("policy alone", logs))
    for name, share in ((f"{args.planner}", 0.0), (f"{args.planner} + proposals {args.share:g}", args.share)):
        logs = []
        for seed in args.seeds:
            spec = episode_spec(task, args.planner, {**options, "proposal_share": share}, seed=seed,
                                steps=args.steps, horizon=args.horizon)
            logs.append(run_episode(spec, proposal_policy=policy if share > 0 else None).log)
            print(f"  {name} seed {seed}: return {logs[-1].total_return:9.2f}", flush=True)
        rows.append(summarize(name, logs))
    print(f"\n{task.name}, {args.planner} {options}, seeds {args.seeds}, {args.steps or task.episode_steps} steps")
    print(f"{'arm':<28}{'return mean +- std':>24}{'plan ms':>10}{'samples/plan':>14}")
    for r in rows:
        spp = "" if r["samples_per_plan"] is None else f"{r['samples_per_plan']:.0f}"
        print(f"{r['planner']:<28}{r['return_mean']:>14.2f} +- {r['return_std']:<7.2f}{r['plan_ms_median']:>10.1f}{spp:>14}")
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump({"task": task.name, "planner": args.planner, "options": options, "share": args.share,
                       "seeds": args.seeds, "rows": rows}, f, indent=1, default=float)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
