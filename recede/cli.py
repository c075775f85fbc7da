"""The ``recede`` command line: run a task in closed loop, list tasks, list planners.

::

    recede run pendulum-swingup --planner cem --seed 0 --json out.json --plot out.png
    recede train-policy pendulum-swingup --algo sac --steps 2000 --seeds 0..2 --out runs/sac
    recede run pendulum-swingup --policy runs/sac/seed_0
    recede mbpo pendulum-swingup --steps 5000 --out runs/mbpo --compare runs/sac/evals.csv
    recede imitate cartpole-swingup --expert mpc:mppi --labels 1000,2000,5000 --seeds 0..2 --out runs/imit
    recede tasks
    recede planners

Exit status: 0 when the command finished (a run that fails its task's criterion included),
2 on a bad argument (one ``recede: error: ...`` line on stderr, no traceback), 1 when planning
itself failed, 130 when interrupted (Ctrl-C). An interrupted ``run``, ``compare``, ``pets``,
``train-model``, ``train-policy`` or ``mbpo`` first reports and writes what it completed: the steps, runs,
trials, the best checkpoint or the resumable checkpoint so far, each output marked as
interrupted. Files are written only where a flag asks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from typing import Any, Sequence

PROG = "recede"

# Command-line flags that set planner options: option name -> flag. Every other option is set
# with --option NAME=VALUE.
_OPTION_FLAGS = {
    "samples": "--samples",
    "iterations": "--iterations",
    "elite_fraction": "--elite-fraction",
    "temperature": "--temperature",
    "noise_std": "--noise-std",
    "beta": "--beta",
}


class _ArgumentParser(argparse.ArgumentParser):
    """Reports a bad argument as one ``recede: error: <message>`` line (no usage block), exit 2."""

    def error(self, message: str):
        self.exit(2, f"{PROG}: error: {message}\n")


class _UsageError(Exception):
    """A bad argument found by the command line itself (exit 2)."""


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def _name_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"must be comma-separated names, got {text!r}")
    return names


def _seed_list(text: str) -> list[int]:
    """'0..4' -> [0, 1, 2, 3, 4]; '1,5,7' -> [1, 5, 7]."""
    try:
        if ".." in text:
            a, b = (int(v) for v in text.split(".."))
            seeds = list(range(a, b + 1))
        else:
            seeds = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be A..B or a comma list of integers, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"must name at least one seed, all >= 0, got {text!r}")
    return seeds


def _plot_path(text: str) -> str:
    """A --plot path whose extension names a format matplotlib writes here (png, pdf, svg)."""
    from recede.errors import InvalidArgumentError
    from recede.plotting import plot_format

    try:
        plot_format(text)
    except InvalidArgumentError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _existing_file(text: str) -> str:
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(
            f"{'is a directory, not a file' if os.path.isdir(text) else 'no such file'}: {text!r}")
    return text


def _add_option_flag(parser) -> None:
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="set any planner option (see 'recede planners'), e.g. "
                             "--option execute=mean (repeatable)")


def _add_loop_flags(parser) -> None:
    """The closed loop's flags, shared by run and compare."""
    parser.add_argument("--steps", type=int, default=None,
                        help="closed-loop steps per run (default: the task's episode length)")
    parser.add_argument("--horizon", type=int, default=None,
                        help="planning horizon in steps (default: the task's horizon for the planner)")
    parser.add_argument("--deadline-ms", type=float, default=None,
                        help="anytime planning: stop every plan after this many ms and act on "
                             "the best plan found by then")
    parser.add_argument("--realtime", action="store_true",
                        help="hold every step to the model's control period dt (with "
                             "--deadline-ms below it: a fixed-rate controller)")
    parser.add_argument("--replan-every", type=int, default=1,
                        help="re-plan every N steps, applying the stored plan between (default: 1)")


def _parse_value(text: str):
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word such as mean


