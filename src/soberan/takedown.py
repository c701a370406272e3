"""Take-down rules: what must stay out of every artifact, and which artifacts a take-down made stale.

`soberan takedown` (soberan.report.takedown) records each request in `ledger/takedowns.parquet`
and the documents it resolves to in `ledger/takedown_docs.parquet`, and marks every artifact that
holds one, or was made from one, stale with a `stale` event. This module reads those back, for
every stage that must honour them:

- `load_rules` gives the list (document ids, whole sources, URL globs);
- `takedown_mask` applies it to an Arrow batch, `is_taken_down` to one document, and
  `source_taken_down` to a whole source, so collect's rebuild leaves the documents out; a
  request naming a source or URL pattern also keeps out documents of that source that appear
  later;
- `stale_marks` says which artifacts a take-down made stale and no rebuild has replaced yet, so
  the next `soberan build` rebuilds them.

Nothing here deletes data: the build does, when it rebuilds a stale stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from soberan import stages
from soberan.workspace import Workspace

REQUESTS = "takedowns.parquet"
DOCS = "takedown_docs.parquet"

REQUEST_SCHEMA = pa.schema([
    pa.field("takedown", pa.string(), nullable=False),
    pa.field("by", pa.string(), nullable=False),  # source | url | doc
    pa.field("value", pa.string(), nullable=False),  # the source name, URL glob or document id
    pa.field("reason", pa.string(), nullable=False),
    pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
])

DOC_SCHEMA = pa.schema([
    pa.field("takedown", pa.string(), nullable=False),
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("source", pa.string()),
    pa.field("url", pa.string()),
    pa.field("chars", pa.int64()),
])


# --- the list every stage honours -------------------------------------------------------------

@dataclass(frozen=True)
class TakedownRules:
    """What must stay out of every artifact: document ids, whole sources, URL patterns."""

    ids: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()
    url_globs: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.ids or self.sources or self.url_globs)


def _ledger_file(ws: Workspace, name: str) -> Path:
    return ws.ledger.dir / name


def read_list(path: Path, schema: pa.Schema) -> pa.Table:
    """One of the take-down lists (REQUESTS, DOCS) as a table; empty when none was written."""
    return pq.read_table(path).cast(schema) if path.exists() else schema.empty_table()


def load_rules(ws: Workspace) -> TakedownRules:
    req = read_list(_ledger_file(ws, REQUESTS), REQUEST_SCHEMA).to_pylist()
    docs = read_list(_ledger_file(ws, DOCS), DOC_SCHEMA).column("doc_id").to_pylist()
    return TakedownRules(
        ids=frozenset(docs) | {r["value"] for r in req if r["by"] == "doc"},
        sources=frozenset(r["value"] for r in req if r["by"] == "source"),
        url_globs=tuple(r["value"] for r in req if r["by"] == "url"),
    )


def taken_down_ids(ws: Workspace) -> set[str]:
    """Every document id a take-down named or resolved to."""
    return set(load_rules(ws).ids)


def source_taken_down(ws_or_rules: Workspace | TakedownRules, name: str) -> bool:
    """True when a whole source was taken down: collect skips it without reading it."""
    rules = ws_or_rules if isinstance(ws_or_rules, TakedownRules) else load_rules(ws_or_rules)
    return name in rules.sources


def glob_to_like(pattern: str) -> str:
    """A shell-style URL glob (`*`, `?`) as an SQL LIKE pattern with `\\` as escape, the one
    dialect both DuckDB and Arrow's `match_like` speak, so a takedown matches the same URLs when
    it is requested (DuckDB) and when collect filters (Arrow)."""
    out = []
    for ch in pattern:
        if ch in "%_\\":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


def takedown_mask(rules: TakedownRules, batch: pa.Table | pa.RecordBatch) -> pa.ChunkedArray | pa.Array:
    """For a batch of documents (columns `id`, `source`, `url`), True where a take-down applies.

    Vectorized over the Arrow batch, so collect filters millions of rows without a Python loop.
    """
    n = batch.num_rows
    mask = pa.array([False] * n)
    names = batch.schema.names
    if rules.ids and "id" in names:
        mask = pc.or_(mask, pc.is_in(batch.column("id"), value_set=pa.array(sorted(rules.ids), pa.string())))
    if rules.sources and "source" in names:
        mask = pc.or_(mask, pc.is_in(batch.column("source"),
                                     value_set=pa.array(sorted(rules.sources), pa.string())))
    if rules.url_globs and "url" in names:
        for g in rules.url_globs:
            hit = pc.fill_null(pc.match_like(batch.column("url"), glob_to_like(g)), False)
            mask = pc.or_(mask, hit)
    return mask


def is_taken_down(ws_or_rules: Workspace | TakedownRules, *, doc_id: str | None = None,
                  source: str | None = None, url: str | None = None) -> bool:
    """One document's check, for code that handles documents one at a time (a crawler deciding
    whether to fetch a URL). Batch code uses `takedown_mask`."""
    rules = ws_or_rules if isinstance(ws_or_rules, TakedownRules) else load_rules(ws_or_rules)
    row = pa.table({"id": [doc_id], "source": [source], "url": [url]},
                   schema=pa.schema([("id", pa.string()), ("source", pa.string()), ("url", pa.string())]))
    return bool(takedown_mask(rules, row)[0].as_py())


def stale_marks(ws: Workspace) -> dict[str, dict]:
    """Path -> the newest `stale` event that still applies: neither that path nor its stage's
    main artifact was recorded since (a stage's rebuild replaces its whole folder)."""
    main = stages.main_artifacts()
    led = ws.ledger
    newest_path: dict[str, int] = {}
    newest_main: dict[str, int] = {}
    for r in led.records("artifact"):
        newest_path[r["path"]] = r["seq"]
        if main.get(r["stage"]) == r["kind"]:
            newest_main[r["stage"]] = r["seq"]
    out: dict[str, dict] = {}
    for e in led.records("event"):
        if (e.get("event") == "stale" and e["seq"] > newest_path.get(e["path"], -1)
                and e["seq"] > newest_main.get(e["stage"], -1)):
            out[e["path"]] = e
    return out


def takedown_requests(ws: Workspace) -> list[dict]:
    return [e for e in ws.ledger.records("event") if e.get("event") == "takedown"]
