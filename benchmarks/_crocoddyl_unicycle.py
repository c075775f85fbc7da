#!/usr/bin/env python
"""Crocoddyl DDP on its built-in unicycle, as a reference for our iLQR.

Standalone: imports only numpy and crocoddyl, because crocoddyl lives in its
own virtual environment (it pins its own numpy/eigenpy/pinocchio stack) and
this file is run with that environment's interpreter as a subprocess, e.g.

    croc/bin/python benchmarks/_crocoddyl_unicycle.py \
        --T 20 50 100 --repeats 20 --json

Problem (checked numerically against the installed crocoddyl at start-up,
see ``check_model``):

    state x = (px, py, heading), control u = (v, w), dt = 0.1, explicit Euler
        px+ = px + v cos(h) dt,  py+ = py + v sin(h) dt,  h+ = h + w dt
    running cost   0.5 * (100 |x|^2 + |u|^2)   (per knot, NOT scaled by dt)
    terminal cost  0.5 * 100 |x_T|^2
    x0 = (-1, -1, 1), T running knots + terminal, controls start at zero.

Crocoddyl's ``ActionModelUnicycle`` builds the residual
r = [w_x * x, w_u * u] and cost 0.5 |r|^2, so ``costWeights = [10, 1]``
(its default) *is* the 100 / 1 weighting above: the weights multiply the
residual and get squared.  We set them explicitly anyway.

Iteration counting: crocoddyl's ``solver.iter`` is the 0-based index of the
iteration in which the solver stopped, so a converged solve that reports
``iter == k`` ran k + 1 backward/forward passes (the convergence test runs
after the step of each iteration).  When maxiter is exhausted, ``iter`` equals
maxiter and exactly maxiter passes ran.  We report both ``iter`` (the raw
attribute) and ``passes`` (counted with a callback in a separate, untimed
solve), and the per-knot-per-iteration time uses ``passes``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np

import crocoddyl

X0 = np.array([-1.0, -1.0, 1.0])
DT = 0.1
W_X, W_U = 10.0, 1.0  # residual weights -> cost weights 100 and 1


# --------------------------------------------------------------------------
# problem construction and checks
# --------------------------------------------------------------------------
def make_model(u_max: float | None = None) -> crocoddyl.ActionModelUnicycle:
    m = crocoddyl.ActionModelUnicycle()
    m.costWeights = np.array([W_X, W_U])
    m.dt = DT
    if u_max is not None:
        m.u_lb = np.full(2, -u_max)
        m.u_ub = np.full(2, u_max)
    return m


def make_problem(T: int, u_max: float | None = None, nthreads: int | None = None):
    running = make_model(u_max)  # one model shared by all knots (datas are per knot)
    terminal = make_model()  # separate object: bounds never touch the terminal node
    problem = crocoddyl.ShootingProblem(X0.copy(), [running] * T, terminal)
    if nthreads is not None:
        problem.nthreads = nthreads
    return problem


def zero_init(problem):
    T = problem.T
    us = [np.zeros(2) for _ in range(T)]
    xs = [np.array(x) for x in problem.rollout(us)]  # == [x0] * (T + 1)
    return xs, us


def ref_step(x, u):
    return x + DT * np.array([u[0] * np.cos(x[2]), u[0] * np.sin(x[2]), u[1]])


def ref_running_cost(x, u):
    return 0.5 * (100.0 * x @ x + u @ u)


def ref_terminal_cost(x):
    return 0.5 * 100.0 * x @ x


def check_model() -> dict:
    """Compare crocoddyl's unicycle against the intended model at random points."""
    rng = np.random.default_rng(0)
    m = make_model()
    d = m.createData()
    err_f = err_l = err_lT = 0.0
    for _ in range(20):
        x = rng.normal(size=3)
        u = rng.normal(size=2)
        m.calc(d, x, u)
        err_f = max(err_f, float(np.max(np.abs(np.asarray(d.xnext) - ref_step(x, u)))))
        err_l = max(err_l, abs(d.cost - ref_running_cost(x, u)))
        m.calc(d, x)  # terminal evaluation: state-only
        err_lT = max(err_lT, abs(d.cost - ref_terminal_cost(x)))
    ok = max(err_f, err_l, err_lT) < 1e-9
    default = crocoddyl.ActionModelUnicycle()
    info = {
        "ok": bool(ok),
        "max_abs_err_dynamics": err_f,
        "max_abs_err_running_cost": err_l,
        "max_abs_err_terminal_cost": err_lT,
        "default_costWeights": np.asarray(default.costWeights).tolist(),
        "default_dt": float(default.dt),
        "costWeights_used": [W_X, W_U],
        "nr": int(default.nr),
    }
    if not ok:
        raise RuntimeError(f"crocoddyl unicycle does not match the intended model: {info}")
    return info


# --------------------------------------------------------------------------
# solving and timing
# --------------------------------------------------------------------------
class _Counter(crocoddyl.CallbackAbstract):
    def __init__(self):
        crocoddyl.CallbackAbstract.__init__(self)
        self.n = 0

    def __call__(self, solver):
        self.n += 1


