"""The curated corpus as the tokenizer stage reads it: which units are held out to measure
fertility, which text teaches the tokenizer, and word counts cached per shard so a killed run
resumes.

The held-out units are the workspace's one split (`soberan.heldout`, `[heldout]`), the same that
the train stage holds out and evaluate scores on: text held out anywhere never teaches the
tokenizer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from soberan import heldout
from soberan.common import json_sha256
from soberan.documents import iter_batches, shard_paths, write_parquet_atomic

ROLE_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("source", pa.string()),
    pa.field("lang", pa.string()),
    pa.field("chars", pa.int64()),
    pa.field("role", pa.string(), nullable=False),  # train | held_out
])
COLUMNS = ["id", "text", "lang", "source"]


@dataclass
class Plan:
    languages: list[str]
    split: heldout.Split = field(default_factory=heldout.Split)
    docs_per_lang: dict[str, int] = field(default_factory=dict)

    @property
    def held_out_units(self) -> int:
        return sum(v for k, v in self.split.units.items() if k in self.languages)

    def trainable_docs(self) -> int:
        """Documents of the target languages with some text left to learn from."""
        whole = sum(1 for lang in self.split.docs.values() if lang in self.languages)
        return sum(self.docs_per_lang.get(k, 0) for k in self.languages) - whole


def plan(folder: Path, languages: list[str], settings: heldout.HeldoutSettings) -> Plan:
    """The workspace's held-out split of the curated corpus, for the target languages."""
    split = heldout.plan(iter_batches(folder, columns=["id", "text", "lang"]), settings)
    return Plan(languages, split, {k: v for k, v in split.documents.items() if k in languages})


def held_out_texts(folder: Path, p: Plan) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for b in iter_batches(folder, columns=COLUMNS):
        _, held = heldout.apply(p.split, pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b)
        for text, lang in zip(held.column("text").to_pylist(), held.column("lang").to_pylist()):
            if lang in p.languages:
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
    """The shard's trainable text (held-out units removed); a role row for what was held out and
    for each document read."""
    import pyarrow.parquet as pq

    used = 0
    for b in pq.ParquetFile(shard).iter_batches(batch_size=2048, columns=COLUMNS):
        train, held = heldout.apply(p.split, pa.Table.from_batches([b]))
        for doc, text, lang, source in zip(*(held.column(c).to_pylist() for c in ("doc_id", "text", "lang", "source"))):
            if lang in p.languages:
                roles.append({"id": doc, "source": source, "lang": lang, "chars": len(text), "role": "held_out"})
        for i, text, lang, source in zip(*(train.column(c).to_pylist() for c in COLUMNS)):
            if lang not in p.languages or not text:
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
        h = json_sha256([key, shard.name, stat.st_size, stat.st_mtime_ns, max_chars - used if max_chars else 0])[:24]
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
