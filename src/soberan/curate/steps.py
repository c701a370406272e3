"""The per-document steps of `soberan curate`, each on an Arrow table of documents.

A step is a filter (`DocFilter`, or a plain function) that answers one question per document:
its `DocResult` keeps or drops it, perhaps changes its text, and gives the rule and a reason a
person can read. `run_filter` is the one loop over a batch: it turns the results into an
`Outcome` (the rows kept, one decision row per document dropped or changed). Steps know nothing
about shards, workers or the ledger; the runner (`soberan.curate.shard`) counts what each saw,
kept and dropped, and writes the decisions.

Everything language-specific comes from the document's language pack (`soberan.lang`), chosen by
the `lang` column: the source's hint before language ID, its result after.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from soberan.lang import PRESETS, LangPack, char_ngrams, get_pack

if TYPE_CHECKING:
    from soberan.config import Config
    from soberan.curate.config import LangIdSettings, QualitySettings
    from soberan.curate.minhash import MinHashParams

DECISION_COLUMNS = ("doc_id", "source", "lang", "action", "rule", "reason")
# One schema for every decisions table, empty or not: the runner concatenates a shard's batches,
# and Arrow refuses tables whose columns differ in order or type (an empty batch once put `step`
# last and crashed every shard of more than one batch).
DECISION_SCHEMA = pa.schema([("doc_id", pa.string()), ("source", pa.string()), ("lang", pa.string()),
                             ("step", pa.string()), ("action", pa.string()), ("rule", pa.string()),
                             ("reason", pa.string())])

# Columns curate adds to the document schema (DOC_SCHEMA's `lang`/`lang_score` get filled in).
EXTRA_FIELDS = [
    pa.field("pii_types", pa.list_(pa.string())),  # placeholder types redacted in this document
    pa.field("dup_cluster", pa.string()),  # id of the document kept for its duplicate cluster
    pa.field("dup_cluster_size", pa.int32()),  # documents in that cluster before dedup, copies included
]


@dataclass
class Outcome:
    table: pa.Table  # every input row, with the step's changes (text, lang, ...)
    keep: np.ndarray  # bool per row
    decisions: list[tuple[int, str, str, str]]  # (row, action, rule, reason) of dropped/changed rows

    @property
    def kept(self) -> pa.Table:
        return keep_rows(self.table, self.keep)


class Context:
    """What one worker process holds while it runs steps: the config, the lid.176 model, the PII
    rules, the benchmark n-gram index, and a memo of word segmentation shared by every step that
    needs words (quality filters, shingles, decontamination), so a text is segmented once."""

    def __init__(self, ws_root: Path, work_dir: Path | None = None):
        from soberan.workspace import Workspace

        self.ws = Workspace.open(ws_root)
        self.cfg = self.ws.config
        self.cur = self.cfg.curate
        self.work_dir = work_dir
        self.targets = list(self.cfg.project.languages)
        self._words: dict[tuple[str, str], list[str]] = {}
        self._packs: dict[str, LangPack] = {}
        self._pii_rules: dict[tuple[str, ...], tuple] = {}
        self._decontam = None
        self.signals = None  # the shard's ShardSignals (soberan.curate.signals), set by the runner

    # --- packs and words ---------------------------------------------------------------------

    def pack(self, code: str | None) -> LangPack:
        """The document language's pack, with its word segmentation memoized for this batch. A
        language without a pack falls back to character trigrams and the default thresholds."""
        code = code or "und"
        if code not in self._packs:
            try:
                base = get_pack(code)
            except KeyError:
                base = LangPack(code=code, name=f"{code} (no pack: character n-grams)",
                                words=char_ngrams, uses_spaces=False)
            preset = PRESETS[self.cur.quality.preset] if self.cur.quality.preset else {}
            over = self.cur.quality.thresholds.get(base.code)
            if over or preset:  # a preset, then the config's overrides, over the pack's values
                base = replace(base, thresholds={**base.thresholds, **preset, **(over or {})})
            memo, words = self._words, base.words

            def memo_words(text: str, _c=base.code, _w=words) -> list[str]:
                key = (_c, text)
                got = memo.get(key)
                if got is None:
                    got = memo[key] = _w(text)
                return got

            self._packs[code] = replace(base, words=memo_words)
        return self._packs[code]

    def new_batch(self) -> None:
        self._words.clear()

    # --- lazily built resources --------------------------------------------------------------

    def pii_rules(self, languages: tuple[str, ...]):
        """The PII rules of these languages' packs, built once per worker."""
        if languages not in self._pii_rules:
            from soberan.lang.pii import rules_for

            self._pii_rules[languages] = rules_for(languages)
        return self._pii_rules[languages]

    def decontam_index(self):
        if self._decontam is None:
            from soberan.curate.decontam import load_index

            self._decontam = load_index(self)
        return self._decontam


