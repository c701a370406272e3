"""Heuristic quality filters, computed on the language's own words with the pack's thresholds.

Each filter answers one question about one document: keep it (`None`) or drop it with a
`Verdict` whose reason a person can read ("42 words < min_words 50"). The rules are those of
- Gopher: Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from Training
  Gopher", appendix A.1.1 (quality filters) and table A1 (repetition);
- FineWeb: Penedo et al. 2024, "The FineWeb Datasets", section 3.4 (custom filters);
and their per-language thresholds come from FineWeb2's configs (Penedo et al. 2025, "FineWeb2:
One Pipeline to Scale Them All"), stored in each language pack, never here. The statistics follow
datatrove's implementations (the code FineWeb and FineWeb2 ran), so the published thresholds mean
the same thing here; differences are noted where they are.

Segmentation is the expensive part, so every filter takes an optional precomputed `words`;
`run_filters` segments once and runs the filters a config names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from soberan.curate.minhash import combine, word_hashes
from soberan.lang import COMMON_BOILERPLATE, LangPack


@dataclass(frozen=True)
class Verdict:
    """Why a document was dropped: the rule's name (stable, for counting) and a reason a person
    can read, with the measured value and the threshold it broke."""

    rule: str
    reason: str


def _t(pack: LangPack, key: str):
    return pack.thresholds.get(key)


def _is_symbol(w: str) -> bool:
    """A token made of punctuation and symbols only (no letter or digit)."""
    return not any(c.isalnum() for c in w)


# Bullet marks at the start of a line (Gopher: "lines starting with a bullet point").
_BULLETS = ("•", "-", "*", "●", "◦", "▪", "‣", "·", "–", "⁃", "○", "■", "□", "➢", "✓")


def gopher_quality(text: str, pack: LangPack, words: Sequence[str] | None = None) -> Verdict | None:
    """Gopher's quality filters (Rae et al. 2021, A.1.1): word count, mean word length, hash and
    ellipsis per word, bullet and ellipsis line shares, share of words holding a letter, and at
    least `min_stop_words` of the language's stop words.

    "Letter" is any Unicode letter (str.isalpha), so the rule works for Hangul, Thai and Arabic,
    which have no case; Gopher wrote it for the Latin alphabet."""
    words = pack.words(text) if words is None else words
    n = len(words)
    content = [w for w in words if not _is_symbol(w)]
    nc = len(content)
    lo, hi = _t(pack, "min_words"), _t(pack, "max_words")
    if lo and nc < lo:
        return Verdict("gopher_short_doc", f"{nc} words < min_words {lo}")
    if hi and nc > hi:
        return Verdict("gopher_long_doc", f"{nc} words > max_words {hi}")
    if nc == 0:
        return Verdict("gopher_short_doc", "no words")
    mean = sum(len(w) for w in content) / nc
    lo, hi = _t(pack, "min_avg_word_length"), _t(pack, "max_avg_word_length")
    if lo and mean < lo:
        return Verdict("gopher_below_avg_threshold", f"mean word length {mean:.2f} < min_avg_word_length {lo}")
    if hi and mean > hi:
        return Verdict("gopher_above_avg_threshold", f"mean word length {mean:.2f} > max_avg_word_length {hi}")
    mx = _t(pack, "max_symbol_word_ratio")
    if mx:
        r = text.count("#") / n
        if r > mx:
            return Verdict("gopher_too_many_hashes", f"'#' per word {r:.3f} > max_symbol_word_ratio {mx}")
        r = (text.count("...") + text.count("…")) / n
        if r > mx:
            return Verdict("gopher_too_many_ellipsis", f"ellipses per word {r:.3f} > max_symbol_word_ratio {mx}")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines:
        mx = _t(pack, "max_bullet_lines_ratio")
        if mx:
            r = sum(ln.lstrip().startswith(_BULLETS) for ln in lines) / len(lines)
            if r > mx:
                return Verdict("gopher_too_many_bullets", f"bullet lines {r:.2f} > max_bullet_lines_ratio {mx}")
        mx = _t(pack, "max_ellipsis_lines_ratio")
        if mx:
            r = sum(ln.rstrip().endswith(("...", "…")) for ln in lines) / len(lines)
            if r > mx:
                return Verdict("gopher_too_many_end_ellipsis",
                               f"lines ending in an ellipsis {r:.2f} > max_ellipsis_lines_ratio {mx}")
    mn = _t(pack, "min_alpha_words_ratio")
    if mn:
        r = sum(any(c.isalpha() for c in w) for w in words) / n
        if r < mn:
            return Verdict("gopher_below_alpha_threshold",
                           f"words with a letter {r:.2f} < min_alpha_words_ratio {mn}")
    mn = _t(pack, "min_stop_words")
    if mn and pack.stop_words:
        # distinct stop words ("at least two of the following words", Gopher A.1.1); compared
        # case-folded, so a sentence-initial "The" counts
        found: set[str] = set()
        for w in words:
            if w in pack.stop_words or (w := w.casefold()) in pack.stop_words:
                found.add(w)
                if len(found) >= mn:
                    break
        if len(found) < mn:
            return Verdict("gopher_enough_stop_words", f"{len(found)} distinct stop words < min_stop_words {mn}")
    return None


def _duplicates(items: Sequence[str]) -> tuple[int, int]:
    """(number of elements, number of characters) that repeat an earlier element."""
    seen: set[str] = set()
    n = chars = 0
    for x in items:
        if x in seen:
            n += 1
            chars += len(x)
        else:
            seen.add(x)
    return n, chars


def _top_ngram_chars(words: Sequence[str], hashes: np.ndarray, n: int) -> int:
    """Characters covered by the most frequent n-gram (its length with the spaces between its
    words, times its count), 0 when no n-gram repeats: datatrove also counts a single
    occurrence, which only matters for texts short enough that one n-gram is a large share of
    them. Among n-grams as frequent, the first in the text counts, as Counter.most_common does.
    `hashes` are the words' hashes: n-grams are compared by hash, not by joined strings."""
    h = combine(hashes, n, short_as_one=False)
    if len(h) == 0:
        return 0
    _, first, counts = np.unique(h, return_index=True, return_counts=True)
    top = int(counts.max())
    if top < 2:
        return 0
    i = int(first[counts == top].min())
    return (sum(len(w) for w in words[i:i + n]) + n - 1) * top


