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


# --- anchoring: what someone who can write the workspace cannot hide ---------------------------

def _chain(workspace, n=12):
    led = workspace.ledger
    for i in range(n):
        led.record_event("step", i=i)
    return led


def _rehash_from(led, start: int, lines: list[str]) -> None:
    """What a careful attacker does: fix every later record's `prev` and `hash`, and HEAD."""
    from soberan.ledger import record_hash

    prev = json.loads(lines[start - 1])["hash"] if start else "0" * 64
    for i in range(start, len(lines)):
        rec = json.loads(lines[i])
        rec["prev"] = prev
        rec["hash"] = record_hash(rec)
        lines[i] = json.dumps(rec, ensure_ascii=False, sort_keys=True)
        prev = rec["hash"]
    led.records_path.write_text("\n".join(lines) + "\n")
    last = json.loads(lines[-1])
    led.head_path.write_text(f"{last['seq']} {last['hash']}\n")


def test_cut_with_rewritten_head_fails_verify(workspace):
    led = _chain(workspace)
    lines = led.records_path.read_text().splitlines()
    _rehash_from(led, len(lines) - 5, lines[:-5])  # cut 5 and rewrite HEAD to match
    problems = [str(p) for p in led.verify()]
    assert any("cut" in p for p in problems), problems
    r = CliRunner().invoke(app, ["ledger", "verify", "-w", str(workspace.root)])
    assert r.exit_code == 1 and "cut" in r.output


def test_edit_with_every_later_record_rehashed_fails_verify(workspace):
    led = _chain(workspace)
    lines = led.records_path.read_text().splitlines()
    rec = json.loads(lines[4])
    rec["i"] = 999
    lines[4] = json.dumps(rec)
    _rehash_from(led, 4, lines)
    problems = [str(p) for p in led.verify()]
    assert any(p.startswith("record 4:") and "rewritten" in p for p in problems), problems


def test_deleting_the_chain_and_head_fails_verify(workspace):
    led = _chain(workspace)
    led.records_path.unlink()
    led.head_path.unlink()
    problems = [str(p) for p in led.verify()]
    assert len(problems) == 1 and "deleted" in problems[0], problems


def test_anchor_lives_outside_the_workspace(workspace):
    led = _chain(workspace, 2)
    anchor = led.anchored()
    assert anchor is not None and workspace.root.resolve() not in anchor.resolve().parents
    assert anchor.read_text().splitlines()[-1] == led.head_path.read_text().strip()


def test_torn_last_line_is_kept_aside_recorded_and_not_fatal(workspace):
    led = _chain(workspace)
    size = led.records_path.stat().st_size
    with open(led.records_path, "r+b") as f:  # `truncate -s -40`: a write that never finished
        f.truncate(size - 40)
    assert len(led.records()) == 12  # the torn record is skipped, not a JSONDecodeError
    assert led.verify() == []  # recovered on the way, and the chain checks out against the anchor
    torn = led.torn_events()
    assert len(torn) == 1 and torn[0]["replaces"]["seq"] == 12 and torn[0]["torn_bytes"] > 0
    aside = led.records_path.with_name(torn[0]["kept_aside"])
    assert aside.exists() and len(aside.read_bytes()) == torn[0]["torn_bytes"]
    led.record_event("after")
    assert led.verify() == [] and led.records()[-1]["event"] == "after"
    r = CliRunner().invoke(app, ["ledger", "verify", "-w", str(workspace.root)])
    assert r.exit_code == 0 and "torn" in r.output and torn[0]["kept_aside"] in r.output, r.output


def _decisions(workspace):
    led = workspace.ledger
    t = pa.table({"doc_id": ["d1", "d2", "d3"], "step": ["quality"] * 3,
                  "action": ["dropped", "kept", "dropped"], "rule": ["r", None, "r"],
                  "reason": ["short", None, "short"]})
    path = led.write_decisions("curate", "shard-0", t)
    assert led.verify() == []
    return led, path


def test_deleting_a_decision_row_fails_verify(workspace):
    import pyarrow.parquet as pq

    led, path = _decisions(workspace)
    t = pq.read_table(path)
    pq.write_table(t.slice(1), path)
    assert any("decisions file" in str(p) and "changed" in str(p) for p in led.verify())


