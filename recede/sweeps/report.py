"""Reports on a finished (or partly finished) sweep: its ``results.jsonl`` summarized per config.

A *config* is a trial without its seed (task, planner, options, steps, horizon); configs keep the
sweep's order (:func:`load_results` puts the records, appended as trials finish, back into it). For each config and metric (see ``METRICS``) a
:class:`ConfigSummary` holds the values over its seeds, their mean, sample standard deviation
(ddof=1) and the half-width of the 95% confidence interval of the mean by Student's t,
``t.ppf(0.975, n - 1) * std / sqrt(n)`` (NaN for one seed). A config is labelled by the settings
that vary across the sweep's configs only (``"planner=cem samples=50"``).

:func:`report` does it all: a plain-text table, ``summary.csv`` and three figures (mean per config
with its 95% CI; the mean cumulative-return curve per config with its 95% CI band; the metric
against one swept numeric setting, one line per combination of the other varying settings).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from recede.errors import InvalidArgumentError
from recede.sweeps.store import FORMAT


def _summary(key: str) -> Callable[[dict], Any]:
    return lambda rec: rec["summary"].get(key)


def _timing(key: str) -> Callable[[dict], Any]:
    return lambda rec: rec.get("timing", {}).get(key)


# metric name -> its value in a record (None: missing, left out of that metric's statistics)
METRICS: dict[str, Callable[[dict], Any]] = {
    "return": _summary("return"),
    "success": _summary("success"),  # True/False as 1/0 (the mean is the success rate); null left out
    "steps": _summary("steps"),
    "samples_per_plan": _summary("samples_per_plan"),  # sequences a sampling planner evaluates per step
    "plan_ms_median": _timing("plan_ms_median"),
    "plan_ms_p99": _timing("plan_ms_p99"),
    "wall_s": _timing("wall_s"),
}
# the trial's own settings, in the order a label names them; planner options follow
_TRIAL_KEYS = ("command", "task", "planner", "algo", "horizon", "steps")


@dataclass(frozen=True)
class ConfigSummary:
    """One config's ``metric`` over its seeds. ``config``: the trial without its seed;
    ``varying``: the settings that differ between the sweep's configs (name -> this config's
    value); ``values``: the metric per seed (missing ones left out), so ``n = len(values)``;
    ``mean``, ``std`` (ddof=1) and ``ci95`` (the half-width of the 95% t interval of the mean) are
    NaN where ``n`` is too small (0 for the mean, 1 for the others)."""

    label: str
    config: dict
    varying: dict
    metric: str
    n: int
    mean: float
    std: float
    ci95: float
    values: tuple[float, ...]

    @property
    def ci95_low(self) -> float:
        return self.mean - self.ci95

    @property
    def ci95_high(self) -> float:
        return self.mean + self.ci95


def mean_ci95(values: Sequence[float]) -> tuple[int, float, float, float]:
    """``(n, mean, std, ci95)`` of ``values``: sample std (ddof=1) and the half-width of the 95%
    Student-t interval of the mean, ``t.ppf(0.975, n - 1) * std / sqrt(n)``; NaN where undefined."""
    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return 0, math.nan, math.nan, math.nan
    mean = float(x.mean())
    if n == 1:
        return 1, mean, math.nan, math.nan
    from scipy.stats import t

    std = float(x.std(ddof=1))
    return n, mean, std, float(t.ppf(0.975, n - 1) * std / math.sqrt(n))


# -- reading ------------------------------------------------------------------------------------

def load_results(path) -> tuple[dict, list[dict]]:
    """The header and the finished records of a sweep's ``results.jsonl`` (``path``, or a sweep
    directory holding one), records in the sweep's trial order (file order if the header cannot
    rebuild the sweep). A last line cut short by a kill (no trailing
    newline) is left out; the file is not changed. A missing file, a file without the
    ``recede.sweep/1`` header, a damaged line or a file with no records raise
    :class:`~recede.errors.InvalidArgumentError` naming the path."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "results.jsonl")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InvalidArgumentError(f"results file {path!r} does not exist") from None
    except OSError as e:
        raise InvalidArgumentError(f"results file {path!r} cannot be read ({e})") from None
    lines = data[:data.rfind(b"\n") + 1].splitlines()  # a cut-short last line is dropped
    try:
        header = json.loads(lines[0]) if lines else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InvalidArgumentError(
            f"results file {path!r} is not a sweep's results: its first line must be a "
            f"{{\"format\": \"{FORMAT}\", ...}} header, got {lines[0][:80].decode(errors='replace')!r}"
            if lines else f"results file {path!r} is not a sweep's results: it has no complete line")
    by_id: dict[str, dict] = {}
    for i, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InvalidArgumentError(f"results file {path!r}: line {i} is not JSON ({e})") from None
        if not (isinstance(rec, dict) and isinstance(rec.get("trial"), dict) and isinstance(rec.get("summary"), dict)):
            raise InvalidArgumentError(f"results file {path!r}: line {i} is not a trial record "
                                       f"(needs 'trial' and 'summary' objects)")
        by_id[rec.get("id", f"line {i}")] = rec  # as store.load: a rerun trial's last record wins
    if not by_id:
        raise InvalidArgumentError(f"results file {path!r} holds no finished trials yet")
    return header, _sweep_order(header, list(by_id.values()))


