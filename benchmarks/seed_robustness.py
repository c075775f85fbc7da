"""Seed robustness of every planner's task defaults on the swing-ups: successes over seeds 0..N-1.

Each cell runs one closed-loop episode exactly as ``recede run TASK --planner P --seed S`` does
(``recede.experiments.run_episode``: the planner's defaults, then the task's, judged by the
task's own success criterion). A sampling planner or MCTS is listed for a task when the task advertises
defaults for it (``recede tasks``); iLQR and DDP are listed for every swing-up. Results are bit-identical for a seed on one machine, not across CPUs:
a robust default succeeds on (nearly) every seed, so a marginal seed that flips on another CPU
does not turn the suite red.

    python benchmarks/seed_robustness.py --seeds 20                    # the full table
    python benchmarks/seed_robustness.py --tasks cartpole-swingup --planners icem --seeds 20
    python benchmarks/seed_robustness.py --seeds 20 --out table.json   # also write every cell

Rows are written as they finish (``--out`` is rewritten after every cell, temp file then
rename), and ``--resume`` skips cells already in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

SWINGUPS = ("pendulum-swingup", "cartpole-swingup", "acrobot-swingup", "cartpole-swingup-mj")
PLANNERS = ("random", "cem", "icem", "mppi", "ilqr", "ddp", "mcts")


def advertised(task_name: str, planner: str) -> bool:
    from recede.envs import get_task

    task = get_task(task_name)
    # iLQR/DDP run on every model with their own defaults; the others where the task tunes them
    return planner in task.planner_defaults or planner in ("ilqr", "ddp")


def margins(task, states, dt: float) -> tuple[float | None, float | None]:
    """How far from failing a run is, by the task's hold criterion: ``slack`` seconds between
    settling into the success band for good and the start of the judged window (negative: it
    settled too late), and ``band``, the largest |error| / tolerance inside the window (above 1:
    it left the band). (None, None) for tasks judged otherwise."""
    import numpy as np

    crit = getattr(task, "success", None)
    if not hasattr(crit, "tolerances"):
        return None, None
    err = states[:, list(crit.dims)] - np.array(crit.targets)
    err = np.where(np.array(crit.angles), np.angle(np.exp(1j * err)), err)
    ratio = np.max(np.abs(err) / np.array(crit.tolerances), axis=1)  # (T+1,)
    n = crit.hold_steps(dt)
    band = float(ratio[-(n + 1):].max())
    outside = np.flatnonzero(ratio > 1.0)
    settle = 0 if outside.size == 0 else int(outside[-1]) + 1  # first step of the final stay
    window = states.shape[0] - 1 - n
    return (window - settle) * dt, band


def run_cell(task_name: str, planner: str, seed: int) -> dict:
    from recede.envs import get_task
    from recede.experiments import episode_spec, run_episode

    start = time.perf_counter()
    episode = run_episode(episode_spec(task_name, planner, {}, seed=seed))
    log = episode.log
    slack, band = margins(get_task(task_name), log.states, float(episode.problem.dynamics.dt))
    return {"task": task_name, "planner": planner, "seed": seed, "success": bool(log.success),
            "return": float(log.total_return), "final_state": [float(v) for v in log.states[-1]],
            "slack_s": slack, "band": band, "seconds": time.perf_counter() - start}


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _write(path: str, cells: list[dict]) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(cells, f, indent=1)
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(SWINGUPS))
    parser.add_argument("--planners", default=",".join(PLANNERS))
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 (default: 20)")
    parser.add_argument("--out", default=None, help="JSON file of every cell")
    parser.add_argument("--resume", action="store_true", help="skip cells already in --out")
    args = parser.parse_args()

    cells: list[dict] = []
    if args.resume and args.out and os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as f:
            cells = json.load(f)
    done = {(c["task"], c["planner"], c["seed"]) for c in cells}
    rows = []
    for task_name in args.tasks.split(","):
        for planner in args.planners.split(","):
            if not advertised(task_name, planner):
                continue
            for seed in range(args.seeds):
                if (task_name, planner, seed) in done:
                    continue
                cell = run_cell(task_name, planner, seed)
                cells.append(cell)
                if args.out:
                    _write(args.out, cells)
                mark = "ok " if cell["success"] else "NO "
                print(f"  {task_name:20s} {planner:6s} seed {seed:2d}  {mark} return {cell['return']:9.2f}"
                      f"  slack {_num(cell.get('slack_s'))} s  band {_num(cell.get('band'))}"
                      f"  {cell['seconds']:6.1f} s", flush=True)
            rows.append((task_name, planner))

    print()
    print("slack: seconds between settling into the success band for good and the start of the")
    print("judged window (the least over the successful seeds); band: the largest |error| / tolerance")
    print("inside the window (the most over the successful seeds; 1 is the edge).")
    print(f"{'task':22s} {'planner':8s} {'successes':>10s}  {'slack s':>7s}  {'band':>5s}  failing seeds")
    worst = None
    for task_name, planner in rows:
        mine = [c for c in cells if c["task"] == task_name and c["planner"] == planner
                and c["seed"] < args.seeds]
        wins = sum(c["success"] for c in mine)
        failing = ",".join(str(c["seed"]) for c in sorted(mine, key=lambda c: c["seed"])
                           if not c["success"])
        ok = [c for c in mine if c["success"] and c.get("slack_s") is not None]
        slack = min((c["slack_s"] for c in ok), default=None)
        band = max((c["band"] for c in ok), default=None)
        print(f"{task_name:22s} {planner:8s} {wins:>4d} / {len(mine):<4d}  {_num(slack):>7s}  "
              f"{_num(band):>5s}  {failing or '-'}")
        worst = wins if worst is None else min(worst, wins)
    return 0


if __name__ == "__main__":
    sys.exit(main())