def count_passes(solver_cls, problem, xs, us, maxiter, is_feasible=True) -> int:
    s = solver_cls(problem)
    c = _Counter()
    s.setCallbacks([c])
    s.solve(xs, us, maxiter, is_feasible)
    return c.n


def timed_solves(solver_cls, problem, xs, us, maxiter, repeats, is_feasible=True):
    """Fresh solver per repeat (construction not timed); time solve() only."""
    times = []
    s = None
    ok = None
    for _ in range(repeats):
        s = solver_cls(problem)
        t0 = time.perf_counter()
        ok = s.solve(xs, us, maxiter, is_feasible)
        times.append(time.perf_counter() - t0)
    return s, bool(ok), times


def summarize(solver, ok, times, T, passes) -> dict:
    med = statistics.median(times)
    it = int(solver.iter)
    return {
        "converged": ok,
        "iter": it,
        "passes": passes,
        "cost": float(solver.cost),
        "stop": float(solver.stop),
        "th_stop": float(solver.th_stop),
        "time_median_s": med,
        "time_min_s": min(times),
        "time_max_s": max(times),
        "us_per_knot_pass": 1e6 * med / (T * passes) if passes else None,
        "us_per_knot_iter_raw": 1e6 * med / (T * it) if it else None,
        "x_final": np.asarray(solver.xs[-1]).tolist(),
        "u_first": np.asarray(solver.us[0]).tolist(),
        "u_absmax": np.max(np.abs(np.array(solver.us)), axis=0).tolist(),
    }


def bench_unconstrained(T, repeats, maxiter, nthreads) -> dict:
    problem = make_problem(T, nthreads=nthreads)
    xs0, us0 = zero_init(problem)
    S = crocoddyl.SolverDDP

    # warm-up (first call pays for lazy allocations / page faults)
    S(problem).solve(xs0, us0, maxiter, True)

    # overhead of the call itself (list -> std::vector conversion, setCandidate)
    _, _, t_over = timed_solves(S, problem, xs0, us0, 0, repeats)

    # cold: zero controls, states = rollout of zero controls (feasible)
    passes = count_passes(S, problem, xs0, us0, maxiter)
    s, ok, times = timed_solves(S, problem, xs0, us0, maxiter, repeats)
    cold = summarize(s, ok, times, T, passes)
    xs_opt = [np.array(x) for x in s.xs]
    us_opt = [np.array(u) for u in s.us]

    # cold, crocoddyl's own default init: solve([], []) -> xs = zeros (NOT a
    # rollout: starts infeasible), us = zeros
    se, oke, te = timed_solves(S, problem, [], [], maxiter, repeats, is_feasible=False)
    empty = summarize(se, oke, te, T, count_passes(S, problem, [], [], maxiter, False))

    # warm: re-solve from its own solution
    wpasses = count_passes(S, problem, xs_opt, us_opt, maxiter)
    sw, okw, tw = timed_solves(S, problem, xs_opt, us_opt, maxiter, repeats)
    warm = summarize(sw, okw, tw, T, wpasses)

    return {
        "T": T,
        "solver": "SolverDDP",
        "nthreads": int(problem.nthreads),
        "call_overhead_median_s": statistics.median(t_over),
        "cold": cold,
        "cold_empty_init": empty,
        "warm": warm,
    }


def bench_box(T, u_max, repeats, maxiter, uncapped_maxiter, nthreads) -> dict:
    out = {}
    for S in (crocoddyl.SolverBoxDDP, crocoddyl.SolverBoxFDDP):
        problem = make_problem(T, u_max=u_max, nthreads=nthreads)
        xs0, us0 = zero_init(problem)
        S(problem).solve(xs0, us0, maxiter, True)  # warm-up
        passes = count_passes(S, problem, xs0, us0, maxiter)
        s, ok, times = timed_solves(S, problem, xs0, us0, maxiter, repeats)
        r = summarize(s, ok, times, T, passes)
        if uncapped_maxiter and not ok:
            p2 = count_passes(S, problem, xs0, us0, uncapped_maxiter)
            s2, ok2, t2 = timed_solves(S, problem, xs0, us0, uncapped_maxiter, max(1, min(repeats, 5)))
            r["uncapped"] = dict(summarize(s2, ok2, t2, T, p2), maxiter=uncapped_maxiter)
        out[S.__name__] = r
    return {"T": T, "u_max": u_max, "maxiter": maxiter, "nthreads": int(problem.nthreads),
            "solvers": out}


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------
def _fmt_vec(v):
    return "[" + ", ".join(f"{a:+.6g}" for a in v) + "]"


