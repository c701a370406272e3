"""The curated corpus as the tokenizer stage reads it: which documents are held out to measure
fertility, which teach the tokenizer, and word counts cached per shard so a killed run resumes.

Held-out documents are chosen by a hash of their id, per language, so the choice is the same on
every run and every machine and never depends on shard order.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from soberan.documents import iter_batches, shard_paths, write_parquet_atomic

MAX_HELD_OUT_DOCS = 1000  # per language; plenty for a stable tokens-per-character figure
ROLE_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("source", pa.string()),
    pa.field("lang", pa.string()),
    pa.field("chars", pa.int64()),
    pa.field("role", pa.string(), nullable=False),  # train | held_out
])


@dataclass
class Plan:
    languages: list[str]
    held_out: set[str] = field(default_factory=set)  # document ids kept for measurement
    docs_per_lang: dict[str, int] = field(default_factory=dict)


def _rank(doc_id: str) -> bytes:
    return hashlib.blake2b(doc_id.encode(), digest_size=8).digest()


def plan(folder: Path, languages: list[str], share: float) -> Plan:
    """Pick the held-out documents of each target language: `share` of them, at least one where a
    language has two or more, at most MAX_HELD_OUT_DOCS."""
    by_lang: dict[str, list[str]] = {}
    for b in iter_batches(folder, columns=["id", "lang"]):
        for i, lang in zip(b.column(0).to_pylist(), b.column(1).to_pylist()):
            if lang in languages:
                by_lang.setdefault(lang, []).append(i)
    p = Plan(languages, docs_per_lang={k: len(v) for k, v in by_lang.items()})
    for lang, ids in by_lang.items():
        k = min(MAX_HELD_OUT_DOCS, max(1 if len(ids) >= 2 and share > 0 else 0, round(share * len(ids))))
        p.held_out.update(sorted(ids, key=_rank)[:k])
    return p


def held_out_texts(folder: Path, p: Plan) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for b in iter_batches(folder, columns=["id", "text", "lang"]):
        for i, text, lang in zip(*(c.to_pylist() for c in b.columns)):
            if i in p.held_out:
                out.setdefault(lang, []).append(text)
    return out


def training_texts(folder: Path, p: Plan, max_chars: int, roles: list[dict]) -> Iterator[str]:
    """Texts of the training documents, shard by shard, until `max_chars` (0: all); appends one
    role row per document read (trained on or held out) to `roles`."""
    used = 0
    for shard in shard_paths(folder):
        if max_chars and used >= max_chars:
            return
        mine: list[dict] = []
        yield from _shard_texts(shard, p, mine, max_chars - used if max_chars else None)
        roles.extend(mine)
        used += _used(mine)


def _used(roles: list[dict]) -> int:
    return sum(r["chars"] for r in roles if r["role"] == "train")


def _shard_texts(shard: Path, p: Plan, roles: list[dict], budget: int | None) -> Iterator[str]:
    import pyarrow.parquet as pq

    used = 0
    cols = ["id", "text", "lang", "source"]
    for b in pq.ParquetFile(shard).iter_batches(batch_size=2048, columns=cols):
        for i, text, lang, source in zip(*(b.column(c).to_pylist() for c in cols)):
            if lang not in p.languages:
                continue
            if i in p.held_out:
                roles.append({"id": i, "source": source, "lang": lang, "chars": len(text), "role": "held_out"})
                continue
            if budget is not None and used >= budget:
                return
            roles.append({"id": i, "source": source, "lang": lang, "chars": len(text), "role": "train"})
            used += len(text)
            yield text


def write_roles(roles: list[dict], path: Path) -> Path:
    table = pa.Table.from_pylist(roles, schema=ROLE_SCHEMA) if roles else ROLE_SCHEMA.empty_table()
    return write_parquet_atomic(table, path)


# --- word counts, cached per shard --------------------------------------------------------------

def cached_counts(folder: Path, p: Plan, count: Callable[[Iterator[str]], Counter], cache: Path,
                  key: str, max_chars: int, roles: list[dict],
                  on_shard: Callable[[], None] | None = None) -> Counter:
    """Word counts of the training documents, shard by shard. Each shard's counts and role rows
    are saved under `cache` (keyed by `key`, the base tokenizer and settings, and the shard's own
    size and time), so a run killed halfway redoes only the shards it had not finished."""
    import pyarrow.parquet as pq

    total: Counter = Counter()
    used = 0
    for shard in shard_paths(folder):
        stat = shard.stat()
        if max_chars and used >= max_chars:
            break
        h = hashlib.sha256(json.dumps([key, shard.name, stat.st_size, stat.st_mtime_ns,
                                       max_chars - used if max_chars else 0]).encode()).hexdigest()[:24]
        counts_f, roles_f = cache / f"{h}.counts.parquet", cache / f"{h}.roles.parquet"
        if counts_f.exists() and roles_f.exists():
            t = pq.read_table(counts_f)
            total.update(dict(zip(t.column("word").to_pylist(), t.column("count").to_pylist())))
            mine = pq.read_table(roles_f).to_pylist()
        else:
            mine: list[dict] = []
            budget = (max_chars - used) if max_chars else None
            c = count(_shard_texts(shard, p, mine, budget))
            write_parquet_atomic(pa.table({"word": pa.array(list(c), pa.large_string()),
                                           "count": pa.array(list(c.values()), pa.int64())}), counts_f)
            write_roles(mine, roles_f)  # written last: its presence marks the shard done
            total.update(c)
        roles.extend(mine)
        used += _used(mine)
        if on_shard:
            on_shard()
    return total
