"""iLQR / DDP on the unicycle of issue 5, with Crocoddyl side by side when it is available.

Problem: state (x, y, heading), control (v, w), dt = 0.1, explicit Euler
(x+ = x + v cos(h) dt, y+ = y + v sin(h) dt, h+ = h + w dt); running cost
0.5 (100 |x|^2 + |u|^2) at each of the T knots, terminal 0.5 * 100 |x_T|^2; x0 = (-1, -1, 1);
controls start at zero. Then the same with |u| <= 0.5 at T = 100.

Prints, per T: median solve time, iterations (steps taken, i.e. line searches run; for Crocoddyl
its passes, ``solver.iter + 1`` when converged, since each of its passes steps before testing
convergence, while ours stops before the step), backward passes, final cost, microseconds per knot per iteration (and per pass),
and a warm-started re-solve from the solution.

Crocoddyl runs in the same invocation, either in this interpreter (when ``import crocoddyl``
works) or through another interpreter that has it (``--crocoddyl-python PATH`` or the
``RECEDE_CROCODDYL_PYTHON`` environment variable), running ``benchmarks/_crocoddyl_unicycle.py``
as a subprocess (it pins its own numpy/eigenpy stack, so it usually lives in its own venv:
``python -m venv croc && croc/bin/pip install crocoddyl``).

    python benchmarks/ilqr.py [--T 20 50 100] [--repeats 50] [--crocoddyl-python PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from recede import Problem
from recede.costs import QuadraticCost
from recede.models.analytic import Unicycle
from recede.planners.ilqr import ILQR, DDPConfig, ILQRConfig

X0 = np.array([-1.0, -1.0, 1.0])
HERE = os.path.dirname(os.path.abspath(__file__))


def problem(T: int, u_max: float = np.inf) -> Problem:
    dyn = Unicycle(integrator="euler", dt=0.1, substeps=1)
    cost = QuadraticCost([100.0] * 3, [1.0, 1.0], [100.0] * 3)
    return Problem(dyn, cost, T, action_low=[-u_max] * 2, action_high=[u_max] * 2)


def timed(planner, repeats: int, **kw):
    plan = planner.plan(X0, **kw)  # compile / load the kernels
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        plan = planner.plan(X0, **kw)
        times.append(time.perf_counter() - t0)
    return plan, statistics.median(times)


def ours(Ts, repeats):
    rows = []
    for T in Ts:
        for name, config in (("ilqr", ILQRConfig()), ("ddp", DDPConfig())):
            planner = ILQR(problem(T), config)
            plan, t = timed(planner, repeats)
            warm, tw = timed(planner, repeats, warm_start=plan)
            rows.append(dict(T=T, solver=f"recede {name}", iters=plan.iterations,
                             passes=plan.info["backward_passes"], cost=plan.cost, time=t,
                             status=plan.status.value, warm_iters=warm.iterations, warm_time=tw,
                             fused=plan.info["fused"]))
    return rows


def ours_box(T, u_max, repeats):
    rows = []
    for name, config in (("ilqr", ILQRConfig(iterations=100)), ("ddp", DDPConfig(iterations=100))):
        planner = ILQR(problem(T, u_max), config)
        plan, t = timed(planner, max(3, repeats // 10))
        assert np.all(np.abs(plan.actions) <= u_max)
        rows.append(dict(T=T, solver=f"recede {name}", iters=plan.iterations,
                         passes=plan.info["backward_passes"], cost=plan.cost, time=t,
                         status=plan.status.value, reason=plan.info["reason"]))
    return rows


def crocoddyl_results(Ts, repeats, python):
    """Crocoddyl's figures as the helper script's JSON, or None with the reason."""
    script = os.path.join(HERE, "_crocoddyl_unicycle.py")
    args = ["--T", *map(str, Ts), "--repeats", str(repeats), "--json"]
    if python is None:
        try:
            import crocoddyl  # noqa: F401
        except ImportError:
            return None, ("crocoddyl is not importable here; pass --crocoddyl-python PATH (or set "
                          "RECEDE_CROCODDYL_PYTHON) to an interpreter that has it")
        python = sys.executable
    try:
        out = subprocess.run([python, script, *args], capture_output=True, text=True, check=True,
                             timeout=1800)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"crocoddyl run failed: {exc}"
    return json.loads(out.stdout), None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[20, 50, 100])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--box-T", type=int, default=100)
    ap.add_argument("--u-max", type=float, default=0.5)
    ap.add_argument("--crocoddyl-python", default=os.environ.get("RECEDE_CROCODDYL_PYTHON"))
    a = ap.parse_args(argv)

    rows = ours(a.T, a.repeats)
    box = ours_box(a.box_T, a.u_max, a.repeats)
    croc, why = crocoddyl_results(a.T, a.repeats, a.crocoddyl_python)
    if croc is not None:
        for r in croc["unconstrained"]:
            c, w = r["cold"], r["warm"]
            # Crocoddyl's solver.iter is 0-based: a converged solve reporting iter = k took k + 1
            # steps (each pass steps before its stop test); we count steps, so use passes
            rows.append(dict(T=r["T"], solver="crocoddyl ddp", iters=c["passes"], passes=c["passes"],
                             cost=c["cost"], time=c["time_median_s"],
                             status="converged" if c["converged"] else "not converged",
                             warm_iters=w["passes"], warm_time=w["time_median_s"], fused=None))
        for name, s in croc["box"]["solvers"].items():
            cap = s.get("capped", s)
            box.append(dict(T=croc["box"]["T"], solver=f"crocoddyl {name}", iters=cap["passes"],
                            passes=cap["passes"], cost=cap["cost"], time=cap["time_median_s"],
                            status="converged" if cap["converged"] else "not converged",
                            reason="solve() returned " + str(cap["converged"])))

    print("Unicycle, explicit Euler, dt 0.1, x0 (-1, -1, 1), zero initial controls; "
          f"median of {a.repeats} solves, 1 thread.")
    print(f"{'T':>4} {'solver':<15} {'iters':>5} {'passes':>6} {'cost':>16} {'ms':>8} "
          f"{'us/knot/iter':>12} {'us/knot/pass':>12} {'warm iters':>10} {'warm ms':>8}")
    for r in sorted(rows, key=lambda r: (r["T"], r["solver"])):
        per_it = 1e6 * r["time"] / (r["T"] * r["iters"]) if r["iters"] else float("nan")
        per_pass = 1e6 * r["time"] / (r["T"] * r["passes"])
        print(f"{r['T']:>4} {r['solver']:<15} {r['iters']:>5} {r['passes']:>6} {r['cost']:>16.9f} "
              f"{1e3 * r['time']:>8.3f} {per_it:>12.3f} {per_pass:>12.3f} {r['warm_iters']:>10} "
              f"{1e3 * r['warm_time']:>8.3f}")
    for T in sorted({r["T"] for r in rows}):
        ref = [r for r in rows if r["T"] == T and r["solver"] == "crocoddyl ddp"]
        mine = [r for r in rows if r["T"] == T and r["solver"] == "recede ilqr"]
        if ref and mine:
            print(f"T={T}: recede ilqr / crocoddyl ddp time {mine[0]['time'] / ref[0]['time']:.2f}x, "
                  f"cost difference {mine[0]['cost'] - ref[0]['cost']:+.3e}")
    print(f"\nBox |u| <= {a.u_max}, T = {a.box_T}, at most 100 iterations:")
    print(f"{'solver':<22} {'status':<15} {'iters':>5} {'cost':>16} {'ms':>9}  reason")
    for r in box:
        print(f"{r['solver']:<22} {r['status']:<15} {r['iters']:>5} {r['cost']:>16.9f} "
              f"{1e3 * r['time']:>9.3f}  {r['reason']}")
    if croc is None:
        print(f"\n(crocoddyl not run: {why})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
