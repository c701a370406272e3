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

import bisect
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


# `[^\W_]` is exactly the characters str.isalnum() accepts (Python's \w is those and "_");
# one regex search per word is several times faster than a generator over its characters.
_ALNUM = re.compile(r"[^\W_]")


# Letters, and the few non-decimal numerics (², ½) that \w also holds: a search finds a candidate,
# and only a word whose first candidate is not a letter is checked character by character.
_LETTERISH = re.compile(r"[^\W\d_]")


def _has_letter(w: str) -> bool:
    m = _LETTERISH.search(w)
    return m is not None and (m.group().isalpha() or any(c.isalpha() for c in w))


def _is_symbol(w: str) -> bool:
    """A token made of punctuation and symbols only (no letter or digit)."""
    return _ALNUM.search(w) is None


# Bullet marks at the start of a line (Gopher: "lines starting with a bullet point").
_BULLETS = ("•", "-", "*", "●", "◦", "▪", "‣", "·", "–", "⁃", "○", "■", "□", "➢", "✓")


def gopher_quality_signals(text: str, pack: LangPack, words: Sequence[str]) -> dict:
    """The statistics Gopher's quality rules (Rae et al. 2021, A.1.1) read: word counts, mean
    word length, '#' and ellipses per word, bullet and ellipsis line shares, the share of words
    holding a letter, and how many distinct stop words occur."""
    n = len(words)
    content = [w for w in words if not _is_symbol(w)]
    nc = len(content)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    found: set[str] = set()
    if pack.stop_words:
        # distinct stop words ("at least two of the following words", Gopher A.1.1); compared
        # case-folded, so a sentence-initial "The" counts
        for w in set(words):
            if w in pack.stop_words or (w := w.casefold()) in pack.stop_words:
                found.add(w)
    return {
        "words": n, "content_words": nc,
        "mean_word_length": sum(len(w) for w in content) / nc if nc else None,
        "hash_ratio": text.count("#") / n if n else None,
        "ellipsis_ratio": (text.count("...") + text.count("…")) / n if n else None,
        "bullet_lines_ratio": sum(ln.lstrip().startswith(_BULLETS) for ln in lines) / len(lines)
        if lines else None,
        "end_ellipsis_lines_ratio": sum(ln.rstrip().endswith(("...", "…")) for ln in lines) / len(lines)
        if lines else None,
        "alpha_words_ratio": sum(map(_has_letter, words)) / n if n else None,
        "stop_words": len(found),
    }


def gopher_quality_decide(s: dict, pack: LangPack) -> Verdict | None:
    """Gopher's quality rules over `gopher_quality_signals`, with the pack's thresholds.

    "Letter" is any Unicode letter (str.isalpha), so the rule works for Hangul, Thai and Arabic,
    which have no case; Gopher wrote it for the Latin alphabet."""
    nc = s["content_words"]
    lo, hi = _t(pack, "min_words"), _t(pack, "max_words")
    if lo and nc < lo:
        return Verdict("gopher_short_doc", f"{nc} words < min_words {lo}")
    if hi and nc > hi:
        return Verdict("gopher_long_doc", f"{nc} words > max_words {hi}")
    if nc == 0:
        return Verdict("gopher_short_doc", "no words")
    mean = s["mean_word_length"]
    lo, hi = _t(pack, "min_avg_word_length"), _t(pack, "max_avg_word_length")
    if lo and mean < lo:
        return Verdict("gopher_below_avg_threshold", f"mean word length {mean:.2f} < min_avg_word_length {lo}")
    if hi and mean > hi:
        return Verdict("gopher_above_avg_threshold", f"mean word length {mean:.2f} > max_avg_word_length {hi}")
    mx = _t(pack, "max_symbol_word_ratio")
    if mx:
        if (r := s["hash_ratio"]) > mx:
            return Verdict("gopher_too_many_hashes", f"'#' per word {r:.3f} > max_symbol_word_ratio {mx}")
        if (r := s["ellipsis_ratio"]) > mx:
            return Verdict("gopher_too_many_ellipsis", f"ellipses per word {r:.3f} > max_symbol_word_ratio {mx}")
    if s["bullet_lines_ratio"] is not None:
        mx = _t(pack, "max_bullet_lines_ratio")
        if mx and (r := s["bullet_lines_ratio"]) > mx:
            return Verdict("gopher_too_many_bullets", f"bullet lines {r:.2f} > max_bullet_lines_ratio {mx}")
        mx = _t(pack, "max_ellipsis_lines_ratio")
        if mx and (r := s["end_ellipsis_lines_ratio"]) > mx:
            return Verdict("gopher_too_many_end_ellipsis",
                           f"lines ending in an ellipsis {r:.2f} > max_ellipsis_lines_ratio {mx}")
    mn = _t(pack, "min_alpha_words_ratio")
    if mn and (r := s["alpha_words_ratio"]) < mn:
        return Verdict("gopher_below_alpha_threshold", f"words with a letter {r:.2f} < min_alpha_words_ratio {mn}")
    mn = _t(pack, "min_stop_words")
    if mn and pack.stop_words and s["stop_words"] < mn:
        return Verdict("gopher_enough_stop_words", f"{s['stop_words']} distinct stop words < min_stop_words {mn}")
    return None


