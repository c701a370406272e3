"""`soberan collect`: every source kind, legacy encodings, policy refusal, the bundled corpus and
the real data in ../shared/data (skipped when absent)."""

from __future__ import annotations

import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_config
from typer.testing import CliRunner

from soberan.cli import app
from soberan.collect import run
from soberan.config import ConfigError
from soberan.documents import DOC_SCHEMA, doc_id, read_corpus, text_sha256
from soberan.policy import PolicyError
from soberan.workspace import Workspace, init_workspace, set_keys

KO = "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다."
TH = "ประเทศไทยเป็นราชอาณาจักรอันหนึ่งอันเดียวจะแบ่งแยกมิได้ รัฐธรรมนูญแห่งราชอาณาจักรไทย"
AR = "المملكة العربية السعودية دولة عربية إسلامية ذات سيادة تامة دينها الإسلام ودستورها كتاب الله تعالى"
VI = "Nước Cộng hòa xã hội chủ nghĩa Việt Nam là một nước độc lập, có chủ quyền, thống nhất và toàn vẹn lãnh thổ"
HTML = ("<html><head><meta charset='{cs}'><title>{title}</title></head><body>"
        "<nav>홈 | 로그인 | 메뉴</nav><article><h1>{title}</h1><p>{body}</p><p>{body}</p></article>"
        "<footer>Copyright 정부 포털</footer></body></html>")


def sources(ws: Workspace, toml: str, *, crawl_domains: list[str] | None = None) -> Workspace:
    """Add [[sources]] (and allowed crawl domains) to a test workspace; reopen it."""
    write_config(ws.root, toml)
    if crawl_domains is not None:
        cfg = ws.root / "soberan.toml"
        cfg.write_text(set_keys(cfg.read_text(), "policy", {"crawl_domains": json.dumps(crawl_domains)}))
    return Workspace.open(ws.root)


def docs_of(ws: Workspace, source: str | None = None) -> list[dict]:
    rows = read_corpus(ws.stage_dir("collect")).to_pylist()
    return sorted((r for r in rows if source is None or r["source"] == source), key=lambda r: r["url"] or "")


def rejections(ws: Workspace) -> list[dict]:
    con = ws.ledger.connect()
    res = con.execute("SELECT doc_id, rule, reason, source, action, stage FROM decisions ORDER BY reason")
    cols = [d[0] for d in res.description]
    return [dict(zip(cols, r)) for r in res.fetchall()]


def test_files_source_globs_html_and_provenance(workspace, tmp_path):
    d = tmp_path / "site"
    (d / "notices").mkdir(parents=True)
    (d / "a.txt").write_text(KO, encoding="utf-8")
    (d / "b.md").write_text("# 제목\n\n" + KO, encoding="utf-8")
    (d / "notices" / "n1.html").write_text(HTML.format(cs="utf-8", title="공지", body=KO * 3), encoding="utf-8")
    (d / "notices" / "draft.html").write_text(HTML.format(cs="utf-8", title="초안", body=KO), encoding="utf-8")
    (d / "skip.csv").write_text("a,b\n1,2\n")
    (d / ".hidden.txt").write_text(KO)
    ws = sources(workspace, f"""
[[sources]]
name = "site"
kind = "files"
path = "{d}"
include = ["**/*.txt", "**/*.md", "**/*.html"]
exclude = ["**/draft.html"]
license = "CC-BY-4.0"
jurisdiction = "KR"
lang = "ko"
""")
    summary = run(ws, show_progress=False)
    rows = docs_of(ws)
    assert [r["url"] for r in rows] == ["a.txt", "b.md", "notices/n1.html"]
    html = rows[2]
    assert KO in html["text"] and "로그인" not in html["text"] and "Copyright" not in html["text"]
    assert html["title"] == "공지"
    for r in rows:
        assert r["license"] == "CC-BY-4.0" and r["jurisdiction"] == "KR" and r["source"] == "site"
        assert r["sha256"] == text_sha256(r["text"])
        assert r["id"] == doc_id("site", r["url"], r["sha256"])
        assert r["lang"] == "ko" and r["collected_at"] is not None
    # Shards are zstd Parquet with the document schema, readable as they are.
    shard = next((ws.root / "raw" / "site").glob("part-*.parquet"))
    assert pq.ParquetFile(shard).metadata.row_group(0).column(0).compression == "ZSTD"
    assert pq.read_schema(shard).equals(DOC_SCHEMA)
    # The stage's artifact, made from the source record, with per-source counts.
    art = ws.ledger.latest_artifact("collect", "corpus")
    src = [r for r in ws.ledger.records("source") if r["name"] == "site"][-1]
    assert art["hash"] == summary.artifact and art["path"] == "raw" and art["inputs"] == [src["hash"]]
    assert art["meta"]["sources"]["site"]["docs"] == 3 and src["license"] == "CC-BY-4.0"
    assert ws.ledger.verify() == []