def _sweep_order(header: dict, records: list[dict]) -> list[dict]:
    """``records`` in the sweep's own trial order (they are appended as trials finish, in any
    order), rebuilt from the header; file order where the header cannot rebuild the sweep."""
    from recede.sweeps.spec import SweepSpec

    try:
        sweep = SweepSpec.make(header["command"], header["grid"], header["seeds"], header.get("fixed", {}),
                               header.get("random"))
    except (KeyError, TypeError, ValueError):
        return records
    if sweep.id != header.get("sweep"):
        return records
    order = {t.id: i for i, t in enumerate(sweep.trials())}
    return sorted(records, key=lambda r: order.get(r.get("id"), len(order)))


# -- grouping -----------------------------------------------------------------------------------

def _config(rec: dict) -> dict:
    return {k: v for k, v in rec["trial"].items() if k != "seed"}


def _settings(config: dict) -> dict:
    """A config as flat settings: the trial's own keys, then its options."""
    flat = {k: config.get(k) for k in _TRIAL_KEYS}
    flat.update(config.get("options") or {})
    return flat


def _fmt_value(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))


def _group(records: Sequence[dict]) -> list[tuple[dict, list[dict]]]:
    """``[(config, its records), ...]`` in the order the configs first appear."""
    groups: dict[str, tuple[dict, list[dict]]] = {}
    for rec in records:
        config = _config(rec)
        key = json.dumps(config, sort_keys=True)
        groups.setdefault(key, (config, []))[1].append(rec)
    return list(groups.values())


def varying_settings(configs: Sequence[dict]) -> list[str]:
    """The names of the settings that differ between ``configs`` (trial keys first, then options
    in the order they first appear)."""
    flats = [_settings(c) for c in configs]
    names: list[str] = []
    for flat in flats:
        names += [k for k in flat if k not in names]
    return [k for k in names
            if len({json.dumps(f[k], sort_keys=True) if k in f else "missing" for f in flats}) > 1]


def summarize(records: Sequence[dict], metric: str = "return") -> list[ConfigSummary]:
    """``metric`` per config of ``records`` (as :func:`load_results` returns them), configs in
    the order they first appear; see :class:`ConfigSummary`."""
    get = _metric(metric)
    groups = _group(records)
    names = varying_settings([c for c, _ in groups])
    out = []
    for config, recs in groups:
        flat = _settings(config)
        varying = {k: flat.get(k) for k in names}
        label = " ".join(f"{k}={_fmt_value(v)}" for k, v in varying.items()) or str(config.get("planner", config.get("algo")))
        values = tuple(float(v) for v in (get(r) for r in recs) if v is not None)
        n, mean, std, ci = mean_ci95(values)
        out.append(ConfigSummary(label, config, varying, metric, n, mean, std, ci, values))
    return out


