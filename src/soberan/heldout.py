"""One held-out split for every stage: the text no stage may learn from, and that bits per byte
and fertility are measured on.

The tokenizer, the train stage and evaluate all take their held-out text from `plan` and
`apply` below, so a unit that one stage holds out never teaches the tokenizer or the model. The
split depends only on the corpus and `[heldout]`, never on shard order or the machine: each
unit's place is a hash of its id.

A unit is a whole document when a language has documents enough; otherwise a paragraph unit of
a long document (consecutive lines, merged until `unit_chars` characters). A national lab's
corpus has millions of documents and holds out whole ones; a demo corpus of eleven statutes has
too few documents for a confidence interval, so it holds out paragraphs and trains on the rest
of each statute. Both are "units" to evaluate, and a CI is drawn over them (>= `min_units`).
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["HeldoutSettings", "Split", "plan", "apply", "merge", "paragraphs", "unit_rank", "SCHEMA"]

# What a stage writes for its held-out units: one row per unit.
SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),  # the document id, or "<doc id>:<paragraph>"
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("text", pa.large_string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("lang", pa.string(), nullable=False),
])


class HeldoutSettings(BaseModel):
    """The one held-out split: text no stage learns from (not the tokenizer, not the model), on
    which bits per byte and fertility are measured. Per language: whole documents while that takes
    at most `max_doc_share` of them, else paragraph units (lines merged to `unit_chars`
    characters), ranked by a hash of their id."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    fraction: float = Field(0.02, ge=0.0, lt=1.0)
    """Share of each language's documents held out (of its paragraph units in paragraph mode)."""
    min_units: int = Field(30, ge=0)
    """Units per language a confidence interval needs; more are held out when the share gives
    fewer."""
    max_units: int = Field(1000, ge=1)
    """At most this many units per language."""
    max_doc_share: float = Field(0.1, gt=0.0, le=0.5)
    """Whole documents are held out while that takes at most this share of a language's
    documents; past it, paragraph units of its documents are held out instead."""
    unit_chars: int = Field(200, ge=1)
    """Paragraph units: consecutive lines merged until they have at least this many characters."""


def unit_rank(unit_id: str) -> float:
    """A unit's place in [0, 1): a hash of its stable id, the same on every run and machine."""
    return int.from_bytes(hashlib.sha256(b"heldout\x00" + unit_id.encode()).digest()[:8], "big") / 2**64


def paragraphs(text: str, unit_chars: int) -> list[str]:
    """`text` cut at line ends into units of at least `unit_chars` characters (the last may be
    shorter); "".join(paragraphs(t, n)) == t, so the rest of a document trains unchanged."""
    out, cur = [], ""
    for line in text.splitlines(keepends=True):
        cur += line
        if len(cur.strip()) >= unit_chars:
            out.append(cur)
            cur = ""
    if cur:
        if out and not cur.strip():
            out[-1] += cur  # trailing blank lines stay with the last unit
        else:
            out.append(cur)
    return out


@dataclass
class Split:
    """Which units are held out: whole documents, and paragraph units of others."""

    docs: dict[str, str] = field(default_factory=dict)  # doc id -> lang, held out whole
    paragraphs: dict[str, set[int]] = field(default_factory=dict)  # doc id -> held-out paragraph indices
    unit_chars: int = 200
    mode: dict[str, str] = field(default_factory=dict)  # lang -> "documents" | "paragraphs"
    units: dict[str, int] = field(default_factory=dict)  # lang -> held-out units
    documents: dict[str, int] = field(default_factory=dict)  # lang -> documents seen

    def touches(self) -> set[str]:
        """Every document id with any held-out text."""
        return set(self.docs) | set(self.paragraphs)

    def key(self) -> str:
        """A digest of the split, for caches that must change when it does."""
        h = hashlib.sha256(str(self.unit_chars).encode())
        for d in sorted(self.docs):
            h.update(b"d" + d.encode())
        for d in sorted(self.paragraphs):
            h.update(b"p" + d.encode() + repr(sorted(self.paragraphs[d])).encode())
        return h.hexdigest()