def _parse_options(items: list[str], flag: str, prefixed: bool) -> dict:
    """['name=value', ...] -> {name: value}; with ``prefixed``, {planner: {name: value}}."""
    out: dict = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            form = "PLANNER.NAME=VALUE" if prefixed else "NAME=VALUE"
            raise _UsageError(f"argument {flag}: expected {form}, got {item!r}")
        if prefixed:
            planner, dot, name = key.partition(".")
            if not dot or not planner or not name:
                raise _UsageError(f"argument {flag}: expected PLANNER.NAME=VALUE, got {item!r}")
            out.setdefault(planner, {})[name] = _parse_value(value)
        else:
            out[key] = _parse_value(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    from recede import __version__
    from recede.planners.registry import PLANNERS

    parser = _ArgumentParser(
        prog=PROG,
        description="Model-based planning and control: run planners in closed loop on recede tasks.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run a planner in closed loop (MPC) on a task",
        description=(
            "Run PLANNER in a receding-horizon loop on TASK and print a summary. Planner options "
            "default to the task's defaults for that planner (see 'recede tasks'), then to the "
            "planner's own defaults (see 'recede planners'); flags given here override both. "
            "Ctrl-C prints the summary of the steps completed, writes the outputs asked for "
            "of them, and exits with status 130."
        ),
    )
    run.add_argument("task", metavar="TASK",
                     help="task name or Gymnasium id, e.g. cartpole-swingup or HalfCheetah-v5 (see 'recede tasks')")
    run.add_argument("--planner", default=None, metavar="{" + ",".join(sorted(PLANNERS)) + "}",
                     help="planner name (see 'recede planners'; default: cem)")
    run.add_argument("--policy", metavar="DIR", default=None,
                     help="instead of a planner, act with a trained policy: a checkpoint "
                          "directory from 'recede train-policy' (OUT/seed_<s>); not with "
                          "--planner, --model or planner options")
    run.add_argument("--value", metavar="DIR", default=None,
                     help="plan with a learned value as the terminal cost: a directory from "
                          "'recede fit-value' for this task (pair it with a shorter --horizon)")
    run.add_argument("--seed", type=_non_negative_int, default=0,
                     help="seed of the initial state and of the planner (default: 0)")
    run.add_argument("--samples", type=int, default=None, help="sequences sampled per iteration")
    run.add_argument("--iterations", type=int, default=None, help="planner iterations per plan")
    run.add_argument("--elite-fraction", type=float, default=None,
                     help="share of samples refit to, in (0, 1] (cem, icem)")
    run.add_argument("--temperature", type=float, default=None,
                     help="path-integral temperature lambda, in cost units (mppi)")
    run.add_argument("--noise-std", type=float, default=None,
                     help="exploration std as a fraction of the action half-range (mppi)")
    run.add_argument("--beta", type=float, default=None,
                     help="colour of the sampling noise, 1/f^beta (icem, mppi)")
    _add_option_flag(run)
    _add_loop_flags(run)
    run.add_argument("--json", metavar="PATH", default=None,
                     help="write the run (summary, options and per-step log) as JSON to PATH; "
                          "after Ctrl-C, of the steps completed, with \"interrupted\": true")
    run.add_argument("--plot", metavar="PATH.png", default=None, type=_plot_path,
                     help="draw states, actions and planning times to PATH (.png, .pdf or .svg)")
    run.add_argument("--video", metavar="PATH.mp4", default=None,
                     help="render the run to an MP4 at PATH (MuJoCo tasks; headless via MUJOCO_GL=egl)")
    run.add_argument("--camera", metavar="NAME", default=None,
                     help="with --video: the camera to film from: 'follow' tracks the robot (the "
                          "default, but for reacher), 'free' is the environment's fixed view (the "
                          "default for reacher), or a camera of the model by name (e.g. 'track' on "
                          "HalfCheetah, Hopper, Walker2d, Ant, Humanoid); a wrong name lists the "
                          "task's cameras")
    run.add_argument("--model", metavar="DIR", default=None,
                     help="plan on a learned ensemble (a checkpoint from 'recede train-model' or "
                          "'recede pets') instead of the task's own model; act in the real env. "
                          "The planner's budget, the horizon and the model's propagation then "
                          "default to the learned-model defaults (shown in the summary)")
    run.add_argument("--proposal", metavar="DIR", default=None,
                     help="a trained policy of TASK (a checkpoint from 'recede train-policy', "
                          "OUT/seed_<s>) whose closed-loop rollouts through the planning model, "
                          "plus noise (option proposal_std), replace a share of the samples of "
                          "cem, icem and mppi, at equal samples; mcts centres its widening and "
                          "warm-start rollouts on it and takes its PUCT prior from it")
    run.add_argument("--proposal-share", metavar="S", type=float, default=None,
                     help=f"with --proposal: the share of each iteration's samples that are the "
                          f"policy's, in [0, 1] (cem, icem, mppi; default {_PROPOSAL_SHARE})")
    run.add_argument("--model-option", action="append", default=[], metavar="NAME=VALUE",
                     help="with --model: how to plan on it: propagation (ts1, tsinf, expectation, "
                          "mean), particles, disagreement_weight, precision (auto, float32, "
                          "bfloat16) (repeatable)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.set_defaults(func=_cmd_run)

    compare = sub.add_parser(
        "compare",
        help="run several planners on the same seeds and tabulate them",
        description=(
            "Run each planner of PLANNERS in closed loop on TASK for every seed of SEEDS, print a "
            "table (return, success rate, median and p99 planning time, samples per plan); "
            "--plot draws it as a bar chart, --json writes it. Planner options are the task's "
            "defaults, then --option. Ctrl-C tabulates the runs completed and exits with 130."
        ),
    )
    compare.add_argument("task", metavar="TASK", help="task name or Gymnasium id (see 'recede tasks')")
    compare.add_argument("--planners", default="cem,icem,mppi", type=_name_list,
                         help="comma-separated planner names (default: cem,icem,mppi)")
    compare.add_argument("--seeds", default="0..4", type=_seed_list,
                         help="seeds as A..B (inclusive) or a comma list (default: 0..4)")
    compare.add_argument("--option", action="append", default=[], metavar="PLANNER.NAME=VALUE",
                         help="set an option of one planner, e.g. mppi.temperature=0.3 (repeatable)")
    _add_loop_flags(compare)
    compare.add_argument("--plot", metavar="PATH.png", default=None, type=_plot_path,
                         help="draw the table as a bar chart to PATH (.png, .pdf or .svg)")
    compare.add_argument("--json", metavar="PATH", default=None,
                         help="write every run's summary and the table as JSON to PATH")
    compare.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    compare.set_defaults(func=_cmd_compare)

    _add_model_commands(sub)
    _add_policy_commands(sub)
    _add_mbpo_command(sub)
    _add_value_command(sub)
    _add_imitate_command(sub)
    _add_gps_command(sub)
    _add_sweep_command(sub)
    _add_sweep_report_command(sub)

    tasks = sub.add_parser("tasks", help="list the tasks", description="List every registered task.")
    tasks.set_defaults(func=_cmd_tasks)

    planners = sub.add_parser("planners", help="list the planners and their options",
                              description="List every planner with its options and defaults.")
    planners.set_defaults(func=_cmd_planners)
    return parser


# --------------------------------------------------------------------------- atomic outputs


class _AtomicFile:
    """A file that appears at ``path`` whole or not at all.

    The temporary file is created up front, next to ``path`` (so a bad path fails before a long
    run), filled by the caller, then renamed over ``path`` by :meth:`commit`; :meth:`discard`
    removes it.
    """

    def __init__(self, path: str, flag: str, keep_extension: bool = False):
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            raise _UsageError(f"argument {flag}: cannot write {path!r}: it is a directory")
        try:
            fd, self.tmp = tempfile.mkstemp(
                dir=directory, prefix=f".{os.path.basename(path)}.",
                suffix=".tmp" + (os.path.splitext(path)[1] if keep_extension else ""),
            )
        except OSError as e:
            reason = e.strerror or str(e)
            raise _UsageError(f"argument {flag}: cannot write {path!r}: {reason}") from None
        os.close(fd)
        _chmod_default(self.tmp)

    def commit(self) -> None:
        os.replace(self.tmp, self.path)
        self.tmp = None

    def discard(self) -> None:
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except FileNotFoundError:
                pass
            self.tmp = None


def _chmod_default(path: str) -> None:
    """Give a ``mkstemp`` file (mode 0600) the mode a plain ``open`` would: 0666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


# --------------------------------------------------------------------------- commands


def _overrides(args, extra: dict | None = None) -> dict[str, Any]:
    """The user's planner options: --option, then the named flags."""
    options = dict(extra or {})
    for dest in _OPTION_FLAGS:
        value = getattr(args, dest)
        if value is not None:
            options[dest] = value
    return options


def _raw_options(items: list[str]) -> list[tuple[str, str]]:
    """--option's ``NAME=VALUE`` items as typed: ``[(NAME, VALUE), ...]``."""
    return [(key.strip(), value) for key, _, value in (item.partition("=") for item in items)]


def _option_sources(args) -> dict[str, tuple[str, str]]:
    """Planner option -> (the flag that set it, ``NAME=VALUE`` as given), the named flags winning."""
    sources = {k: ("--option", f"{k}={v}") for k, v in _raw_options(args.option)}
    for key, flag in _OPTION_FLAGS.items():
        if getattr(args, key) is not None:
            sources[key] = (flag, f"{key}={getattr(args, key)}")
    return sources


def _option_error(error: Exception, task, planner: str, overrides: dict, sources: dict) -> Exception:
    """``error`` as raised while checking ``planner``'s options, or, when Python rather than
    recede raised it (``float('abc')`` says nothing of where 'abc' came from), a usage error
    naming the flag, option and value: each override is checked alone to find it."""
    from recede.errors import RecedeError
    from recede.experiments.episode import check_options, layer_options

    if isinstance(error, RecedeError):
        return error
    for key, value in overrides.items():
        try:
            check_options(planner, layer_options(planner, task, {key: value}))
        except (ValueError, TypeError) as e:
            if isinstance(e, RecedeError):
                return e
            flag, given = sources.get(key, ("--option", f"{key}={value!r}"))
            return _UsageError(f"argument {flag}: {given}: {e}")
    return error


def _time_budget(args) -> float | None:
    if args.deadline_ms is None:
        return None
    if not (0 < args.deadline_ms < math.inf):
        raise _UsageError(f"argument --deadline-ms: must be a number > 0, got {args.deadline_ms:g}")
    return args.deadline_ms / 1e3


def _fmt_ms(ms: float) -> str:
    return "n/a" if not math.isfinite(ms) else f"{ms:.2f} ms"


def _success_text(task, log) -> str:
    if log.success is None:
        if log.steps >= task.episode_steps and not log.terminated:
            return "n/a (this task is judged by its return)"
        return f"n/a (stopped after {log.steps} of the episode's {task.episode_steps} steps)"
    if log.terminated:
        return f"no ({task.describe_termination(log.steps)})"
    return "yes" if log.success else "no"


def _shown(options: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items())


class _BarClock:
    """Keeps a progress bar's rate and ETA out of the warm-up (cold kernel compiles, first
    plans) and writes the compile note above the bar instead of through it.

    ``started()`` before an episode, ``ready()`` (``run_episode``'s ``on_ready``) after its
    warm-up: the bar's clock is moved forward by the warm-up's duration.
    """

    def __init__(self, bar):
        self.bar = bar
        self._t0 = None

    def __enter__(self):
        from recede import set_compile_notice

        self._previous = set_compile_notice(None, write=lambda line: self.bar.write(line, file=sys.stderr))
        return self

    def __exit__(self, *exc):
        from recede import set_compile_notice

        set_compile_notice(*self._previous)
        return False

    def started(self) -> None:
        self._t0 = None if self.bar.disable else self.bar._time()

    def ready(self) -> None:
        if self._t0 is None or self.bar.disable:
            return
        now = self.bar._time()
        self.bar.start_t += now - self._t0  # tqdm's rate is n / (now - start_t) ...
        self.bar.last_print_t = now  # ... smoothed over the updates since the last print
        self._t0 = None
        self.bar.refresh()


def _cmd_run(args) -> int:
    from tqdm import tqdm

    from recede.envs import get_task
    from recede.errors import Interrupted
    from recede.experiments import episode_record, episode_spec, run_episode
    from recede.planners.base import check_positive_int

    task = get_task(args.task)
    steps = task.episode_steps if args.steps is None else args.steps
    check_positive_int("steps", steps)  # before any output or compilation
    if args.video and not task.can_render:
        raise _UsageError(f"argument --video: task {task.name!r} has no MuJoCo model to render; "
                          f"use a MuJoCo task (e.g. cartpole-swingup-mj)")
    if args.video and not args.video.lower().endswith(".mp4"):
        raise _UsageError(f"argument --video: the path must end in .mp4, got {args.video!r}")
    if args.camera is not None:
        if not args.video:
            raise _UsageError(f"argument --camera: needs --video PATH.mp4 (the camera films the "
                              f"video), got --camera {args.camera!r} without it")
        cameras = task.cameras()
        if args.camera not in cameras:
            raise _UsageError(f"argument --camera: unknown camera {args.camera!r} for {task.name}; "
                              f"its cameras: {', '.join(cameras)}")
    if args.policy is not None:
        if args.value is not None:
            raise _UsageError("argument --value: a terminal cost for planners; not with --policy")
        return _run_policy(args, task, steps)
    if args.planner is None:
        args.planner = "cem"
    overrides = _overrides(args, _parse_options(args.option, "--option", False))
    proposal = _proposal_policy(args, task, overrides)
    time_budget = _time_budget(args)
    learned = None
    if args.model:
        from recede.policy_learning.pets import model_run_defaults

        learned = model_run_defaults(task, args.planner)
    elif args.model_option:
        raise _UsageError("argument --model-option: only with --model DIR")
    horizon = args.horizon if args.horizon is not None or learned is None else learned["horizon"]
    try:
        spec = episode_spec(task, args.planner, overrides, seed=args.seed, steps=steps,
                            horizon=horizon, replan_every=args.replan_every,
                            time_budget=time_budget, realtime=args.realtime,
                            defaults=None if learned is None else learned["planner"])
    except (ValueError, TypeError) as e:
        raise _option_error(e, task, args.planner, overrides, _option_sources(args)) from None
    model = _load_model(args.model, task) if args.model else None
    if model is not None:
        model.set_planning(**{**learned["model"], **_parse_options(args.model_option, "--model-option", False)})
    value = _load_value(args.value, task) if args.value else None

    outputs: list[_AtomicFile] = []
    try:
        json_out = _AtomicFile(args.json, "--json") if args.json else None
        if json_out:
            outputs.append(json_out)
        plot_out = _AtomicFile(args.plot, "--plot") if args.plot else None
        if plot_out:
            outputs.append(plot_out)
        video_out = _AtomicFile(args.video, "--video", keep_extension=True) if args.video else None
        if video_out:
            outputs.append(video_out)
            os.environ.setdefault("MUJOCO_GL", "egl")

        frames: list = []

        def on_step(t, bar, env):
            bar.update(1)
            if video_out:
                frames.append(env.render())

        with tqdm(
            total=min(steps, task.episode_steps), file=sys.stderr, disable=args.no_progress,
            desc=f"{task.name} {args.planner}", unit="step", dynamic_ncols=True,
        ) as bar, _BarClock(bar) as clock:
            clock.started()
            try:
                episode = run_episode(spec, model=model, value=value,
                                      render_mode="rgb_array" if video_out else None,
                                      camera=args.camera, on_step=lambda t, env: on_step(t, bar, env),
                                      on_ready=clock.ready, proposal_policy=proposal)
            except Interrupted as e:  # Ctrl-C: summarise and write the steps completed
                episode = e.partial
                if episode.log.steps == 0:
                    raise
        log, problem = episode.log, episode.problem

        dynamics = problem.dynamics
        summary = log.summary()
        if json_out:
            with open(json_out.tmp, "w", encoding="utf-8") as f:
                record = episode_record(episode)
                if proposal is not None:
                    record["proposal"] = args.proposal
                json.dump(record, f, allow_nan=False)
                f.write("\n")
        if plot_out:
            from recede.plotting import plot_format, plot_run

            on_model = f" on learned model {args.model}" if args.model else ""
            plot_run(log, plot_out.tmp,
                     title=f"{task.name} / {args.planner} (seed {args.seed}){on_model}",
                     dt=float(dynamics.dt), success_band=_success_band(task, log, float(dynamics.dt)),
                     format=plot_format(args.plot), **_plot_labels(task, dynamics))
        if video_out:
            _write_video(video_out.tmp, frames, fps=1.0 / float(dynamics.dt))
        for out in outputs:  # every output was drawn whole; only now do they appear
            out.commit()
    finally:
        for out in outputs:
            out.discard()

    rows = [
        ("task", task.name),
        ("planner", f"{args.planner} ({_shown(spec.options)})"),
        ("horizon", f"{problem.horizon} steps"),
        *([("model", f"{args.model} ({model!r})")] if model is not None else []),
        *([("value", f"{args.value} ({value!r}) as the terminal cost")] if value is not None else []),
        *([("proposal", args.proposal + (f" (share {spec.options['proposal_share']:g})"
                                         if "proposal_share" in spec.options else ""))]
          if proposal is not None else []),
        *([("precision", model.precision_note)] if getattr(model, "precision_note", "") else []),
        ("seed", str(args.seed)),
        ("steps", str(summary["steps"]) + (" (interrupted)" if log.interrupted else "")),
        ("return", f"{summary['return']:.4f}"),
        ("success", _success_text(task, log)),
        ("plan time", f"median {_fmt_ms(summary['plan_ms_median'])}, "
                      f"p99 {_fmt_ms(summary['plan_ms_p99'])}"),
    ]
    if args.deadline_ms is not None:
        planned = sum(s is not None for s in log.plan_status)
        rows.append(("deadline", f"{args.deadline_ms:g} ms: {log.deadline_hits} of {planned} plans "
                                 f"stopped at it (anytime)"))
    if args.json:
        rows.append(("json", args.json))
    if args.plot:
        rows.append(("plot", args.plot))
    if args.video:
        rows.append(("video", f"{args.video} (camera: {args.camera or task.default_camera})"))
    if getattr(dynamics, "diverged_total", 0):  # only when some did
        rows.append(("diverged", f"{dynamics.diverged_total} of {dynamics.rollouts_total} "
                                 f"rollouts (cost +inf, planning carried on)"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if log.interrupted:
        print(f"{PROG}: interrupted after {log.steps} steps", file=sys.stderr)
        return 130
    return 0


def _plot_labels(task, dynamics) -> dict[str, tuple[str, ...]]:
    """State and action names and units for plots: the planning model's, or the task's own
    model's when the planning model (a learned one) names none."""
    named = dynamics if getattr(dynamics, "action_names", None) else task.dynamics()
    nx, nu = named.nx, named.nu
    return dict(
        state_names=tuple(getattr(named, "state_names", None) or (f"x{i}" for i in range(nx))),
        action_names=tuple(getattr(named, "action_names", None) or (f"u{i}" for i in range(nu))),
        state_units=tuple(getattr(named, "state_units", None) or ("",) * nx),
        action_units=tuple(getattr(named, "action_units", None) or ("",) * nu),
    )


def _success_band(task, log, dt: float):
    """``(t0, {state index: (low, high)})``: the band the task's hold criterion asks each judged
    state to stay in over the episode's final hold window, or None (no such criterion, or a run
    stopped before that window). An angle's band is drawn around the copy of its target nearest
    the final state (the criterion wraps angles)."""
    import numpy as np

    from recede.envs.tasks import HoldCriterion

    crit = getattr(task, "success", None)
    states = np.asarray(log.states, dtype=np.float64)
    steps = states.shape[0] - 1
    start = task.episode_steps - crit.hold_steps(dt) if isinstance(crit, HoldCriterion) else steps
    if start >= steps:
        return None
    bands = {}
    for d, target, tol, angle in zip(crit.dims, crit.targets, crit.tolerances, crit.angles):
        if angle:
            target += 2.0 * math.pi * round((states[-1, d] - target) / (2.0 * math.pi))
        bands[d] = (target - tol, target + tol)
    return max(start, 0) * dt, bands


def _cmd_compare(args) -> int:
    from tqdm import tqdm

    from recede.envs import get_task
    from recede.experiments import episode_spec, json_safe, run_episode, summarize
    from recede.planners.base import check_positive_int
    from recede.planners.registry import planner_class

    task = get_task(args.task)
    steps = task.episode_steps if args.steps is None else args.steps
    check_positive_int("steps", steps)
    for name in args.planners:
        planner_class(name)  # unknown names fail before anything runs
    per_planner = _parse_options(args.option, "--option", True)
    unknown = sorted(set(per_planner) - set(args.planners))
    if unknown:
        raise _UsageError(f"argument --option: planner {unknown[0]!r} is not among --planners "
                          f"({', '.join(args.planners)})")
    time_budget = _time_budget(args)
    # every planner's options and the loop's arguments are checked before the first run
    specs = {}
    for name in args.planners:
        try:
            specs[name] = [episode_spec(task, name, per_planner.get(name), seed=seed, steps=steps,
                                        horizon=args.horizon, replan_every=args.replan_every,
                                        time_budget=time_budget, realtime=args.realtime)
                           for seed in args.seeds]
        except (ValueError, TypeError) as e:
            sources = {k.partition(".")[2]: ("--option", f"{k}={v}")
                       for k, v in _raw_options(args.option) if k.partition(".")[0] == name}
            raise _option_error(e, task, name, per_planner.get(name, {}), sources) from None
    options = {name: dict(specs[name][0].options) for name in args.planners}
    # --plot's extension is checked by argparse (_plot_path)

    outputs = []
    try:
        plot_out = _AtomicFile(args.plot, "--plot") if args.plot else None
        if plot_out:
            outputs.append(plot_out)
        json_out = _AtomicFile(args.json, "--json") if args.json else None
        if json_out:
            outputs.append(json_out)
        runs: dict[str, list] = {n: [] for n in args.planners}
        horizons: dict[str, int] = {}
        interrupted = None  # (planner, seed) of the run Ctrl-C cut short
        total = len(args.planners) * len(args.seeds) * min(steps, task.episode_steps)
        with tqdm(total=total, file=sys.stderr, disable=args.no_progress, desc=f"{task.name} compare",
                  unit="step", dynamic_ncols=True) as bar, _BarClock(bar) as clock:
            try:
                for name in args.planners:
                    for spec in specs[name]:
                        bar.set_postfix_str(f"{name} seed {spec.seed}")
                        interrupted = (name, spec.seed)
                        clock.started()
                        episode = run_episode(spec, on_step=lambda t, env: bar.update(1),
                                              on_ready=clock.ready)
                        horizons[name] = episode.problem.horizon
                        runs[name].append(episode.log)
                interrupted = None
            except KeyboardInterrupt:
                if not any(runs.values()):
                    raise  # nothing completed: nothing to tabulate
        done = [name for name in args.planners if runs[name]]  # every planner, unless interrupted
        table = [dict(summarize(name, runs[name]), horizon=horizons[name]) for name in done]
        if plot_out:
            from recede.plotting import plot_comparison, plot_format

            plot_comparison(table, plot_out.tmp, title=f"{task.name}: seeds {_seeds_text(args.seeds)}, "
                                                        f"{steps} steps"
                                                        + (" (interrupted)" if interrupted else ""),
                            format=plot_format(args.plot))
        if json_out:
            record = {
                "task": task.name, "seeds": args.seeds, "steps": steps, "horizons": horizons,
                "deadline_ms": args.deadline_ms, "options": options, "table": table,
                "runs": {n: [dict(seed=s, **log.summary()) for s, log in zip(args.seeds, runs[n])]
                         for n in done},
                "interrupted": interrupted is not None,
            }
            with open(json_out.tmp, "w", encoding="utf-8") as f:
                json.dump(json_safe(record), f, allow_nan=False)
                f.write("\n")
        for out in outputs:
            out.commit()
    finally:
        for out in outputs:
            out.discard()

    head = ("planner", "horizon", "success", "return (mean ± std)", "plan ms median", "plan ms p99",
            "samples/plan")
    body = [(
        r["planner"],
        str(r["horizon"]),
        "n/a" if r["success_rate"] is None else f"{r['successes']}/{r['runs']}",
        f"{r['return_mean']:.4g} ± {r['return_std']:.2g}",
        _fmt_ms(r["plan_ms_median"]).replace(" ms", ""),
        _fmt_ms(r["plan_ms_p99"]).replace(" ms", ""),
        "n/a" if r["samples_per_plan"] is None else f"{r['samples_per_plan']:.0f}",
    ) for r in table]
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(head)]
    print(f"{task.name}: {len(args.seeds)} seeds ({_seeds_text(args.seeds)}), {steps} steps"
          + (f", deadline {args.deadline_ms:g} ms" if args.deadline_ms else ""))
    if interrupted:
        completed = sum(len(r) for r in runs.values())
        print(f"interrupted during {interrupted[0]} seed {interrupted[1]}: the table covers the "
              f"{completed} of {len(args.planners) * len(args.seeds)} runs completed")
    for row in (head, *body):
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
    for name in done:
        counted = f" ({len(runs[name])} of {len(args.seeds)} seeds)" if interrupted else ""
        print(f"{name}{counted}: {_shown(options[name])}")
    if args.plot:
        print(f"plot: {args.plot}")
    if args.json:
        print(f"json: {args.json}")
    if interrupted:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


def _seeds_text(seeds) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}..{seeds[-1]}"
    return ",".join(str(s) for s in seeds)


def _write_video(path: str, frames, fps: float) -> None:
    """Encode RGB frames (H, W, 3) as H.264 MP4 at ``path`` (imageio + its bundled ffmpeg)."""
    import imageio.v2 as imageio

    with imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                            macro_block_size=8, ffmpeg_log_level="error") as writer:
        for frame in frames:
            writer.append_data(frame)


def _cmd_tasks(args) -> int:
    import textwrap

    from recede.envs import get_task, list_tasks
    from recede.errors import InvalidArgumentError
    from recede.planners.registry import make_planner
    from recede.problem import Problem

    for i, name in enumerate(list_tasks()):
        task = get_task(name)
        d = task.dynamics()
        names = tuple(getattr(d, "state_names", None) or (f"x{j}" for j in range(d.nx)))
        seconds = task.episode_steps * d.dt
        if i:
            print()
        print(f"{task.name}  ({task.gym_id})")
        print(f"  {task.description}")
        actions = tuple(getattr(d, "action_names", None) or (f"u{j}" for j in range(d.nu)))
        if d.nx + d.nu <= 12:
            print(f"  nx={d.nx} nu={d.nu}  state: {', '.join(names)}  action: {', '.join(actions)}")
        else:
            print(f"  nx={d.nx} nu={d.nu}  (MuJoCo state [qpos, qvel, act])")
        print(f"  episode: {task.episode_steps} steps = {seconds:g} s (dt {d.dt:g} s)"
              f"  default horizon: {task.horizon} steps"
              + "".join(f" ({p}: {h})" for p, h in sorted(task.planner_horizons.items())))
        print(f"  success: {task.describe_success(names)}")
        cost = task.cost(d)
        refused: dict[str, list[str]] = {}  # why -> planners: listed only if they can plan here
        for planner, opts in sorted(task.planner_defaults.items()):
            try:  # what `recede run` builds, without running it
                make_planner(planner, Problem(d, cost, task.horizon_for(planner)), **opts)
            except InvalidArgumentError as e:
                refused.setdefault(" ".join(str(e).split()), []).append(planner)
                continue
            shown = " ".join(f"{k}={v}" for k, v in opts.items())
            print(f"  {planner} defaults: {shown}")
        for why, planners in refused.items():
            print(textwrap.fill(f"{', '.join(planners)}: cannot plan this task: {why}", width=100,
                                initial_indent="  ", subsequent_indent="    "))
    return 0


def _summary(doc: str | None) -> str:
    """The first sentence of a docstring as plain text (no reST roles or literals)."""
    import re

    text = " ".join((doc or "").strip().split("\n\n")[0].split())
    text = re.sub(r":\w+:`~?(?:[\w.]+\.)?([^`]+)`", r"\1", text)  # :class:`~recede.Problem`
    text = text.replace("``", "")
    match = re.match(r"(.+?\.)(\s|$)", text)
    return match.group(1) if match else text


def _cmd_planners(args) -> int:
    import enum

    from recede.planners.registry import PLANNERS, planner_options

    print("Each planner's own defaults. A task may set its own for a planner ('recede tasks'")
    print("lists them); flags and --option override both.")
    for name in sorted(PLANNERS):
        cls, _ = PLANNERS[name]
        summary = _summary(cls.__doc__)
        print()
        print(f"{name}  ({cls.__name__}){': ' + summary if summary else ''}")
        options = planner_options(name)
        width = max((len(k) for k in options), default=0)
        for key, default in options.items():
            flag = f"  ({_OPTION_FLAGS[key]})" if key in _OPTION_FLAGS else ""
            if isinstance(default, enum.Enum):  # shown as typed: its value, and the choices
                shown = f"{default.value!r}  (one of {', '.join(repr(e.value) for e in type(default))})"
            else:
                shown = repr(default)
            print(f"  {key:<{width}} = {shown}{flag}")
    return 0


# --------------------------------------------------------------------------- entry point


# --------------------------------------------------------------------------- learned models


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _add_model_commands(sub) -> None:
    collect = sub.add_parser(
        "collect", help="log transitions of a policy on a task to a dataset (.npz or D4RL .hdf5)",
        description="Run POLICY on TASK for N episodes and write every transition (observation, "
                    "action, next observation, reward, terminated, truncated, episode id) to "
                    "--out: an .npz dataset, or with .hdf5/.h5 a D4RL-style HDF5 file "
                    "(observations, actions, rewards, terminals, timeouts, next_observations). "
                    "Observations are the task's model state. A trained policy (--policy DIR) "
                    "with --noise records data of chosen quality for offline learning.")
    collect.add_argument("task", metavar="TASK", help="task name or Gymnasium id (see 'recede tasks')")
    collect.add_argument("--policy", default="random", metavar="{random,mpc,DIR}",
                         help="random: uniform actions in the bounds; mpc: the planner on the "
                              "task's own model; DIR: a trained policy's checkpoint directory "
                              "(e.g. OUT/seed_0 of 'recede train-policy'; write ./random for a "
                              "directory of that name) (default: random)")
    collect.add_argument("--planner", default=None, help="planner of --policy mpc (default: cem)")
    collect.add_argument("--noise", type=float, default=0.0, metavar="STD",
                         help="add Gaussian noise of this std to every action, in units of the "
                              "action range's half-width, clipped to the bounds; seeded by --seed "
                              "(default: 0)")
    collect.add_argument("--episodes", type=_positive_int, default=1, help="episodes (default: 1)")
    collect.add_argument("--steps", type=_positive_int, default=None,
                         help="cut every episode after this many steps")
    collect.add_argument("--seed", type=_non_negative_int, default=0,
                         help="episode i resets with seed SEED + i (default: 0)")
    collect.add_argument("--out", metavar="PATH", required=True,
                         help="where to write the dataset: PATH.npz, or PATH.hdf5 / PATH.h5 (D4RL layout)")
    collect.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    collect.set_defaults(func=_cmd_collect)

    train = sub.add_parser(
        "train-model", help="train a probabilistic ensemble on a dataset",
        description="Fit an ensemble of Gaussian MLPs to DATA (an .npz from 'recede collect', "
                    "'recede pets --out-data' or recede.data) and write a checkpoint directory "
                    "(weights.safetensors + model.json). With --task the model takes the task's "
                    "dt, action bounds and angle dims (and records the task's name); without, "
                    "sizes and action bounds come from the data. An existing checkpoint at --out "
                    "is resumed with --resume or replaced with --force, never silently. Ctrl-C "
                    "saves the best weights so far to --out and exits with status 130.")
    train.add_argument("data", metavar="DATA", type=_existing_file, help="dataset .npz")
    train.add_argument("--out", metavar="DIR", required=True, help="checkpoint directory to write")
    train.add_argument("--task", default=None, help="task the model is for (dt, bounds, angles)")
    train.add_argument("--members", type=_positive_int, default=5, help="ensemble members (default: 5)")
    train.add_argument("--hidden", type=_positive_int, default=200, help="hidden width (default: 200)")
    train.add_argument("--layers", type=_positive_int, default=4, help="hidden layers (default: 4)")
    train.add_argument("--elites", type=_positive_int, default=None, help="elites (default: all members)")
    train.add_argument("--predict-reward", action="store_true", help="also learn the reward")
    train.add_argument("--propagation", default="tsinf",
                       help="particle propagation when planning: ts1, tsinf, expectation, mean")
    train.add_argument("--particles", type=_positive_int, default=20, help="particles (default: 20)")
    train.add_argument("--epochs", type=_positive_int, default=100, help="most epochs (default: 100)")
    train.add_argument("--batch-size", type=_positive_int, default=256, help="default: 256")
    train.add_argument("--learning-rate", type=float, default=1e-3, help="default: 1e-3")
    train.add_argument("--holdout", type=float, default=0.1, help="held-out share (default: 0.1)")
    train.add_argument("--patience", type=_positive_int, default=5, help="default: 5")
    train.add_argument("--seed", type=_non_negative_int, default=0, help="default: 0")
    train.add_argument("--resume", action="store_true",
                       help="continue training the checkpoint at --out (its architecture wins)")
    train.add_argument("--force", action="store_true",
                       help="replace an existing checkpoint at --out with a new model")
    train.add_argument("--csv", metavar="PATH", default=None, help="per-epoch metrics as CSV")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.set_defaults(func=_cmd_train_model)

    pets = sub.add_parser(
        "pets", help="PETS: collect, train an ensemble, plan on it in the real env, repeat",
        description="Run PETS on TASK: random episodes first, then TRIALS episodes of MPC on an "
                    "ensemble refit to all data before each. Prints one line per trial; writes "
                    "the trials as CSV (--csv), a learning curve as PNG (--plot), the model and "
                    "the data only where asked. Ctrl-C writes them for the trials completed and "
                    "exits with status 130.")
    pets.add_argument("task", metavar="TASK", help="task name or Gymnasium id (see 'recede tasks')")
    pets.add_argument("--trials", type=_positive_int, default=10, help="model-based trials (default: 10)")
    pets.add_argument("--seed", type=_non_negative_int, default=0, help="default: 0")
    pets.add_argument("--planner", default="cem", help="planner on the model (default: cem)")
    pets.add_argument("--horizon", type=_positive_int, default=None, help="planning horizon")
    pets.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                      help="planner option (repeatable)")
    pets.add_argument("--model-option", action="append", default=[], metavar="NAME=VALUE",
                      help="ensemble option, e.g. particles=20 or hidden=200 (repeatable)")
    pets.add_argument("--train-option", action="append", default=[], metavar="NAME=VALUE",
                      help="training option, e.g. epochs=50 (repeatable)")
    pets.add_argument("--initial-episodes", type=_positive_int, default=None,
                      help="random episodes before the first model (default: the task's)")
    pets.add_argument("--steps", type=_positive_int, default=None, help="cut every episode after this many steps")
    pets.add_argument("--stop-on-success", action="store_true",
                      help="end after the first trial that meets the task's success criterion")
    pets.add_argument("--csv", metavar="PATH", default=None, help="write the trials as CSV here")
    pets.add_argument("--plot", metavar="PATH.png", default=None, type=_plot_path,
                      help="draw the learning curve here (.png, .pdf or .svg)")
    pets.add_argument("--out-model", metavar="DIR", default=None, help="write the final model here")
    pets.add_argument("--out-data", metavar="PATH.npz", default=None, help="write all data here")
    pets.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    pets.set_defaults(func=_cmd_pets)