def test_editing_a_decision_reason_fails_verify(workspace):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    led, path = _decisions(workspace)
    t = pq.read_table(path)
    i = t.schema.get_field_index("reason")
    pq.write_table(t.set_column(i, "reason", pc.replace_substring(t["reason"], "short", "duplicate")), path)
    assert any("changed" in str(p) for p in led.verify())


def test_deleting_a_decisions_file_fails_verify_unless_retired(workspace):
    led, path = _decisions(workspace)
    path.unlink()
    problems = [str(p) for p in led.verify()]
    assert any("shard-0.parquet" in p and "removed" in p for p in problems), problems
    r = CliRunner().invoke(app, ["ledger", "verify", "-w", str(workspace.root)])
    assert r.exit_code == 1
    led2, path2 = _decisions(workspace)  # rewritten by a rerun: the newer record rules
    led2.remove_decisions([path2.parent], "reset")  # removed on purpose: retired first
    assert led2.verify() == []


def test_decisions_files_from_before_hashing_are_adopted_once(workspace):
    """A workspace whose older decisions files have no record: the first new write records them
    (marked adopted), so verify passes; a file edited after that is still named."""
    import pyarrow.parquet as pq

    from soberan.ledger import DECISION_SCHEMA, conform

    led = workspace.ledger
    old = led.decisions_dir / "collect" / "src.000000.parquet"
    old.parent.mkdir(parents=True)
    pq.write_table(conform(pa.table({"doc_id": ["x"], "step": ["read"], "action": ["rejected"]}),
                           DECISION_SCHEMA, stage="collect"), old)  # as an older soberan wrote it
    _decisions(workspace)  # the first hashed write (asserts verify passes)
    adopted = [r for r in led.records("decisions") if r.get("adopted")]
    assert [r["path"] for r in adopted] == ["ledger/decisions/collect/src.000000.parquet"]
    (led.decisions_dir / ".in-chain").unlink()  # deleting the marker adopts nothing already known
    pq.write_table(pq.read_table(old).slice(0, 0), old)
    led.write_decisions("curate", "shard-1", pa.table(
        {"doc_id": ["d9"], "step": ["quality"], "action": ["kept"]}))
    assert len([r for r in led.records("decisions") if r.get("adopted")]) == 1
    assert any("src.000000.parquet" in str(p) and "changed" in str(p) for p in led.verify())


def test_an_unwritable_anchor_folder_warns_once_and_never_stops_a_build(workspace, monkeypatch, tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the anchor folder should be")
    monkeypatch.setenv("SOBERAN_ANCHOR_DIR", str(blocker / "anchors"))
    led = _chain(workspace, 3)
    err = capsys.readouterr().err
    assert err.count("cannot anchor") == 1 and "SOBERAN_ANCHOR_DIR" in err
    assert led.verify() == [] and len(led.records()) == 1 + 3  # init + 3: the chain is whole


def test_a_kill_between_the_chain_and_head_does_not_repeat_a_number(tmp_path):
    """SIGKILL after a record reached the chain but before HEAD moved: the next append continues
    from the chain, so verify finds no repeated record."""
    from soberan.ledger import Ledger

    led = Ledger(tmp_path)
    led.record_event("one")
    stale = led.head_path.read_text()
    led.record_event("two")
    led.head_path.write_text(stale)  # as the kill leaves it
    led.record_event("three")
    assert [r["seq"] for r in led.records()] == [0, 1, 2]
    assert led.verify() == []


def test_a_new_chain_where_an_old_one_stood_verifies_and_is_noted(tmp_path):
    """`rm -rf ws && soberan init ws` (what `make demo` does each time): the new chain verifies;
    the earlier chain's anchor is kept and named in the notes."""
    import shutil

    from soberan.ledger import Ledger

    Ledger(tmp_path / "ws").record_event("one")
    Ledger(tmp_path / "ws").record_event("two")
    shutil.rmtree(tmp_path / "ws")
    led = Ledger(tmp_path / "ws")
    led.record_event("fresh")
    assert led.verify() == []
    assert any("earlier chain at this path was replaced" in n for n in led.notes())
