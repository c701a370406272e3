"""Language packs: one module per language, everything language-specific in one place.

A pack gives word segmentation (used by both the quality filters and the dedup shingles), Unicode
normalization, stop words, the filter thresholds (seeded from FineWeb2's published per-language
values), line-cleanup patterns and the country's PII formats. Adding a language is adding one
module here that defines `PACK`; nothing in the curate steps changes (docs/languages.md).

Packs import their segmenters lazily: `import soberan.lang.th` does not load PyThaiNLP until
`words` is first called, so listing or configuring packs stays cheap.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Set
from dataclasses import dataclass, field
from functools import lru_cache, partial

ALIASES = {"fil": "tl", "msa": "ms", "ind": "id", "kor": "ko", "tha": "th", "vie": "vi", "ara": "ar",
           "arb": "ar", "eng": "en", "tgl": "tl", "zsm": "ms"}


@dataclass(frozen=True)
class PiiRule:
    """One kind of personal identifier: a regex for candidates and a validator (checksum, date,
    region code, numbering plan) that a candidate must pass to be redacted, so an ordinary number
    is left alone.

    `context`: for identifiers with neither checksum nor distinctive shape, lower-cased keywords
    of which one must appear within `context_window` characters before the candidate (the
    approach of Microsoft Presidio's context-aware recognizers)."""

    name: str  # the placeholder's type, e.g. "KR_RRN" -> "<KR_RRN>"
    pattern: str  # a regex; group 0 is what gets replaced
    validate: Callable[[str], bool] | None = None
    description: str = ""
    context: tuple[str, ...] = ()
    context_window: int = 40
    flags: int = 0

    @property
    def placeholder(self) -> str:
        return f"<{self.name}>"


# Defaults of the quality filters, for a language FineWeb2 gives no value for. Sources:
# - Gopher: Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from Training
#   Gopher", appendix A.1.1 (quality filters) and table A1 (repetition thresholds).
# - FineWeb: Penedo et al. 2024, "The FineWeb Datasets", section 3.4 (custom filters): line
#   punctuation >= 0.12, duplicated line chars <= 0.1, short lines (<= 30 chars) <= 0.67; the
#   list-like `new_line_ratio` 0.3 is datatrove's FineWebQualityFilter default.
# Names follow FineWeb2's configs (github.com/huggingface/fineweb-2/configs/*.yml) so that a
# value can be checked against its source by eye; FineWeb2's `max_non_alpha_words_ratio` is the
# *minimum* share of words holding a letter, so it is stored here as `min_alpha_words_ratio`.
BASE_THRESHOLDS: dict = {
    # Gopher quality
    "min_words": 50,
    "max_words": 100_000,
    "min_avg_word_length": 3,
    "max_avg_word_length": 10,
    "max_symbol_word_ratio": 0.1,  # '#' and ellipses per word
    "max_bullet_lines_ratio": 0.9,
    "max_ellipsis_lines_ratio": 0.3,
    "min_alpha_words_ratio": 0.8,
    "min_stop_words": 2,
    # Gopher repetition
    "dup_line_frac": 0.3,
    "dup_para_frac": 0.3,
    "dup_line_char_frac": 0.2,
    "dup_para_char_frac": 0.2,
    "top_n_grams": {2: 0.2, 3: 0.18, 4: 0.16},
    "dup_n_grams": {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
    # FineWeb quality
    "line_punct_thr": 0.12,
    "short_line_thr": 0.67,
    "short_line_length": 30,
    "char_duplicates_ratio": 0.1,  # FineWeb2 uses 0.1 (FineWeb English 0.01 removed too much)
    "new_line_ratio": 0.3,
    # language ID: minimum lid.176 confidence for a document to count as this language
    "language_score": 0.65,
}


# Presets laid over every pack's values (`[curate.quality] preset`), for text unlike the web pages
# the Gopher and FineWeb rules were fitted to.
PRESETS: dict[str, dict] = {
    # Posts, reviews, tweets, comments: a message of a few words is a whole document. Gopher's
    # 50-word minimum and FineWeb's line rules measure page structure that a post does not have;
    # lid.176 is less sure of a short text. The repetition rules stay on (spam repeats itself).
    "short_social": {
        "min_words": 3,  # a sentence; below it, a reaction ("555", "ok") carries no language
        "min_stop_words": 1,  # with the published lists (soberan.lang.published_stop_words)
        "line_punct_thr": 0.0,  # posts end lines without punctuation
        "short_line_thr": None,  # every line of a post is short
        "new_line_ratio": 0.5,  # a two-line post of four words is not a list
        "max_symbol_word_ratio": 0.5,  # hashtags: "#ReturnOfTheLittlePrince #HappyHeeChulDay"
        "max_ellipsis_lines_ratio": 0.8,  # "...", trailing off, is ordinary in a post
        "min_alpha_words_ratio": 0.6,  # emoji and numbers ("5555", prices) sit among words
        "language_score": 0.5,  # lid.176 on a short, informal text: IndoNLU reviews score 0.6
        "top_n_grams": {2: 0.3, 3: 0.3, 4: 0.3},  # one repeated pair is a large share of a short post
    },
}


def thresholds(**overrides) -> dict:
    """The Gopher/FineWeb defaults with a language's own values laid over them."""
    unknown = set(overrides) - set(BASE_THRESHOLDS)
    if unknown:
        raise KeyError(f"unknown threshold(s) {sorted(unknown)}; known: {sorted(BASE_THRESHOLDS)}")
    return {**BASE_THRESHOLDS, **overrides}


def fineweb2(**values) -> dict:
    """Thresholds from a FineWeb2 language config (`configs/<lang>_<Script>.yml`, values passed as
    published), with the settings FineWeb2's pipeline (`fineweb-2-pipeline.py`) applied to every
    language: the short-line rule off (30 characters means little outside English) and at least
    two stop words. Gopher's paragraph rules stay on: FineWeb2 switched them off only because
    its own text extractor drops paragraph breaks."""
    return thresholds(short_line_thr=None, min_stop_words=2, **values)


# Line-ending punctuation that closes a sentence in most scripts. FineWeb's line-punctuation rule
# counts lines ending in one of these; a pack narrows or widens it (Thai has none, Arabic adds ؟ ۔).
TERMINAL_PUNCTUATION = (".", "!", "?", '"', "'", "”", "’", "…", ":", ";", ")", "»", "」", "。", "！", "？")

# Boilerplate lines that are the same in every language that writes them in English (the web's
# lingua franca for site furniture). Each pack adds its own; matched case-insensitively against
# a whole stripped line, so a sentence that merely mentions cookies is kept.
COMMON_BOILERPLATE = (
    r".{0,60}\b((this|our) (web ?)?site uses cookies|we use cookies|accept (all )?cookies|cookie "
    r"(policy|settings|preferences|consent))\b.{0,120}",
    r"(©|\(c\)|copyright)\s*\d{0,4}.{0,80}",
    r".{0,60}\ball rights reserved\.?.{0,20}",
    r".{0,40}\b(enable|turn on|requires?)\b.{0,20}\bjavascript\b.{0,60}",
    r"javascript\s*(is)?\s*(disabled|required)?.{0,40}",
    r"(home|main)\s*(>|›|»|/|\|)\s*.{0,80}",  # breadcrumb trail
    r"(skip to (main )?content|back to top|read more|load more|share (this|on)\b.{0,30})",
    r"(sign in|log ?in|sign up|register|subscribe)(\s*(/|\||or)\s*(sign in|log ?in|sign up|register))*",
    r"(terms (of (use|service))?|privacy policy)(\s*[|·•/]\s*(terms (of (use|service))?|privacy policy"
    r"|contact( us)?|sitemap))*",
    r"lorem ipsum.{0,200}",
)


class StopWords(Set):
    """A stop-word list read on first use, so that importing a pack stays cheap (PyThaiNLP's
    list comes with PyThaiNLP; stopwords-iso's is one JSON file), joined to the words a pack
    lists itself (FineWeb2's most frequent words). Pickles as its recipe, not its words."""

    def __init__(self, load: Callable[[], Iterable[str]], base: Iterable[str] = ()):
        self._load, self._base, self._words = load, frozenset(base), None

    def _get(self) -> frozenset[str]:
        if self._words is None:
            self._words = self._base | frozenset(self._load())
        return self._words

    def __contains__(self, w: object) -> bool:
        return w in self._get()

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    __hash__ = Set._hash

    def __reduce__(self):
        return (StopWords, (self._load, tuple(sorted(self._base))))


def _stopwords_iso(code: str, fold: Callable[[str], str] | None = None) -> frozenset[str]:
    import stopwordsiso

    words = (w.strip() for w in stopwordsiso.stopwords(code))
    # the lists hold some punctuation ("،", "!"); a stop word is a word
    return frozenset((fold(w) if fold else w) for w in words if any(c.isalpha() for c in w))


def published_stop_words(code: str, base: Iterable[str] = (),
                         fold: Callable[[str], str] | None = None) -> StopWords:
    """The language's list from stopwords-iso (github.com/stopwords-iso, MIT; the `stopwordsiso`
    package), the collection of published lists (for Indonesian, Tala 2003; for Vietnamese and
    Arabic, the lists of their NLP toolkits), joined to `base`; `fold` matches the pack's words."""
    return StopWords(partial(_stopwords_iso, code, fold), base)


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


@dataclass(frozen=True)
class LangPack:
    code: str  # ISO 639-1 where one exists
    name: str
    words: Callable[[str], list[str]]  # the language's own words, for filters and shingles
    normalize: Callable[[str], str] = nfc
    stop_words: Set[str] = frozenset()  # a frozenset, or a StopWords read on first use
    thresholds: dict = field(default_factory=lambda: dict(BASE_THRESHOLDS))  # see thresholds()
    pii: tuple[PiiRule, ...] = ()
    uses_spaces: bool = True  # False for Thai, where lines and sentences carry no spaces
    fasttext_label: str | None = None  # lid.176 label when it differs from `code`
    sentence_end: tuple[str, ...] = TERMINAL_PUNCTUATION  # () disables the line-punctuation rule
    boilerplate: tuple[str, ...] = ()  # regexes of whole lines to drop, on top of COMMON_BOILERPLATE
    sources: str = ""  # where the stop words and thresholds come from, for docs and reports
    answer_cue: str = "Answer:"  # what precedes the answer in an exam prompt (`init`'s example template)
    # Load and warm the segmenter once, before curate's pool forks its workers, so each worker
    # starts with it in memory (soberan.curate.preload). False for a segmenter whose first use
    # starts threads: a fork copies a process but not its threads.
    preload: bool = True

    @property
    def lid_label(self) -> str:
        """The fastText lid.176 label of this language (`__label__` stripped)."""
        return self.fasttext_label or self.code


def char_ngrams(text: str, n: int = 3) -> list[str]:
    """Fallback segmentation for a language without a segmenter: character n-grams of the text
    with whitespace removed, so shingles still work on unsegmented scripts."""
    s = "".join(text.split())
    return [s[i:i + n] for i in range(max(len(s) - n + 1, 1))] if s else []


# Words for space-delimited scripts: runs of letters/marks/digits (keeping inner apostrophes and
# hyphens, e.g. "don't", "anak-anak"), and every other non-space character as its own token, so
# that punctuation counts as a symbol token the way datatrove's word tokenizers count it.
_SPACE_WORDS = re.compile(r"[^\W_](?:[^\W_]|['’\-][^\W_])*|[^\w\s]|_", re.UNICODE)


def space_words(text: str) -> list[str]:
    """Words of a language written with spaces between words (en, id, ms, tl, ar after
    folding): a Unicode-aware regex split, no model needed. NFC first, so a decomposed accent
    (e + U+0301) stays inside its word."""
    return _SPACE_WORDS.findall(unicodedata.normalize("NFC", text))


@lru_cache(maxsize=None)
def get_pack(code: str) -> LangPack:
    """The pack for an ISO 639 code (`fil` → `tl`), or a clear error listing those available."""
    code = ALIASES.get(code.lower(), code.lower()).replace("-", "_")
    try:
        mod = importlib.import_module(f"soberan.lang.{code}")
    except ModuleNotFoundError as e:
        if e.name != f"soberan.lang.{code}":
            raise  # the pack exists but one of its own imports is missing: say that, not "no pack"
        raise KeyError(f"no language pack for {code!r}; available: {', '.join(available())}") from None
    pack = getattr(mod, "PACK", None)
    if not isinstance(pack, LangPack):
        raise TypeError(f"soberan.lang.{code} defines no PACK = LangPack(...)")
    return pack


SHARED_MODULES = {"pii"}  # modules of this package that every pack uses; not languages


def available() -> list[str]:
    import soberan.lang as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)
                  if not m.name.startswith("_") and m.name not in SHARED_MODULES)