def test_jsonl_parquet_csv_field_mapping(workspace, tmp_path):
    d = tmp_path / "rec"
    d.mkdir()
    recs = [{"body": KO, "meta": {"link": "https://law.go.kr/1"}, "when": "20230808", "name": "법 1",
             "lic": "CC0-1.0"},
            {"body": KO + " 둘", "meta": {"link": "https://law.go.kr/2"}, "when": "2024-01-02", "name": "법 2"}]
    (d / "a.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in recs) + "\n")
    with gzip.open(d / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"body": "압축된 " + KO}, ensure_ascii=False) + "\n")
    pq.write_table(pa.table({"content": [KO, KO + "!"], "url": ["u1", "u2"], "n": [1, 2]}),
                   d / "c.parquet")
    (d / "d.tsv").write_text("id\tdocument\tlabel\n1\t" + KO + "\t0\n2\t\"인용 \"\"부호\"\"\"\t1\n", encoding="utf-8")
    ws = sources(workspace, f"""
[[sources]]
name = "laws"
kind = "jsonl"
path = "{d}"
license = "LicenseRef-KR-Public-Domain"
jurisdiction = "KR"
fields = {{ text = "body", url = "meta.link", date = "when", title = "name", license = "lic" }}

[[sources]]
name = "pq"
kind = "parquet"
path = "{d}/*.parquet"
license = "CC-BY-4.0"
jurisdiction = "KR"
fields = {{ text = "content", url = "url" }}

[[sources]]
name = "reviews"
kind = "csv"
path = "{d}/d.tsv"
license = "CC0-1.0"
jurisdiction = "KR"
fields = {{ text = "document", id = "id" }}
""")
    run(ws, show_progress=False)
    laws = docs_of(ws, "laws")
    assert [r["url"] for r in laws] == [None, "https://law.go.kr/1", "https://law.go.kr/2"]
    assert laws[1]["date"] == "2023-08-08" and laws[1]["title"] == "법 1" and laws[1]["license"] == "CC0-1.0"
    assert laws[2]["license"] == "LicenseRef-KR-Public-Domain" and laws[0]["text"].startswith("압축된")
    assert [r["text"] for r in docs_of(ws, "pq")] == [KO, KO + "!"]
    rev = docs_of(ws, "reviews")
    assert [r["url"] for r in rev] == ["1", "2"] and rev[1]["text"] == '인용 "부호"'
    assert len({r["id"] for r in docs_of(ws)}) == 7


def _warc(records: list[tuple[str, str, str, bytes]], gz: bool) -> bytes:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=gz)
    for kind, uri, ctype, body in records:
        if kind == "request":
            rec = w.create_warc_record(uri, "request", payload=io.BytesIO(b"GET / HTTP/1.1\r\n\r\n"))
        else:
            status = "404 Not Found" if "missing" in uri else "200 OK"
            h = StatusAndHeaders(status, [("Content-Type", ctype)], protocol="HTTP/1.1")
            rec = w.create_warc_record(uri, "response", payload=io.BytesIO(body), http_headers=h)
        w.write_record(rec)
    return buf.getvalue()