def print_table(res: dict) -> None:
    env = res["env"]
    print(f"crocoddyl {env['crocoddyl']}  numpy {env['numpy']}  python {env['python']}  "
          f"nthreads={res['unconstrained'][0]['nthreads'] if res['unconstrained'] else '-'}  "
          f"repeats={res['repeats']}")
    mc = res["model_check"]
    print(f"model check ok={mc['ok']} (default costWeights {mc['default_costWeights']} -> "
          f"cost 0.5*(w_x^2|x|^2 + w_u^2|u|^2); dt {mc['default_dt']})")
    print()
    hdr = (f"{'T':>5} {'case':<16} {'conv':>5} {'iter':>4} {'pass':>4} {'cost':>14} "
           f"{'median ms':>10} {'min ms':>8} {'us/knot/pass':>12} {'us/knot/iter':>12}")
    print("SolverDDP, unconstrained (cold = zero controls + rollout; "
          "empty = solve([], []); warm = from own optimum)")
    print(hdr)
    print("-" * len(hdr))
    for r in res["unconstrained"]:
        for case in ("cold", "cold_empty_init", "warm"):
            c = r[case]
            name = {"cold": "cold", "cold_empty_init": "empty", "warm": "warm"}[case]
            upi = f"{c['us_per_knot_iter_raw']:.3f}" if c["us_per_knot_iter_raw"] else "-"
            print(f"{r['T']:>5} {name:<16} {str(c['converged']):>5} {c['iter']:>4} {c['passes']:>4} "
                  f"{c['cost']:>14.8f} {1e3 * c['time_median_s']:>10.4f} {1e3 * c['time_min_s']:>8.4f} "
                  f"{c['us_per_knot_pass']:>12.3f} {upi:>12}")
        print(f"{'':>5} call overhead (maxiter=0): {1e6 * r['call_overhead_median_s']:.1f} us")
    print()
    for r in res["unconstrained"]:
        c = r["cold"]
        print(f"T={r['T']:>4}: x_T = {_fmt_vec(c['x_final'])}   u_0 = {_fmt_vec(c['u_first'])}")
    if res.get("box"):
        b = res["box"]
        print()
        print(f"Box-constrained |u_i| <= {b['u_max']}, T={b['T']}, maxiter={b['maxiter']} "
              f"(box solvers default th_stop is 5e-5, not 1e-9)")
        print(hdr)
        print("-" * len(hdr))
        for name, c in b["solvers"].items():
            rows = [(name, c)]
            if "uncapped" in c:
                rows.append((f"  maxiter={c['uncapped']['maxiter']}", c["uncapped"]))
            for label, cc in rows:
                upi = f"{cc['us_per_knot_iter_raw']:.3f}" if cc["us_per_knot_iter_raw"] else "-"
                print(f"{b['T']:>5} {label:<16} {str(cc['converged']):>5} {cc['iter']:>4} "
                      f"{cc['passes']:>4} {cc['cost']:>14.8f} {1e3 * cc['time_median_s']:>10.4f} "
                      f"{1e3 * cc['time_min_s']:>8.4f} {cc['us_per_knot_pass']:>12.3f} {upi:>12}")
            print(f"      {name}: x_T = {_fmt_vec(c['x_final'])}  u_0 = {_fmt_vec(c['u_first'])}  "
                  f"max|u| = {_fmt_vec(c['u_absmax'])}")
            if "uncapped" in c:
                u = c["uncapped"]
                print(f"      {name} (uncapped): x_T = {_fmt_vec(u['x_final'])}  "
                      f"u_0 = {_fmt_vec(u['u_first'])}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--T", type=int, nargs="+", default=[20, 50, 100], help="horizons")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--maxiter", type=int, default=100)
    p.add_argument("--json", action="store_true", help="print one JSON dict")
    p.add_argument("--nthreads", type=int, default=1,
                   help="ShootingProblem.nthreads; 0 keeps crocoddyl's default (2 here, OpenMP). "
                        "Default 1: single-threaded like our iLQR, and OpenMP threads on a busy "
                        "2-core machine slowed solves by 2-10x in our runs")
    p.add_argument("--box-T", type=int, default=100)
    p.add_argument("--u-max", type=float, default=0.5)
    p.add_argument("--box-maxiter", type=int, default=100)
    p.add_argument("--box-uncapped-maxiter", type=int, default=1000,
                   help="if a box solve fails to converge in --box-maxiter, also report a "
                        "solve with this maxiter (0 disables)")
    p.add_argument("--no-box", action="store_true")
    a = p.parse_args(argv)
    if a.nthreads is not None and a.nthreads <= 0:
        a.nthreads = None

    res = {
        "env": {
            "crocoddyl": getattr(crocoddyl, "__version__", "?"),
            "numpy": np.__version__,
            "python": platform.python_version(),
            "executable": sys.executable,
        },
        "problem": {
            "x0": X0.tolist(), "dt": DT,
            "running_cost": "0.5*(100|x|^2 + |u|^2)", "terminal_cost": "0.5*100|x|^2",
            "dynamics": "explicit Euler, x+ = x + dt*(v cos h, v sin h, w)",
            "init": "us = 0, xs = rollout(us) (= x0 repeated), is_feasible=True",
        },
        "repeats": a.repeats,
        "maxiter": a.maxiter,
        "model_check": check_model(),
        "unconstrained": [bench_unconstrained(T, a.repeats, a.maxiter, a.nthreads) for T in a.T],
    }
    if not a.no_box:
        res["box"] = bench_box(a.box_T, a.u_max, a.repeats, a.box_maxiter,
                               a.box_uncapped_maxiter, a.nthreads)
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        print_table(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