def gopher_quality(text: str, pack: LangPack, words: Sequence[str] | None = None) -> Verdict | None:
    """Gopher's quality filters (Rae et al. 2021, A.1.1) on one text."""
    words = pack.words(text) if words is None else words
    return gopher_quality_decide(gopher_quality_signals(text, pack, words), pack)


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


def _dup_ngram_chars(words: Sequence[str], hashes: np.ndarray, n: int, ends: list[int] | None = None) -> int:
    """Characters in n-grams that repeat an earlier one, counting each word at most once
    (after a repeat the scan jumps past it, as datatrove's `find_all_duplicate` does).

    The scan visits only the positions whose n-gram occurred before (numpy finds them): every
    other visited position just marks its n-gram seen, so a repeat at `c` is one when its first
    occurrence was visited (not jumped over), or an earlier occurrence was visited as a non-repeat."""
    h = combine(hashes, n, short_as_one=False)
    m = len(h)
    if m == 0:
        return 0
    _, first, inv = np.unique(h, return_index=True, return_inverse=True)
    cand = np.flatnonzero(first[inv] < np.arange(m)).tolist()
    if not cand:
        return 0
    if ends is None:  # gram i has ends[i+n] - ends[i] characters
        ends = np.cumsum([0] + [len(w) for w in words]).tolist()
    first_of, inv_l = first.tolist(), inv.tolist()
    jumped: list[tuple[int, int]] = []  # [start, end) ranges the scan jumped over, in order
    starts: list[int] = []
    seen_late: set[int] = set()  # values first seen at a later, visited occurrence
    chars, nxt = 0, 0
    for c in cand:
        if c < nxt:
            continue
        v = inv_l[c]
        f = first_of[v]
        k = bisect.bisect_right(starts, f) - 1
        if not (k >= 0 and f < jumped[k][1]) or v in seen_late:
            chars += ends[c + n] - ends[c]
            jumped.append((c + 1, c + n))
            starts.append(c + 1)
            nxt = c + n
        else:
            seen_late.add(v)
            nxt = c + 1
    return chars


def _all_distinct(hashes: np.ndarray, n: int) -> bool:
    """True when no n-gram occurs twice."""
    h = combine(hashes, n, short_as_one=False)
    return len(np.unique(h)) == len(h)


_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")


# n-gram sizes whose shares are always measured (Gopher's table A1); a pack or config naming
# other sizes gets those measured too.
TOP_N = (2, 3, 4)
DUP_N = (5, 6, 7, 8, 9, 10)


def gopher_repetition_signals(text: str, pack: LangPack, words: Sequence[str]) -> dict:
    """The statistics of Gopher's repetition rules (Rae et al. 2021, table A1): shares of
    duplicated paragraphs and lines (by count and by characters), the share of characters in the
    most frequent 2/3/4-gram and in repeated 5…10-grams, over the language's words."""
    size = len(text)
    out: dict = {"chars": size}
    if not size:
        return out
    for unit, parts in (("para", _PARAGRAPHS.split(text.strip())), ("line", _LINES.split(text))):
        dup, chars = _duplicates(parts)
        out[f"dup_{unit}_frac"] = dup / len(parts)
        out[f"dup_{unit}_char_frac"] = chars / size
    hashes = word_hashes(words)
    top = sorted(set(TOP_N) | {int(n) for n in (_t(pack, "top_n_grams") or {})})
    out["top_n_grams"] = {n: _top_ngram_chars(words, hashes, n) / size for n in top}
    dup_n = sorted(set(DUP_N) | {int(n) for n in (_t(pack, "dup_n_grams") or {})})
    if _all_distinct(hashes, dup_n[0]):  # no n-gram repeats, so no longer one does either: cheap
        out["dup_n_grams"] = dict.fromkeys(dup_n, 0.0)
    else:
        ends = np.cumsum([0] + [len(w) for w in words]).tolist()
        out["dup_n_grams"] = {n: _dup_ngram_chars(words, hashes, n, ends) / size for n in dup_n}
    return out


class MissingSignal(KeyError):
    """A threshold names a statistic the stored signals do not hold (an n-gram size never measured)."""


