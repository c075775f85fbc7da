"""recede's SAC against stable-baselines3's SAC, in one invocation, and seeds as a batch.

    python benchmarks/sac.py [--env Hopper-v5] [--learning-starts 1000] [--measure 1000] [--seeds 5]

Setup (the same for both): Hopper-v5, 256 x 256 networks (``--hidden``), batch 256, one gradient update per env
step, one torch thread, CPU. Measured: env steps per second after learning starts (the update
dominates), over ``--measure`` steps, from a callback's timestamps (SB3: ``BaseCallback``; recede:
``on_step``), evaluation excluded. Then seeds as a batch: ``--seeds`` agents in one recede process
(one batched module) against ``--seeds`` times the wall time of one seed.

Each learner runs in its own subprocess, one after another, so neither shares threads or caches
with the other. Ratios compare runs of this invocation only (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_OURS = """
import json, time, torch
torch.set_num_threads(1)
from recede.policy_learning.sac import sac, SACConfig
a = json.loads({args!r})
marks = {{}}
def on_step(t):
    if t in (a["start"], a["stop"]):
        marks[t] = time.perf_counter()
cfg = SACConfig(steps=a["stop"] + 1, learning_starts=a["learning_starts"], batch_size=256, hidden=tuple(a["hidden"]),
                updates_per_step=1, eval_every=10**9, eval_episodes=1, threads=1)
sac(a["env"], cfg, seeds=list(range(a["seeds"])), on_step=on_step)
print(json.dumps({{"steps_per_s": (a["stop"] - a["start"]) / (marks[a["stop"]] - marks[a["start"]])}}))
"""

_SB3 = """
import json, time, torch
torch.set_num_threads(1)
import gymnasium as gym
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
a = json.loads({args!r})
class Marks(BaseCallback):
    def __init__(self):
        super().__init__()
        self.t = {{}}
    def _on_step(self):
        if self.num_timesteps in (a["start"], a["stop"]):
            self.t[self.num_timesteps] = time.perf_counter()
        return True
m = SAC("MlpPolicy", gym.make(a["env"]), learning_starts=a["learning_starts"], batch_size=256, train_freq=1,
        gradient_steps=1, policy_kwargs=dict(net_arch=list(a["hidden"])), seed=0, device="cpu")
cb = Marks()
m.learn(a["stop"] + 1, callback=cb)
print(json.dumps({{"steps_per_s": (a["stop"] - a["start"]) / (cb.t[a["stop"]] - cb.t[a["start"]])}}))
"""


def run(code: str, args: dict) -> float:
    out = subprocess.run([sys.executable, "-c", code.format(args=json.dumps(args))], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["steps_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="Hopper-v5")
    ap.add_argument("--learning-starts", type=int, default=1000)
    ap.add_argument("--measure", type=int, default=1000, help="env steps timed after learning starts")
    ap.add_argument("--seeds", type=int, default=5, help="agents in the seeds-as-a-batch run")
    ap.add_argument("--hidden", default="256,256", help="layer widths of every network (default 256,256)")
    ap.add_argument("--skip-sb3", action="store_true")
    a = ap.parse_args()
    base = {"env": a.env, "learning_starts": a.learning_starts, "start": a.learning_starts + 50,
            "stop": a.learning_starts + 50 + a.measure, "hidden": [int(h) for h in a.hidden.split(",")]}
    ours = run(_OURS, {**base, "seeds": 1})
    print(f"recede SAC, 1 seed:        {ours:8.1f} env steps/s", flush=True)
    if not a.skip_sb3:
        sb3 = run(_SB3, base)
        print(f"stable-baselines3 SAC:     {sb3:8.1f} env steps/s", flush=True)
        print(f"speed-up over SB3:         {ours / sb3:8.2f}x", flush=True)
    batch = run(_OURS, {**base, "seeds": a.seeds})
    print(f"recede SAC, {a.seeds} seeds batched: {batch:8.1f} env steps/s per agent "
          f"({a.seeds * batch:.1f} agent-steps/s)", flush=True)
    print(f"{a.seeds}-seed batch wall / 1-seed wall: {ours / batch:6.2f}x "
          f"(running the {a.seeds} seeds one after another: {a.seeds:.2f}x)")


if __name__ == "__main__":
    main()
