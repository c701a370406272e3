"""Language packs: one module per language, everything language-specific in one place.

A pack gives word segmentation (used by both the quality filters and the dedup shingles), Unicode
normalization, stop words, the filter thresholds (seeded from FineWeb2's published per-language
values), and the country's PII formats. Adding a language is adding one module here that defines
`PACK`; nothing in the curate steps changes.
"""

from __future__ import annotations

import importlib
import pkgutil
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

ALIASES = {"fil": "tl", "msa": "ms", "ind": "id", "kor": "ko", "tha": "th", "vie": "vi", "ara": "ar",
           "eng": "en", "tgl": "tl", "zsm": "ms"}


@dataclass(frozen=True)
class PiiRule:
    """One kind of personal identifier: a regex for candidates and a validator (checksum) that a
    candidate must pass to be redacted, so an ordinary number is left alone."""

    name: str  # the placeholder's type, e.g. "KR_RRN" -> "<KR_RRN>"
    pattern: str  # a regex; group 0 is what gets replaced
    validate: Callable[[str], bool] | None = None
    description: str = ""


@dataclass(frozen=True)
class LangPack:
    code: str  # ISO 639-1 where one exists
    name: str
    words: Callable[[str], list[str]]  # the language's own words, for filters and shingles
    normalize: Callable[[str], str] = lambda t: unicodedata.normalize("NFC", t)
    stop_words: frozenset[str] = frozenset()
    thresholds: dict = field(default_factory=dict)  # filter name -> value; cite the source beside it
    pii: tuple[PiiRule, ...] = ()
    uses_spaces: bool = True  # False for Thai, where lines and sentences carry no spaces
    fasttext_label: str | None = None  # lid.176 label when it differs from `code`


def char_ngrams(text: str, n: int = 3) -> list[str]:
    """Fallback segmentation for a language without a segmenter: character n-grams of the text
    with whitespace removed, so shingles still work on unsegmented scripts."""
    s = "".join(text.split())
    return [s[i:i + n] for i in range(max(len(s) - n + 1, 1))] if s else []


@lru_cache(maxsize=None)
def get_pack(code: str) -> LangPack:
    """The pack for an ISO 639 code (`fil` → `tl`), or a clear error listing those available."""
    code = ALIASES.get(code.lower(), code.lower())
    try:
        mod = importlib.import_module(f"soberan.lang.{code}")
    except ModuleNotFoundError:
        raise KeyError(f"no language pack for {code!r}; available: {', '.join(available())}") from None
    return mod.PACK


def available() -> list[str]:
    import soberan.lang as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))
