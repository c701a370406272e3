"""Vietnamese (Tiếng Việt). Words come from underthesea's CRF word segmenter, which joins the
syllables of a compound word ("Quốc hội"); FineWeb2's `vie_Latn` thresholds were computed on
compound words too (pyvi through spaCy), so its word-length bounds apply.

PII: citizen identity card number (CCCD, 12 digits) and phone numbers.
"""

from __future__ import annotations

import datetime
import unicodedata

from soberan.lang import LangPack, PiiRule, digits, fineweb2, phone_rule, published_stop_words


def words(text: str) -> list[str]:
    from underthesea import word_tokenize

    return word_tokenize(unicodedata.normalize("NFC", text))


def normalize(text: str) -> str:
    # Vietnamese web text often arrives decomposed (base letter + combining tone mark); NFC
    # gives the precomposed form that keyboards and the segmenter's dictionary use.
    return unicodedata.normalize("NFC", text)


# Province/city codes of the CCCD (Circular 07/2016/TT-BCA, annex: the 63 codes of the General
# Statistics Office's administrative list, 001 Hà Nội … 096 Cà Mau).
PROVINCES = frozenset({
    1, 2, 4, 6, 8, 10, 11, 12, 14, 15, 17, 19, 20, 22, 24, 25, 26, 27, 30, 31, 33, 34, 35, 36, 37, 38,
    40, 42, 44, 45, 46, 48, 49, 51, 52, 54, 56, 58, 60, 62, 64, 66, 67, 68, 70, 72, 74, 75, 77, 79,
    80, 82, 83, 84, 86, 87, 89, 91, 92, 93, 94, 95, 96,
})


def cccd_valid(s: str) -> bool:
    """12 digits PPP G YY NNNNNN: a real province code, a century/gender digit G (0/1: born in
    the 1900s, 2/3: the 2000s) and a birth year not in the future. There is no check digit."""
    d = digits(s)
    if len(d) != 12 or int(d[:3]) not in PROVINCES or d[3] not in "0123":
        return False
    year = (1900 if d[3] in "01" else 2000) + int(d[4:6])
    return year <= datetime.date.today().year


PII = (
    PiiRule("VN_CCCD", r"(?<!\d)\d{3}\s?\d{3}\s?\d{6}(?!\d)", cccd_valid,
            "citizen ID (Căn cước công dân) PPP-G-YY-NNNNNN: province code, century/gender digit, "
            "birth year; no check digit"),
    phone_rule("VN_PHONE", "VN", "mobile 03/05/07/08/09-NNNN-NNNN, landline 02N-NNNN-NNNN; +84"),
)

PACK = LangPack(
    code="vi", name="Vietnamese", words=words, normalize=normalize,
    answer_cue="Đáp án:",
    preload=False,  # underthesea starts a native thread on first use
    # FineWeb2 configs/vie_Latn.yml, and the published Vietnamese list (stopwords-iso, 645
    # entries; multi-syllable ones such as "bao giờ" match underthesea's words)
    stop_words=published_stop_words("vi", ["là", "và", "của", "một", "được", "trong", "năm", "các", "có",
                                           "loài", "này", "đã", "người"]),
    thresholds=fineweb2(
        dup_line_frac=0.293, dup_n_grams={5: 0.178, 6: 0.163, 7: 0.15, 8: 0.136, 9: 0.124, 10: 0.111},
        top_n_grams={2: 0.223, 3: 0.197, 4: 0.171}, language_score=0.802, line_punct_thr=0.333,
        min_avg_word_length=3, max_avg_word_length=11, min_alpha_words_ratio=0.803,
        new_line_ratio=0.103,
    ),
    pii=PII,
    boilerplate=(
        r".{0,40}(bản quyền|giữ bản quyền).{0,60}",
        r".{0,40}cookie.{0,60}(đồng ý|chấp nhận|chính sách).{0,40}",
        r"(trang chủ)\s*(>|›|»|/)\s*.{0,80}",
        r"(đăng nhập|đăng ký)(\s*[|/]\s*(đăng nhập|đăng ký))*",
        r"(xem thêm|đọc thêm|tin liên quan)\s*:.{0,120}",  # "see also: <another article>"
        r"(xem thêm|đọc thêm|chia sẻ|bình luận)(\s*\(\d+\))?\s*:?",
    ),
    sources="stop words and thresholds: FineWeb2 configs/vie_Latn.yml; segmentation: underthesea",
)