def _load_model(path: str, task=None):
    from recede.models.ensemble import Ensemble

    model = Ensemble.load(path)
    if task is not None:
        _check_model_task(model, path, task, "--model")
    return model


def _check_model_task(model, path: str, task, flag: str) -> None:
    """Refuse a model of another system for ``task``: the task recorded in its checkpoint (if
    any), then nx and nu, dt and the action bounds (a bound the model leaves infinite is
    unspecified and passes)."""
    d = task.dynamics()
    if model.task is not None and model.task != task.name:
        raise _UsageError(f"argument {flag}: {path} is a model of task {model.task!r}, not "
                          f"{task.name!r}")
    if (model.nx, model.nu) != (d.nx, d.nu):
        raise _UsageError(f"argument {flag}: {path} has nx={model.nx}, nu={model.nu} but task "
                          f"{task.name!r} has nx={d.nx}, nu={d.nu}")
    retrain = "" if model.task is not None else f" (retrain it with --task {task.name})"
    if not math.isclose(model.dt, float(d.dt), rel_tol=1e-9):
        raise _UsageError(f"argument {flag}: {path} has dt={model.dt:g} but task {task.name!r} has "
                          f"dt={float(d.dt):g}{retrain}")
    import numpy as np

    for name, mine, theirs in (("action_low", model.action_low, d.action_low),
                               ("action_high", model.action_high, d.action_high)):
        mine, theirs = np.asarray(mine, dtype=float), np.asarray(theirs, dtype=float)
        given = np.isfinite(mine)
        if not np.allclose(mine[given], np.broadcast_to(theirs, mine.shape)[given], rtol=1e-9, atol=0.0):
            raise _UsageError(f"argument {flag}: {path} has {name}={_vector(mine)} but task "
                              f"{task.name!r} has {name}={_vector(theirs)}{retrain}")


def _replaces_checkpoint(path: str, flag: str) -> bool:
    """Whether writing a checkpoint to ``path`` replaces one. A directory holding anything but a
    checkpoint's files is refused outright: saving swaps the whole directory out."""
    from recede.models.ensemble import META, WEIGHTS

    if not os.path.lexists(path):
        return False
    if os.path.isdir(path):
        entries = set(os.listdir(path))
        if not entries:
            return False  # an empty directory: nothing to lose
        if not entries <= {META, WEIGHTS}:
            raise _UsageError(f"argument {flag}: {path!r} is a directory that is not a model "
                              f"checkpoint; saving would replace all of it, so choose another path")
    return True


def _vector(a) -> str:
    return "[" + ", ".join(f"{v:g}" for v in a) + "]"


def _cmd_collect(args) -> int:
    from tqdm import tqdm

    from recede.envs import get_task
    from recede.policy_learning.pets import POLICIES, collect

    task = get_task(args.task)
    hdf5 = args.out.lower().endswith((".hdf5", ".h5"))
    if not (args.out.endswith(".npz") or hdf5):
        raise _UsageError(f"argument --out: the path must end in .npz, .hdf5 or .h5, got {args.out!r}")
    if not (math.isfinite(args.noise) and args.noise >= 0):
        raise _UsageError(f"argument --noise: must be a number >= 0, got {args.noise:g}")
    import numpy as np

    policy, label, trained = args.policy, args.policy, ""
    if args.policy not in POLICIES:
        from recede.errors import InvalidArgumentError
        from recede.experiments.policy_run import policy_label
        from recede.policies import load_policy, policy_info

        if not os.path.isdir(args.policy):
            raise _UsageError(f"argument --policy: must be {', '.join(POLICIES)} or a policy "
                              f"checkpoint directory, got {args.policy!r} (no such directory)")
        if args.planner is not None:
            raise _UsageError("argument --planner: only with --policy mpc; a trained policy acts "
                              "without a planner")
        try:
            policy = load_policy(args.policy, task)
        except InvalidArgumentError as e:
            raise _UsageError(f"argument --policy: {e}{_policy_dir_hint(args.policy)}") from None
        label = policy_label(policy.meta)
        trained_on = policy_info(args.policy).get("task")
        trained = f" (trained on {trained_on})" if trained_on not in (None, task.name) else ""
    if hdf5:
        from recede.data.d4rl import _h5py

        _h5py()  # a missing h5py fails before the episodes

    _AtomicFile(args.out, "--out").discard()  # a bad path fails before the episodes
    returns = []
    with tqdm(total=args.episodes, file=sys.stderr, disable=args.no_progress,
              desc=f"{task.name} {label}", unit="episode", dynamic_ncols=True) as bar:
        def on_episode(i, log):
            returns.append(log.total_return)
            bar.update(1)

        data = collect(task, policy, args.episodes, seed=args.seed, planner=args.planner or "cem",
                       steps=args.steps, noise=args.noise, on_episode=on_episode)
    if hdf5:
        from recede.data import save_d4rl_hdf5

        save_d4rl_hdf5(data, args.out)  # atomic
    else:
        data.save(args.out)  # atomic
    print(f"{'task':<12}  {task.name}")
    print(f"{'policy':<12}  {args.policy if policy is args.policy else f'{label} {args.policy}{trained}'}")
    if args.noise > 0:
        print(f"{'noise':<12}  {args.noise:g} (std, in half-widths of the action range)")
    print(f"{'episodes':<12}  {args.episodes}")
    print(f"{'transitions':<12}  {len(data)}")
    print(f"{'return':<12}  mean {np.mean(returns):.4f}, min {np.min(returns):.4f}, max {np.max(returns):.4f}")
    print(f"{'data':<12}  {args.out}" + (" (D4RL layout)" if hdf5 else ""))
    return 0


