"""A miniature of the five stages that keeps their contract to the letter, for testing build,
report and take-down in seconds: the same folders, Parquet schemas, decision log, ledger records
(kinds, inputs, config hashes) and side files (curated/stats.json, tokenizer/fertility.json,
tokenizer/training_docs.parquet, model/data/docs.parquet, model/metrics.jsonl, eval/results.json)
as the real stages, with the expensive work replaced by something small but real: the tokenizer
is a byte-level BPE trained with HF `tokenizers`, the packed data are its token ids, the "model"
is a unigram table over them and its bits per byte are measured on the held-out documents.
Collect is the real stage: on two small JSONL files it takes a moment.

The real stages run end to end in tests/test_build_e2e.py.
"""

from __future__ import annotations

import json
import math
import types
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from soberan.documents import DOC_SCHEMA, read_corpus, write_parquet_atomic
from soberan.stages import build_order, main_artifacts
from soberan.workspace import Workspace


@pytest.fixture(autouse=True)
def offline_env(monkeypatch):
    """Build and report set the offline switches in os.environ; let monkeypatch restore them.
    Importing this fixture into a test module makes it apply there too."""
    from soberan.build import OFFLINE_ENV_KEYS

    for k in OFFLINE_ENV_KEYS:
        monkeypatch.delenv(k, raising=False)


def _hash(ws, stage):
    from soberan.freshness import stage_config_hash

    return stage_config_hash(ws, stage)


def real_collect(ws: Workspace):
    """Collect is cheap on JSONL, so the real stage runs: its resume state, fingerprints and
    take-down filter are what build and take-down are tested against."""
    from soberan.collect import run

    return run(ws, show_progress=False)


def fake_curate(ws: Workspace):
    """Two steps: drop documents under 20 characters ("quality"), then exact duplicates
    ("exact_dedup"); redact nothing, but record one `redacted` row for any text with '@'."""
    raw = ws.ledger.latest_artifact("collect", "corpus")
    tbl = read_corpus(ws.root / raw["path"])
    short = pc.less(pc.utf8_length(tbl.column("text")), 20)
    ws.ledger.write_decisions("curate", "quality", pa.table({
        "doc_id": tbl.filter(short).column("id"), "step": pa.array(["quality"] * pc.sum(short).as_py(), pa.string()),
        "action": pa.array(["dropped"] * pc.sum(short).as_py(), pa.string()),
        "rule": pa.array(["min_chars"] * pc.sum(short).as_py(), pa.string()),
        "reason": pa.array(["fewer than 20 characters"] * pc.sum(short).as_py(), pa.string()),
        "source": tbl.filter(short).column("source")}))
    tbl = tbl.filter(pc.invert(short))
    seen, dup = set(), []
    for sha in tbl.column("sha256").to_pylist():
        dup.append(sha in seen)
        seen.add(sha)
    dmask = pa.array(dup, pa.bool_())
    n = pc.sum(dmask).as_py() or 0
    ws.ledger.write_decisions("curate", "exact_dedup", pa.table({
        "doc_id": tbl.filter(dmask).column("id"), "step": pa.array(["exact_dedup"] * n, pa.string()),
        "action": pa.array(["dropped"] * n, pa.string()), "rule": pa.array(["exact_duplicate"] * n, pa.string()),
        "reason": pa.array(["same sha256 as an earlier document"] * n, pa.string()),
        "source": tbl.filter(dmask).column("source")}))
    tbl = tbl.filter(pc.invert(dmask))
    at = pc.match_substring(tbl.column("text"), "@")
    m = pc.sum(at).as_py() or 0
    ws.ledger.write_decisions("curate", "pii", pa.table({
        "doc_id": tbl.filter(at).column("id"), "step": pa.array(["pii"] * m, pa.string()),
        "action": pa.array(["redacted"] * m, pa.string()), "rule": pa.array(["EMAIL"] * m, pa.string()),
        "reason": pa.array(["e-mail address"] * m, pa.string()), "source": tbl.filter(at).column("source")}))
    out = ws.stage_dir("curate")
    write_parquet_atomic(tbl, out / "shards" / "00000.parquet")
    (out / "stats.json").write_text(json.dumps({"kept": tbl.num_rows}))
    ws.ledger.record_artifact(stage="curate", kind="corpus", path=out,
                              inputs=[raw["hash"]], config_hash=_hash(ws, "curate"), meta={"kept": tbl.num_rows})
    return types.SimpleNamespace(stage="curate")


