"""Arabic (العربية, Modern Standard Arabic `arb`). Words are a whitespace/punctuation split of the
orthographically folded text (`fold`), so that spelling variants of one word (أحمد / احمد,
with or without diacritics or tatweel) count and shingle as one.

Two levels of normalization:
- `normalize` (applied to the stored text): NFKC, which turns presentation forms (ﻻ, ﷲ) into
  letters, and removes tatweel (ـ, pure elongation). Diacritics and hamza forms stay: the model
  should learn the text as written.
- `fold` (for matching only: words, stop words, filters, dedup shingles): also strips diacritics
  (harakat, superscript alef, Quranic marks), unifies alef variants (أ إ آ ٱ → ا), alef maqsura
  (ى → ي) and Persian/Urdu letter forms (ی → ي, ک → ك). Taa marbuta (ة) is kept: folding it into
  haa (ه) would merge the feminine ending with the pronoun suffix -ه, which are different words.

PII: Saudi national ID / Iqama, UAE Emirates ID, and Saudi and Emirati phone numbers.
"""

from __future__ import annotations

import re
import unicodedata

from soberan.lang import (TERMINAL_PUNCTUATION, LangPack, PiiRule, digits, fineweb2, phone_rule,
                          published_stop_words, space_words)

TATWEEL = "\u0640"
# harakat and shadda/sukun (064B–0652), maddah/hamza marks (0653–0655), subscript alef (0656),
# superscript alef (0670), Quranic annotation signs (0610–061A, 06D6–06ED)
_DIACRITICS = re.compile("[\u0610-\u061A\u064B-\u065F\u0670\u06D6-\u06DC\u06DF-\u06E8\u06EA-\u06ED]")
_LETTERS = str.maketrans({
    "أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا",  # alef with hamza above/below, madda, wasla
    "ى": "ي",  # alef maqsura → yaa (they are written interchangeably at word end)
    "ی": "ي", "ې": "ي",  # Persian/Urdu yeh
    "ک": "ك",  # Persian keheh
    TATWEEL: None,
})


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).replace(TATWEEL, "")


def fold(text: str) -> str:
    """Orthographic folding for matching (see the module docstring)."""
    # NFKC first so precomposed forms (e.g. U+0622 alef madda) and presentation forms become
    # base letter + mark, then drop the marks and unify the letters.
    return _DIACRITICS.sub("", unicodedata.normalize("NFKC", text)).translate(_LETTERS)


def words(text: str) -> list[str]:
    return space_words(fold(text))


def luhn(s: str) -> bool:
    from stdnum import luhn as _luhn

    return _luhn.is_valid(digits(s))


def saudi_id_valid(s: str) -> bool:
    """10 digits, 1 (citizen) or 2 (resident, Iqama) first, Luhn check digit (the algorithm of the
    Saudi National Information Center's ID validation)."""
    d = digits(s)
    return len(d) == 10 and d[0] in "12" and luhn(d)


def emirates_id_valid(s: str) -> bool:
    """15 digits 784-YYYY-NNNNNNN-C: 784 is the UAE's ISO 3166 code, YYYY a birth year, and the
    last digit a Luhn check digit."""
    d = digits(s)
    return len(d) == 15 and d.startswith("784") and 1900 <= int(d[3:7]) <= 2100 and luhn(d)


_D = r"[0-9٠-٩]"  # ASCII or Arabic-Indic digits
PII = (
    PiiRule("SA_ID", rf"(?<!{_D}){_D}{{10}}(?!{_D})", saudi_id_valid,
            "Saudi national ID (1…) or Iqama (2…), 10 digits with a Luhn check digit"),
    PiiRule("AE_EID", rf"(?<!{_D})(?:784|٧٨٤)[-\s]?{_D}{{4}}[-\s]?{_D}{{7}}[-\s]?{_D}(?!{_D})",
            emirates_id_valid, "UAE Emirates ID 784-YYYY-NNNNNNN-C with a Luhn check digit"),
    phone_rule("SA_PHONE", "SA", "Saudi mobile 05N NNN NNNN, landline 01N NNN NNNN; +966"),
    phone_rule("AE_PHONE", "AE", "UAE mobile 05N NNN NNNN, landline 0N NNN NNNN; +971"),
)

# FineWeb2 configs/arb_Arab.yml, folded like the text they are compared with ("،" is the Arabic
# comma, a token of its own).
_FW2_STOP = ["،", "في", "من", "على", "إلى", "عام", "أن", "مع", "أو", "هو", "عن", "التي", "كان", "بين",
             "ما", "كانت", "هي", "المتحدة", "بعد"]

PACK = LangPack(
    code="ar", name="Arabic", words=words, normalize=normalize,
    answer_cue="الإجابة:",
    # FineWeb2's list and the published Arabic list (stopwords-iso, 480 entries), both folded
    # like the words they are matched against
    stop_words=published_stop_words("ar", [fold(w) for w in _FW2_STOP], fold=fold),
    thresholds=fineweb2(
        dup_line_frac=0.304, dup_n_grams={5: 0.165, 6: 0.153, 7: 0.142, 8: 0.131, 9: 0.12, 10: 0.109},
        top_n_grams={2: 0.197, 3: 0.172, 4: 0.146}, language_score=0.711, line_punct_thr=0.143,
        min_avg_word_length=2, max_avg_word_length=9, min_alpha_words_ratio=0.787,
        new_line_ratio=0.189,
    ),
    pii=PII,
    sentence_end=TERMINAL_PUNCTUATION + ("؟", "۔", "؛"),
    boilerplate=(
        r".{0,40}(جميع|كافة)\s+الحقوق\s+(محفوظة).{0,40}",  # "all rights reserved"
        r".{0,40}(ملفات تعريف الارتباط|الكوكيز|كوكيز).{0,60}",  # cookies
        r"(الرئيسية|الصفحة الرئيسية)\s*(>|›|»|/|<|‹|«)\s*.{0,80}",  # breadcrumbs (either direction)
        r"(تسجيل الدخول|تسجيل الخروج|إنشاء حساب|اشترك)(\s*[|/]\s*(تسجيل الدخول|إنشاء حساب|اشترك))*",
        r"(اقرأ أيضا|اقرأ أيضاً)\s*:.{0,120}",  # "read also: <another article's title>"
        r"(اقرأ المزيد|شارك|مشاركة)(\s*(على|عبر)\s*\w+)?\s*:?",
    ),
    sources="stop words and thresholds: FineWeb2 configs/arb_Arab.yml; normalization: see module",
)
