"""Training data on disk: the corpus tokenized once into one packed stream of token ids.

    <out>/data/tokens.bin     uint32 token ids, every document as [BOS] ids EOS, back to back
    <out>/data/docs.parquet   one row per packed document: doc_id, source, license, jurisdiction,
                              lang, replay, start (offset in tokens.bin), n_tokens
    <out>/data/meta.json      what it was made from (corpus, replay, tokenizer hashes, held-out
                              rule) and its size; the data is reused while that key matches
    <out>/heldout/<lang>.parquet  the held-out documents (id, text, source, lang), never packed

tokens.bin is read through a numpy memmap, so a corpus larger than RAM trains without loading.
Packing goes shard by shard and records each finished shard in `progress.json`; a killed run
truncates the stream back to the last finished shard and goes on from there. `docs.parquet` is
what a take-down reads to find the documents inside a model's training data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from soberan.common import read_json, write_json
from soberan.heldout import SCHEMA as HELDOUT_SCHEMA
from soberan.heldout import Split
from soberan.heldout import apply as apply_split
from soberan.heldout import merge as merge_splits
from soberan.heldout import plan as plan_split
from soberan.documents import shard_paths, text_sha256, write_parquet_atomic

FORMAT = 1
COLUMNS = ["id", "text", "source", "license", "jurisdiction", "lang"]
DOCS_SCHEMA = pa.schema([
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("license", pa.string(), nullable=False),
    pa.field("jurisdiction", pa.string(), nullable=False),
    pa.field("lang", pa.string(), nullable=False),
    pa.field("replay", pa.bool_(), nullable=False),
    pa.field("start", pa.int64(), nullable=False),
    pa.field("n_tokens", pa.int64(), nullable=False),
])


# --- inputs: the curated corpus, and optionally an English/code replay corpus ----------------

@dataclass(frozen=True)
class CorpusInput:
    """A corpus to pack: a folder of Parquet shards (DOC_SCHEMA), or .txt/.jsonl files whose
    provenance the config declares (`license`, `jurisdiction`, `lang`)."""

    path: Path
    replay: bool = False
    source: str = "replay"
    license: str | None = None
    jurisdiction: str | None = None
    lang: str | None = None


@dataclass(frozen=True)
class Unit:
    """One resumable unit of packing work: a Parquet shard or a text file."""

    key: str
    path: Path
    input: CorpusInput


def units(inputs: list[CorpusInput]) -> list[Unit]:
    out = []
    for i, inp in enumerate(inputs):
        tag = "replay" if inp.replay else f"corpus{i}"
        p = inp.path
        if p.is_file():
            files = [p]
        elif shard_paths(p):
            files = shard_paths(p)
        else:
            files = sorted(q for q in p.rglob("*") if q.suffix in (".txt", ".jsonl") and q.is_file())
        if not files:
            raise FileNotFoundError(f"{p}: no Parquet shards, .txt or .jsonl files to train on")
        for f in files:
            rel = f.relative_to(p).as_posix() if f != p else f.name
            out.append(Unit(f"{tag}/{rel}", f, inp))
    return out


def _declared(inp: CorpusInput, what: str) -> str:
    value = getattr(inp, what)
    if not value:
        raise ValueError(f"{inp.path}: plain text/JSONL replay needs replay_{what} in [train]")
    return value


def read_unit(unit: Unit, batch_size: int = 2048) -> Iterator[pa.Table]:
    """The unit's documents as tables with COLUMNS (lang null → "und")."""
    inp, p = unit.input, unit.path
    if p.suffix == ".parquet":
        for b in pq.ParquetFile(p).iter_batches(batch_size=batch_size, columns=COLUMNS):
            t = pa.Table.from_batches([b])
            lang = pc.fill_null(t.column("lang").cast(pa.string()), "und")
            yield t.set_column(t.schema.get_field_index("lang"), "lang", lang)
        return
    texts, ids = [], []
    if p.suffix == ".jsonl":
        with open(p, encoding="utf-8") as f:
            for n, line in enumerate(f):
                if line.strip():
                    rec = json.loads(line)
                    texts.append(str(rec.get("text") or ""))
                    ids.append(str(rec.get("id") or f"{unit.key}:{n}"))
    else:
        texts.append(p.read_text(encoding="utf-8", errors="replace"))
        ids.append(unit.key)
    ids = [hashlib.sha256(f"{inp.source}\x00{i}\x00{text_sha256(t)}".encode()).hexdigest()[:32]
           for i, t in zip(ids, texts)]
    n = len(texts)
    for s in range(0, n, batch_size):
        m = min(batch_size, n - s)
        yield pa.table({"id": ids[s:s + m], "text": texts[s:s + m], "source": [inp.source] * m,
                        "license": [_declared(inp, "license")] * m,
                        "jurisdiction": [_declared(inp, "jurisdiction")] * m,
                        "lang": [inp.lang or "und"] * m})


