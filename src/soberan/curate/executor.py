"""Where the per-shard work runs. Steps know nothing of this layer (datatrove's split between
pipeline and executor): the same `ShardTask`s go to a local process pool or to Ray Data, and give
the same files, because each task writes its own outputs from its own inputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict

from soberan.common import cpu_workers
from soberan.curate.shard import ShardTask, run_shard, run_shard_in_worker


class LocalExecutor:
    """A process pool kept for the whole run (workers load the benchmark index once, not once
    per pass; lid.176 and the segmenters of `langs` come preloaded from the forkserver), or the
    calling process when one worker is asked for."""

    def __init__(self, workers: int, langs: Sequence[str] = ()):
        self.workers = workers
        self.langs = tuple(langs)
        self._pool = None

    def run(self, tasks: Sequence[ShardTask], on_done: Callable[[dict], None]) -> list[dict]:
        out: list[dict] = []
        if self.workers <= 1:
            for t in tasks:
                out.append(run_shard(t))
                on_done(out[-1])
            return out
        from concurrent.futures import as_completed

        # largest shards first, so that no worker starts a long one when the others are done
        order = sorted(tasks, key=lambda t: -os.path.getsize(t.input))
        futures = [self._get_pool().submit(run_shard_in_worker, t) for t in order]
        for f in as_completed(futures):
            out.append(f.result())
            on_done(out[-1])
        return out

    def _get_pool(self):
        if self._pool is None:
            from soberan.curate.preload import PRELOAD_ENV
            from soberan.pool import process_pool

            # The forkserver imports the steps and warms the models once (soberan.curate.preload);
            # it learns the languages from the environment, since it takes module names only.
            os.environ[PRELOAD_ENV] = ",".join(self.langs)
            self._pool = process_pool(self.workers, ["soberan.curate.shard", "soberan.curate.dedup",
                                                     "soberan.curate.preload"])
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _ray_row(row: dict) -> dict:
    import json

    counts = run_shard_in_worker(ShardTask(**{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in json.loads(row["task"]).items()}))
    return {"counts": json.dumps(counts, ensure_ascii=False)}


class RayExecutor:
    """Ray Data: one row per shard task, mapped with one CPU each. With `address` it joins that
    cluster (the workspace must be on storage every node sees); without, it starts a local Ray,
    and shuts down only what it started."""

    def __init__(self, workers: int, address: str | None):
        import ray

        self.started = False
        if not ray.is_initialized():
            kwargs = {"address": address} if address else {"num_cpus": max(workers, 1)}
            ray.init(include_dashboard=False, ignore_reinit_error=True, log_to_driver=False,
                     configure_logging=False, **kwargs)
            self.started = True
        ray.data.DataContext.get_current().enable_progress_bars = False

    def run(self, tasks: Sequence[ShardTask], on_done: Callable[[dict], None]) -> list[dict]:
        import json

        import ray

        items = [{"task": json.dumps(asdict(t), ensure_ascii=False)} for t in tasks]
        ds = ray.data.from_items(items, override_num_blocks=max(len(items), 1))
        out = []
        for row in ds.map(_ray_row, num_cpus=1).iter_rows():
            out.append(json.loads(row["counts"]))
            on_done(out[-1])
        return out

    def close(self) -> None:
        if self.started:
            import ray

            ray.shutdown()


@contextmanager
def executor(kind: str = "local", workers: int = 0, ray_address: str | None = None,
             langs: Sequence[str] = ()) -> Iterator:
    """The executor for one run: `.run(tasks, on_done)` as many times as there are passes.
    `langs`: the languages whose segmenters the local pool's workers should start with."""
    workers = cpu_workers(workers)
    if kind == "local":
        ex = LocalExecutor(workers, langs)
    elif kind == "ray":
        ex = RayExecutor(workers, ray_address)
    else:
        raise ValueError(f"unknown executor {kind!r} (local or ray)")
    try:
        yield ex
    finally:
        ex.close()
