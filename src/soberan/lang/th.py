"""Thai (ภาษาไทย). Words come from PyThaiNLP's dictionary-based `newmm` segmenter (Thai has no
spaces between words); FineWeb2 segmented `tha_Thai` with PyThaiNLP too.

Thai sentences end without punctuation (a space separates them), so FineWeb's line-punctuation
rule is off: `sentence_end=()`, matching FineWeb2's `line_punct_thr: 0.0` for Thai.
"""

from __future__ import annotations

import unicodedata

from soberan.lang import LangPack, PiiRule, StopWords, fineweb2, phone_rule, stdnum_valid


def words(text: str) -> list[str]:
    from pythainlp.tokenize import word_tokenize

    # newmm keeps newlines as tokens even with keep_whitespace=False; drop every blank token
    toks = word_tokenize(unicodedata.normalize("NFC", text), engine="newmm", keep_whitespace=False)
    return [t for t in (t.strip() for t in toks) if t]


def _thai_stop_words() -> frozenset[str]:
    from pythainlp.corpus import thai_stopwords

    return thai_stopwords()


def normalize(text: str) -> str:
    """NFC, then PyThaiNLP's normalizer: it puts tone marks and vowels typed in the wrong order
    into the canonical order and drops doubled ones, so the same word has one byte form."""
    from pythainlp.util import normalize as thai_normalize

    return thai_normalize(unicodedata.normalize("NFC", text))


PII = (
    PiiRule("TH_ID", r"(?<!\d)\d[-\s]?\d{4}[-\s]?\d{5}[-\s]?\d{2}[-\s]?\d(?!\d)", stdnum_valid("th.pin"),
            "national ID (เลขประจำตัวประชาชน) N-NNNN-NNNNN-NN-C, first digit 1–8, mod-11 check digit"),
    phone_rule("TH_PHONE", "TH", "mobile 06/08/09-NNN-NNNN, Bangkok 02-NNN-NNNN, provinces 0NN-NNN-NNN; +66"),
)

PACK = LangPack(
    code="th", name="Thai", words=words, normalize=normalize,
    answer_cue="คำตอบ:",
    # PyThaiNLP's thai_stopwords() (1,030 words, made for its own segmenter), which holds the
    # eight of FineWeb2 configs/tha_Thai.yml: with those eight alone, short Thai posts rarely
    # hold two, and Gopher's stop-word rule dropped thousands of plainly Thai messages.
    stop_words=StopWords(_thai_stop_words, ["ใน", "ที่", "และ", "ของ", "เป็น", "มี", "การ", "ได้"]),
    thresholds=fineweb2(
        dup_line_frac=0.349, dup_n_grams={5: 0.185, 6: 0.168, 7: 0.152, 8: 0.137, 9: 0.124, 10: 0.111},
        top_n_grams={2: 0.221, 3: 0.197, 4: 0.162}, language_score=0.9, line_punct_thr=0.0,
        min_avg_word_length=2, max_avg_word_length=10, min_alpha_words_ratio=0.9,
        new_line_ratio=0.153,
    ),
    pii=PII,
    uses_spaces=False,
    sentence_end=(),
    boilerplate=(
        r".{0,40}(สงวนลิขสิทธิ์).{0,40}",  # "all rights reserved"
        r".{0,40}(คุกกี้).{0,60}(ยอมรับ|นโยบาย|ตั้งค่า).{0,40}",  # cookie banners
        r"(หน้าแรก|หน้าหลัก)\s*(>|›|»|/)\s*.{0,80}",  # breadcrumb from "home"
        r"(เข้าสู่ระบบ|สมัครสมาชิก|ลงทะเบียน)(\s*[|/]\s*(เข้าสู่ระบบ|สมัครสมาชิก|ลงทะเบียน))*",
        r"(อ่านเพิ่มเติม|อ่านข่าวที่เกี่ยวข้อง)\s*:.{0,120}",  # "read more: <another article>"
        r"(อ่านต่อ|อ่านเพิ่มเติม|แชร์|กลับขึ้นด้านบน)(\s*>+)?",
    ),
    sources="stop words and thresholds: FineWeb2 configs/tha_Thai.yml; segmentation: PyThaiNLP newmm",
)