def summarize_all(records: Sequence[dict], metrics: Sequence[str] = tuple(METRICS)) -> dict[str, list[ConfigSummary]]:
    """``{metric: summarize(records, metric)}`` for each of ``metrics`` (same configs, same order)."""
    return {m: summarize(records, m) for m in metrics}


def _metric(metric: str) -> Callable[[dict], Any]:
    if metric not in METRICS:
        raise InvalidArgumentError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    return METRICS[metric]


# -- table and CSV ------------------------------------------------------------------------------

def _decimals(values: Sequence[float]) -> int:
    """Decimals that show the column's largest magnitude to about 4 significant digits."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    if not finite:
        return 2
    return min(4, max(0, 3 - math.floor(math.log10(max(finite)))))


def _num(v: float, decimals: int) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{decimals}f}"


def _as_mapping(summaries) -> dict[str, list[ConfigSummary]]:
    if isinstance(summaries, Mapping):
        out = {m: list(s) for m, s in summaries.items()}
    else:
        summaries = list(summaries)
        out = {summaries[0].metric: summaries} if summaries else {}
    if not out or not all(out.values()):
        raise InvalidArgumentError("summaries must hold at least one config, got none")
    lengths = {m: len(s) for m, s in out.items()}
    if len(set(lengths.values())) != 1:
        raise InvalidArgumentError(f"summaries must cover the same configs for every metric, got {lengths}")
    return out


def format_table(summaries) -> str:
    """A plain-text table, one row per config: the varying settings, the number of seeds and, per
    metric, the mean ± 95% CI half-width ("n/a" for one seed); ``success`` is shown as a rate
    (successes/n and percent), and left out where no trial has one. ``summaries``: one
    :func:`summarize` list, or ``{metric: list}`` as :func:`summarize_all` returns (the first
    metric's n is the table's)."""
    by_metric = _as_mapping(summaries)
    if "success" in by_metric and len(by_metric) > 1 and not any(s.n for s in by_metric["success"]):
        del by_metric["success"]
    first = next(iter(by_metric.values()))
    names = list(first[0].varying)
    head = names + ["n"]
    cols: list[list[str]] = [[_fmt_value(s.varying[k]) for s in first] for k in names]
    cols.append([str(s.n) for s in first])
    right = [False] * len(names) + [True]
    for metric, rows in by_metric.items():
        if metric == "success":
            head.append("success")
            cols.append([(f"{round(s.mean * s.n)}/{s.n} ({100 * s.mean:.0f}%)" if set(s.values) <= {0.0, 1.0}
                          else f"{100 * s.mean:.0f}% (mean rate)") if s.n else "n/a" for s in rows])
        else:
            head.append(f"{metric} (mean ± 95% CI)")
            d = _decimals([s.mean for s in rows])
            means = [_num(s.mean, d) for s in rows]
            cis = [_num(s.ci95, d) for s in rows]
            wm, wc = max(map(len, means)), max(map(len, cis))
            cols.append([f"{m:>{wm}} ± {c:>{wc}}" for m, c in zip(means, cis)])
        right.append(True)
    widths = [max(len(h), *(len(c) for c in col)) for h, col in zip(head, cols)]

    def line(cells):
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()

    out = [line(head), line(["-" * w for w in widths])]
    out += [line([col[i] for col in cols]) for i in range(len(first))]
    return "\n".join(out)


def _csv_float(v: float) -> str:
    return "" if v is None or not math.isfinite(v) else repr(float(v))


def write_csv(summaries, path) -> str:
    """Write one row per config to ``path`` (a temporary file renamed over it) and return the path:
    ``label``, the varying settings, then per metric ``{metric}_n``, ``_mean``, ``_std``,
    ``_ci95_low`` and ``_ci95_high`` (an empty cell where undefined). ``summaries`` as for
    :func:`format_table`."""
    from recede._io import atomic_file

    by_metric = _as_mapping(summaries)
    first = next(iter(by_metric.values()))
    names = list(first[0].varying)
    fields = ["label"] + names
    for m in by_metric:
        fields += [f"{m}_n", f"{m}_mean", f"{m}_std", f"{m}_ci95_low", f"{m}_ci95_high"]
    path = os.fspath(path)
    with atomic_file(path, "path") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(fields)
            for i, s in enumerate(first):
                row = [s.label] + [_fmt_value(s.varying[k]) for k in names]
                for rows in by_metric.values():
                    r = rows[i]
                    row += [str(r.n), _csv_float(r.mean), _csv_float(r.std), _csv_float(r.ci95_low),
                            _csv_float(r.ci95_high)]
                w.writerow(row)
    return path


# -- the data the figures draw ------------------------------------------------------------------

def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def numeric_settings(summaries: Sequence[ConfigSummary]) -> list[str]:
    """The varying settings whose every value is a number (the choices for ``x``)."""
    if not summaries:
        return []
    return [k for k in summaries[0].varying if all(_is_number(s.varying[k]) for s in summaries)]


def choose_x(summaries: Sequence[ConfigSummary], x: str | None = None) -> str | None:
    """``x`` checked against :func:`numeric_settings`, or (``x=None``) the numeric varying setting
    with the most distinct values (the first of those tied); None where there is none."""
    choices = numeric_settings(summaries)
    if x is None:
        if not choices:
            return None
        return max(choices, key=lambda k: (len({s.varying[k] for s in summaries}), -choices.index(k)))
    if x not in choices:
        varying = list(summaries[0].varying) if summaries else []
        why = "is not numeric" if x in varying else "is not a setting the sweep varies"
        raise InvalidArgumentError(f"x must be a numeric setting the sweep varies, one of {choices}; "
                                   f"got x={x!r}, which {why}")
    return x


def series_vs(summaries: Sequence[ConfigSummary], x: str):
    """The lines of the metric against ``x``: one :class:`~recede.plotting.SweepSeries` per
    combination of the other varying settings (in the order they first appear), its points sorted
    by ``x``."""
    from recede.plotting import SweepSeries

    x = choose_x(summaries, x)
    lines: dict[str, list[ConfigSummary]] = {}
    for s in summaries:
        others = " ".join(f"{k}={_fmt_value(v)}" for k, v in s.varying.items() if k != x)
        lines.setdefault(others, []).append(s)
    out = []
    for label, members in lines.items():
        members = sorted(members, key=lambda s: s.varying[x])
        out.append(SweepSeries(label or summaries[0].metric, np.array([s.varying[x] for s in members], dtype=float),
                               np.array([s.mean for s in members]), np.array([s.ci95 for s in members])))
    return out


def _column_ci95(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``Y`` (seeds x points): the mean and the 95% Student-t half-width, as
    :func:`mean_ci95` (NaN for one seed)."""
    n = Y.shape[0]
    if n < 2:
        return Y.mean(axis=0), np.full(Y.shape[1], np.nan)
    from scipy.stats import t

    return Y.mean(axis=0), t.ppf(0.975, n - 1) * Y.std(axis=0, ddof=1) / math.sqrt(n)