# --- held-out split: soberan.heldout, shared with the tokenizer and evaluate -------------------

def plan_heldout(units_: list[Unit], settings, always: set[str] = frozenset()) -> Split:
    """The held-out split of the units' documents: each input is split on its own (a replay
    corpus's English never changes which Korean paragraphs are held out), then merged."""
    by_input: dict[CorpusInput, list[Unit]] = {}
    for u in units_:
        by_input.setdefault(u.input, []).append(u)
    return merge_splits(*(plan_split((t for u in us for t in read_unit(u)), settings, always)
                           for us in by_input.values()))


def _save_split(split: Split, path: Path) -> None:
    rows = {"doc_id": [], "paragraph": [], "lang": []}
    for d, lang in split.docs.items():
        rows["doc_id"].append(d), rows["paragraph"].append(None), rows["lang"].append(lang)
    for d, idx in split.paragraphs.items():
        for i in sorted(idx):
            rows["doc_id"].append(d), rows["paragraph"].append(i), rows["lang"].append(None)
    t = pa.table({"doc_id": pa.array(rows["doc_id"], pa.string()),
                  "paragraph": pa.array(rows["paragraph"], pa.int32()),
                  "lang": pa.array(rows["lang"], pa.string())})
    write_parquet_atomic(t.replace_schema_metadata({"unit_chars": str(split.unit_chars)}), path)


def _load_split(path: Path) -> Split:
    t = pq.read_table(path)
    split = Split(unit_chars=int(t.schema.metadata[b"unit_chars"]))
    for d, i, lang in zip(*(t.column(c).to_pylist() for c in ("doc_id", "paragraph", "lang"))):
        if i is None:
            split.docs[d] = lang
        else:
            split.paragraphs.setdefault(d, set()).add(i)
    return split


# --- packing ----------------------------------------------------------------------------------

@dataclass
class PackSummary:
    data_dir: Path
    n_tokens: int
    n_docs: int
    heldout_docs: dict[str, int]
    rejected: int
    reused: bool = False
    resumed_units: int = 0


def _tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token to separate documents")
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    head = [bos] if bos is not None else []
    return [head + list(x) + [eos] if x else [] for x in ids]


