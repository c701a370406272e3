"""`soberan curate` end to end on a planted corpus: exact copies, near-duplicates with small edits,
valid and invalid national IDs, phone numbers, a benchmark item pasted into a document, other
languages. The corpus is made here; precision and recall of dedup and PII are printed and held to
the issue's goal (no planted PII left, no wrong-checksum number redacted)."""

from __future__ import annotations

import json
import random

import duckdb
import pyarrow.parquet as pq
import pytest
from test_curate_fixtures import make_workspace, write_raw

from soberan.documents import read_corpus

VOC = ("국가 국민 정부 법률 헌법 대통령 국회 법원 자유 권리 의무 교육 경제 사회 문화 환경 건강 노동 재산 선거 "
       "지방 자치 행정 공무원 조약 외교 국방 평화 통일 복지 안전 과학 기술 예술 언론 출판 집회 결사 종교 "
       "양심 학문 주거 직업 가족 혼인 보건 주택 소비자 농업 어업 산업 무역 에너지 도시 교통 통신").split()
VERB = "보장한다 가진다 정한다 노력한다 존중한다 보호한다 규정한다 실시한다 지원한다 육성한다".split()


def korean_doc(rng: random.Random, sentences: int = 14) -> str:
    lines = []
    for _ in range(sentences):
        a, b, c = rng.sample(VOC, 3)
        lines.append(f"{a}은 {b}의 {c}을 {rng.choice(VERB)}.")
    return "\n".join(" ".join(lines[i:i + 3]) for i in range(0, len(lines), 3))


def rrn(birth: str, gender: str, serial: str, valid: bool) -> str:
    """A Korean resident registration number with a right (or deliberately wrong) check digit."""
    d = birth + gender + serial
    check = (11 - sum(int(x) * w for x, w in zip(d, [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5])) % 11) % 10
    if not valid:
        check = (check + 3) % 10
    return f"{birth}-{gender}{serial}{check}"


def thai_id(body: str, valid: bool) -> str:
    check = (11 - sum(int(x) * (13 - i) for i, x in enumerate(body)) % 11) % 10
    if not valid:
        check = (check + 1) % 10
    return f"{body[0]}-{body[1:5]}-{body[5:10]}-{body[10:12]}-{check}"


BENCH_ITEM = ("국회의원은 현행범인인 경우를 제외하고는 회기중 국회의 동의없이 체포 또는 구금되지 아니한다 "
              "이 문장은 평가 문항이므로 학습 자료에 들어가면 안 된다")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    rng = random.Random(7)
    root = tmp_path_factory.mktemp("planted") / "ws"
    bench = root.parent / "bench.jsonl"
    bench.write_text(json.dumps({"question": BENCH_ITEM}, ensure_ascii=False) + "\n")
    ws = make_workspace(root, curate_toml=(
        'steps = ["normalize", "langid", "pii", "exact_dedup", "fuzzy_dedup", "decontam"]\n'
        "workers = 1\n"
        "[curate.langid]\nmin_target_share = 0.2\n"
        "[curate.pii]\nlanguages = [\"ko\", \"th\"]\n"
        f'[curate.decontam]\nfiles = [{{ name = "plantbench", path = "{bench}", fields = ["question"] }}]\n'))
    base = [korean_doc(rng) for _ in range(60)]
    docs = [{"text": t, "source": "web", "kind": "unique"} for t in base]
    # exact copies (case and whitespace changes only)
    for i in range(0, 6):
        docs.append({"text": "  " + base[i].replace(" ", "  ") + "\n", "source": "mirror", "kind": f"exact:{i}"})
    # near-duplicates: 2 words of ~80 changed, or a sentence appended
    for i in range(6, 16):
        w = base[i].split(" ")
        for j in rng.sample(range(len(w)), 2):
            w[j] = rng.choice(VOC) + "은"
        docs.append({"text": " ".join(w), "source": "mirror", "kind": f"near:{i}"})
    for i in range(16, 20):
        docs.append({"text": base[i] + "\n부칙 이 법은 공포한 날부터 시행한다.", "source": "mirror", "kind": f"near:{i}"})
    # a chain: 20 ~ c1 ~ c2 (each one edit away from the last) forms one cluster
    w = base[20].split(" ")
    w[3] = "변경"
    c1 = " ".join(w)
    w[30] = "개정"
    docs += [{"text": c1, "source": "mirror", "kind": "near:20"},
             {"text": " ".join(w), "source": "mirror", "kind": "near:20"}]
    # PII: valid ones must go, wrong checksums must stay
    valid = [rrn("900101", "1", "23456", True), rrn("850615", "2", "04512", True),
             thai_id("110170020304", True), "010-2345-6789", "02-3456-7890", "+66 81 234 5678",
             "hong.gildong@example.co.kr"]
    invalid = [rrn("900101", "1", "23456", False), rrn("850615", "2", "04512", False),
               thai_id("110170020304", False)]
    for k, v in enumerate(valid):
        docs.append({"text": korean_doc(rng, 6) + f"\n연락처는 {v} 입니다.\n" + korean_doc(rng, 6),
                     "source": "forum", "kind": "pii", "pii": v})
    for k, v in enumerate(invalid):
        docs.append({"text": korean_doc(rng, 6) + f"\n접수 번호 {v} 참고.\n" + korean_doc(rng, 6),
                     "source": "forum", "kind": "not_pii", "pii": v})
    # other languages: English (dropped), mostly-English with Korean lines (cut to Korean)
    docs.append({"text": "The committee met on Tuesday to discuss the annual budget and the new "
                         "school buildings. Several members asked for more time to read the report.\n" * 4,
                 "source": "web", "kind": "english"})
    docs.append({"text": ("The committee met on Tuesday to discuss the annual budget of the city.\n"
                          "Members asked for more time to read the long report before voting.\n") * 3
                 + "국회는 국민의 대표로 구성되며 법률을 제정하고 정부를 감시하는 기능을 가진다.\n"
                   "모든 국민은 법 앞에 평등하며 누구든지 차별을 받지 아니한다고 헌법은 정한다.\n"
                   "국가는 국민의 기본적 인권을 확인하고 이를 보장할 의무를 진다고 규정하고 있다.",
                 "source": "web", "kind": "mixed"})
    # a benchmark item pasted into a document
    docs.append({"text": korean_doc(rng, 5) + "\n" + BENCH_ITEM + "\n" + korean_doc(rng, 5),
                 "source": "web", "kind": "contaminated"})
    ids = write_raw(ws, docs, shard_docs=25)
    from soberan.curate import run

    summary = run(ws, workers=1)
    return ws, docs, ids, summary


