"""Our MPPI against pytorch-mppi (PyPI ``pytorch-mppi``) on the pendulum swing-up, in one run.

Both plan on the same model (``pendulum-swingup``: RK4 pendulum, dt 0.05, |u| <= 2.5; written
once more in torch for pytorch-mppi) with the same objective, samples, horizon, temperature,
exploration noise and control-cost term, one path-integral update per command, and act in the
same environment from the same initial states. pytorch-mppi scores the state *after* each action
with no terminal cost; with the task's Qf = Q that differs from our sum only by the constant
running cost of the current state, so the weights are the same function of the samples.

Printed: milliseconds per command (median over the closed loop, after a warm-up command) and the
closed-loop cost (sum of the task's running cost over the steps) per seed, for pytorch-mppi on
one torch thread and for ours on one and on two Numba threads; then the time ratios.

    pip install pytorch-mppi
    python benchmarks/mppi_vs_pytorch_mppi.py [--steps 200 --seeds 0..4 --samples 500 --horizon 15
                                               --temperature 1.0 --noise-std 1.0 --nominal-sample]

By default our noise-free nominal sample is off, as pytorch-mppi has none: with it, the mean
sitting at the hanging equilibrium (a local optimum over 15 steps) is never left.
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from recede import MPC, MPPI
from recede.envs import get_task


def run_ours(task, args, seed, threads):
    numba.set_num_threads(threads)
    env = task.make_env()
    problem = task.problem(args.horizon)
    planner = MPPI(problem, samples=args.samples, temperature=args.temperature,
                   noise_std=args.noise_std, control_cost=1.0, iterations=1,
                   nominal_sample=args.nominal_sample)
    mpc = MPC(planner, rng=seed)
    env.reset(seed=seed)
    planner.plan(task.state_of(env), rng=0)  # compile / load the kernels outside the clock
    return closed_loop(env, task, lambda x: mpc.act(x), args.steps, seed)


def run_pytorch_mppi(task, args, seed):
    import torch
    from pytorch_mppi import MPPI as TorchMPPI

    torch.set_num_threads(1)
    d = task.dynamics()
    m, l, g, b = (float(v) for v in d.params)
    h = d.dt / d.substeps
    Q, R, _ = (np.asarray(w, dtype=np.float64) for w in task.cost_weights)
    half = 0.5 * (d.action_high - d.action_low)

    def f(th, w, u):
        return w, (g / l) * torch.sin(th) + (u - b * w) / (m * l * l)

    def dynamics(x, u):  # the same RK4 as recede.models.analytic, batched over rows
        th, w = x[:, 0], x[:, 1]
        uu = u[:, 0]
        for _ in range(d.substeps):
            k1 = f(th, w, uu)
            k2 = f(th + 0.5 * h * k1[0], w + 0.5 * h * k1[1], uu)
            k3 = f(th + 0.5 * h * k2[0], w + 0.5 * h * k2[1], uu)
            k4 = f(th + h * k3[0], w + h * k3[1], uu)
            th = th + (h / 6.0) * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
            w = w + (h / 6.0) * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
        return torch.stack((th, w), dim=1)

    def running_cost(x, u):  # the task's QuadraticCost: angle error 2 sin(d/2), squared = 2(1 - cos d)
        return 0.5 * (Q[0] * 2.0 * (1.0 - torch.cos(x[:, 0])) + Q[1] * x[:, 1] ** 2
                      + R[0] * u[:, 0] ** 2)

    sigma = args.noise_std * float(half[0])
    torch.manual_seed(seed)
    ctrl = TorchMPPI(dynamics, running_cost, 2, noise_sigma=torch.tensor([[sigma * sigma]], dtype=torch.float64),
                     num_samples=args.samples, horizon=args.horizon, lambda_=args.temperature,
                     u_min=torch.tensor(d.action_low), u_max=torch.tensor(d.action_high), device="cpu")
    env = task.make_env()
    return closed_loop(env, task, lambda x: ctrl.command(torch.tensor(x)).numpy(), args.steps, seed)


def closed_loop(env, task, act, steps, seed):
    env.reset(seed=seed)
    times, total = [], 0.0
    x = task.state_of(env)
    for _ in range(steps):
        t0 = time.perf_counter()
        u = np.asarray(act(x), dtype=np.float64).reshape(-1)
        times.append(time.perf_counter() - t0)
        _, r, terminated, truncated, _ = env.step(u)
        total -= float(r)  # the env's reward is minus the task's running cost
        x = task.state_of(env)
        if terminated:
            break
    env.close()
    return float(np.median(times[1:]) * 1e3), total


def seeds(text):
    a, _, b = text.partition("..")
    return list(range(int(a), int(b) + 1)) if b else [int(s) for s in text.split(",")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seeds", type=seeds, default=seeds("0..4"))
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--horizon", type=int, default=15)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--noise-std", type=float, default=1.0,
                    help="exploration std as a fraction of the torque half-range")
    ap.add_argument("--nominal-sample", action=argparse.BooleanOptionalAction, default=False,
                    help="keep our noise-free nominal sample (pytorch-mppi has none; default: off)")
    args = ap.parse_args()
    task = get_task("pendulum-swingup")
    try:
        import pytorch_mppi  # noqa: F401
        have_peer = True
    except ImportError:
        have_peer = False
        print("pytorch-mppi is not installed (pip install pytorch-mppi): running ours only")
    print(f"pendulum-swingup, {args.steps} steps, samples {args.samples}, horizon {args.horizon}, "
          f"temperature {args.temperature:g}, noise std {args.noise_std:g} x half-range, "
          f"our nominal sample {'on' if args.nominal_sample else 'off'}")
    print(f"{'planner':<26}{'seed':>5}{'ms/command':>12}{'closed-loop cost':>18}")
    rows = {}
    runners = [("recede MPPI, 1 thread", lambda s: run_ours(task, args, s, 1)),
               ("recede MPPI, 2 threads", lambda s: run_ours(task, args, s, min(2, numba.config.NUMBA_NUM_THREADS)))]
    if have_peer:
        runners.insert(0, ("pytorch-mppi, 1 thread", lambda s: run_pytorch_mppi(task, args, s)))
    for name, run in runners:
        for s in args.seeds:
            ms, cost = run(s)
            rows.setdefault(name, []).append((ms, cost))
            print(f"{name:<26}{s:>5}{ms:>12.3f}{cost:>18.2f}", flush=True)
    print()
    print(f"{'planner':<26}{'median ms/command':>18}{'mean cost':>12}")
    for name, r in rows.items():
        ms = float(np.median([v[0] for v in r]))
        cost = float(np.mean([v[1] for v in r]))
        print(f"{name:<26}{ms:>18.3f}{cost:>12.2f}")
    if have_peer:
        peer = float(np.median([v[0] for v in rows["pytorch-mppi, 1 thread"]]))
        for name in rows:
            if not name.startswith("pytorch"):
                ours = float(np.median([v[0] for v in rows[name]]))
                print(f"speed-up of {name} over pytorch-mppi: {peer / ours:.2f}x")
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


if __name__ == "__main__":
    main()
