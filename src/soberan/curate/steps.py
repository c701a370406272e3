"""The per-document steps of `soberan curate`, each on an Arrow table of documents.

A step answers one question per document and returns an `Outcome`: the rows it kept (their text
perhaps changed) and one decision row per document it dropped or changed, with the rule and a
reason a person can read. Steps know nothing about shards, workers or the ledger; the runner
(`soberan.curate.shard`) counts what each saw, kept and dropped, and writes the decisions.

Everything language-specific comes from the document's language pack (`soberan.lang`), chosen by
the `lang` column: the source's hint before language ID, its result after.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from soberan.lang import PRESETS, LangPack, char_ngrams, get_pack

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
        self._pii_rules = None
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

    def pii_rules(self):
        if self._pii_rules is None:
            from soberan.lang.pii import rules_for

            self._pii_rules = rules_for(self.cur.pii.languages or self.targets)
        return self._pii_rules

    def decontam_index(self):
        if self._decontam is None:
            from soberan.curate.decontam import load_index

            self._decontam = load_index(self)
        return self._decontam


# --- helpers ------------------------------------------------------------------------------------

def texts(table: pa.Table) -> list[str]:
    return table.column("text").to_pylist()


def langs(table: pa.Table) -> list[str | None]:
    return table.column("lang").to_pylist()


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


def normalize(table: pa.Table, ctx: Context) -> Outcome:
    """Mojibake repair (ftfy, Speer 2019), the pack's Unicode form, whitespace."""
    mode = ctx.cur.normalize.ftfy
    out, keep, dec = [], [], []
    for i, (t, lang) in enumerate(zip(texts(table), langs(table))):
        pack = ctx.pack(lang) if lang else None
        n = normalize_text(t, pack, mode)
        out.append(n)
        keep.append(bool(n))
        if not n:
            dec.append((i, "dropped", "normalize.empty", "no text left after normalization"))
    table = set_column(table, "text", out, pa.large_string())
    return Outcome(table, np.asarray(keep, dtype=bool), dec)


# --- 2. language ID ----------------------------------------------------------------------------

def _min_score(ctx: Context, code: str) -> float:
    s = ctx.cur.langid
    if code in s.min_scores:
        return s.min_scores[code]
    if s.min_score is not None:
        return s.min_score
    return float(ctx.pack(code).thresholds.get("language_score", 0.65))


def _target_labels(ctx: Context) -> dict[str, str]:
    """lid.176 label -> pack code, for the project's languages."""
    return {ctx.pack(c).lid_label: ctx.pack(c).code for c in ctx.targets}


FOREIGN_MIN_SCORE = 0.65  # a line counts as another language only when lid.176 is this sure


def _mixed_lines(text: str, ctx: Context, targets: dict[str, str]) -> tuple[str, str, float, str]:
    """Split a document by the language of its lines. Returns (text of the target-language lines,
    main target language, their share of the characters, what the other lines were).

    A long line is a target language when lid.176's top label is one, another language when
    lid.176 is sure of it (FOREIGN_MIN_SCORE), and undecided otherwise; undecided and short lines
    (headings, list items, numbers) go with the line before them."""
    from soberan.curate.langid import predict

    s = ctx.cur.langid
    lines = text.split("\n")
    long_idx = [i for i, l in enumerate(lines) if len(l) >= s.min_line_chars]
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


