"""The document table: its Arrow schema, stable ids, and atomic Parquet shards.

A corpus is a folder of zstd Parquet shards that pyarrow, DuckDB, polars and HF `datasets` read as
they are. Later stages add columns and never drop the provenance columns below.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from soberan.common import read_json, write_json

DOC_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("text", pa.large_string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("url", pa.string()),  # file path, URL, or archive locator
    pa.field("license", pa.string(), nullable=False),
    pa.field("jurisdiction", pa.string(), nullable=False),
    pa.field("lang", pa.string()),  # hint from the source until curate's language ID sets it
    pa.field("lang_score", pa.float32()),
    pa.field("collected_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("date", pa.string()),  # the document's own date, when the source gives one
    pa.field("title", pa.string()),
    pa.field("sha256", pa.string(), nullable=False),  # of the UTF-8 text
])

PROVENANCE_COLUMNS = ("id", "source", "url", "license", "jurisdiction", "collected_at", "sha256")


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def doc_id(source: str, locator: str, sha256: str) -> str:
    """Stable id from where a document came from and what it says.

    The same file collected twice gets the same id (so resume and rebuild never double it); the
    same text from two sources keeps two ids, so each keeps its own provenance until dedup.
    """
    h = hashlib.sha256(f"{source}\x00{locator}\x00{sha256}".encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:32]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def tree_sha256(path: Path, cache: HashCache | None = None) -> str:
    """Content hash of a file, or of a folder as the sorted (relative path, file hash) list.
    With a `cache`, a file whose size, mtime and inode are those it had when last hashed is not
    read again."""
    path = Path(path)
    one = file_sha256 if cache is None else cache.file_sha256
    if path.is_file():
        return one(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")):
        h.update(f"{f.relative_to(path).as_posix()}\x00{one(f)}\n".encode())
    return h.hexdigest()


class HashCache:
    """File hashes keyed by (size, mtime, inode), the way git's index and make decide what
    changed, so that checking whether multi-GB checkpoints still match the ledger does not read
    them on every `soberan build`. Like git, it distrusts a file modified within `RACY_NS` of
    when it was hashed (a write in the same clock tick would keep the mtime). It is for deciding
    what to rebuild; `soberan ledger verify`, the audit, always reads every byte."""

    RACY_NS = 2_000_000_000

    def __init__(self, path: Path):
        self.path = Path(path)
        self.entries: dict[str, list] = read_json(self.path, default={})
        self.dirty = False

    def file_sha256(self, f: Path) -> str:
        st = f.stat()
        key = str(f.resolve())
        e = self.entries.get(key)
        if e and e[:3] == [st.st_size, st.st_mtime_ns, st.st_ino] and st.st_mtime_ns < e[4] - self.RACY_NS:
            return e[3]
        sha = file_sha256(f)
        self.entries[key] = [st.st_size, st.st_mtime_ns, st.st_ino, sha, time.time_ns()]
        self.dirty = True
        return sha

    def save(self) -> None:
        if not self.dirty:
            return
        live = {k: v for k, v in self.entries.items() if os.path.exists(k)}
        write_json(self.path, live)
        self.dirty = False


def temp_path(path: Path) -> Path:
    """Where to write `path` before renaming it into place. It starts with `.tmp-` (tree hashes
    and shard listings skip those) and does not end in `.parquet`, so that the file a killed
    writer leaves behind is never matched by a `*.parquet` glob: DuckDB's, when dedup resolves
    or the ledger is queried, would fail on it."""
    return path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}.part")


def write_text_atomic(path: Path, text: str) -> Path:
    """Write a text file (UTF-8) so that a reader, or a run resumed after a kill, sees the old
    file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_parquet_atomic(table: pa.Table, path: Path, **kwargs) -> Path:
    """Write a Parquet file so that a reader (or a resumed run) never sees half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    kwargs.setdefault("compression", "zstd")
    pq.write_table(table, tmp, **kwargs)
    os.replace(tmp, path)
    return path


def shard_paths(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith(".tmp-"))


class CorpusError(ValueError):
    """A corpus shard on disk that cannot be read as what it should be: named, with the way out."""


def check_shards(paths: list[Path], required: tuple[str, ...] = ("id", "text", "source")) -> None:
    """Read each shard's footer and schema (no data), so a truncated, foreign or damaged shard
    stops a stage before any work, not halfway through it."""
    for p in paths:
        try:
            schema = pq.read_schema(p)
        except (OSError, pa.ArrowException) as e:
            raise CorpusError(f"{p}: not a readable Parquet shard ({e}); the corpus was damaged "
                              "after it was written: `soberan ledger verify` names what changed, and "
                              "re-running the stage that wrote it rebuilds it") from None
        missing = [c for c in required if c not in schema.names]
        if missing:
            raise CorpusError(f"{p}: not a soberan document shard: no column(s) {missing}")


def read_corpus(folder: Path, columns: list[str] | None = None) -> pa.Table:
    paths = shard_paths(folder)
    if not paths:
        return DOC_SCHEMA.empty_table() if columns is None else DOC_SCHEMA.empty_table().select(columns)
    return ds.dataset([str(p) for p in paths], format="parquet").to_table(columns=columns)


def iter_batches(folder: Path, columns: list[str] | None = None,
                 batch_size: int = 8192) -> Iterator[pa.RecordBatch]:
    """Stream a corpus batch by batch, so a corpus larger than RAM never loads whole."""
    for p in shard_paths(folder):
        yield from pq.ParquetFile(p).iter_batches(batch_size=batch_size, columns=columns)
