"""A one-line note while recede's Numba kernels compile cold, so a first run does not look hung.

A kernel's first call on a machine compiles it (seconds to a minute each; later runs load the
compiled code from the cache, see ``recede/_cache.py``). Numba fires a ``numba:compile`` event
around every compilation and none for a cache load, so the note appears only when something is
really being compiled: at the first compile of a recede kernel, and again if compiling resumes
after a quiet spell (a later first call, e.g. the first iLQR plan after a CEM run). Imported by
``recede/__init__.py``.

``set_compile_notice(False)`` (or ``RECEDE_COMPILE_NOTICE=0`` in the environment) turns it off;
``set_compile_notice(True, write=...)`` sends it elsewhere (the command line writes it above its
progress bar with ``tqdm.write``). ``compiling()`` says whether a compile is under way.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable

from numba.core import event as _event

NOTE = "recede: compiling Numba kernels (first run only; later runs load them from the cache)..."

# a compile that starts this long after the previous one ended gets a new note
QUIET_SECONDS = 30.0

_state = {
    "enabled": os.environ.get("RECEDE_COMPILE_NOTICE", "1").strip().lower() not in ("0", "false", "no", "off"),
    "write": None,  # None: sys.stderr at the time of writing
    "depth": 0,  # nested numba:compile events under way (callees compile inside their caller)
    "last_end": None,  # perf_counter() at the end of the last compile, None before any
    "notes": 0,
}


def set_compile_notice(enabled: bool | None = True, write: Callable[[str], None] | None = None) -> tuple:
    """Turn the compile note on or off (``None``: leave as is); ``write(line)`` receives it
    (default: stderr). Returns the previous ``(enabled, write)``, so
    ``set_compile_notice(*previous)`` restores it."""
    previous = (_state["enabled"], _state["write"])
    if enabled is not None:
        _state["enabled"] = bool(enabled)
    _state["write"] = write
    return previous


def compiling() -> bool:
    """True while a Numba compilation is under way in this process."""
    return _state["depth"] > 0


def notes_shown() -> int:
    """How many notes this process has written (for tests and callers that summarise)."""
    return _state["notes"]


def _is_recede(data) -> bool:
    func = getattr(data.get("dispatcher"), "py_func", None) if isinstance(data, dict) else None
    return (getattr(func, "__module__", "") or "").split(".")[0] == "recede"


class _Listener(_event.Listener):
    def on_start(self, ev):
        depth = _state["depth"]
        _state["depth"] = depth + 1
        if depth or not _state["enabled"] or not _is_recede(ev.data):
            return
        last = _state["last_end"]
        if last is not None and time.perf_counter() - last < QUIET_SECONDS:
            return
        _state["notes"] += 1
        write = _state["write"]
        try:
            if write is None:
                print(NOTE, file=sys.stderr, flush=True)
            else:
                write(NOTE)
        except Exception:  # a closed stream must never break a compile
            pass

    def on_end(self, ev):
        _state["depth"] = max(0, _state["depth"] - 1)
        _state["last_end"] = time.perf_counter()


_event.register("numba:compile", _Listener())
