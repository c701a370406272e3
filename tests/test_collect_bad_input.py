"""Bad input never crashes collect and never disappears: each becomes a recorded rejection with
its rule, source and locator, and everything around it is still collected."""

from __future__ import annotations

import gzip
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
from test_collect import KO, WARC_RECORDS, _warc, docs_of, rejections, sources
from typer.testing import CliRunner

from soberan.cli import app
from soberan.collect import run
from soberan.workspace import Workspace


def _setting(ws: Workspace, key: str, value: int) -> Workspace:
    cfg = ws.root / "soberan.toml"
    text = cfg.read_text()
    assert f"# {key} = " in text
    cfg.write_text(text.replace(f"# {key} = ", f"{key} = {value} # was "))
    return Workspace.open(ws.root)


def _by_locator(ws: Workspace) -> dict[str, dict]:
    return {r["reason"].split(": ", 1)[0]: r for r in rejections(ws)}


def test_bad_files_are_rejected_and_the_rest_collected(workspace, tmp_path):
    d = tmp_path / "files"
    d.mkdir()
    (d / "good.txt").write_text(KO)
    (d / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)))
    (d / "noise.txt").write_bytes(random.Random(0).randbytes(4000).replace(b"\0", b"\1"))
    (d / "empty.txt").write_bytes(b"")
    (d / "blank.md").write_text("  \n\t\n")
    (d / "long.txt").write_text(KO * 40)  # ~5 KB > max_doc_bytes below
    (d / "nav.html").write_text("<html><head><script>var a=1;</script></head>"
                                "<body><img src=a.png><script>t()</script></body></html>")
    whole = gzip.compress(KO.encode() * 50)
    (d / "cut.txt.gz").write_bytes(whole[: len(whole) // 2])
    (d / "ok.txt.gz").write_bytes(gzip.compress(KO.encode()))
    ws = sources(workspace, f"""
[[sources]]
name = "web"
kind = "files"
path = "{d}"
license = "CC0-1.0"
jurisdiction = "KR"
""")
    ws = _setting(ws, "max_doc_bytes", 2000)
    res = run(ws, show_progress=False).sources[0]
    assert [r["url"] for r in docs_of(ws)] == ["good.txt", "ok.txt.gz"]
    rej = _by_locator(ws)
    assert {k: v["rule"] for k, v in rej.items()} == {
        "logo.png": "binary", "noise.txt": "undecodable", "empty.txt": "empty", "blank.md": "empty",
        "long.txt": "too_long", "nav.html": "no_main_text", "cut.txt.gz": "truncated"}
    assert all(r["source"] == "web" and r["action"] == "rejected" and r["stage"] == "collect"
               for r in rej.values())
    assert "NUL byte" in rej["logo.png"]["reason"] and "bytes > collect.max_doc_bytes" in rej["long.txt"]["reason"]
    assert res.rejected == 7 and res.rules["empty"] == 2


def test_bad_records_are_rejected_and_the_rest_collected(workspace, tmp_path):
    d = tmp_path / "rec"
    d.mkdir()
    lines = [json.dumps({"text": KO}), '{"text": "broken', json.dumps([1, 2]), json.dumps({"body": KO}),
             json.dumps({"text": 42}), json.dumps({"text": ""}), "", json.dumps({"text": "\ud800 lone"}),
             json.dumps({"text": KO, "lic": "CC-BY-NC-4.0"}), json.dumps({"text": KO + " 끝"})]
    (d / "a.jsonl").write_text("\n".join(lines) + "\n")
    whole = gzip.compress(("\n".join(json.dumps({"text": f"{KO} {i}"}) for i in range(400)) + "\n").encode())
    (d / "b.jsonl.gz").write_bytes(whole[: len(whole) * 2 // 3])
    (d / "c.jsonl").write_bytes(json.dumps({"text": "레거시"}, ensure_ascii=False).encode("euc-kr") + b"\n"
                                + b'{"text": "\xff\xfe\xfa\x00"}\n')
    ws = sources(workspace, f"""
[[sources]]
name = "rec"
kind = "jsonl"
path = "{d}"
license = "CC0-1.0"
jurisdiction = "KR"
fields = {{ text = "text", license = "lic" }}
""")
    res = run(ws, show_progress=False).sources[0]
    rej = _by_locator(ws)
    assert {k: v["rule"] for k, v in rej.items() if k.startswith("a.jsonl")} == {
        "a.jsonl:2": "bad_json", "a.jsonl:3": "bad_json", "a.jsonl:4": "missing_field",
        "a.jsonl:5": "bad_field", "a.jsonl:6": "empty", "a.jsonl:8": "invalid_unicode",
        "a.jsonl:9": "policy.licenses"}
    trunc = [v for k, v in rej.items() if k.startswith("b.jsonl.gz")]
    assert len(trunc) >= 1 and trunc[-1]["rule"] == "truncated" and "after line" in trunc[-1]["reason"]
    assert rej["c.jsonl:2"]["rule"] == "binary"
    texts = [r["text"] for r in docs_of(ws)]
    assert KO in texts and KO + " 끝" in texts and "레거시" in texts  # legacy-encoded line decoded
    b_docs = [r for r in docs_of(ws) if r["url"] is None and r["text"].startswith(KO + " ")]
    assert 100 < len(b_docs) < 400  # everything before the cut is kept
    assert res.skipped == {"blank line": 1}


def test_100mb_single_line_is_rejected_without_stalling(workspace, tmp_path):
    p = tmp_path / "big.jsonl"
    with open(p, "wb") as f:
        f.write(json.dumps({"text": "첫 줄"}, ensure_ascii=False).encode() + b"\n")
        f.write(b'{"text": "')
        chunk = b"a" * (1 << 20)
        for _ in range(100):
            f.write(chunk)
        f.write(b'"}\n')
        f.write(json.dumps({"text": "마지막 줄"}, ensure_ascii=False).encode() + b"\n")
    ws = sources(workspace, f"""
[[sources]]
name = "big"
kind = "jsonl"
path = "{p}"
license = "CC0-1.0"
jurisdiction = "KR"
""")
    run(ws, show_progress=False)
    assert [r["text"] for r in docs_of(ws)] == ["첫 줄", "마지막 줄"]
    (r,) = rejections(ws)
    assert r["rule"] == "line_too_long" and r["reason"].startswith("big.jsonl:2: line of 104857")


def test_truncated_warc_records(workspace, tmp_path):
    plain = _warc(WARC_RECORDS, gz=False)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "cut.warc").write_bytes(plain[:-60])  # inside the last record's body
    gz = _warc(WARC_RECORDS, gz=True)
    (tmp_path / "w" / "cut.warc.gz").write_bytes(gz[:-40])  # inside the last gzip member
    ws = sources(workspace, f"""
[[sources]]
name = "arch"
kind = "warc"
path = "{tmp_path / 'w'}"
license = "CC0-1.0"
jurisdiction = "KR"
""")
    run(ws, show_progress=False)
    urls = [r["url"] for r in docs_of(ws)]
    assert urls.count("https://www.korea.kr/a") == 2  # the complete records of both files
    rej = rejections(ws)
    assert [r["rule"] for r in rej] == ["truncated", "truncated"]
    assert any(r["reason"].startswith("<urn:uuid:") and "body cut short" in r["reason"]
               and "(cut.warc)" in r["reason"] for r in rej)  # the record, by its WARC-Record-ID
    assert any(r["reason"].startswith("cut.warc.gz@") and "ends inside" in r["reason"] for r in rej)


def test_bad_parquet_and_csv(workspace, tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    pq.write_table(pa.table({"text": [KO, None, "   "]}), d / "a.parquet")
    (d / "b.parquet").write_bytes(b"PAR1 this is not parquet")
    pq.write_table(pa.table({"body": [KO]}), d / "c.parquet")
    ws = sources(workspace, f"""
[[sources]]
name = "pq"
kind = "parquet"
path = "{d}"
license = "CC0-1.0"
jurisdiction = "KR"

[[sources]]
name = "csv"
kind = "csv"
path = "{tmp_path / 'x.csv'}"
license = "CC0-1.0"
jurisdiction = "KR"
""")
    (tmp_path / "x.csv").write_text(f'text,label\n"{KO}",1\ntoo,many,columns\n"{KO} 2",0\n')
    run(ws, show_progress=False)
    rej = {(r["source"], r["reason"].split(": ")[0]): r["rule"] for r in rejections(ws)}
    assert rej == {("pq", "a.parquet#2"): "empty", ("pq", "a.parquet#3"): "empty",
                   ("pq", "b.parquet"): "corrupt", ("pq", "c.parquet"): "missing_field",
                   ("csv", "x.csv:3"): "bad_row"}
    assert [r["text"] for r in docs_of(ws, "csv")] == [KO, KO + " 2"]


def test_rejections_are_queryable_from_the_cli(workspace, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "bin.txt").write_bytes(b"\0\1\2")
    (tmp_path / "d" / "ok.txt").write_text(KO)
    ws = sources(workspace, f"""
[[sources]]
name = "s"
kind = "files"
path = "{tmp_path / 'd'}"
license = "CC0-1.0"
jurisdiction = "KR"
""")
    r = CliRunner().invoke(app, ["collect", "-w", str(ws.root)])
    assert r.exit_code == 0 and "binary 1" in r.output
    r = CliRunner().invoke(app, ["ledger", "query", "-w", str(ws.root),
                                 "SELECT rule, count(*) AS n FROM decisions WHERE stage='collect' GROUP BY rule"])
    assert r.exit_code == 0 and "binary" in r.output


def test_symlink_loops_fifos_and_dangling_links_are_recorded(workspace, tmp_path):
    import os

    d = tmp_path / "tree"
    (d / "sub").mkdir(parents=True)
    (d / "good.txt").write_text(KO)
    (d / "sub" / "also.txt").write_text(KO + " 둘")
    os.symlink("b", d / "a")  # a → b → a
    os.symlink("a", d / "b")
    os.symlink("..", d / "sub" / "up")  # a folder link to its own parent
    os.symlink("nowhere.txt", d / "dangling")
    os.symlink("good.txt", d / "alias.txt")  # a link to a file is read like the file
    os.mkfifo(d / "pipe")  # opened, it would block the run forever
    ws = sources(workspace, f"""
[[sources]]
name = "tree"
kind = "files"
path = "{d}"
license = "CC0-1.0"
jurisdiction = "KR"
""")
    run(ws, show_progress=False)
    assert sorted(r["url"] for r in docs_of(ws)) == ["alias.txt", "good.txt", "sub/also.txt"]
    rej = _by_locator(ws)
    assert {k: v["rule"] for k, v in rej.items()} == {
        "a": "symlink_loop", "b": "symlink_loop", "sub/up": "symlink_loop", "dangling": "broken_symlink",
        "pipe": "not_a_file"}
    assert "FIFO" in rej["pipe"]["reason"]
    # a glob source walks the same way (glob.glob would follow sub/up round and round)
    ws2 = sources(workspace, f"""
[[sources]]
name = "globbed"
kind = "files"
path = "{d}/**/*"
license = "CC0-1.0"
jurisdiction = "KR"
""")
    from soberan.collect.files import list_inputs

    src = [s for s in ws2.config.sources if s.name == "globbed"][0]
    rels = sorted(r for _, r in list_inputs(ws2.config, src)[1])
    assert rels == ["a", "alias.txt", "b", "dangling", "good.txt", "pipe", "sub/also.txt", "sub/up"]
