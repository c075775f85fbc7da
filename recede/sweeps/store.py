"""``results.jsonl``: a header line naming the sweep, then one line per finished trial.

Each record is appended by one ``write`` of the whole line followed by ``fsync``, by one writer
(the sweep's parent process). A process killed in the middle of a write can leave at most one
incomplete last line; :func:`load` drops it (and truncates the file to the last complete line),
so a restarted sweep reruns only that trial."""

from __future__ import annotations

import json
import os

from recede.errors import InvalidArgumentError

FORMAT = "recede.sweep/1"


def _line(obj) -> bytes:
    return (json.dumps(obj, sort_keys=True, allow_nan=False, separators=(",", ":")) + "\n").encode()


def load(path: str, sweep, *, force: bool = False) -> dict[str, dict]:
    """The finished records in ``path`` by trial id, creating the file with ``sweep``'s header if
    it does not exist. A file of another sweep is refused unless ``force`` (then it is replaced)."""
    header = {"format": FORMAT, "sweep": sweep.id, "command": sweep.command,
              "grid": {k: list(v) for k, v in sweep.grid}, "seeds": list(sweep.seeds),
              "fixed": dict(sweep.fixed)}
    if sweep.random:
        header["random"] = dict(sweep.random)
    if os.path.exists(path):
        with open(path, "rb") as f:
            data = f.read()
        complete = data[:data.rfind(b"\n") + 1]
        lines = complete.splitlines()
        try:
            head = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            head = None
        if head is not None and head.get("format") == FORMAT and head.get("sweep") == sweep.id:
            if len(complete) != len(data):  # a write cut short by a kill: drop the partial line
                with open(path, "r+b") as f:
                    f.truncate(len(complete))
            records = {}
            for raw in lines[1:]:
                rec = json.loads(raw)
                records[rec["id"]] = rec
            return records
        if not force:
            what = f"sweep {head.get('sweep')!r}" if isinstance(head, dict) and "sweep" in head else "no sweep header"
            raise InvalidArgumentError(
                f"results file {path!r} holds {what}, not this sweep ({sweep.id!r}); pass --force to replace it")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InvalidArgumentError(f"results: the directory of {path!r} does not exist")
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(_line(header))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return {}


def append(path: str, record: dict) -> None:
    """Append ``record`` as one line, whole, and make it durable."""
    data = _line(record)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        n = os.write(fd, data)
        while n < len(data):  # a short write (rare on local files): finish the line
            n += os.write(fd, data[n:])
        os.fsync(fd)
    finally:
        os.close(fd)