def _curated(ws):
    t = read_corpus(ws.root / "curated")
    return {r["id"]: r for r in t.to_pylist()}


def test_dedup_precision_recall(planted):
    ws, docs, ids, _ = planted
    out = _curated(ws)
    dropped_dup = {r[0]: r[1] for r in duckdb.sql(
        f"SELECT doc_id, step FROM read_parquet('{ws.ledger.decisions_glob()}') "
        "WHERE step IN ('exact_dedup', 'fuzzy_dedup') AND action = 'dropped'").fetchall()}
    planted_dups = {ids[i] for i, d in enumerate(docs) if d["kind"].startswith(("exact:", "near:"))}
    tp = len(planted_dups & set(dropped_dup))
    precision = tp / max(len(dropped_dup), 1)
    recall = tp / len(planted_dups)
    print(f"\ndedup: {len(planted_dups)} planted duplicates, {len(dropped_dup)} dropped, "
          f"precision {precision:.3f} recall {recall:.3f}")
    assert precision == 1.0 and recall >= 0.9
    # exact copies are caught by the exact step, and the originals survive
    for i, d in enumerate(docs):
        if d["kind"].startswith("exact:"):
            assert dropped_dup.get(ids[i]) == "exact_dedup"
            assert ids[int(d["kind"][6:])] in out
    # cluster columns: the kept original counts itself and its copies
    orig = out[ids[20]]
    assert orig["dup_cluster"] == ids[20] and orig["dup_cluster_size"] == 3
    assert out[ids[0]]["dup_cluster_size"] == 2
    assert out[ids[59]]["dup_cluster"] == ids[59] and out[ids[59]]["dup_cluster_size"] == 1


def test_pii_redacted_and_wrong_checksums_left(planted):
    ws, docs, ids, _ = planted
    out = _curated(ws)
    planted_pii = [(ids[i], d["pii"]) for i, d in enumerate(docs) if d["kind"] == "pii"]
    decoys = [(ids[i], d["pii"]) for i, d in enumerate(docs) if d["kind"] == "not_pii"]
    left = [v for i, v in planted_pii if v in out[i]["text"]]
    wrongly = [v for i, v in decoys if v not in out[i]["text"]]
    recall = 1 - len(left) / len(planted_pii)
    precision = 1 - len(wrongly) / max(len(planted_pii) - len(left) + len(wrongly), 1)
    print(f"\npii: {len(planted_pii)} planted, recall {recall:.3f}; {len(decoys)} wrong-checksum "
          f"decoys, precision {precision:.3f}")
    assert not left, f"planted PII left in the corpus: {left}"
    assert not wrongly, f"wrong-checksum numbers redacted: {wrongly}"
    assert all(out[i]["pii_types"] for i, _ in planted_pii)
    assert out[planted_pii[0][0]]["pii_types"] == ["KR_RRN"] and "<KR_RRN>" in out[planted_pii[0][0]]["text"]