WARC_RECORDS = [
    ("request", "https://www.korea.kr/a", "", b""),
    ("response", "https://www.korea.kr/a", "text/html; charset=euc-kr",
     HTML.format(cs="euc-kr", title="정책", body=KO * 2).encode("euc-kr")),
    ("response", "https://www.korea.kr/logo.png", "image/png", b"\x89PNG\r\n\x1a\n\0\0"),
    ("response", "https://www.korea.kr/missing", "text/html", b"<html>not found</html>"),
    ("response", "https://www.korea.kr/b.txt", "text/plain; charset=utf-8", KO.encode()),
]


@pytest.mark.parametrize("gz", [False, True])
def test_warc_keeps_html_and_text_responses_only(workspace, tmp_path, gz):
    p = tmp_path / ("crawl.warc.gz" if gz else "crawl.warc")
    p.write_bytes(_warc(WARC_RECORDS, gz))
    ws = sources(workspace, f"""
[[sources]]
name = "cc"
kind = "warc"
path = "{p}"
license = "CC-BY-4.0"
jurisdiction = "KR"
""")
    res = run(ws, show_progress=False).sources[0]
    rows = docs_of(ws)
    assert [r["url"] for r in rows] == ["https://www.korea.kr/a", "https://www.korea.kr/b.txt"]
    assert KO in rows[0]["text"] and "로그인" not in rows[0]["text"]  # EUC-KR decoded, boilerplate gone
    assert rows[1]["text"] == KO
    assert res.rejected == 0 and res.skipped == {"WARC request record": 1, "image/png response": 1,
                                                 "HTTP 4xx response": 1}


@pytest.mark.parametrize("text, encoding, lang", [(KO, "euc_kr", "ko"), (KO, "cp949", "ko"),
                                                 (TH, "tis_620", "th"), (AR, "cp1256", "ar"),
                                                 (VI, "viscii", "vi"), (VI[:24], "viscii", "vi")])
def test_legacy_national_encodings_are_detected(workspace, tmp_path, text, encoding, lang):
    d = tmp_path / "legacy"
    d.mkdir()
    (d / "doc.txt").write_bytes(text.encode(encoding))
    (d / "page.html").write_bytes(HTML.format(cs=encoding, title="t", body=text * 3).replace("홈", "")
                                  .encode(encoding, "ignore"))
    ws = sources(workspace, f"""
[[sources]]
name = "legacy"
kind = "files"
path = "{d}"
license = "CC0-1.0"
jurisdiction = "KR"
lang = "{lang}"
""")
    run(ws, show_progress=False)
    rows = docs_of(ws)
    assert rows[0]["text"] == text and text in rows[1]["text"]


def test_forced_encoding_and_unknown_encoding(workspace, tmp_path):
    d = tmp_path / "forced"
    d.mkdir()
    (d / "a.txt").write_bytes(KO.encode("cp949"))
    ws = sources(workspace, f"""
[[sources]]
name = "f"
kind = "files"
path = "{d}"
license = "CC0-1.0"
jurisdiction = "KR"
encoding = "cp949"
""")
    run(ws, show_progress=False)
    assert docs_of(ws)[0]["text"] == KO
    cfg = ws.root / "soberan.toml"
    cfg.write_text(cfg.read_text().replace('encoding = "cp949"', 'encoding = "klingon-8"'))
    with pytest.raises(ConfigError, match=r"'f'.*encoding.*klingon-8"):
        run(Workspace.open(ws.root), show_progress=False)


