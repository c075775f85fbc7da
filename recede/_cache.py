"""Where recede's Numba kernels (``cache=True``) keep their compiled code, and how several
processes share it. Imported by ``recede/__init__.py`` before any kernel is defined.

Where: the first of these that can be written to.

1. ``$NUMBA_CACHE_DIR``, when set (Numba's own rule; CI and users choose it).
2. The package's own ``__pycache__`` (Numba's default): a checkout, an editable install, a venv
   the user owns.
3. ``$XDG_CACHE_HOME/recede/numba-<recede version>-py<major><minor>`` (``~/.cache`` when
   ``XDG_CACHE_HOME`` is unset): an install whose site-packages the user cannot write to. One
   directory per recede version, so an upgrade never loads code compiled from older sources:
   Numba checks each kernel's own source file only, so a kernel whose callee in another file
   changed would otherwise be reused. (Numba alone would fall back to
   ``~/.cache/numba/<dir>_<hash of the path>``, the same for every version installed there.)
4. A private temporary directory removed at exit: nothing above is writable, so each start
   compiles again (Numba alone would refuse to import recede: "no locator available").

Several processes: Numba writes every index and data file to a temporary name and renames it
into place, so no reader sees half a file. But it records a new compiled signature by reading the
function's index, picking the first free data file number, writing the index, then the data,
with no lock: two processes adding different signatures of one function at once can both pick
``.1.nbc``, and the index of one can end up naming the other's machine code, which is loaded the
next time without a check (a crash, or wrong results). We hold an exclusive ``flock`` on the
cache directory for that read-modify-write and write the data before the index, so an index only
ever names data that is already complete. This applies to every Numba cache in the process, and
changes only the order and the locking of the writes.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import os
import shutil
import sys
import tempfile

from numba.core import caching as _caching

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


@functools.lru_cache(maxsize=None)
def user_cache_dir() -> str:
    """The per-user, per-version directory used when the installed package is read-only."""
    try:
        from importlib.metadata import version

        recede_version = version("recede")
    except Exception:  # not installed as a distribution (a bare checkout on sys.path)
        recede_version = "unknown"
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    py = f"py{sys.version_info[0]}{sys.version_info[1]}"
    return os.path.join(base, "recede", f"numba-{recede_version}-{py}")


@functools.lru_cache(maxsize=None)
def _private_temp_dir() -> str:
    path = tempfile.mkdtemp(prefix="recede-numba-")  # mode 0700, a fresh name
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _ours(py_file: str) -> bool:
    try:
        return os.path.commonpath([os.path.abspath(py_file), _PACKAGE_DIR]) == _PACKAGE_DIR
    except ValueError:  # different drives
        return False


# Numba 0.59 to 0.6x named these with a leading underscore.
_UserWide = getattr(_caching, "UserWideCacheLocator", None) or _caching._UserWideCacheLocator
_InTree = getattr(_caching, "InTreeCacheLocator", None) or _caching._InTreeCacheLocator


class RecedeUserCacheLocator(_UserWide):
    """Rule 3: recede's own files, cached per user and per recede version."""

    def _root(self) -> str:
        return user_cache_dir()

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = os.path.join(self._root(), self.get_suitable_cache_subpath(py_file))

    @classmethod
    def from_function(cls, py_func, py_file):
        if not _ours(py_file):
            return None
        return super().from_function(py_func, py_file)


class RecedeTempCacheLocator(RecedeUserCacheLocator):
    """Rule 4: nothing writable; a private directory that lives as long as the process."""

    def _root(self) -> str:
        return _private_temp_dir()


def _install_locators() -> None:
    classes = list(_caching.CacheImpl._locator_classes)
    if RecedeUserCacheLocator in classes:
        return
    at = classes.index(_InTree) + 1 if _InTree in classes else len(classes)
    classes[at:at] = [RecedeUserCacheLocator]
    classes.append(RecedeTempCacheLocator)
    _caching.CacheImpl._locator_classes = classes


@contextlib.contextmanager
def _directory_lock(path: str):
    try:
        import fcntl
    except ImportError:  # not POSIX: Numba's own behaviour
        yield
        return
    try:
        fd = os.open(os.path.join(path, ".recede-numba.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # the write that follows fails the same way, as Numba's would
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _locked_save(self, key, data):
    """``IndexDataCacheFile.save``, under a directory lock and with the data written first."""
    with _directory_lock(self._cache_path):
        overloads = self._load_index()
        data_name = overloads.get(key)
        if data_name is not None:  # same signature again: replace its data in place (atomic)
            self._save_data(data_name, data)
            return
        existing = set(overloads.values())
        data_name = next(
            name for name in map(self._data_name, itertools.count(1)) if name not in existing
        )
        self._save_data(data_name, data)
        overloads[key] = data_name
        self._save_index(overloads)


_numba_save = _caching.IndexDataCacheFile.save  # kept for tests/test_concurrency.py


def _install_lock() -> None:
    cls = _caching.IndexDataCacheFile
    if getattr(cls.save, "__name__", "") == "_locked_save":
        return
    if all(hasattr(cls, n) for n in ("_load_index", "_save_index", "_save_data", "_data_name")):
        cls.save = _locked_save


_install_locators()
_install_lock()