def plan(batches: Iterable[pa.Table | pa.RecordBatch], s: HeldoutSettings,
         always: Iterable[str] = ()) -> Split:
    """The split of one corpus, from batches with `id`, `text` and `lang` columns, in one pass.

    Per language: whole documents when `fraction` of them (at least `min_units`) is at most
    `max_doc_share` of them; else paragraph units (at least `min_units`, at most a quarter of
    them). Lowest ranks first, at most `max_units`; memory is bounded by `max_units` per language.
    A document of `always` (held out by an earlier run) is held out whole whatever its rank.
    """
    always = set(always)
    docs_heap: dict[str, list] = {}  # lang -> max-heap (negated rank) of the lowest doc ranks
    par_heap: dict[str, list] = {}
    n_docs: dict[str, int] = {}
    n_par: dict[str, int] = {}
    forced: dict[str, str] = {}
    cap = s.max_units

    def push(heap: list, rank: float, item) -> None:
        if len(heap) < cap:
            heapq.heappush(heap, (-rank, item))
        elif -heap[0][0] > rank:
            heapq.heapreplace(heap, (-rank, item))

    for b in batches:
        ids, texts, langs = (b.column(c).to_pylist() for c in ("id", "text", "lang"))
        for doc, text, lang in zip(ids, texts, langs):
            lang = lang or "und"
            n_docs[lang] = n_docs.get(lang, 0) + 1
            if doc in always:
                forced[doc] = lang
                continue
            push(docs_heap.setdefault(lang, []), unit_rank(doc), doc)
            pars = paragraphs(text or "", s.unit_chars)
            n_par[lang] = n_par.get(lang, 0) + len(pars)
            heap = par_heap.setdefault(lang, [])
            for i in range(len(pars)):
                push(heap, unit_rank(f"{doc}:{i}"), (doc, i))

    out = Split(docs=dict(forced), unit_chars=s.unit_chars, documents=dict(n_docs))
    for lang, n in n_docs.items():
        free = n - sum(1 for v in forced.values() if v == lang)
        want = min(cap, max(round(s.fraction * free), s.min_units)) if s.fraction > 0 else 0
        if want and want <= s.max_doc_share * free:
            chosen = sorted(docs_heap.get(lang, []), reverse=True)[:want]
            out.docs.update({d: lang for _, d in chosen})
            out.mode[lang], out.units[lang] = "documents", len(chosen)
            continue
        p = n_par.get(lang, 0)
        k = min(want, p // 4) if p >= 2 else 0
        if want and p >= 2:
            k = max(k, 1)
        for _, (d, i) in sorted(par_heap.get(lang, []), reverse=True)[:k]:
            out.paragraphs.setdefault(d, set()).add(i)
        out.mode[lang], out.units[lang] = "paragraphs", k
    for lang in set(forced.values()):
        out.units[lang] = out.units.get(lang, 0) + sum(1 for v in forced.values() if v == lang)
    return out


def merge(*splits: Split) -> Split:
    """Splits of several corpora (a curated corpus and a replay corpus) as one."""
    out = Split(unit_chars=splits[0].unit_chars if splits else 200)
    for sp in splits:
        out.docs.update(sp.docs)
        for d, idx in sp.paragraphs.items():
            out.paragraphs.setdefault(d, set()).update(idx)
        for lang, v in sp.units.items():
            out.units[lang] = out.units.get(lang, 0) + v
        for lang, v in sp.documents.items():
            out.documents[lang] = out.documents.get(lang, 0) + v
        out.mode.update(sp.mode)
    return out


def apply(split: Split, t: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(what may be trained on, the held-out units as SCHEMA rows) of a table with `id`, `text`,
    `source` and `lang` columns. A document with held-out paragraphs trains on its other lines."""
    ids = t.column("id")
    whole = pc.is_in(ids, value_set=pa.array(list(split.docs), pa.string()))
    partial = pc.is_in(ids, value_set=pa.array(list(split.paragraphs), pa.string()))
    held: dict[str, list] = {k: [] for k in SCHEMA.names}

    def add(unit: str, doc: str, text: str, source: str, lang: str) -> None:
        for k, v in zip(SCHEMA.names, (unit, doc, text, source, lang)):
            held[k].append(v)

    w = t.filter(whole)
    for doc, text, source, lang in zip(*(w.column(c).to_pylist() for c in ("id", "text", "source", "lang"))):
        add(doc, doc, text, source, lang or "und")
    train = t.filter(pc.invert(whole))
    if pc.any(partial).as_py():
        texts = train.column("text").to_pylist()
        cols = [train.column(c).to_pylist() for c in ("id", "source", "lang")]
        for r, (doc, source, lang) in enumerate(zip(*cols)):
            idx = split.paragraphs.get(doc)
            if not idx:
                continue
            pars = paragraphs(texts[r] or "", split.unit_chars)
            for i in sorted(idx):
                if i < len(pars):
                    add(f"{doc}:{i}", doc, pars[i], source, lang or "und")
            texts[r] = "".join(p for i, p in enumerate(pars) if i not in idx)
        pos = train.schema.get_field_index("text")
        train = train.set_column(pos, train.schema.field(pos), pa.array(texts, train.schema.field(pos).type))
    return train, pa.table(held, schema=SCHEMA)
