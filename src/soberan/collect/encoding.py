"""Bytes of unknown encoding to text, national legacy encodings included.

Much of a nation's older text is not UTF-8: Korean government sites still serve EUC-KR/CP949,
Thai ones TIS-620, Arabic ones Windows-1256, Vietnamese archives VISCII. The order of trust:
a forced encoding, a byte-order mark, UTF-8, the charset the document declares (HTTP header or
`<meta>`), the target languages' legacy encodings, and finally charset-normalizer's detection over
every codec it knows. Nothing is decoded with `errors="replace"`: bytes that fit no encoding make
the document a recorded rejection rather than silent mojibake.
"""

from __future__ import annotations

import codecs
import re

# Legacy encodings of each target language (ISO 639-1), most common first: preferred when
# charset-normalizer finds them as good as its best guess (short texts often fit several codecs).
LEGACY: dict[str, tuple[str, ...]] = {
    "ko": ("cp949", "euc_kr", "iso2022_kr", "johab"),  # CP949 is a superset of EUC-KR
    "th": ("tis_620", "cp874", "iso8859_11"),
    "ar": ("cp1256", "iso8859_6", "cp720"),
    "fa": ("cp1256",),
    "ur": ("cp1256",),
    "vi": ("cp1258", "viscii"),
    "ja": ("cp932", "euc_jp", "iso2022_jp"),
    "zh": ("gb18030", "big5"),
    "id": ("cp1252",), "ms": ("cp1252",), "tl": ("cp1252",), "en": ("cp1252",),
}

# VISCII (RFC 1456), the 8-bit Vietnamese standard of the 1990s. Python has no codec for it, and
# charset-normalizer only tries Python codecs, so it is defined here. It reuses six C0 control
# positions for capital letters. Table generated from glibc iconv's VISCII module.
_VISCII = (
    "\x00\x01Ẳ\x03\x04ẴẪ\x07\x08\t\n\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13Ỷ\x15\x16\x17\x18Ỹ\x1a\x1b\x1c\x1dỴ\x1f"
    " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~\x7f"
    "ẠẮẰẶẤẦẨẬẼẸẾỀỂỄỆỐỒỔỖỘỢỚỜỞỊỎỌỈỦŨỤỲÕắằặấầẩậẽẹếềểễệốồổỗỠƠộờởịỰỨỪỬơớƯ"
    "ÀÁÂÃẢĂẳẵÈÉÊẺÌÍĨỳĐứÒÓÔạỷừửÙÚỹỵÝỡưàáâãảăữẫèéêẻìíĩỉđựòóôõỏọụùúũủýợỮ"
)
assert len(_VISCII) == 256
_VISCII_ENCODE = codecs.charmap_build(_VISCII)


def _viscii_search(name: str):
    if name.replace("-", "").replace("_", "").lower() != "viscii":
        return None
    return codecs.CodecInfo(
        name="viscii",
        encode=lambda s, errors="strict": codecs.charmap_encode(s, errors, _VISCII_ENCODE),
        decode=lambda b, errors="strict": codecs.charmap_decode(b, errors, _VISCII),
    )


codecs.register(_viscii_search)

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.I)
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# The git/file(1) heuristic: text formats never hold NUL bytes; images, archives, PDFs and
# executables all do within their first few kilobytes.
_BINARY_PROBE = 8192


class Undecodable(ValueError):
    """Bytes that are binary or fit no encoding; `rule` names which, for the rejection record."""

    def __init__(self, rule: str, reason: str):
        super().__init__(reason)
        self.rule = rule


def known_encoding(name: str) -> str:
    """The canonical codec name, or a ValueError for a name Python (and VISCII) do not know."""
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise ValueError(f"unknown encoding {name!r}") from None


def declared_charset(head: bytes) -> str | None:
    """The charset an HTML document declares in a `<meta>` tag, if a known one."""
    m = _META_CHARSET.search(head[:4096])
    if not m:
        return None
    try:
        return codecs.lookup(m.group(1).decode("ascii", "replace")).name
    except LookupError:
        return None