def langid(table: pa.Table, ctx: Context) -> Outcome:
    """fastText lid.176 on the whole document with per-language confidence thresholds. With
    `mixed = "keep_target_lines"`, a document is also read line by line: lines sure to be in
    another language are cut (kept when the target lines hold `min_target_share` of the
    characters, dropped otherwise), so a mostly-foreign document keeps its target-language part
    and a target-language document loses its foreign boilerplate."""
    from soberan.curate.langid import predict

    s = ctx.cur.langid
    targets = _target_labels(ctx)
    txt = texts(table)
    labels, scores = predict(txt)
    if ctx.signals is not None:
        for did, src, sha, lab, sc in zip(table.column("id").to_pylist(), table.column("source").to_pylist(),
                                          table.column("sha256").to_pylist(), labels, scores):
            ctx.signals.put(did, source=src, sha256=sha, lid_label=lab, lid_score=float(sc))
    out_text, out_lang, out_score, keep, dec = [], [], [], [], []
    for i, (t, lab, sc) in enumerate(zip(txt, labels, scores)):
        code = targets.get(lab)
        passed = bool(code) and sc >= _min_score(ctx, code)
        if passed:
            why = f"lid.176 says {lab} {sc:.2f}"
        elif code:
            why = f"lid.176 says {lab} {sc:.2f}, below {code}'s threshold {_min_score(ctx, code):.2f}"
        else:
            why = f"lid.176 says {lab} {sc:.2f}; targets are {', '.join(ctx.targets)}"
        split = None
        if s.mixed == "keep_target_lines" and t.count("\n") and (not passed or sum(
                len(l) >= s.min_line_chars for l in t.split("\n")) > 1):
            split = _mixed_lines(t, ctx, targets)
        if split is not None and split[0] and split[3]:  # lines in a target and another language
            kept, main, share, removed = split
            if kept and share >= s.min_target_share:
                out_text.append(kept), out_lang.append(main), out_score.append(share if not passed else sc)
                keep.append(True)
                dec.append((i, "redacted", "langid.mixed",
                            f"{why}; kept the {share:.0%} of characters in {main} lines, removed "
                            f"lines in: {removed} chars"))
                continue
            passed = False
            why += f"; only {share:.0%} of its characters are in target-language lines"
        if passed:
            out_text.append(t), out_lang.append(code), out_score.append(sc), keep.append(True)
            continue
        if split is not None and split[0] and split[3]:
            rule = "langid.mixed"
        else:
            rule = "langid.low_score" if code else "langid.other_language"
        out_text.append(t), out_lang.append(lab), out_score.append(sc), keep.append(False)
        dec.append((i, "dropped", rule, why))
    table = set_column(table, "text", out_text, pa.large_string())
    table = set_column(table, "lang", out_lang, pa.string())
    table = set_column(table, "lang_score", out_score, pa.float32())
    return Outcome(table, np.asarray(keep, dtype=bool), dec)


# --- 3. quality --------------------------------------------------------------------------------

def quality(table: pa.Table, ctx: Context) -> Outcome:
    """Line cleanup, then the configured filters (Gopher quality and repetition, Rae et al. 2021;
    FineWeb's, Penedo et al. 2024), each on the document language's own words and thresholds.

    Every statistic of every filter is measured once per document and stored with the shard's
    signals; a document whose text and pack are unchanged since the last run is decided from its
    stored statistics, without being segmented again (soberan.curate.signals)."""
    from soberan.curate.quality import MissingSignal, clean_lines, decide, quality_signals

    s = ctx.cur.quality
    store = ctx.signals
    out_text, keep, dec = [], [], []
    exempt = set(s.exempt_sources)
    sources = table.column("source").to_pylist()
    ids = table.column("id").to_pylist()
    shas = table.column("sha256").to_pylist()
    # With fuzzy dedup configured, every document segmented here gets its MinHash signature from
    # the same words, kept or dropped: a later, looser threshold keeps it without segmenting it.
    mh_key, sign = None, []
    if store is not None and "fuzzy_dedup" in ctx.cur.steps:
        from soberan.curate.dedup import params_key
        from soberan.curate.minhash import MinHashParams

        params = MinHashParams(**ctx.cur.fuzzy_dedup.model_dump())
        mh_key = params_key(params)
    for i, (t, lang, src, did) in enumerate(zip(texts(table), langs(table), sources, ids)):
        pack = ctx.pack(lang)
        if s.clean_lines:
            t2, removed = clean_lines(t, pack)
            if removed:
                if not t2.strip():
                    out_text.append(t), keep.append(False)
                    dec.append((i, "dropped", "quality.clean_lines",
                                f"all {removed} lines were boilerplate or navigation"))
                    continue
                dec.append((i, "redacted", "quality.clean_lines",
                            f"removed {removed} boilerplate/navigation line{'s' * (removed > 1)}"))
                t = t2
        sha, stats = store.quality(did, t, pack) if store is not None else ("", None)
        verdict = None
        try:
            verdict = None if stats is None or src in exempt else decide(stats, pack, s.filters)
        except MissingSignal:  # a threshold on an n-gram size or line length never measured
            stats = None
        if stats is None:
            words = pack.words(t)
            stats = quality_signals(t, pack, words)
            verdict = None if src in exempt else decide(stats, pack, s.filters)
            if store is not None:
                store.measured += 1
                if mh_key and not store.carry_minhash(did, sha, mh_key):
                    sign.append((did, sha, words))
        elif store is not None:
            store.reused += 1
            if mh_key and not store.carry_minhash(did, sha, mh_key):
                sign.append((did, sha, pack.words(t)))  # the MinHash settings changed
        if store is not None:
            store.put(did, sha256=shas[i], source=src, lang=lang)
            store.put_quality(did, sha, pack, stats)
        out_text.append(t)
        keep.append(verdict is None)
        if verdict is not None:
            dec.append((i, "dropped", verdict.rule, verdict.reason))
    if sign:
        from soberan.curate.dedup import minhash_of

        for (did, sha, _), sig in zip(sign, minhash_of([w for *_, w in sign], params)):
            store.put_minhash(did, sha, mh_key, sig)
    table = set_column(table, "text", out_text, pa.large_string())
    return Outcome(table, np.asarray(keep, dtype=bool), dec)


