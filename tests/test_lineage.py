"""`soberan lineage DOC_ID` on collected documents and on rejected inputs."""

from __future__ import annotations

from test_collect import KO, docs_of, rejections, sources
from typer.testing import CliRunner

from soberan.cli import app
from soberan.collect import run
from soberan.lineage import lineage


def test_lineage_of_a_collected_doc_and_of_a_rejection(workspace, tmp_path):
    d = tmp_path / "laws"
    d.mkdir()
    (d / "헌법.txt").write_text(KO)
    (d / "scan.txt").write_bytes(b"%PDF-1.7\n\0\0binary")
    ws = sources(workspace, f"""
[[sources]]
name = "laws"
kind = "files"
path = "{d}"
license = "LicenseRef-KR-Public-Domain"
jurisdiction = "KR"
""")
    run(ws, show_progress=False)
    (doc,) = docs_of(ws)
    lin = lineage(ws, doc["id"])
    assert lin.origin["source"] == "laws" and lin.origin["license"] == "LicenseRef-KR-Public-Domain"
    assert lin.origin["url"] == "헌법.txt" and lin.source["location"] == d.as_posix()
    r = CliRunner().invoke(app, ["lineage", doc["id"], "-w", str(ws.root)])
    assert r.exit_code == 0, r.output
    assert "laws" in r.output and "LicenseRef-KR-Public-Domain" in r.output and "KR" in r.output

    (rej,) = rejections(ws)
    lin = lineage(ws, rej["doc_id"])
    assert lin.origin is None and [(x["stage"], x["action"], x["rule"]) for x in lin.decisions] == \
        [("collect", "rejected", "binary")]
    assert lin.decisions[0]["reason"].startswith("scan.txt: binary content")
    r = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["lineage", rej["doc_id"], "-w", str(ws.root)])
    assert r.exit_code == 0 and "binary" in r.output and "scan.txt" in r.output
    r = CliRunner().invoke(app, ["lineage", "0" * 32, "-w", str(ws.root)])
    assert r.exit_code == 1 and "no document" in r.output
