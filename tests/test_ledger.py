import json

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from soberan.cli import app
from soberan.ledger import Ledger


@pytest.fixture
def ledger_with_artifacts(workspace):
    (workspace.root / "raw").mkdir()
    (workspace.root / "raw" / "a.txt").write_text("alpha")
    (workspace.root / "raw" / "b.txt").write_text("beta")
    led = workspace.ledger
    led.record_source(name="s", kind="files", location="/x", license="CC0-1.0", jurisdiction="KR")
    a = led.record_artifact(stage="collect", kind="raw", path="raw/a.txt")
    led.record_artifact(stage="collect", kind="raw", path="raw/b.txt", inputs=[a["hash"]])
    return workspace


def test_chain_verifies(ledger_with_artifacts):
    assert ledger_with_artifacts.ledger.verify() == []
    r = CliRunner().invoke(app, ["ledger", "verify", "-w", str(ledger_with_artifacts.root)])
    assert r.exit_code == 0, r.output


def test_edited_record_is_named(ledger_with_artifacts):
    led = ledger_with_artifacts.ledger
    lines = led.records_path.read_text().splitlines()
    rec = json.loads(lines[2])
    rec["license"] = "MIT"
    lines[2] = json.dumps(rec)
    led.records_path.write_text("\n".join(lines) + "\n")
    problems = [str(p) for p in led.verify()]
    assert any(p.startswith("record 2:") and "changed" in p for p in problems), problems
    r = CliRunner().invoke(app, ["ledger", "verify", "-w", str(ledger_with_artifacts.root)])
    assert r.exit_code == 1 and "record 2" in r.output


def test_removed_records_are_detected(ledger_with_artifacts):
    led = ledger_with_artifacts.ledger
    lines = led.records_path.read_text().splitlines()
    led.records_path.write_text("\n".join(lines[:1] + lines[2:]) + "\n")  # drop one in the middle
    assert any("record 2" in str(p) and "removed" in str(p) for p in led.verify())
    led.records_path.write_text("\n".join(lines[:-1]) + "\n")  # drop the last one
    assert any("HEAD" in str(p) for p in led.verify())


def test_changed_or_removed_artifact_file(ledger_with_artifacts):
    ws = ledger_with_artifacts
    (ws.root / "raw" / "a.txt").write_text("tampered")
    (ws.root / "raw" / "b.txt").unlink()
    problems = [str(p) for p in ws.ledger.verify()]
    assert any("raw/a.txt" in p and "changed" in p for p in problems)
    assert any("raw/b.txt" in p and "removed" in p for p in problems)


def test_newer_artifact_record_supersedes_and_retire(ledger_with_artifacts):
    ws = ledger_with_artifacts
    (ws.root / "raw" / "a.txt").write_text("rewritten by a rerun")
    ws.ledger.record_artifact(stage="collect", kind="raw", path="raw/a.txt")
    assert ws.ledger.verify() == []
    (ws.root / "raw" / "b.txt").unlink()
    ws.ledger.retire("raw/b.txt", reason="take-down")
    assert ws.ledger.verify() == []


def test_decisions_are_batched_idempotent_and_queryable(workspace):
    led = workspace.ledger
    t = pa.table({"doc_id": ["d1", "d2"], "step": ["quality", "quality"],
                  "action": ["dropped", "kept"], "rule": ["gopher_min_words", None],
                  "reason": ["12 words < 50", None]})
    led.write_decisions("curate", "shard-0", t)
    led.write_decisions("curate", "shard-0", t)  # a resumed run rewrites, never doubles
    # what a writer killed mid-write leaves behind is never read as a decision batch
    from soberan.documents import temp_path

    (temp_path(led.decisions_dir / "curate" / "shard-1.parquet")).write_bytes(b"PAR1")
    con = led.connect()
    assert con.execute("SELECT count(*) FROM decisions").fetchone()[0] == 2
    assert con.execute("SELECT reason FROM decisions WHERE doc_id='d1'").fetchone()[0] == "12 words < 50"


def test_ledger_on_empty_folder(tmp_path):
    assert "no ledger" in str(Ledger(tmp_path).verify()[0])