def fake_tokenizer(ws: Workspace):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    cur = ws.ledger.latest_artifact("curate", "corpus")
    tbl = read_corpus(ws.root / cur["path"], columns=["id", "text"])
    out = ws.stage_dir("tokenizer")
    (out / "final").mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(tbl.select(["id"]), out / "training_docs.parquet")
    ti = ws.ledger.record_artifact(stage="tokenizer", kind="training_input", path=out / "training_docs.parquet",
                                   inputs=[cur["hash"]], config_hash=_hash(ws, "tokenizer"))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(tbl.column("text").to_pylist(), trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok.save(str(out / "final" / "tokenizer.json"))
    texts = tbl.column("text").to_pylist()
    chars = sum(len(t) for t in texts) or 1
    after = sum(len(e.ids) for e in tok.encode_batch(texts)) / chars
    before = sum(len(t.encode()) for t in texts) / chars  # bytes: a byte-level tokenizer before any merge
    (out / "fertility.json").write_text(json.dumps({  # the tokenizer stage's format
        "bytes": {"ko": {"tokens_per_char": before}}, "trained": {"ko": {"tokens_per_char": after}},
        "before": "bytes", "after": "trained"}))
    ws.ledger.record_artifact(stage="tokenizer", kind="tokenizer", path=out / "final",
                              inputs=[cur["hash"], ti["hash"]], config_hash=_hash(ws, "tokenizer"),
                              meta={"fertility_after": after})
    return types.SimpleNamespace(stage="tokenizer")


def fake_train(ws: Workspace):
    from tokenizers import Tokenizer

    cur = ws.ledger.latest_artifact("curate", "corpus")
    tk = ws.ledger.latest_artifact("tokenizer", "tokenizer")
    tok = Tokenizer.from_file(str(ws.root / tk["path"] / "tokenizer.json"))
    tbl = read_corpus(ws.root / cur["path"])
    out = ws.stage_dir("train")
    rows, start, ids_all = [], 0, []
    held = []
    for i, r in enumerate(tbl.to_pylist()):
        ids = tok.encode(r["text"]).ids
        if i % 5 == 4:  # every fifth document is held out, never trained on
            held.append(r)
            continue
        rows.append({"doc_id": r["id"], "source": r["source"], "license": r["license"],
                     "jurisdiction": r["jurisdiction"], "lang": r["lang"], "start": start, "n_tokens": len(ids)})
        start += len(ids)
        ids_all += ids
    (out / "data").mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(pa.Table.from_pylist(rows), out / "data" / "docs.parquet")
    (out / "data" / "tokens.bin").write_bytes(pa.array(ids_all, pa.uint32()).buffers()[1].to_pybytes())
    write_parquet_atomic(pa.Table.from_pylist(held, schema=DOC_SCHEMA), out / "heldout.parquet")
    hold = ws.ledger.record_artifact(stage="train", kind="heldout", path=out / "heldout.parquet",
                                     inputs=[cur["hash"]], config_hash=_hash(ws, "train"))
    counts = Counter(ids_all)
    total = sum(counts.values()) or 1
    (out / "final").mkdir(parents=True, exist_ok=True)
    (out / "final" / "unigram.json").write_text(json.dumps({str(k): v for k, v in sorted(counts.items())}))
    with open(out / "metrics.jsonl", "w") as f:
        for step in range(1, 6):
            loss = 6.0 / step + 1
            f.write(json.dumps({"step": step, "loss": loss, "bpb": loss / math.log(2) / 2}) + "\n")
    shares: dict = {}  # the train stage's format: tokens and share per value, plus replay
    for dim in ("source", "license", "jurisdiction", "lang"):
        agg = Counter()
        for r in rows:
            agg[r[dim] or "(unknown)"] += r["n_tokens"]
        shares[dim] = {k: {"tokens": v, "share": v / total} for k, v in agg.items()}
    shares["replay"] = {"tokens": 0, "share": 0.0}
    ws.ledger.record_artifact(stage="train", kind="model", path=out / "final",
                              inputs=[cur["hash"], tk["hash"], hold["hash"]], config_hash=_hash(ws, "train"),
                              meta={"token_shares": shares, "tokens": total, "base_model": None})
    return types.SimpleNamespace(stage="train")


def fake_evaluate(ws: Workspace):
    from tokenizers import Tokenizer

    model = ws.ledger.latest_artifact("train", "model")
    tk = ws.ledger.latest_artifact("tokenizer", "tokenizer")
    held = ws.ledger.latest_artifact("train", "heldout")
    tok = Tokenizer.from_file(str(ws.root / tk["path"] / "tokenizer.json"))
    counts = {int(k): v for k, v in json.loads((ws.root / model["path"] / "unigram.json").read_text()).items()}
    total, vocab = sum(counts.values()), tok.get_vocab_size()
    bits = uniform = nbytes = 0.0
    for t in pq.read_table(ws.root / held["path"]).column("text").to_pylist():
        for i in tok.encode(t).ids:
            bits -= math.log2((counts.get(i, 0) + 1) / (total + vocab))  # add-one smoothed unigram
            uniform += math.log2(vocab)  # the base to compare with: every token equally likely
        nbytes += len(t.encode())
    out = ws.stage_dir("evaluate")
    out.mkdir(parents=True, exist_ok=True)
    # The evaluate stage's format: one entry per model, the trained one named by its artifact.
    res = {"models": [{"label": "base (uniform)", "path": None, "artifact": None, "sets": {},
                       "bpb": {"ko": {"bpb": uniform / max(nbytes, 1), "docs": 1, "bytes": int(nbytes)}}},
                      {"label": model["path"], "path": model["path"], "artifact": model["hash"], "sets": {},
                       "bpb": {"ko": {"bpb": bits / max(nbytes, 1), "docs": 1, "bytes": int(nbytes)}}}],
           "comparisons": [{"set": "heldout_ko", "language": "ko", "metric": "bpb", "reference": "base (uniform)",
                            "model": model["path"], "n": 1, "reference_value": uniform / max(nbytes, 1),
                            "value": bits / max(nbytes, 1), "diff": (bits - uniform) / max(nbytes, 1),
                            "ci95": [(bits - uniform) / max(nbytes, 1)] * 2, "significant": True,
                            "higher_is_better": False}]}
    (out / "results.json").write_text(json.dumps(res))
    ws.ledger.record_artifact(stage="evaluate", kind="results", path=out / "results.json",
                              inputs=[model["hash"], held["hash"]], config_hash=_hash(ws, "evaluate"))
    return types.SimpleNamespace(stage="evaluate")


# One stand-in per stage `soberan build` runs, in the registry's order (a test below fails when
# the registry gains a built stage without one).
FAKES = {stage: real_collect if stage == "collect" else globals()[f"fake_{stage}"] for stage in build_order()}


def fake_runner(ws: Workspace, stage: str):
    return FAKES[stage](ws)


NEWS = [  # (url, text): Korean sentences of public-domain style, long enough to pass the fake filter
    ("https://news.example.kr/1", "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다."),
    ("https://news.example.kr/2", "모든 국민은 인간으로서의 존엄과 가치를 가지며, 행복을 추구할 권리를 가진다."),
    ("https://news.example.kr/3", "짧다"),
    ("https://news.example.kr/4", "모든 국민은 법 앞에 평등하다. 누구든지 성별·종교 또는 사회적 신분에 의하여 차별을 받지 아니한다."),
    ("https://news.example.kr/5", "문의는 press@example.kr 로 보내 주십시오. 국회는 법률안을 심의하고 의결한다."),
]
LAWS = [
    ("https://law.example.kr/a", "국회는 국민의 보통·평등·직접·비밀선거에 의하여 선출된 국회의원으로 구성한다."),
    ("https://law.example.kr/b", "대통령은 국가의 원수이며, 외국에 대하여 국가를 대표한다."),
    ("https://law.example.kr/c", "대통령은 국가의 원수이며, 외국에 대하여 국가를 대표한다."),  # exact duplicate
    ("https://law.example.kr/d", "행정권은 대통령을 수반으로 하는 정부에 속한다. 국무총리는 대통령을 보좌한다."),
    ("https://law.example.kr/e", "사법권은 법관으로 구성된 법원에 속한다. 법관은 헌법과 법률에 의하여 심판한다."),
    ("https://law.example.kr/f", "헌법재판소는 법원의 제청에 의한 법률의 위헌여부를 심판한다."),
]


def make_fake_workspace(root: Path) -> Workspace:
    """A Korean workspace with two JSONL sources (news and laws)."""
    from soberan.workspace import init_workspace

    init_workspace(root, lang="ko", jurisdiction="KR", name="fake")
    (root / "data").mkdir()
    for name, docs in (("news", NEWS), ("laws", LAWS)):
        (root / "data" / f"{name}.jsonl").write_text(
            "\n".join(json.dumps({"url": u, "text": t}, ensure_ascii=False) for u, t in docs) + "\n")
    cfg = root / "soberan.toml"
    cfg.write_text(cfg.read_text() + "".join(f"""
[[sources]]
name = "{name}"
kind = "jsonl"
path = "data/{name}.jsonl"
license = "{lic}"
jurisdiction = "KR"
lang = "ko"
fields = {{ text = "text", url = "url" }}
description = "{desc}"
""" for name, lic, desc in (("news", "CC-BY-4.0", "news articles"),
                            ("laws", "LicenseRef-KR-Public-Domain", "statutes"))))
    return Workspace.open(root)


def test_fakes_keep_the_stage_contract(tmp_path):
    """The fakes record what the real stages record: one main artifact per stage, made from the
    upstream main artifacts, under the stage's config hash."""
    from soberan.freshness import stage_config_hash
    from soberan.stages import get

    ws = make_fake_workspace(tmp_path / "w")
    main = main_artifacts()
    for stage, fn in FAKES.items():
        fn(ws)
        art = ws.ledger.latest_artifact(stage, main[stage])
        assert art is not None and art["config_hash"] == stage_config_hash(ws, stage)
        by_hash = {r["hash"]: r for r in ws.ledger.records() if r["type"] in ("artifact", "source")}
        for up in get(stage).upstream:
            assert ws.ledger.latest_artifact(up, main[up])["hash"] in art["inputs"]
        assert art["inputs"] and all(h in by_hash for h in art["inputs"])  # collect: its source records
    assert ws.ledger.verify() == []
