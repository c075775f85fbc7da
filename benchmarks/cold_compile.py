"""Which Numba kernels a command compiles cold, and for how long (cumulative: a kernel's time
includes its callees compiled inside it).

Run it on an empty cache to see a first run as a new user does, e.g. the demo:

    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/cold_compile.py run cartpole-swingup --no-progress

The whole command's wall time is printed last. For before/after figures, time the same command
in two checkouts side by side on empty caches (``/usr/bin/time -f "%e s wall %U s user"``; the
user CPU time is the steadier number on a shared machine).
"""

from __future__ import annotations

import collections
import sys
import time

from numba.core import event


def main(argv: list[str]) -> int:
    counts: collections.Counter = collections.Counter()
    seconds: dict[str, float] = collections.defaultdict(float)
    started: dict[tuple, float] = {}

    class Listener(event.Listener):
        def on_start(self, ev):
            started[id(ev.data["dispatcher"]), str(ev.data["args"])] = time.perf_counter()

        def on_end(self, ev):
            d = ev.data["dispatcher"]
            t0 = started.pop((id(d), str(ev.data["args"])), None)
            name = f"{d.py_func.__module__}.{d.py_func.__qualname__}"
            counts[name] += 1
            if t0 is not None:
                seconds[name] += time.perf_counter() - t0

    event.register("numba:compile", Listener())
    t0 = time.perf_counter()
    from recede.cli import main as recede_main

    code = recede_main(argv)
    total = time.perf_counter() - t0
    print("\ncompiled (cumulative seconds, signatures, kernel):", file=sys.stderr)
    for name, secs in sorted(seconds.items(), key=lambda kv: -kv[1])[:30]:
        print(f"{secs:8.2f} s  x{counts[name]}  {name}", file=sys.stderr)
    print(f"command: {total:.1f} s wall", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
