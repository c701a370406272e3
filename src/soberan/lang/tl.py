"""Tagalog / Filipino (`tl`, also `fil`). Written with spaces; words are a Unicode-aware regex
split. FineWeb2 publishes Filipino as `fil_Latn`.

PII: PhilSys numbers (PSN, 12 digits; PCN, 16 digits), the BIR tax identification number (TIN)
and phone numbers. None of these has a published check digit, so each needs its canonical
grouping, and the PhilSys ones also a keyword just before the number.
"""

from __future__ import annotations

from soberan.lang import LangPack, PiiRule, phone_rule, space_words, fineweb2

_PHILSYS = ("philsys", "psn", "pcn", "philid", "national id", "pambansang id", "id no", "id number",
            "numero ng id", "id #")

PII = (
    PiiRule("PH_PCN", r"(?<!\d)\d{4}[-\s]\d{4}[-\s]\d{4}[-\s]\d{4}(?!\d)", None,
            "PhilSys Card Number NNNN-NNNN-NNNN-NNNN after a keyword such as 'PhilID' or 'PCN'",
            context=_PHILSYS),
    PiiRule("PH_PSN", r"(?<!\d)(?<!\d[-\s])\d{4}[-\s]\d{4}[-\s]\d{4}(?![-\s]?\d)", None,
            "PhilSys Number NNNN-NNNN-NNNN after a keyword such as 'PhilSys' or 'PSN'",
            context=_PHILSYS),
    PiiRule("PH_TIN", r"(?<!\d)\d{3}-\d{3}-\d{3}-\d{3,5}(?!\d)", None,
            "TIN NNN-NNN-NNN-BBB(BB) with its branch code"),
    PiiRule("PH_TIN", r"(?<![\d-])\d{3}-\d{3}-\d{3}(?![\d-])", None,
            "TIN NNN-NNN-NNN after the keyword 'TIN'",
            context=("tin", "tax identification", "taxpayer identification")),
    phone_rule("PH_PHONE", "PH", "mobile 09NN-NNN-NNNN, Metro Manila (02) 8NNN-NNNN; +63"),
)

PACK = LangPack(
    code="tl", name="Tagalog (Filipino)", words=space_words, fasttext_label="tl",
    answer_cue="Sagot:",
    # FineWeb2 configs/fil_Latn.yml
    stop_words=frozenset(["ng", "sa", "ang", "na", "mga", "ay", "at", "isang", "noong"]),
    thresholds=fineweb2(
        dup_line_frac=0.263, dup_n_grams={5: 0.15, 6: 0.141, 7: 0.129, 8: 0.119, 9: 0.11, 10: 0.1},
        top_n_grams={2: 0.286, 3: 0.228, 4: 0.179}, language_score=0.68, line_punct_thr=0.091,
        min_avg_word_length=3, max_avg_word_length=12, min_alpha_words_ratio=0.821,
        new_line_ratio=0.159,
    ),
    pii=PII,
    boilerplate=(
        r"(basahin din|basahin pa)\s*:.{0,120}",
        r"(basahin (din|pa)|ibahagi)\s*:?",
        r"(mag-?login|mag-?sign up|magparehistro)(\s*[|/]\s*(mag-?login|mag-?sign up|magparehistro))*",
    ),
    sources="stop words and thresholds: FineWeb2 configs/fil_Latn.yml",
)
