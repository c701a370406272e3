"""Extend a base tokenizer by continuing its BPE on the nation's corpus.

The corpus is pre-tokenized the base's own way and every distinct word is segmented by the base
itself. From there, training continues as BPE training does (Sennrich et al., 2016): count the
adjacent token pairs, weighted by word frequency, and repeatedly merge the most frequent pair
into a new token. Because each new token is a merge of two tokens that already exist, and the new
merges rank after all of the base's, the base's segmentation happens first and is only ever
refined: every original token keeps its id, every new token is reached when its own string is
encoded, and text the base tokenized still tokenizes to valid ids. This is how Typhoon extended
Mistral-7B for Thai and EEVE-Korean extended SOLAR (Kim et al., 2024, arXiv:2402.14714).

A SentencePiece base with byte fallback spells a character missing from its vocabulary as 2-4
byte pieces (Mistral v1 knows 346 of the 11,172 Hangul syllables). Such a character can become a
token of its own; it then saves (UTF-8 length - 1) tokens at every occurrence, and the greedy loop
weighs that saving against the pair merges, so one vocabulary slot always buys the most tokens.

New tokens follow the rules the base was trained under, so the base's design survives: no digit
inside a multi-character token when the base splits digits (Llama/Mistral `split_digits`), one
Unicode script per token when SentencePiece's `split_by_unicode_script` was on, `▁` only at the
start, at most `max_sentencepiece_length` characters.

Pair counts are kept incrementally, as in HF `tokenizers`' BPE trainer: a merge touches only the
words that hold the pair, and a lazy heap finds the next best candidate.
"""

from __future__ import annotations

import heapq
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from soberan.hf import Loaded, byte_piece_ids, piece_bytes

# A SentencePiece piece holds `▁` only at its start (or is all `▁`), so a pre-tokenized text can be
# cut before every `▁` that follows another character without changing how the base segments it.
_SP_WORDS = re.compile(r"▁+[^▁]*|[^▁]+")
_SHIFT, _MASK = 21, (1 << 21) - 1  # heap keys pack a pair of ids below 2M into one int


@dataclass
class NewToken:
    id: int
    piece: str  # the vocabulary string, in the base's own alphabet (▁ or GPT-2 bytes)
    parts: list[int]  # the base ids it decomposes into; the train stage averages their embeddings
    left: str | None = None  # the merge that builds it; None for a character added whole
    right: str | None = None
    gain: int = 0  # tokens it saved over the training corpus when it was chosen


@dataclass
class Learned:
    new_tokens: list[NewToken] = field(default_factory=list)
    words: int = 0  # distinct words seen
    tokens_before: int = 0  # tokens the base spent on the training words
    tokens_after: int = 0


# --- reading the corpus the base's way ------------------------------------------------------

def word_splitter(base: Loaded) -> Callable[[str], list[str]]:
    """A function from a text to its words, cut the way the base cuts text before its model runs."""
    tok = base.tokenizer
    norm, pre = tok.normalizer, tok.pre_tokenizer
    vocab = tok.get_vocab(with_added_tokens=False)
    words = None
    if base.style == "sentencepiece" and not any(re.search(r"[^▁]▁", p) for p in vocab):
        # An ASCII character missing from the vocabulary (newline and tab in Mistral v1) is
        # always one byte piece that no merge touches, and no new token will hold it (it would
        # save nothing), so it is a word boundary too.
        lone = re.escape("".join(c for c in map(chr, range(128)) if c not in vocab and c != " "))
        words = re.compile(rf"▁+[^▁{lone}]*|[{lone}]|[^▁{lone}]+" if lone else _SP_WORDS.pattern)

    def split(text: str) -> list[str]:
        s = norm.normalize_str(text) if norm is not None else text
        pieces = [p for p, _ in pre.pre_tokenize_str(s)] if pre is not None else [s]
        if words is not None:
            return [w for p in pieces for w in words.findall(p)]
        return pieces

    return split


def count_words(texts: Iterable[str], base: Loaded) -> Counter:
    split = word_splitter(base)
    counts: Counter = Counter()
    for t in texts:
        counts.update(split(t))
    return counts


# --- rules a new token must keep --------------------------------------------------------------

def _script(ch: str) -> str | None:
    """A coarse Unicode script: the first word of a letter's or mark's name (HANGUL, THAI, LATIN,
    ARABIC...); Han, Hiragana and Katakana count as one, as in SentencePiece; combining marks go
    with anything; digits, punctuation and symbols are COMMON."""
    cat = unicodedata.category(ch)
    if cat[0] in "LM":
        first = unicodedata.name(ch, "?").split(" ")[0]
        if first == "COMBINING":
            return None
        return "HAN" if first in ("CJK", "HIRAGANA", "KATAKANA") else first
    return "COMMON"


def _splits_digits(base: Loaded) -> bool:
    """True when no multi-character piece of the base holds a decimal digit (split_digits)."""
    for piece in base.tokenizer.get_vocab(with_added_tokens=False):
        text = piece_bytes(piece, base.style).decode("utf-8", "replace")
        if len(text) > 1 and any(c.isdecimal() for c in text):
            return False
    return True


