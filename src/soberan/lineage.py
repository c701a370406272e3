"""`soberan lineage DOC_ID`: where a document came from and what happened to it at each stage.

Answered by DuckDB straight from the Parquet shards and the decision log, so it costs the same on
a thousand documents or on hundreds of millions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from soberan.documents import shard_paths
from soberan.workspace import Workspace


@dataclass
class Lineage:
    doc_id: str
    origin: dict | None = None  # the collected row's provenance columns
    source: dict | None = None  # the ledger's source record
    decisions: list[dict] = field(default_factory=list)
    present_in: list[str] = field(default_factory=list)  # stage folders whose current shards hold it


def _glob(folder) -> str:
    return (folder / "**" / "*.parquet").as_posix()


def lineage(ws: Workspace, doc_id: str) -> Lineage:
    out = Lineage(doc_id)
    con = ws.ledger.connect()
    raw = ws.stage_dir("collect")
    if shard_paths(raw):
        rows = con.execute(
            f"SELECT id, source, url, license, jurisdiction, lang, collected_at, date, sha256, "
            f"length(text) AS chars FROM read_parquet('{_glob(raw)}', union_by_name=true) WHERE id = ?",
            [doc_id]).fetchall()
        if rows:
            cols = [d[0] for d in con.description]
            out.origin = dict(zip(cols, rows[0]))
            for s in ws.ledger.records("source"):
                if s["name"] == out.origin["source"]:
                    out.source = s  # the newest record of that source wins
    res = con.execute("SELECT stage, step, action, rule, reason, time FROM decisions WHERE doc_id = ? "
                      "ORDER BY time", [doc_id])
    cols = [d[0] for d in res.description]
    out.decisions = [dict(zip(cols, r)) for r in res.fetchall()]
    for stage in ("curate",):
        folder = ws.stage_dir(stage)
        if shard_paths(folder):
            n = con.execute(f"SELECT count(*) FROM read_parquet('{_glob(folder)}', union_by_name=true) "
                            "WHERE id = ?", [doc_id]).fetchone()[0]
            if n:
                out.present_in.append(stage)
    return out
