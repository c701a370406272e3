"""One unit of work: one shard through one pass of the pipeline.

A pass reads a shard batch by batch, drops what the corpus-wide steps resolved before it, runs its
per-document steps, prepares what the next corpus-wide steps need (content hashes, MinHash band
keys), and writes its output shard, decisions and counts. Every file is written atomically and a
done-marker (holding the counts) comes last, so a killed pass is simply run again for the shards
without a marker and gives the same files.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from soberan.common import write_json
from soberan.curate.steps import (DOC_STEPS, EXTRA_FIELDS, Context, DocFilter, decisions_table, run_filter,
                                  set_column)
from soberan.documents import temp_path, write_parquet_atomic


@dataclass(frozen=True)
class ShardTask:
    ws_root: str
    work: str  # the run's work folder
    pass_no: int
    shard: int
    input: str
    output: str
    apply: tuple[str, ...] = ()  # corpus-wide steps resolved by the previous pass: drop their rows
    steps: tuple[str, ...] = ()  # per-document steps
    prepare: tuple[str, ...] = ()  # corpus-wide steps resolved after this pass
    final: bool = False  # writes curated/ and one "kept" decision per document

    @property
    def name(self) -> str:
        return f"part-{self.shard:05d}"

    @property
    def pass_dir(self) -> Path:
        return Path(self.work) / f"pass{self.pass_no}"

    @property
    def marker(self) -> Path:
        return self.pass_dir / "done" / f"{self.name}.json"


_CONTEXTS: dict[tuple[str, str], Context] = {}


def context(ws_root: str, work: str) -> Context:
    """One Context per worker process (the lid.176 model, Kiwi, benchmark index load once), and
    per run: the run's fingerprint (input and config) is in the key, so a process that curates
    again after a config change does not decide with the old thresholds."""
    run = Path(work) / "RUN"
    key = (ws_root, work, run.read_text() if run.exists() else "")
    if key not in _CONTEXTS:
        _CONTEXTS[key] = Context(Path(ws_root), Path(work))
    return _CONTEXTS[key]


def with_extra_columns(table: pa.Table) -> pa.Table:
    for f in EXTRA_FIELDS:
        if f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    return table


class Tally:
    """Counts per (step, source, lang, action, rule): what each step saw, kept, dropped,
    redacted, without the step being asked."""

    def __init__(self):
        self.c: Counter = Counter()

    def groups(self, step: str, table: pa.Table, action: str) -> None:
        if table.num_rows == 0:
            return
        g = table.select(["source", "lang"]).group_by(["source", "lang"]).aggregate([([], "count_all")])
        for s, l, n in zip(g.column("source").to_pylist(), g.column("lang").to_pylist(),
                           g.column("count_all").to_pylist()):
            self.c[(step, s, l, action, "")] += n

    def decisions(self, dec: pa.Table) -> None:
        for row in dec.select(["step", "source", "lang", "action", "rule"]).to_pylist():
            self.c[(row["step"], row["source"], row["lang"], row["action"], row["rule"])] += 1

    def rows(self) -> list[list]:
        return [[*k, v] for k, v in sorted(self.c.items(), key=lambda kv: tuple(map(str, kv[0])))]


def _prev_resolved(task: ShardTask, what: str) -> pa.Table | None:
    folder = Path(task.work) / f"pass{task.pass_no - 1}" / what / f"shard={task.shard}"
    files = sorted(folder.glob("*.parquet")) if folder.exists() else []
    return ds.dataset([str(f) for f in files], format="parquet").to_table() if files else None


def run_shard(task: ShardTask) -> dict:
    """Run one shard through one pass; returns the counts (also saved in the done-marker)."""
    from soberan.curate.dedup import index_table, signature_table
    from soberan.curate.minhash import MinHashParams
    from soberan.curate.signals import ShardSignals, signals_root

    t0 = time.perf_counter()
    ctx = context(task.ws_root, task.work)
    cur = ctx.cur
    ctx.signals = store = ShardSignals(signals_root(Path(task.ws_root)) / f"pass{task.pass_no}"
                                       / f"{task.name}.parquet")
    tally = Tally()
    decisions: dict[str, list[pa.Table]] = {}
    filters = {step: DOC_STEPS[step](ctx.cfg) for step in task.steps}
    drops = {s: _prev_resolved(task, f"drops/{s}") for s in task.apply}
    dups = _prev_resolved(task, "dups") if task.apply else None
    params = MinHashParams(**cur.fuzzy_dedup.model_dump())
    index_parts, sig_parts = [], []
    out = Path(task.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out)
    writer = None
    in_row = out_row = 0
    try:
        for batch in _batches(task.input, cur.batch_size):
            table = with_extra_columns(pa.Table.from_batches([batch]))
            rows = np.arange(in_row, in_row + table.num_rows, dtype=np.int64)
            in_row += table.num_rows
            ctx.new_batch()
            for step in task.apply:
                table, rows = _apply_drops(table, rows, step, drops[step], tally, decisions)
            if dups is not None:
                table = _apply_dups(table, rows, dups)
            for step, f in filters.items():
                table = run_step(step, f, table, ctx, tally, decisions)
            if task.final:
                table = set_column(table, "dup_cluster", pc.coalesce(table.column("dup_cluster"),
                                                                     table.column("id")))
                table = set_column(table, "dup_cluster_size",
                                   table.column("dup_cluster_size").fill_null(1), pa.int32())
                kept = decisions_table(table, [(i, "kept", "", "passed every step")
                                               for i in range(table.num_rows)], "output")
                decisions.setdefault("kept", []).append(kept)
                tally.groups("output", table, "seen")
                tally.groups("output", table, "kept")
            if task.prepare and table.num_rows:
                index_parts.append(index_table(table, task.shard, out_row, "exact_dedup" in task.prepare))
                if "fuzzy_dedup" in task.prepare:
                    sig_parts.append(signature_table(table, lambda t, l: ctx.pack(l).words(t),
                                                     task.shard, out_row, params, store))
            out_row += table.num_rows
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(table.cast(writer.schema) if table.schema != writer.schema else table)
        if writer is None:  # an empty input shard still gives an (empty) output shard
            schema = with_extra_columns(pq.read_schema(task.input).empty_table()).schema
            writer = pq.ParquetWriter(tmp, schema, compression="zstd")
        writer.close()
        writer = None
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)

    for step, parts in decisions.items():
        t = pa.concat_tables(parts)
        if t.num_rows:
            ctx.ws.ledger.write_decisions("curate", f"{task.name}.{step}", t.drop_columns(["lang"]))
    _write_prepared(task, index_parts, sig_parts, params.bands)
    if store.rows:
        store.write()
    else:
        store.path.unlink(missing_ok=True)  # nothing measured in this pass (a copy, a drop-only pass)
    ctx.signals = None
    counts = {"task": asdict(task), "rows_in": in_row, "rows_out": out_row, "tally": tally.rows(),
              "signals": {"measured": store.measured, "reused": store.reused,
                          "decontam_measured": store.measured_decontam, "lid_measured": store.measured_lid},
              "seconds": round(time.perf_counter() - t0, 3), "pid": os.getpid()}
    write_json(task.marker, counts, ensure_ascii=False)
    return counts


def run_shard_in_worker(task: ShardTask) -> dict:
    """`run_shard` in a pool's worker process, which then gives back what the shard freed."""
    counts = run_shard(task)
    release_memory()
    return counts


