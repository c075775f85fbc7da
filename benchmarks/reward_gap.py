"""How far the planning reward is from the Gymnasium reward on the robots where they differ.

For each task, random actions from the env's action space drive the env for up to ``--steps``
steps (until termination) over ``--seeds`` seeds. The planning model steps in lockstep from the
env's exact data, and the planning cost's per-step rewards are compared with the env's:
mean |env reward|, mean and max |env - planning|, and for Ant and Humanoid how much of the gap
is the contact cost the planning reward leaves out. Exact tasks are listed as a control (their
gap must print 0).

Usage: python benchmarks/reward_gap.py [--steps 1000] [--seeds 3]
"""

from __future__ import annotations

import argparse

import numpy as np

from recede.envs import get_task
from recede.envs.robots import lockstep_replay

def replay(task, seed: int, steps: int):
    rep = lockstep_replay(task, seed, steps)
    r, _ = rep.cost.rewards(rep.X[None], rep.U[None], rep.S[None])
    contact = np.array([-info.get("reward_contact", 0.0) for info in rep.infos])
    return r[0], rep.rewards, contact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'task':<20} {'steps':>6} {'mean|r_env|':>12} {'mean|gap|':>10} {'max|gap|':>10} "
          f"{'mean contact':>13} {'max|gap-contact|':>17}")
    for gym_id in ["InvertedPendulum-v5", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5",
                   "Reacher-v5", "Ant-v5", "Humanoid-v5"]:
        task = get_task(gym_id)
        ours, env, contact = [], [], []
        for seed in range(args.seeds):
            a, b, c = replay(task, seed, args.steps)
            ours.append(a), env.append(b), contact.append(c)
        ours, env, contact = map(np.concatenate, (ours, env, contact))
        gap = env - ours
        print(f"{gym_id:<20} {len(env):>6} {np.mean(np.abs(env)):>12.4f} {np.mean(np.abs(gap)):>10.2e} "
              f"{np.max(np.abs(gap)):>10.2e} {np.mean(contact):>13.2e} "
              f"{np.max(np.abs(gap + contact)):>17.2e}")


if __name__ == "__main__":
    main()