def rule_check(base: Loaded) -> Callable[[str], bool]:
    """Whether a candidate piece respects the rules the base was built under."""
    digits = _splits_digits(base)
    sp = base.style == "sentencepiece"

    def ok(piece: str) -> bool:
        if sp and "▁" in piece[1:]:
            return False
        if base.max_piece_chars and len(piece) > base.max_piece_chars:
            return False
        text = piece_bytes(piece, base.style).decode("utf-8", "replace")
        if digits and len(text) > 1 and any(c.isdecimal() for c in text):
            return False
        if base.split_by_script:
            scripts = {s for c in text if not c.isspace() and (s := _script(c)) is not None}
            if len(scripts) > 1:
                return False
        return True

    return ok


# --- continuing BPE -----------------------------------------------------------------------------

def _segment(words: list[str], base: Loaded) -> tuple[list[list[int]], dict[int, str], dict[int, list[int]]]:
    """Each word as the base segments it. A run of byte-fallback pieces that spells one character
    becomes one *pending* symbol (a negative id) that a new token may replace."""
    model = base.tokenizer.model
    byte_ids = byte_piece_ids(base)
    pending: dict[str, int] = {}
    pending_char: dict[int, str] = {}
    pending_parts: dict[int, list[int]] = {}
    out: list[list[int]] = []
    for w in words:
        syms: list[int] = []
        buf: list[int] = []
        for t in model.tokenize(w):
            if t.id not in byte_ids:
                syms.append(t.id)
                continue
            buf.append(t.id)
            raw = bytes(byte_ids[i] for i in buf)
            if _utf8_len(raw[0]) == len(raw):  # a whole character in byte pieces
                ch = raw.decode("utf-8", "replace")
                if ch not in pending:
                    pid = -(len(pending) + 1)
                    pending[ch], pending_char[pid], pending_parts[pid] = pid, ch, list(buf)
                syms.append(pending[ch])
                buf = []
        syms.extend(buf)  # a stray byte (invalid UTF-8 never reaches here, but stay safe)
        out.append(syms)
    return out, pending_char, pending_parts


def _utf8_len(lead: int) -> int:
    return 1 if lead < 0x80 else 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4 if lead >> 3 == 0b11110 else 1