def pack(inputs: list[CorpusInput], tokenizer, out_dir: Path, *, key: dict,
         heldout: Callable[[list[Unit]], "Split"], on_unit: Callable[[Unit, pa.Table], None] | None = None,
         check: Callable[[pa.Table], None] | None = None, progress=None) -> PackSummary:
    """Tokenize `inputs` into `out_dir/data` (see the module docstring) and write the held-out
    documents to `out_dir/heldout/`. `key` says what the data is made from: equal key and a
    finished pack → reused as is; a different key → packed again from nothing. `heldout(units)`
    returns the held-out split (soberan.heldout); `check(table)` may raise on a policy violation; `on_unit`
    receives each unit's decisions (held-out and rejected documents) for the ledger."""
    data, held_dir = out_dir / "data", out_dir / "heldout"
    meta_p, prog_p = data / "meta.json", data / "progress.json"
    key = {"format": FORMAT, **key}
    meta = read_json(meta_p, default=None)
    if meta and meta.get("key") == key and meta.get("done") and (data / "tokens.bin").exists():
        return PackSummary(data, meta["n_tokens"], meta["n_docs"], meta["heldout_docs"],
                           meta["rejected"], reused=True)
    prog = read_json(prog_p, default=None)
    if not prog or prog.get("key") != key:
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(held_dir, ignore_errors=True)
        prog = {"key": key, "units": {}, "n_tokens": 0, "rejected": 0}
    data.mkdir(parents=True, exist_ok=True)
    parts = data / "parts"
    parts.mkdir(exist_ok=True)
    all_units = units(inputs)
    held_p = data / "heldout_split.parquet"
    if held_p.exists():
        split = _load_split(held_p)
    else:
        split = heldout(all_units)
        _save_split(split, held_p)
    tokens_p = data / "tokens.bin"
    n_tokens = int(prog["n_tokens"])
    # Anything past the last finished unit is a half-written one from a killed run.
    with open(tokens_p, "ab") as f:
        f.truncate(n_tokens * 4)
    resumed = len(prog["units"])
    task = progress.add_task("packing", total=len(all_units), completed=resumed) if progress else None
    for i, unit in enumerate(all_units):
        if unit.key in prog["units"]:
            continue
        doc_parts, held_parts, rejected = [], [], []
        with open(tokens_p, "ab") as f:
            for t in read_unit(unit):
                if check:
                    check(t)
                t, h = apply_split(split, t)
                if h.num_rows:
                    held_parts.append(h)
                # A document whose every paragraph is held out has nothing left, and no rejection.
                t = t.filter(pc.invert(pc.and_(pc.equal(t.column("text"), ""),
                                              pc.is_in(t.column("id"), value_set=pa.array(list(split.paragraphs), pa.string())))))
                if not t.num_rows:
                    continue
                seqs = _tokenize(tokenizer, t.column("text").to_pylist())
                lens = np.array([len(s) for s in seqs], dtype=np.int64)
                empty = lens == 0
                if empty.any():
                    rejected.append(t.filter(pa.array(empty)).select(["id", "source"]))
                    t, lens = t.filter(pa.array(~empty)), lens[~empty]
                    seqs = [s for s in seqs if s]
                if not seqs:
                    continue
                flat = np.concatenate([np.asarray(s, dtype=np.uint32) for s in seqs])
                f.write(flat.tobytes())
                starts = n_tokens + np.concatenate([[0], np.cumsum(lens)[:-1]])
                n_tokens += int(lens.sum())
                doc_parts.append(pa.table({
                    "doc_id": t.column("id"), "source": t.column("source"), "license": t.column("license"),
                    "jurisdiction": t.column("jurisdiction"), "lang": t.column("lang"),
                    "replay": pa.array([unit.input.replay] * t.num_rows),
                    "start": pa.array(starts, pa.int64()), "n_tokens": pa.array(lens, pa.int64()),
                }).cast(DOCS_SCHEMA))
            f.flush()
            os.fsync(f.fileno())
        write_parquet_atomic(pa.concat_tables(doc_parts) if doc_parts else DOCS_SCHEMA.empty_table(),
                             parts / f"{i:06d}.docs.parquet")
        if held_parts:
            write_parquet_atomic(pa.concat_tables(held_parts).cast(HELDOUT_SCHEMA),
                                 parts / f"{i:06d}.heldout.parquet")
        if on_unit:
            on_unit(unit, _decisions(held_parts, rejected))
        prog["units"][unit.key] = i
        prog["n_tokens"] = n_tokens
        prog["rejected"] += sum(r.num_rows for r in rejected)
        write_json(prog_p, prog, indent=1, sort_keys=True)
        if progress:
            progress.advance(task)
    # Finish: one docs table, one held-out file per language, then the key that marks it done.
    docs = pa.concat_tables([pq.read_table(p) for p in sorted(parts.glob("*.docs.parquet"))]).cast(DOCS_SCHEMA)
    write_parquet_atomic(docs, data / "docs.parquet")
    held_tabs = [pq.read_table(p) for p in sorted(parts.glob("*.heldout.parquet"))]
    shutil.rmtree(held_dir, ignore_errors=True)
    counts: dict[str, int] = {}
    if held_tabs:
        ht = pa.concat_tables(held_tabs).cast(HELDOUT_SCHEMA)
        for lang in sorted(set(ht.column("lang").to_pylist())):
            sub = ht.filter(pc.equal(ht.column("lang"), lang))
            write_parquet_atomic(sub, held_dir / f"{lang}.parquet")
            counts[lang] = sub.num_rows  # units: documents, or paragraphs of long documents
    shutil.rmtree(parts, ignore_errors=True)
    meta = {"key": key, "done": True, "n_tokens": n_tokens, "n_docs": docs.num_rows,
            "heldout_docs": counts, "rejected": prog["rejected"], "dtype": "uint32",
            "vocab_size": len(tokenizer)}
    write_json(meta_p, meta, indent=1, sort_keys=True)
    prog_p.unlink(missing_ok=True)
    return PackSummary(data, n_tokens, docs.num_rows, counts, prog["rejected"], resumed_units=resumed)