def release_memory() -> None:
    """Give back what a shard freed. The pool's workers outlive their shards (they wait through
    DuckDB's corpus-wide steps in the parent), and Arrow's allocator and glibc keep freed pages:
    at 1M documents two idle workers held 330 MB each (benchmarks/dedup_scale.py). Not for the
    calling process: a full collection of its larger heap took a 1 s rerun to 2 s (py-spy)."""
    import ctypes
    import gc

    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def run_step(step: str, f: DocFilter, table: pa.Table, ctx: Context, tally: Tally,
             decisions: dict[str, list[pa.Table]]) -> pa.Table:
    """One per-document step over one batch: the filter decides, and this counts what the step
    saw and kept, by source and language, and its decision rows by rule (the filter is never
    asked); returns the rows kept."""
    o = run_filter(f, table, ctx)
    tally.groups(step, o.table, "seen")  # after the step: langid's verdict is the language
    dec = decisions_table(o.table, o.decisions, step)
    tally.decisions(dec)
    decisions.setdefault(step, []).append(dec)
    kept = o.kept
    tally.groups(step, kept, "kept")
    return kept


def _batches(path: str, batch_size: int):
    """The shard's record batches; a page that cannot be read names the shard (the shards done
    before it keep their done-markers, so a run after the repair resumes)."""
    from soberan.documents import CorpusError

    it = pq.ParquetFile(path).iter_batches(batch_size=batch_size)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as e:
            raise CorpusError(f"{path}: unreadable data inside the shard ({e}); run "
                              "`soberan ledger verify` to see what changed since it was written") from None
        yield batch


