"""Drawing closed-loop runs (matplotlib, Agg; no display and no pyplot state needed)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from recede.errors import InvalidArgumentError

# The file formats a plot may be written in, named by the path's extension.
PLOT_FORMATS = ("png", "pdf", "svg")


def plot_format(path) -> str:
    """The format named by ``path``'s extension (one of ``PLOT_FORMATS``); any other raises.
    Writers take it explicitly (``savefig(format=...)``): their temporary files end in .tmp."""
    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if ext not in PLOT_FORMATS:
        raise InvalidArgumentError(
            f"the path must end in {', '.join('.' + f for f in PLOT_FORMATS[:-1])} or "
            f".{PLOT_FORMATS[-1]}, got {os.fspath(path)!r}")
    return ext


def _label(name: str, unit: str) -> str:
    return f"{name} [{unit}]" if unit else name


def plot_run(
    log,
    path,
    *,
    title: str = "",
    state_names: Sequence[str] | None = None,
    action_names: Sequence[str] | None = None,
    dt: float = 1.0,
    show_states: bool | None = None,
    state_units: Sequence[str] | None = None,
    action_units: Sequence[str] | None = None,
    success_band: tuple[float, Mapping[int, tuple[float, float]]] | None = None,
    format: str | None = None,
) -> None:
    """Draw a :class:`~recede.controllers.RunLog` to ``path``.

    One subplot per state (``states: (T+1, nx)``), one per action (``actions: (T, nu)``, drawn
    as held over each control period), and the planning time per step in ms (steps that applied
    a stored plan are left out), above it the cumulative return. ``show_states`` (default: when
    ``nx + nu <= 12``) draws the state and action panels; robots leave them out. The x axis is
    time in seconds (step * ``dt``). Names default to ``x0, x1, ...`` and ``u0, u1, ...``;
    units (``state_units``, ``action_units``, "" for none) go in brackets after them.
    ``success_band``: ``(t0, {state index: (low, high)})``, the band each of those states must
    stay in from time ``t0`` to the end, shaded on its panel. ``format``: png, pdf or svg
    (default: ``path``'s extension, see :func:`plot_format`). The figure is drawn to a temporary
    file next to ``path`` and renamed over it, so ``path`` never holds a partial image.
    """
    format = plot_format(path) if format is None else format
    if format not in PLOT_FORMATS:
        raise InvalidArgumentError(f"format must be one of {list(PLOT_FORMATS)}, got {format!r}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    states = np.asarray(log.states, dtype=np.float64)
    actions = np.asarray(log.actions, dtype=np.float64)
    plan_ms = np.asarray(log.plan_times, dtype=np.float64) * 1e3
    T = actions.shape[0]
    nx = states.shape[1] if states.ndim == 2 else 0
    nu = actions.shape[1] if actions.ndim == 2 else 0
    state_names = list(state_names) if state_names is not None else [f"x{i}" for i in range(nx)]
    action_names = list(action_names) if action_names is not None else [f"u{i}" for i in range(nu)]
    state_units = list(state_units) if state_units is not None else [""] * nx
    action_units = list(action_units) if action_units is not None else [""] * nu
    if len(state_names) != nx or len(action_names) != nu:
        raise ValueError(
            f"state_names and action_names must have {nx} and {nu} entries, "
            f"got {len(state_names)} and {len(action_names)}"
        )
    if len(state_units) != nx or len(action_units) != nu:
        raise ValueError(
            f"state_units and action_units must have {nx} and {nu} entries, "
            f"got {len(state_units)} and {len(action_units)}"
        )

    t_states = np.arange(states.shape[0]) * dt
    t_steps = np.arange(T) * dt
    if show_states is None:
        show_states = nx + nu <= 12
    if not show_states:
        nx = nu = 0
        state_names, action_names = [], []
    rows = nx + nu + 2
    fig = Figure(figsize=(8.0, 1.6 * rows + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]

    t0, bands = success_band if success_band is not None else (0.0, {})
    for i, name in enumerate(state_names):
        ax = axes[i]
        ax.plot(t_states, states[:, i], color="C0", lw=1.5)
        if i in bands:
            low, high = bands[i]
            ax.fill_between([t0, t_states[-1]], low, high, color="C2", alpha=0.2, lw=0,
                            label="success band")
            ax.legend(loc="upper right", fontsize="small", frameon=False)
        ax.set_ylabel(_label(name, state_units[i]))
    for j, name in enumerate(action_names):
        ax = axes[nx + j]
        if T:
            # hold each action over its control period, drawing the last one to the end
            ax.step(np.append(t_steps, T * dt), np.append(actions[:, j], actions[-1, j]),
                    where="post", color="C1", lw=1.5)
        ax.set_ylabel(_label(name, action_units[j]))
    ax = axes[-2]
    rewards = np.asarray(log.rewards, dtype=np.float64)
    ax.plot(np.arange(1, T + 1) * dt, np.cumsum(rewards), color="C3", lw=1.5)
    ax.set_ylabel("return")
    ax = axes[-1]
    planned = np.isfinite(plan_ms)
    if planned.any():
        ax.plot(t_steps[planned], plan_ms[planned], ".", color="C2", ms=4)
        ax.axhline(float(np.median(plan_ms[planned])), color="C2", lw=0.8, ls="--", label="median")
        ax.legend(loc="upper right", fontsize="small", frameon=False)
    ax.set_ylabel("plan [ms]")
    ax.set_xlabel("time [s]")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; match what a plain open would
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format=format, dpi=100)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def plot_comparison(rows, path, *, title: str = "", format: str | None = None) -> None:
    """Bar chart of ``recede compare``'s table: success rate, mean return (with its std across
    seeds) and median planning time (p99 as a whisker), one bar per planner. Written whole to
    ``path`` (the caller's temporary file) as ``format`` (png, pdf or svg; default: ``path``'s
    extension)."""
    format = plot_format(path) if format is None else format
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [r["planner"] for r in rows]
    x = np.arange(len(names))
    colors = [f"C{i}" for i in range(len(names))]
    fig = Figure(figsize=(3.2 * 3, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    rate = [np.nan if r["success_rate"] is None else 100.0 * r["success_rate"] for r in rows]
    axes[0].bar(x, np.nan_to_num(rate), color=colors)
    axes[0].set_ylim(0, 105)
    axes[0].set_ylabel("success (%)")
    for i, v in enumerate(rate):
        if not np.isfinite(v):
            axes[0].text(i, 2, "n/a", ha="center", va="bottom")
    axes[1].bar(x, [r["return_mean"] for r in rows], yerr=[r["return_std"] for r in rows],
                color=colors, capsize=4)
    axes[1].set_ylabel("return (mean ± std)")
    med = np.array([r["plan_ms_median"] for r in rows], dtype=float)
    p99 = np.array([r["plan_ms_p99"] for r in rows], dtype=float)
    axes[2].bar(x, med, color=colors)
    axes[2].errorbar(x, med, yerr=[np.zeros_like(med), np.maximum(p99 - med, 0)], fmt="none",
                     ecolor="k", capsize=4)
    axes[2].set_ylabel("plan time (ms): median, p99")
    for ax in axes:
        ax.set_xticks(x, names)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title)
    with open(path, "wb") as f:
        fig.savefig(f, format=format, dpi=100)


def read_evals_csv(path) -> dict[int, list[tuple[int, float]]]:
    """An ``evals.csv`` as written by ``recede train-policy`` or ``recede mbpo`` (columns
    ``env_steps`` and ``return_mean``, and ``seed`` where there are several) as the learning curve
    of each seed: ``{seed: [(env steps, mean return), ...]}`` in file order (seed 0 without a
    ``seed`` column). Errors name the file, and the row and column at fault."""
    import csv

    path = os.fspath(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = reader.fieldnames or []
    except FileNotFoundError:
        raise InvalidArgumentError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidArgumentError(f"{path}: is a directory, not an evals.csv file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InvalidArgumentError(f"{path}: not a readable CSV file ({e})") from None
    missing = [c for c in ("env_steps", "return_mean") if c not in columns]
    if missing:
        raise InvalidArgumentError(f"{path}: missing columns {missing} (has {columns})")
    curves: dict[int, list[tuple[int, float]]] = {}
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        try:
            seed = int(row["seed"]) if "seed" in columns else 0
            steps = int(row["env_steps"])
            ret = float(row["return_mean"])
        except (TypeError, ValueError):
            raise InvalidArgumentError(
                f"{path}: line {i}: seed, env_steps and return_mean must be numbers, got "
                f"{ {k: row.get(k) for k in ('seed', 'env_steps', 'return_mean') if k in columns} }") from None
        curves.setdefault(seed, []).append((steps, ret))
    if not curves:
        raise InvalidArgumentError(f"{path}: no evaluations (only a header)")
    return curves


def _plural(n: int) -> str:
    return f"{n} seed{'s' if n > 1 else ''}"


def plot_learning_curve(curves, path, *, title: str = "", format: str | None = None):
    """Learning curves against env steps, written whole to ``path`` (temporary file, then rename)
    as ``format`` (png, pdf or svg; default: ``path``'s extension). Returns the matplotlib
    ``Figure`` (for inspection; it is not shown anywhere).

    ``curves`` is either one run, ``{seed: [(env steps, mean return), ...]}``, or several to
    overlay on the same axes, ``[(label, run), ...]`` where each ``run`` is such a mapping or the
    path of an ``evals.csv`` (see :func:`read_evals_csv`), e.g. ``[("MBPO", "runs/mbpo/evals.csv"),
    ("SAC", "runs/sac/evals.csv")]``. Each run is drawn in its own colour: the mean over its seeds
    at the env steps every one of its seeds has reached, with a band from the lowest to the
    highest seed (min–max, not a standard deviation: with a few seeds it shows every seed; drawn
    for one run, or for a labelled run of several seeds), and each seed's own curve in a thin
    line. The legend names the runs by their labels."""

    format = plot_format(path) if format is None else format
    if format not in PLOT_FORMATS:
        raise InvalidArgumentError(f"format must be one of {list(PLOT_FORMATS)}, got {format!r}")
    if isinstance(curves, Mapping):
        runs = [(None, curves)]
    elif isinstance(curves, (list, tuple)) and curves:
        runs = []
        for i, item in enumerate(curves):
            if not (isinstance(item, (list, tuple)) and len(item) == 2):
                raise InvalidArgumentError(f"curves[{i}] must be a (label, run) pair, got {item!r}")
            label, run = item
            if not isinstance(label, str) or not label.strip():
                raise InvalidArgumentError(f"curves[{i}]: the label must be a non-empty string, got {label!r}")
            if isinstance(run, (str, os.PathLike)):
                run = read_evals_csv(run)
            elif not isinstance(run, Mapping):
                raise InvalidArgumentError(f"curves[{i}] ({label}): the run must be a mapping "
                                           f"{{seed: [(env steps, return), ...]}} or the path of an "
                                           f"evals.csv, got {type(run).__name__}")
            runs.append((label, run))
    else:
        raise InvalidArgumentError("curves must be a mapping {seed: [(env steps, return), ...]} or a "
                                   f"non-empty list of (label, run) pairs, got {curves!r}")
    for label, run in runs:
        if not run or not all(len(c) for c in run.values()):
            where = "" if label is None else f" of run {label!r}"
            raise InvalidArgumentError(f"curves must hold at least one evaluation for every seed{where}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    legend = False
    for i, (label, run) in enumerate(runs):
        color = f"C{i}"
        per_seed = {s: dict(c) for s, c in run.items()}
        steps = sorted(set.intersection(*(set(c) for c in per_seed.values())))
        R = np.array([[per_seed[s][t] for t in steps] for s in per_seed], dtype=np.float64)  # (seeds, evals)
        for s, c in per_seed.items():
            t = sorted(c)
            ax.plot(t, [c[v] for v in t], color=color, lw=0.6, alpha=0.35)
        n = len(per_seed)
        if not steps:
            continue
        legend = True
        if label is None:
            band, mean = f"min–max over {_plural(n)}", f"mean over {_plural(n)}"
        else:
            band, mean = f"{label}: min–max", f"{label} (mean over {_plural(n)})" if n > 1 else f"{label}"
        if label is None or n > 1:
            ax.fill_between(steps, R.min(axis=0), R.max(axis=0), color=color, alpha=0.2, lw=0, label=band)
        ax.plot(steps, R.mean(axis=0), "o-", color=color, lw=1.8, ms=3, label=mean)
    if legend:
        ax.legend(loc="best", fontsize="small", frameon=False)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_xlabel("env steps (per seed)")
    ax.set_ylabel("evaluation return")
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    _write_figure(fig, path, format)
    return fig


def plot_imitation(curves, path, *, expert: float | None = None, title: str = "", format: str | None = None):
    """Imitation curves: evaluation return against expert labels, written whole to ``path``
    (png, pdf or svg). ``curves``: ``{method: {seed: [(labels, return), ...]}}``; each method is
    drawn as its mean over seeds at the label counts every seed reached, with a band of one
    standard deviation over seeds (numpy's, ddof=0). ``expert``: the expert's mean return, drawn
    as a horizontal line. Returns the matplotlib ``Figure``."""

    format = plot_format(path) if format is None else format
    if format not in PLOT_FORMATS:
        raise InvalidArgumentError(f"format must be one of {list(PLOT_FORMATS)}, got {format!r}")
    if not isinstance(curves, Mapping) or not curves or not all(
            isinstance(run, Mapping) and run and all(len(c) for c in run.values()) for run in curves.values()):
        raise InvalidArgumentError("curves must map each method to {seed: [(labels, return), ...]} with at "
                                   f"least one point per seed, got {curves!r}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i, (method, run) in enumerate(curves.items()):
        color = f"C{i}"
        per_seed = {s: dict(c) for s, c in run.items()}
        counts = sorted(set.intersection(*(set(c) for c in per_seed.values())))
        if not counts:
            continue
        R = np.array([[per_seed[s][n] for n in counts] for s in per_seed], dtype=np.float64)
        mean, std = R.mean(axis=0), R.std(axis=0)
        n = len(per_seed)
        if n > 1:
            ax.fill_between(counts, mean - std, mean + std, color=color, alpha=0.2, lw=0)
        ax.plot(counts, mean, "o-", color=color, lw=1.8, ms=3,
                label=f"{method} (mean ± std over {_plural(n)})" if n > 1 else method)
    if expert is not None and np.isfinite(expert):
        ax.axhline(expert, color="k", ls="--", lw=1.2, label="expert")
    ax.legend(loc="best", fontsize="small", frameon=False)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_xlabel("expert labels")
    ax.set_ylabel("evaluation return")
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    _write_figure(fig, path, format)
    return fig


def plot_gps(log, path, *, title: str = "", format: str | None = None):
    """Guided policy search's progress, written whole to ``path`` (png, pdf or svg): the cost
    per iteration of the local controllers (their samples' mean, over conditions) and of the
    global policy alone (from the conditions' starts), each with its range over conditions; the
    global policy's success rates (from the conditions, from held-out starts) on a second axis
    where they were scored. ``log``: the
    :class:`~recede.policy_learning.gps.IterationLog` list. Returns the matplotlib ``Figure``."""

    format = plot_format(path) if format is None else format
    if format not in PLOT_FORMATS:
        raise InvalidArgumentError(f"format must be one of {list(PLOT_FORMATS)}, got {format!r}")
    if not log:
        raise InvalidArgumentError("log must hold at least one iteration, got none")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    it = np.array([e.iteration for e in log])
    for i, (name, key) in enumerate((("local controllers", "local_cost"), ("global policy", "policy_cost"))):
        C = np.array([getattr(e, key) for e in log], dtype=np.float64)
        ax.fill_between(it, C.min(axis=1), C.max(axis=1), color=f"C{i}", alpha=0.15, lw=0)
        ax.plot(it, C.mean(axis=1), "o-", color=f"C{i}", lw=1.8, ms=3, label=f"{name} (mean, range over conditions)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cost (minus the return)")
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    rates = [(np.array([getattr(e, key, np.nan) for e in log], dtype=np.float64), name, f"C{j}", mark)
             for j, key, name, mark in ((2, "condition_success", "global policy: success from the conditions", "^:"),
                                        (3, "holdout_success", "global policy: held-out success", "s--"))]
    if any(np.any(np.isfinite(r[0])) for r in rates):
        ax2 = ax.twinx()
        for succ, name, color, mark in rates:
            if np.any(np.isfinite(succ)):
                ax2.plot(it, 100 * succ, mark, color=color, lw=1.2, ms=3, label=name)
        ax2.set_ylabel("success (%)")
        ax2.set_ylim(-5, 105)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="best", fontsize="small", frameon=False)
    if title:
        ax.set_title(title)
    _write_figure(fig, path, format)
    return fig


def _write_figure(fig, path, format: str) -> None:
    """Write ``fig`` whole to ``path`` (a temporary file renamed over it)."""
    from recede._io import atomic_file

    with atomic_file(path, "path") as tmp:
        with open(tmp, "wb") as f:
            fig.savefig(f, format=format, dpi=100)


@dataclass(frozen=True)
class SweepSeries:
    """One line of a sweep figure: ``mean`` (with ``ci95``, the half-width of its 95% confidence
    interval, NaN where undefined) at each ``x``; all three ``(P,)``."""

    label: str
    x: np.ndarray
    mean: np.ndarray
    ci95: np.ndarray


def _sweep_colors(k: int) -> list:
    from matplotlib import colormaps

    if k <= 10:
        return [f"C{i}" for i in range(k)]
    cmap = colormaps["tab20"]
    return [cmap(i % 20) for i in range(k)]


def _band(ax, s: SweepSeries, color, alpha: float = 0.2) -> None:
    ok = np.isfinite(s.ci95) & np.isfinite(s.mean)
    if ok.any():
        ax.fill_between(s.x, np.where(ok, s.mean - s.ci95, np.nan), np.where(ok, s.mean + s.ci95, np.nan),
                        color=color, alpha=alpha, lw=0)


def _legend(ax, k: int) -> None:
    ax.legend(loc="best", fontsize="small" if k <= 6 else "x-small", frameon=False, ncol=1 if k <= 12 else 2)


def plot_sweep_bars(labels: Sequence[str], means: Sequence[float], ci95: Sequence[float], path, *,
                    xlabel: str = "return (mean, 95% CI)", title: str = "", format: str | None = None):
    """A sweep's configs as horizontal bars (first config on top): ``means`` with ``ci95``
    (half-widths; NaN draws no whisker) as error bars, written whole to ``path`` (png, pdf or
    svg). Returns the matplotlib ``Figure``."""
    format = plot_format(path) if format is None else format
    if format not in PLOT_FORMATS:
        raise InvalidArgumentError(f"format must be one of {list(PLOT_FORMATS)}, got {format!r}")
    if not (len(labels) == len(means) == len(ci95)) or not labels:
        raise InvalidArgumentError(f"labels, means and ci95 must have the same length (at least 1), got "
                                   f"{len(labels)}, {len(means)} and {len(ci95)}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = len(labels)
    fig = Figure(figsize=(7.0, 1.0 + 0.32 * k), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(k)
    ci = np.asarray(ci95, dtype=np.float64)
    ax.barh(y, np.asarray(means, dtype=np.float64), xerr=np.where(np.isfinite(ci), ci, 0.0),
            color=_sweep_colors(k), capsize=3, error_kw={"lw": 1.0})
    ax.set_yticks(y, labels, fontsize="small" if k <= 20 else "x-small")
    ax.invert_yaxis()
    ax.axvline(0.0, color="k", lw=0.6)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title)
    _write_figure(fig, path, format)
    return fig


def plot_sweep_curves(series: Sequence[SweepSeries], path, *, xlabel: str = "step",
                      ylabel: str = "cumulative return (mean, 95% CI)", title: str = "",
                      format: str | None = None):
    """One line per config (``series``: its mean over seeds against the step) with its 95% CI
    band, written whole to ``path`` (png, pdf or svg). Returns the matplotlib ``Figure``."""
    format = plot_format(path) if format is None else format
    if format not in PLOT_FORMATS:
        raise InvalidArgumentError(f"format must be one of {list(PLOT_FORMATS)}, got {format!r}")
    if not series:
        raise InvalidArgumentError("series must hold at least one line, got none")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = len(series)
    fig = Figure(figsize=(8.0 if k > 12 else 6.4, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for s, color in zip(series, _sweep_colors(k)):
        _band(ax, s, color, alpha=0.2 if k <= 6 else 0.08)
        ax.plot(s.x, s.mean, color=color, lw=1.4, label=s.label)
    return _finish_sweep_axes(fig, ax, k, xlabel, ylabel, title, path, format)


def _finish_sweep_axes(fig, ax, k: int, xlabel: str, ylabel: str, title: str, path, format: str):
    """Legend, labels, grid and title of a one-axes sweep figure, then write it whole."""
    _legend(ax, k)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    _write_figure(fig, path, format)
    return fig


def plot_sweep_vs(series: Sequence[SweepSeries], path, *, xlabel: str, ylabel: str = "return (mean, 95% CI)",
                  log2: bool | None = None, title: str = "", format: str | None = None):
    """A metric against one swept numeric setting: one line per ``series`` (markers at its
    points) with its 95% CI band, written whole to ``path`` (png, pdf or svg). ``log2`` (default:
    when every x is positive and they span at least 4x) draws the x axis in log base 2, ticked at
    the swept values. Returns the matplotlib ``Figure``; its axes' lines are the series, in order."""
    format = plot_format(path) if format is None else format
    if format not in PLOT_FORMATS:
        raise InvalidArgumentError(f"format must be one of {list(PLOT_FORMATS)}, got {format!r}")
    if not series:
        raise InvalidArgumentError("series must hold at least one line, got none")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, NullLocator

    xs = np.concatenate([np.asarray(s.x, dtype=np.float64) for s in series])
    if log2 is None:
        log2 = bool(xs.size and np.all(xs > 0) and xs.max() >= 4 * xs.min())
    k = len(series)
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for s, color in zip(series, _sweep_colors(k)):
        _band(ax, s, color)
        ax.plot(s.x, s.mean, "o-", color=color, lw=1.6, ms=4, label=s.label)
    if log2:
        ax.set_xscale("log", base=2)
        ticks = np.unique(xs)
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
    return _finish_sweep_axes(fig, ax, k, xlabel + (" (log2 scale)" if log2 else ""), ylabel, title, path, format)
