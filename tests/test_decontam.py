"""Decontamination: benchmark files of every format, GPT-3's n-gram size rule, matches on the
language's own words, and the real case of KLUE-NLI premises drawn from NSMC reviews."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from soberan.config import ConfigError
from soberan.curate.decontam import Index, build_lang_index, read_benchmark_file
from soberan.curate.decontam import benchmark_texts as decontam_texts
from soberan.lang import LangPack


def split_pack(code="xx") -> LangPack:
    return LangPack(code=code, name="test", words=str.split)


ITEM = " ".join(f"w{i}" for i in range(20))


def test_reads_jsonl_json_tsv_csv_parquet(tmp_path):
    rows = [{"q": "first question text", "choices": ["alpha", "beta"], "n": 3},
            {"q": "second question text", "choices": [], "n": 4}]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "a.json").write_text(json.dumps(rows))
    for name, delim in (("a.tsv", "\t"), ("a.csv", ",")):
        with open(tmp_path / name, "w", newline="") as f:
            w = csv.DictWriter(f, ["q", "n"], delimiter=delim)
            w.writeheader()
            w.writerows({"q": r["q"], "n": r["n"]} for r in rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    want = ["first question text", "alpha", "beta", "second question text"]
    for ext in ("jsonl", "json", "parquet"):
        assert read_benchmark_file(tmp_path / f"a.{ext}", ["q", "choices"]) == want
    for ext in ("tsv", "csv"):
        assert read_benchmark_file(tmp_path / f"a.{ext}", ["q"]) == [want[0], want[3]]
    with pytest.raises(ConfigError, match="no column"):
        read_benchmark_file(tmp_path / "a.tsv", ["question"])
    with pytest.raises(ConfigError, match="does not exist"):
        read_benchmark_file(tmp_path / "missing.jsonl", ["q"])


def test_ngram_size_follows_item_lengths():
    """n = 13, or the 5th percentile of item lengths when shorter, but at least 8 (GPT-3)."""
    long_items = build_lang_index({"b": [ITEM] * 10}, split_pack(), 13)
    assert long_items.report["b"]["ngram"] == 13
    short = build_lang_index({"b": [" ".join(f"s{i}" for i in range(10))] * 10}, split_pack(), 13)
    assert short.report["b"]["ngram"] == 10
    tiny = build_lang_index({"b": ["a b c"] * 10}, split_pack(), 13)
    assert tiny.report["b"] == {"items": 10, "ngram": 8, "too_short": 10}


def test_match_needs_a_whole_ngram(tmp_path):
    idx = Index({"bench": [ITEM], "other": ["completely different words " * 5]}, 13, 1, tmp_path)
    pack = split_pack()
    hit = idx.match("intro words here " + ITEM + " outro", pack)
    assert hit and hit.benchmark == "bench" and hit.matches == 8 and hit.n == 13
    assert "8 distinct 13-grams" in hit.reason
    near = " ".join(f"w{i}" if i % 12 else "x" for i in range(20))  # no 13 consecutive words
    assert idx.match(near, pack) is None
    assert idx.match("w0 w1 w2", pack) is None
    # the per-language index is cached on disk and reloads the same
    assert (tmp_path / "xx.parquet").exists()
    again = Index({}, 13, 1, tmp_path)
    assert again.match("intro " + ITEM, pack).benchmark == "bench"
    strict = Index({"bench": [ITEM]}, 13, 9, None)
    assert strict.match(ITEM, pack) is None  # only 8 distinct 13-grams < min_matches 9


def test_klue_nli_premises_found_in_nsmc(shared_data, tmp_path):
    """600 KLUE-NLI dev premises were taken from NSMC reviews: decontaminating NSMC against KLUE
    must find the reviews that contain them, on Kiwi morphemes, and nothing else."""
    from soberan.lang import get_pack

    nli = json.loads((shared_data / "klue" / "klue-nli-v1.1_dev.json").read_text())
    premises = sorted({x["premise"] for x in nli if x["source"] == "NSMC"})
    with open(shared_data / "nsmc" / "ratings_test.txt", encoding="utf-8") as f:
        reviews = [r["document"] for r in csv.DictReader(f, delimiter="\t")]
    with open(shared_data / "nsmc" / "ratings_train.txt", encoding="utf-8") as f:
        reviews += [r["document"] for r in csv.DictReader(f, delimiter="\t")]
    pset = set(premises)
    leaked = sorted({r for r in reviews if r in pset})
    clean = [r for r in reviews[:3000] if r not in pset and not any(p in r for p in premises[:50])][:400]
    pack = get_pack("ko")
    idx = Index({"klue_nli": premises}, 13, 1, tmp_path)
    n = idx.for_pack(pack).report["klue_nli"]["ngram"]
    checkable = [r for r in leaked if len(pack.words(r)) >= n]
    found = [r for r in checkable if idx.match(r, pack)]
    false = [r for r in clean if idx.match(r, pack)]
    print(f"\nKLUE-NLI premises from NSMC: {len(leaked)} leaked reviews, {len(checkable)} with "
          f">= {n} morphemes, {len(found)} found; {len(false)}/{len(clean)} false alarms")
    assert len(leaked) > 50 and len(found) == len(checkable) and not false


def test_lines_mode_removes_only_the_contaminated_lines(tmp_path):
    """A long page quoting one test item keeps its other lines; an n-gram running across a line
    break takes both lines; a page that is mostly the item is dropped."""
    idx = Index({"bench": [ITEM]}, 13, 1, None)
    pack = split_pack()
    page = "\n".join(["first line of ordinary prose here", "intro " + ITEM + " outro",
                      "last line of ordinary prose here"])
    kept, removed, hit = idx.contaminated_lines(page, pack)
    assert hit.benchmark == "bench" and removed == 1
    assert kept == "first line of ordinary prose here\nlast line of ordinary prose here"
    words = ITEM.split()
    across = "clean opening line\n" + " ".join(words[:7]) + "\n" + " ".join(words[7:]) + "\nclean end"
    kept, removed, _ = idx.contaminated_lines(across, pack)
    assert removed == 2 and kept == "clean opening line\nclean end"
    assert idx.contaminated_lines("nothing to see here", pack) == ("nothing to see here", 0, None)


def test_lines_mode_in_the_pipeline(tmp_path):
    from test_curate_fixtures import make_workspace, write_raw

    from soberan.curate import run
    from soberan.documents import read_corpus

    bench = tmp_path / "bench.jsonl"
    item = ("Pemerintah kota membangun jembatan baru di atas sungai besar agar anak sekolah dapat "
            "menyeberang dengan aman setiap pagi hari")
    bench.write_text(json.dumps({"q": item}) + "\n")
    prose = ["Petani desa menanam padi di sawah yang luas sejak musim hujan tiba tahun ini.",
             "Nelayan berangkat ke laut sebelum matahari terbit dan pulang membawa ikan segar."]
    docs = [{"text": "\n".join(prose * 3 + [item] + prose), "lang": "id"},  # quotes it once
            {"text": item + "\n" + prose[0], "lang": "id"},  # mostly the item: dropped
            {"text": "\n".join(prose * 2), "lang": "id"}]
    toml = ('steps = ["decontam"]\n[curate.decontam]\nmode = "lines"\n'
            f'files = [{{ name = "qa", path = "{bench}", fields = ["q"] }}]\n')
    ws = make_workspace(tmp_path / "ws", lang="id", jurisdiction="ID", curate_toml=toml)
    ids = write_raw(ws, docs)
    run(ws, workers=1)
    out = {r["id"]: r["text"] for r in read_corpus(ws.root / "curated").to_pylist()}
    assert set(out) == {ids[0], ids[2]}
    assert item not in out[ids[0]] and out[ids[0]].count(prose[0]) == 4
    import duckdb

    dec = dict(duckdb.sql(f"SELECT doc_id, action || ': ' || reason FROM "
                          f"read_parquet('{ws.ledger.decisions_glob()}') WHERE step = 'decontam'").fetchall())
    assert dec[ids[0]].startswith("redacted: shares") and "removed the 1 line" in dec[ids[0]]
    assert dec[ids[1]].startswith("dropped: shares") and "outside those lines" in dec[ids[1]]


def test_build_reruns_curate_for_the_benchmark_texts_only(tmp_path, monkeypatch):
    """Curate's config hash covers what decontamination reads, the texts of the benchmarks it
    names, not all of [evaluate]: another batch size or a benchmark declared for evaluation only
    leaves the curated corpus current; an edited benchmark item makes build rerun curate. The
    texts are read again only when a file or a named spec changed."""
    from test_build_fakes import fake_runner, make_fake_workspace, offline_env  # noqa: F401 (autouse)

    from soberan.build import run, stage_status
    from soberan.curate import decontam
    from soberan.workspace import Workspace

    ws = make_fake_workspace(tmp_path / "w")
    (ws.root / "bench").mkdir()
    quiz = ws.root / "bench" / "quiz.jsonl"
    quiz.write_text(json.dumps({"q": "대한민국의 수도는 어디인가", "a": "서울", "b": "부산", "gold": 0},
                               ensure_ascii=False) + "\n")

    def spec(name: str) -> str:  # a [[evaluate.benchmarks]] entry, as an inline table
        return (f'{{ name = "{name}", path = "bench/quiz.jsonl", question = "q", choices = ["a", "b"], '
                'answer = "gold", template = "{question}", language = "ko", license = "CC0-1.0" }')

    cfg = ws.root / "soberan.toml"
    cfg.write_text(cfg.read_text().replace("[evaluate]\n", f"[evaluate]\nbenchmarks = [{spec('quiz')}]\n", 1)
                   + '\n[curate.decontam]\nbenchmarks = ["quiz"]\n')

    def curate_status():
        return stage_status(Workspace.open(ws.root), "curate")

    run(Workspace.open(ws.root), runner=fake_runner)
    reads = []
    monkeypatch.setattr(decontam, "benchmark_texts", lambda c: reads.append(1) or decontam_texts(c))
    assert curate_status().current
    cfg.write_text(cfg.read_text().replace("[evaluate]\n", "[evaluate]\nbatch_size = 3\n", 1)
                   .replace(spec("quiz"), f"{spec('quiz')}, {spec('quiz_eval_only')}"))
    assert len(Workspace.open(ws.root).config.evaluate.benchmarks) == 2
    assert Workspace.open(ws.root).config.evaluate.batch_size == 3
    assert curate_status().current, curate_status().reasons
    assert reads == []  # the texts were not read again: nothing they are made from changed

    quiz.write_text(quiz.read_text().replace("어디인가", "어디입니까"))
    st = curate_status()
    assert reads == [1]
    assert not st.current and st.reasons == [
        "config changed ([curate], [project] or the benchmark texts [curate.decontam] names)"]
    s = run(Workspace.open(ws.root), runner=fake_runner)
    assert {r.stage: r.action for r in s.stages}["curate"] == "rebuilt"
    assert curate_status().current
