"""`soberan takedown`: the request reaches every artifact holding the documents, the next build
rebuilds them without those documents, and the report shows it. On the contract-faithful fake
stages (test_build_fakes); the same on the real stages runs in test_build_e2e."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_build_fakes import fake_runner, make_fake_workspace, offline_env  # noqa: F401 (autouse)

from soberan.build import stage_status
from soberan.build import run as build
from soberan.documents import read_corpus, shard_paths
from soberan.report.takedown import request_takedown
from soberan.takedown import (TakedownRules, glob_to_like, is_taken_down, load_rules, stale_marks, takedown_mask,
                              taken_down_ids)


@pytest.fixture
def ws(tmp_path):
    w = make_fake_workspace(tmp_path / "w")
    build(w, runner=fake_runner)
    return w


def doc_bearing_files(ws):
    """Every Parquet file under the stage folders with a document id column, and its ids."""
    out = {}
    for folder in ("raw", "curated", "tokenizer", "model", "eval"):
        for f in shard_paths(ws.root / folder):
            cols = pq.read_schema(f).names
            col = "id" if "id" in cols else ("doc_id" if "doc_id" in cols else None)
            if col:
                out[f.relative_to(ws.root).as_posix()] = set(pq.read_table(f, columns=[col]).column(0).to_pylist())
    return out


@pytest.mark.slow  # rebuilds every stage
def test_takedown_of_a_source_reaches_every_artifact_and_the_rebuild_leaves_it_out(ws):
    raw = read_corpus(ws.stage_dir("collect"))
    news_ids = set(raw.filter(pc.equal(raw.column("source"), "news")).column("id").to_pylist())
    assert len(news_ids) == 5
    before_model = ws.ledger.latest_artifact("train", "model")
    assert before_model["meta"]["token_shares"]["source"]["news"]["share"] > 0

    from soberan.report import run as report

    report(ws)  # its token-count cache holds document ids too
    res = request_takedown(ws, by="source", value="news", reason="publisher withdrew consent")
    assert res.docs == 5 and res.by_source == {"news": 5}
    held = {a.path: a for a in res.affected}
    assert held["report"].docs == 5
    # Holding the documents, found by DuckDB over the files: shards, tokenizer input, packed data.
    assert held["raw"].docs == 5 and held["curated"].docs == 4  # one news doc was dropped by curate
    assert held["tokenizer/training_docs.parquet"].docs == 4
    assert held["model/heldout.parquet"].docs + held["model/data/docs.parquet"].docs == 4
    # Made from them: tokenizer, model weights, evaluation results.
    for p in ("tokenizer/final", "model/final", "eval/results.json"):
        assert p in held and held[p].docs == 0 and held[p].derived_from
    assert set(stale_marks(ws)) == set(held)
    assert taken_down_ids(ws) == news_ids
    for stage in ("collect", "curate", "tokenizer", "train", "evaluate"):
        st = stage_status(ws, stage)
        assert not st.current and st.rebuild and any("stale" in r for r in st.reasons)

    s = build(ws, runner=fake_runner)
    assert [r.action for r in s.stages] == ["rebuilt"] * 5
    # No document of the source is left in any file of any stage.
    for path, ids in doc_bearing_files(ws).items():
        assert not ids & news_ids, path
    con = duckdb.connect()
    srcs = con.execute(f"SELECT DISTINCT source FROM read_parquet('{ws.root}/model/data/docs.parquet')").fetchall()
    assert srcs == [("laws",)]
    after_model = ws.ledger.latest_artifact("train", "model")
    assert set(after_model["meta"]["token_shares"]["source"]) == {"laws"}
    assert set(stale_marks(ws)) == {"report"} and ws.ledger.verify() == []  # the next report replaces it
    assert set(r.action for r in build(ws, runner=fake_runner).stages) == {"skipped"}

    # The report shows the take-down and its effect.
    f = json.loads(report(ws).json.read_text())
    assert stale_marks(ws) == {}
    (t,) = f["takedowns"]
    assert t["takedown"] == res.takedown and t["docs"] == 5 and t["remaining_docs"] == 0
    assert all(a["rebuilt"] for a in t["artifacts"]) and len(t["artifacts"]) == len(held)
    assert t["shares_before"]["news"] > 0 and "news" not in t["shares_after"]
    news_src = next(x for x in f["eu_summary"]["data_sources"]["publicly_available_datasets"] if x["name"] == "news")
    assert news_src["taken_down"] == "publisher withdrew consent" and news_src["documents"] == 0
    html = (ws.root / "report" / "index.html").read_text()
    assert res.takedown in html and "pending rebuild" not in html


def test_takedown_by_url_glob_and_by_document(ws):
    raw = read_corpus(ws.stage_dir("collect"))
    law_a = next(r["id"] for r in raw.to_pylist() if r["url"] == "https://law.example.kr/a")
    res = request_takedown(ws, by="url", value="https://law.example.kr/[ab]*", reason="x")
    assert res.docs == 0  # a glob's [ and ] are literal, not a character class
    res = request_takedown(ws, by="url", value="https://law.example.kr/a*", reason="court order")
    assert res.docs == 1
    by_doc = request_takedown(ws, by="doc", value=law_a, reason="duplicate request")
    assert by_doc.docs == 1
    later = request_takedown(ws, by="doc", value="f" * 32, reason="not collected yet")
    assert later.docs == 1 and later.affected == []  # kept out of every future build
    build(ws, runner=fake_runner)
    ids = set(read_corpus(ws.stage_dir("collect"), ["id"]).column("id").to_pylist())
    assert law_a not in ids and len(ids) == 10
    dec = ws.ledger.connect().execute("SELECT doc_id, rule FROM decisions WHERE stage = 'collect'").fetchall()
    assert (law_a, "takedown") in dec  # the drop is in the decision log with its reason


def test_takedown_mask_and_single_checks():
    rules = TakedownRules(ids=frozenset({"d1"}), sources=frozenset({"blog"}),
                          url_globs=("https://a.kr/news/*", "https://b.kr/100%_*"))
    tbl = pa.table({"id": ["d1", "d2", "d3", "d4", "d5", "d6"],
                    "source": ["x", "blog", "x", "x", "x", "x"],
                    "url": [None, None, "https://a.kr/news/1", "https://a.kr/sport/1",
                            "https://b.kr/100%_off", "https://b.kr/1000x"]})
    assert takedown_mask(rules, tbl).to_pylist() == [True, True, True, False, True, False]
    assert is_taken_down(rules, url="https://a.kr/news/2") and not is_taken_down(rules, doc_id="d9")
    assert glob_to_like("a_b%c*?") == "a\\_b\\%c%_"
    assert not TakedownRules()


def test_takedown_cli_and_errors(ws):
    from typer.testing import CliRunner

    from soberan.cli import app

    r = CliRunner().invoke(app, ["takedown", "-w", str(ws.root), "--source", "laws", "--doc", "x", "--reason", "r"])
    assert r.exit_code == 2 and "exactly one" in r.output
    r = CliRunner().invoke(app, ["takedown", "-w", str(ws.root), "--source", "nope", "--reason", "r"])
    assert r.exit_code == 2 and "no source named" in r.output
    r = CliRunner().invoke(app, ["takedown", "-w", str(ws.root), "--source", "laws", "--reason", " "])
    assert r.exit_code == 2 and "needs a reason" in r.output
    r = CliRunner().invoke(app, ["takedown", "-w", str(ws.root), "--source", "laws", "--reason", "licence expired"])
    assert r.exit_code == 0, r.output
    assert "marked stale" in r.output and "curated" in r.output
    assert load_rules(ws).sources == {"laws"}
    ev = [e for e in ws.ledger.records("event") if e.get("event") == "takedown"]
    assert ev[-1]["value"] == "laws" and ev[-1]["reason"] == "licence expired" and ev[-1]["docs"] == 6
    assert ws.ledger.verify() == []
