"""MCTS simulations per second on one thread, against a plain Python UCT in the same process.

Problem (the issue's): a double integrator (dt 0.1, RK4, |a| <= 1) with a quadratic cost,
depth 10 (horizon 10, one step per edge), from x0 = (1, 0).

Prints, measured in this one run (medians of repeated timings):
1. recede's fused search (the whole search in one Numba call), 8 discrete actions, UCT, random
   rollouts, at 100k and 1M simulations per plan (target >= 1,000,000 simulations/s);
2. the same with progressive widening (continuous actions, uniform proposals, k=1, alpha=0.5);
3. an MPC-sized plan (2000 simulations), in ms;
4. the batched path on the same problem (rollouts through ``dynamics.rollout`` and the cost's
   ``stage_costs`` in waves of 64 leaves with virtual loss), as used for MuJoCo and learned models;
5. a plain Python UCT (dict nodes, the same selection, expansion, random rollouts and per-level
   min-max normalisation; the model stepped in Python) and the ratio.

Usage: python benchmarks/mcts.py [--repeats 5] [--python-sims 20000]
"""

from __future__ import annotations

import argparse
import math
import random
import time

import numba
import numpy as np

from recede import MCTS, Problem, QuadraticCost
from recede.models.analytic import DoubleIntegrator

from planner_overhead import median_time  # benchmarks/ is on the path of its scripts

H = 10
ACTIONS = tuple(np.linspace(-1.0, 1.0, 8))
X0 = np.array([1.0, 0.0])


def problem() -> Problem:
    return Problem(DoubleIntegrator(max_accel=1.0, dt=0.1),
                   QuadraticCost([1.0, 0.1], [0.01], [10.0, 1.0]), H)


# --------------------------------------------------------------------- plain Python UCT

def _step(x, a, dt=0.1):
    """One RK4 step of the double integrator (p' = v, v' = a): exact for constant a."""
    p, v = x
    return (p + dt * v + 0.5 * dt * dt * a, v + dt * a)


def _stage(x, a):
    return 0.5 * (x[0] ** 2 + 0.1 * x[1] ** 2) + 0.5 * 0.01 * a * a


def _terminal(x):
    return 0.5 * (10.0 * x[0] ** 2 + x[1] ** 2)


class _Node:
    __slots__ = ("state", "children", "untried", "n", "w", "edge")

    def __init__(self, state, edge):
        self.state, self.edge = state, edge
        self.children, self.untried = {}, list(range(len(ACTIONS)))
        random.shuffle(self.untried)
        self.n, self.w = 0, 0.0


def python_uct(sims: int, c: float = 1.0, seed: int = 0):
    random.seed(seed)
    root = _Node(tuple(X0), 0.0)
    lo, hi = [math.inf] * (H + 1), [-math.inf] * (H + 1)
    for _ in range(sims):
        node, path, level = root, [root], 0
        while level < H:
            if node.untried:
                a = node.untried.pop()
                child = _Node(_step(node.state, ACTIONS[a]), _stage(node.state, ACTIONS[a]))
                node.children[a] = child
                node, level = child, level + 1
                path.append(node)
                break
            ln = math.log(node.n + 1)
            vmin, vmax = lo[level + 1], hi[level + 1]
            inv = 1.0 / (vmax - vmin) if vmax > vmin else 0.0
            best, pick = -math.inf, None
            for ch in node.children.values():
                s = 1.0 - (ch.w / ch.n - vmin) * inv + c * math.sqrt(ln / ch.n)
                if s > best:
                    best, pick = s, ch
            node, level = pick, level + 1
            path.append(node)
        x, g = node.state, 0.0
        for _ in range(level, H):
            a = ACTIONS[random.randrange(len(ACTIONS))]
            g += _stage(x, a)
            x = _step(x, a)
        g += _terminal(x)
        for lv in range(len(path) - 1, -1, -1):
            nd = path[lv]
            q = nd.edge + g if lv else g
            nd.n += 1
            nd.w += q
            if lv:
                v = nd.w / nd.n
                lo[lv], hi[lv] = min(lo[lv], v), max(hi[lv], v)
            g = q
    return max(root.children, key=lambda a: root.children[a].n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--python-sims", type=int, default=20000)
    args = ap.parse_args()
    numba.set_num_threads(1)
    p = problem()
    print(f"double integrator, depth {H}, one thread (numba threads: {numba.get_num_threads()})")
    rows = []
    for label, opts in (("8 discrete actions, UCT", dict(actions=ACTIONS)),
                        ("progressive widening (k=1, alpha=0.5)", dict(proposal="uniform"))):
        for sims in (100_000, 1_000_000):
            pl = MCTS(p, simulations=sims, max_nodes=4 * sims, **opts)
            t = median_time(lambda: pl.plan(X0, rng=0), args.repeats)
            info = pl.plan(X0, rng=0).info
            rows.append((label, sims, t))
            print(f"  recede fused, {label:40s} {sims:>9,d} sims: {sims / t:12,.0f} sims/s "
                  f"({t * 1e3:8.1f} ms, {info['nodes']:,d} slots, depth {info['depth']})")
    pl = MCTS(p, simulations=2000, actions=ACTIONS)
    t = median_time(lambda: pl.plan(X0, rng=0), 5 * args.repeats)
    print(f"  recede fused, MPC-sized plan (2000 sims, 8 actions): {t * 1e3:.2f} ms "
          f"({2000 / t:,.0f} sims/s, Python overhead included)")
    pl = MCTS(p, simulations=20_000, actions=ACTIONS, fused=False, batch=64)
    tb = median_time(lambda: pl.plan(X0, rng=0), args.repeats)
    print(f"  recede batched path (waves of 64, numpy stage costs), 20,000 sims: "
          f"{20_000 / tb:12,.0f} sims/s")
    n = args.python_sims
    tp = median_time(lambda: python_uct(n), max(1, args.repeats // 2))
    print(f"  plain Python UCT, 8 actions, {n:,d} sims: {n / tp:12,.0f} sims/s")
    best = max(s / t for _, s, t in rows[:2])
    print(f"ratio recede fused (8 actions) / plain Python UCT: {best / (n / tp):.0f}x; "
          f"target >= 1,000,000 sims/s: {'met' if best >= 1e6 else 'not met'} ({best:,.0f})")


if __name__ == "__main__":
    main()
