"""Small helpers every layer uses, kept once (nanochat keeps its in one `common.py`): the digest
of a JSON value, JSON files read and written whole, and the worker count of this machine.

A core module: it imports no stage.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_RAISE = object()


def json_sha256(obj: Any, default=None) -> str:
    """SHA-256 of `obj` as JSON with sorted keys: the same value gives the same digest whatever
    the order its dicts were built in (the key of fingerprints and caches). `default` as in
    `json.dumps`, for values JSON has no type for."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=default).encode()).hexdigest()


def read_json(path: Path, default: Any = _RAISE) -> Any:
    """The JSON value in `path`. With a `default`, a missing or unreadable file (a cache or a
    progress marker, whose loss only costs work) gives it instead of an error."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        if default is _RAISE:
            raise
        return default


def write_json(path: Path, obj: Any, **dumps) -> Path:
    """Write `obj` as JSON, atomically (a reader or a resumed run sees the old file or the new
    one); `dumps` are `json.dumps`'s options (indent, sort_keys, ensure_ascii, default)."""
    from soberan.documents import write_text_atomic

    return write_text_atomic(path, json.dumps(obj, **dumps))


def cpu_workers(n: int = 0) -> int:
    """`n` when set, else the CPU cores this process may run on (its affinity, which a container
    or `taskset` narrows; `os.cpu_count` counts the whole machine)."""
    if n:
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1
