"""Offline RL from one logged dataset: behaviour cloning vs. MBPO without and with MOPO's
pessimistic penalty, seeds 0..2, each evaluated in the real env.

    python benchmarks/offline_mbpo.py fit  --task hopper --data D.hdf5 --out DIR [--epochs 100]
    python benchmarks/offline_mbpo.py bc   --task hopper --data D.hdf5 --out DIR [--updates 20000]
    python benchmarks/offline_mbpo.py mbpo --task hopper --data D.hdf5 --out DIR --penalty L --seed S
                                           [--steps 20000] [--option NAME=VALUE ...]
    python benchmarks/offline_mbpo.py summary --data D.hdf5 --out DIR

``fit`` trains one ensemble on the dataset (MBPO's size, held-out early stopping) and saves it in
``DIR/model``; every ``mbpo`` run starts from that model (the runs differ in the learner's seed and
the penalty, not in the model). ``bc`` regresses the dataset's actions on its observations (the
task's features), seeds 0..2 as one batched network, and evaluates each seed. ``mbpo`` runs
:func:`recede.policy_learning.dyna.dyna` offline into ``DIR/mbpo_l<L>_s<S>`` (resumable: run the
same command again). ``summary`` prints the dataset's own average episode return and each method's
final evaluation, mean +- std over seeds.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import time

import numpy as np
import torch

from recede.data import load_d4rl_hdf5
from recede.envs import get_task
from recede.models.ensemble import Ensemble, TrainConfig, torch_threads
from recede.policies import DeterministicPolicyNet, task_sizes
from recede.policy_learning.common import evaluate, write_evals_csv
from recede.policy_learning.dyna import apply_options, dyna, mbpo_config
from recede.policy_learning.pets import model_for

SEEDS = (0, 1, 2)


def offline_config(task, args):
    # MOPO's hopper settings where they are not MBPO's: rollouts of k = 5 branched from the data,
    # one SAC update per iteration, the model buffer keeping 5 epochs of 1000 iterations
    opts = {"steps": str(args.steps), "rollout_schedule": "0,0,5,5", "sac.updates_per_step": "1",
            "rollout_every": "1000", "rollouts": "50", "epoch_length": "1000", "retain": "5",
            "eval_every": str(args.eval_every), "checkpoint_every": "5000", "penalty": str(args.penalty)}
    opts.update(dict(o.split("=", 1) for o in args.option))
    return apply_options(mbpo_config(task), opts)


def cmd_fit(args):
    task = get_task(args.task)
    ds = load_d4rl_hdf5(args.data)
    cfg = mbpo_config(task)
    opts = cfg.model.to_json()
    opts.pop("angle_dims")
    model = model_for(task, seed=0, **opts)
    t = time.perf_counter()
    with torch_threads(args.threads):
        res = model.fit(ds, TrainConfig(holdout=0.2, patience=5, epochs=args.epochs, seed=0))
    model.save(os.path.join(args.out, "model"))
    print(f"fit {len(ds)} transitions: {len(res.epochs)} epochs, held-out MSE {np.mean(res.best_holdout_mse):.4f} "
          f"(normalised), elites {res.elites}, {time.perf_counter() - t:.0f} s")


def cmd_bc(args):
    task = get_task(args.task)
    ds = load_d4rl_hdf5(args.data)
    _, nobs, nu = task_sizes(task)
    env = task.make_env()
    low, high = env.action_space.low, env.action_space.high
    env.close()
    obs = torch.as_tensor(task.observation(np.asarray(ds.observations)), dtype=torch.float32)
    act = torch.as_tensor(np.asarray(ds.actions), dtype=torch.float32)
    K = len(SEEDS)
    t0 = time.perf_counter()
    with torch_threads(1):
        net = DeterministicPolicyNet(K, nobs, nu, low, high, seeds=list(SEEDS))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        gens = [torch.Generator().manual_seed(s) for s in SEEDS]
        for _ in range(args.updates):
            idx = torch.stack([torch.randint(0, len(ds), (256,), generator=g) for g in gens])  # (K, B)
            loss = (net(obs[idx]) - act[idx]).pow(2).mean(dim=(1, 2)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def act_fn(feats):
            with torch.inference_mode():
                return net(torch.as_tensor(feats, dtype=torch.float32)[:, None]).double().numpy()[:, 0]

        logs = evaluate(task, act_fn, list(SEEDS), episodes=args.episodes, env_steps=args.updates, t0=t0,
                        eval_round=0)
    os.makedirs(os.path.join(args.out, "bc"), exist_ok=True)
    write_evals_csv(os.path.join(args.out, "bc", "evals.csv"), logs)
    for e in logs:
        print(f"bc seed {e.seed}: {e.return_mean:.1f} +- {e.return_std:.1f} after {args.updates} updates")


def cmd_mbpo(args):
    task = get_task(args.task)
    ds = load_d4rl_hdf5(args.data)
    cfg = offline_config(task, args)
    run = os.path.join(args.out, f"mbpo_l{args.penalty:g}_s{args.seed}")
    resume = os.path.isdir(os.path.join(run, "checkpoint"))
    model = None if resume else Ensemble.load(os.path.join(args.out, "model"))

    def on_eval(logs):
        e = logs[0]
        print(f"{run}: iteration {e.env_steps} return {e.return_mean:.1f} +- {e.return_std:.1f} "
              f"wall {e.wall_s:.0f} s", flush=True)

    res = dyna(task, cfg, seed=args.seed, dataset=ds, model=model, out=run, resume=resume, device=args.device,
               on_eval=on_eval)
    u = res.model_buffer
    print(f"{run}: done; timings {json.dumps({k: round(v, 1) for k, v in res.timings.items()})}; "
          f"synthetic transitions {len(u)}")


def _final(path):
    rows = list(csv.DictReader(open(path)))
    last = max(int(r["env_steps"]) for r in rows)
    return {int(r["seed"]): float(r["return_mean"]) for r in rows if int(r["env_steps"]) == last}, last


def cmd_summary(args):
    ds = load_d4rl_hdf5(args.data)
    rets = ds.episode_returns()
    print(f"dataset: {len(ds)} transitions, {len(rets)} episodes, return {np.mean(rets):.1f} +- {np.std(rets):.1f}")
    groups = {"bc": [os.path.join(args.out, "bc", "evals.csv")]}
    for p in sorted(glob.glob(os.path.join(args.out, "mbpo_l*_s*", "evals.csv"))):
        groups.setdefault(os.path.basename(os.path.dirname(p)).rsplit("_s", 1)[0], []).append(p)
    for name, paths in groups.items():
        finals, steps = {}, set()
        for p in paths:
            if os.path.exists(p):
                f, last = _final(p)
                finals.update(f)
                steps.add(last)
        if finals:
            v = np.array(list(finals.values()))
            print(f"{name:>12}: {v.mean():.1f} +- {v.std():.1f} over seeds {sorted(finals)} "
                  f"(per seed {[round(float(x), 1) for x in v]}; at {sorted(steps)} updates/iterations)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmd", choices=("fit", "bc", "mbpo", "summary"))
    ap.add_argument("--task", default="hopper")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--updates", type=int, default=20_000)
    ap.add_argument("--episodes", type=int, default=5)
    ap.add_argument("--penalty", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--eval-every", type=int, default=5_000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--option", action="append", default=[])
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    {"fit": cmd_fit, "bc": cmd_bc, "mbpo": cmd_mbpo, "summary": cmd_summary}[args.cmd](args)


if __name__ == "__main__":
    main()
