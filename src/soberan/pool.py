"""The process pool that collect (conversions) and curate (shards) run their per-item work on.

Workers fork from a forkserver (Linux), never from the stage's own process: that process runs a
progress-display thread and may hold DuckDB threads, and forking a threaded process can copy a
lock mid-use. The forkserver imports the modules named in `preload` once, and every worker starts
from it with them loaded. Where there is no forkserver (Windows) workers are spawned.

A run killed with SIGKILL takes its forkserver with it, and the forkserver its workers
(`die_with_parent`), instead of leaving them idle, each holding what it had loaded.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor


def die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (prctl PR_SET_PDEATHSIG). Run in
    each pool worker, and in the forkserver by importing `soberan.forkserver`. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def process_pool(workers: int, preload: Sequence[str] = ()) -> ProcessPoolExecutor:
    """A pool of `workers` processes. The forkserver starts once per process, with the `preload`
    of the first pool that starts it; a later pool's list only matters if the server died."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["soberan.forkserver", *preload])
    else:
        ctx = mp.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=die_with_parent)