def gopher_repetition_decide(s: dict, pack: LangPack) -> Verdict | None:
    if not s["chars"]:
        return Verdict("empty", "empty text")
    for unit in ("para", "line"):
        noun = "paragraphs" if unit == "para" else "lines"
        key = f"dup_{unit}_frac"
        mx = _t(pack, key)
        if mx and (r := s[key]) > mx:
            return Verdict(key, f"duplicated {noun} {r:.2f} > {key} {mx}")
        key = f"dup_{unit}_char_frac"
        mx = _t(pack, key)
        if mx and (r := s[key]) > mx:
            return Verdict(key, f"characters in duplicated {noun} {r:.2f} > {key} {mx}")
    for what, rule, noun in (("top_n_grams", "top_{n}_gram", "the most frequent {n}-gram"),
                             ("dup_n_grams", "duplicated_{n}_n_grams", "repeated {n}-grams")):
        for n, mx in sorted((_t(pack, what) or {}).items()):
            n = int(n)
            if n not in s[what]:
                raise MissingSignal(f"{what}[{n}] was not measured when the signals were stored")
            r = s[what][n]
            if mx and r > mx:
                return Verdict(rule.format(n=n), f"characters in {noun.format(n=n)} {r:.3f} > {what}[{n}] {mx}")
    return None


def gopher_repetition(text: str, pack: LangPack, words: Sequence[str] | None = None) -> Verdict | None:
    """Gopher's repetition filters (Rae et al. 2021, table A1) on one text."""
    if not text:
        return Verdict("empty", "empty text")
    words = pack.words(text) if words is None else words
    return gopher_repetition_decide(gopher_repetition_signals(text, pack, words), pack)


def fineweb_quality_signals(text: str, pack: LangPack, words: Sequence[str]) -> dict:
    """The statistics of FineWeb's filters (Penedo et al. 2024, 3.4): share of lines ending in
    the pack's sentence punctuation (None for Thai, which has none), share of short lines (of at
    most the pack's `short_line_length` characters), characters in duplicated lines, newlines
    per word (list-like documents)."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    out: dict = {"lines": len(lines)}
    if not lines:
        return out
    out["line_punct_ratio"] = sum(ln.rstrip().endswith(pack.sentence_end) for ln in lines) / len(lines) \
        if pack.sentence_end else None
    length = _t(pack, "short_line_length") or 0
    out["short_line_length"] = length
    out["short_line_ratio"] = sum(len(ln) <= length for ln in lines) / len(lines)
    body = len(text) - text.count("\n")
    out["char_dup_ratio"] = _duplicates(lines)[1] / body if body else 0.0
    out["new_line_ratio"] = text.count("\n") / max(len(words), 1)
    return out


def fineweb_quality_decide(s: dict, pack: LangPack) -> Verdict | None:
    if not s["lines"]:
        return Verdict("empty", "no non-empty lines")
    thr = _t(pack, "line_punct_thr")
    if thr and pack.sentence_end and (r := s["line_punct_ratio"]) < thr:
        return Verdict("line_punct_ratio", f"lines ending in punctuation {r:.2f} < line_punct_thr {thr}")
    thr, length = _t(pack, "short_line_thr"), _t(pack, "short_line_length")
    if thr is not None and length:
        if length != s["short_line_length"]:
            raise MissingSignal(f"short lines were counted at {s['short_line_length']} characters, "
                                f"not short_line_length {length}")
        if (r := s["short_line_ratio"]) > thr:
            return Verdict("short_line_ratio", f"lines of <= {length} characters {r:.2f} > short_line_thr {thr}")
    thr = _t(pack, "char_duplicates_ratio")
    if thr and (r := s["char_dup_ratio"]) > thr:
        return Verdict("char_dup_ratio", f"characters in duplicated lines {r:.3f} > char_duplicates_ratio {thr}")
    thr = _t(pack, "new_line_ratio")
    if thr and (r := s["new_line_ratio"]) > thr:
        return Verdict("list_ratio", f"newlines per word {r:.3f} > new_line_ratio {thr}")
    return None


def fineweb_quality(text: str, pack: LangPack, words: Sequence[str] | None = None) -> Verdict | None:
    """FineWeb's filters (Penedo et al. 2024, 3.4) on one text."""
    words = pack.words(text) if words is None else words
    return fineweb_quality_decide(fineweb_quality_signals(text, pack, words), pack)


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
# Each filter as (its statistics, its rules over them): curate measures every statistic of every
# filter once per document and keeps them (soberan.curate.signals), so a changed threshold or
# filter list is decided again from the stored numbers, without segmenting again.
SIGNALS = {"gopher_quality": gopher_quality_signals, "gopher_repetition": gopher_repetition_signals,
           "fineweb_quality": fineweb_quality_signals}
DECIDE = {"gopher_quality": gopher_quality_decide, "gopher_repetition": gopher_repetition_decide,
          "fineweb_quality": fineweb_quality_decide}


def quality_signals(text: str, pack: LangPack, words: Sequence[str] | None = None) -> dict:
    """Every statistic of every filter in one flat {name: value} (the names do not collide);
    segments once."""
    words = pack.words(text) if words is None else words
    out: dict = {}
    for f in SIGNALS.values():
        out.update(f(text, pack, words))
    return out


def decide(signals: dict, pack: LangPack, names: Sequence[str]) -> Verdict | None:
    """The named filters' verdict over stored statistics; the first drop wins."""
    for name in names:
        v = DECIDE[name](signals, pack)
        if v is not None:
            return v
    return None


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