def _dup_ngram_chars(words: Sequence[str], hashes: np.ndarray, n: int) -> int:
    """Characters in n-grams that repeat an earlier one, counting each word at most once
    (after a repeat the scan jumps past it, as datatrove's `find_all_duplicate` does)."""
    h = combine(hashes, n, short_as_one=False).tolist()
    if not h:
        return 0
    ends = np.cumsum([0] + [len(w) for w in words]).tolist()  # gram i has ends[i+n] - ends[i] chars
    seen: set[int] = set()
    chars, i, end = 0, 0, len(h)
    while i < end:
        if h[i] in seen:
            chars += ends[i + n] - ends[i]
            i += n
        else:
            seen.add(h[i])
            i += 1
    return chars


def _all_distinct(hashes: np.ndarray, n: int) -> bool:
    """True when no n-gram occurs twice."""
    h = combine(hashes, n, short_as_one=False)
    return len(np.unique(h)) == len(h)


_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")


def gopher_repetition(text: str, pack: LangPack, words: Sequence[str] | None = None) -> Verdict | None:
    """Gopher's repetition filters (Rae et al. 2021, table A1): shares of duplicated paragraphs and
    lines (by count and by characters), the share of characters in the most frequent 2/3/4-gram,
    and the share of characters in repeated 5…10-grams, over the language's words."""
    size = len(text)
    if not size:
        return Verdict("empty", "empty text")
    for unit, parts in (("para", _PARAGRAPHS.split(text.strip())), ("line", _LINES.split(text))):
        noun = "paragraphs" if unit == "para" else "lines"
        dup, chars = _duplicates(parts)
        key = f"dup_{unit}_frac"
        mx = _t(pack, key)
        if mx and dup / len(parts) > mx:
            return Verdict(key, f"duplicated {noun} {dup / len(parts):.2f} > {key} {mx}")
        key = f"dup_{unit}_char_frac"
        mx = _t(pack, key)
        if mx and chars / size > mx:
            return Verdict(key, f"characters in duplicated {noun} {chars / size:.2f} > {key} {mx}")
    words = pack.words(text) if words is None else words
    hashes = word_hashes(words)
    for n, mx in sorted((_t(pack, "top_n_grams") or {}).items()):
        r = _top_ngram_chars(words, hashes, int(n)) / size
        if mx and r > mx:
            return Verdict(f"top_{n}_gram", f"characters in the most frequent {n}-gram {r:.3f} > "
                                            f"top_n_grams[{n}] {mx}")
    dup_n = sorted((_t(pack, "dup_n_grams") or {}).items())
    if dup_n and _all_distinct(hashes, int(dup_n[0][0])):
        return None  # no n-gram repeats, so no longer one does either: the common case, made cheap
    for n, mx in dup_n:
        r = _dup_ngram_chars(words, hashes, int(n)) / size
        if mx and r > mx:
            return Verdict(f"duplicated_{n}_n_grams", f"characters in repeated {n}-grams {r:.3f} > "
                                                      f"dup_n_grams[{n}] {mx}")
    return None


