"""Running a sweep: every unfinished trial of a :class:`~recede.sweeps.spec.SweepSpec`, on a
backend, each finished record appended to ``results.jsonl`` as it arrives.

``local`` (the default) is a process pool of ``workers`` processes (default: the cores this
process may use), started with ``spawn`` and an environment that limits Numba, OpenMP, BLAS and
torch to one thread each, so that N workers on N cores do not oversubscribe; ``workers=1`` runs
the trials in this process, one after another."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from typing import Callable

from recede.errors import InvalidArgumentError
from recede.sweeps import store
from recede.sweeps.spec import SweepSpec
from recede.sweeps.trial import run_trial

BACKENDS = ("local",)
ONE_THREAD = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "OPENBLAS_NUM_THREADS": "1"}


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def run_sweep(sweep: SweepSpec, results: str, *, backend: str = "local", workers: int | None = None,
              force: bool = False, on_record: Callable[[dict, int, int], None] | None = None) -> list[dict]:
    """Run ``sweep``'s unfinished trials and return every record, in the sweep's trial order.
    ``results``: the results.jsonl path (finished trials there are skipped; a file of another
    sweep is refused unless ``force``). ``on_record(record, done, total)`` after each new one."""
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidArgumentError(f"workers must be an integer >= 1, got {workers!r}")
    sweep.check()  # every trial valid before any runs
    trials = sweep.trials()
    done = store.load(results, sweep, force=force)
    todo = [t for t in trials if t.id not in done]
    total = len(trials)

    def finish(rec):
        store.append(results, rec)
        done[rec["id"]] = rec
        if on_record is not None:
            on_record(rec, len(done), total)

    n = default_workers() if workers is None else workers
    if todo and (n == 1 or len(todo) == 1):
        for t in todo:
            finish(run_trial(t))
    elif todo:
        saved = {k: os.environ.get(k) for k in ONE_THREAD}
        os.environ.update(ONE_THREAD)  # spawned workers inherit it before they import numba
        try:
            ctx = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(min(n, len(todo)), mp_context=ctx,
                                                        initializer=_worker_init) as pool:
                futures = [pool.submit(run_trial, t) for t in todo]
                for f in concurrent.futures.as_completed(futures):
                    finish(f.result())
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return [done[t.id] for t in trials]
