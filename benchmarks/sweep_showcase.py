"""Return against samples per planning step for CEM, iCEM and MPPI (issue 22's showcase), as
three sweeps, their reports, and where iCEM matches CEM with fewer samples.

    python benchmarks/sweep_showcase.py --out DIR [--tasks acrobot-swingup,cartpole-swingup,HalfCheetah-v5]
                                        [--seeds 0..4]

Each task: ``--grid planner=cem,icem,mppi --grid samples=12,25,50,100,200 --option iterations=4
--seeds 0..4`` (4 iterations of 12-200 samples: 48-800 rollouts per planning step; HalfCheetah-v5
with 300-step episodes), the same as::

    recede sweep --task TASK --grid planner=cem,icem,mppi --grid samples=12,25,50,100,200 \\
        --option iterations=4 --seeds 0..4 --out DIR/showcase-TASK [--steps 300]
    recede sweep-report DIR/showcase-TASK

Finished trials are kept: rerunning resumes. Besides each report it plots the return against the
rollouts each planner actually evaluates per planning step (``return-vs-rollouts.png``: iCEM's
population decay evaluates about 0.74x CEM's rollouts at the same ``samples``) and prints, for
every CEM budget, the fewest rollouts at which iCEM's (and MPPI's) mean return is at least CEM's
there, with the 95% intervals, so that "fewer samples" is read with its uncertainty.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SAMPLES = (12, 25, 50, 100, 200)
ITERATIONS = 4
STEPS = {"HalfCheetah-v5": 300}


def sweep_for(task: str, seeds: str = "0..4"):
    from recede.sweeps import SweepSpec

    fixed = {"task": task, "iterations": ITERATIONS}
    if task in STEPS:
        fixed["steps"] = STEPS[task]
    return SweepSpec.make("run", {"planner": ["cem", "icem", "mppi"], "samples": list(SAMPLES)}, seeds, fixed)


def rollouts_per_step(task: str, summaries) -> dict:
    """Sequences each config evaluates per planning step: the records' own count where they carry
    it, else measured by a 3-step probe of the config (iCEM's population decay makes it about
    0.74x CEM's at the same ``samples``)."""
    from recede.sweeps import SweepSpec, run_trial

    out = {}
    for s in summaries:
        planner, samples = s.config["planner"], s.config["options"]["samples"]
        probe = SweepSpec.make("run", {"planner": [planner]}, [0],
                               {"task": task, "steps": 3, "samples": samples, "iterations": ITERATIONS})
        out[(planner, samples)] = run_trial(probe.trials()[0])["summary"]["samples_per_plan"]
    return out


def matches(summaries, rollouts, better: str, than: str) -> list[str]:
    """For each budget of ``than``, the fewest rollouts per step at which ``better``'s mean return
    is at least ``than``'s there."""
    by = {(s.config["planner"], s.config["options"]["samples"]): s for s in summaries}
    lines = []
    for b in SAMPLES:
        ref = by[(than, b)]
        hit = next((c for c in sorted(SAMPLES, key=lambda c: rollouts[(better, c)])
                    if by[(better, c)].mean >= ref.mean), None)
        if hit is None:
            what = f"{better} never, up to {rollouts[(better, SAMPLES[-1])]:.0f}"
        else:
            ratio = rollouts[(better, hit)] / rollouts[(than, b)]
            what = (f"{better} at {rollouts[(better, hit)]:.0f} ({by[(better, hit)].mean:.4g} ± "
                    f"{by[(better, hit)].ci95:.3g}), {ratio:.2f}x the rollouts")
        lines.append(f"  {than} at {rollouts[(than, b)]:4.0f} rollouts/step: {ref.mean:.4g} ± {ref.ci95:.3g} -> {what}")
    return lines


def plot_vs_rollouts(task, summaries, rollouts, path):
    from recede.plotting import SweepSeries, plot_sweep_vs

    series = []
    for planner in ("cem", "icem", "mppi"):
        mine = sorted((s for s in summaries if s.config["planner"] == planner),
                      key=lambda s: rollouts[(planner, s.config["options"]["samples"])])
        x = np.array([rollouts[(planner, s.config["options"]["samples"])] for s in mine])
        series.append(SweepSeries(planner, x, np.array([s.mean for s in mine]), np.array([s.ci95 for s in mine])))
    plot_sweep_vs(series, path, xlabel="rollouts per planning step", title=f"{task}: return (mean, 95% CI over {summaries[0].n} seeds)")
    return series


def main(argv=None) -> int:
    from recede.sweeps import run_sweep
    from recede.sweeps.report import load_results, report, summarize

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tasks", default="acrobot-swingup,cartpole-swingup,HalfCheetah-v5")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--seeds", default="0..4", help="seeds of every config (default 0..4, the issue's)")
    args = ap.parse_args(argv)
    for task in args.tasks.split(","):
        d = os.path.join(args.out, f"showcase-{task}")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "results.jsonl")
        run_sweep(sweep_for(task, args.seeds), path, workers=args.workers)
        out = report(path, x="samples")
        print(f"== {task} ({ITERATIONS} iterations x samples = rollouts per planning step)")
        print(out["table"])
        summaries = summarize(load_results(path)[1])
        rollouts = rollouts_per_step(task, summaries)
        print("rollouts per planning step: " + ", ".join(
            f"{p} {'/'.join(f'{rollouts[(p, c)]:.0f}' for c in SAMPLES)}" for p in ("cem", "icem", "mppi")))
        print("iCEM against CEM:")
        print("\n".join(matches(summaries, rollouts, "icem", "cem")))
        print("CEM against iCEM:")
        print("\n".join(matches(summaries, rollouts, "cem", "icem")))
        print("MPPI against CEM:")
        print("\n".join(matches(summaries, rollouts, "mppi", "cem")))
        extra = os.path.join(d, "return-vs-rollouts.png")
        plot_vs_rollouts(task, summaries, rollouts, extra)
        print("plots: " + ", ".join(out["plots"] + [extra]))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
