"""Benchmark decontamination: drop documents (or their lines) that share long word n-grams with
an evaluation set.

The rule is GPT-3's (Brown et al. 2020, appendix C): a document is contaminated when it shares an
n-gram of words with a benchmark item, with n = 13, lowered for a benchmark of short items to the
5th percentile of its items' lengths, but never below 8. Llama 2 (Touvron et al. 2023, A.6) uses
the same idea on tokens. Words are the document language's own (Kiwi morphemes for Korean, Thai
words for Thai), so the rule means the same in every language.

Benchmark texts come from the benchmark specs that `soberan evaluate` scores (read by the core
module `soberan.benchmarks`, declared in `[evaluate]` or shipped) or from files named in
`[curate.decontam] files`. Their n-gram hashes are computed once per language and kept as a small
Parquet file beside the stored signals, keyed by the benchmark texts, so every worker, and every
later run, loads instead of re-segmenting them. What each document shares with them is a stored
signal too (soberan.curate.signals): a rerun after a changed threshold (`min_matches`, `mode`, a
quality threshold) decides again without segmenting the document. `texts_digest` hashes the
texts themselves: curate's config hash covers what decontamination reads, not the rest of
`[evaluate]`.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from soberan.benchmarks import benchmark_texts as declared_texts
from soberan.benchmarks import resolve_names, spec_files, with_paths
from soberan.config import Config, ConfigError
from soberan.curate.minhash import ngram_hashes
from soberan.documents import HashCache, write_parquet_atomic, write_text_atomic
from soberan.lang import LangPack

MIN_N = 8  # GPT-3's lower bound on the n-gram size


@dataclass(frozen=True)
class Hit:
    benchmark: str
    matches: int  # distinct shared n-grams
    n: int

    @property
    def reason(self) -> str:
        return (f"shares {self.matches} distinct {self.n}-gram{'s' * (self.matches > 1)} of words "
                f"with benchmark {self.benchmark}")


# --- benchmark texts ----------------------------------------------------------------------------

def _texts_of(value) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list | tuple):
        return [t for v in value for t in _texts_of(v)]
    return []


def read_benchmark_file(path: Path, fields: list[str]) -> list[str]:
    """Texts of the named fields of a JSONL, JSON array, TSV/CSV or Parquet file; a list field
    (answer choices) gives one text per element."""
    if not path.exists():
        raise ConfigError(f"curate.decontam.files: {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        table = pq.read_table(path)
        missing = [f for f in fields if f not in table.column_names]
        if missing:
            raise ConfigError(f"{path}: no column(s) {missing}; columns are {table.column_names}")
        records = table.select(fields).to_pylist()
    elif suffix in (".tsv", ".csv", ".txt"):
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="," if suffix == ".csv" else "\t")
            missing = [x for x in fields if x not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"{path}: no column(s) {missing}; header is {reader.fieldnames}")
            records = list(reader)
    elif suffix == ".json":
        records = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(records, dict):
            records = records.get("data") or [records]
    else:  # JSON lines
        with open(path, encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
    out = []
    for r in records:
        for name in fields:
            out.extend(_texts_of(r.get(name) if isinstance(r, dict) else None))
    return list(dict.fromkeys(out))


def benchmark_texts(cfg: Config) -> dict[str, list[str]]:
    """Every benchmark named in `[curate.decontam]`: name -> its item texts."""
    d = cfg.curate.decontam
    out: dict[str, list[str]] = {}
    if d.benchmarks:
        out.update(declared_texts(cfg, list(d.benchmarks)))
    for f in d.files:
        out[f.name] = read_benchmark_file(cfg.resolve(f.path), list(f.fields))
    return out


def texts_digest(cfg: Config, hashes: HashCache | None = None, memo: Path | None = None) -> str:
    """sha256 of every benchmark text decontamination reads, by benchmark name: an edited item,
    another file or another set named changes it; an `[evaluate]` setting that is not a
    benchmark text (batch_size, a benchmark declared but not named here) does not.

    With the workspace's file-hash cache and a `memo` file, the texts are read again only when
    what they are made from changed (a named spec's declaration, the bytes of a file): reading
    NSMC's 195k texts takes seconds, and a build that finds curate current should not pay them."""
    key = _sources_key(cfg, hashes) if hashes is not None and memo is not None else None
    if key is not None:
        try:
            saved = json.loads(memo.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = {}
        if saved.get("key") == key:
            return saved["digest"]
    body = json.dumps(benchmark_texts(cfg), sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()
    if key is not None:
        write_text_atomic(memo, json.dumps({"key": key, "digest": digest}))
    return digest


def _sources_key(cfg: Config, hashes: HashCache) -> str | None:
    """What the benchmark texts are made from: the named specs as declared, the `files` entries,
    and the content hash of every file they read (by size and mtime, without reading it again).
    None when a file cannot be read: reading the texts then says what is wrong."""
    d = cfg.curate.decontam
    try:
        specs = [with_paths(cfg, s) for s in resolve_names(cfg, list(d.benchmarks))] if d.benchmarks else []
        paths = [f for s in specs for p in (s.path, s.fewshot_path) if p for f in spec_files(p)]
        paths += [cfg.resolve(f.path) for f in d.files]
        body = {"specs": [s.model_dump(mode="json") for s in specs],
                "files": [f.model_dump(mode="json") for f in d.files],
                "sha256": [hashes.file_sha256(Path(p)) for p in paths]}
    except (OSError, ConfigError):
        return None
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# --- the index ----------------------------------------------------------------------------------

@dataclass
class LangIndex:
    """Sorted n-gram hashes of every benchmark item in one language, per n-gram size."""

    by_n: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # n -> (hashes, bench)
    names: list[str] = field(default_factory=list)
    report: dict = field(default_factory=dict)  # benchmark -> {items, n, too_short}


def build_lang_index(texts: dict[str, list[str]], pack: LangPack, ngram: int) -> LangIndex:
    idx = LangIndex(names=sorted(texts))
    parts: dict[int, list[tuple[np.ndarray, int]]] = {}
    for b, name in enumerate(idx.names):
        items = [pack.words(t) for t in texts[name]]
        lengths = np.array([len(w) for w in items] or [0])
        n = int(min(ngram, max(MIN_N, np.percentile(lengths, 5))))
        usable = [w for w in items if len(w) >= n]
        idx.report[name] = {"items": len(items), "ngram": n, "too_short": len(items) - len(usable)}
        for w in usable:
            parts.setdefault(n, []).append((ngram_hashes(w, n), b))
    for n, lst in parts.items():
        h = np.concatenate([x for x, _ in lst])
        bench = np.concatenate([np.full(len(x), b, dtype=np.int32) for x, b in lst])
        order = np.argsort(h, kind="stable")
        idx.by_n[n] = (h[order], bench[order])
    return idx


def _save(idx: LangIndex, path: Path) -> None:
    ns = sorted(idx.by_n)
    table = pa.table({
        "n": pa.array(np.concatenate([np.full(len(idx.by_n[n][0]), n, np.int32) for n in ns])
                      if ns else np.array([], np.int32)),
        "hash": pa.array(np.concatenate([idx.by_n[n][0] for n in ns]) if ns else np.array([], np.uint64)),
        "bench": pa.array(np.concatenate([idx.by_n[n][1] for n in ns]) if ns else np.array([], np.int32)),
    })
    meta = {b"names": json.dumps(idx.names).encode(), b"report": json.dumps(idx.report).encode()}
    write_parquet_atomic(table.replace_schema_metadata(meta), path)


def _load(path: Path) -> LangIndex:
    t = pq.read_table(path)
    meta = t.schema.metadata or {}
    idx = LangIndex(names=json.loads(meta[b"names"]), report=json.loads(meta[b"report"]))
    n = t.column("n").to_numpy()
    h = t.column("hash").to_numpy()
    b = t.column("bench").to_numpy()
    for k in np.unique(n):
        m = n == k
        idx.by_n[int(k)] = (h[m], b[m])  # saved sorted within each n
    return idx


class Index:
    """Benchmark n-grams per language, built on first use and cached in the work folder."""

    def __init__(self, texts: dict[str, list[str]], ngram: int, min_matches: int, cache: Path | None):
        self.texts, self.ngram, self.min_matches, self.cache = texts, ngram, min_matches, cache
        self._by_lang: dict[str, LangIndex] = {}

    def for_pack(self, pack: LangPack) -> LangIndex:
        if pack.code not in self._by_lang:
            path = self.cache / f"{pack.code}.parquet" if self.cache else None
            if path is not None and path.exists():
                self._by_lang[pack.code] = _load(path)
            else:
                idx = build_lang_index(self.texts, pack, self.ngram)
                if path is not None:
                    _save(idx, path)
                self._by_lang[pack.code] = idx
        return self._by_lang[pack.code]

    def key(self, pack: LangPack) -> str:
        """What a document's measurement depends on besides its text: the benchmark texts, the
        n-gram size and the pack's segmenter (not `min_matches`: that is a threshold over it)."""
        from soberan.curate.signals import pack_key

        return f"{self.digest}:{pack_key(pack)}"

    @property
    def digest(self) -> str:
        if not hasattr(self, "_digest"):
            body = json.dumps({"ngram": self.ngram, "texts": self.texts}, sort_keys=True, ensure_ascii=False)
            self._digest = hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return self._digest

    def best(self, text: str, pack: LangPack) -> Hit | None:
        """The benchmark sharing the most distinct n-grams with the text, however few."""
        idx = self.for_pack(pack)
        if not idx.by_n:
            return None
        words = pack.words(text)
        best: Hit | None = None
        for n, (hashes, bench) in idx.by_n.items():
            if len(words) < n or len(hashes) == 0:
                continue
            h = np.unique(ngram_hashes(words, n))
            pos = np.minimum(np.searchsorted(hashes, h), len(hashes) - 1)
            found = pos[hashes[pos] == h]
            if not len(found):
                continue
            counts = np.bincount(bench[found], minlength=len(idx.names))
            b = int(counts.argmax())
            if best is None or counts[b] > best.matches:
                best = Hit(idx.names[b], int(counts[b]), n)
        return best

    def match(self, text: str, pack: LangPack) -> Hit | None:
        hit = self.best(text, pack)
        return hit if hit is not None and hit.matches >= self.min_matches else None


    def contaminated_lines(self, text: str, pack: LangPack) -> tuple[str, int, Hit | None]:
        """For `mode = "lines"`: the text without the lines that hold a word of an n-gram shared
        with a benchmark (an n-gram may run across lines: every line it touches goes), how many
        lines went, and the best hit. Lines are segmented one by one, so each word has a line."""
        hit = self.match(text, pack)
        if hit is None:
            return text, 0, None
        bad = self.bad_lines(text, pack)
        kept = "\n".join(ln for i, ln in enumerate(text.split("\n")) if i not in bad)
        return kept, len(bad), hit

    def bad_lines(self, text: str, pack: LangPack) -> set[int]:
        """Numbers of the lines that hold a word of an n-gram shared with a benchmark."""
        lines = text.split("\n")
        per_line = [pack.words(ln) if ln.strip() else [] for ln in lines]
        words = [w for ws in per_line for w in ws]
        line_of = np.repeat(np.arange(len(lines)), [len(ws) for ws in per_line])
        bad = np.zeros(len(lines), dtype=bool)
        for n, (hashes, _bench) in self.for_pack(pack).by_n.items():
            if len(words) < n or len(hashes) == 0:
                continue
            h = ngram_hashes(words, n)
            pos = np.minimum(np.searchsorted(hashes, h), len(hashes) - 1)
            for start in np.flatnonzero(hashes[pos] == h):
                bad[line_of[start:start + n]] = True
        return set(np.flatnonzero(bad).tolist())

    def check(self, doc_id: str, text: str, pack: LangPack, lines: bool, store=None) -> tuple[Hit | None, str, int]:
        """(hit or None, the text to keep, lines removed) under the current `min_matches` and
        `mode` (`lines`: remove the lines that hold shared n-grams). With a ShardSignals
        `store`, a text measured by an earlier run is decided from what was stored, without
        segmenting it; every measurement is stored."""
        found = None
        if store is not None:
            sha, found = store.decontam(doc_id, text, self.key(pack))
            if found is not None and lines and found["matches"] and found["lines"] is None:
                found = None  # measured in document mode: its lines were not
        if found is None:
            hit = self.best(text, pack)
            found = {"benchmark": hit.benchmark if hit else None, "matches": hit.matches if hit else 0,
                     "n": hit.n if hit else None,
                     "lines": sorted(self.bad_lines(text, pack)) if hit is not None and lines else None}
            if store is not None:
                store.measured_decontam += 1
        if store is not None:
            store.put_decontam(doc_id, sha, self.key(pack), found)
        if not found["matches"] or found["matches"] < self.min_matches:
            return None, text, 0
        hit = Hit(found["benchmark"], found["matches"], found["n"])
        if not lines:
            return hit, text, 0
        bad = set(found["lines"])
        return hit, "\n".join(ln for i, ln in enumerate(text.split("\n")) if i not in bad), len(bad)


def load_index(ctx) -> Index | None:
    d = ctx.cur.decontam
    texts = benchmark_texts(ctx.cfg)
    if not texts:
        return None
    index = Index(texts, d.ngram, d.min_matches, None)
    if ctx.work_dir:  # beside the signals, which outlive work/curate/ (cleared by a changed config)
        from soberan.curate.signals import signals_root

        index.cache = signals_root(ctx.ws.root) / "decontam" / index.digest
        index.cache.mkdir(parents=True, exist_ok=True)
    return index