def return_curves(records: Sequence[dict]):
    """The mean cumulative return against the step, with its 95% CI band, per config that has
    per-step rewards (``curve.rewards``), as :class:`~recede.plotting.SweepSeries`; labels as in
    :func:`summarize`. An episode that ended early keeps its final return for the remaining
    steps (its return no longer changes)."""
    from recede.plotting import SweepSeries

    labels = [s.label for s in summarize(records, "return")]
    out = []
    for label, (_, recs) in zip(labels, _group(records)):
        rewards = [[math.nan if r is None else r for r in (rec.get("curve") or {}).get("rewards") or []]
                   for rec in recs]
        rewards = [r for r in rewards if r]
        if not rewards:
            continue
        T = max(map(len, rewards))
        C = np.empty((len(rewards), T))
        for i, r in enumerate(rewards):
            c = np.cumsum(np.asarray(r, dtype=np.float64))
            C[i, :len(c)] = c
            C[i, len(c):] = c[-1]
        out.append(SweepSeries(label, np.arange(1, T + 1, dtype=float), *_column_ci95(C)))
    return out


def learning_curves(records: Sequence[dict]):
    """The mean evaluation return against the env steps, with its 95% CI band over seeds, per
    config whose records carry a learning curve (``curve.env_steps`` and ``curve.returns``, from
    ``train-policy`` trials), as :class:`~recede.plotting.SweepSeries`. Seeds are compared at
    the evaluations all of them reached."""
    from recede.plotting import SweepSeries

    labels = [s.label for s in summarize(records, "return")]
    out = []
    for label, (_, recs) in zip(labels, _group(records)):
        curves = [((rec.get("curve") or {}).get("env_steps") or [], (rec.get("curve") or {}).get("returns") or [])
                  for rec in recs]
        curves = [(x, y) for x, y in curves if x and len(x) == len(y)]
        if not curves:
            continue
        T = min(len(x) for x, _ in curves)
        Y = np.array([[math.nan if v is None else v for v in y[:T]] for _, y in curves], dtype=np.float64)
        out.append(SweepSeries(label, np.asarray(curves[0][0][:T], dtype=float), *_column_ci95(Y)))
    return out