# --- helpers ------------------------------------------------------------------------------------

def set_column(table: pa.Table, name: str, values, type: pa.DataType | None = None) -> pa.Table:
    arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, type=type)
    if type is not None and arr.type != type:
        arr = arr.cast(type)
    i = table.schema.get_field_index(name)
    if i < 0:
        return table.append_column(name, arr)
    return table.set_column(i, table.schema.field(name).with_type(arr.type), arr)


def keep_rows(table: pa.Table, keep: list[bool] | np.ndarray) -> pa.Table:
    mask = np.asarray(keep, dtype=bool)
    return table if mask.all() else table.filter(pa.array(mask))


# --- the filter interface -----------------------------------------------------------------------

class Doc:
    """One document as a filter sees it: its row in the batch, its text and language, the
    worker's Context (packs, signals, PII rules), and the batch's other columns by name."""

    __slots__ = ("row", "text", "lang", "ctx", "_cols")

    def __init__(self, row: int, text: str, lang: str | None, ctx: Context, cols: dict[str, list]):
        self.row, self.text, self.lang, self.ctx, self._cols = row, text, lang, ctx, cols

    @property
    def pack(self) -> LangPack:
        return self.ctx.pack(self.lang)

    def get(self, column: str):
        """The document's value in `column`, one of BASE_COLUMNS or the filter's `reads`/`writes`."""
        return self._cols[column][self.row]

    @property
    def id(self) -> str:
        return self.get("id")

    @property
    def source(self) -> str:
        return self.get("source")


@dataclass(slots=True)
class DocResult:
    """What a filter decides for one document. `text` is its new text (None: unchanged),
    `columns` new values of the filter's other `writes`, and `decisions` the (action, rule,
    reason) rows the ledger records: "dropped" with `keep=False`, "redacted" for a change."""

    keep: bool = True
    text: str | None = None
    columns: dict[str, object] | None = None
    decisions: list[tuple[str, str, str]] = field(default_factory=list)


def drop(rule: str, reason: str, **columns) -> DocResult:
    return DocResult(False, None, columns or None, [("dropped", rule, reason)])


def redact(text: str, rule: str, reason: str, **columns) -> DocResult:
    return DocResult(True, text, columns or None, [("redacted", rule, reason)])


class DocFilter:
    """A per-document step, as datatrove's `BaseFilter`: `run_filter` walks the batch, writes the
    changed columns and collects the decisions; a filter says only what it decides for one
    document (`decide`: None keeps it unchanged). Its settings are its own fields, taken from the
    config where DOC_STEPS builds it. A plain function `(Doc) -> DocResult | None` is a filter too
    (`run_filter` wraps it)."""

    # Columns the filter writes, in this order, with their Arrow types; every written column is
    # rewritten from the batch's values and the results' changes. A filter that only drops
    # documents may set it to {}.
    writes: ClassVar[dict[str, pa.DataType]] = {"text": pa.large_string()}
    reads: ClassVar[tuple[str, ...]] = ()  # other columns `decide` reads through `doc.get`

    def decide(self, doc: Doc) -> DocResult | None:
        raise NotImplementedError

    def end_batch(self, ctx: Context) -> None:
        """Work done once per batch, after its documents (a vectorized computation)."""


@dataclass
class FunctionFilter(DocFilter):
    fn: Callable[[Doc], DocResult | None]

    def decide(self, doc: Doc) -> DocResult | None:
        return self.fn(doc)


