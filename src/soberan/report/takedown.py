"""`soberan takedown`: remove a source, a URL pattern or one document from every artifact that holds it.

A request does three things, all recorded in the ledger:

1. it writes the request to `ledger/takedowns.parquet` and the documents it resolves to, found by
   DuckDB over the collected and curated shards, to `ledger/takedown_docs.parquet`;
2. it lists every artifact that holds one of those documents (any Parquet file with an `id` or
   `doc_id` column: raw and curated shards, tokenizer training input, packed training data,
   held-out sets) and, through the artifacts' recorded `inputs`, every artifact made from one
   (tokenizer, checkpoints, evaluation results);
3. it marks them stale with one `stale` event each, so the next `soberan build` rebuilds them.

The lists and the stale marks are read back by `soberan.takedown`, the core module every stage
honours (collect filters with its `takedown_mask`); this module, beside the report that shows
each request, writes them. Nothing here deletes data: the build does, when it rebuilds a stale
stage.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from soberan import stages
from soberan.documents import file_sha256, shard_paths, write_parquet_atomic
from soberan.takedown import DOC_SCHEMA, DOCS, REQUEST_SCHEMA, REQUESTS, glob_to_like, read_list
from soberan.workspace import Workspace


# --- finding what holds the documents ---------------------------------------------------------

@dataclass
class Affected:
    """One artifact (or unrecorded file) a take-down reaches."""

    path: str
    stage: str
    kind: str
    record: str | None  # hash of the artifact record, None for a file no record names
    docs: int = 0  # affected documents it holds itself
    derived_from: list[str] = field(default_factory=list)  # affected artifacts it was made from


@dataclass
class TakedownResult:
    takedown: str
    by: str
    value: str
    reason: str
    docs: int
    by_source: dict[str, int]
    affected: list[Affected]


def _id_column(path: Path) -> str | None:
    try:
        names = pq.read_schema(path).names
    except Exception:  # not a Parquet file we can read: it holds no rows we could match
        return None
    for c in ("id", "doc_id"):
        if c in names:
            return c
    return None


def _q(path: Path) -> str:
    return path.as_posix().replace("'", "''")


def resolve_docs(ws: Workspace, by: str, value: str) -> pa.Table:
    """The documents a request names, from the collected and curated shards (and, for a document
    id, wherever it is). Columns: doc_id, source, url, chars."""
    import duckdb

    con = duckdb.connect()
    where = {"source": "source = ?", "url": "url LIKE ? ESCAPE '\\'", "doc": "id = ?"}[by]
    arg = glob_to_like(value) if by == "url" else value
    parts = []
    for stage in ("collect", "curate"):
        files = [p for p in shard_paths(ws.stage_dir(stage)) if _id_column(p) == "id"]
        if files:
            lst = ", ".join(f"'{_q(p)}'" for p in files)
            parts.append(f"SELECT id AS doc_id, source, url, length(text)::BIGINT AS chars "
                         f"FROM read_parquet([{lst}], union_by_name=true) WHERE {where}")
    if not parts:
        return DOC_SCHEMA.empty_table().drop(["takedown"])
    sql = " UNION ALL ".join(parts)
    return con.sql(f"SELECT doc_id, any_value(source) AS source, any_value(url) AS url, "
                   f"max(chars) AS chars FROM ({sql}) GROUP BY doc_id ORDER BY doc_id",
                   params=[arg] * len(parts)).to_arrow_table()


# Scratch folders under work/ that outlive a stage's own work/<stage>/ (curate's stored signals
# are reused across resets, keyed by content hash), and the stage that rewrites them.
SCRATCH_OWNERS = {"signals": "curate"}


def _owner_stage(ws: Workspace, rel: str) -> str:
    parts = rel.split("/")
    if parts[0] == "work" and len(parts) > 1:  # a stage's scratch space, work/<stage>/
        return SCRATCH_OWNERS.get(parts[1], parts[1])
    for stage, folder in stages.folders().items():
        if folder == parts[0]:
            return stage
    return "?"


def find_affected(ws: Workspace, ids: set[str]) -> list[Affected]:
    """Every current artifact that holds one of `ids`, or was made from one that does.

    Holding is answered by DuckDB over each Parquet file with an `id`/`doc_id` column under the
    stage folders, the report's token cache and the stages' scratch space (work/); made-from follows the `inputs` each artifact record lists. A stage any of
    whose artifacts is affected is affected whole: its rebuild replaces all of them."""
    import duckdb

    if not ids:
        return []
    led = ws.ledger
    current = led.artifacts()
    con = duckdb.connect()
    con.register("affected_ids", pa.table({"doc_id": sorted(ids)}))
    hits: dict[str, set[str]] = {}  # file (workspace-relative) -> the affected ids it holds
    folders = [ws.stage_dir(stage) for stage in (*stages.build_order(), "report")] + [ws.root / "work"]
    for folder in folders:
        for f in shard_paths(folder):
            col = _id_column(f)
            if col is None:
                continue
            found = con.execute(f"SELECT DISTINCT {col} FROM read_parquet('{_q(f)}') "
                                f"WHERE {col} IN (SELECT doc_id FROM affected_ids)").fetchall()
            if found:
                hits[led.rel(f)] = {r[0] for r in found}

    out: dict[str, Affected] = {}
    for art in current:
        p = art["path"]
        held = set().union(*[ids for f, ids in hits.items() if f == p or f.startswith(p.rstrip("/") + "/")])
        if held:
            out[p] = Affected(p, art["stage"], art["kind"], art["hash"], docs=len(held))
    covered = set(out)
    for f, ids in hits.items():
        if not any(f == p or f.startswith(p.rstrip("/") + "/") for p in covered):
            out[f] = Affected(f, _owner_stage(ws, f), "unrecorded file", None, docs=len(ids))

    # Made-from, in ledger order (an artifact's inputs are always older than it), plus whole stages.
    by_hash = {r["hash"]: r for r in led.records("artifact")}
    affected_stages = {a.stage for a in out.values()}
    for art in sorted(current, key=lambda r: r["seq"]):
        if art["path"] in out:
            continue
        srcs = sorted({by_hash[h]["path"] for h in art.get("inputs", []) if h in by_hash
                       and by_hash[h]["path"] in out})
        if srcs or art["stage"] in affected_stages:
            out[art["path"]] = Affected(art["path"], art["stage"], art["kind"], art["hash"],
                                        derived_from=srcs or [f"(stage {art['stage']} is rebuilt)"])
            affected_stages.add(art["stage"])
    order = {s: i for i, s in enumerate(stages.build_order())}
    return sorted(out.values(), key=lambda a: (order.get(a.stage, 99), a.path))


# --- the request ------------------------------------------------------------------------------

def _append(path: Path, rows: pa.Table, schema: pa.Schema) -> None:
    old = read_list(path, schema)
    write_parquet_atomic(pa.concat_tables([old, rows.cast(schema)]), path)


def request_takedown(ws: Workspace, *, by: str, value: str, reason: str) -> TakedownResult:
    """Record a take-down request, resolve it to documents, mark every artifact holding them
    stale. `by` is "source", "url" (a glob) or "doc" (a document id)."""
    if by not in ("source", "url", "doc"):
        raise ValueError(f"take-down by {by!r}: use source, url or doc")
    if not reason.strip():
        raise ValueError("a take-down needs a reason (--reason), which the ledger keeps")
    if by == "source" and value not in {s.name for s in ws.config.sources}:
        known = {r["source"] for r in resolve_docs(ws, "source", value).to_pylist()}
        if not known:
            raise ValueError(f"no source named {value!r} in soberan.toml or in the collected corpus")
    tid = "td-" + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d") + "-" + uuid.uuid4().hex[:8]
    docs = resolve_docs(ws, by, value)
    if by == "doc" and docs.num_rows == 0:
        # An id that is nowhere yet is still kept out of every future build.
        docs = pa.table({"doc_id": [value], "source": [None], "url": [None], "chars": [None]},
                        schema=DOC_SCHEMA.remove(0))
    ids = set(docs.column("doc_id").to_pylist())
    affected = find_affected(ws, ids)

    ledger_dir = ws.ledger.dir
    _append(ledger_dir / REQUESTS, pa.table({
        "takedown": [tid], "by": [by], "value": [value], "reason": [reason],
        "time": [dt.datetime.now(dt.timezone.utc)]}), REQUEST_SCHEMA)
    _append(ledger_dir / DOCS, docs.add_column(0, "takedown", pa.array([tid] * docs.num_rows, pa.string())),
            DOC_SCHEMA)
    by_source: dict[str, int] = {}
    for s in docs.column("source").to_pylist():
        by_source[s or "(not collected)"] = by_source.get(s or "(not collected)", 0) + 1
    # The event fixes the lists' content in the hash chain, so a later edit of them is visible.
    ws.ledger.record_event(
        "takedown", takedown=tid, by=by, value=value, reason=reason, docs=len(ids),
        by_source=by_source, artifacts=[a.path for a in affected],
        requests_sha256=file_sha256(ledger_dir / REQUESTS), docs_sha256=file_sha256(ledger_dir / DOCS))
    for a in affected:
        ws.ledger.record_event("stale", path=a.path, stage=a.stage, kind=a.kind, artifact=a.record,
                               takedown=tid, docs=a.docs, derived_from=a.derived_from,
                               reason=f"take-down {tid}: {reason}")
    return TakedownResult(tid, by, value, reason, len(ids), by_source, affected)
