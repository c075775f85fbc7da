"""Score saved policies on one common set of held-out starts of a task: success rate and cost.

GPS, its behaviour-cloning baseline (``recede gps --kl-to previous``) and SAC (``recede
train-policy``) write policies; this script runs each, deterministic, from the same held-out
resets (seeds from ``--heldout-seed``, apart from every GPS condition) and prints, per label,
the success rate (the task's own criterion: Reacher's fingertip within 0.02 of the target at the
end) and the cost (minus the return) as mean ± std over the label's policies (seeds).

    python benchmarks/gps_heldout.py reacher gps=runs/gps_s0/policy gps=runs/gps_s1/policy \\
        sac=runs/sac/seed_0 --episodes 20
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def main(argv=None) -> int:
    from recede.envs import get_task
    from recede.policies import load_policy
    from recede.policy_learning.gps import heldout_evaluator

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("task")
    ap.add_argument("policies", nargs="+", metavar="LABEL=DIR", help="a label and a saved policy directory")
    ap.add_argument("--episodes", type=int, default=20, help="held-out episodes (default: 20)")
    ap.add_argument("--heldout-seed", type=int, default=1000,
                    help="seed of the held-out set (default: 1000; GPS runs' conditions use their run seed)")
    args = ap.parse_args(argv)
    task = get_task(args.task)
    evaluate = heldout_evaluator(task, args.episodes, seed=args.heldout_seed)
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for item in args.policies:
        label, _, path = item.partition("=")
        if not path:
            ap.error(f"policies: want LABEL=DIR, got {item!r}")
        policy = load_policy(path, task)
        success, cost = evaluate(policy)
        groups[label].append((success, cost))
        print(f"{label:>12}  {path}: success {success:.0%}, cost {cost:.3f}", flush=True)
    print(f"\n{task.name}: {args.episodes} held-out episodes (seed {args.heldout_seed}); "
          f"success: {task.describe_success()}")
    print(f"{'label':>12}  {'policies':>8}  {'success mean ± std':>20}  {'cost mean ± std':>18}")
    for label, rows in groups.items():
        s = np.array([r[0] for r in rows]) * 100
        c = np.array([r[1] for r in rows])
        print(f"{label:>12}  {len(rows):>8}  {s.mean():>9.1f}% ± {s.std():4.1f}%  {c.mean():>9.3f} ± {c.std():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
