"""Language packs: lookup and aliases, segmentation on real sentences, normalization (Hangul jamo,
Arabic orthography, Thai and Vietnamese forms), lazy imports, thresholds, and a new pack dropped
into the package working with the quality and PII functions unchanged."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import unicodedata

import pytest

import soberan.lang as lang
from soberan.lang import BASE_THRESHOLDS, LangPack, available, char_ngrams, get_pack

PACKS = ["ko", "th", "vi", "id", "ms", "tl", "ar", "en"]

# One real sentence per language: line 2 of the NTREX-128 news test set (CC-BY-SA-4.0), so the
# tests run without ../shared/data; the shared copy adds 1,997 more lines where present.
SENTENCES = {
    "ko": "웨일스 의회 의원들은 ‘멍청이처럼 보이는 것’을 우려한다",
    "th": "สมาชิกสมัชชาของเวลล์มีความกังวลมากเกี่ยวกับ'การถูกมองว่าเป็นตัวตลก'",
    "vi": "Các Đại biểu Quốc hội Wales (AM) lo lắng về việc trông như những con rối",
    "id": "Para anggota parlemen Wales khawatir tentang 'terlihat seperti boneka'",
    "ms": "Ahli Dewan Undangan Wales bimbang tentang 'kelihatan seperti boneka'",
    "tl": "Nag-aalala ang mga AM tungkol sa 'pagmumukhang mga puppet'",
    "ar": "أعضاء الجمعية الوطنية في ويلز قلقون بشأن \"الظهور بمظهر الدمى\"",
    "en": "Welsh AMs worried about 'looking like muppets'",
}
NTREX = {"ko": "ref.kor", "th": "ref.tha", "vi": "ref.vie", "id": "ref.ind", "ms": "ref.msa",
         "tl": "ref.fil", "ar": "ref.arb", "en": "src.eng"}


def test_all_packs_available_and_aliases():
    assert set(PACKS) <= set(available())
    assert all(isinstance(get_pack(code), LangPack) for code in available())  # lang.pii is no pack
    for code in PACKS:
        p = get_pack(code)
        assert p.code == code and p.name and p.stop_words and p.thresholds
    assert get_pack("fil") is get_pack("tl") is get_pack("tgl")
    assert get_pack("KOR") is get_pack("ko")
    assert get_pack("arb") is get_pack("ar") and get_pack("zsm") is get_pack("ms")
    with pytest.raises(KeyError, match="available: .*ko"):
        get_pack("xx")


def test_thresholds_complete_and_from_fineweb2():
    for code in PACKS:
        t = get_pack(code).thresholds
        assert set(t) == set(BASE_THRESHOLDS), code
        assert 0 <= t["min_avg_word_length"] < t["max_avg_word_length"]
        assert 0 < t["language_score"] < 1
        assert sorted(t["dup_n_grams"]) == [5, 6, 7, 8, 9, 10] and sorted(t["top_n_grams"]) == [2, 3, 4]
    # spot values as published in github.com/huggingface/fineweb-2/configs
    assert get_pack("ko").thresholds["dup_line_frac"] == 0.374
    assert get_pack("th").thresholds["line_punct_thr"] == 0.0 and get_pack("th").sentence_end == ()
    assert get_pack("tl").thresholds["max_avg_word_length"] == 12
    assert get_pack("en").thresholds["short_line_thr"] == 0.67  # FineWeb English keeps it
    assert get_pack("vi").thresholds["short_line_thr"] is None  # FineWeb2 turned it off
    with pytest.raises(KeyError, match="unknown threshold"):
        lang.thresholds(min_wordz=3)


@pytest.mark.parametrize("code", PACKS)
def test_segmentation_inline(code):
    pack = get_pack(code)
    text = pack.normalize(SENTENCES[code])
    words = pack.words(text)
    content = [w for w in words if any(c.isalnum() for c in w)]
    assert len(content) >= 5, words
    if code == "th":
        # newmm splits without losing a character: the words are the text minus spaces
        assert "".join(words) == "".join(text.split())
        assert {"สมาชิก", "ความกังวล", "เกี่ยวกับ"} <= set(words)
    if code == "vi":
        assert "Quốc hội" in words and "Đại biểu" in words  # compounds stay one word
    if code == "ko":
        assert {"웨일스", "의회", "의원", "들"} <= set(words)  # morphemes, particle split off
    if code == "ar":
        assert "الجمعية" in words and not any("\u064b" <= c <= "\u0652" for w in words for c in w)
    if code in ("id", "ms", "tl", "en"):
        assert all(" " not in w for w in words)
    if code == "tl":
        assert "Nag-aalala" in words  # hyphenated affixation is one word


@pytest.mark.parametrize("code", PACKS)
def test_segmentation_and_thresholds_on_ntrex(code, shared_data):
    """Clean professional news text must pass Gopher quality with the pack's own words and
    thresholds: if segmentation and thresholds disagree (e.g. English word lengths applied to
    Korean morphemes), most of it would be dropped."""
    from soberan.curate.quality import gopher_quality

    path = shared_data / "ntrex128" / f"newstest2019-{NTREX[code]}.txt"
    if not path.exists():
        pytest.skip(f"{path} not present")
    lines = path.read_text(encoding="utf-8").splitlines()[:240]
    pack = get_pack(code)
    docs = ["\n".join(lines[i:i + 12]) for i in range(0, len(lines), 12)]
    kept = sum(gopher_quality(pack.normalize(d), pack) is None for d in docs)
    assert kept >= 0.9 * len(docs), f"{code}: only {kept}/{len(docs)} clean news docs kept"


def test_lazy_imports():
    """Importing a pack loads no segmenter: listing or configuring packs stays cheap."""
    code = textwrap.dedent("""
        import sys
        import soberan.lang.th, soberan.lang.vi, soberan.lang.ko, soberan.lang.ar, soberan.lang.id
        heavy = {"pythainlp", "underthesea", "kiwipiepy", "stdnum", "phonenumbers"} & set(sys.modules)
        assert not heavy, heavy
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_hangul_jamo_composition_and_width():
    ko = get_pack("ko")
    conjoining = "\u1112\u1161\u11ab\u1100\u116e\u11a8\u110b\u1165"  # 한국어 as jamo sequences
    assert ko.normalize(conjoining) == "한국어"
    assert len(ko.normalize(conjoining)) == 3
    assert ko.normalize("ＡＢＣ１２３　테스트") == "ABC123 테스트"  # full-width folded
    assert ko.normalize("ㅋㅋㅋ ㅠㅠ") == "ㅋㅋㅋ ㅠㅠ"  # compatibility jamo kept as written
    assert ko.words(conjoining) == ko.words("한국어")


