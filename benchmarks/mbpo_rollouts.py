"""MBPO's hot path, branched model rollouts, against its bare limit: one step of ``branch``
(elites' Gaussians, a random elite per row, the task's reward and termination, the penalty) for
``N`` states vs. the bare batched matmuls of the same sizes (the elites' MLP layers on ``(E, N,
d)``, nothing else), both in the precision the CPU runs fastest.

    python benchmarks/mbpo_rollouts.py [--task hopper] [--states 10000 100000] [--rounds 5]

The model is an untrained ensemble of MBPO's size (7 members, 5 elites, 4 x 200 hidden) with the
task's state and action sizes; untrained weights cost the same as trained ones. Precision:
bfloat16 where the CPU has AVX512-BF16 or AMX (``recede.models.ensemble.native_bf16``), else
float32 (emulated bfloat16 is slower than float32 there). Prints the best of ``rounds`` for each
and the ratio (share of the bare limit reached).
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch
import torch.nn.functional as F

from recede.envs import ModelEnv, get_task
from recede.models.ensemble import native_bf16
from recede.policy_learning.dyna import branch
from recede.policy_learning.pets import model_for


def best_of(fn, rounds: int) -> float:
    fn()
    best = np.inf
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="hopper")
    ap.add_argument("--states", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    task = get_task(args.task)
    bf16 = native_bf16()
    model = model_for(task, members=7, elites=5, hidden=200, layers=4,
                      precision="bfloat16" if bf16 else "float32")
    rule = ModelEnv(task, 1, dynamics=model)
    env = task.make_env()
    env.reset(seed=0)
    x0 = task.state_of(env)
    env.close()
    nx, nu = model.nx, model.nu
    layers, _, _ = model._inf
    E = len(layers)
    print(f"task {task.name}: nx={nx}, nu={nu}; {E} elites of {len(layers[0]) - 1} x "
          f"{layers[0][0][0].shape[0]} hidden; precision {'bfloat16' if bf16 else 'float32'}; "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'states':>8} {'branch ms':>10} {'bare ms':>9} {'of bare':>8} {'transitions/s':>14}")
    for N in args.states:
        rng = np.random.default_rng(0)
        X = x0 + 0.01 * rng.standard_normal((N, nx))
        U = rng.uniform(rule.action_low, rule.action_high, size=(N, nu))

        def one_step():
            branch(model, rule, X, 1, lambda X_, t: U, np.random.default_rng(1))

        feats = torch.randn(N, model.d_in).expand(E, N, model.d_in)  # one input for every elite, as branch has
        ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

        def bare():
            with torch.inference_mode(), ctx():
                for k in range(E):  # the elites' layers as (out, in) matrices: F.linear, MKL's fastest here
                    h = feats[k]
                    for w, b in layers[k][:-1]:
                        h = F.silu(F.linear(h, w, b), inplace=True)
                    F.linear(h, *layers[k][-1])

        tb, tt = best_of(one_step, args.rounds), best_of(bare, args.rounds)
        print(f"{N:>8} {tb * 1e3:>10.1f} {tt * 1e3:>9.1f} {tt / tb:>8.0%} {N / tb:>14,.0f}")


if __name__ == "__main__":
    main()