def learn(counts: Counter | dict[str, int], base: Loaded, n: int, min_frequency: int = 2,
          progress: Callable[[int], None] | None = None) -> Learned:
    """Learn up to `n` new tokens by continuing the base's BPE over word counts."""
    vocab = base.tokenizer.get_vocab(with_added_tokens=True)
    id_piece = {i: p for p, i in vocab.items()}
    word_list = list(counts)
    words, pending_char, pending_parts = _segment(word_list, base)
    freqs = [counts[w] for w in word_list]
    next_id = base.vocab_size
    if next_id + n > _MASK:
        raise ValueError(f"vocabularies over {_MASK} ids are not supported")
    ok = rule_check(base)

    piece_of: dict[int, str] = dict(id_piece)
    piece_of.update(pending_char)
    parts_of: dict[int, list[int]] = {}
    cost = {pid: len(p) for pid, p in pending_parts.items()}  # tokens a pending char spends now

    pair_count: dict[tuple[int, int], int] = {}
    pair_words: dict[tuple[int, int], set[int]] = {}
    pend_count: Counter = Counter()
    pend_words: dict[int, set[int]] = {}
    learned = Learned(words=len(word_list))
    for wi, (w, f) in enumerate(zip(words, freqs)):
        learned.tokens_before += f * sum(cost.get(s, 1) for s in w)
        for a, b in zip(w, w[1:]):
            pair_count[(a, b)] = pair_count.get((a, b), 0) + f
            pair_words.setdefault((a, b), set()).add(wi)
        for s in w:
            if s < 0:
                pend_count[s] += f
                pend_words.setdefault(s, set()).add(wi)

    taken = set(vocab)
    verdict: dict[tuple[int, int], bool] = {}

    def eligible(p: tuple[int, int]) -> bool:
        # Only merges of two real tokens whose result is not a token yet (a second merge into an
        # existing token would let an earlier merge fire after a later one, and the counts here
        # would no longer be what the encoder does).
        v = verdict.get(p)
        if v is None:
            a, b = p
            v = a >= 0 and b >= 0 and (s := piece_of[a] + piece_of[b]) not in taken and ok(s)
            verdict[p] = v
        return v

    # A lazy max-heap of (-gain, key): key >= 0 is the pair (key >> 21, key & MASK) to merge,
    # key < 0 a pending character to add whole. Plain ints compare fast and break ties stably.
    heap: list[tuple[int, int]] = []
    for pid, c in pend_count.items():
        if (g := c * (cost[pid] - 1)) >= min_frequency and ok(pending_char[pid]):
            heap.append((-g, pid))
    for p, c in pair_count.items():
        if c >= min_frequency and eligible(p):
            heap.append((-c, (p[0] << _SHIFT) | p[1]))
    heapq.heapify(heap)

    def rewrite(wi: int, new_w: list[int], z: int, touched: set) -> None:
        w, f = words[wi], freqs[wi]
        for p in zip(w, w[1:]):
            pair_count[p] -= f
        for p in zip(new_w, new_w[1:]):
            pair_count[p] = pair_count.get(p, 0) + f
            # Only pairs with the new token are new to this word; the index of a pair that left
            # the word is cleaned lazily (a merge skips words that no longer hold its pair).
            if p[0] == z or p[1] == z:
                pair_words.setdefault(p, set()).add(wi)
                touched.add(p)
        words[wi] = new_w

    def requeue(touched: set) -> None:
        for p in touched:
            if pair_count[p] >= min_frequency and eligible(p):
                heapq.heappush(heap, (-pair_count[p], (p[0] << _SHIFT) | p[1]))

    while heap and len(learned.new_tokens) < n:
        neg, key = heapq.heappop(heap)
        if key < 0:
            current = pend_count[key] * (cost[key] - 1)
        else:
            pair = (key >> _SHIFT, key & _MASK)
            current = pair_count.get(pair, 0)
        if current != -neg:  # stale entry: requeue with its present gain
            if current >= min_frequency:
                heapq.heappush(heap, (-current, key))
            continue
        if current < min_frequency:
            break
        if key >= 0 and piece_of[pair[0]] + piece_of[pair[1]] in taken:
            verdict[pair] = False  # another pair made this string a token meanwhile
            continue
        z = next_id
        next_id += 1
        if key < 0:
            piece_of[z] = pending_char[key]
            parts_of[z] = pending_parts[key]
            learned.new_tokens.append(NewToken(z, piece_of[z], parts_of[z], gain=current))
            touched: set = set()
            for wi in pend_words.pop(key, ()):
                rewrite(wi, [z if s == key else s for s in words[wi]], z, touched)
            del pend_count[key]
            requeue(touched)
        else:
            a, b = pair
            piece_of[z] = piece_of[a] + piece_of[b]
            parts_of[z] = parts_of.get(a, [a]) + parts_of.get(b, [b])
            learned.new_tokens.append(NewToken(z, piece_of[z], parts_of[z], piece_of[a], piece_of[b], current))
            touched = set()
            for wi in pair_words.pop(pair, ()):
                new_w = _merge(words[wi], a, b, z)
                if len(new_w) < len(words[wi]):
                    rewrite(wi, new_w, z, touched)
            pair_count.pop(pair, None)
            requeue(touched)
        taken.add(piece_of[z])
        if progress:
            progress(1)
    learned.tokens_after = sum(f * sum(cost.get(s, 1) if s < 0 else 1 for s in w)
                               for w, f in zip(words, freqs))
    return learned


def _merge(w: list[int], a: int, b: int, z: int) -> list[int]:
    """Replace each (a, b) in `w` by z, left to right, as a BPE encoder applies a merge."""
    out, i, n = [], 0, len(w)
    while i < n:
        if i + 1 < n and w[i] == a and w[i + 1] == b:
            out.append(z)
            i += 2
        else:
            out.append(w[i])
            i += 1
    return out


# --- building the extended tokenizer ------------------------------------------------------------

def build(base: Loaded, learned: Learned):
    """The base tokenizer with the new tokens appended to its vocabulary and the new merges ranked
    after all of its own."""
    from tokenizers import Tokenizer

    spec = json.loads(base.tokenizer.to_str())
    model = spec["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"{base.name} is a {model.get('type')} tokenizer; only BPE can be extended")
    string_merges = bool(model["merges"]) and isinstance(model["merges"][0], str)
    for t in learned.new_tokens:
        model["vocab"][t.piece] = t.id
        if t.left is not None:
            model["merges"].append(f"{t.left} {t.right}" if string_merges else [t.left, t.right])
    return Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))


def unreachable(tok, new_tokens: Iterable[NewToken]) -> list[NewToken]:
    """New tokens that encoding their own string does not produce (should be none)."""
    model = tok.model
    return [t for t in new_tokens if [x.id for x in model.tokenize(t.piece)] != [t.id]]


def write_init_map(path: Path, base: Loaded, base_vocab_size: int, parts: dict[int, list[int]]) -> Path:
    """`new_token_init.json`, which the train stage reads to initialise each new embedding from
    the base ids the new token decomposes into."""
    head = json.dumps({"base_vocab_size": base_vocab_size, "base": base.name}, ensure_ascii=False)[:-1]
    rows = ",\n".join(f'  "{i}": {json.dumps(p)}' for i, p in sorted(parts.items()))
    # One new token per line: readable, diffable, and still plain JSON.
    path.write_text(f'{head}, "new_tokens": {{\n{rows}\n}}}}\n', encoding="utf-8")
    return path


def iter_texts(batches: Iterable) -> Iterator[str]:
    for b in batches:
        yield from b