def test_korean_repeated_lines_are_segmented_once_with_the_same_morphemes(monkeypatch):
    """Kiwi is asked once per distinct line (a repeated line comes from the memo, with the
    morphemes Kiwi gave it), except for lines too long to keep, which are asked each time."""
    import uuid

    from kiwipiepy import Kiwi

    from soberan.lang import ko as ko_mod

    # Lines no earlier test segmented: the memo is per process.
    n = uuid.uuid4().int % 10**9
    heading, body = f"제{n}조(목적) 이 법은 국민의 권리를 보장함을 목적으로 한다.", f"대통령은 {n}번째 국가의 원수이다."
    long = "x" * (ko_mod.MEMO_MAX_LINE + 1) + str(n)
    text = "\n".join([heading, body, heading, long, heading, long])
    asked: list[tuple[str, list[str]]] = []
    tokenize = Kiwi.tokenize

    def counting(self, text, *args, **kwargs):
        tokens = tokenize(self, text, *args, **kwargs)
        asked.append((text, [t.form for t in tokens]))
        return tokens

    monkeypatch.setattr(Kiwi, "tokenize", counting)
    got = ko_mod.words(text)
    assert [line for line, _ in asked] == [heading, body, long, long]  # the heading twice from the memo
    kiwi = dict(asked)
    assert got == [t for line in text.split("\n") for t in kiwi[line]] and len(kiwi[heading]) > 5