BASE_COLUMNS = ("id", "source", "sha256", "text", "lang")


def run_filter(f: DocFilter | Callable[[Doc], DocResult | None], table: pa.Table, ctx: Context) -> Outcome:
    """The one per-document loop: each document through `f`, its results gathered into the
    written columns, the keep mask and the decision rows (the runner counts them)."""
    if not isinstance(f, DocFilter):
        f = FunctionFilter(f)
    names = dict.fromkeys([*BASE_COLUMNS, *f.reads, *f.writes])
    cols = {c: table.column(c).to_pylist() for c in names}
    out = {c: list(cols[c]) for c in f.writes}
    keep = np.ones(table.num_rows, dtype=bool)
    dec: list[tuple[int, str, str, str]] = []
    for i, (t, lang) in enumerate(zip(cols["text"], cols["lang"])):
        r = f.decide(Doc(i, t, lang, ctx, cols))
        if r is None:
            continue
        keep[i] = r.keep
        try:
            if r.text is not None:
                out["text"][i] = r.text
            for c, v in (r.columns or {}).items():
                out[c][i] = v
        except KeyError as e:
            raise TypeError(f"{type(f).__name__} changed column {e}, which is not in its `writes`") from None
        dec.extend((i, *d) for d in r.decisions)
    f.end_batch(ctx)
    for c, type_ in f.writes.items():
        table = set_column(table, c, out[c], type_)
    return Outcome(table, keep, dec)


# --- 1. normalize ------------------------------------------------------------------------------

