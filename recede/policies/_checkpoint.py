"""The checkpoint directory shared by policies and values: a safetensors file of weights and a
JSON file that describes them (with the weights' SHA-256), written atomically, read with checks
that name the file and the problem."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence

from recede._io import atomic_directory
from recede.errors import InvalidArgumentError


def write_checkpoint(path: str, weights: str, meta: str, blob: bytes, info: dict) -> None:
    """Write ``blob`` as ``path/weights`` and ``info`` (plus the blob's ``weights_sha256``) as
    ``path/meta``; a reader sees the old directory or the new one."""
    info = {**info, "weights_sha256": hashlib.sha256(blob).hexdigest()}
    with atomic_directory(path, "path") as tmp:
        with open(os.path.join(tmp, weights), "wb") as f:
            f.write(blob)
        with open(os.path.join(tmp, meta), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2, allow_nan=False)
            f.write("\n")


def read_info(path: str, what: str, weights: str, meta: str, fmt: str,
              required: Sequence[str]) -> tuple[dict, str, str]:
    """``(info, meta path, weights path)`` of the ``what`` checkpoint at ``path``, refusing a
    missing directory or file, invalid JSON, another format and missing keys."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise InvalidArgumentError(f"{what} checkpoint {path!r} is not a directory")
    mpath, wpath = os.path.join(path, meta), os.path.join(path, weights)
    for p in (mpath, wpath):
        if not os.path.isfile(p):
            raise InvalidArgumentError(f"{what} checkpoint {path!r} has no {os.path.basename(p)}")
    try:
        with open(mpath, encoding="utf-8") as f:
            info = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidArgumentError(f"{mpath}: not valid JSON ({e})") from None
    if not isinstance(info, dict) or info.get("format") != fmt:
        got = info.get("format") if isinstance(info, dict) else type(info).__name__
        raise InvalidArgumentError(f"{mpath}: format must be {fmt!r}, got {got!r}")
    missing = [k for k in (*required, "weights_sha256") if k not in info]
    if missing:
        raise InvalidArgumentError(f"{mpath}: missing keys {missing}")
    return info, mpath, wpath


def read_weights(wpath: str, info: dict, meta: str) -> bytes:
    """The weights file's bytes, refused when their SHA-256 is not the one ``info`` records."""
    with open(wpath, "rb") as f:
        blob = f.read()
    if hashlib.sha256(blob).hexdigest() != info["weights_sha256"]:
        raise InvalidArgumentError(f"{wpath}: checksum does not match {meta} (corrupted or from "
                                   f"another checkpoint)")
    return blob
