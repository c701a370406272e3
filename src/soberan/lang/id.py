"""Indonesian (Bahasa Indonesia). Written with spaces, so words are a Unicode-aware regex split
(reduplications like "anak-anak" stay one word).

PII: NIK (Nomor Induk Kependudukan, 16 digits) and phone numbers.
"""

from __future__ import annotations

from soberan.lang import (LangPack, PiiRule, fineweb2, phone_rule, published_stop_words, space_words,
                          stdnum_valid)

PII = (
    PiiRule("ID_NIK", r"(?<!\d)\d{6}[\s.-]?\d{6}[\s.-]?\d{4}(?!\d)", stdnum_valid("id.nik"),
            "NIK PPKKCC-DDMMYY-SSSS: a registered province/regency code, birth date "
            "(day + 40 for women); no check digit"),
    phone_rule("ID_PHONE", "ID", "mobile 08NN-NNNN-NNNN, landline (021) NNNN NNNN; +62"),
)

PACK = LangPack(
    code="id", name="Indonesian", words=space_words,
    answer_cue="Jawaban:",
    # FineWeb2 configs/ind_Latn.yml's ten most frequent words, and the published Indonesian list
    # (Tala 2003, 758 words, via stopwords-iso): reviews and tweets use other function words
    # ("aku", "gak" aside, "saya", "sudah", "tidak") than the web pages FineWeb2 counted.
    stop_words=published_stop_words("id", ["dan", "yang", "di", "pada", "dari", "ini", "dengan", "adalah",
                                           "untuk", "dalam"]),
    thresholds=fineweb2(
        dup_line_frac=0.25, dup_n_grams={5: 0.176, 6: 0.158, 7: 0.142, 8: 0.128, 9: 0.119, 10: 0.109},
        top_n_grams={2: 0.088, 3: 0.104, 4: 0.12}, language_score=0.685, line_punct_thr=0.25,
        min_avg_word_length=3, max_avg_word_length=11, min_alpha_words_ratio=0.805,
        new_line_ratio=0.222,
    ),
    pii=PII,
    boilerplate=(
        r".{0,40}hak cipta.{0,60}",
        r".{0,40}cookie.{0,60}(setuju|terima|kebijakan).{0,40}",
        r"(beranda)\s*(>|›|»|/)\s*.{0,80}",
        r"(masuk|daftar|login)(\s*[|/]\s*(masuk|daftar|login))*",
        r"(baca juga|lihat juga)\s*:.{0,120}",  # "read also: <another article's title>"
        r"(baca selengkapnya|bagikan( artikel( ini)?)?)\s*:?",
    ),
    sources="stop words and thresholds: FineWeb2 configs/ind_Latn.yml",
)
