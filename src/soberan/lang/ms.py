"""Malay (Bahasa Melayu, Standard Malay `zsm`). Written with spaces; words are a Unicode-aware
regex split.

PII: MyKad / NRIC number (YYMMDD-PB-###G) and phone numbers.
"""

from __future__ import annotations

from soberan.lang import LangPack, PiiRule, phone_rule, space_words, stdnum_valid, fineweb2

PII = (
    PiiRule("MY_NRIC", r"(?<!\d)\d{6}-?\d{2}-?\d{4}(?!\d)", stdnum_valid("my.nric"),
            "MyKad YYMMDD-PB-###G: a real birth date and a place-of-birth code issued by JPN "
            "(01–16, 21–59, 60–68, 71–72, 74–79, 82–93, 98–99); no check digit"),
    phone_rule("MY_PHONE", "MY", "mobile 01N-NNN NNNN, landline 03-NNNN NNNN, 0N-NNN NNNN; +60"),
)

PACK = LangPack(
    code="ms", name="Malay", words=space_words,
    answer_cue="Jawapan:",
    # FineWeb2 configs/zsm_Latn.yml
    stop_words=frozenset(["dan", "di", "yang", "pada", "dalam", "dengan", "untuk", "ini"]),
    thresholds=fineweb2(
        dup_line_frac=0.375, dup_n_grams={5: 0.244, 6: 0.225, 7: 0.212, 8: 0.201, 9: 0.192, 10: 0.183},
        top_n_grams={2: 0.087, 3: 0.104, 4: 0.115}, language_score=0.618, line_punct_thr=0.25,
        min_avg_word_length=3, max_avg_word_length=10, min_alpha_words_ratio=0.808,
        new_line_ratio=0.25,
    ),
    pii=PII,
    boilerplate=(
        r".{0,40}hak cipta.{0,60}",
        r".{0,40}(kuki|cookie).{0,60}(setuju|terima|dasar).{0,40}",
        r"(laman utama|utama)\s*(>|›|»|/)\s*.{0,80}",
        r"(log masuk|daftar)(\s*[|/]\s*(log masuk|daftar))*",
        r"(baca juga|lihat juga)\s*:.{0,120}",
        r"(baca lagi|baca seterusnya|kongsi( artikel( ini)?)?)\s*:?",
    ),
    sources="stop words and thresholds: FineWeb2 configs/zsm_Latn.yml",
)