def _cmd_train_model(args) -> int:
    import numpy as np

    from recede.data import TransitionDataset
    from recede.errors import Interrupted
    from recede.models.ensemble import Ensemble, TrainConfig

    if not args.resume and _replaces_checkpoint(args.out, "--out") and not args.force:
        raise _UsageError(f"argument --out: {args.out!r} already exists; pass --resume to continue "
                          f"training it or --force to replace it")
    data = TransitionDataset.load(args.data)
    tc = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                     holdout=args.holdout, patience=args.patience, seed=args.seed)
    if args.resume:
        model = Ensemble.load(args.out)
        if args.task:
            from recede.envs import get_task

            _check_model_task(model, args.out, get_task(args.task), "--task")
        data.check_dims(model.nx, model.nu, where="model")
    else:
        options = dict(members=args.members, hidden=args.hidden, layers=args.layers,
                       elites=args.elites, predict_reward=args.predict_reward,
                       propagation=args.propagation, particles=args.particles)
        if args.task:
            from recede.envs import get_task
            from recede.policy_learning.pets import model_for

            task = get_task(args.task)
            model = model_for(task, seed=args.seed, **options)
            data.check_dims(model.nx, model.nu, where=f"task {task.name!r}")
        else:
            low, high = data.actions.min(axis=0), data.actions.max(axis=0)
            model = Ensemble(data.nx, data.nu, action_low=low, action_high=high, seed=args.seed,
                             **options)
    if args.csv:
        _AtomicFile(args.csv, "--csv").discard()  # a bad path fails before training
    _AtomicFile(os.path.join(os.path.dirname(os.path.abspath(args.out)), ".probe"), "--out").discard()
    try:
        fit = model.fit(data, tc, progress=not args.no_progress, csv_path=args.csv)
    except Interrupted as e:
        fit = e.partial
        if not fit.epochs:
            print(f"{PROG}: interrupted before the first epoch ended; nothing saved", file=sys.stderr)
            return 130
    model.save(args.out)  # atomic: a second Ctrl-C leaves the previous checkpoint (or none)
    last = fit.epochs[-1]
    ended = " (interrupted)" if fit.interrupted else " (stopped early)" if fit.stopped_early else ""
    print(f"{'model':<12}  {model!r}")
    print(f"{'data':<12}  {args.data} ({len(data)} transitions: {fit.train_rows} train, {fit.holdout_rows} held out)")
    print(f"{'epochs':<12}  {len(fit.epochs)}{ended}, {fit.seconds:.1f} s")
    print(f"{'train':<12}  nll {last.train_nll:.4f}, mse {last.train_mse:.5f}")
    elite_mse = np.mean([fit.best_holdout_mse[e] for e in fit.elites])
    print(f"{'held out':<12}  elites' mse {elite_mse:.5f} (normalised units), elites {list(fit.elites)}")
    print(f"{'checkpoint':<12}  {args.out}")
    if args.csv:
        print(f"{'metrics':<12}  {args.csv}")
    if fit.interrupted:
        print(f"{PROG}: interrupted after {len(fit.epochs)} epochs of this run; saved the best "
              f"weights so far to {args.out}", file=sys.stderr)
        return 130
    return 0


def _cmd_pets(args) -> int:
    from recede.envs import get_task
    from recede.errors import Interrupted
    from recede.policy_learning.pets import pets

    task = get_task(args.task)
    popts = _parse_options(args.option, "--option", False)
    mopts = _parse_options(args.model_option, "--model-option", False)
    topts = _parse_options(args.train_option, "--train-option", False)
    if args.out_data and not args.out_data.endswith(".npz"):
        raise _UsageError(f"argument --out-data: the path must end in .npz, got {args.out_data!r}")
    for path, flag in ((args.csv, "--csv"), (args.plot, "--plot"), (args.out_data, "--out-data")):
        if path:
            _AtomicFile(path, flag).discard()  # bad paths fail before the trials
    if args.out_model:
        _replaces_checkpoint(args.out_model, "--out-model")
    print(f"{'trial':>5}  {'policy':<6}  {'return':>10}  {'success':<7}  {'steps':>5}  "
          f"{'data':>6}  {'epochs':>6}  {'mse':>8}  {'plan ms':>8}  {'s':>6}", flush=True)

    def on_trial(t):
        from tqdm import tqdm

        # through tqdm, so the progress bar on stderr is cleared and redrawn around the line
        tqdm.write(f"{t.trial:>5}  {t.policy:<6}  {t.episode_return:>10.2f}  {str(t.success):<7}  "
                   f"{t.steps:>5}  {t.transitions:>6}  {t.epochs:>6}  {t.holdout_mse:>8.5f}  "
                   f"{t.plan_ms_median:>8.1f}  {t.seconds:>6.1f}", file=sys.stdout)
        sys.stdout.flush()

    try:
        result = pets(task, args.trials, seed=args.seed, planner=args.planner, model_options=mopts,
                      train_options=topts, planner_options_=popts, horizon=args.horizon,
                      initial_episodes=args.initial_episodes, steps=args.steps,
                      stop_on_success=args.stop_on_success, progress=not args.no_progress,
                      on_trial=on_trial)
    except Interrupted as e:
        result = e.partial
        written = _write_pets_outputs(args, task, result)
        done = [t.trial for t in result.trials]
        print(f"{PROG}: interrupted " + (f"after trial {done[-1]}" if done else "before trial 0 ended")
              + (f"; wrote {', '.join(written)} for the trials completed" if written else
                 "; nothing written"), file=sys.stderr)
        return 130
    written = _write_pets_outputs(args, task, result)
    first = result.first_success()
    print(f"first success: {'none' if first is None else f'trial {first}'}"
          + "".join(f"; {w}" for w in written))
    return 0


def _write_pets_outputs(args, task, result) -> list[str]:
    """The outputs asked for, of the trials in ``result`` (all of them, or those an interrupt
    left): one 'what PATH' entry per file written."""
    from recede.policy_learning.pets import plot_trials, write_trials_csv

    written = []
    if args.csv and result.trials:
        write_trials_csv(args.csv, result.trials)
        written.append(f"csv {args.csv}")
    if args.plot and result.trials:
        plot_trials(args.plot, result.trials, title=f"PETS on {task.name} (seed {args.seed})")
        written.append(f"plot {args.plot}")
    if args.out_model and result.model is not None and result.model.trained_epochs:
        result.model.save(args.out_model)
        written.append(f"model {args.out_model}")
    if args.out_data and result.data is not None and len(result.data):
        result.data.save(args.out_data)
        written.append(f"data {args.out_data}")
    return written


# --------------------------------------------------------------------------- learned policies

# The policy learners: --algo name -> (module, train function, config class). Each trains K seeds
# in one call, ``train(task, config, *, seeds, model, out, resume, device, on_step, on_eval)``,
# returning a result with ``evals`` (EvalLogs), ``env_steps``, ``wall_s`` and ``resumed_from``,
# and raising recede.Interrupted(partial) on Ctrl-C. Imported only when named, so a learner this
# recede does not have yet is reported as such rather than failing every command.
from recede._learners import LEARNERS as _LEARNERS  # noqa: E402 - imports no learner, no torch

# What train-policy writes into --out, besides the learner's checkpoint/, seed_<s>/ and evals.csv.
_CURVE, _SUMMARY = "curve.png", "summary.json"


def _learner(algo: str):
    """``(train function, config class)`` of ``algo``."""
    import importlib

    module, train, config = _LEARNERS[algo]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise _UsageError(f"argument --algo: {algo} is not available yet (this recede has no "
                          f"{module})") from None
    return getattr(mod, train), getattr(mod, config)


