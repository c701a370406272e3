"""Signals once, decisions cheap (Dolma's tag-then-mix, Soldaini et al. 2024).

Each document's measurements are kept in Parquet, one file per shard and pass under
`work/signals/`, keyed by document id and content hash:

- `lid_label`, `lid_score`: lid.176 on the whole document; `lid_hashes`, `lid_labels`,
  `lid_scores`: every text lid.176 read for the document (itself, its lines when they were read
  one by one), by xxh3 hash of the text, so a rerun predicts none of them again;
- every statistic of every quality filter (soberan.curate.quality.quality_signals), with
  `quality_sha`, the hash of the text they were measured on (after normalization and line cleanup);
- `pii_counts`: placeholders redacted, by type;
- `minhash`: the MinHash signature, with `minhash_sha` and the parameters it was made with;
- `decontam_*`: the benchmark with the most n-grams in common with the text (any count, so a
  changed `min_matches` is decided from it), how many and their size, and the lines that hold
  them, with `decontam_sha` and `decontam_key` (the benchmark texts, n-gram size and segmenter).

The drop and keep decisions are rules over these numbers. A run after a changed threshold finds
each document's statistics here (same id, same text, same pack) and decides again without
segmenting it; `soberan curate --what-if` decides from them without running anything.

The folder lives outside `work/curate/` (which a changed config clears), and each run rewrites a
shard's file with the documents it saw: a document taken down or edited leaves with the next run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from soberan.documents import write_parquet_atomic
from soberan.lang import LangPack

VERSION = "3"  # bump when a statistic's definition changes: stored ones are then measured again

_F = pa.float64()
_MAP = pa.map_(pa.int16(), pa.float64())
QUALITY_FIELDS = [
    ("words", pa.int64()), ("content_words", pa.int64()), ("mean_word_length", _F), ("hash_ratio", _F),
    ("ellipsis_ratio", _F), ("bullet_lines_ratio", _F), ("end_ellipsis_lines_ratio", _F),
    ("alpha_words_ratio", _F), ("stop_words", pa.int32()),
    ("chars", pa.int64()), ("dup_para_frac", _F), ("dup_para_char_frac", _F), ("dup_line_frac", _F),
    ("dup_line_char_frac", _F), ("top_n_grams", _MAP), ("dup_n_grams", _MAP),
    ("lines", pa.int64()), ("line_punct_ratio", _F), ("short_line_length", pa.int32()),
    ("short_line_ratio", _F), ("char_dup_ratio", _F), ("new_line_ratio", _F),
]
QUALITY_NAMES = [n for n, _ in QUALITY_FIELDS]
SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("sha256", pa.string()), ("source", pa.string()), ("lang", pa.string()),
    ("lid_label", pa.string()), ("lid_score", pa.float32()),
    ("lid_hashes", pa.list_(pa.uint64())), ("lid_labels", pa.list_(pa.string())), ("lid_scores", pa.list_(pa.float32())),
    ("quality_pack", pa.string()), ("quality_sha", pa.string()), *QUALITY_FIELDS,
    ("pii_counts", pa.map_(pa.string(), pa.int32())),
    ("minhash_params", pa.string()), ("minhash_sha", pa.string()), ("minhash", pa.list_(pa.uint32())),
    ("decontam_key", pa.string()), ("decontam_sha", pa.string()), ("decontam_benchmark", pa.string()),
    ("decontam_matches", pa.int32()), ("decontam_n", pa.int32()), ("decontam_lines", pa.list_(pa.int32())),
])


def signals_root(ws_root: Path) -> Path:
    return Path(ws_root) / "work" / "signals"


def pack_key(pack: LangPack) -> str:
    """What the quality statistics depend on besides the text: the pack's segmenter (by code and
    this module's version), its stop words and sentence punctuation."""
    body = "\x1f".join(sorted(pack.stop_words)) + "\x1e" + "\x1f".join(pack.sentence_end)
    return f"{pack.code}:{VERSION}:{hashlib.sha256(body.encode()).hexdigest()[:12]}"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _from_row(row: dict) -> dict:
    out = {k: row.get(k) for k in QUALITY_NAMES}
    for k in ("top_n_grams", "dup_n_grams"):
        if out[k] is not None and not isinstance(out[k], dict):
            out[k] = {int(n): v for n, v in out[k]}
    return out