def _apply_drops(table, rows, step, drops, tally, decisions):
    tally.groups(step, table, "seen")
    if drops is not None and table.num_rows:
        hit = np.isin(rows, drops.column("row").to_numpy())
        if hit.any():
            d = drops.filter(pa.array(np.isin(drops.column("row").to_numpy(), rows[hit])))
            order = {r: i for i, r in enumerate(d.column("row").to_pylist())}
            rule, reason = d.column("rule").to_pylist(), d.column("reason").to_pylist()
            marks = [(int(i), "dropped", rule[order[int(r)]], reason[order[int(r)]])
                     for i, r in zip(np.flatnonzero(hit), rows[hit])]
            dec = decisions_table(table, marks, step)
            tally.decisions(dec)
            decisions.setdefault(step, []).append(dec)
            table, rows = table.filter(pa.array(~hit)), rows[~hit]
    tally.groups(step, table, "kept")
    return table, rows


def _apply_dups(table, rows, dups):
    hit = np.isin(rows, dups.column("row").to_numpy())
    if not hit.any():
        return table
    lookup = {r: (c, s) for r, c, s in zip(dups.column("row").to_pylist(),
                                          dups.column("dup_cluster").to_pylist(),
                                          dups.column("dup_cluster_size").to_pylist())}
    cl, sz = table.column("dup_cluster").to_pylist(), table.column("dup_cluster_size").to_pylist()
    for i in np.flatnonzero(hit):
        cl[i], sz[i] = lookup[int(rows[i])]
    table = set_column(table, "dup_cluster", cl, pa.string())
    return set_column(table, "dup_cluster_size", sz, pa.int32())


def _write_prepared(task: ShardTask, index_parts, sig_parts, bands: int) -> None:
    if "exact_dedup" in task.prepare or "fuzzy_dedup" in task.prepare:
        path = task.pass_dir / "index" / f"{task.name}.parquet"
        if index_parts:
            write_parquet_atomic(pa.concat_tables(index_parts), path)
        else:
            path.unlink(missing_ok=True)
    if "fuzzy_dedup" in task.prepare:
        sig = pa.concat_tables(sig_parts) if sig_parts else None
        band = sig.column("band").to_numpy() if sig is not None else None
        for b in range(bands):
            path = task.pass_dir / "minhash" / f"band={b:03d}" / f"{task.name}.parquet"
            if sig is None:
                path.unlink(missing_ok=True)
                continue
            part = sig.filter(pa.array(band == b)).select(["doc", "key"])
            write_parquet_atomic(part, path)
