"""Korean. Words are Kiwi morphemes (kiwipiepy ships its model, nothing is downloaded)."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from soberan.lang import LangPack


@lru_cache(maxsize=1)
def _kiwi():
    from kiwipiepy import Kiwi

    return Kiwi()


def words(text: str) -> list[str]:
    return [t.form for t in _kiwi().tokenize(text)]


def normalize(text: str) -> str:
    # NFC composes conjoining Hangul jamo into syllables, so the same word has one form.
    return unicodedata.normalize("NFC", text)


PACK = LangPack(code="ko", name="Korean", words=words, normalize=normalize)