# --- 4. PII ------------------------------------------------------------------------------------

def pii(table: pa.Table, ctx: Context) -> Outcome:
    """Replace personal identifiers by typed placeholders (`<KR_RRN>`). Only the types and counts
    are recorded; the original value is written nowhere."""
    from soberan.lang.pii import redact

    rules = ctx.pii_rules()
    old_types = table.column("pii_types").to_pylist()
    out_text, out_types, dec = [], [], []
    ids = table.column("id").to_pylist()
    for i, t in enumerate(texts(table)):
        new, types = redact(t, rules)
        out_text.append(new)
        prev = old_types[i] or []
        out_types.append(sorted(set(prev) | set(types)) or None)
        if ctx.signals is not None:
            ctx.signals.put(ids[i], pii_counts=list(Counter(types).items()))
        if types:
            counts = Counter(types)
            dec.append((i, "redacted", "pii",
                        ", ".join(f"{k}×{v}" for k, v in sorted(counts.items()))))
    table = set_column(table, "text", out_text, pa.large_string())
    table = set_column(table, "pii_types", out_types, pa.list_(pa.string()))
    return Outcome(table, np.ones(table.num_rows, dtype=bool), dec)


# --- 7. decontamination ------------------------------------------------------------------------

def decontam(table: pa.Table, ctx: Context) -> Outcome:
    """Drop documents that share long word n-grams with an evaluation benchmark, or, with
    `mode = "lines"`, remove the lines that hold them."""
    index = ctx.decontam_index()
    s = ctx.cur.decontam
    out, keep, dec = [], [], []
    for i, (t, lang) in enumerate(zip(texts(table), langs(table))):
        pack = ctx.pack(lang)
        if index is None:
            hit, kept, removed = None, t, 0
        elif s.mode == "lines":
            kept, removed, hit = index.contaminated_lines(t, pack)
        else:
            hit, kept, removed = index.match(t, pack), t, 0
        share = len(kept.strip()) / max(len(t.strip()), 1)
        if hit is not None and (s.mode == "document" or share < s.min_kept_share or not kept.strip()):
            out.append(t), keep.append(False)
            why = hit.reason if s.mode == "document" else \
                f"{hit.reason}; only {share:.0%} of the text is outside those lines"
            dec.append((i, "dropped", f"decontam.{hit.benchmark}", why))
            continue
        out.append(kept), keep.append(True)
        if hit is not None:
            dec.append((i, "redacted", f"decontam.{hit.benchmark}",
                        f"{hit.reason}; removed the {removed} line{'s' * (removed > 1)} holding them"))
    table = set_column(table, "text", out, pa.large_string())
    return Outcome(table, np.asarray(keep, dtype=bool), dec)


DOC_STEPS: dict[str, Callable[[pa.Table, Context], Outcome]] = {
    "normalize": normalize, "langid": langid, "quality": quality, "pii": pii, "decontam": decontam,
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
