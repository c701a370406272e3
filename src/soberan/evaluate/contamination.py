"""Contamination: which benchmark items also appear in the corpus a model was trained on.

An item is flagged when a window of `chars` normalized characters of one of its texts (question,
passage, choice) also occurs in a training document: the 50-character substring test of the
GPT-4 technical report (OpenAI 2023, App. C), a character-level cousin of GPT-3's 13-gram test
(Brown et al. 2020, App. C) that needs no word segmenter, so Thai and Korean are checked the same
way as English. Normalization (NFKC, case folding, and dropping everything that is not a letter
or digit, diacritics included) makes spacing, punctuation and vocalization differences invisible.
A text shorter than the window but at least `chars // 2` long is matched whole.

The benchmark side is small and is held as hash arrays; the corpus is streamed shard by shard and
batch by batch and never held whole, so memory is bounded by one batch (about 4 M characters) plus
the benchmark hashes. Window hashes are polynomial hashes mod 2**64 from prefix sums, so each of
the two window lengths costs O(n) numpy work per batch: under a second per million characters on
one core (measured on korean_laws against all of KoBEST and NSMC, 324 k benchmark hashes).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_NON_WORD = re.compile(r"[\W_]+")
_FILTER_SLOTS = 1 << 25
_P = np.uint64(0x100000001B3)  # odd, so it has an inverse mod 2**64
_P_INV = np.uint64(pow(0x100000001B3, -1, 1 << 64))


def normalize(text: str) -> str:
    """NFKC, case-folded, letters and digits only (combining marks go with the punctuation)."""
    return _NON_WORD.sub("", unicodedata.normalize("NFKC", text).casefold())


def _mix(codes: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer on code points, so the polynomial hash sees well-spread values."""
    z = codes.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class _Hasher:
    """Prefix sums of one string's mixed code points times P**i, for window hashes of any length."""

    def __init__(self, s: str):
        codes = np.frombuffer(s.encode("utf-32-le"), dtype=np.uint32)
        self.n = len(codes)
        with np.errstate(over="ignore"):
            pw = np.cumprod(np.full(self.n, _P, dtype=np.uint64)) * _P_INV  # P**0 .. P**(n-1)
            self.inv = np.cumprod(np.full(self.n, _P_INV, dtype=np.uint64)) * _P  # P**-0 ..
            self.prefix = np.concatenate([[np.uint64(0)], np.cumsum(_mix(codes) * pw, dtype=np.uint64)])

    def windows(self, length: int) -> np.ndarray:
        """Hash of s[i:i+length] for every i, the same value wherever the window sits."""
        if length > self.n:
            return np.empty(0, dtype=np.uint64)
        with np.errstate(over="ignore"):
            return (self.prefix[length:] - self.prefix[:-length]) * self.inv[:self.n - length + 1]


@dataclass
class Flag:
    doc_id: str  # the first training document found to contain the item's text


@dataclass
class BenchIndex:
    """Hashes of benchmark text windows pointing back to items, for two window lengths only, so
    the corpus is hashed twice whatever the texts: every `chars` window of a long text, and the
    first `chars // 2` characters of a shorter one (a hit there is confirmed by comparing the
    whole text at that place)."""

    chars: int
    # window length -> hash -> [(item key, whole text to confirm, or None)]
    hashes: dict[int, dict[int, list[tuple[tuple[str, str], str | None]]]] = field(default_factory=dict)

    def add(self, key: tuple[str, str], texts: Iterable[str]) -> None:
        for t in texts:
            s = normalize(t)
            if len(s) >= self.chars:
                length, whole = self.chars, None
            elif len(s) >= self.chars // 2:
                length, whole = self.chars // 2, s
                s = s[:length]
            else:
                continue  # too short to say anything (a label word, a number)
            table = self.hashes.setdefault(length, {})
            for h in np.unique(_Hasher(s).windows(length)).tolist():
                entries = table.setdefault(h, [])
                if (key, whole) not in entries:
                    entries.append((key, whole))

    def __len__(self) -> int:
        return sum(len(t) for t in self.hashes.values())


def _batches(folders: list[Path], batch_chars: int) -> Iterator[tuple[list[str], list[str]]]:
    from soberan.documents import iter_batches

    ids: list[str] = []
    texts: list[str] = []
    size = 0
    for folder in folders:
        for rb in iter_batches(folder, columns=["id", "text"], batch_size=1024):
            for i, t in zip(rb.column(0).to_pylist(), rb.column(1).to_pylist()):
                s = normalize(t or "")
                ids.append(i)
                texts.append(s)
                size += len(s) + 1
                if size >= batch_chars:
                    yield ids, texts
                    ids, texts, size = [], [], 0
    if ids:
        yield ids, texts


def scan(index: BenchIndex, corpora: list[Path], batch_chars: int = 4_000_000,
         on_batch=None) -> dict[tuple[str, str], Flag]:
    """Stream the corpora once; return the flagged items (set name, item id) → where found."""
    flags: dict[tuple[str, str], Flag] = {}
    if not len(index):
        return flags
    tables = {n: (np.sort(np.fromiter(t, dtype=np.uint64, count=len(t))), t) for n, t in index.hashes.items()}
    # A one-byte-per-slot filter over the low hash bits (32 MiB) answers "surely not" for almost
    # every corpus window in one gather; only the rest meet the binary search.
    bloom = np.zeros(_FILTER_SLOTS, dtype=np.bool_)
    for keys_sorted, _ in tables.values():
        bloom[keys_sorted & np.uint64(_FILTER_SLOTS - 1)] = True
    for ids, texts in _batches(corpora, batch_chars):
        # "\x00" never survives normalization, so no benchmark window spans two documents.
        joined = "\x00".join(texts)
        starts = np.cumsum([0] + [len(t) + 1 for t in texts[:-1]])
        h = _Hasher(joined)
        for length, (keys_sorted, table) in tables.items():
            win = h.windows(length)
            if not len(win):
                continue
            cand = np.flatnonzero(bloom[win & np.uint64(_FILTER_SLOTS - 1)])
            at = np.minimum(np.searchsorted(keys_sorted, win[cand]), len(keys_sorted) - 1)
            pos = cand[keys_sorted[at] == win[cand]]
            for p in pos.tolist():
                doc = ids[int(np.searchsorted(starts, p, side="right")) - 1]
                for key, whole in table[int(win[p])]:
                    if key not in flags and (whole is None or joined.startswith(whole, p)):
                        flags[key] = Flag(doc)
        if on_batch:
            on_batch(len(ids))
    return flags