def test_no_pii_value_stored_in_workspace_outputs(planted):
    ws, docs, _, _ = planted
    values = [d["pii"].encode() for d in docs if d["kind"] == "pii"]
    for folder in ("curated", "ledger", "work"):
        for f in (ws.root / folder).rglob("*"):
            if f.is_file():
                if f.suffix == ".parquet":
                    blob = json.dumps(pq.read_table(f).to_pylist(), default=str, ensure_ascii=False).encode()
                else:
                    blob = f.read_bytes()
                assert not any(v in blob for v in values), f"a PII value is stored in {f}"


def test_languages_and_decontamination(planted):
    ws, docs, ids, _ = planted
    out = _curated(ws)
    kind = {ids[i]: d["kind"] for i, d in enumerate(docs)}
    by = {k: i for i, k in kind.items()}
    assert by["english"] not in out and by["contaminated"] not in out
    mixed = out[by["mixed"]]
    assert mixed["lang"] == "ko" and "committee" not in mixed["text"] and "국회는" in mixed["text"]
    assert all(r["lang"] == "ko" and r["lang_score"] > 0.3 for r in out.values())
    rows = dict(duckdb.sql(f"SELECT doc_id, rule || ': ' || reason FROM read_parquet('{ws.ledger.decisions_glob()}') "
                           "WHERE step IN ('langid', 'decontam')").fetchall())
    assert rows[by["english"]].startswith("langid.other_language: lid.176 says en")
    assert rows[by["contaminated"]].startswith("decontam.plantbench: shares")
    assert rows[by["mixed"]].startswith("langid.mixed")


def test_every_document_accounted_for(planted):
    """Each collected document ends either in curated/ (one `kept` row) or with a drop decision
    that names its step, rule and reason; stats.json adds up."""
    ws, docs, ids, summary = planted
    con = duckdb.connect()
    dec = f"read_parquet('{ws.ledger.decisions_glob()}')"
    fates = dict(con.execute(f"SELECT doc_id, list(action) FILTER (WHERE action IN ('kept', 'dropped')) "
                             f"FROM {dec} GROUP BY doc_id").fetchall())
    assert set(fates) == set(ids)
    assert all(len(v) == 1 for v in fates.values()), "a document both kept and dropped, or twice"
    assert con.execute(f"SELECT count(*) FROM {dec} WHERE action = 'dropped' AND "
                       "(rule IS NULL OR reason IS NULL OR reason = '')").fetchone()[0] == 0
    out = _curated(ws)
    assert {i for i, v in fates.items() if v == ["kept"]} == set(out)
    stats = json.loads((ws.root / "curated" / "stats.json").read_text())
    assert stats["input_docs"] == len(docs) == summary.input_docs
    assert stats["output_docs"] == len(out) == summary.output_docs
    assert stats["input_docs"] - sum(s["dropped"] for s in stats["steps"]) == stats["output_docs"]
    for s in stats["steps"]:
        assert s["seen"] == s["kept"] + s["dropped"], s["step"]
        assert sum(v["seen"] for v in s["by_source"].values()) == s["seen"]
        assert sum(v["dropped"] for v in s["by_lang"].values()) == s["dropped"]
    # provenance columns survive and the artifact points at the collected corpus
    row = next(iter(out.values()))
    for col in ("id", "source", "url", "license", "jurisdiction", "collected_at", "sha256"):
        assert row[col] is not None
    art = ws.ledger.latest_artifact("curate", "corpus")
    assert art["inputs"] == [ws.ledger.latest_artifact("collect", "corpus")["hash"]]
    assert art["meta"]["output_docs"] == len(out)
    assert not ws.ledger.verify()
    assert not (ws.root / "work" / "curate").exists()  # cleaned after success


def test_rerun_is_up_to_date_and_config_change_restarts(planted):
    ws, _, _, summary = planted
    from soberan.curate import run

    again = run(ws, workers=1)
    assert again.up_to_date and again.output_docs == summary.output_docs