class _Stored:
    """The last run's signals of one shard, read a column at a time as lookups need it: a shard
    of 50,000 documents as Python dicts (a MinHash signature as a list of 112 ints) took a
    worker's memory past 300 MB (benchmarks/dedup_scale.py). Signatures stay numpy rows."""

    def __init__(self, table: pa.Table):
        self.table = table
        self.index = {d: i for i, d in enumerate(table.column("doc_id").to_pylist())}
        self.cols: dict[str, list] = {}

    def column(self, name: str) -> list:
        if name not in self.cols:
            col = self.table.column(name)
            if name == "minhash":
                col = col.combine_chunks()
                values = col.flatten().to_numpy(zero_copy_only=False)
                offsets = col.offsets.to_numpy()
                valid = col.is_valid().to_numpy(zero_copy_only=False)
                self.cols[name] = [values[offsets[i]:offsets[i + 1]] if valid[i] else None
                                   for i in range(len(col))]
            elif isinstance(col.type, pa.MapType):  # n-gram shares: a dict per row, built once
                self.cols[name] = [None if v is None else dict(v) for v in col.to_pylist()]
            else:
                self.cols[name] = col.to_pylist()
        return self.cols[name]

    def get(self, doc_id: str) -> "_Row | None":
        i = self.index.get(doc_id)
        return None if i is None else _Row(self, i)


class _Row:
    __slots__ = ("stored", "i")

    def __init__(self, stored: _Stored, i: int):
        self.stored, self.i = stored, i

    def get(self, name: str, default=None):
        v = self.stored.column(name)[self.i]
        return default if v is None else v


class ShardSignals:
    """One shard's signals: those the previous run stored (looked up by id and content hash) and
    those of this run (written at the end of the shard, before its done-marker)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.prev: _Stored | dict = {}
        if self.path.exists():
            try:
                t = pq.read_table(self.path)
            except (OSError, pa.ArrowException):
                t = None  # a damaged file is measured again, not trusted
            if t is not None and (t.schema.metadata or {}).get(b"version") == VERSION.encode():
                self.prev = _Stored(t)
        self.rows: dict[str, dict] = {}
        self.measured = 0  # documents whose quality statistics were computed, not found
        self.reused = 0
        self.measured_decontam = 0  # documents whose benchmark n-grams were looked up, not found
        self.measured_lid = 0  # texts (documents and lines) lid.176 read, not found stored
        self.dirty = False  # a value was computed, not found stored (a signature, PII counts)
        self._lid_prev: dict[str, dict[int, tuple[str, float]]] = {}
        self._lid_kept: dict[str, dict[int, tuple[str, float]]] = {}

    def put(self, doc_id: str, **values) -> None:
        self.rows.setdefault(doc_id, {"doc_id": doc_id}).update(values)

    def quality(self, doc_id: str, text: str, pack: LangPack) -> tuple[str, dict | None]:
        """(content hash, stored statistics or None) of a document's text as the quality step sees it."""
        sha = _sha(text)
        r = self.prev.get(doc_id)
        if r is not None and r.get("quality_sha") == sha and r.get("quality_pack") == pack_key(pack):
            return sha, _from_row(r)
        return sha, None

    def put_quality(self, doc_id: str, sha: str, pack: LangPack, stats: dict) -> None:
        self.put(doc_id, quality_pack=pack_key(pack), quality_sha=sha,
                 **{k: (list(v.items()) if isinstance(v, dict) else v) for k, v in stats.items()})

    def minhash(self, doc_id: str, text: str, params: str) -> tuple[str, np.ndarray | None, bool]:
        """(content hash, stored signature, found): a found None is a document without shingles.
        Looks at this run's rows first (the quality step stores one for every document it
        segments), then the last run's."""
        sha = _sha(text)
        for r in (self.rows.get(doc_id), self.prev.get(doc_id)):
            if r is not None and r.get("minhash_sha") == sha and r.get("minhash_params") == params:
                sig = r.get("minhash")
                return sha, (np.asarray(sig, dtype=np.uint32) if sig is not None else None), True
        return sha, None, False

    def put_minhash(self, doc_id: str, sha: str, params: str, sig, measured: bool = True) -> None:
        """A signature: computed now (`measured`), or found stored."""
        self.dirty |= measured
        self.put(doc_id, minhash_sha=sha, minhash_params=params, minhash=sig)

    def put_pii(self, doc_id: str, counts: dict[str, int]) -> None:
        r = self.prev.get(doc_id)
        if r is None or r.get("pii_counts") != counts:  # None: not counted by the last run
            self.dirty = True
        self.put(doc_id, pii_counts=list(counts.items()))

    def carry_minhash(self, doc_id: str, sha: str, params: str) -> bool:
        """Keep the last run's signature of an unchanged text; False when there is none."""
        r = self.prev.get(doc_id)
        if r is not None and r.get("minhash_sha") == sha and r.get("minhash_params") == params:
            self.put_minhash(doc_id, sha, params, r.get("minhash"), measured=False)
            return True
        return False

    def lid(self, doc_id: str, texts: list[str], predict) -> tuple[list[str], list[float]]:
        """lid.176's (labels, scores) for a document's texts: those the last run stored for this
        document are looked up, the others predicted; all are stored with this run's row."""
        import xxhash

        if doc_id not in self._lid_prev:
            r = self.prev.get(doc_id) or {}
            self._lid_prev[doc_id] = {h: (lab, sc) for h, lab, sc in zip(
                r.get("lid_hashes") or [], r.get("lid_labels") or [], r.get("lid_scores") or [])}
        memo = self._lid_prev[doc_id]
        hashes = [xxhash.xxh3_64_intdigest(t.encode("utf-8", "surrogatepass")) for t in texts]
        todo = [i for i, h in enumerate(hashes) if h not in memo]
        if todo:
            labels, scores = predict([texts[i] for i in todo])
            memo.update({hashes[i]: (lab, float(sc)) for i, lab, sc in zip(todo, labels, scores)})
            self.measured_lid += len(todo)
        self.rows.setdefault(doc_id, {"doc_id": doc_id})
        kept = self._lid_kept.setdefault(doc_id, {})  # in the order read; written by `write`
        for h in hashes:
            kept.setdefault(h, memo[h])
        return [memo[h][0] for h in hashes], [memo[h][1] for h in hashes]

    def decontam(self, doc_id: str, text: str, key: str) -> tuple[str, dict | None]:
        """(content hash, the stored decontamination measurement of this text or None)."""
        sha = _sha(text)
        r = self.prev.get(doc_id)
        if r is not None and r.get("decontam_sha") == sha and r.get("decontam_key") == key:
            return sha, {k: r.get(f"decontam_{k}") for k in ("benchmark", "matches", "n", "lines")}
        return sha, None

    def put_decontam(self, doc_id: str, sha: str, key: str, found: dict) -> None:
        self.put(doc_id, decontam_key=key, decontam_sha=sha,
                 **{f"decontam_{k}": found.get(k) for k in ("benchmark", "matches", "n", "lines")})

    def unchanged(self) -> bool:
        """Nothing was measured and the same documents were seen: the stored file stands."""
        return (not (self.dirty or self.measured or self.measured_decontam or self.measured_lid)
                and isinstance(self.prev, _Stored) and self.rows.keys() == self.prev.index.keys())

    def write(self) -> None:
        if self.unchanged():
            return
        for doc_id, kept in self._lid_kept.items():
            self.rows[doc_id].update(lid_hashes=list(kept), lid_labels=[lab for lab, _ in kept.values()],
                                     lid_scores=[sc for _, sc in kept.values()])
        rows = list(self.rows.values())
        cols = {f.name: [r.get(f.name) for r in rows] for f in SCHEMA}
        table = pa.table({f.name: pa.array(cols[f.name], f.type) for f in SCHEMA}, schema=SCHEMA)
        table = table.replace_schema_metadata({"version": VERSION})
        write_parquet_atomic(table, self.path)