def _decisions(held: list[pa.Table], rejected: list[pa.Table]) -> pa.Table:
    """The unit's decisions for the ledger, one row per document: held out (whole, or some of its
    paragraphs) and documents with no tokens."""
    rows: dict[str, list] = {"doc_id": [], "source": [], "step": [], "action": [], "rule": [], "reason": []}

    def add(doc, source, step, action, rule, reason):
        for k, v in zip(rows, (doc, source, step, action, rule, reason)):
            rows[k].append(v)

    pars: dict[tuple[str, str], int] = {}
    for t in held:
        for unit, doc, source in zip(*(t.column(c).to_pylist() for c in ("id", "doc_id", "source"))):
            if unit == doc:
                add(doc, source, "heldout", "kept", "heldout",
                    "held out whole for bits-per-byte evaluation; never trained on")
            else:
                pars[(doc, source)] = pars.get((doc, source), 0) + 1
    for (doc, source), n in pars.items():
        add(doc, source, "heldout", "kept", "heldout_paragraphs",
            f"{n} paragraph(s) held out for bits-per-byte evaluation, never trained on; the rest trained")
    for t in rejected:
        for doc, source in zip(t.column("id").to_pylist(), t.column("source").to_pylist()):
            add(doc, source, "pack", "rejected", "empty", "no tokens: the text is empty")
    return pa.table(rows)


# --- reading it back --------------------------------------------------------------------------

@dataclass
class Packed:
    tokens: np.ndarray  # memmap, uint32
    docs: pa.Table
    meta: dict = field(default_factory=dict)


def load_packed(data_dir: Path) -> Packed:
    meta = read_json(data_dir / "meta.json", default=None)
    if not meta or not meta.get("done"):
        raise FileNotFoundError(f"{data_dir}: no finished packed data")
    n = meta["n_tokens"]
    tokens = (np.memmap(data_dir / "tokens.bin", dtype=np.uint32, mode="r", shape=(n,)) if n
              else np.zeros(0, dtype=np.uint32))
    return Packed(tokens, pq.read_table(data_dir / "docs.parquet"), meta)


def read_heldout(heldout_dir: Path, max_bytes: int | None = None) -> dict[str, list[str]]:
    """{lang: texts} of a held-out folder, each language cut to about `max_bytes` of UTF-8."""
    out: dict[str, list[str]] = {}
    for p in sorted(Path(heldout_dir).glob("*.parquet")):
        texts, used = [], 0
        for text in pq.read_table(p, columns=["text"]).column("text").to_pylist():
            if max_bytes is not None and used >= max_bytes:
                break
            b = text.encode("utf-8", "surrogatepass")
            if max_bytes is not None and used + len(b) > max_bytes:
                text = b[:max_bytes - used].decode("utf-8", "ignore")
                b = text.encode("utf-8")
            texts.append(text)
            used += len(b)
        out[p.stem] = texts
    return out
