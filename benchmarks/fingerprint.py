"""Fingerprint closed-loop runs (states, actions, rewards) of every planner on every task.

Refactors that promise "same seed, same plan" are checked by running this script before and after
and diffing the outputs: every line is ``task planner seed -> sha256`` of the run's states,
actions and rewards (or the error it raised). Runs go through the ``recede run`` command line,
whose interface stays fixed, inside one process so the kernels compile once.

    python benchmarks/fingerprint.py --steps 15 --out before.txt
    python benchmarks/fingerprint.py --steps 15 --out after.txt && diff before.txt after.txt
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile

TASKS = ("pendulum-swingup", "cartpole-swingup", "acrobot-swingup", "unicycle-parking",
         "double-integrator", "cartpole-swingup-mj", "inverted-pendulum", "half-cheetah")
PLANNERS = ("random", "cem", "icem", "mppi", "lqr", "ilqr", "ddp", "mcts")


def fingerprint(task: str, planner: str, seed: int, steps: int) -> str:
    from recede.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "run.json")
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main(["run", task, "--planner", planner, "--seed", str(seed), "--steps", str(steps),
                         "--json", path, "--no-progress"])
        if code != 0:
            return f"exit {code}: {err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else ''}"
        with open(path, encoding="utf-8") as f:
            log = json.load(f)["log"]
    blob = json.dumps([log["states"], log["actions"], log["rewards"]]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--planners", default=",".join(PLANNERS))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    lines = []
    for task in args.tasks.split(","):
        for planner in args.planners.split(","):
            for seed in range(args.seeds):
                line = f"{task} {planner} {seed} -> {fingerprint(task, planner, seed, args.steps)}"
                print(line, flush=True)
                lines.append(line)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
