"""Korean (한국어). Words are Kiwi morphemes (kiwipiepy ships its model; nothing is downloaded),
the same segmentation FineWeb2 used for `kor_Hang`, so its thresholds apply as published.

PII: resident registration number (주민등록번호), business registration number (사업자등록번호)
and phone numbers. See docs/languages.md for the RRN checksum policy.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from functools import lru_cache

from soberan.lang import LangPack, PiiRule, digits, fineweb2, phone_rule, stdnum_valid


@lru_cache(maxsize=1)
def _kiwi():
    import warnings

    from kiwipiepy import Kiwi

    # num_workers=0 is Kiwi's single-thread mode (since 0.21; it warns that 0 once meant "all
    # cores"): curate's workers are processes, one per core, and a process without native
    # threads can be forked once Kiwi is loaded (soberan.curate.preload).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return Kiwi(num_workers=0)


# Full-width ASCII (U+FF01–FF5E) → ASCII. Not NFKC: NFKC would also turn the compatibility jamo
# of "ㅋㅋ" or "ㅠㅠ" into conjoining jamo that no longer display as written.
_FULLWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_HAS_FULLWIDTH = re.compile("[\uff01-\uff5e\u3000]")


def normalize(text: str) -> str:
    # NFC composes conjoining Hangul jamo (U+1100…) into syllables, so the same word has one form.
    text = unicodedata.normalize("NFC", text)
    return text.translate(_FULLWIDTH) if _HAS_FULLWIDTH.search(text) else text


def words(text: str) -> list[str]:
    """Kiwi morphemes, line by line.

    Normalized first, so text that skipped the normalize step (benchmark items for
    decontamination, say) still yields the same morphemes. One Kiwi call per line, not per
    document: Kiwi's cost grows faster than the length of its input (a 227k-character statute
    takes 8.8 s whole and 4.0 s line by line, measured with kiwipiepy 0.24), and a line break is a
    paragraph boundary that no morpheme crosses, so the morphemes are the same but for Kiwi's
    language-model context at line starts (55 of 113,805 morphemes differ on that statute)."""
    out: list[str] = []
    for line in normalize(text).split("\n"):
        if line and not line.isspace():
            out += _line_words(line) if len(line) <= MEMO_MAX_LINE else _segment(line)
    return out


def _segment(line: str) -> tuple[str, ...]:
    return tuple(t.form for t in _kiwi().tokenize(line))


# Lines are segmented independently, so a line seen before has the same morphemes: boilerplate,
# navigation, statute headings and near-duplicate documents repeat lines, and those skip Kiwi.
# Bounded per process (8,192 lines of at most 512 characters: tens of MB at worst).
MEMO_MAX_LINE = 512
_line_words = lru_cache(maxsize=8192)(_segment)


# RRNs issued from 2020-10-05 on replace the region digits and the check digit with random ones
# (Ministry of the Interior, 주민등록번호 부여체계 개편), so those numbers cannot be checksummed.
RRN_RANDOM_FROM = datetime.date(2020, 10, 5)
_CENTURY = {"1": 1900, "2": 1900, "5": 1900, "6": 1900, "3": 2000, "4": 2000, "7": 2000, "8": 2000,
            "9": 1800, "0": 1800}


def rrn_check_digit_ok(d: str) -> bool:
    """The mod-11 check digit (weights 2..9, 2..5 over the first twelve digits). Nothing else:
    python-stdnum's `kr.rrn` also wants the region digits (8th-9th) in 00-95, which real numbers
    break (96-99 were issued too), and which numbers issued from 2020-10-05 on no longer carry."""
    total = sum(int(c) * w for c, w in zip(d, (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)))
    return (11 - total % 11) % 10 == int(d[12])


def rrn_valid(s: str) -> bool:
    """Policy: the birth date (YYMMDD with the century of the gender digit) must be a real date,
    not in the future, and then either the check digit is right, or the date is on or after
    2020-10-05, when RRNs stopped carrying one. The region digits are not checked (see
    `rrn_check_digit_ok`). A wrong-checksum number of someone born earlier is left alone: the
    check digit is the one thing that positively rules a pre-reform number out."""
    d = digits(s)
    if len(d) != 13:
        return False
    try:
        born = datetime.date(_CENTURY[d[6]] + int(d[:2]), int(d[2:4]), int(d[4:6]))
    except ValueError:
        return False
    if born > datetime.date.today():
        return False
    return rrn_check_digit_ok(d) or born >= RRN_RANDOM_FROM


def brn_valid(s: str) -> bool:
    """Business registration number NNN-NN-NNNNN: python-stdnum's component rules (office code
    >= 101, type code not 00, serial not 0000) plus the National Tax Service check digit, which
    stdnum does not verify: weights 1,3,7,1,3,7,1,3,5 over the first nine digits, plus
    floor(9th digit * 5 / 10); the check digit makes the total a multiple of 10."""
    d = digits(s)
    if len(d) != 10 or not stdnum_valid("kr.brn")(d):
        return False
    total = sum(int(c) * w for c, w in zip(d, (1, 3, 7, 1, 3, 7, 1, 3, 5))) + int(d[8]) * 5 // 10
    return (10 - total % 10) % 10 == int(d[9])


PII = (
    PiiRule("KR_RRN", r"(?<!\d)\d{6}\s?[-–]?\s?[1-8]\d{6}(?!\d)", rrn_valid,
            "resident registration number YYMMDD-GNNNNNC: date + gender digit + mod-11 check "
            "digit (or a birth date from 2020-10-05, when the check digit was dropped); region "
            "digits are not checked"),
    PiiRule("KR_BRN", r"(?<!\d)\d{3}-\d{2}-\d{5}(?!\d)", brn_valid,
            "business registration number NNN-NN-NNNNN with its weighted check digit"),
    phone_rule("KR_PHONE", "KR", "mobile 010-NNNN-NNNN, area codes 02/031–064, 070; +82"),
)

PACK = LangPack(
    code="ko", name="Korean", words=words, normalize=normalize,
    answer_cue="정답:",
    # FineWeb2 configs/kor_Hang.yml (Penedo et al. 2025, "FineWeb2"), Kiwi morphemes.
    stop_words=frozenset(["의", "다", "이", "는", "에", "을", "한", "년", "하", "은", "를", "했", "고",
                          "에서", "가", "있", "으로", "인", "월", "로", "되"]),
    thresholds=fineweb2(
        dup_line_frac=0.374, dup_n_grams={5: 0.201, 6: 0.184, 7: 0.168, 8: 0.154, 9: 0.14, 10: 0.127},
        top_n_grams={2: 0.282, 3: 0.228, 4: 0.185}, language_score=0.842, line_punct_thr=0.062,
        min_avg_word_length=1, max_avg_word_length=6, min_alpha_words_ratio=0.791,
        new_line_ratio=0.196,
        # Gopher's 50-word minimum counts English words; a Korean morpheme is ~1/2.5 of one, so
        # FineWeb2's pipeline kept the count but on morphemes. We keep that.
    ),
    pii=PII,
    boilerplate=(
        r".{0,30}무단\s*(전재|복제).{0,40}",  # "unauthorized reproduction ... prohibited"
        r"(저작권자|ⓒ|©).{0,60}",
        r"(본문|메뉴)\s*바로\s*가기.{0,20}",
        r"(로그인|회원\s*가입|아이디\s*찾기|비밀번호\s*찾기)(\s*[|/·]\s*(로그인|회원\s*가입|아이디\s*찾기|비밀번호\s*찾기))*",
        r"(이전\s*글|다음\s*글|목록|맨\s*위로|top)(\s*[|/·]\s*(이전\s*글|다음\s*글|목록|맨\s*위로))*",
        r"(공유하기|카카오톡\s*공유|페이스북\s*공유|댓글\s*\d*\s*개?|좋아요\s*\d*)",
        r".{0,40}(쿠키|자바\s*스크립트).{0,20}(사용|허용|동의|설정).{0,40}",
        r"홈\s*(>|›|»)\s*.{0,80}",
    ),
    sources="stop words and thresholds: FineWeb2 configs/kor_Hang.yml; segmentation: Kiwi",
)
