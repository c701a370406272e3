"""The one held-out split (soberan.heldout): units, modes, and that text held out by any stage
never teaches the tokenizer or the model of a built workspace."""

from __future__ import annotations

import datetime as dt
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from soberan.documents import DOC_SCHEMA, doc_id, text_sha256, write_parquet_atomic
from soberan.heldout import HeldoutSettings, apply, paragraphs, plan

LINES = ["제1조 대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.",
         "제2조 대한민국의 국민이 되는 요건은 법률로 정한다. 국가는 법률이 정하는 바에 의하여 재외국민을 보호할 의무를 진다.",
         "제3조 대한민국의 영토는 한반도와 그 부속도서로 한다.",
         "제4조 대한민국은 통일을 지향하며, 자유민주적 기본질서에 입각한 평화적 통일 정책을 수립하고 이를 추진한다.",
         "제5조 대한민국은 국제평화의 유지에 노력하고 침략적 전쟁을 부인한다.",
         "제6조 헌법에 의하여 체결·공포된 조약과 일반적으로 승인된 국제법규는 국내법과 같은 효력을 가진다."]
EN = ["The statement is used for conditional execution of a suite of statements in the program.",
      "It selects exactly one of the suites by evaluating the expressions one by one until one is true."]


def corpus(n_ko: int, n_en: int, lines: int = 12, seed: int = 0) -> pa.Table:
    r = random.Random(seed)
    rows = []
    for i in range(n_ko + n_en):
        ko = i < n_ko
        text = "\n".join(f"{r.choice(LINES if ko else EN)} ({i}.{j})" for j in range(lines))
        src, sha = ("laws" if ko else "docs"), text_sha256(text)
        rows.append({"id": doc_id(src, f"doc{i}", sha), "text": text, "source": src, "url": f"doc{i}",
                     "license": "CC0-1.0", "jurisdiction": "KR", "lang": "ko" if ko else "en",
                     "lang_score": 1.0, "collected_at": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
                     "date": None, "title": None, "sha256": sha})
    return pa.Table.from_pylist(rows, schema=DOC_SCHEMA)


def test_paragraph_units_cover_the_text_exactly():
    text = "짧은 줄\n" + "\n".join(LINES) + "\n\n끝\n\n"
    for n in (1, 50, 120, 10_000):
        units = paragraphs(text, n)
        assert "".join(units) == text
        assert all(len(u.strip()) >= n for u in units[:-1])


def test_few_documents_hold_out_paragraphs_many_hold_out_documents():
    s = HeldoutSettings()  # 30 units per language at least
    few = corpus(8, 0, lines=60)
    sp = plan([few], s)
    assert sp.mode["ko"] == "paragraphs" and sp.units["ko"] == 30 and not sp.docs
    train, held = apply(sp, few)
    assert held.num_rows == 30 and train.num_rows == 8  # every document trains on its other lines
    for doc, text in zip(train.column("id").to_pylist(), train.column("text").to_pylist()):
        for unit in held.filter(pa.compute.equal(held.column("doc_id"), doc)).column("text").to_pylist():
            assert unit not in text
    many = corpus(400, 0, lines=2)
    sp = plan([many], s)
    assert sp.mode["ko"] == "documents" and sp.units["ko"] == 30 and not sp.paragraphs
    train, held = apply(sp, many)
    assert held.num_rows == 30 and train.num_rows == 370
    assert set(held.column("id").to_pylist()).isdisjoint(train.column("id").to_pylist())


def test_split_is_a_function_of_ids_not_of_order_or_batching():
    t = corpus(20, 10, lines=30)
    s = HeldoutSettings()
    a = plan([t], s)
    shuffled = t.take(list(reversed(range(t.num_rows))))
    b = plan([shuffled.slice(0, 7), shuffled.slice(7)], s)
    assert a.key() == b.key() and a.units == b.units


def test_no_held_out_unit_teaches_the_tokenizer_or_the_model(workspace):
    """On a built workspace: curated corpus → tokenizer stage → train stage; every held-out unit
    is absent from what taught the tokenizer and from the model's packed training data."""
    from soberan.tokenizer import run as tokenizer_run
    from soberan.tokenizer.corpus import plan as tokenizer_plan
    from soberan.tokenizer.corpus import training_texts
    from soberan.train import run as train_run
    from soberan.train.data import load_packed
    from soberan.hf import load_tokenizer
    from soberan.workspace import Workspace, set_keys

    root = workspace.root
    t = corpus(10, 6, lines=30)
    write_parquet_atomic(t.slice(0, 9), root / "curated" / "part-0.parquet")
    write_parquet_atomic(t.slice(9), root / "curated" / "part-1.parquet")
    workspace.ledger.record_artifact(stage="curate", kind="corpus", path=root / "curated")
    cfg = root / "soberan.toml"
    text = cfg.read_text()
    text = set_keys(text, "tokenizer", {"mode": '"replace"', "vocab_size": "400"})
    text = text.replace("[train]\n", "[train]\ndepth = 1\nseq_len = 32\nmicro_batch = 2\nmax_steps = 2\n"
                        "warmup_steps = 0\neval_every = 2\ncheckpoint_every = 2\ntensorboard = false\n", 1)
    cfg.write_text(text)
    ws = Workspace.open(root)
    tokenizer_run(ws)
    summary = train_run(ws)

    held = pa.concat_tables([pq.read_table(p) for p in sorted((summary.output.parent / "heldout").glob("*.parquet"))])
    units = [u.strip() for u in held.column("text").to_pylist()]
    langs = held.column("lang").to_pylist()
    assert langs.count("ko") > 0 and langs.count("en") > 0
    # The tokenizer held out the same units: same split, same counts per document.
    tp = tokenizer_plan(root / "curated", ["ko", "en"], ws.config.heldout)
    assert tp.held_out_units == held.num_rows
    taught = "\n".join(training_texts(root / "curated", tp, 0, []))
    roles = pq.read_table(root / "tokenizer" / "training_docs.parquet").to_pylist()
    # The tokenizer learns the project's languages (ko): it held out exactly train's ko units.
    assert sum(1 for r in roles if r["role"] == "held_out") == langs.count("ko")
    # The model's training data, decoded from its packed tokens.
    tok = load_tokenizer(summary.output)
    packed = load_packed(summary.output.parent / "data")
    trained = "\n".join(tok.decode(packed.tokens[d["start"] + 1:d["start"] + d["n_tokens"] - 1].tolist())
                        for d in packed.docs.to_pylist())
    for u in units:
        assert u not in taught, f"held-out unit taught the tokenizer: {u[:40]}"
        assert u not in trained, f"held-out unit is in the model's training data: {u[:40]}"
    # ... and the rest of each document did train.
    assert all(doc in packed.docs.column("doc_id").to_pylist() for doc in set(held.column("doc_id").to_pylist()))


@pytest.mark.parametrize("bad", [{"fraction": 1.0}, {"unit_chars": 0}, {"max_doc_share": 0.9}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        HeldoutSettings(**bad)
