"""The learned ensemble on the PETS cart-pole configuration: planning, training, memory.

    python benchmarks/ensemble.py [--repeats 5] [--mbrl-python /tmp/mbrl_venv/bin/python]
    python benchmarks/ensemble.py --memory [--rows 1000000]

Configuration (the issue's, mbrl-lib's PETS cart-pole): 10k random transitions of the analytic
cart-pole (4-d state, 1-d action), 5 members x 4 hidden layers x 200 units, CEM with population
350, horizon 15, 5 iterations, 20 particles, TSinf.

Prints, measured in this process:
- the time per planning call (one ``CEM.plan``, median of ``--repeats``), the network FLOPs it
  runs (multiply-adds x 2, every layer of every particle at every step), the GFLOP/s achieved,
  and that against (a) the nominal peak of the CPU (cores x clock x FMA width, from
  /proc/cpuinfo) and (b) a large single-precision GEMM measured here (the practical ceiling);
- the bare network time: the same forward passes as pure ``F.linear`` + SiLU calls, no sampling,
  routing or cost (the floor for this work on this machine);
- one and two torch threads, and bf16 autocast with its accuracy against float32;
- the time per training epoch (batch 256 and 32) and the held-out NLL/MSE after the epochs run;
- with ``--mbrl-python``: mbrl-lib 0.2.0 run by ``benchmarks/_mbrl_lib_pets.py`` in its own
  venv, and the ratios.
``--memory``: peak resident memory of ``fit`` on ``--rows`` synthetic transitions against the
dataset's own size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from recede import CEM, Problem
from recede.data import TransitionDataset
from recede.envs import get_task
from recede.models.ensemble import cpu_flags, native_bf16
from recede.policy_learning import collect, model_for


def median_time(fn, repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def flops_per_row(d_in: int, hidden: int, layers: int, d_out: int) -> int:
    sizes = [d_in] + [hidden] * layers + [2 * d_out]
    return sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:]))


def nominal_peak() -> tuple[float, str]:
    """cores x clock x single-precision FLOPs per cycle (2 FMA pipes x vector width x 2)."""
    text = open("/proc/cpuinfo").read()
    mhz = float(re.findall(r"cpu MHz\s*:\s*([\d.]+)", text)[0])
    flags = set(re.findall(r"flags\s*:\s*(.*)", text)[0].split())
    width = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    per_cycle = 2 * width * 2 if "fma" in flags else width * 2
    cores = os.cpu_count() or 1
    isa = "AVX-512" if width == 16 else "AVX2" if width == 8 else "SSE"
    # the library's own test, the one precision="auto" uses
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in cpu_flags()]
    native = f"native BF16 ({', '.join(bf16)})" if native_bf16() else "no native BF16 (no avx512_bf16, amx_bf16)"
    return cores * mhz * 1e6 * per_cycle, f"{cores} cores x {mhz / 1e3:.2f} GHz x {per_cycle} ({isa}+FMA), {native}"


def gemm_ceiling() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    t, _ = median_time(lambda: torch.mm(a, b), 5)
    return 2 * 2048**3 / t


def dataset(n: int, seed: int = 0) -> TransitionDataset:
    task = get_task("cartpole-swingup")
    data = collect(task, "random", -(-n // task.episode_steps), seed=seed)
    return data.subset(np.arange(n))


def planning(args, data, model) -> dict:
    task = get_task("cartpole-swingup")
    problem = Problem(model, task.cost(task.dynamics()), 15)
    planner = CEM(problem, samples=350, iterations=5, elite_fraction=0.1)
    x0 = np.array([0.0, np.pi, 0.0, 0.0])
    c = model.config
    rows = 350 * c.particles * 15 * 5
    flops = rows * flops_per_row(model.d_in, c.hidden, c.layers, model.d_out)
    out = {"rows": rows, "gflop": flops / 1e9}
    seeds = iter(range(10**6))
    t, _ = median_time(lambda: planner.plan(x0, rng=next(seeds)), args.repeats)
    out["plan_s"] = t
    out["gflops"] = flops / t / 1e9

    # the bare network: the same GEMMs and SiLUs, nothing else
    layers, *_ = model._inf
    E = len(layers)
    M = 350 * c.particles // E
    feats = torch.randn(E, M, model.d_in)

    def bare():
        with torch.inference_mode():
            for _ in range(15 * 5):
                for k in range(E):
                    h = feats[k]
                    for w, b in layers[k][:-1]:
                        h = F.silu(F.linear(h, w, b), inplace=True)
                    F.linear(h, *layers[k][-1])

    out["bare_s"], _ = median_time(bare, args.repeats)
    with_threads = {}
    for n in (1, 2):
        previous = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            with_threads[n], _ = median_time(lambda: planner.plan(x0, rng=next(seeds)), max(2, args.repeats // 2))
        finally:
            torch.set_num_threads(previous)
    out["threads"] = with_threads
    # bf16 autocast (planning's forward pass): speed, and accuracy of the predicted state change
    # in its data stds (the network's output units)
    with torch.inference_mode():
        f = model.features(torch.tensor(data.observations[:2000], dtype=torch.float32),
                           torch.tensor(data.actions[:2000], dtype=torch.float32))
        f = f.expand(len(model.elites), *f.shape)
        m32, _ = model._forward_inf(f, bf16=False)
        m16, _ = model._forward_inf(f, bf16=True)
    d = (m16 - m32)[..., :4]
    out["bf16_err"] = float(d.abs().max())
    out["bf16_rmse"] = float(torch.sqrt(torch.mean(d**2)))
    model.set_planning(precision="bfloat16")
    try:
        out["bf16_plan_s"], _ = median_time(lambda: planner.plan(x0, rng=next(seeds)), max(1, args.repeats // 3))
    finally:
        model.set_planning(precision="float32")
    model.set_planning(precision="auto")
    planner.plan(x0, rng=next(seeds))
    out["auto"] = model.precision_note
    model.set_planning(precision="float32")
    return out


def training(args, data, task) -> dict:
    out = {}
    for batch in (256, 32):
        model = model_for(task, members=5, hidden=200, layers=4, particles=20, seed=0, precision="float32")
        fit = model.fit(data, epochs=args.epochs, batch_size=batch, patience=args.epochs, seed=0)
        secs = [e.seconds for e in fit.epochs[1:]]
        out[batch] = {"epoch_s": statistics.median(secs), "epochs": len(fit.epochs),
                      "holdout_nll": fit.epochs[-1].holdout_nll,
                      "holdout_mse": fit.epochs[-1].holdout_mse, "model": model}
    return out


def memory(args) -> None:
    import gc

    rng = np.random.default_rng(0)
    n, nx, nu = args.rows, 4, 1
    X = rng.normal(size=(n, nx))
    U = rng.uniform(-1, 1, size=(n, nu))
    data = TransitionDataset(observations=X, actions=U, next_observations=X + 0.01 * rng.normal(size=(n, nx)),
                             rewards=rng.normal(size=n), terminated=np.zeros(n, bool),
                             truncated=np.zeros(n, bool), episode_ids=np.arange(n) // 1000)
    del X, U
    gc.collect()
    size = sum(getattr(data, f).nbytes for f in ("observations", "actions", "next_observations",
                                                   "rewards", "terminated", "truncated", "episode_ids"))
    model = model_for(get_task("cartpole-swingup"), members=5, hidden=200, layers=4)
    # a first fit on 1,000 rows loads what any fit needs whatever the data (autograd, MKL's
    # buffers, the optimiser): the growth measured below is the part that scales with the data
    model.fit(data.subset(np.arange(1000)), epochs=1)

    def rss() -> int:
        with open("/proc/self/status") as f:
            return int(re.findall(r"VmRSS:\s*(\d+)", f.read())[0]) * 1024

    base = rss()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = time.perf_counter()
    model.fit(data, epochs=1, batch_size=256)
    secs = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"dataset: {n:,} transitions, {size / 2**20:.0f} MiB in memory")
    print(f"resident before fit: {base / 2**20:.0f} MiB (the dataset, torch, a first small fit); "
          f"peak so far {peak_before / 2**20:.0f} MiB")
    print(f"peak during fit:     {peak / 2**20:.0f} MiB: {(peak - base) / 2**20:.0f} MiB above "
          f"the start = {(peak - base) / size:.2f}x the dataset (limit 3x); one epoch {secs:.1f} s")


def mbrl(args) -> dict | None:
    if not args.mbrl_python:
        return None
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_mbrl_lib_pets.py")
    proc = subprocess.run([args.mbrl_python, script, "--repeats", str(args.repeats), "--angle-features"],
                          capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        print(f"mbrl-lib run failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        return None
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    return json.loads(line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--epochs", type=int, default=6, help="training epochs timed (the first is a warm-up)")
    p.add_argument("--mbrl-python", default=None, help="python of a venv with mbrl==0.2.0")
    p.add_argument("--memory", action="store_true", help="measure fit's peak memory instead")
    p.add_argument("--rows", type=int, default=1_000_000)
    args = p.parse_args()
    if args.memory:
        memory(args)
        return
    task = get_task("cartpole-swingup")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    peak, how = nominal_peak()
    ceiling = gemm_ceiling()
    print(f"nominal peak {peak / 1e9:.0f} GFLOP/s ({how}); 2048^3 SGEMM here {ceiling / 1e9:.0f} GFLOP/s")
    data = dataset(10_000)
    tr = training(args, data, task)
    model = tr[256]["model"]
    pl = planning(args, data, model)
    print()
    print(f"planning call (CEM 350 x 5 iterations, H 15, 20 particles TSinf; {pl['gflop']:.1f} GFLOP):")
    print(f"  {pl['plan_s']:.3f} s median of {args.repeats}: {pl['gflops']:.0f} GFLOP/s = "
          f"{pl['gflops'] * 1e9 / peak:.0%} of nominal peak, {pl['gflops'] * 1e9 / ceiling:.0%} of the SGEMM ceiling")
    print(f"  bare network (same GEMMs + SiLU only): {pl['bare_s']:.3f} s -> planning overhead "
          f"{pl['plan_s'] / pl['bare_s']:.2f}x the bare network")
    print(f"  1 thread {pl['threads'][1]:.3f} s, 2 threads {pl['threads'][2]:.3f} s")
    print(f"  bf16 autocast: {pl['bf16_plan_s']:.3f} s ({pl['plan_s'] / pl['bf16_plan_s']:.2f}x float32's speed); "
          f"next-state error vs float32: max {pl['bf16_err']:.3g}, rms {pl['bf16_rmse']:.3g} data stds")
    print(f"  precision='auto' (the default) plans here in {pl['auto']}")
    for batch in (256, 32):
        t = tr[batch]
        print(f"training, batch {batch}: {t['epoch_s']:.3f} s/epoch (median of {t['epochs'] - 1}), "
              f"held-out NLL {t['holdout_nll']:.3f}, MSE {t['holdout_mse']:.4f} after {t['epochs']} epochs "
              f"(normalised units, per target dim)")
    peer = mbrl(args)
    if peer is not None:
        print()
        print(f"mbrl-lib {peer.get('mbrl_version')} (torch {peer.get('torch_version')}), same machine, same run:")
        print(f"  planning call {peer['plan_s_median']:.3f} s -> recede {peer['plan_s_median'] / pl['plan_s']:.2f}x faster")
        for batch in (256, 32):
            key = f"epoch_s_median_b{batch}"
            if key in peer:
                print(f"  epoch, batch {batch}: {peer[key]:.3f} s -> recede "
                      f"{peer[key] / tr[batch]['epoch_s']:.2f}x faster")
        extra = {k: v for k, v in peer.items() if k not in ("plan_s_all",)}
        print(f"  raw: {json.dumps(extra)}")


if __name__ == "__main__":
    sys.exit(main())
