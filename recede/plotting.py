"""Drawing closed-loop runs (matplotlib, Agg; no display and no pyplot state needed)."""

from __future__ import annotations

import os
import tempfile
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


def plot_learning_curve(curves: Mapping[int, Sequence[tuple[int, float]]], path, *, title: str = "",
                        format: str | None = None) -> None:
    """A learning curve over seeds: ``curves[seed]`` is that seed's ``(env steps, mean return)``
    per evaluation. Draws, against env steps, the mean over seeds and a band from the lowest to
    the highest seed (min–max, not a standard deviation: with a few seeds it shows every seed),
    at the env steps that every seed has reached; each seed's own curve in a thin line. Written
    whole to ``path`` (temporary file, then rename) as ``format`` (png, pdf or svg; default:
    ``path``'s extension)."""
    from recede._io import atomic_file

    format = plot_format(path) if format is None else format
    if format not in PLOT_FORMATS:
        raise InvalidArgumentError(f"format must be one of {list(PLOT_FORMATS)}, got {format!r}")
    if not curves or not all(len(c) for c in curves.values()):
        raise InvalidArgumentError("curves must hold at least one evaluation for every seed")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    per_seed = {s: dict(c) for s, c in curves.items()}
    steps = sorted(set.intersection(*(set(c) for c in per_seed.values())))
    R = np.array([[per_seed[s][t] for t in steps] for s in per_seed], dtype=np.float64)  # (seeds, evals)
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for s, c in per_seed.items():
        t = sorted(c)
        ax.plot(t, [c[v] for v in t], color="C0", lw=0.6, alpha=0.35)
    n = len(per_seed)
    if steps:
        ax.fill_between(steps, R.min(axis=0), R.max(axis=0), color="C0", alpha=0.2, lw=0,
                        label=f"min–max over {n} seed{'s' if n > 1 else ''}")
        ax.plot(steps, R.mean(axis=0), "o-", color="C0", lw=1.8, ms=3,
                label=f"mean over {n} seed{'s' if n > 1 else ''}")
        ax.legend(loc="best", fontsize="small", frameon=False)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_xlabel("env steps (per seed)")
    ax.set_ylabel("evaluation return")
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    with atomic_file(path, "path") as tmp:
        with open(tmp, "wb") as f:
            fig.savefig(f, format=format, dpi=100)