# Every UTF-8 lead byte (0xC2-0xF4) read through one of the single-byte codecs ftfy repairs
# becomes one of these characters (Latin-1/cp1252 Â-ô, cp1251 Cyrillic, cp437 box drawing), so a
# text with none of them cannot be that kind of mojibake and skips ftfy, the slow part.
_MAYBE_MOJIBAKE = re.compile("[\u00c2-\u00f4\u0400-\u04ff\u2500-\u257f]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_SPACES = re.compile(r"[^\S\n]+")  # whitespace runs other than newlines (NBSP, U+3000, tabs...)
_BLANK_LINES = re.compile(r"\n{3,}")


def _ftfy_config():
    from ftfy import TextFixerConfig

    # Repair encodings, HTML entities and control characters, but leave width, quotes and Unicode
    # form to the language pack: full-width forms and curly quotes are ordinary in CJK text.
    return TextFixerConfig(uncurl_quotes=False, fix_character_width=False, normalization=None,
                           fix_latin_ligatures=False, explain=False)


def normalize_text(text: str, pack: LangPack | None, ftfy_mode: str = "auto") -> str:
    if ftfy_mode == "always" or (ftfy_mode == "auto" and _MAYBE_MOJIBAKE.search(text)):
        import ftfy

        text = ftfy.fix_text(text, _ftfy_config())
    if pack is not None:
        text = pack.normalize(text)
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "\n".join(line.strip() for line in _SPACES.sub(" ", text).split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


@dataclass
class Normalize(DocFilter):
    """Mojibake repair (ftfy, Speer 2019), the pack's Unicode form, whitespace."""

    ftfy: str = "auto"  # NormalizeSettings.ftfy

    def decide(self, doc: Doc) -> DocResult | None:
        n = normalize_text(doc.text, doc.pack if doc.lang else None, self.ftfy)
        if not n:
            return DocResult(False, n, None, [("dropped", "normalize.empty", "no text left after normalization")])
        return DocResult(text=n) if n != doc.text else None


# --- 2. language ID ----------------------------------------------------------------------------

def min_score(s: LangIdSettings, pack: LangPack) -> float:
    """The lid.176 probability a document needs to count as `pack`'s language."""
    if pack.code in s.min_scores:
        return s.min_scores[pack.code]
    if s.min_score is not None:
        return s.min_score
    return float(pack.thresholds.get("language_score", 0.65))


FOREIGN_MIN_SCORE = 0.65  # a line counts as another language only when lid.176 is this sure


def _mixed_lines(text: str, min_line_chars: int, targets: dict[str, str],
                 predict) -> tuple[str, str, float, str]:
    """Split a document by the language of its lines. Returns (text of the target-language lines,
    main target language, their share of the characters, what the other lines were).

    A long line is a target language when lid.176's top label is one, another language when
    lid.176 is sure of it (FOREIGN_MIN_SCORE), and undecided otherwise; undecided and short lines
    (headings, list items, numbers) go with the line before them. `predict`: lid.176 over a list
    of texts (the shard's stored predictions first)."""
    lines = text.split("\n")
    long_idx = [i for i, l in enumerate(lines) if len(l) >= min_line_chars]
    labels, scores = predict([lines[i] for i in long_idx])
    line_lang: list[str | None] = [None] * len(lines)
    for i, lab, sc in zip(long_idx, labels, scores):
        line_lang[i] = targets.get(lab) or (f"~{lab}" if sc >= FOREIGN_MIN_SCORE else None)
    prev = next((x for x in line_lang if x is not None), None)
    for i, x in enumerate(line_lang):
        if x is None:
            line_lang[i] = prev
        else:
            prev = x
    chars: Counter = Counter()
    for l, x in zip(lines, line_lang):
        chars[x] += len(l)
    total = sum(chars.values()) or 1
    target_chars = {k: v for k, v in chars.items() if k and not k.startswith("~")}
    if not target_chars:
        return "", "", 0.0, ", ".join(f"{str(k).lstrip('~')} {v}" for k, v in chars.most_common())
    main = max(target_chars, key=target_chars.get)
    share = sum(target_chars.values()) / total
    kept = "\n".join(l for l, x in zip(lines, line_lang) if x in target_chars)
    removed = ", ".join(f"{str(k).lstrip('~')} {v}" for k, v in chars.most_common() if k not in target_chars)
    return kept, main, share, removed


@dataclass
class LangID(DocFilter):
    """fastText lid.176 on the whole document with per-language confidence thresholds. With
    `mixed = "keep_target_lines"`, a document is also read line by line: lines sure to be in
    another language are cut (kept when the target lines hold `min_target_share` of the
    characters, dropped otherwise), so a mostly-foreign document keeps its target-language part
    and a target-language document loses its foreign boilerplate."""

    s: LangIdSettings
    targets: tuple[str, ...]  # the project's languages
    writes: ClassVar[dict[str, pa.DataType]] = {"text": pa.large_string(), "lang": pa.string(),
                                                "lang_score": pa.float32()}
    reads: ClassVar[tuple[str, ...]] = ("sha256",)
    _labels: dict[str, str] | None = field(default=None, init=False, repr=False)

    def decide(self, doc: Doc) -> DocResult:
        from soberan.curate.langid import predict as lid176

        s, t, ctx = self.s, doc.text, doc.ctx
        # lid.176 is a pure function of the text: a text predicted by the last run is looked up
        predict = lid176 if ctx.signals is None else (lambda texts: ctx.signals.lid(doc.id, texts, lid176))
        (lab,), (sc,) = predict([t])
        if ctx.signals is not None:
            ctx.signals.put(doc.id, source=doc.source, sha256=doc.get("sha256"), lid_label=lab,
                            lid_score=float(sc))
        if self._labels is None:  # lid.176 label -> pack code, for the project's languages
            self._labels = {ctx.pack(c).lid_label: ctx.pack(c).code for c in self.targets}
        targets = self._labels
        code = targets.get(lab)
        passed = bool(code) and sc >= min_score(s, ctx.pack(code))
        if passed:
            why = f"lid.176 says {lab} {sc:.2f}"
        elif code:
            why = f"lid.176 says {lab} {sc:.2f}, below {code}'s threshold {min_score(s, ctx.pack(code)):.2f}"
        else:
            why = f"lid.176 says {lab} {sc:.2f}; targets are {', '.join(self.targets)}"
        split = None
        if s.mixed == "keep_target_lines" and t.count("\n") and (not passed or sum(
                len(l) >= s.min_line_chars for l in t.split("\n")) > 1):
            split = _mixed_lines(t, s.min_line_chars, targets, predict)
        if split is not None and split[0] and split[3]:  # lines in a target and another language
            kept, main, share, removed = split
            if kept and share >= s.min_target_share:
                return redact(kept, "langid.mixed",
                              f"{why}; kept the {share:.0%} of characters in {main} lines, removed "
                              f"lines in: {removed} chars",
                              lang=main, lang_score=share if not passed else sc)
            passed = False
            why += f"; only {share:.0%} of its characters are in target-language lines"
        if passed:
            return DocResult(text=t, columns={"lang": code, "lang_score": sc})
        if split is not None and split[0] and split[3]:
            rule = "langid.mixed"
        else:
            rule = "langid.low_score" if code else "langid.other_language"
        return drop(rule, why, lang=lab, lang_score=sc)


# --- 3. quality --------------------------------------------------------------------------------

@dataclass
class Quality(DocFilter):
    """Line cleanup, then the configured filters (Gopher quality and repetition, Rae et al. 2021;
    FineWeb's, Penedo et al. 2024), each on the document language's own words and thresholds.

    Every statistic of every filter is measured once per document and stored with the shard's
    signals; a document whose text and pack are unchanged since the last run is decided from its
    stored statistics, without being segmented again (soberan.curate.signals)."""

    s: QualitySettings
    # With fuzzy dedup configured, every document segmented here gets its MinHash signature from
    # the same words, kept or dropped: a later, looser threshold keeps it without segmenting it.
    minhash: MinHashParams | None = None
    _sign: list = field(default_factory=list, init=False, repr=False)  # (id, sha, words) to sign
    reads: ClassVar[tuple[str, ...]] = ("sha256",)

    def __post_init__(self):
        self._exempt = frozenset(self.s.exempt_sources)
        self._mh_key = _minhash_key(self.minhash) if self.minhash else None

    def decide(self, doc: Doc) -> DocResult | None:
        from soberan.curate.quality import MissingSignal, clean_lines, decide, quality_signals

        s, store, pack = self.s, doc.ctx.signals, doc.pack
        t, src, did = doc.text, doc.source, doc.id
        mh_key = self._mh_key if store is not None else None
        r = DocResult()
        if s.clean_lines:
            t2, removed = clean_lines(t, pack)
            if removed:
                if not t2.strip():
                    return drop("quality.clean_lines", f"all {removed} lines were boilerplate or navigation")
                r.decisions.append(("redacted", "quality.clean_lines",
                                    f"removed {removed} boilerplate/navigation line{'s' * (removed > 1)}"))
                t = r.text = t2
        sha, stats = store.quality(did, t, pack) if store is not None else ("", None)
        verdict = None
        exempt = src in self._exempt
        try:
            verdict = None if stats is None or exempt else decide(stats, pack, s.filters)
        except MissingSignal:  # a threshold on an n-gram size or line length never measured
            stats = None
        if stats is None:
            words = pack.words(t)
            stats = quality_signals(t, pack, words)
            verdict = None if exempt else decide(stats, pack, s.filters)
            if store is not None:
                store.measured += 1
                if mh_key and not store.carry_minhash(did, sha, mh_key):
                    self._sign.append((did, sha, words))
        elif store is not None:
            store.reused += 1
            if mh_key and not store.carry_minhash(did, sha, mh_key):
                self._sign.append((did, sha, pack.words(t)))  # the MinHash settings changed
        if store is not None:
            store.put(did, sha256=doc.get("sha256"), source=src, lang=doc.lang)
            store.put_quality(did, sha, pack, stats)
        if verdict is not None:
            r.keep = False
            r.decisions.append(("dropped", verdict.rule, verdict.reason))
        return r if r.decisions else None

    def end_batch(self, ctx: Context) -> None:
        """The MinHash signatures of the batch's segmented documents, in one vectorized call."""
        if not self._sign:
            return
        from soberan.curate.dedup import minhash_of

        for (did, sha, _), sig in zip(self._sign, minhash_of([w for *_, w in self._sign], self.minhash)):
            ctx.signals.put_minhash(did, sha, self._mh_key, sig)
        self._sign.clear()


def _minhash_key(params: MinHashParams) -> str:
    from soberan.curate.dedup import params_key

    return params_key(params)


# --- 4. PII ------------------------------------------------------------------------------------

@dataclass
class Pii(DocFilter):
    """Replace personal identifiers by typed placeholders (`<KR_RRN>`). Only the types and counts
    are recorded; the original value is written nowhere."""

    languages: tuple[str, ...]  # whose national formats to redact (PiiSettings.languages or the project's)
    writes: ClassVar[dict[str, pa.DataType]] = {"text": pa.large_string(),
                                                "pii_types": pa.list_(pa.string())}

    def decide(self, doc: Doc) -> DocResult:
        from soberan.lang.pii import redact as redact_pii

        new, types = redact_pii(doc.text, doc.ctx.pii_rules(self.languages))
        merged = sorted(set(doc.get("pii_types") or []) | set(types)) or None
        counts = Counter(types)
        if doc.ctx.signals is not None:
            doc.ctx.signals.put_pii(doc.id, dict(counts))
        if not types:
            return DocResult(text=new, columns={"pii_types": merged})
        return redact(new, "pii", ", ".join(f"{k}×{v}" for k, v in sorted(counts.items())), pii_types=merged)


# --- 7. decontamination ------------------------------------------------------------------------

@dataclass
class Decontam(DocFilter):
    """Drop documents that share long word n-grams with an evaluation benchmark, or, with
    `mode = "lines"`, remove the lines that hold them."""

    mode: str = "document"  # DecontamSettings.mode
    min_kept_share: float = 0.5

    def decide(self, doc: Doc) -> DocResult | None:
        index, t = doc.ctx.decontam_index(), doc.text
        if index is None:
            return None
        hit, kept, removed = index.check(doc.id, t, doc.pack, self.mode == "lines", doc.ctx.signals)
        if hit is None:
            return DocResult(text=kept) if kept != t else None
        share = len(kept.strip()) / max(len(t.strip()), 1)
        if self.mode == "document" or share < self.min_kept_share or not kept.strip():
            why = hit.reason if self.mode == "document" else \
                f"{hit.reason}; only {share:.0%} of the text is outside those lines"
            return drop(f"decontam.{hit.benchmark}", why)
        return redact(kept, f"decontam.{hit.benchmark}",
                      f"{hit.reason}; removed the {removed} line{'s' * (removed > 1)} holding them")


def _quality(cfg) -> Quality:
    from soberan.curate.minhash import MinHashParams

    cur = cfg.curate
    mh = MinHashParams(**cur.fuzzy_dedup.model_dump()) if "fuzzy_dedup" in cur.steps else None
    return Quality(cur.quality, mh)


# Each per-document step, built from the whole config (`Config`): the one place a filter's
# settings are read, so the filter itself holds only its own.
DOC_STEPS: dict[str, Callable[[Config], DocFilter]] = {
    "normalize": lambda cfg: Normalize(cfg.curate.normalize.ftfy),
    "langid": lambda cfg: LangID(cfg.curate.langid, tuple(cfg.project.languages)),
    "quality": _quality,
    "pii": lambda cfg: Pii(tuple(cfg.curate.pii.languages or cfg.project.languages)),
    "decontam": lambda cfg: Decontam(cfg.curate.decontam.mode, cfg.curate.decontam.min_kept_share),
}

CORPUS_STEPS = ("exact_dedup", "fuzzy_dedup")


def decisions_table(table: pa.Table, decisions: list[tuple[int, str, str, str]], step: str) -> pa.Table:
    """Decision rows (doc_id, source, lang, step, action, rule, reason) for the rows named."""
    if not decisions:
        return DECISION_SCHEMA.empty_table()
    idx = pa.array([d[0] for d in decisions], pa.int64())
    return pa.Table.from_pydict({
        "doc_id": pc.take(table.column("id"), idx),
        "source": pc.take(table.column("source"), idx),
        "lang": pc.take(table.column("lang"), idx),
        "step": pa.array([step] * len(decisions), pa.string()),
        "action": pa.array([d[1] for d in decisions], pa.string()),
        "rule": pa.array([d[2] for d in decisions], pa.string()),
        "reason": pa.array([d[3] for d in decisions], pa.string()),
    }).cast(DECISION_SCHEMA)