def test_forbidden_license_or_jurisdiction_is_refused_before_reading(workspace, tmp_path):
    (tmp_path / "a.txt").write_text(KO)
    ws = sources(workspace, f"""
[[sources]]
name = "ok"
kind = "files"
path = "{tmp_path / 'a.txt'}"
license = "CC0-1.0"
jurisdiction = "KR"

[[sources]]
name = "nc"
kind = "files"
path = "{tmp_path / 'a.txt'}"
license = "CC-BY-NC-4.0"
jurisdiction = "KR"
""")
    with pytest.raises(PolicyError, match=r"'nc'.*CC-BY-NC-4.0.*policy\.licenses"):
        run(ws, show_progress=False)
    assert not (ws.root / "raw").exists()  # refused before any source was read
    r = CliRunner().invoke(app, ["collect", "-w", str(ws.root)])
    assert r.exit_code == 2 and "policy.licenses" in r.output
    cfg = ws.root / "soberan.toml"
    cfg.write_text(cfg.read_text().replace('license = "CC-BY-NC-4.0"\njurisdiction = "KR"',
                                           'license = "CC0-1.0"\njurisdiction = "JP"'))
    with pytest.raises(PolicyError, match=r"'nc'.*jurisdiction 'JP'.*policy\.jurisdictions"):
        run(Workspace.open(ws.root), show_progress=False)


def test_config_errors_name_the_source(workspace, tmp_path):
    with pytest.raises(ConfigError, match="needs `urls`"):
        sources(workspace, '[[sources]]\nname="c"\nkind="crawl"\nlicense="CC0-1.0"\njurisdiction="KR"\n')
    ws = workspace
    cfg = ws.root / "soberan.toml"
    base = cfg.read_text().split("\n[[sources]]")[0]
    cfg.write_text(base + f'\n[[sources]]\nname="gone"\nkind="files"\npath="{tmp_path}/nope"\n'
                          'license="CC0-1.0"\njurisdiction="KR"\n')
    r = CliRunner().invoke(app, ["collect", "-w", str(ws.root)])
    assert r.exit_code == 2 and "'gone'" in r.output and "does not exist" in r.output
    r = CliRunner().invoke(app, ["collect", "-w", str(ws.root), "--source", "other"])
    assert r.exit_code == 2 and "no source named other" in r.output


def test_demo_konlpy_corpus_via_cli(tmp_path):
    init_workspace(tmp_path / "demo", lang="ko", jurisdiction="KR", demo=True)
    r = CliRunner().invoke(app, ["collect", "-w", str(tmp_path / "demo")])
    assert r.exit_code == 0, r.output
    ws = Workspace.open(tmp_path / "demo")
    rows = docs_of(ws)
    assert len(rows) == 11 and "kolaw/constitution.txt" in {r["url"] for r in rows}
    assert all(r["license"] == "LicenseRef-KR-Public-Domain" for r in rows)
    const = next(r for r in rows if r["url"] == "kolaw/constitution.txt")
    assert "대한민국헌법" in const["text"].replace(" ", "")
    r = CliRunner().invoke(app, ["collect", "-w", str(tmp_path / "demo")])
    assert r.exit_code == 0 and "up to date" in r.output
    assert r.exit_code == 0 and len(docs_of(ws)) == 11
    assert CliRunner().invoke(app, ["ledger", "verify", "-w", str(tmp_path / "demo")]).exit_code == 0


@pytest.mark.shared_data
def test_korean_laws_jsonl_with_provenance(workspace, shared_data):
    ws = sources(workspace, f"""
[[sources]]
name = "korean_laws"
kind = "jsonl"
path = "{shared_data / 'korean_laws'}"
license = "LicenseRef-KR-Public-Domain"
jurisdiction = "KR"
lang = "ko"
fields = {{ text = "text", id = "id", url = "url", title = "title", date = "promulgation_date" }}
""")
    res = run(ws, show_progress=False).sources[0]
    assert (res.docs, res.rejected) == (325, 0)
    assert res.chars == pytest.approx(5.91e6, rel=0.01)  # SOURCE.md: 5.91 M characters
    con = ws.ledger.connect()
    row = con.execute(f"SELECT url, title, date, license FROM read_parquet('{ws.root}/raw/korean_laws/*.parquet') "
                      "WHERE url LIKE 'https://www.law.go.kr/LSW/lsInfoP.do?lsiSeq=%' LIMIT 1").fetchone()
    assert row[1] and row[2][:4].isdigit() and row[2][4] == "-" and row[3] == "LicenseRef-KR-Public-Domain"
    n = con.execute(f"SELECT count(DISTINCT id) FROM read_parquet('{ws.root}/raw/korean_laws/*.parquet')").fetchone()[0]
    assert n == 325


