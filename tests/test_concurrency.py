"""Several processes sharing one Numba cache, and where the cache lives (see recede/_cache.py)."""

import os
import pickle
import subprocess
import sys
import threading
import time

import pytest
from numba.core import caching

import recede._cache as rc
from recede.models import linear

# A small real job: a recede model's rollout of writable and of read-only actions, two signatures of
# one cached kernel. Half the processes compile them in the other order, so two processes can record
# different signatures of one function at the same moment.
JOB = r"""
import hashlib, sys
import numpy as np
from recede.models.linear import LinearDynamics
dyn = LinearDynamics(np.array([[1.0, 0.1], [0.0, 1.0]]), np.array([[0.0], [0.1]]), dt=0.1,
                     action_low=[-1.0], action_high=[1.0])
U = np.random.default_rng(0).uniform(-1.0, 1.0, (64, 20, 1))
R = np.random.default_rng(1).uniform(-1.0, 1.0, (64, 20, 1))
x0 = np.array([1.0, 0.0])
R.setflags(write=False)  # a read-only array is another Numba type: a second signature
calls = [lambda: dyn.rollout(x0, U), lambda: dyn.rollout(x0, R)]
out = [f() for f in (calls if sys.argv[1] == "0" else calls[::-1])]
if sys.argv[1] == "1":
    out.reverse()
print(hashlib.sha256(b"".join(np.ascontiguousarray(o).tobytes() for o in out)).hexdigest())
"""


def _check_cache_consistent(cache_dir):
    """Every index entry names a data file compiled for that entry's signature."""
    checked = 0
    for root, _, files in os.walk(cache_dir):
        for f in files:
            if not f.endswith(".nbi"):
                continue
            with open(os.path.join(root, f), "rb") as fh:
                pickle.load(fh)  # numba version
                _, overloads = pickle.loads(fh.read())
            for key, data_name in overloads.items():
                with open(os.path.join(root, data_name), "rb") as fh:
                    payload = pickle.loads(fh.read())
                assert tuple(payload[3].args) == tuple(key[0]), (f, data_name, key[0])
                checked += 1
    return checked


@pytest.mark.heavy
def test_four_processes_on_a_cold_cache_agree_and_a_fifth_loads_it(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"), NUMBA_DEBUG_CACHE="1")
    env.pop("NUMBA_DISABLE_JIT", None)

    def start(order):
        return subprocess.Popen([sys.executable, str(script), order], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    procs = [start(str(i % 2)) for i in range(4)]
    runs = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    for out, err, rc_ in runs:
        assert rc_ == 0, err[-2000:]
    hashes = [out.strip().splitlines()[-1] for out, _, _ in runs]
    assert len(set(hashes)) == 1, hashes
    assert _check_cache_consistent(tmp_path / "numba") >= 2

    fifth = start("1")
    out, err = fifth.communicate(timeout=600)
    assert fifth.returncode == 0, err[-2000:]
    lines = out.strip().splitlines()
    assert lines[-1] == hashes[0]
    assert any("data loaded" in line and "_linear_rollout" in line for line in lines)
    assert not any("data saved" in line for line in lines), "the fifth run compiled again"


def test_concurrent_saves_of_different_signatures_keep_index_and_data_matched(tmp_path):
    """Force the interleaving that breaks Numba's unlocked save: both writers read the empty
    index, B's index lands last, A's data lands last. Numba's own save then leaves an index that
    names A's code for B's signature; recede's locked save does not."""

    def race(save, where):
        files = [caching.IndexDataCacheFile(str(where), "f-1.py311", "stamp") for _ in "AB"]
        delays = {"A": (0.3, 1.2), "B": (0.6, 0.0)}  # (before index write, before data write)
        barrier = threading.Barrier(2)

        def writer(name, cache_file):
            index_delay, data_delay = delays[name]
            save_index, save_data = cache_file._save_index, cache_file._save_data
            cache_file._save_index = lambda o: (time.sleep(index_delay), save_index(o))
            cache_file._save_data = lambda n, d: (time.sleep(data_delay), save_data(n, d))
            barrier.wait()
            save(cache_file, ("sig", name), f"code for {name}")

        threads = [threading.Thread(target=writer, args=(n, f)) for n, f in zip("AB", files)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        fresh = caching.IndexDataCacheFile(str(where), "f-1.py311", "stamp")
        return {n: fresh.load(("sig", n)) for n in "AB"}

    (tmp_path / "numba").mkdir()
    (tmp_path / "recede").mkdir()
    broken = race(rc._numba_save, tmp_path / "numba")
    assert broken["B"] == "code for A", f"the schedule no longer breaks Numba's save: {broken}"
    assert race(rc._locked_save, tmp_path / "recede") == {"A": "code for A", "B": "code for B"}


def test_recede_kernels_fall_back_to_a_per_version_user_directory(tmp_path, monkeypatch):
    """NUMBA_CACHE_DIR unset and the package's __pycache__ not writable: recede's directory,
    named by recede's and Python's versions; other libraries keep Numba's own rules."""
    monkeypatch.setattr(caching.config, "CACHE_DIR", "")
    monkeypatch.setattr(caching.config, "CACHE_LOCATOR_CLASSES", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    real_user_cache_dir = rc.user_cache_dir
    real_user_cache_dir.cache_clear()
    monkeypatch.setattr(rc._InTree, "from_function", classmethod(lambda cls, f, p: None))
    try:
        impl = caching.CompileResultCacheImpl(linear._linear_rollout.py_func)
        assert type(impl.locator) is rc.RecedeUserCacheLocator
        path = impl.locator.get_cache_path()
        version = f"py{sys.version_info[0]}{sys.version_info[1]}"
        assert path.startswith(os.path.join(str(tmp_path), "recede", "numba-"))
        assert path.split(os.sep)[-2].endswith(version)
        assert os.path.isdir(path)

        def elsewhere(x):  # a function outside recede: Numba's user-wide rule, not ours
            return x

        other = caching.CompileResultCacheImpl(elsewhere)
        assert type(other.locator) is not rc.RecedeUserCacheLocator

        monkeypatch.setenv("XDG_CACHE_HOME", "/proc/not-writable")  # Numba's rule reads it too
        real_user_cache_dir.cache_clear()
        impl = caching.CompileResultCacheImpl(linear._linear_rollout.py_func)
        assert type(impl.locator) is rc.RecedeTempCacheLocator  # nothing writable: a temp dir
    finally:
        real_user_cache_dir.cache_clear()
