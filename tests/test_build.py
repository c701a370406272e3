"""`soberan build`: order, skipping by content hash, --from/--only, resume, rebuild of changed or
corrupt output, air-gap environment. Stages are the contract-faithful fakes of test_build_fakes."""

from __future__ import annotations

import json
import types

import pytest
from test_build_fakes import FAKES, fake_runner, make_fake_workspace, offline_env  # noqa: F401 (autouse)

from soberan.build import BuildError, run, stage_status
from soberan.documents import read_corpus
from soberan.stages import build_order


@pytest.fixture
def ws(tmp_path):
    return make_fake_workspace(tmp_path / "w")


def actions(summary) -> dict[str, str]:
    return {r.stage: r.action for r in summary.stages}


def test_first_build_runs_every_stage_in_order_then_skips_them(ws):
    order = []

    def spy(w, stage):
        order.append(stage)
        return fake_runner(w, stage)

    first = run(ws, runner=spy)
    assert order == list(build_order())
    assert all(r.action == "ran" and r.artifact for r in first.stages)
    second = run(ws, runner=spy)
    assert order == list(build_order())  # nothing ran again
    assert set(actions(second).values()) == {"skipped"}
    assert ws.ledger.verify() == []


def test_build_is_air_gapped(ws):
    import os

    run(ws, runner=fake_runner, only="collect")
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert os.environ["HF_DATASETS_OFFLINE"] == "1" and os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
    assert os.environ["DO_NOT_TRACK"] == "1"


def test_config_change_reruns_the_stage_and_identical_output_spares_downstream(ws):
    run(ws, runner=fake_runner)
    cfg = ws.root / "soberan.toml"
    cfg.write_text(cfg.read_text().replace("[curate]\n", "[curate]\nbatch_size = 7\n", 1))
    ws.__dict__.pop("config", None)  # reread soberan.toml
    st = stage_status(ws, "curate")
    assert not st.current and any("config changed" in r for r in st.reasons)
    s = run(ws, runner=fake_runner)
    assert actions(s) == {"collect": "skipped", "curate": "rebuilt", "tokenizer": "skipped",
                          "train": "skipped", "evaluate": "skipped"}
    assert set(actions(run(ws, runner=fake_runner)).values()) == {"skipped"}


def test_changed_source_file_reruns_collect_and_everything_downstream(ws):
    run(ws, runner=fake_runner)
    with open(ws.root / "data" / "laws.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"url": "https://law.example.kr/g", "text": "감사원은 세입·세출의 결산을 매년 검사한다."},
                           ensure_ascii=False) + "\n")
    st = stage_status(ws, "collect")
    assert st.reasons == ["source files or settings changed: laws"] and not st.rebuild
    s = run(ws, runner=fake_runner)
    assert actions(s)["collect"] == "ran"  # collect redoes the changed source by itself
    assert [r.stage for r in s.stages if r.action == "rebuilt"] == list(build_order()[1:])
    reasons = {r.stage: r.reason for r in s.stages}
    assert "input raw (collect/corpus) changed" in reasons["curate"]
    assert ws.ledger.verify() == []


def test_only_and_from(ws):
    run(ws, runner=fake_runner)
    only = run(ws, runner=fake_runner, only="tokenizer")
    assert [r.stage for r in only.stages] == ["tokenizer"] and only.stages[0].action == "ran"
    frm = run(ws, runner=fake_runner, from_stage="train")
    assert [r.stage for r in frm.stages] == ["train", "evaluate"]
    assert all(r.action == "ran" for r in frm.stages)
    with pytest.raises(BuildError, match="not a stage"):
        run(ws, runner=fake_runner, only="serve")
    with pytest.raises(BuildError, match="not both"):
        run(ws, runner=fake_runner, only="train", from_stage="curate")