def candidates(langs: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for lang in langs:
        for enc in LEGACY.get(lang, ()):
            if enc not in out:
                out.append(enc)
    return out


def _strict(data: bytes, enc: str) -> str | None:
    try:
        return data.decode(enc)
    except (UnicodeDecodeError, LookupError):
        return None


_VIETNAMESE_CODECS = ("cp1258", "viscii")
# The 134 precomposed Vietnamese letters: what VISCII adds to ASCII.
_VIET_LETTERS = frozenset(c for c in _VISCII if ord(c) > 0x7F)


def _vietnamese(data: bytes) -> tuple[str, str] | None:
    """Choose between Windows-1258 and VISCII for Vietnamese. Both decode almost any bytes and
    charset-normalizer's mess measure cannot tell them apart on short texts, so a candidate must
    read like Vietnamese: after NFC (which composes Windows-1258's combining tone marks) most of
    its non-ASCII characters are Vietnamese letters, and they are a minority of all letters, as
    in Vietnamese where most syllables are ASCII letters plus one marked vowel. The second test
    keeps CJK, Thai or Arabic bytes, which are all high bytes, from passing as VISCII."""
    import unicodedata

    best: tuple[float, str, str] | None = None
    for enc in _VIETNAMESE_CODECS:
        text = _strict(data, enc)
        if text is None:
            continue
        composed = unicodedata.normalize("NFC", text)
        letters = [c for c in composed if c.isalpha()]
        high = [c for c in composed if ord(c) > 0x7F]
        if not high or not letters:
            continue
        score = sum(c in _VIET_LETTERS for c in high) / len(high)
        if len(high) / len(letters) > 0.6:
            continue
        if best is None or score > best[0]:
            best = (score, text, enc)
    if best is None or best[0] < 0.9:
        return None
    return best[1], best[2]


def decode(data: bytes, *, forced: str | None = None, declared: str | None = None,
           langs: tuple[str, ...] = ()) -> tuple[str, str]:
    """Decode `data`; return (text, encoding) or raise `Undecodable` with its rule."""
    if forced:
        try:
            return data.decode(forced), codecs.lookup(forced).name
        except UnicodeDecodeError as e:
            raise Undecodable("undecodable", f"not valid {forced} (source.encoding) at byte "
                                             f"{e.start}: {data[e.start:e.start + 8]!r}") from None
    for bom, enc in _BOMS:
        if data.startswith(bom):
            text = _strict(data, enc)
            if text is not None:
                return text, enc
    nul = data.find(b"\x00", 0, _BINARY_PROBE)
    if nul >= 0:
        raise Undecodable("binary", f"binary content (NUL byte at offset {nul})")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as e:
        first_bad = e.start
    if declared and declared not in ("utf-8", "utf_8"):
        text = _strict(data, declared)
        if text is not None:
            return text, declared
    from charset_normalizer import from_bytes

    if "vi" in langs:
        got = _vietnamese(data)
        if got is not None:
            return got
    # charset-normalizer ranks every codec by mess (chaos), then language coherence. On short
    # texts several codecs tie (three Hangul syllables in EUC-KR decode cleanly as Big5 too);
    # among the tied best, the target languages' legacy encodings win, in language order.
    matches = list(from_bytes(data))
    if matches:
        best = matches[0]
        tied = {m.encoding: m for m in matches if m.chaos <= best.chaos + 0.01}
        for enc in candidates(langs):
            if enc in tied:
                return str(tied[enc]), enc
        return str(best), best.encoding
    tried = "/".join(candidates(langs)) or "known"
    raise Undecodable("undecodable", f"not UTF-8 (invalid byte at {first_bad}: "
                                     f"{data[first_bad:first_bad + 8]!r}) and no {tried} encoding fits")
