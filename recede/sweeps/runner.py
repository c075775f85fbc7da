"""Running a sweep: every unfinished trial of a :class:`~recede.sweeps.spec.SweepSpec`, on a
backend, each finished record appended to ``results.jsonl`` as it arrives.

``local`` (the default) is a process pool of ``workers`` processes (default: the cores this
process may use), started with ``spawn`` and an environment that limits Numba, OpenMP, BLAS and
torch to one thread each, so that N workers on N cores do not oversubscribe; ``workers=1`` runs
the trials in this process, one after another.

``ray`` (``pip install recede[ray]``) runs the same :func:`~recede.sweeps.trial.run_trial` as Ray
tasks of ``cpus_per_trial`` CPUs each (default 1), with the same one-thread environment. With no
``address`` it starts a local Ray instance of ``workers`` CPUs (default: the cores) and stops it
afterwards; with an ``address`` (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``) it joins that
cluster, whose nodes must have recede installed. If Ray is already initialised in this process,
the sweep uses that instance and leaves it running. Either way only this process writes
``results.jsonl``, as each task finishes."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from typing import Callable

from recede._threads import available_cores
from recede.errors import InvalidArgumentError, RecedeError
from recede.sweeps import store
from recede.sweeps.spec import SweepSpec, TrialSpec
from recede.sweeps.trial import run_trial

BACKENDS = ("local", "ray")
RAY_NICENESS = "RAY_worker_niceness"  # read by the raylet a local ray.init starts
# one thread of everything in each worker: Numba, OpenMP (and torch, which reads it), BLAS, and
# MuJoCo's rollout threads (recede.models.mujoco.default_threads)
ONE_THREAD = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "OPENBLAS_NUM_THREADS": "1", "RECEDE_NUM_THREADS": "1"}


_initialised = False


def _worker_init() -> None:
    global _initialised
    if _initialised:  # a Ray worker runs many trials
        return
    _initialised = True
    from recede._mujoco_log import route_warnings

    # torch, where a trial imports it, reads OMP_NUM_THREADS=1 (ONE_THREAD); the learners also
    # hold themselves to their config's threads (default 1). Importing it here would cost every
    # worker seconds for trials that never use it.
    route_warnings(immediate=True, label=f"sweep worker {os.getpid()}")  # not MUJOCO_LOG.TXT in the cwd


def _stop(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the running trials at once (shutdown alone would wait
    for them)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join(timeout=10)


def default_workers() -> int:
    """One worker per core this process may use."""
    return available_cores()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InvalidArgumentError("backend 'ray' needs Ray: pip install 'recede[ray]'") from None
    return ray


def _run_ray(todo, finish, fail, *, address, workers, cpus_per_trial) -> None:
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        kwargs = dict(include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": dict(ONE_THREAD)})
        saved = os.environ.get(RAY_NICENESS)
        if address is None:
            kwargs["num_cpus"] = default_workers() if workers is None else workers
            # Ray starts its workers at nice 15, behind every other process: on a busy machine a
            # local sweep then crawls (the sweep is the work here; its driver only waits)
            os.environ.setdefault(RAY_NICENESS, "0")
        try:
            ray.init(address=address, **kwargs)
        finally:
            if saved is None:
                os.environ.pop(RAY_NICENESS, None)
    try:
        task = ray.remote(num_cpus=cpus_per_trial)(_ray_trial)
        refs = {task.remote(t): t for t in todo}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                try:
                    rec = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - recorded, the other trials go on
                    fail(refs[ref], e)
                else:
                    finish(rec)
    finally:
        if started:
            ray.shutdown()


def _ray_trial(trial):
    _worker_init()
    return run_trial(trial)


def run_sweep(sweep: SweepSpec, results: str, *, backend: str = "local", workers: int | None = None,
              force: bool = False, on_record: Callable[[dict, int, int], None] | None = None,
              address: str | None = None, cpus_per_trial: float = 1) -> list[dict]:
    """Run ``sweep``'s unfinished trials and return every record, in the sweep's trial order.
    ``results``: the results.jsonl path (finished trials there are skipped; a file of another
    sweep is refused unless ``force``). ``on_record(record, done, total)`` after each new one.
    ``backend``: ``"local"`` or ``"ray"``; ``address`` and ``cpus_per_trial`` are Ray's."""
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidArgumentError(f"workers must be an integer >= 1, got {workers!r}")
    if address is not None and backend != "ray":
        raise InvalidArgumentError(f"address is for backend 'ray', got backend {backend!r} with address {address!r}")
    if isinstance(cpus_per_trial, bool) or not isinstance(cpus_per_trial, (int, float)) or not cpus_per_trial > 0:
        raise InvalidArgumentError(f"cpus_per_trial must be a number > 0, got {cpus_per_trial!r}")
    if backend == "ray":
        _import_ray()  # a missing extra fails before the results file is touched
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

    failed: list[tuple[TrialSpec, BaseException]] = []

    def fail(trial, exc):
        failed.append((trial, exc))

    n = default_workers() if workers is None else workers
    if todo and backend == "ray":
        _run_ray(todo, finish, fail, address=address, workers=workers, cpus_per_trial=cpus_per_trial)
    elif todo and (n == 1 or len(todo) == 1):
        for t in todo:
            try:
                rec = run_trial(t)
            except Exception as e:  # noqa: BLE001 - recorded, the other trials go on
                fail(t, e)
            else:
                finish(rec)
    elif todo:
        saved = {k: os.environ.get(k) for k in ONE_THREAD}
        os.environ.update(ONE_THREAD)  # spawned workers inherit it before they import numba
        try:
            ctx = multiprocessing.get_context("spawn")
            pool = concurrent.futures.ProcessPoolExecutor(min(n, len(todo)), mp_context=ctx, initializer=_worker_init)
            try:
                futures = {pool.submit(run_trial, t): t for t in todo}
                for f in concurrent.futures.as_completed(futures):
                    try:
                        rec = f.result()
                    except Exception as e:  # noqa: BLE001 - recorded (a crashed worker too), the others go on
                        fail(futures[f], e)
                    else:
                        finish(rec)
            except BaseException:  # Ctrl-C: stop the workers now; the finished trials are on disk
                _stop(pool)
                raise
            pool.shutdown(wait=True)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    if failed:
        first_trial, first = failed[0]
        names = ", ".join(f"{t.id} ({t.task} {t.planner} seed {t.seed})" for t, _ in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        raise TrialsFailedError(
            f"{len(failed)} of {total} trials failed: {names}{more}; the {len(done)} finished trials are in "
            f"{results!r} and a rerun retries only the failed ones. First error: {type(first).__name__}: {first}",
            failed) from first
    return [done[t.id] for t in trials]


class TrialsFailedError(RecedeError):
    """Some trials raised; ``failures`` holds (trial, exception) pairs. The others finished and
    were recorded."""

    def __init__(self, message: str, failures):
        super().__init__(message)
        self.failures = list(failures)