# ---- helpers the packs share to build PII rules -------------------------------------------------

def ascii_digits(s: str) -> str:
    """`s` with every decimal digit (Arabic-Indic ٠١٢, Thai ๐๑๒, full-width ０１２ …) as ASCII, so a
    number written in a national script is validated like one in ASCII."""
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in s)


def digits(s: str) -> str:
    """The ASCII digits of `s`, separators dropped."""
    return "".join(str(unicodedata.decimal(c)) for c in s if c.isdecimal())


# Validators are module-level functions bound with functools.partial (not closures), so packs and
# rules pickle into the workers of a process pool.

def _stdnum_is_valid(module: str, s: str) -> bool:
    return importlib.import_module(f"stdnum.{module}").is_valid(digits(s))


def stdnum_valid(module: str) -> Callable[[str], bool]:
    """A validator backed by python-stdnum (maintained checksum and component rules, e.g.
    "kr.rrn", "th.pin"), imported on first use."""
    return partial(_stdnum_is_valid, module)


def personal_phone(s: str, region: str | None) -> bool:
    """True when `s` is a valid number of `region`'s numbering plan (any region when None, which
    needs a +CC) that can belong to a person: toll-free, premium-rate, shared-cost and universal
    access numbers are businesses' and helplines' (Crimestoppers' 0800 555 111), not PII."""
    import phonenumbers
    from phonenumbers import PhoneNumberType as T

    try:
        n = phonenumbers.parse(ascii_digits(s), region)
    except phonenumbers.NumberParseException:
        return False
    if not phonenumbers.is_valid_number(n):
        return False
    if region is not None and phonenumbers.region_code_for_number(n) != region:
        return False
    return phonenumbers.number_type(n) not in (T.TOLL_FREE, T.PREMIUM_RATE, T.SHARED_COST, T.UAN)


def phone_valid(region: str) -> Callable[[str], bool]:
    """A validator backed by libphonenumber (the `phonenumbers` package): the candidate must be a
    personal number of the region's numbering plan (right prefix for its length), not just digits."""
    return partial(personal_phone, region=region)


# A phone-number candidate: `+CC` or the trunk prefix 0 (every country with a pack dials
# national numbers with a leading 0, and requiring it keeps bare digit runs such as years and
# amounts out), then digit groups separated by single spaces, dots, dashes or parentheses. The
# numbering-plan validator decides; no letters are required around it, since Thai and Korean
# write a number right after a word ("โทร0812345678").
PHONE_CANDIDATE = (r"(?<![\d+.\-/])(?:\+\d{1,3}[\s.-]?|(?=\(?0))(?:\(\d{1,4}\)[\s.-]?)?\d{1,5}"
                   r"(?:[\s.-]?\d{2,5}){1,4}(?![\d-]|\.\d)")


def phone_rule(name: str, region: str, description: str) -> PiiRule:
    return PiiRule(name=name, pattern=PHONE_CANDIDATE, validate=phone_valid(region),
                   description=description)