# -- everything ---------------------------------------------------------------------------------

def report(path, out_dir=None, x: str | None = None, metric: str = "return") -> dict:
    """Summarize the sweep in ``path`` (a ``results.jsonl`` or its directory) into ``out_dir``
    (default: the results file's directory, created if missing): ``summary.csv`` (every metric),
    ``{metric}-bars.png`` (mean per config with its 95% CI), ``return-curves.png`` (where records
    have per-step rewards), ``learning-curves.png`` (where they have evaluations against env steps) and ``{metric}-vs-{x}.png`` (against ``x``, see :func:`choose_x`; left
    out where no numeric setting varies). Prints nothing; returns ``{"table": str, "csv": path,
    "plots": [paths], "x": the x used or None}``."""
    from recede.plotting import plot_sweep_bars, plot_sweep_curves, plot_sweep_vs

    _metric(metric)
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "results.jsonl")
    header, records = load_results(path)
    by_metric = summarize_all(records, [metric] + [m for m in METRICS if m != metric])
    main = by_metric[metric]
    x = choose_x(main, x)
    out_dir = os.path.dirname(os.path.abspath(path)) if out_dir is None else os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InvalidArgumentError(f"out_dir must be a directory, got the file {out_dir!r}")
    os.makedirs(out_dir, exist_ok=True)

    shown = {metric: main}
    for m in ("success", "plan_ms_median"):
        if any(c.n for c in by_metric[m]):  # train-policy trials have no plan time
            shown.setdefault(m, by_metric[m])
    table = format_table(shown)
    csv_path = write_csv(by_metric, os.path.join(out_dir, "summary.csv"))
    task = header.get("fixed", {}).get("task")
    title = f"sweep {header.get('sweep')}" + (f": {task}" if task else "")
    ylabel = "success rate" if metric == "success" else metric
    plots = []
    p = os.path.join(out_dir, f"{metric}-bars.png")
    plot_sweep_bars([s.label for s in main], [s.mean for s in main], [s.ci95 for s in main], p,
                    xlabel=f"{ylabel} (mean, 95% CI)", title=title)
    plots.append(p)
    curves = return_curves(records)
    if curves:
        p = os.path.join(out_dir, "return-curves.png")
        plot_sweep_curves(curves, p, title=title)
        plots.append(p)
    learning = learning_curves(records)
    if learning:
        p = os.path.join(out_dir, "learning-curves.png")
        plot_sweep_curves(learning, p, xlabel="env steps", ylabel="evaluation return (mean, 95% CI)", title=title)
        plots.append(p)
    if x is not None:
        p = os.path.join(out_dir, f"{metric}-vs-{x}.png")
        plot_sweep_vs(series_vs(main, x), p, xlabel=x, ylabel=f"{ylabel} (mean, 95% CI)", title=title)
        plots.append(p)
    return {"table": table, "csv": csv_path, "plots": plots, "x": x}