def _config_fields(config_cls) -> dict:
    """A config dataclass's fields -> their types (annotations resolved)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls) if f.init}


def _type_text(hint) -> str:
    """What a value of type ``hint`` looks like on the command line."""
    import enum
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [_type_text(a) for a in args if a is not type(None)]
        return " or ".join(inner + (["None"] if type(None) in args else []))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            one = _type_text(args[0]).split(" ", 1)[-1]  # "an integer" -> "integer"
            return f"comma-separated {one}s" + (" (e.g. 64,64)" if args[0] is int else "")
        return f"{len(args)} comma-separated values"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in hint)
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, "a value")


def _typed_value(text: str, hint):
    """``text`` read as a value of type ``hint`` (int, float, bool, str, an enum, a tuple of
    those, or an optional of one: 'None'); ValueError if it is not one."""
    import enum
    import types
    import typing

    s = text.strip()
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and s.lower() == "none":
            return None
        for a in args:
            if a is not type(None):
                try:
                    return _typed_value(s, a)
                except ValueError:
                    pass
        raise ValueError(s)
    if origin is tuple:
        body = s.strip("()[] ")
        parts = [p for p in body.split(",") if p.strip()] if body else []
        if len(args) == 2 and args[1] is Ellipsis:
            kinds = [args[0]] * len(parts)
        elif len(parts) == len(args):
            kinds = list(args)
        else:
            raise ValueError(s)
        return tuple(_typed_value(p, k) for p, k in zip(parts, kinds))
    if hint is bool:
        if s.lower() in ("true", "yes", "on", "1"):
            return True
        if s.lower() in ("false", "no", "off", "0"):
            return False
        raise ValueError(s)
    if hint is int:
        return int(s)
    if hint is float:
        return float(s)
    if hint is str:
        return s
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        for m in hint:
            if str(m.value) == s or m.name.lower() == s.lower():
                return m
        raise ValueError(s)
    return _parse_value(s)


def _learner_config(config_cls, algo: str, items: list[str], steps: int | None, base: dict | None = None):
    """``config_cls`` built from ``base`` (a checkpoint's config, on --resume), then --option's
    ``NAME=VALUE`` items (each read as its field's type), then --steps; a refused value names
    the flag that gave it."""
    fields = _config_fields(config_cls)
    given: dict[str, tuple[Any, str]] = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise _UsageError(f"argument --option: expected NAME=VALUE, got {item!r}")
        if key == "steps":
            raise _UsageError(f"argument --option: set steps with --steps, got {item!r}")
        if key not in fields:
            names = ", ".join(n for n in fields if n != "steps")
            raise _UsageError(f"argument --option: {algo} has no option {key!r}; its options: {names}")
        try:
            given[key] = (_typed_value(text, fields[key]), item.strip())
        except ValueError:
            raise _UsageError(f"argument --option: {item.strip()}: expected {_type_text(fields[key])}, "
                              f"got {text.strip()!r}") from None
    values = {k: v for k, v in (base or {}).items() if k in fields}
    values.update({k: v for k, (v, _) in given.items()})
    if steps is not None:
        values["steps"] = steps
    try:
        return config_cls(**values)
    except (ValueError, TypeError) as e:
        culprits = [(f"--option: {item}", {k: v}) for k, (v, item) in given.items()]
        culprits += [("--steps", {"steps": steps})] if steps is not None else []
        for flag, alone in culprits:  # which flag gave the value the config refused
            try:
                config_cls(**alone)
            except (ValueError, TypeError):
                raise _UsageError(f"argument {flag}: {e}") from None
        raise


def _steps_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _add_policy_commands(sub) -> None:
    tp = sub.add_parser(
        "train-policy", help="train a model-free policy (SAC) for several seeds",
        description="Train ALGO on TASK for --steps env steps per seed, every seed of --seeds in "
                    "one batch, in the task's real env (or, with --model, in a learned model; "
                    "evaluations always run in the real env). Writes to --out: checkpoint/ "
                    "(resumable), seed_<s>/ (each seed's policy, for 'recede run TASK --policy "
                    "OUT/seed_<s>'), evals.csv (one row per seed and evaluation), curve.png (mean "
                    "evaluation return over seeds against env steps, with the min-max band over "
                    "seeds) and summary.json (the final evaluation: mean and std over seeds, env "
                    "steps, wall time, config). Ctrl-C writes the checkpoint and the outputs so "
                    "far, prints how to resume, and exits with status 130.")
    tp.add_argument("task", metavar="TASK", help="task name or Gymnasium id (see 'recede tasks')")
    tp.add_argument("--algo", choices=sorted(_LEARNERS), default="sac",
                    help="the learner (default: sac)")
    tp.add_argument("--steps", type=_steps_arg, default=None,
                    help="env steps per seed: the config's steps (default: the algorithm's; with "
                         "--resume, the checkpoint's; raise it to train on)")
    tp.add_argument("--seeds", type=_seed_list, default=None,
                    help="seeds as A..B (inclusive) or a comma list, e.g. 0..2 (default: 0; with "
                         "--resume, the checkpoint's)")
    tp.add_argument("--out", metavar="DIR", required=True, help="output directory (see above)")
    tp.add_argument("--model", metavar="DIR", default=None,
                    help="train in this learned ensemble (a checkpoint from 'recede train-model' "
                         "or 'recede pets') instead of the real env")
    tp.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="set a field of the algorithm's config, e.g. learning_starts=1000, "
                         "hidden=64,64, alpha=None (repeatable; a wrong name lists them)")
    tp.add_argument("--device", default="cpu", help="torch device: cpu or cuda (default: cpu)")
    tp.add_argument("--resume", action="store_true",
                    help="continue from OUT/checkpoint (its seeds and config, unless given)")
    tp.add_argument("--force", action="store_true",
                    help="start a new run in an OUT that holds one (its files are replaced as "
                         "the new run writes them)")
    tp.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    tp.set_defaults(func=_cmd_train_policy)


def _read_checkpoint_state(ckpt: str) -> dict:
    path = os.path.join(ckpt, "state.json")
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError) as e:
        raise _UsageError(f"argument --resume: cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    if not isinstance(state, dict):
        raise _UsageError(f"argument --resume: {path} is not a learner's checkpoint state")
    return state


def _torch_device(text: str):
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as e:
        raise _UsageError(f"argument --device: {' '.join(str(e).split())}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise _UsageError(f"argument --device: {text!r}: CUDA is not available on this machine")
    return device


def _cmd_train_policy(args) -> int:
    import shlex

    import numpy as np

    from recede.envs import get_task
    from recede.errors import Interrupted

    # everything is checked before anything is written
    task = get_task(args.task)
    train, config_cls = _learner(args.algo)
    if args.resume and args.force:
        raise _UsageError("argument --force: not with --resume (--force starts a new run)")
    out = os.path.abspath(args.out)
    if os.path.lexists(out) and not os.path.isdir(out):
        raise _UsageError(f"argument --out: {args.out!r} is a file, not a directory")
    if not os.path.isdir(os.path.dirname(out)):
        raise _UsageError(f"argument --out: the directory of {args.out!r} does not exist")
    ckpt = os.path.join(out, "checkpoint")
    base, start, seeds, steps = None, 0, args.seeds, args.steps
    if args.resume:
        if not os.path.isdir(ckpt):
            raise _UsageError(f"argument --resume: no checkpoint to resume in {args.out!r} "
                              f"(no {os.path.join(args.out, 'checkpoint')}); train without --resume first")
        state = _read_checkpoint_state(ckpt)
        if state.get("task") not in (None, task.name):
            raise _UsageError(f"argument TASK: the checkpoint in {args.out!r} is for task "
                              f"{state['task']!r}, not {task.name!r}")
        base = state.get("config") if isinstance(state.get("config"), dict) else None
        start = int(state.get("step", 0))
        seeds = seeds if seeds is not None else state.get("seeds")
        planned = steps if steps is not None else (base or {}).get("steps")
        if planned is not None and planned <= start:
            raise _UsageError(f"argument --steps: the checkpoint in {args.out!r} has trained {start} "
                              f"env steps of its {(base or {}).get('steps', start)}; pass --steps above "
                              f"{start} to train on" + (f", got {steps}" if args.steps is not None else ""))
    elif os.path.isdir(out) and not args.force and any(
            os.path.lexists(os.path.join(out, n)) for n in ("checkpoint", "evals.csv", _SUMMARY)):
        raise _UsageError(f"argument --out: {args.out!r} already holds a training run; pass --resume "
                          f"to continue it or --force to start a new one there")
    seeds = [0] if seeds is None else list(seeds)
    if len(set(seeds)) != len(seeds):
        raise _UsageError(f"argument --seeds: seeds must be distinct, got {_seeds_text(seeds)}")
    config = _learner_config(config_cls, args.algo, args.option, steps, base)
    device = _torch_device(args.device)
    model = None
    if args.model:
        model = _load_model(args.model, task)
    probe = out if os.path.isdir(out) else os.path.dirname(out)
    _AtomicFile(os.path.join(probe, ".probe"), "--out").discard()  # an unwritable --out fails now

    from tqdm import tqdm

    created = not os.path.exists(out)
    label = f"{args.algo} {task.name}, {len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
    with tqdm(total=config.steps, initial=start, file=sys.stderr, disable=args.no_progress, desc=label,
              unit="step", dynamic_ncols=True) as bar, _BarClock(bar):
        def on_step(t):
            bar.update(t - bar.n)

        def on_eval(logs):
            bar.set_postfix_str(f"eval return {np.mean([e.return_mean for e in logs]):.4g}")

        try:
            result = train(task, config, seeds=seeds, model=model, out=out, resume=args.resume,
                           device=device, on_step=on_step, on_eval=on_eval)
            interrupted = False
        except Interrupted as e:
            result, interrupted = e.partial, True
        except BaseException:  # refused, failed, or Ctrl-C before training began
            if created and os.path.isdir(out) and not os.listdir(out):
                os.rmdir(out)  # a run that wrote nothing leaves nothing
            raise

    summary = _train_summary(task, args, config, seeds, result, interrupted, device)
    written = _write_train_outputs(out, task, args.algo, seeds, result, summary)

    final = summary["final"]
    print(f"{args.algo} on {task.name}: {result.env_steps} env steps per seed"
          + (f" (resumed from {summary['resumed_from']})" if summary["resumed_from"] else "")
          + (" (interrupted)" if interrupted else "") + f", {result.wall_s:.1f} s")
    if final is None:
        print("no evaluation yet")
    else:
        head = ("seed", "evaluated at", "return", "success")
        body = [(str(r["seed"]), f"{r['env_steps']} steps", f"{r['return_mean']:.4f}",
                 "n/a" if r["successes"] is None else f"{r['successes']}/{r['episodes']}")
                for r in final["per_seed"]]
        widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(head)]
        for row in (head, *body):
            print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
        print(f"mean ± std over {len(seeds)} seed{'s' if len(seeds) > 1 else ''}: "
              f"{final['return_mean']:.4f} ± {final['return_std']:.4f} "
              f"(final evaluation, {final['env_steps']} env steps per seed, wall {result.wall_s:.1f} s)")
    print(f"out: {args.out} ({', '.join(written)})")
    if interrupted:
        again = [PROG, "train-policy", task.name, "--algo", args.algo, "--out", args.out, "--resume"]
        again += ["--model", args.model] if args.model else []
        again += ["--device", args.device] if args.device != "cpu" else []
        print(f"{PROG}: interrupted at env step {result.env_steps} of {config.steps}; the checkpoint is "
              f"in {os.path.join(args.out, 'checkpoint')}; resume with: "
              + " ".join(shlex.quote(a) for a in again), file=sys.stderr)
        return 130
    return 0


def _train_summary(task, args, config, seeds, result, interrupted: bool, device) -> dict:
    """summary.json: the run and its final evaluation per seed, with the mean and the standard
    deviation (numpy's, ddof=0) of the seeds' mean returns."""
    import dataclasses

    import numpy as np

    from recede.experiments import json_safe

    last = {}
    for e in result.evals:  # in order: each seed's last evaluation wins
        last[e.seed] = e
    final = None
    if last and all(s in last for s in seeds):
        per_seed = [{"seed": s, "env_steps": last[s].env_steps, "return_mean": last[s].return_mean,
                     "return_std": last[s].return_std, "returns": list(last[s].returns),
                     "successes": last[s].successes, "episodes": len(last[s].returns)} for s in seeds]
        means = np.array([r["return_mean"] for r in per_seed])
        final = {"env_steps": min(r["env_steps"] for r in per_seed), "return_mean": float(means.mean()),
                 "return_std": float(means.std()), "per_seed": per_seed}
    return json_safe({
        "task": task.name, "algo": args.algo, "seeds": list(seeds), "env_steps": result.env_steps,
        "wall_s": result.wall_s, "interrupted": interrupted,
        "resumed_from": getattr(result, "resumed_from", 0), "evaluations": len(result.evals),
        "final": final, "model": os.path.abspath(args.model) if args.model else None,
        "device": str(device), "config": dataclasses.asdict(config),
    })


def _write_train_outputs(out: str, task, algo: str, seeds, result, summary: dict) -> list[str]:
    """curve.png (when there are evaluations) and summary.json; the names of every output in
    ``out`` (the learner wrote checkpoint/, seed_<s>/ and evals.csv)."""
    from recede._io import atomic_file
    from recede.plotting import plot_learning_curve

    written = []
    if result.evals:
        curves: dict[int, list] = {int(s): [] for s in seeds}
        for e in result.evals:
            curves[e.seed].append((e.env_steps, e.return_mean))
        n = len(seeds)
        plot_learning_curve(curves, os.path.join(out, _CURVE),
                            title=f"{algo} on {task.name} ({n} seed{'s' if n > 1 else ''}: "
                                  f"{_seeds_text(list(seeds))})" + (" (interrupted)" if summary["interrupted"] else ""))
    with atomic_file(os.path.join(out, _SUMMARY), "--out") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1, allow_nan=False)
            f.write("\n")
    for name in ("evals.csv", _CURVE, _SUMMARY, "checkpoint"):
        if os.path.lexists(os.path.join(out, name)):
            written.append(name + ("/" if name == "checkpoint" else ""))
    written += [f"seed_{s}/" for s in seeds if os.path.isdir(os.path.join(out, f"seed_{s}"))]
    return written


def _policy_dir_hint(path: str, flag: str = "--policy") -> str:
    """Where ``path`` is train-policy's output directory rather than one policy: which to pass."""
    try:
        inner = sorted(n for n in os.listdir(path) if n.startswith("seed_")
                       and os.path.isfile(os.path.join(path, n, "policy.json")))
    except OSError:
        return ""
    if not inner:
        return ""
    return (f"; {path!r} is the output of 'recede train-policy': pass one of its policies, e.g. "
            f"{flag} {os.path.join(path, inner[0])}")


_PROPOSAL_SHARE = 0.1  # run --proposal's share of the samples when neither flag nor option sets it


def _proposal_policy(args, task, overrides: dict):
    """``run --proposal DIR [--proposal-share S]``: the trained policy the planner draws proposals
    from (None without --proposal). Puts the share into ``overrides`` (cem, icem, mppi: the flag,
    else ``--option proposal_share``, else the default); refuses a share outside [0, 1], a planner
    that takes no policy, and a policy of another task."""
    from recede.errors import InvalidArgumentError
    from recede.policies import load_policy, policy_info

    if args.proposal is None:
        if args.proposal_share is not None:
            raise _UsageError("argument --proposal-share: only with --proposal DIR")
        return None
    if args.planner not in ("cem", "icem", "mppi", "mcts"):
        raise _UsageError(f"argument --proposal: planner {args.planner!r} takes no proposal policy; "
                          f"these do: cem, icem, mppi, mcts")
    share = args.proposal_share
    if share is not None and not 0.0 <= share <= 1.0:
        raise _UsageError(f"argument --proposal-share: must be in [0, 1], got {share!r}")
    if args.planner == "mcts":
        if share is not None:
            raise _UsageError("argument --proposal-share: not with mcts, which samples no share: it "
                              "centres its search on the policy (options proposal, rollout, selection)")
    elif share is not None:
        overrides["proposal_share"] = share
    else:
        overrides.setdefault("proposal_share", _PROPOSAL_SHARE)
    try:
        policy = load_policy(args.proposal, task)
    except InvalidArgumentError as e:
        hint = _policy_dir_hint(args.proposal, "--proposal")
        raise _UsageError(f"argument --proposal: {e}{hint}") from None
    trained_on = policy_info(args.proposal).get("task")
    if trained_on != task.name:
        raise _UsageError(f"argument --proposal: policy {args.proposal!r} was trained on task "
                          f"{trained_on!r}, not {task.name!r}")
    return policy


def _run_policy(args, task, steps: int) -> int:
    """``recede run TASK --policy DIR``: the trained policy in closed loop, with run's summary,
    --json, --plot and --video."""
    from tqdm import tqdm

    from recede.errors import Interrupted, InvalidArgumentError
    from recede.experiments.policy_run import policy_label, policy_record, run_policy
    from recede.policies import load_policy, policy_info

    planner_flags = [("--planner", args.planner is not None), ("--model", args.model is not None),
                     ("--model-option", bool(args.model_option)), ("--option", bool(args.option)),
                     ("--horizon", args.horizon is not None), ("--deadline-ms", args.deadline_ms is not None),
                     ("--replan-every", args.replan_every != 1),
                     ("--proposal", args.proposal is not None),
                     ("--proposal-share", args.proposal_share is not None),
                     *((flag, getattr(args, dest) is not None) for dest, flag in _OPTION_FLAGS.items())]
    clash = [flag for flag, given in planner_flags if given]
    if clash:
        raise _UsageError(f"argument --policy: not allowed with {clash[0]}: a policy acts on its own, "
                          f"without a planner or a planning model")
    try:
        policy = load_policy(args.policy, task)
    except InvalidArgumentError as e:
        raise _UsageError(f"argument --policy: {e}{_policy_dir_hint(args.policy)}") from None
    meta, trained_on = policy.meta, policy_info(args.policy).get("task")
    label = policy_label(meta)

    outputs: list[_AtomicFile] = []
    try:
        json_out = _AtomicFile(args.json, "--json") if args.json else None
        plot_out = _AtomicFile(args.plot, "--plot") if args.plot else None
        video_out = _AtomicFile(args.video, "--video", keep_extension=True) if args.video else None
        outputs += [o for o in (json_out, plot_out, video_out) if o]
        if video_out:
            os.environ.setdefault("MUJOCO_GL", "egl")
        frames: list = []

        with tqdm(total=min(steps, task.episode_steps), file=sys.stderr, disable=args.no_progress,
                  desc=f"{task.name} {label}", unit="step", dynamic_ncols=True) as bar, _BarClock(bar):
            def on_step(t, env):
                bar.update(1)
                if video_out:
                    frames.append(env.render())

            try:
                log = run_policy(task, policy, seed=args.seed, steps=steps,
                                 render_mode="rgb_array" if video_out else None, camera=args.camera,
                                 realtime=args.realtime, on_step=on_step)
            except Interrupted as e:  # Ctrl-C: summarise and write the steps completed
                log = e.partial
                if log.steps == 0:
                    raise
        summary = log.summary()
        if json_out:
            with open(json_out.tmp, "w", encoding="utf-8") as f:
                json.dump(policy_record(task, log, policy=args.policy, meta=meta, seed=args.seed,
                                        realtime=args.realtime), f, allow_nan=False)
                f.write("\n")
        dt = None
        if plot_out or video_out:
            dynamics = task.dynamics()
            dt = float(dynamics.dt)
        if plot_out:
            from recede.plotting import plot_format, plot_run

            plot_run(log, plot_out.tmp, title=f"{task.name} / {label} (seed {args.seed})", dt=dt,
                     success_band=_success_band(task, log, dt), format=plot_format(args.plot),
                     **_plot_labels(task, dynamics))
        if video_out:
            _write_video(video_out.tmp, frames, fps=1.0 / dt)
        for out in outputs:  # every output was drawn whole; only now do they appear
            out.commit()
    finally:
        for out in outputs:
            out.discard()

    trained = [f"seed {meta['seed']}" if "seed" in meta else "",
               f"{meta['env_steps']} env steps" if "env_steps" in meta else "",
               f"trained on {trained_on}" if trained_on not in (None, task.name) else ""]
    trained = ", ".join(p for p in trained if p)
    rows = [
        ("task", task.name),
        ("planner", label),
        ("policy", args.policy + (f" ({trained})" if trained else "")),
        ("seed", str(args.seed)),
        ("steps", str(summary["steps"]) + (" (interrupted)" if log.interrupted else "")),
        ("return", f"{summary['return']:.4f}"),
        ("success", _success_text(task, log)),
        ("act time", f"median {_fmt_ms(summary['plan_ms_median'])}, p99 {_fmt_ms(summary['plan_ms_p99'])}"),
    ]
    if args.json:
        rows.append(("json", args.json))
    if args.plot:
        rows.append(("plot", args.plot))
    if args.video:
        rows.append(("video", f"{args.video} (camera: {args.camera or task.default_camera})"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if log.interrupted:
        print(f"{PROG}: interrupted after {log.steps} steps", file=sys.stderr)
        return 130
    return 0


# --------------------------------------------------------------------------- mbpo

# What an MBPO run puts in its --out: dyna's checkpoint/, policy/, model/ and evals.csv, and the
# curve the command draws.
_MBPO_OUTPUTS = ("checkpoint", "policy", "model", "evals.csv", _CURVE)
# The options a resumed run may change (dyna refuses any other difference).
_MBPO_RESUME_FREE = ("steps", "eval_every", "checkpoint_every")


def _add_mbpo_command(sub) -> None:
    mb = sub.add_parser(
        "mbpo", help="MBPO: SAC on branched rollouts of a learned ensemble (online, or offline from data)",
        description="Run MBPO (Dyna-style SAC on short rollouts of a probabilistic ensemble refit to "
                    "the real data) on TASK for --steps env steps, with the task's MBPO settings "
                    "and --option overrides. With --offline DATA it learns from logged data only "
                    "(no env steps: --steps counts iterations; the env only evaluates), with "
                    "--penalty λ subtracting λ times the ensemble's disagreement from synthetic "
                    "rewards (MOPO). Writes to --out: checkpoint/ (resumable), policy/ (for "
                    "'recede run TASK --policy OUT/policy'), model/ (the ensemble), evals.csv "
                    "(one row per evaluation) and curve.png (evaluation return against steps; "
                    "with --compare, another run's evals.csv on the same axes). Ctrl-C writes "
                    "the checkpoint and the outputs so far, prints how to resume, and exits "
                    "with status 130.")
    mb.add_argument("task", metavar="TASK", help="task name or Gymnasium id (see 'recede tasks')")
    mb.add_argument("--steps", type=_steps_arg, default=None,
                    help="env steps (offline: iterations) (default: the MBPO config's; with "
                         "--resume, the checkpoint's; raise it to train on)")
    mb.add_argument("--seed", type=_non_negative_int, default=None,
                    help="default: 0; with --resume, the checkpoint's")
    mb.add_argument("--offline", metavar="DATA", default=None,
                    help="learn from logged data only: a dataset .npz ('recede collect'), a "
                         "D4RL-style .hdf5/.h5, or a local Minari dataset id")
    mb.add_argument("--penalty", type=float, default=None, metavar="λ",
                    help="pessimism: synthetic rewards r - λ u(x, u), u the ensemble's "
                         "disagreement (MOPO; default: 0)")
    mb.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="set an option, e.g. real_ratio=0.1, rollout_schedule=1000,5000,1,5, "
                         "or a nested one: sac.updates_per_step=10, model.hidden=64, "
                         "train.patience=3 (repeatable; a wrong name lists them)")
    mb.add_argument("--out", metavar="DIR", default=None,
                    help="output directory (see above; default: runs/mbpo-TASK-seedS)")
    mb.add_argument("--compare", metavar="EVALS_CSV", default=None,
                    help="draw this evals.csv too in curve.png, e.g. a SAC run's from "
                         "'recede train-policy'")
    mb.add_argument("--device", default="cpu", help="torch device of the SAC networks: cpu or cuda "
                                                    "(default: cpu)")
    mb.add_argument("--resume", action="store_true",
                    help="continue from OUT/checkpoint (its seed and options; --steps, "
                         "eval_every and checkpoint_every may change)")
    mb.add_argument("--force", action="store_true",
                    help="start a new run in an OUT that holds one (its checkpoint/, policy/, "
                         "model/, evals.csv and curve.png are deleted first)")
    mb.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    mb.set_defaults(func=_cmd_mbpo)


def _dyna_config_from_json(d, ckpt: str):
    """The DynaConfig a checkpoint's state.json records (the inverse of dyna's ``_config_json``)."""
    from recede.errors import InvalidArgumentError
    from recede.policy_learning.dyna import config_from_json

    try:
        return config_from_json(d)
    except (TypeError, ValueError, KeyError, InvalidArgumentError) as e:
        raise _UsageError(f"argument --resume: {os.path.join(ckpt, 'state.json')}: cannot read its "
                          f"config ({' '.join(str(e).split())})") from None


def _config_changes(old, new, prefix: str = "") -> list[str]:
    """``NAME=new (checkpoint: old)`` for every field (nested ones as ``sac.NAME``...) that
    differs, except those a resumed run may change."""
    import dataclasses
    import enum

    def shown(v):
        return v.value if isinstance(v, enum.Enum) else v

    changes = []
    for f in dataclasses.fields(old):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if not prefix and f.name in _MBPO_RESUME_FREE:
            continue
        if dataclasses.is_dataclass(a) and not prefix:
            changes += _config_changes(a, b, f"{f.name}.")
        elif a != b:
            changes.append(f"{prefix}{f.name}={shown(b)!r} (checkpoint: {shown(a)!r})")
    return changes


def _offline_dataset(text: str, task):
    """--offline DATA: a TransitionDataset .npz, a D4RL-style .hdf5/.h5 or a Minari dataset id,
    checked against the task's sizes."""
    from recede.data import TransitionDataset, load_d4rl_hdf5, load_minari
    from recede.errors import InvalidArgumentError
    from recede.policies import task_sizes

    lower = text.lower()
    try:
        if lower.endswith(".npz"):
            data = TransitionDataset.load(text)
        elif lower.endswith((".hdf5", ".h5")):
            data = load_d4rl_hdf5(text)
        elif os.path.exists(text):
            raise _UsageError(f"argument --offline: {text!r} is neither a dataset .npz nor a D4RL-style "
                              f".hdf5/.h5 file (nor a Minari dataset id)")
        else:
            data = load_minari(text)
    except (InvalidArgumentError, ImportError) as e:
        raise _UsageError(f"argument --offline: {' '.join(str(e).split())}") from None
    nx, _, nu = task_sizes(task)
    if (data.nx, data.nu) != (nx, nu):
        raise _UsageError(f"argument --offline: {text}: its transitions have states of size {data.nx} and "
                          f"actions of size {data.nu}, but task {task.name!r} has model states of size {nx} "
                          f"and {nu} actions (record data of this task with 'recede collect {task.name} "
                          f"--out PATH')")
    if len(data) < 2:
        raise _UsageError(f"argument --offline: {text}: needs at least 2 transitions, got {len(data)}")
    return data


def _compare_run(path: str):
    """--compare EVALS_CSV as a labelled run for plot_learning_curve: ``(label, curves)``; the
    label is the run's directory, with its algorithm where a summary.json beside it names one."""
    from recede.plotting import read_evals_csv

    curves = read_evals_csv(path)
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(folder) or path
    try:
        with open(os.path.join(folder, _SUMMARY), encoding="utf-8") as f:
            algo = json.load(f).get("algo")
    except (OSError, ValueError, AttributeError):
        algo = None
    if not (isinstance(algo, str) and algo) or algo == name:
        return name, curves
    return f"{algo} ({name})", curves


def _mbpo_postfix(info: dict) -> str:
    mse, ret = info.get("model_mse"), info.get("eval_return")
    return (f"model mse {'n/a' if mse is None else f'{mse:.3g}'}, "
            f"eval return {'n/a' if ret is None else f'{ret:.4g}'}")


def _cmd_mbpo(args) -> int:
    import dataclasses
    import shlex
    import shutil

    from recede.envs import get_task
    from recede.errors import Interrupted, InvalidArgumentError
    from recede.policy_learning.dyna import FORMAT, apply_options, dyna, mbpo_config

    # everything is checked before anything is written
    task = get_task(args.task)
    if args.resume and args.force:
        raise _UsageError("argument --force: not with --resume (--force starts a new run)")
    seed = args.seed
    out_text = args.out if args.out is not None else os.path.join(
        "runs", f"mbpo-{task.name}-seed{0 if seed is None else seed}")
    out = os.path.abspath(out_text)
    if os.path.lexists(out) and not os.path.isdir(out):
        raise _UsageError(f"argument --out: {out_text!r} is a file, not a directory")
    parent = os.path.dirname(out)
    make_parent = args.out is None and not os.path.lexists(parent)  # runs/, for the default only
    if not make_parent and not os.path.isdir(parent):
        raise _UsageError(f"argument --out: the directory of {out_text!r} does not exist")
    options: dict[str, str] = {}
    for item in args.option:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise _UsageError(f"argument --option: expected NAME=VALUE, got {item!r}")
        options[key.strip()] = value
    ckpt = os.path.join(out, "checkpoint")
    base, start = None, 0
    if args.resume:
        if not os.path.isdir(ckpt):
            raise _UsageError(f"argument --resume: no checkpoint to resume in {out_text!r} (no "
                              f"{os.path.join(out_text, 'checkpoint')}); train without --resume first")
        state = _read_checkpoint_state(ckpt)
        if state.get("format") != FORMAT:
            raise _UsageError(f"argument --resume: {ckpt} is not an MBPO checkpoint (format "
                              f"{state.get('format')!r}, expected {FORMAT!r})")
        if state.get("task") != task.name:
            raise _UsageError(f"argument TASK: the checkpoint in {out_text!r} is for task "
                              f"{state.get('task')!r}, not {task.name!r}")
        if seed is None:
            seed = state.get("seed")
        elif seed != state.get("seed"):
            raise _UsageError(f"argument --seed: the checkpoint in {out_text!r} is for seed "
                              f"{state.get('seed')}, not {seed}")
        if bool(state.get("offline")) != (args.offline is not None):
            raise _UsageError(
                f"argument --offline: the checkpoint in {out_text!r} is of an offline run: pass its data "
                f"again with --offline DATA" if state.get("offline") else
                f"argument --offline: the checkpoint in {out_text!r} is of an online run: resume it "
                f"without --offline")
        base = _dyna_config_from_json(state.get("config"), ckpt)
        start = int(state.get("step", 0))
    elif os.path.isdir(out) and not args.force and any(
            os.path.lexists(os.path.join(out, n)) for n in _MBPO_OUTPUTS):
        raise _UsageError(f"argument --out: {out_text!r} already holds an MBPO run; pass --resume to "
                          f"continue it or --force to start a new one there")
    seed = 0 if seed is None else seed

    config = base or mbpo_config(task)
    try:
        config = apply_options(config, options)
    except InvalidArgumentError as e:
        raise _UsageError(f"argument --option: {e}") from None
    if args.steps is not None:
        config = dataclasses.replace(config, steps=args.steps)
    if args.penalty is not None:
        try:
            config = dataclasses.replace(config, penalty=args.penalty)
        except InvalidArgumentError as e:
            raise _UsageError(f"argument --penalty: {e}") from None
    unit = "iterations" if args.offline is not None else "env steps"
    if base is not None:
        changes = _config_changes(base, config)
        if changes:
            flag = "--penalty" if all(c.startswith("penalty=") for c in changes) else "--option"
            raise _UsageError(f"argument {flag}: the checkpoint in {out_text!r} was made with other "
                              f"options; a resumed run may change only {', '.join(_MBPO_RESUME_FREE)}, "
                              f"got {', '.join(changes)}")
        if config.steps <= start:
            raise _UsageError(f"argument --steps: the checkpoint in {out_text!r} has run {start} {unit} "
                              f"of its {base.steps}; pass --steps above {start} to train on"
                              + (f", got {args.steps}" if args.steps is not None else ""))
    dataset = _offline_dataset(args.offline, task) if args.offline is not None else None
    compare = None
    if args.compare is not None:
        try:
            compare = _compare_run(args.compare)
        except InvalidArgumentError as e:
            raise _UsageError(f"argument --compare: {e}") from None
    device = _torch_device(args.device)
    if make_parent:
        os.makedirs(parent, exist_ok=True)
    probe = out if os.path.isdir(out) else parent
    _AtomicFile(os.path.join(probe, ".probe"), "--out").discard()  # an unwritable --out fails now
    if args.force and os.path.isdir(out):
        for name in _MBPO_OUTPUTS:
            path = os.path.join(out, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.unlink(path)

    from tqdm import tqdm

    created = not os.path.exists(out)
    offline = dataset is not None
    label = f"mbpo {task.name} seed {seed}" + (" offline" if offline else "")
    with tqdm(total=config.steps, initial=start, file=sys.stderr, disable=args.no_progress, desc=label,
              unit="iter" if offline else "step", dynamic_ncols=True) as bar, _BarClock(bar):
        shown = [""]

        def on_step(step, info):
            bar.update(step - bar.n)
            text = _mbpo_postfix(info)
            if text != shown[0]:
                shown[0] = text
                bar.set_postfix_str(text, refresh=False)

        try:
            result = dyna(task, config, seed=seed, dataset=dataset, out=out, resume=args.resume,
                          device=device, on_step=on_step)
            interrupted = False
        except Interrupted as e:
            result, interrupted = e.partial, True
        except BaseException:  # refused, failed, or Ctrl-C before training began
            if created and os.path.isdir(out) and not os.listdir(out):
                os.rmdir(out)  # a run that wrote nothing leaves nothing
            raise

    if result.evals:
        from recede.plotting import plot_learning_curve

        if compare is not None:
            try:  # the other run may have gone on meanwhile
                compare = _compare_run(args.compare)
            except InvalidArgumentError:
                pass
        runs = [("mbpo" + (" offline" if offline else ""), {seed: result.curve()})]
        plot_learning_curve(runs + ([compare] if compare else []), os.path.join(out, _CURVE),
                            title=f"MBPO on {task.name} (seed {seed}{', offline' if offline else ''})"
                                  + (" (interrupted)" if interrupted else ""))
    written = [n + ("/" if os.path.isdir(os.path.join(out, n)) else "") for n in _MBPO_OUTPUTS
               if os.path.lexists(os.path.join(out, n))]

    print(f"mbpo on {task.name}" + (" (offline)" if offline else "") + f", seed {seed}: "
          f"{result.env_steps} {unit}" + (f" (resumed from {result.resumed_from})" if result.resumed_from else "")
          + (" (interrupted)" if interrupted else "") + f", {result.wall_s:.1f} s")
    if result.fits:
        f = result.fits[-1]
        print(f"model: {len(result.fits)} fit{'s' if len(result.fits) > 1 else ''}; the last at step "
              f"{f.step} on {f.rows} transitions, held-out MSE {f.holdout_mse:.4g} (normalised)")
    else:
        print("model: not fit yet")
    if result.evals:
        e = result.evals[-1]
        ok = "" if e.successes is None else f", success {e.successes}/{len(e.returns)}"
        print(f"evaluation: return {e.return_mean:.4f} ± {e.return_std:.4f} over {len(e.returns)} "
              f"episode{'s' if len(e.returns) > 1 else ''} at {e.env_steps} {unit}{ok}")
    else:
        print("evaluation: none yet")
    print("time: " + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in result.timings.items()))
    print(f"out: {out_text} ({', '.join(written)})")
    if interrupted:
        again = [PROG, "mbpo", task.name, "--out", out_text, "--resume"]
        again += ["--offline", args.offline] if offline else []
        again += ["--device", args.device] if args.device != "cpu" else []
        print(f"{PROG}: interrupted at {unit[:-1]} {result.env_steps} of {config.steps}; the checkpoint "
              f"is in {os.path.join(out_text, 'checkpoint')}; resume with: "
              + " ".join(shlex.quote(a) for a in again), file=sys.stderr)
        return 130
    return 0


# --------------------------------------------------------------------------- imitate


def _count_list(text: str) -> list[int]:
    """'1000,2000,5000' -> [1000, 2000, 5000]: distinct counts >= 1."""
    try:
        counts = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a comma list of integers >= 1, got {text!r}") from None
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"must be distinct integers >= 1, got {text!r}")
    return counts


def _hidden_arg(text: str) -> tuple[int, ...]:
    """'256,256' -> (256, 256); 'linear' -> () (the linear policy class)."""
    if text.strip().lower() == "linear":
        return ()
    try:
        hidden = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated widths (e.g. 256,256) or 'linear', "
                                         f"got {text!r}") from None
    if min(hidden) < 1:
        raise argparse.ArgumentTypeError(f"widths must be >= 1, got {text!r}")
    return hidden


def _add_imitate_command(sub) -> None:
    im = sub.add_parser(
        "imitate", help="distil an expert (MPC, LQR, a policy) into a policy by BC and DAgger",
        description="Clone --expert into a policy network on TASK by behaviour cloning from its "
                    "demonstrations and by DAgger, at each expert label count of --labels, for "
                    "every seed. Every label is a fresh decision of the expert from that state (an "
                    "MPC expert plans from scratch). Writes to --out: imitation.csv (one row per "
                    "method, seed and label count: evaluation return mean and std, labels per "
                    "second; the expert's own rows have method 'expert'), imitation.png (return "
                    "against labels, mean ± std over seeds, the expert's mean return as a line) "
                    "and <method>/seed_<s>/ (the policy at the largest count, for 'recede run "
                    "TASK --policy DIR').")
    im.add_argument("task", metavar="TASK", help="task name or Gymnasium id (see 'recede tasks')")
    im.add_argument("--expert", required=True, metavar="EXPERT",
                    help="mpc:PLANNER (e.g. mpc:mppi), lqr, or policy:DIR (a saved policy)")
    im.add_argument("--method", type=_name_list, default=["bc", "dagger"],
                    help="bc, dagger or both, comma-separated (default: bc,dagger)")
    im.add_argument("--labels", type=_count_list, default=[1000],
                    help="expert label counts, one curve point each, e.g. 1000,2000,5000 (default: 1000)")
    im.add_argument("--seeds", type=_seed_list, default=[0],
                    help="seeds as A..B (inclusive) or a comma list (default: 0)")
    im.add_argument("--out", metavar="DIR", required=True, help="output directory (see above)")
    im.add_argument("--workers", type=_steps_arg, default=1,
                    help="processes labelling states for an MPC expert (default: 1)")
    im.add_argument("--horizon", type=_steps_arg, default=None,
                    help="the MPC expert's horizon (default: the task's for the planner)")
    _add_option_flag(im)
    im.add_argument("--labels-per-round", type=_steps_arg, default=None,
                    help="states labelled per DAgger round (default: the counts' greatest common "
                         "divisor, at most 1000)")
    im.add_argument("--episodes", type=_steps_arg, default=4,
                    help="episodes run side by side while collecting (one labelling batch per "
                         "step; default: 4)")
    im.add_argument("--beta", choices=("linear", "exponential"), default="exponential",
                    help="DAgger's schedule of the expert's share (default: exponential)")
    im.add_argument("--beta-param", type=float, default=0.5,
                    help="its parameter in [0, 1]: the decrement per round (linear) or the ratio "
                         "(exponential) (default: 0.5)")
    im.add_argument("--eval-episodes", type=_steps_arg, default=5,
                    help="evaluation episodes per point (default: 5)")
    im.add_argument("--hidden", type=_hidden_arg, default=(256, 256),
                    help="the policy's hidden layers, e.g. 256,256, or 'linear' (default: 256,256)")
    im.add_argument("--loss", choices=("mse", "nll"), default="mse", help="BC's loss (default: mse)")
    im.add_argument("--epochs", type=_steps_arg, default=200,
                    help="most training epochs per fit (early stopping on a held-out 10%%; default: 200)")
    im.add_argument("--no-progress", action="store_true", help="print no progress lines")
    im.set_defaults(func=_cmd_imitate)


_IMITATION_CSV, _IMITATION_PNG = "imitation.csv", "imitation.png"


def _cmd_imitate(args) -> int:
    import csv
    import io
    import math
    import time

    import numpy as np

    from recede._io import atomic_file
    from recede.envs import get_task
    from recede.errors import InvalidArgumentError
    from recede.plotting import plot_imitation
    from recede.policy_learning.imitation import (
        METHODS, BCConfig, DAggerConfig, Labeller, expert_spec, imitation_curve,
    )

    # everything is checked before anything runs or is written
    task = get_task(args.task)
    bad = [m for m in args.method if m not in METHODS]
    if bad or len(set(args.method)) != len(args.method):
        raise _UsageError(f"argument --method: must be distinct names among {', '.join(METHODS)}, "
                          f"got {','.join(args.method)!r}")
    if len(set(args.seeds)) != len(args.seeds):
        raise _UsageError(f"argument --seeds: seeds must be distinct, got {_seeds_text(args.seeds)}")
    options = _parse_options(args.option, "--option", False)
    try:
        spec = expert_spec(task, args.expert, horizon=args.horizon, options=options)
    except InvalidArgumentError as e:
        raise _UsageError(f"argument --expert: {e}") from None
    if spec.kind != "mpc" and args.workers > 1:
        raise _UsageError(f"argument --workers: only an mpc expert labels in processes (an {spec.kind} "
                          f"expert labels a batch in one call), got {args.workers}")
    per = args.labels_per_round or min(1000, math.gcd(*args.labels))
    try:
        bc_cfg = BCConfig(loss=args.loss, hidden=args.hidden, epochs=args.epochs)
        config = DAggerConfig(labels=max(args.labels), labels_per_round=per, episodes=args.episodes,
                              beta=args.beta, beta_param=args.beta_param, eval_episodes=args.eval_episodes,
                              workers=args.workers, bc=bc_cfg)
    except InvalidArgumentError as e:
        raise _UsageError(f"argument --{str(e).split()[0].replace('_', '-')}: {e}") from None
    out = os.path.abspath(args.out)
    if os.path.lexists(out) and not os.path.isdir(out):
        raise _UsageError(f"argument --out: {args.out!r} is a file, not a directory")
    if not os.path.isdir(os.path.dirname(out)):
        raise _UsageError(f"argument --out: the directory of {args.out!r} does not exist")

    def progress(p):
        if not args.no_progress:
            rate = "" if math.isnan(p.labels_per_s) else f", {p.labels_per_s:.1f} labels/s"
            print(f"{p.method} seed {p.seed}: {p.labels} labels, return {p.return_mean:.4g} ± "
                  f"{p.return_std:.3g}{rate} ({p.wall_s:.1f} s)", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    try:
        labeller = Labeller(task, spec, workers=args.workers)  # probes the expert on the task
    except InvalidArgumentError as e:
        raise _UsageError(f"argument --expert: {e}") from None
    with labeller:
        os.makedirs(out, exist_ok=True)
        _AtomicFile(os.path.join(out, ".probe"), "--out").discard()  # an unwritable --out fails now
        curve = imitation_curve(task, labeller, methods=args.method, labels=args.labels, seeds=args.seeds,
                                config=config, on_point=progress)
    wall = time.perf_counter() - t0

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "seed", "labels", "return_mean", "return_std", "episodes", "labels_per_s", "wall_s"])
    for p in curve.points:
        w.writerow([p.method, p.seed, p.labels, repr(p.return_mean), repr(p.return_std), len(p.returns),
                    "" if math.isnan(p.labels_per_s) else f"{p.labels_per_s:.3f}", f"{p.wall_s:.3f}"])
    with atomic_file(os.path.join(out, _IMITATION_CSV), "--out") as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())
    curves: dict = {}
    for p in curve.points:
        if p.method != "expert":
            curves.setdefault(p.method, {}).setdefault(p.seed, []).append((p.labels, p.return_mean))
    expert = float(np.mean([p.return_mean for p in curve.points if p.method == "expert"]))
    n = len(args.seeds)
    plot_imitation(curves, os.path.join(out, _IMITATION_PNG), expert=expert,
                   title=f"{spec.describe()} on {task.name} ({n} seed{'s' if n > 1 else ''}: "
                         f"{_seeds_text(list(args.seeds))})")
    for (method, seed), policy in curve.policies.items():
        os.makedirs(os.path.join(out, method), exist_ok=True)
        policy.save(os.path.join(out, method, f"seed_{seed}"), expert=spec.describe(), method=method,
                    seed=int(seed), labels=max(args.labels))

    print(f"imitate {spec.describe()} on {task.name}: labels {','.join(map(str, args.labels))}, "
          f"seeds {_seeds_text(list(args.seeds))}, {wall:.1f} s")
    print(f"expert: return {expert:.4f} (mean over seeds of {args.eval_episodes} episode"
          f"{'s' if args.eval_episodes > 1 else ''} each)")
    for method in args.method:
        for count in sorted(args.labels):
            ps = [p for p in curve.points if p.method == method and p.labels == count]
            means = np.array([p.return_mean for p in ps])
            rate = np.mean([p.labels_per_s for p in ps])
            share = f" ({100 * means.mean() / expert:.0f}% of the expert's)" if expert > 0 else ""
            print(f"{method} at {count} labels: return {means.mean():.4f} ± {means.std():.4f} over seeds"
                  f"{share}, {rate:.1f} labels/s")
    print(f"time per action (median): policy {curve.policy_s * 1e3:.3f} ms, expert {curve.expert_s * 1e3:.3f} ms, "
          f"expert/policy {curve.expert_s / curve.policy_s:.3g}")
    print(f"out: {args.out} ({_IMITATION_CSV}, {_IMITATION_PNG}, "
          + ", ".join(f"{m}/seed_<s>/" for m in args.method) + ")")
    return 0


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def _route_mujoco_warnings():
    """Send MuJoCo's warnings to stderr, one line per distinct message at the end, instead of
    letting MuJoCo append them to MUJOCO_LOG.TXT in the user's directory. Returns the undo."""
    from recede._mujoco_log import route_warnings

    return route_warnings()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # a bare `recede`: what it can do, on stderr, as for any missing argument
        parser.print_help(sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a bad argument already reported
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)

    from recede.errors import InvalidArgumentError, RecedeError

    restore = _route_mujoco_warnings()
    try:
        return args.func(args)
    except BrokenPipeError:  # stdout closed early (`recede tasks | head`): stop quietly
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush succeeds
        except (OSError, ValueError, AttributeError):
            pass
        return 1
    except (_UsageError, InvalidArgumentError) as e:
        return _fail(str(e), 2)
    except RecedeError as e:  # e.g. PlanningError: the arguments were fine, planning failed
        return _fail(str(e), 1)
    except (ValueError, OSError) as e:
        return _fail(str(e), 2)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    finally:
        restore()


