"""Files that appear whole or not at all: write to a temporary name beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from typing import Iterator

from recede.errors import InvalidArgumentError


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) off while the block runs and raise the ``KeyboardInterrupt`` after
    it, for steps that must happen all or not at all (swapping a checkpoint into place, updating
    a snapshot and its bookkeeping together). Only in the main thread, and only while Python's
    default SIGINT handler is installed; otherwise the block runs as is."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if caught:
        raise KeyboardInterrupt


@contextlib.contextmanager
def atomic_file(path: str, name: str = "path") -> Iterator[str]:
    """Yield a temporary file name next to ``path``; on success rename it over ``path``, on any
    error remove it (``path`` is then untouched). ``name`` is the argument named in errors."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InvalidArgumentError(f"{name} must be a file path, got the directory {path!r}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InvalidArgumentError(f"{name}: the directory of {path!r} does not exist")
    tmp = None
    try:
        with deferred_interrupt():  # a Ctrl-C between creating it and the try would leave it behind
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
            os.close(fd)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode open() would
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path: str, name: str = "path") -> Iterator[str]:
    """Yield a temporary directory next to ``path``; on success it replaces ``path`` (an existing
    directory there is swapped out and removed only after the new one is in place)."""
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise InvalidArgumentError(f"{name} must be a directory path, got the file {path!r}")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise InvalidArgumentError(f"{name}: the directory of {path!r} does not exist")
    tmp = None
    try:
        with deferred_interrupt():  # as in atomic_file: the directory is created and owned at once
            tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
            os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        old = None
        with deferred_interrupt():  # a Ctrl-C between the two renames would leave no checkpoint
            if os.path.exists(path):
                old = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".old")
                os.rmdir(old)
                os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                if old is not None:
                    os.replace(old, path)  # put the previous one back
                raise
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
