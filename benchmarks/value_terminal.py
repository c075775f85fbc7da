"""A learned value as the terminal cost: does a short horizon plan like a long one (POLO)?

    python benchmarks/value_terminal.py fit TASK --planner cem --out DIR [--episodes 10 --polo-rounds 2]
    python benchmarks/value_terminal.py compare TASK --planner cem --value DIR --long 40 --short 13 \
        [--seeds 0..4] [--steps N] [--json PATH]

``fit`` runs ``recede fit-value``'s pipeline (closed-loop MPC data, n-step targets, a value
ensemble). ``compare`` runs, in one invocation and on the same seeds, MPC at the long horizon
without a value and at the short horizon with it (and, as the control, at the short horizon
without it), and prints per arm: successes, return mean and std over seeds, the median planning
time per step and the samples per plan. Timings are this machine's; compare the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recede.envs import get_task  # noqa: E402
from recede.experiments import episode_spec, run_episode  # noqa: E402
from recede.experiments.episode import summarize  # noqa: E402
from recede.policies import load_value  # noqa: E402


def seeds_arg(text: str) -> list[int]:
    if ".." in text:
        a, b = text.split("..")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def options_arg(items):
    out = {}
    for item in items or []:
        k, _, v = item.partition("=")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def cmd_fit(args) -> None:
    from recede.policy_learning.value import ValueConfig, collect_episodes, fit_value

    task = get_task(args.task)
    H = args.horizon or task.horizon_for(args.planner)
    Hv = args.value_horizon or max(1, H // 3)
    cfg = ValueConfig(members=args.members, n_step=args.n_step, discount=args.discount, rounds=args.fit_rounds)
    episodes, value, t0 = [], None, time.perf_counter()
    for r in range(args.polo_rounds):
        new = collect_episodes(task, args.planner, horizon=H if r == 0 else Hv, episodes=args.episodes,
                               seed=1000 + r * args.episodes, value=value, noise=args.noise, steps=args.steps,
                               options=options_arg(args.option),
                               spread=None if args.spread is None else [float(v) for v in args.spread.split(",")])
        episodes += new
        np.savez(args.out + ".episodes.npz", **{f"X{i}": e.X for i, e in enumerate(episodes)},
                 **{f"c{i}": e.c for i, e in enumerate(episodes)},
                 terminated=np.array([e.terminated for e in episodes]))
        fit = fit_value(episodes, config=cfg, seed=0, task=task)
        value = fit.value
        returns = [-float(e.c.sum()) for e in new]
        print(f"round {r}: horizon {H if r == 0 else Hv}, return {np.mean(returns):.2f} +- {np.std(returns):.2f}, "
              f"{fit.states} states, held-out RMSE {fit.holdout_rmse[-1]:.4g}, fit {fit.seconds:.1f} s", flush=True)
    value.save(args.out, planner=args.planner, horizon=H, value_horizon=Hv, noise=args.noise,
               polo_rounds=args.polo_rounds, collect_seeds="1000..")
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f} s (data seeds from 1000: apart from "
          f"the evaluation seeds)")


def cmd_compare(args) -> None:
    task = get_task(args.task)
    value = load_value(args.value, task)
    arms = [(f"H={args.long}", args.long, None), (f"H={args.short} + value", args.short, value)]
    if not args.no_control:
        arms.append((f"H={args.short}", args.short, None))
    rows = []
    for name, H, v in arms:
        logs = []
        for seed in args.seeds:
            spec = episode_spec(task, args.planner, options_arg(args.option), seed=seed, horizon=H,
                                steps=args.steps)
            logs.append(run_episode(spec, value=v).log)
            print(f"  {name:<16} seed {seed}: return {logs[-1].total_return:9.2f}  success "
                  f"{logs[-1].success}", flush=True)
        row = summarize(name, logs)
        row["horizon"] = H
        rows.append(row)
    base_ms = rows[0]["plan_ms_median"]
    print(f"\n{task.name}, {args.planner}, seeds {args.seeds[0]}..{args.seeds[-1]}, "
          f"{args.steps or task.episode_steps} steps")
    print(f"{'arm':<18}{'success':>9}{'return mean +- std':>24}{'plan ms (median)':>18}{'x long':>8}")
    for r in rows:
        ok = "n/a" if r["successes"] is None else f"{r['successes']}/{r['runs']}"
        print(f"{r['planner']:<18}{ok:>9}{r['return_mean']:>14.2f} +- {r['return_std']:<7.2f}"
              f"{r['plan_ms_median']:>18.2f}{r['plan_ms_median'] / base_ms:>8.2f}")
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump({"task": task.name, "planner": args.planner, "seeds": args.seeds, "rows": rows}, f, indent=1)
        os.replace(args.json + ".tmp", args.json)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit")
    f.add_argument("task")
    f.add_argument("--planner", default="cem")
    f.add_argument("--out", required=True)
    f.add_argument("--horizon", type=int, default=None)
    f.add_argument("--value-horizon", type=int, default=None)
    f.add_argument("--episodes", type=int, default=10)
    f.add_argument("--polo-rounds", type=int, default=1)
    f.add_argument("--noise", type=float, default=0.0)
    f.add_argument("--members", type=int, default=5)
    f.add_argument("--n-step", type=int, default=None)
    f.add_argument("--discount", type=float, default=1.0)
    f.add_argument("--fit-rounds", type=int, default=1, help="fitted value iteration rounds per fit")
    f.add_argument("--option", action="append")
    f.add_argument("--steps", type=int, default=None, help="most steps per episode")
    f.add_argument("--spread", default=None, help="start states: the task's +- these, comma-separated")
    f.set_defaults(func=cmd_fit)
    c = sub.add_parser("compare")
    c.add_argument("task")
    c.add_argument("--planner", default="cem")
    c.add_argument("--value", required=True)
    c.add_argument("--long", type=int, required=True)
    c.add_argument("--short", type=int, required=True)
    c.add_argument("--seeds", type=seeds_arg, default=list(range(5)))
    c.add_argument("--steps", type=int, default=None)
    c.add_argument("--option", action="append")
    c.add_argument("--no-control", action="store_true", help="skip the short horizon without a value")
    c.add_argument("--json", default=None)
    c.set_defaults(func=cmd_compare)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
