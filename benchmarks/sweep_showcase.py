"""Return against samples per planning step for CEM, iCEM and MPPI (issue 22's showcase), as
three sweeps, their reports, and where iCEM matches CEM with fewer samples.

    python benchmarks/sweep_showcase.py --out DIR [--tasks acrobot-swingup,cartpole-swingup,HalfCheetah-v5]

Each task: ``--grid planner=cem,icem,mppi --grid samples=12,25,50,100,200 --option iterations=4
--seeds 0..4`` (4 iterations of 12-200 samples: 48-800 rollouts per planning step; HalfCheetah-v5
with 300-step episodes), the same as::

    recede sweep --task TASK --grid planner=cem,icem,mppi --grid samples=12,25,50,100,200 \\
        --option iterations=4 --seeds 0..4 --out DIR/showcase-TASK [--steps 300]
    recede sweep-report DIR/showcase-TASK

Finished trials are kept: rerunning resumes. Besides each report, it prints for every CEM budget
the smallest iCEM budget whose mean return is at least CEM's there (and the same against MPPI),
with the 95% intervals, so that "fewer samples" is read with its uncertainty.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SAMPLES = (12, 25, 50, 100, 200)
ITERATIONS = 4
STEPS = {"HalfCheetah-v5": 300}


def sweep_for(task: str):
    from recede.sweeps import SweepSpec

    fixed = {"task": task, "iterations": ITERATIONS}
    if task in STEPS:
        fixed["steps"] = STEPS[task]
    return SweepSpec.make("run", {"planner": ["cem", "icem", "mppi"], "samples": list(SAMPLES)}, "0..4", fixed)


def matches(summaries, better: str, than: str) -> list[str]:
    """For each budget of ``than``, the smallest budget at which ``better``'s mean return is at
    least ``than``'s there."""
    by = {(s.config["planner"], s.config["options"]["samples"]): s for s in summaries}
    lines = []
    for b in SAMPLES:
        ref = by[(than, b)]
        hit = next((c for c in SAMPLES if by[(better, c)].mean >= ref.mean), None)
        what = (f"{better} at {hit * ITERATIONS} ({by[(better, hit)].mean:.4g} ± {by[(better, hit)].ci95:.3g})"
                if hit is not None else f"{better} at no budget up to {SAMPLES[-1] * ITERATIONS}")
        lines.append(f"  {than} at {b * ITERATIONS:4d} rollouts/step: {ref.mean:.4g} ± {ref.ci95:.3g} -> {what}")
    return lines


def main(argv=None) -> int:
    from recede.sweeps import run_sweep
    from recede.sweeps.report import load_results, report, summarize

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tasks", default="acrobot-swingup,cartpole-swingup,HalfCheetah-v5")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    for task in args.tasks.split(","):
        d = os.path.join(args.out, f"showcase-{task}")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "results.jsonl")
        run_sweep(sweep_for(task), path, workers=args.workers)
        out = report(path, x="samples")
        print(f"== {task} ({ITERATIONS} iterations x samples = rollouts per planning step)")
        print(out["table"])
        summaries = summarize(load_results(path)[1])
        print("iCEM against CEM:")
        print("\n".join(matches(summaries, "icem", "cem")))
        print("CEM against iCEM:")
        print("\n".join(matches(summaries, "cem", "icem")))
        print("plots: " + ", ".join(out["plots"]))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