@pytest.mark.shared_data
def test_nsmc_tsv_slice(workspace, shared_data, tmp_path):
    lines = (shared_data / "nsmc" / "ratings_train.txt").read_text(encoding="utf-8").splitlines()[:2001]
    (tmp_path / "nsmc.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ws = sources(workspace, f"""
[[sources]]
name = "nsmc"
kind = "csv"
path = "{tmp_path / 'nsmc.tsv'}"
license = "CC0-1.0"
jurisdiction = "KR"
fields = {{ text = "document", id = "id" }}
""")
    res = run(ws, show_progress=False).sources[0]
    assert res.docs + res.rejected == 2000 and res.docs > 1990
    assert set(res.rules) <= {"empty"}
    first = next(r for r in docs_of(ws) if r["url"] == "9976970")
    assert first["text"] == "아 더빙.. 진짜 짜증나네요 목소리"  # the upstream README's first row


def test_process_pool_gives_the_same_result(workspace, tmp_path, monkeypatch):
    import soberan.collect.stage as stage

    d = tmp_path / "many"
    d.mkdir()
    for i in range(30):
        (d / f"{i:02d}.txt").write_text(f"{KO} {i}")
        (d / f"{i:02d}.html").write_text(HTML.format(cs="utf-8", title=f"t{i}", body=f"{KO} {i}"))
    (d / "bin.txt").write_bytes(b"\0\1")
    toml = f"""
[[sources]]
name = "many"
kind = "files"
path = "{d}"
license = "CC0-1.0"
jurisdiction = "KR"
"""
    ws = sources(workspace, toml)
    cfg = ws.root / "soberan.toml"
    cfg.write_text(cfg.read_text().replace("# workers = 0", "workers = 1"))
    run(Workspace.open(ws.root), show_progress=False)
    inline = ([(r["id"], r["text"], r["title"]) for r in docs_of(ws)], rejections(ws))
    monkeypatch.setattr(stage, "POOL_AFTER", 4)  # start the pool after four files
    cfg.write_text(cfg.read_text().replace("workers = 1", "workers = 2"))
    run(Workspace.open(ws.root), fresh=True, show_progress=False)
    pooled = ([(r["id"], r["text"], r["title"]) for r in docs_of(ws)], rejections(ws))
    assert pooled == inline and len(inline[0]) == 60 and len(inline[1]) == 1


def test_takedown_requests_are_honoured(workspace, tmp_path):
    from soberan.report.takedown import request_takedown

    d = tmp_path / "t"
    d.mkdir()
    (d / "a.txt").write_text(KO)
    (d / "b.txt").write_text(KO + " 비")
    ws = sources(workspace, f"""
[[sources]]
name = "t"
kind = "files"
path = "{d}"
license = "CC0-1.0"
jurisdiction = "KR"
""")
    run(ws, show_progress=False)
    request_takedown(ws, by="url", value="b.*", reason="rights holder request")
    res = run(Workspace.open(ws.root), fresh=True, show_progress=False).sources[0]
    assert [r["url"] for r in docs_of(ws)] == ["a.txt"] and res.rules == {"takedown": 1}
    request_takedown(ws, by="source", value="t", reason="whole source withdrawn")
    res = run(Workspace.open(ws.root), show_progress=False).sources[0]
    assert res.status == "taken down" and docs_of(ws) == []
