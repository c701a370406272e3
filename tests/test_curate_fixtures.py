"""Helpers the curate tests share: a workspace with a collected corpus made by the test itself
(no dependency on `soberan collect` being present), and planted cases."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa

from soberan.documents import DOC_SCHEMA, doc_id, text_sha256, write_parquet_atomic
from soberan.workspace import Workspace, init_workspace


def make_workspace(root: Path, lang: str = "ko", jurisdiction: str = "KR", curate_toml: str = "",
                   languages: list[str] | None = None) -> Workspace:
    cfg = init_workspace(root, lang=lang, jurisdiction=jurisdiction, name="t")
    text = cfg.read_text()
    if languages:
        text = text.replace(f'languages = ["{lang}"]', "languages = [" + ", ".join(f'"{x}"' for x in languages) + "]")
    if curate_toml:
        head = "\n[curate]\n"
        assert text.count(head) == 1, "the generated config should hold one [curate] table"
        text = text.replace(head, head + curate_toml + "\n")
    cfg.write_text(text)
    return Workspace.open(root)


def write_raw(ws: Workspace, docs: list[dict], shard_docs: int = 50) -> list[str]:
    """Write `docs` ({text, source?, lang?, url?}) as collected shards and record the artifact.
    Returns the document ids in order."""
    now = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    rows, ids = [], []
    for i, d in enumerate(docs):
        sha = text_sha256(d["text"])
        src = d.get("source", "planted")
        url = d.get("url", f"mem://{src}/{i}")
        ids.append(doc_id(src, url, sha))
        rows.append({"id": ids[-1], "text": d["text"], "source": src, "url": url,
                     "license": "CC0-1.0", "jurisdiction": "KR", "lang": d.get("lang"),
                     "lang_score": None, "collected_at": now, "date": None, "title": None,
                     "sha256": sha})
    raw = ws.stage_dir("collect")
    for k in range(0, max(len(rows), 1), shard_docs):
        t = pa.Table.from_pylist(rows[k:k + shard_docs], schema=DOC_SCHEMA)
        write_parquet_atomic(t, raw / f"part-{k // shard_docs:05d}.parquet")
    ws.ledger.record_artifact(stage="collect", kind="corpus", path=raw, meta={"docs": len(rows)})
    return ids