def test_changed_or_removed_output_is_rebuilt(ws):
    run(ws, runner=fake_runner)
    (ws.root / "eval" / "results.json").write_text("{}")
    assert ws.ledger.verify() != []
    s = run(ws, runner=fake_runner)
    assert actions(s)["evaluate"] == "rebuilt" and "was changed" in s.stages[-1].reason
    assert ws.ledger.verify() == []
    import shutil

    shutil.rmtree(ws.root / "tokenizer" / "final")
    s = run(ws, runner=fake_runner)
    assert actions(s)["tokenizer"] == "rebuilt"
    assert ws.ledger.verify() == []


def test_killed_build_resumes_the_unfinished_stage_without_losing_its_work(ws):
    seen = {}

    def killed(w, stage):
        if stage == "train":
            part = w.stage_dir("train") / "checkpoints" / "step-1"
            part.mkdir(parents=True)
            (part / "state.txt").write_text("half done")
            raise KeyboardInterrupt
        return fake_runner(w, stage)

    with pytest.raises(KeyboardInterrupt):
        run(ws, runner=killed)

    def resume(w, stage):
        seen[stage] = (w.stage_dir("train") / "checkpoints" / "step-1" / "state.txt").exists()
        return fake_runner(w, stage)

    s = run(ws, runner=resume)
    assert actions(s) == {"collect": "skipped", "curate": "skipped", "tokenizer": "skipped",
                          "train": "resumed", "evaluate": "ran"}
    assert seen["train"] is True  # the partial checkpoint was there for the stage to resume from


def test_resume_with_a_changed_config_starts_clean(ws):
    run(ws, runner=fake_runner)
    cfg = ws.root / "soberan.toml"

    def killed(w, stage):
        w.stage_dir(stage).mkdir(parents=True, exist_ok=True)
        (w.stage_dir(stage) / "partial").write_text("old config's work")
        raise KeyboardInterrupt

    cfg.write_text(cfg.read_text().replace("[curate]\n", "[curate]\nbatch_size = 7\n", 1))
    ws.__dict__.pop("config", None)
    with pytest.raises(KeyboardInterrupt):
        run(ws, runner=killed, only="curate")
    # Resuming with the same config keeps the partial work ...
    assert not stage_status(ws, "curate").current
    cfg.write_text(cfg.read_text().replace("batch_size = 7", "batch_size = 9"))
    ws.__dict__.pop("config", None)
    # ... a different config does not.
    s = run(ws, runner=fake_runner, only="curate")
    assert s.stages[0].action == "rebuilt" and not (ws.stage_dir("curate") / "partial").exists()


def test_a_stage_that_records_nothing_stops_the_build(ws):
    def silent(w, stage):
        if stage == "curate":
            return None
        return fake_runner(w, stage)

    with pytest.raises(BuildError, match="curate finished without recording"):
        run(ws, runner=silent)


def test_dry_run_says_what_would_run_and_runs_nothing(ws):
    run(ws, runner=fake_runner, only="collect")
    n = len(ws.ledger.records())
    s = run(ws, runner=lambda w, st: pytest.fail("dry run ran a stage"), dry_run=True)
    assert actions(s)["collect"] == "skipped"
    assert [r.stage for r in s.stages if r.action != "skipped"] == ["curate", "tokenizer", "train", "evaluate"]
    assert len(ws.ledger.records()) == n


def test_build_cli(ws, monkeypatch):
    from typer.testing import CliRunner

    import soberan.build as build
    from soberan.cli import app

    monkeypatch.setattr(build, "stage_module", lambda s: types.SimpleNamespace(run=FAKES[s]))
    r = CliRunner().invoke(app, ["build", "-w", str(ws.root)])
    assert r.exit_code == 0, r.output
    assert "build done" in r.output and "5 stage(s) ran" in r.output
    r = CliRunner().invoke(app, ["build", "-w", str(ws.root), "--only", "nope"])
    assert r.exit_code == 2 and "not a stage" in r.output
    r = CliRunner().invoke(app, ["build", "-w", str(ws.root), "--dry-run"])
    assert r.exit_code == 0 and "skipped" in r.output


