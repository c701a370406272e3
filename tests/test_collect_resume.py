"""Resume: a collect killed at any moment and run again equals an uninterrupted one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_collect import KO, docs_of, rejections, sources

from soberan.collect import run
from soberan.workspace import Workspace, init_workspace


def kill_mid_run(ws_root: Path, source: str, min_commits: int, timeout: float = 120) -> dict:
    """Run `soberan collect` in a subprocess and SIGKILL it (and anything it started) once
    `source` has committed `min_commits` stretches but not finished. Returns that state."""
    state = ws_root / "raw" / "_state" / f"{source}.json"
    proc = subprocess.Popen([sys.executable, "-c", "from soberan.cli import app; app()", "collect",
                             "-w", str(ws_root)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if state.exists():
                st = json.loads(state.read_text())
                if st["commits"] >= min_commits and not st["complete"]:
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.003)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    st = json.loads(state.read_text())
    assert not st["complete"], "the run finished before it could be killed; give it more input"
    return st


def outcome(ws: Workspace) -> tuple[list[str], list[tuple[str, str]], dict]:
    ids = sorted(r["id"] for r in docs_of(ws))
    decisions = sorted((r["doc_id"], r["rule"]) for r in rejections(ws))
    counts = {}
    for p in sorted((ws.root / "raw" / "_state").glob("*.json")):
        c = json.loads(p.read_text())["counts"]
        counts[p.stem] = (c["docs"], c["rejected"], c["rules"])
    return ids, decisions, counts


def _records(tmp_path: Path, n: int) -> Path:
    d = tmp_path / "data"
    d.mkdir(exist_ok=True)
    with open(d / "big.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            good = json.dumps({"text": f"{KO} {i}"}, ensure_ascii=False) + "\n"
            f.write('{"text": "broken\n' if i % 97 == 13 else good)
    (d / "notes").mkdir(exist_ok=True)
    for i in range(3):
        (d / "notes" / f"{i}.txt").write_text(f"{KO} 메모 {i}")
    return d


SOURCES = """
[[sources]]
name = "big"
kind = "jsonl"
path = "{d}/big.jsonl"
license = "CC0-1.0"
jurisdiction = "KR"

[[sources]]
name = "notes"
kind = "files"
path = "{d}/notes"
license = "CC0-1.0"
jurisdiction = "KR"
"""


def _ws(tmp_path: Path, name: str, d: Path, shard_docs: int = 100) -> Workspace:
    init_workspace(tmp_path / name, lang="ko", jurisdiction="KR", name=name)
    ws = sources(Workspace(tmp_path / name), SOURCES.format(d=d))
    cfg = ws.root / "soberan.toml"
    cfg.write_text(cfg.read_text().replace("# shard_docs = 10000", f"shard_docs = {shard_docs}"))
    return Workspace.open(ws.root)


@pytest.mark.slow  # a collect process killed twice, then resumed
def test_killed_twice_then_resumed_equals_uninterrupted(tmp_path):
    n = 6_000
    d = _records(tmp_path, n)
    killed = _ws(tmp_path, "killed", d)
    first = kill_mid_run(killed.root, "big", min_commits=3)
    second = kill_mid_run(killed.root, "big", min_commits=first["commits"] + 15)  # the resumed run, killed again
    assert second["token"]["n"] > first["token"]["n"]
    summary = run(Workspace.open(killed.root), show_progress=False)
    assert [s.status for s in summary.sources] == ["resumed", "collected"]

    clean = _ws(tmp_path, "clean", d)
    run(clean, show_progress=False)
    got, want = outcome(Workspace.open(killed.root)), outcome(clean)
    assert got == want
    ids, decisions, counts = got
    bad = len([i for i in range(n) if i % 97 == 13])
    assert len(ids) == len(set(ids)) == n - bad + 3  # no lost or doubled documents
    assert len(decisions) == len(set(decisions)) == bad and counts["big"][2] == {"bad_json": bad}
    assert Workspace.open(killed.root).ledger.verify() == []


class Killed(BaseException):
    """Stands for SIGKILL at one exact point: nothing after it runs, no handler catches it."""


def test_kill_between_shard_and_state_leaves_nothing_doubled(tmp_path, monkeypatch):
    """The narrowest window: shard k and decision batch k are on disk, the state file still says
    k is not committed. The next run deletes them and writes them again."""
    import soberan.collect.shards as shards

    d = _records(tmp_path, 2_000)
    clean = _ws(tmp_path, "clean", d)
    run(clean, show_progress=False)
    ws = _ws(tmp_path, "w", d)
    real, calls = shards.save_state, []

    def dies_on_fourth(*args):
        calls.append(1)
        if len(calls) == 4:
            raise Killed
        real(*args)

    monkeypatch.setattr(shards, "save_state", dies_on_fourth)
    try:
        run(ws, show_progress=False)
    except Killed:
        pass
    monkeypatch.setattr(shards, "save_state", real)
    st = json.loads((ws.root / "raw" / "_state" / "big.json").read_text())
    assert st["commits"] == 3 and (ws.root / "raw" / "big" / "part-000003.parquet").exists()
    # A stray shard further on, as an older killed run with other settings could leave.
    shutil.copy(ws.root / "raw" / "big" / "part-000000.parquet", ws.root / "raw" / "big" / "part-000009.parquet")
    assert run(Workspace.open(ws.root), show_progress=False).sources[0].status == "resumed"
    assert outcome(Workspace.open(ws.root)) == outcome(clean)


def test_rerun_is_up_to_date_changed_input_restarts_fresh_discards(tmp_path):
    d = _records(tmp_path, 300)
    ws = _ws(tmp_path, "w", d)
    run(ws, show_progress=False)
    before = outcome(ws)
    again = run(Workspace.open(ws.root), show_progress=False)
    assert [s.status for s in again.sources] == ["up to date", "up to date"] and outcome(ws) == before
    (d / "notes" / "3.txt").write_text(f"{KO} 새 메모")
    changed = run(Workspace.open(ws.root), show_progress=False)
    assert [s.status for s in changed.sources] == ["up to date", "collected"]
    assert len(outcome(ws)[0]) == len(before[0]) + 1
    assert any(e.get("event") == "collect.restart" and e["source"] == "notes"
               for e in ws.ledger.records("event"))
    fresh = run(Workspace.open(ws.root), sources=["big"], fresh=True, show_progress=False)
    assert [s.status for s in fresh.sources] == ["collected"] and outcome(ws)[1] == before[1]
    # A source taken out of the config leaves raw/ too.
    cfg = ws.root / "soberan.toml"
    cfg.write_text(cfg.read_text().split('[[sources]]\nname = "notes"')[0])
    run(Workspace.open(ws.root), show_progress=False)
    assert not (ws.root / "raw" / "notes").exists() and {r["source"] for r in docs_of(ws)} == {"big"}
    assert ws.ledger.verify() == []