def fineweb_quality(text: str, pack: LangPack, words: Sequence[str] | None = None) -> Verdict | None:
    """FineWeb's filters (Penedo et al. 2024, 3.4): share of lines ending in sentence punctuation
    (the pack's `sentence_end`; off for Thai, which has none), share of short lines, characters in
    duplicated lines, and newlines per word (list-like documents)."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if not lines:
        return Verdict("empty", "no non-empty lines")
    thr = _t(pack, "line_punct_thr")
    if thr and pack.sentence_end:
        r = sum(ln.rstrip().endswith(pack.sentence_end) for ln in lines) / len(lines)
        if r < thr:
            return Verdict("line_punct_ratio", f"lines ending in punctuation {r:.2f} < line_punct_thr {thr}")
    thr, length = _t(pack, "short_line_thr"), _t(pack, "short_line_length")
    if thr is not None and length:
        r = sum(len(ln) <= length for ln in lines) / len(lines)
        if r > thr:
            return Verdict("short_line_ratio",
                           f"lines of <= {length} characters {r:.2f} > short_line_thr {thr}")
    thr = _t(pack, "char_duplicates_ratio")
    if thr:
        body = len(text) - text.count("\n")
        r = _duplicates(lines)[1] / body if body else 0.0
        if r > thr:
            return Verdict("char_dup_ratio",
                           f"characters in duplicated lines {r:.3f} > char_duplicates_ratio {thr}")
    thr = _t(pack, "new_line_ratio")
    if thr:
        words = pack.words(text) if words is None else words
        r = text.count("\n") / max(len(words), 1)
        if r > thr:
            return Verdict("list_ratio", f"newlines per word {r:.3f} > new_line_ratio {thr}")
    return None


@lru_cache(maxsize=64)
def _boilerplate(patterns: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(f"(?:{p})" for p in (*COMMON_BOILERPLATE, *patterns)), re.IGNORECASE)


def clean_lines(text: str, pack: LangPack) -> tuple[str, int]:
    """Drop whole lines that are site furniture, not content: cookie banners, copyright and
    "all rights reserved" lines, "enable JavaScript" notices, breadcrumb trails, login/share
    links (the pack's patterns plus the common English ones; C4 and RefinedWeb drop such lines
    too). A line is dropped only when a pattern matches all of it. Returns the cleaned text and
    how many lines were removed."""
    rx = _boilerplate(pack.boilerplate)
    kept, removed = [], 0
    for ln in text.split("\n"):
        s = ln.strip()
        if s and rx.fullmatch(s):
            removed += 1
        else:
            kept.append(ln)
    if not removed:
        return text, 0
    return "\n".join(kept).strip("\n"), removed


QUALITY_FILTERS: dict[str, Callable[..., Verdict | None]] = {
    "gopher_quality": gopher_quality,
    "gopher_repetition": gopher_repetition,
    "fineweb_quality": fineweb_quality,
}


def run_filters(text: str, pack: LangPack, names: Sequence[str] = tuple(QUALITY_FILTERS)) -> Verdict | None:
    """Run the named filters in order, segmenting the text once; the first drop wins."""
    unknown = [n for n in names if n not in QUALITY_FILTERS]
    if unknown:
        raise KeyError(f"unknown quality filter(s) {unknown}; known: {sorted(QUALITY_FILTERS)}")
    words = pack.words(text)
    for name in names:
        v = QUALITY_FILTERS[name](text, pack, words)
        if v is not None:
            return v
    return None