if __name__ == "__main__":
    sys.exit(main())


# --------------------------------------------------------------------------- learned values


def _load_value(path: str, task):
    from recede.errors import InvalidArgumentError
    from recede.policies import load_value

    if not os.path.isdir(path):
        raise _UsageError(f"argument --value: expected a value directory from 'recede fit-value', "
                          f"got {path!r} (no such directory)")
    try:
        return load_value(path, task)
    except InvalidArgumentError as e:
        raise _UsageError(f"argument --value: {e}") from None


def _add_value_command(sub) -> None:
    from recede.planners.registry import PLANNERS

    fv = sub.add_parser(
        "fit-value", help="fit a value ensemble on a planner's closed-loop runs (a terminal cost)",
        description="Run MPC with PLANNER on TASK for --episodes episodes (its own seeds), fit an "
                    "ensemble of value networks to the n-step costs-to-go of the states it visited "
                    "(POLO), and write it to --out, for 'recede run TASK --value OUT --horizon H'. "
                    "With --polo-rounds R > 1, each later round runs the planner at --value-horizon "
                    "with the last fit as its terminal cost, adds those episodes and refits. "
                    "Prints the held-out error and writes OUT/fit.json.")
    fv.add_argument("task", metavar="TASK", help="task name or Gymnasium id (see 'recede tasks')")
    fv.add_argument("--out", metavar="DIR", required=True, help="the value's directory (replaced atomically)")
    fv.add_argument("--planner", default="cem", metavar="{" + ",".join(sorted(PLANNERS)) + "}",
                    help="the planner that collects the data (default: cem)")
    fv.add_argument("--horizon", type=_positive_int, default=None,
                    help="its horizon in the first round (default: the task's for the planner)")
    fv.add_argument("--episodes", type=_positive_int, default=10, help="episodes per round (default: 10)")
    fv.add_argument("--steps", type=_positive_int, default=None,
                    help="most steps per episode (default: the task's episode)")
    fv.add_argument("--seed", type=_non_negative_int, default=0,
                    help="seed of the first episode and of the fit (default: 0)")
    fv.add_argument("--noise", type=float, default=0.0,
                    help="Gaussian noise on the executed actions, times the action half-range, for "
                         "coverage (default: 0)")
    fv.add_argument("--spread", default=None, metavar="D1,D2,...",
                    help="start the episodes uniformly within the task's initial state +- these (one "
                         "per state dimension; analytic tasks), so the value also knows the states "
                         "short plans end in (default: the task's own starts)")
    fv.add_argument("--polo-rounds", type=_positive_int, default=1,
                    help="collect-and-fit rounds; later ones plan with the last value (default: 1)")
    fv.add_argument("--value-horizon", type=_positive_int, default=None,
                    help="the horizon of the later rounds' planner (default: a third of --horizon)")
    fv.add_argument("--members", type=_positive_int, default=5, help="value networks (default: 5)")
    fv.add_argument("--n-step", type=_positive_int, default=None,
                    help="steps summed before bootstrapping from the last fit (default: to the "
                         "episode's end)")
    fv.add_argument("--discount", type=float, default=1.0, help="gamma in (0, 1] (default: 1)")
    fv.add_argument("--optimism", type=float, default=None,
                    help="soft-minimum temperature over members in cost units (default: the mean)")
    fv.add_argument("--fit-option", action="append", default=[], metavar="NAME=VALUE",
                    help="a field of the fit's config (recede.policy_learning.value.ValueConfig), "
                         "e.g. epochs=200, hidden=64,64, rounds=2 (repeatable)")
    _add_option_flag(fv)
    fv.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    fv.set_defaults(func=_cmd_fit_value)