def measured_share(ws_root: Path, inputs: list[Path]) -> tuple[float, int]:
    """(share of the input documents whose signals the last run stored for the same collected
    text, number of input documents): how much of a run can be decided from stored signals."""
    files = sorted(signals_root(ws_root).glob("pass*/part-*.parquet"))
    n = sum(pq.ParquetFile(f).metadata.num_rows for f in inputs)
    if not files or not n:
        return 0.0, n
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    try:
        stored = ds.dataset([str(f) for f in files], format="parquet").to_table(columns=["doc_id", "sha256"])
    except (OSError, pa.ArrowException):
        return 0.0, n  # a damaged file: measured again, as ShardSignals does
    stored = stored.filter(pc.is_valid(stored.column("sha256"))).group_by(["doc_id", "sha256"]).aggregate([])
    raw = pa.concat_tables([pq.read_table(f, columns=["id", "sha256"]) for f in inputs])
    same = raw.join(stored, keys=["id", "sha256"], right_keys=["doc_id", "sha256"], join_type="inner")
    return same.num_rows / n, n


def read_signals(ws_root: Path) -> pa.Table:
    """Every stored signal of the workspace's last curate run, or a clear error when none is."""
    import pyarrow.dataset as ds

    files = sorted(signals_root(ws_root).glob("pass*/part-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{signals_root(ws_root)}: no stored signals; run `soberan curate` first")
    return ds.dataset([str(f) for f in files], format="parquet", schema=SCHEMA).to_table()
