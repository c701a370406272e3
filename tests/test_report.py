"""`soberan report`: every figure matches the artifacts it was read from; the EU summary, model
card and Croissant metadata are complete and valid; the page is self-contained and renders in a
real browser. Built on the contract-faithful fake stages (test_build_fakes)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from test_build_fakes import fake_runner, make_fake_workspace, offline_env  # noqa: F401 (autouse)
from test_evaluate import _workspace, tiny_models  # noqa: F401 (fixture)

from soberan.build import run as build
from soberan.documents import read_corpus
from soberan.report import run as report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    ws = make_fake_workspace(tmp_path_factory.mktemp("r") / "w")
    build(ws, runner=fake_runner)
    summary = report(ws, license="Apache-2.0")
    return ws, summary, json.loads(summary.json.read_text())


def test_funnel_matches_the_shards_and_the_decision_log(built):
    ws, _, f = built
    from tokenizers import Tokenizer

    raw = read_corpus(ws.stage_dir("collect"))
    cur = read_corpus(ws.stage_dir("curate"))
    tok = Tokenizer.from_file(str(ws.stage_dir("tokenizer") / "final" / "tokenizer.json"))
    ntok = lambda tbl: sum(len(e.ids) for e in tok.encode_batch(tbl.column("text").to_pylist(),  # noqa: E731
                                                                 add_special_tokens=False))
    fu = f["funnel"]
    assert fu["collected"]["docs"] == raw.num_rows == 11
    assert fu["collected"]["tokens"] == ntok(raw)
    steps = {s["step"]: s for s in fu["steps"]}
    assert steps["quality"]["dropped"]["docs"] == 1  # "짧다"
    assert steps["quality"]["reasons"][0]["rule"] == "min_chars"
    assert steps["quality"]["by_source"] == [{"value": "news", "docs": 1, "tokens": ntok(raw.filter(
        [t == "짧다" for t in raw.column("text").to_pylist()]))}]
    assert steps["exact_dedup"]["dropped"]["docs"] == 1 and steps["exact_dedup"]["by_source"][0]["value"] == "laws"
    assert steps["pii"]["redacted"] == [{"rule": "EMAIL", "docs": 1}]
    assert fu["kept"]["docs"] == cur.num_rows == 9 and fu["kept"]["tokens"] == ntok(cur)
    assert fu["closes"] is True
    assert [s["step"] for s in fu["steps"]] == ["quality", "pii", "exact_dedup"]  # the config's order


def test_composition_and_model_token_shares(built):
    ws, _, f = built
    c = f["composition"]
    by_src = {r["value"]: r for r in c["source"]}
    assert by_src["news"]["docs"] == 4 and by_src["laws"]["docs"] == 5
    assert abs(sum(r["share"] for r in c["source"]) - 1) < 1e-9
    assert {r["value"] for r in c["license"]} == {"CC-BY-4.0", "LicenseRef-KR-Public-Domain"}
    assert c["domain"][0]["value"] in {"news.example.kr", "law.example.kr"}
    m = c["model"]
    docs = pq.read_table(ws.stage_dir("train") / "data" / "docs.parquet")
    assert m["total_tokens"] == sum(docs.column("n_tokens").to_pylist())
    for k, v in m["recorded"]["source"].items():  # the fake draws each packed token once
        assert abs(m["computed"]["source"][k] - v["share"]) < 1e-9
    assert f["model_shares_flat"]["source"] == {k: v["share"] for k, v in m["recorded"]["source"].items()}


def test_fertility_curves_and_evaluation_come_from_the_artifacts(built):
    ws, _, f = built
    fert = json.loads((ws.stage_dir("tokenizer") / "fertility.json").read_text())
    assert f["fertility"]["data"] == fert
    assert f["fertility_table"]["rows"] == [["bytes (before)", "ko", fert["bytes"]["ko"]["tokens_per_char"]],
                                            ["trained (after)", "ko", fert["trained"]["ko"]["tokens_per_char"]]]
    metrics = [json.loads(x) for x in (ws.stage_dir("train") / "metrics.jsonl").read_text().splitlines()]
    assert f["training"]["series"]["loss"] == [[m["step"], m["loss"]] for m in metrics]
    res = json.loads((ws.stage_dir("evaluate") / "results.json").read_text())
    rows = {(r["model"], r["task"], r["metric"]): r["value"] for r in f["eval_rows"]}
    assert rows[("model/final", "heldout_ko", "bpb")] == res["models"][1]["bpb"]["ko"]["bpb"]
    assert rows[("base (uniform)", "heldout_ko", "bpb")] == res["models"][0]["bpb"]["ko"]["bpb"]
    assert f["evaluation"]["model_label"] == "model/final"
    assert f["evaluation"]["comparisons"] == res["comparisons"]


def test_eu_summary_follows_the_ai_office_template(built):
    ws, s, f = built
    eu = json.loads(s.eu_json.read_text())
    g = eu["general_information"]
    assert g["provider"] == ws.config.project.provider and g["model_name"] == "fake"
    assert g["modalities"] == ["text"]
    assert g["training_data_size"]["text"]["bin"] == "Less than 1 billion tokens"
    assert g["training_data_size"]["text"]["tokens"] == f["composition"]["model"]["total_tokens"]
    assert g["latest_collection_date"] and g["languages"][0]["language"] == "ko"
    assert sorted(g["content_types"]) == ["news articles", "statutes"]
    d = eu["data_sources"]
    assert {x["name"] for x in d["publicly_available_datasets"]} == {"news", "laws"}
    assert d["crawled_data"]["used"] is False and d["user_data"]["used"] is False
    assert d["synthetic_data"]["used"] is False
    p = eu["data_processing"]
    assert {"reservation_of_rights", "unlawful_content_and_personal_data"} <= set(p)
    assert {r["rule"] for r in p["unlawful_content_and_personal_data"]["documents_dropped_by_rule"]} == \
        {"min_chars", "exact_duplicate"}
    md = s.eu_markdown.read_text()
    for h in ("## 1. General information", "## 2. List of data sources", "### 2.3 Data crawled",
              "### 2.4 User data", "### 2.5 Synthetic data", "## 3. Data processing aspects",
              "### 3.2 Removal of illegal content"):
        assert h in md


def test_eu_summary_crawled_section_and_size_bins():
    from soberan.report.eu import size_bin, source_section

    assert size_bin(999_999_999) == "Less than 1 billion tokens"
    assert size_bin(1_000_000_000) == "1 billion to 10 trillion tokens"
    assert size_bin(10_000_000_000_000) == "More than 10 trillion tokens"
    assert source_section("crawl", "CC-BY-4.0") == "crawled"
    assert source_section("jsonl", "LicenseRef-Newswire-Commercial") == "licensed"
    assert source_section("files", "LicenseRef-KR-Public-Domain") == "public"


def test_model_card_has_hub_metadata(built):
    ws, s, f = built
    text = s.model_card.read_text()
    m = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    meta = yaml.safe_load(m.group(1))
    assert meta["license"] == "apache-2.0" and meta["language"] == ["ko"]
    assert meta["datasets"] == ["news", "laws"] and "soberan" in meta["tags"]
    mi = meta["model-index"][0]
    metrics = [(r["dataset"]["name"], m["type"], m["value"]) for r in mi["results"] for m in r["metrics"]]
    mine = next(r for r in f["eval_rows"] if r["model"] == "model/final")
    assert metrics == [("heldout_ko", "bpb", round(mine["value"], 6))]  # this model's, not the base's
    assert f["ledger"]["head"] in text
    from huggingface_hub import ModelCard

    assert ModelCard(text).data.license == "apache-2.0"  # the Hub's own parser reads it back


def test_croissant_loads_the_curated_records(built):
    import mlcroissant as mlc

    ws, s, _ = built
    doc = json.loads(s.croissant.read_text())
    for key in ("@context", "@type", "name", "description", "license", "conformsTo", "distribution", "recordSet"):
        assert key in doc, key
    assert doc["@type"] == "sc:Dataset" and doc["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    ctx = mlc.Context()
    md = mlc.Metadata.from_json(ctx=ctx, json_=doc)
    assert not md.issues.errors
    ctx.folder = __import__("etils.epath", fromlist=["Path"]).Path(ws.stage_dir("curate"))
    records = list(mlc.Dataset.from_metadata(md).records("documents"))
    ids = sorted(r["documents/id"].decode() for r in records)
    assert ids == sorted(read_corpus(ws.stage_dir("curate"), ["id"]).column("id").to_pylist())


def test_page_is_self_contained_and_recorded(built):
    ws, s, _ = built
    html = s.html.read_text()
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "url(http" not in html and "@import" not in html
    assert html.count('<svg class="chart"') >= 6
    art = ws.ledger.latest_artifact("report", "report")
    assert art and art["path"] == "report"
    current = {a["hash"] for a in ws.ledger.artifacts() if a["stage"] != "report"}
    assert set(art["inputs"]) == current
    from typer.testing import CliRunner

    from soberan.cli import app

    r = CliRunner().invoke(app, ["ledger", "verify", "-w", str(ws.root)])
    assert r.exit_code == 0, r.output


def test_report_cli_and_a_partly_built_workspace(tmp_path):
    from typer.testing import CliRunner

    from soberan.cli import app

    ws = make_fake_workspace(tmp_path / "p")
    build(ws, runner=fake_runner, only="collect")
    r = CliRunner().invoke(app, ["report", "-w", str(ws.root)])
    assert r.exit_code == 0, r.output
    f = json.loads((ws.root / "report" / "report.json").read_text())
    assert f["funnel"]["collected"]["docs"] == 11 and f["funnel"]["collected"]["tokens"] is None
    assert f["composition"]["available"] is False and f["evaluation"]["available"] is False
    assert "index.html" in r.output
    r = CliRunner().invoke(app, ["report", "-w", str(ws.root), "--license", "Not-A-License"])
    assert r.exit_code == 2 and "unknown SPDX" in r.output


def test_a_failed_ledger_shows_in_the_report_and_the_exit_code(tmp_path):
    from typer.testing import CliRunner

    from soberan.cli import app

    ws = make_fake_workspace(tmp_path / "t")
    build(ws, runner=fake_runner, only="collect")
    shard = next((ws.root / "raw").rglob("*.parquet"))
    tbl = pq.read_table(shard)
    edited = tbl.set_column(1, "text", pa.array(["edited"] + tbl.column("text").to_pylist()[1:], pa.large_string()))
    pq.write_table(edited, shard, compression="zstd")
    r = CliRunner().invoke(app, ["report", "-w", str(ws.root)])
    assert r.exit_code == 1 and "FAILED" in r.output
    f = json.loads((ws.root / "report" / "report.json").read_text())
    assert f["ledger"]["ok"] is False and "was changed" in f["ledger"]["problems"][0]
    assert '<span id="ledger-badge" class="badge bad">' in (ws.root / "report" / "index.html").read_text()
    # A shard damaged beyond reading: the report is still written and names it.
    shard.write_bytes(shard.read_bytes()[:-20])
    r = CliRunner().invoke(app, ["report", "-w", str(ws.root)])
    assert r.exit_code == 1
    f = json.loads((ws.root / "report" / "report.json").read_text())
    assert "cannot be read" in f["read_errors"][0] and f["funnel"]["available"] is False


@pytest.mark.slow  # headless Chromium
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_report_renders_in_headless_chromium(built, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    _, s, f = built
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        external = []
        page.on("request", lambda req: external.append(req.url) if not req.url.startswith(("file:", "data:")) else None)
        page.goto(Path(s.html).as_uri())
        page.wait_for_load_state("load")
        assert page.title().startswith("Sovereignty report")
        # The funnel: its table has a row per step, with the collected count the facts give.
        # The "edits to kept documents" row appears when curate edited the kept documents.
        rows = page.locator("#funnel-table tr")
        fu = f["funnel"]
        edits_row = int(bool(fu.get("kept") and fu.get("edited") and fu["edited"].get("tokens") is not None))
        assert rows.count() == 2 + len(fu["steps"]) + edits_row + 1
        if edits_row:
            assert "edits to kept documents" in rows.nth(rows.count() - 2).inner_text()
        assert page.locator("#funnel-table tr").nth(1).inner_text().split()[-1].replace(",", "") == \
            str(f["funnel"]["collected"]["tokens"])
        # The EU summary with its three parts.
        eu = page.locator("#eu-summary")
        assert "Art. 53(1)(d)" in eu.locator("h2").inner_text()
        for h in ("1. General information", "2. Data sources", "3. Data processing"):
            assert eu.get_by_text(h, exact=True).is_visible()
        # Charts: drawn, with a real size on the page.
        charts = page.locator("svg.chart")
        assert charts.count() >= 6
        for i in range(charts.count()):
            box = charts.nth(i).bounding_box()
            assert box and box["width"] > 100 and box["height"] > 50
        assert page.locator("#ledger-badge").inner_text() == "verified"
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert external == []  # nothing fetched from outside the file


def test_eu_summary_of_crawled_data_names_the_crawler_period_and_top_domains(tmp_path):
    """A crawl source: section 2.3 gets the crawler's user agent, the collection period and the
    top 10% of domains by size, read from the curated shards."""
    import datetime as dt

    from soberan.documents import DOC_SCHEMA, write_parquet_atomic
    from soberan.report import gather
    from soberan.workspace import Workspace, init_workspace, set_keys

    init_workspace(tmp_path / "c", lang="ko", jurisdiction="KR", name="crawl")
    cfg = tmp_path / "c" / "soberan.toml"
    cfg.write_text(set_keys(cfg.read_text(), "policy", {"crawl_domains": '["go.kr"]'}) + '''
[[sources]]
name = "gov"
kind = "crawl"
urls = ["https://www.korea.go.kr/"]
user_agent = "soberan-collect/0.1 (+https://ai.example.kr/crawler)"
license = "LicenseRef-KR-Public-Domain"
jurisdiction = "KR"
''')
    ws = Workspace.open(tmp_path / "c")
    t0 = dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)
    rows = []
    for i in range(12):  # twelve domains; domain i has i + 1 documents of 100 characters
        for j in range(i + 1):
            rows.append({"id": f"d{i}-{j}", "text": "가" * 100, "source": "gov",
                         "url": f"https://site{i}.go.kr/page/{j}", "license": "LicenseRef-KR-Public-Domain",
                         "jurisdiction": "KR", "lang": "ko", "lang_score": 1.0,
                         "collected_at": t0 + dt.timedelta(days=i), "date": None, "title": None, "sha256": "x"})
    write_parquet_atomic(pa.Table.from_pylist(rows, schema=DOC_SCHEMA), ws.stage_dir("curate") / "part-00000.parquet")
    ws.ledger.record_artifact(stage="curate", kind="corpus", path=ws.stage_dir("curate"))
    f, _ = gather(ws, tmp_path / "cache")
    c = f["eu_summary"]["data_sources"]["crawled_data"]
    assert c["used"] and c["crawlers"][0]["user_agent"].endswith("ai.example.kr/crawler)")
    assert c["domains_total"] == 12
    assert [d["domain"] for d in c["top_domains"]] == ["site11.go.kr", "site10.go.kr"]  # ceil(10% of 12)
    assert c["collection_period"]["from"].startswith("2025-03-01") and c["collection_period"]["to"].startswith("2025-03-12")
    assert "robots.txt" in c["behaviour"] and "go.kr" in c["behaviour"]
    assert f["eu_summary"]["general_information"]["latest_collection_date"].startswith("2025-03-12")
    from soberan.report.eu import eu_markdown

    md = eu_markdown(f["eu_summary"])
    assert "site11.go.kr, site10.go.kr" in md and "soberan-collect/0.1" in md


def test_from_scratch_model_is_said_to_be(built):
    ws, s, f = built
    assert f["base_model"] is None and f["base_model_text"] == "none: trained from scratch"
    assert "**Base model:** none: trained from scratch." in s.model_card.read_text()
    assert "- **Base model:** none: trained from scratch" in s.eu_markdown.read_text()


def test_base_and_adapted_side_by_side_in_the_report_and_the_card(workspace, tiny_models, tmp_path):  # noqa: F811
    """A real evaluation of a base model (from a base_model artifact) and the model adapted from
    it: the card, the page and the EU summary name the base and its license; both models'
    bits per byte with CIs, fertility, scores with CIs and degenerate flags, and greedy answers
    stand side by side."""
    from test_evaluate_stats import _with_base, _zero_head

    from soberan.evaluate import run as evaluate

    ws = _workspace(workspace, tiny_models, ["짧은 문서."], 'sets = ["chance"]\nbootstrap = 200')
    _zero_head(tiny_models["untrained"], tmp_path / "always-a")  # a base that answers A whatever it reads
    ws = _with_base(ws, tmp_path / "always-a")
    evaluate(ws, show=False)
    res = json.loads((ws.root / "eval" / "results.json").read_text())
    base, adapted = res["models"]
    s = report(ws, license="Apache-2.0")
    card, html, eu = s.model_card.read_text(), s.html.read_text(), json.loads(s.eu_json.read_text())
    assert s.ledger_ok

    line = "TinyBase-1M (license Apache-2.0; 123,456 parameters, source quantization F32; sha256 abababababababab)"
    assert f"**Base model:** {line}." in card and line in html
    assert eu["general_information"]["base_model"] == line
    assert eu["general_information"]["base_model_license"] == "Apache-2.0"
    meta = yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", card, re.S).group(1))
    assert meta["base_model"] == "TinyBase-1M"

    b, a = base["bpb"]["ko"], adapted["bpb"]["ko"]
    row = next(x for x in card.splitlines() if x.startswith("| ko | 30 |"))
    assert f"{b['bpb']:.4f} [{b['ci95'][0]:.4f}, {b['ci95'][1]:.4f}]" in row
    assert f"{a['bpb']:.4f} [{a['ci95'][0]:.4f}, {a['ci95'][1]:.4f}]" in row and "significant" in row
    assert "| base | adapted | Δ adapted − base [95% CI] |" in card
    assert f"| ko | {b['tokens_per_char']:.3f} | {a['tokens_per_char']:.3f} |" in card
    flag = base["sets"]["chance"]["degenerate"]["acc"]
    assert flag == "degenerate: answers A on 100%"
    acc_row = next(x for x in card.splitlines() if x.startswith("| chance | ko | acc |"))
    lo, hi = base["sets"]["chance"]["acc_ci95"]
    assert f"0.250 [{lo:.3f}, {hi:.3f}] ⚠ {flag}" in acc_row and "| 0.250 | 0.250 (A) |" in acc_row
    assert "not significant" in acc_row
    assert 'id="side-sets"' in html and '<span class="badge bad">degenerate</span>' in html
    first = res["prompts"]["ko"][0].replace("\n", " ⏎ ")
    prompt_row = next(x for x in card.splitlines() if x.startswith(f"| ko | {first} |"))
    assert prompt_row.count("|") == 5  # lang, prompt, base's answer, adapted's answer
    assert 'id="side-prompts"' in html and "(forgetting check)" not in card  # no English held out here
    # A later run of the adapted model alone on another set merges in; the base stays the first
    # column, and the reference its differences are read against.
    evaluate(ws, show=False, models=["model/final"], sets=["quiz"])
    res = json.loads((ws.root / "eval" / "results.json").read_text())
    assert [m["label"] for m in res["models"]] == ["adapted", "base"]
    card = report(ws, license="Apache-2.0").model_card.read_text()
    assert "| base | adapted | Δ adapted − base [95% CI] |" in card
    quiz = next(x for x in card.splitlines() if x.startswith("| quiz | ko | acc |"))
    got = res["models"][0]["sets"]["quiz"]
    lo, hi = got["acc_ci95"]
    assert quiz.endswith(f"| — | {got['acc']:.3f} [{lo:.3f}, {hi:.3f}] | — |")  # the base did not answer it


def test_funnel_token_column_closes_with_the_edits_row(built):
    """Dropped tokens are counted as collected; the kept documents' own edits are a row, so that
    collected - drops - edits = the curated corpus (tokens as well as documents)."""
    ws, s, f = built
    fu = f["funnel"]
    assert fu["closes_tokens"] is True
    assert fu["steps"][-1]["remaining"]["tokens"] - fu["edited"]["tokens"] == fu["kept"]["tokens"]
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(ws.stage_dir("tokenizer") / "final" / "tokenizer.json"))
    ntok = lambda texts: sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))  # noqa: E731
    raw, cur = read_corpus(ws.stage_dir("collect")), read_corpus(ws.stage_dir("curate"))
    kept = set(cur.column("id").to_pylist())
    as_collected = [t for i, t in zip(raw.column("id").to_pylist(), raw.column("text").to_pylist()) if i in kept]
    assert fu["edited"]["tokens"] == ntok(as_collected) - ntok(cur.column("text").to_pylist())
    assert "edits to kept documents" in s.html.read_text()


def test_evaluation_chart_shows_every_row_without_overlap():
    from soberan.report import make_charts

    rows = [{"task": f"task_{i:02d}_with_a_rather_long_name", "metric": "acc", "values": [i / 40, None]}
            for i in range(30)]
    svg = make_charts({"funnel": {}, "composition": {}, "training": {}, "fertility": {},
                       "evaluation": {"table": {"models": ["model/final", "baseline"], "rows": rows}}})["evaluation"]
    ys = [float(y) for y in re.findall(r'<text x="[\d.]+" y="([\d.]+)" text-anchor="end">', svg)]
    assert len(ys) == 30 and all(f"task_{i:02d}" in svg for i in range(30))
    assert min(b - a for a, b in zip(ys, ys[1:])) >= 14  # a 12 px font, one label per row


def test_report_says_the_anchor_and_the_serving_egress_guard(built, tmp_path):
    ws, _, f = built
    assert f["ledger"]["anchor"] and f["ledger"]["ok"]
    ws.ledger.record_event("serve", model="m", egress="network namespace (loopback only) + Python audit hook")
    s = report(ws, license="Apache-2.0")
    page = s.html.read_text()
    assert "network namespace (loopback only)" in page and "checked against its anchor" in page