def _cmd_fit_value(args) -> int:
    import dataclasses
    import time

    import numpy as np
    from tqdm import tqdm

    from recede.envs import get_task
    from recede.experiments.episode import check_options, layer_options
    from recede.policy_learning.value import ValueConfig, collect_episodes, fit_value

    task = get_task(args.task)
    if not (0.0 <= args.noise < math.inf):
        raise _UsageError(f"argument --noise: must be a finite number >= 0, got {args.noise}")
    options = _parse_options(args.option, "--option", False)
    try:
        check_options(args.planner, layer_options(args.planner, task, options))
    except (ValueError, TypeError) as e:
        raise _UsageError(f"argument --option: {e}") from None
    fields = {f.name for f in dataclasses.fields(ValueConfig)}
    fit_opts = _parse_options(args.fit_option, "--fit-option", False)
    unknown = sorted(set(fit_opts) - fields)
    if unknown:
        raise _UsageError(f"argument --fit-option: unknown {', '.join(unknown)}; fields: {', '.join(sorted(fields))}")
    if "hidden" in fit_opts and not isinstance(fit_opts["hidden"], tuple):
        fit_opts["hidden"] = (fit_opts["hidden"],)
    try:
        cfg = ValueConfig(**{"members": args.members, "n_step": args.n_step, "discount": args.discount,
                             "optimism": args.optimism, **fit_opts})
    except (ValueError, TypeError) as e:
        raise _UsageError(f"argument --fit-option: {e}") from None
    spread = None
    if args.spread is not None:
        try:
            spread = [float(v) for v in args.spread.split(",")]
        except ValueError:
            raise _UsageError(f"argument --spread: expected comma-separated numbers, got {args.spread!r}") from None
    H = task.horizon_for(args.planner) if args.horizon is None else args.horizon
    Hv = max(1, H // 3) if args.value_horizon is None else args.value_horizon
    out = os.path.abspath(args.out)
    if not os.path.isdir(os.path.dirname(out)):
        raise _UsageError(f"argument --out: the directory of {args.out!r} does not exist")
    total = args.episodes * args.polo_rounds
    episodes, value, rounds = [], None, []
    t0 = time.perf_counter()
    with tqdm(total=total, file=sys.stderr, disable=args.no_progress, unit="episode",
              desc=f"{task.name} {args.planner}", dynamic_ncols=True) as bar:
        for r in range(args.polo_rounds):
            logs = []
            new = collect_episodes(task, args.planner, horizon=H if r == 0 else Hv, episodes=args.episodes,
                                   seed=args.seed + r * args.episodes, options=options, value=value,
                                   noise=args.noise, steps=args.steps, spread=spread,
                                   on_episode=lambda i, log: (logs.append(log), bar.update(1)))
            episodes += new
            fit = fit_value(episodes, config=cfg, seed=args.seed, task=task)
            value = fit.value
            rounds.append({"round": r, "horizon": H if r == 0 else Hv, "episodes": len(episodes),
                           "states": fit.states, "holdout_rmse": fit.holdout_rmse[-1],
                           "return_mean": float(np.mean([lg.total_return for lg in logs])),
                           "successes": sum(bool(lg.success) for lg in logs), "fit_seconds": fit.seconds})
    seconds = time.perf_counter() - t0
    value.save(out, planner=args.planner, horizon=H, value_horizon=Hv, polo_rounds=args.polo_rounds,
               noise=args.noise, spread=spread, options=options, rounds=rounds)
    from recede.policy_learning.common import write_json

    write_json(os.path.join(out, "fit.json"), {"task": task.name, "planner": args.planner, "rounds": rounds,
                                               "config": dataclasses.asdict(cfg), "seconds": seconds})
    for row in rounds:
        print(f"round {row['round']}: horizon {row['horizon']}, return {row['return_mean']:.2f}, "
              f"{row['successes']}/{args.episodes} succeeded; fit on {row['states']} states, "
              f"held-out RMSE {row['holdout_rmse']:.4g}")
    print(f"value  {args.out} ({cfg.members} members), {seconds:.1f} s; use: {PROG} run {task.name} "
          f"--planner {args.planner} --value {args.out} --horizon {Hv}")
    return 0


def _add_gps_command(sub) -> None:
    g = sub.add_parser(
        "gps", help="guided policy search: local LQR controllers teach one global policy",
        description="Mirror-descent guided policy search on TASK: per condition (a start drawn from "
                    "the task's resets: Reacher's targets; an analytic task's initial state plus "
                    "--spread) a time-varying linear-Gaussian controller, improved by LQR within a KL "
                    "step of the linearised global policy, and one global policy network trained on "
                    "them. Prints a line per iteration; writes to --out: gps.csv (per iteration and "
                    "condition: the local controllers' and the global policy's cost, KL, its target, "
                    "eta, held-out success), gps.png (cost per iteration), policy/ (the global "
                    "policy, for 'recede run TASK --policy DIR') and the state --resume continues from.")
    g.add_argument("task", metavar="TASK", help="task name or Gymnasium id (see 'recede tasks')")
    g.add_argument("--conditions", type=_steps_arg, default=4, help="conditions M (default: 4)")
    g.add_argument("--samples", type=_steps_arg, default=5, help="samples N per condition and iteration (default: 5)")
    g.add_argument("--iterations", type=_steps_arg, default=15, help="iterations I (default: 15)")
    g.add_argument("--dynamics", choices=("model", "fit", "fit+prior"), default="model",
                   help="the local dynamics: the model's linearisation, a regression on the samples, or "
                        "the regression under a prior (default: model)")
    g.add_argument("--prior", choices=("gmm", "model"), default="gmm",
                   help="fit+prior's prior: a Gaussian mixture over all samples or the model's "
                        "linearisation (default: gmm)")
    g.add_argument("--kl-step", type=float, default=None,
                   help="the KL step per time step, > 0 (default: 0.3)")
    g.add_argument("--init", choices=("zero", "ilqr"), default="zero",
                   help="the first local controllers: zero mean actions, or recede's iLQR plan from each "
                        "start with its feedback gains (default: zero)")
    g.add_argument("--init-std", type=float, default=None,
                   help="their action noise, times the action half-range, > 0 (default: 0.3)")
    g.add_argument("--horizon", type=_steps_arg, default=None, help="steps per sample (default: the episode's)")
    g.add_argument("--spread", default=None, metavar="S1,S2,...",
                   help="analytic tasks: conditions start within the initial state +- this (default: the task's spread)")
    g.add_argument("--kl-to", choices=("policy", "previous"), default="policy",
                   help="the C-step's KL anchor: the linearised global policy (GPS), or each local "
                        "controller's last version (the policy is then their behaviour clone) (default: policy)")
    g.add_argument("--sample-from", choices=("local", "policy"), default="local",
                   help="sample the local controllers or the global policy (on-policy) (default: local)")
    g.add_argument("--hidden", type=_hidden_arg, default=(64, 64),
                   help="the global policy's hidden layers, or 'linear' (default: 64,64)")
    g.add_argument("--policy-steps", type=_steps_arg, default=1500, help="Adam steps per S-step (default: 1500)")
    g.add_argument("--holdout", type=int, default=20,
                   help="held-out episodes scored per iteration, 0 for none (default: 20)")
    g.add_argument("--model", metavar="DIR", default=None,
                   help="linearise this learned ensemble instead of the task's model")
    g.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    g.add_argument("--out", metavar="DIR", required=True, help="output directory (see above)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out")
    g.add_argument("--no-progress", action="store_true", help="print no progress lines")
    g.set_defaults(func=_cmd_gps)


def _cmd_gps(args) -> int:
    from recede.envs import get_task
    from recede.plotting import plot_gps
    from recede.errors import InvalidArgumentError
    from recede.policy_learning.gps import GPSConfig, gps, heldout_evaluator, task_system

    task = get_task(args.task)
    if args.seed < 0:
        raise _UsageError(f"argument --seed: must be >= 0, got {args.seed}")
    if args.holdout < 0:
        raise _UsageError(f"argument --holdout: must be >= 0, got {args.holdout}")
    kw = {}
    if args.kl_step is not None:
        if not (0.0 < args.kl_step < math.inf):
            raise _UsageError(f"argument --kl-step: must be a finite number > 0, got {args.kl_step}")
        kw["kl_step"] = args.kl_step
    if args.init_std is not None:
        if not (0.0 < args.init_std < math.inf):
            raise _UsageError(f"argument --init-std: must be a finite number > 0, got {args.init_std}")
        kw["init_std"] = args.init_std
    spread = None
    if args.spread is not None:
        try:
            spread = [float(v) for v in args.spread.split(",")]
        except ValueError:
            raise _UsageError(f"argument --spread: must be comma-separated numbers, got {args.spread!r}") from None
    model = _load_model(args.model, task) if args.model else None
    try:
        cfg = GPSConfig(iterations=args.iterations, samples=args.samples, dynamics=args.dynamics, prior=args.prior,
                        sample_from=args.sample_from, hidden=args.hidden, policy_steps=args.policy_steps,
                        holdout=args.holdout, init=args.init,
                        kl_to=args.kl_to, **kw)
        system = task_system(task, args.conditions, seed=args.seed, horizon=args.horizon, spread=spread, model=model)
    except InvalidArgumentError as e:
        raise _UsageError(f"gps on {task.name!r}: {e}") from None
    judged = getattr(task, "success_rule", None) is not None or hasattr(task, "success")
    heldout = heldout_evaluator(task, args.holdout, seed=args.seed) if args.holdout and judged else None
    os.makedirs(args.out, exist_ok=True)

    def progress(entry, policy):
        if not args.no_progress:
            print(entry.line(), flush=True)
        plot_gps(log_so_far + [entry], os.path.join(args.out, "gps.png"),
                 title=f"GPS on {task.name}: {args.conditions} conditions x {args.samples} samples, {args.dynamics}")
        log_so_far.append(entry)

    log_so_far: list = []
    if args.resume:
        import pickle

        from recede.policy_learning.gps import _STATE

        try:
            with open(os.path.join(args.out, _STATE), "rb") as f:
                log_so_far = list(pickle.load(f)["log"])
        except OSError:
            raise _UsageError(f"argument --resume: no GPS run in {args.out!r}") from None
    res = gps(system, cfg, seed=args.seed, out=args.out, resume=args.resume, heldout=heldout, on_iteration=progress)
    last = res.log[-1] if res.log else None
    if last is not None and not args.no_progress:
        tail = (f", held-out success {last.holdout_success:.0%} of {args.holdout}"
                if math.isfinite(last.holdout_success) else "")
        print(f"done: {res.samples} env steps of samples, global policy cost {sum(last.policy_cost) / len(last.policy_cost):.4g}"
              f"{tail}; wrote {args.out}/gps.csv, gps.png, policy/")
    return 0


def _grid_item(text: str) -> tuple[str, list]:
    """'samples=100,200' -> ('samples', [100, 200])."""
    name, eq, values = text.partition("=")
    name = name.strip()
    if not eq or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,..., got {text!r}")
    vals = [_parse_value(v.strip()) for v in values.split(",") if v.strip()]
    if not vals:
        raise argparse.ArgumentTypeError(f"option {name!r} has no values, got {text!r}")
    return name, vals


def _add_sweep_command(sub) -> None:
    sw = sub.add_parser(
        "sweep", help="run a grid of trials (tasks x planners x options x seeds) on all cores or on Ray",
        description="Expand --grid, --random and --seeds (or a TOML --spec) into trials (the first --grid "
                    "varying slowest, seeds innermost), check every one before any runs, and run them on a "
                    "local process pool (one worker per core, one thread each) or on Ray (--backend ray). "
                    "Each finished trial is appended whole to OUT/results.jsonl; running the same command "
                    "again skips the finished trials. Report with: recede sweep-report OUT/results.jsonl")
    sw.add_argument("--spec", metavar="FILE.toml", default=None,
                    help="the sweep from a TOML file (task, planner, steps, seeds, [options], [grid], [random]) "
                         "instead of the flags below")
    sw.add_argument("--command", dest="trial_command", choices=("run", "train-policy"), default="run",
                    help="what each trial runs: run (one MPC episode, the default) or train-policy (one learner, "
                         "one seed; --steps are env steps, options are the learner's)")
    sw.add_argument("--task", default=None, help="the task of every trial (or sweep 'task' with --grid)")
    sw.add_argument("--planner", default=None, help="the planner of every run trial (default: cem; or sweep it)")
    sw.add_argument("--algo", default=None, help="the learner of every train-policy trial (default: sac; or sweep it)")
    sw.add_argument("--grid", action="append", type=_grid_item, default=[], metavar="NAME=V1,V2,...",
                    help="a swept setting: task, planner, horizon, steps or a planner option; repeatable")
    sw.add_argument("--random", action="append", type=_random_item, default=[], metavar="NAME=DIST:ARGS",
                    help="random search over an option: uniform:LO,HI, log:LO,HI, int:LO,HI or choice:V1,V2; "
                         "repeatable; the draws are crossed with the grid")
    sw.add_argument("--random-trials", type=_steps_arg, default=8, metavar="N",
                    help="settings drawn for --random (default 8)")
    sw.add_argument("--random-seed", type=_non_negative_int, default=0, help="seed of the draws (default 0)")
    sw.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="a fixed planner option of every trial; repeatable")
    sw.add_argument("--steps", type=_steps_arg, default=None, help="steps per episode (default: the task's)")
    sw.add_argument("--seeds", default=None, metavar="A..B|A,B,C", help="seeds (default: 0)")
    sw.add_argument("--backend", choices=("local", "ray"), default="local",
                    help="local: a process pool on this machine (default); ray: Ray tasks (pip install 'recede[ray]')")
    sw.add_argument("--address", default=None,
                    help="Ray cluster to join (auto, HOST:6379 or ray://HOST:10001); default: start a local Ray")
    sw.add_argument("--cpus-per-trial", type=float, default=1.0, help="Ray CPUs per trial (default 1)")
    sw.add_argument("--workers", type=_steps_arg, default=None,
                    help="worker processes, or the CPUs of a local Ray (default: the cores)")
    sw.add_argument("--out", metavar="DIR", required=True, help="output directory (results.jsonl)")
    sw.add_argument("--force", action="store_true", help="replace a results file of another sweep")
    sw.add_argument("--no-progress", action="store_true", help="print no progress lines")
    sw.set_defaults(func=_cmd_sweep)


