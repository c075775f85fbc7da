"""MuJoCo's warnings on stderr instead of ``MUJOCO_LOG.TXT`` in the user's directory.

By default MuJoCo appends every warning to ``MUJOCO_LOG.TXT`` in the working directory. The
command line and the sweep workers install :func:`route_warnings` instead: one line per distinct
message on stderr (the time stamp and the index of the offending DOF dropped), and nothing for
the deprecation notes about Gymnasium's own XML assets (``settotalmass``), which no user can act
on."""

from __future__ import annotations

import re
import sys
from typing import Callable

PROG = "recede"


def _key(message: str) -> str | None:
    key = " ".join(str(message).split())
    if re.match(r"compiler attribute '\w+' is deprecated", key):
        return None
    key = re.sub(r"\s*Time = [-+0-9.eE]+\.?", "", key)
    return re.sub(r"\b(DOF|dof) \d+", r"\1 #", key)


def route_warnings(*, immediate: bool = False, label: str = "") -> Callable[[], None]:
    """Install the handler and return the undo. ``immediate=False``: count each distinct message
    and print the counts when the undo runs (the command line); ``immediate=True``: print each
    distinct message the first time it comes (a sweep worker, which has no end to wait for)."""
    import mujoco

    seen: dict[str, int] = {}
    previous = mujoco.get_mju_user_warning()
    where = f" ({label})" if label else ""

    def record(message: str) -> None:  # may run on MuJoCo's rollout threads
        key = _key(message)
        if key is None:
            return
        seen[key] = seen.get(key, 0) + 1
        if immediate and seen[key] == 1:
            print(f"{PROG}: mujoco warning{where}: {key}", file=sys.stderr, flush=True)

    mujoco.set_mju_user_warning(record)

    def restore() -> None:
        mujoco.set_mju_user_warning(previous)
        if not immediate:
            for message, count in seen.items():
                times = f" ({count} times)" if count > 1 else ""
                print(f"{PROG}: mujoco warning{where}: {message}{times}", file=sys.stderr)

    return restore