def test_arabic_normalization():
    from soberan.lang.ar import fold

    ar = get_pack("ar")
    assert fold("أَحْمَدُ") == "احمد"  # diacritics gone, hamza-on-alef unified
    assert fold("إسلام") == fold("اسلام") and fold("آمن") == "امن" and fold("ٱلله") == "الله"
    assert fold("مستشفى") == "مستشفي"  # alef maqsura -> yaa
    assert fold("مدرسة") == "مدرسة"  # taa marbuta kept (policy: not folded into haa)
    assert fold("كتــــاب") == "كتاب"  # tatweel
    assert fold("کتاب ی") == "كتاب ي"  # Persian keheh / yeh
    assert ar.normalize("ﻻ") == "لا"  # presentation form (NFKC)
    assert ar.normalize("كتــاب مُحَمَّد") == "كتاب مُحَمَّد"  # stored text keeps its diacritics
    assert ar.words("إلى المدرسةِ، في") == ["الي", "المدرسة", "،", "في"]
    assert {"الي", "في", "،"} <= ar.stop_words  # stop words folded like the words


def test_thai_and_vietnamese_normalization():
    th, vi = get_pack("th"), get_pack("vi")
    assert th.normalize("เเปลก") == "แปลก"  # two sara e typed for sara ae
    assert th.normalize("ก่่า") == "ก่า"  # doubled tone mark
    nfd = unicodedata.normalize("NFD", "Việt Nam")
    assert nfd != "Việt Nam" and vi.normalize(nfd) == "Việt Nam"


def test_char_ngrams_fallback():
    assert char_ngrams("ab cd", 3) == ["abc", "bcd"]
    assert char_ngrams("", 3) == [] and char_ngrams("ab", 3) == ["ab"]


ZZ_PACK = '''
"""A made-up language for the test: words are whitespace tokens, one national ID with a mod-7
check digit."""
from soberan.lang import LangPack, PiiRule, digits, thresholds


def zz_id_valid(s):
    d = digits(s)
    return len(d) == 8 and int(d[:7]) % 7 == int(d[7])


PACK = LangPack(
    code="zz_test", name="Zedish", words=str.split,
    stop_words=frozenset({"zo", "za"}),
    thresholds=thresholds(min_words=5, min_avg_word_length=1, line_punct_thr=0.5, short_line_thr=None),
    sentence_end=("!",),
    pii=(PiiRule("ZZ_ID", r"(?<!\\d)\\d{4}/\\d{4}(?!\\d)", zz_id_valid, "Zedish ID NNNN/NNNC"),),
    boilerplate=(r"zedbook\\s*\\|\\s*zedgram",),
)
'''


@pytest.fixture
def zz_pack(tmp_path, monkeypatch):
    """A pack module that exists only in a temporary folder on the package's search path."""
    (tmp_path / "zz_test.py").write_text(ZZ_PACK)
    monkeypatch.setattr(lang, "__path__", [*lang.__path__, str(tmp_path)])
    get_pack.cache_clear()
    yield
    sys.modules.pop("soberan.lang.zz_test", None)
    get_pack.cache_clear()


def test_new_pack_is_found_and_works_unchanged(zz_pack):
    from soberan.lang.pii import redact, rules_for
    from soberan.curate.quality import clean_lines, fineweb_quality, gopher_quality, gopher_repetition

    assert "zz_test" in available()
    zz = get_pack("zz_test")
    assert zz.name == "Zedish"

    good = "zo blip blap blop za!\nza mip map mop zo!"
    assert gopher_quality(good, zz) is None and gopher_repetition(good, zz) is None
    assert fineweb_quality(good, zz) is None
    v = gopher_quality("blip blap blop", zz)
    assert v.rule == "gopher_short_doc" and v.reason == "3 words < min_words 5"
    v = gopher_quality("blip blap blop blup blep!", zz)
    assert v.rule == "gopher_enough_stop_words"  # its own stop words, not English ones
    v = fineweb_quality("zo blip blap.\nza mip map.", zz)
    assert v.rule == "line_punct_ratio"  # its own sentence end "!"
    assert clean_lines("zedbook | zedgram\nzo blip za!", zz) == ("zo blip za!", 1)

    valid = "1234/5675"  # 1234567 % 7 == 5
    text = f"zo my id {valid} and not 1234/5679 za!"
    out, types = redact(text, rules_for(["zz_test"]))
    assert types == ["ZZ_ID"] and valid not in out and "1234/5679" in out