def _add_sweep_report_command(sub) -> None:
    rp = sub.add_parser(
        "sweep-report", help="summarize a sweep: mean ± 95%% CI per config over seeds, a CSV and plots",
        description="Read a sweep's results.jsonl (finished or not), print one row per config (the trial "
                    "without its seed): mean ± 95%% CI (Student's t) of the return over seeds, the success "
                    "rate and the plan time; write summary.csv and PNG plots: bars per config, return curves "
                    "with 95%% bands, and the return against one swept numeric option.")
    rp.add_argument("results", help="a sweep's results.jsonl, or the directory holding it")
    rp.add_argument("--out", metavar="DIR", default=None, help="where the CSV and plots go (default: beside results)")
    rp.add_argument("--x", default=None,
                    help="the swept numeric option to plot against (default: the one with the most values)")
    from recede.sweeps.report import METRICS

    rp.add_argument("--metric", default="return", choices=list(METRICS), help="the metric of the bars and the x plot")
    rp.set_defaults(func=_cmd_sweep_report)


def _cmd_sweep_report(args) -> int:
    from recede.errors import InvalidArgumentError
    from recede.sweeps.report import report

    try:
        out = report(args.results, args.out, x=args.x, metric=args.metric)
    except InvalidArgumentError as e:
        raise _UsageError(f"sweep-report: {e}") from None
    print(out["table"])
    print(f"wrote {out['csv']}")
    for p in out["plots"]:
        print(f"wrote {p}")
    return 0


def _random_item(text: str) -> tuple[str, dict]:
    """'temperature=log:0.001,1' -> ('temperature', {'log_uniform': [0.001, 1.0]})."""
    name, eq, rest = text.partition("=")
    kind, colon, values = rest.partition(":")
    name, kind = name.strip(), kind.strip()
    kinds = {"uniform": "uniform", "log": "log_uniform", "log_uniform": "log_uniform", "int": "int_uniform",
             "int_uniform": "int_uniform", "choice": "choice"}
    if not eq or not name or not colon:
        raise argparse.ArgumentTypeError(f"expected NAME=DIST:ARGS (DIST one of uniform, log, int, choice), got {text!r}")
    if kind not in kinds:
        raise argparse.ArgumentTypeError(f"unknown distribution {kind!r} in {text!r}; known: uniform, log, int, choice")
    vals = [_parse_value(v.strip()) for v in values.split(",") if v.strip()]
    return name, {kinds[kind]: vals}


def _cmd_sweep(args) -> int:
    from recede.errors import InvalidArgumentError
    from recede.sweeps import SweepSpec, load_toml, run_sweep

    try:
        if args.spec is not None:
            clash = [f for f, v in (("--task", args.task), ("--planner", args.planner), ("--algo", args.algo),
                                    ("--command", args.trial_command != "run"), ("--grid", args.grid),
                                    ("--random", args.random), ("--option", args.option), ("--steps", args.steps),
                                    ("--seeds", args.seeds)) if v]
            if clash:
                raise _UsageError(f"argument --spec: the file gives the sweep; drop {', '.join(clash)}")
            sweep = load_toml(args.spec)
        else:
            grid: dict = {}
            for name, values in args.grid:
                if name in grid:
                    raise _UsageError(f"argument --grid: {name!r} given twice")
                grid[name] = values
            space: dict = {}
            for name, dist in args.random:
                if name in space:
                    raise _UsageError(f"argument --random: {name!r} given twice")
                space[name] = dist
            fixed = _parse_options(args.option, "--option", False)
            wrong = "algo" if args.trial_command == "run" else "planner"
            if getattr(args, wrong) is not None:
                raise _UsageError(f"argument --{wrong}: not for --command {args.trial_command}")
            for key in ("task", "planner", "algo", "steps"):
                if getattr(args, key) is not None:
                    fixed[key] = getattr(args, key)
            random = {"trials": args.random_trials, "seed": args.random_seed, "space": space} if space else None
            sweep = SweepSpec.make(args.trial_command, grid, "0" if args.seeds is None else args.seeds, fixed,
                                   random)
        if args.address is not None and args.backend != "ray":
            raise _UsageError("argument --address: only with --backend ray")
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "results.jsonl")

        def progress(rec, done, total):
            if not args.no_progress:
                t = rec["trial"]
                opts = " ".join(f"{k}={v}" for k, v in t["options"].items())
                print(f"[{done}/{total}] {t['task']} {t.get('planner', t.get('algo'))} {opts} seed {t['seed']}: return "
                      f"{rec['summary']['return']:.4g} ({rec['timing']['wall_s']:.1f} s)", flush=True)

        try:
            records = run_sweep(sweep, path, backend=args.backend, workers=args.workers, force=args.force,
                                on_record=progress, address=args.address, cpus_per_trial=args.cpus_per_trial)
        except KeyboardInterrupt:
            print(f"{PROG}: sweep interrupted; the finished trials are in {path}; run the same command again "
                  f"to resume", file=sys.stderr)
            return 130
    except InvalidArgumentError as e:
        raise _UsageError(f"sweep: {e}") from None
    if not args.no_progress:
        print(f"{len(records)} trials in {path}")
    return 0