def test_a_new_source_is_collected_without_recollecting_the_others(ws):
    run(ws, runner=fake_runner)
    before = {p: p.stat().st_mtime_ns for p in (ws.root / "raw" / "laws").rglob("*.parquet")}
    (ws.root / "data" / "more.jsonl").write_text(json.dumps(
        {"url": "https://more.example.kr/1", "text": "국민의 자유와 권리는 헌법에 열거되지 아니한 이유로 경시되지 아니한다."},
        ensure_ascii=False) + "\n")
    cfg = ws.root / "soberan.toml"
    cfg.write_text(cfg.read_text() + '\n[[sources]]\nname = "more"\nkind = "jsonl"\npath = "data/more.jsonl"\n'
                   'license = "CC0-1.0"\njurisdiction = "KR"\nlang = "ko"\nfields = { text = "text", url = "url" }\n')
    ws.__dict__.pop("config", None)
    s = run(ws, runner=fake_runner)
    assert actions(s)["collect"] == "ran" and actions(s)["curate"] == "rebuilt"
    assert {p: p.stat().st_mtime_ns for p in (ws.root / "raw" / "laws").rglob("*.parquet")} == before
    assert "more" in read_corpus(ws.stage_dir("curate"), ["source"]).column("source").to_pylist()


def test_hash_cache_reads_a_file_again_only_when_it_changed(tmp_path, monkeypatch):
    """build decides what changed by size, mtime and inode (as git does) instead of reading
    multi-GB checkpoints each time; a file written in the same clock tick as its hash is not
    trusted; the audit (`ledger verify`) reads every byte whatever the cache says."""
    import os

    import soberan.documents as d

    reads: list[str] = []
    real = d.file_sha256
    monkeypatch.setattr(d, "file_sha256", lambda p, *a: reads.append(p.name) or real(p, *a))
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"a" * 1000)
    (folder / "b.bin").write_bytes(b"b" * 1000)
    old = 1_700_000_000
    for f in folder.iterdir():
        os.utime(f, (old, old))
    cache = d.HashCache(tmp_path / "hashes.json")
    first = d.tree_sha256(folder, cache)
    assert first == d.tree_sha256(folder) and sorted(reads) == ["a.bin", "a.bin", "b.bin", "b.bin"]
    cache.save()
    reads.clear()
    again = d.HashCache(tmp_path / "hashes.json")  # from disk, as the next build sees it
    assert d.tree_sha256(folder, again) == first and reads == []
    (folder / "b.bin").write_bytes(b"c" * 1001)  # changed: size and mtime differ
    assert d.tree_sha256(folder, again) != first and reads == ["b.bin"]
    reads.clear()
    assert d.tree_sha256(folder, again) != first and reads == ["b.bin"]  # just written: racy, re-read
    fresh = d.HashCache(tmp_path / "other.json")
    (folder / "new.bin").write_bytes(b"n")
    d.tree_sha256(folder, fresh)
    reads.clear()
    d.tree_sha256(folder, fresh)
    assert reads == ["b.bin", "new.bin"]  # modified within RACY_NS of being hashed


def test_freshness_is_the_one_check_and_explains_itself(ws):
    """What build, curate and tokenizer ask: the same answer, with its reasons; a stage run on
    its own (takedowns=False) leaves take-down marks to the build."""
    from soberan.freshness import freshness
    from soberan.report.takedown import request_takedown

    run(ws, runner=fake_runner)
    assert all(freshness(ws, s).current for s in build_order())
    tok = freshness(ws, "tokenizer", meta={"version": "0"})  # what the tokenizer checks beside
    assert tok.reasons == ["version changed since it was made"] and not tok.rebuild
    assert freshness(ws, "tokenizer", config_hash="other").reasons == ["config changed ([tokenizer], [heldout])"]

    request_takedown(ws, by="url", value="https://law.example.kr/a", reason="rights holder")
    f = freshness(ws, "curate")
    assert f.rebuild and f.reasons and all(r.startswith("stale: ") for r in f.reasons)
    assert freshness(ws, "curate", takedowns=False).current
    assert stage_status(ws, "curate").reasons == f.reasons

    (ws.root / "curated" / "stats.json").write_text("{}")
    f = freshness(ws, "curate", takedowns=False)
    assert f.reasons == ["curated was changed since it was recorded"] and f.rebuild
