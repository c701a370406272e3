"""`soberan curate` as a person runs it: the CLI, a kill and resume, the Ray executor, a language
pack added by a test, and the demo's Korean corpus with every drop explained."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import duckdb
import pytest
from test_curate_fixtures import make_workspace, write_raw
from typer.testing import CliRunner

from soberan.documents import read_corpus

S = ("pemerintah daerah masyarakat desa sekolah rumah pasar jalan kota provinsi anak petani nelayan "
     "guru dokter pelajar keluarga kantor pelabuhan bandara").split()
V = "membangun memperbaiki mendukung membantu mengelola menyediakan meningkatkan".split()
A = "baru besar kecil bersih sehat murah penting".split()


def indonesian_corpus(n: int, seed: int = 0) -> list[dict]:
    """Indonesian documents (the `id` pack segments with a regex: fast), with exact copies,
    near-duplicates and a phone number planted."""
    rng = random.Random(seed)

    def sent():
        return f"{rng.choice(S).capitalize()} {rng.choice(V)} {rng.choice(S)} yang {rng.choice(A)} di {rng.choice(S)}."

    docs = [{"text": "\n".join(" ".join(sent() for _ in range(4)) for _ in range(4))} for _ in range(n)]
    for i in range(0, n, 10):
        docs.append({"text": docs[i]["text"]})
        w = docs[i + 1]["text"].split(" ")
        w[5] = "berubah"
        docs.append({"text": " ".join(w)})
    docs[3]["text"] += "\nHubungi kami di 0812-3456-7890 atau budi@contoh.co.id."
    return docs


INDONESIAN = ('steps = ["normalize", "langid", "pii", "exact_dedup", "fuzzy_dedup", "decontam"]\n'
              "[curate.langid]\nmin_score = 0.5\n")


def _snapshot(ws) -> tuple[list, list, dict]:
    """What a run produced, without timestamps: the curated rows, the decisions, the stats. Not
    the stats' `signals` counts: they say how much work a run did, and a run resumed after a kill
    finds the signals the killed run stored for a shard it had not yet marked done."""
    rows = sorted(read_corpus(ws.root / "curated").to_pylist(), key=lambda r: r["id"])
    dec = sorted(duckdb.sql(f"SELECT doc_id, step, action, rule, reason, source FROM "
                            f"read_parquet('{ws.ledger.decisions_glob()}')").fetchall(),
                 key=lambda r: tuple(map(str, r)))
    stats = json.loads((ws.root / "curated" / "stats.json").read_text())
    stats.pop("signals")
    return rows, dec, stats


def _differences(a, b, path: str = "") -> list[str]:
    """Where two snapshots differ, as paths (pytest truncates the nested comparison)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in _differences(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {str(a)[:120]} != {str(b)[:120]}"]


def test_cli_runs_and_reports(tmp_path):
    from soberan.cli import app

    ws = make_workspace(tmp_path / "ws", lang="id", jurisdiction="ID", curate_toml=INDONESIAN)
    runner = CliRunner()
    res = runner.invoke(app, ["curate", "-w", str(ws.root)])
    assert res.exit_code == 2 and "soberan collect" in res.output  # nothing collected yet
    write_raw(ws, indonesian_corpus(30), shard_docs=10)
    res = runner.invoke(app, ["curate", "-w", str(ws.root), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "exact_dedup" in res.output and "curated 36 →" in res.output
    res = runner.invoke(app, ["curate", "-w", str(ws.root)])
    assert res.exit_code == 0 and "up to date" in res.output
    out = read_corpus(ws.root / "curated")
    assert any("<PHONE>" in t or "<ID_PHONE>" in t for t in out.column("text").to_pylist())
    assert not any("0812-3456-7890" in t for t in out.column("text").to_pylist())
    res = runner.invoke(app, ["curate", "-w", str(ws.root), "--executor", "spark"])
    assert res.exit_code == 2


def test_bad_config_is_an_error_before_work(tmp_path):
    from soberan.cli import app

    ws = make_workspace(tmp_path / "ws", lang="id", jurisdiction="ID",
                        curate_toml='[curate.quality]\nfilters = ["gopher_quality", "made_up"]\n')
    write_raw(ws, indonesian_corpus(5))
    res = CliRunner().invoke(app, ["curate", "-w", str(ws.root)])
    assert res.exit_code == 2 and "made_up" in res.output
    assert not (ws.root / "curated").exists()


def _reference_and_copy(tmp_path, seed: int):
    """A workspace curated without interruption, and an untouched copy of it to kill runs in."""
    from soberan.curate import run

    ref = make_workspace(tmp_path / "ref", lang="id", jurisdiction="ID", curate_toml=INDONESIAN)
    write_raw(ref, indonesian_corpus(300, seed=seed), shard_docs=15)
    ws_root = tmp_path / "killed"
    shutil.copytree(ref.root, ws_root)
    run(ref, workers=1)
    return ref, ws_root


def _start_and_wait_for(ws_root, workers: int, folder):
    """Start `soberan curate` and return it once `folder` holds a done-marker."""
    proc = subprocess.Popen([sys.executable, "-c", "from soberan.cli import app; app()", "curate", "-w",
                             str(ws_root), "--workers", str(workers)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (folder.exists() and any(folder.glob("*.json"))):
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    return proc


@pytest.mark.slow  # a run killed, then resumed
def test_kill_and_resume_gives_the_same_output(tmp_path):
    """Kill a run in its first pass and again in its second; the resumed run's shards, decisions
    and stats equal those of an uninterrupted run."""
    from soberan.curate import run
    from soberan.workspace import Workspace

    ref, ws_root = _reference_and_copy(tmp_path, seed=3)
    work = ws_root / "work" / "curate"
    for wait_for in (work / "pass0" / "done", work / "pass1" / "done"):
        proc = _start_and_wait_for(ws_root, 1, wait_for)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (ws_root / "curated" / "stats.json").exists(), "killed too late"
    ws = Workspace.open(ws_root)
    s = run(ws, workers=1)
    assert not s.up_to_date
    assert _snapshot(ws) == _snapshot(ref)


@pytest.mark.slow  # starts a local Ray cluster
def test_ray_executor_gives_the_same_output(tmp_path):
    pytest.importorskip("ray")
    docs = indonesian_corpus(40, seed=5)
    local = make_workspace(tmp_path / "local", lang="id", jurisdiction="ID", curate_toml=INDONESIAN)
    write_raw(local, docs, shard_docs=12)
    shutil.copytree(local.root, tmp_path / "ray")
    from soberan.curate import run
    from soberan.workspace import Workspace

    run(local, workers=1)
    ray_ws = Workspace.open(tmp_path / "ray")
    s = run(ray_ws, executor="ray", workers=1)
    assert s.output_docs > 0 and s.artifact["meta"]["executor"] == "ray"
    assert _snapshot(ray_ws) == _snapshot(local)


EO_PACK = '''
"""Esperanto, written by a test: a pack is one file, and curate needs no change."""
import re
from soberan.lang import LangPack, PiiRule, thresholds

def words(text):
    return re.findall(r"\\w+|[^\\w\\s]", text)

def eo_id_valid(s):  # a made-up national ID: 8 digits whose sum is a multiple of 7
    d = [int(c) for c in s if c.isdigit()]
    return sum(d) % 7 == 0

PACK = LangPack(code="eo", name="Esperanto", words=words,
                stop_words=frozenset("la kaj de en estas al por ke ne".split()),
                thresholds=thresholds(language_score=0.5, min_avg_word_length=2),
                pii=(PiiRule("EO_ID", r"(?<!\\d)EO-\\d{8}(?!\\d)", eo_id_valid, "test ID"),))
'''

EO_SUBJ = ("La instruisto", "Mia frato", "La juna kuracisto", "Nia najbaro", "La malnova fiŝisto",
           "La urbestro", "Ŝia fratino", "La studento", "La kamparano", "La pentristo")
EO_VERB = ("vidis", "aĉetis", "skribis", "trovis", "riparis", "portis", "montris", "vendis")
EO_OBJ = ("belan libron", "novan biciklon", "longan leteron", "malgrandan domon", "ruĝan pomon",
          "grandan ŝipon", "freŝan panon", "varman mantelon", "strangan mapon")
EO_PLACE = ("en la parko", "apud la rivero", "en la biblioteko", "sur la monto", "ĉe la merkato",
            "en la lernejo", "post la ponto", "en la kafejo")


def eo_doc(rng: random.Random) -> str:
    sents = [f"{rng.choice(EO_SUBJ)} {rng.choice(EO_VERB)} {rng.choice(EO_OBJ)} {rng.choice(EO_PLACE)}"
             f"{rng.choice(('', ' hieraŭ', ' hodiaŭ matene', ' antaŭ du tagoj', ' vespere'))}."
             for _ in range(10)]
    return "\n".join(" ".join(sents[i:i + 2]) for i in range(0, 10, 2))


def test_new_language_pack_needs_no_change_to_the_steps(tmp_path, monkeypatch):
    import soberan.lang as lang

    pkg = tmp_path / "packs"
    pkg.mkdir()
    (pkg / "eo.py").write_text(textwrap.dedent(EO_PACK))
    monkeypatch.setattr(lang, "__path__", [*lang.__path__, str(pkg)])
    lang.get_pack.cache_clear()
    try:
        rng = random.Random(11)
        docs = [{"text": eo_doc(rng)} for _ in range(12)]
        docs.append({"text": docs[0]["text"]})  # exact copy
        docs.append({"text": docs[1]["text"].replace("La ", "Tiu ", 1)})  # near-duplicate
        docs[2]["text"] += "\nMia numero estas EO-12345670 kaj la alia estas EO-12345678."
        docs.append({"text": "Der Hund läuft schnell über die Wiese und bellt laut. " * 6})
        ws = make_workspace(tmp_path / "ws", lang="eo", jurisdiction="KR", curate_toml="workers = 1")
        ids = write_raw(ws, docs)
        from soberan.curate import run

        s = run(ws, workers=1)
        out = {r["id"]: r for r in read_corpus(ws.root / "curated").to_pylist()}
        assert s.dropped.get("exact_dedup") == 1 and s.dropped.get("fuzzy_dedup") == 1
        assert s.dropped.get("langid") == 1 and ids[-1] not in out
        assert "<EO_ID>" in out[ids[2]]["text"] and "EO-12345678" in out[ids[2]]["text"]
        assert all(r["lang"] == "eo" for r in out.values())
        stats = json.loads((ws.root / "curated" / "stats.json").read_text())
        assert [x["step"] for x in stats["steps"]][:4] == ["normalize", "langid", "quality", "pii"]
        assert stats["steps"][2]["by_lang"]["eo"]["seen"] == 14
    finally:
        lang.get_pack.cache_clear()


@pytest.mark.slow
def test_demo_corpus_every_drop_explained(tmp_path):
    """`make demo`'s corpus (the konlpy wheel's Constitution and bills), collected and curated:
    every collected document is kept or dropped with a reason in the ledger."""
    from soberan.collect import run as collect
    from soberan.curate import run
    from soberan.workspace import Workspace, init_workspace

    init_workspace(tmp_path / "demo", lang="ko", jurisdiction="KR", demo=True)
    ws = Workspace.open(tmp_path / "demo")
    collect(ws, show_progress=False)
    s = run(ws, workers=1)
    con = ws.ledger.connect()
    raw = con.execute(f"SELECT count(*) FROM read_parquet('{ws.root}/raw/**/*.parquet')").fetchone()[0]
    kept, dropped, unexplained = con.execute(
        "SELECT count(*) FILTER (WHERE action = 'kept'), count(*) FILTER (WHERE action = 'dropped'), "
        "count(*) FILTER (WHERE action = 'dropped' AND (reason IS NULL OR reason = '')) "
        "FROM decisions WHERE stage = 'curate'").fetchone()
    print(f"\ndemo corpus: {raw} collected, {kept} kept, {dropped} dropped: {s.dropped}")
    assert kept + dropped == raw == s.input_docs and kept == s.output_docs > 0 and unexplained == 0
    assert not ws.ledger.verify()


def test_damaged_shard_is_named_before_any_work(tmp_path):
    """A truncated collected shard stops the run with its path and the way out, not a traceback
    from a worker halfway through."""
    from soberan.cli import app

    ws = make_workspace(tmp_path / "ws", lang="id", jurisdiction="ID", curate_toml=INDONESIAN)
    write_raw(ws, indonesian_corpus(30), shard_docs=10)
    shard = sorted((ws.root / "raw").glob("*.parquet"))[1]
    shard.write_bytes(shard.read_bytes()[:200])
    res = CliRunner().invoke(app, ["curate", "-w", str(ws.root), "--workers", "1"])
    assert res.exit_code == 2, res.output
    assert shard.name in res.output and "ledger verify" in res.output
    assert not (ws.root / "work" / "curate" / "pass0" / "done").exists()


def test_threshold_overrides_from_the_config(tmp_path):
    """`[curate.quality.thresholds.<lang>]` lays values over the pack's; the reason quotes them;
    an unknown name is a config error."""
    from soberan.config import ConfigError
    from soberan.curate import run

    toml = ('steps = ["quality"]\n[curate.quality]\nfilters = ["gopher_quality"]\n'
            "[curate.quality.thresholds.ind]\nmin_words = 5000\n")
    ws = make_workspace(tmp_path / "ws", lang="id", jurisdiction="ID", curate_toml=toml)
    write_raw(ws, [dict(d, lang="id") for d in indonesian_corpus(3)])
    s = run(ws, workers=1)
    assert s.output_docs == 0
    reasons = {r[0] for r in duckdb.sql(f"SELECT reason FROM read_parquet('{ws.ledger.decisions_glob()}') "
                                        "WHERE action = 'dropped'").fetchall()}
    assert reasons and all(r.endswith("< min_words 5000") for r in reasons)
    with pytest.raises(ConfigError, match="min_wordz"):
        make_workspace(tmp_path / "bad", lang="id", jurisdiction="ID",
                       curate_toml="[curate.quality.thresholds.id]\nmin_wordz = 5\n")


@pytest.mark.slow  # a process pool killed, then resumed
def test_killed_pool_run_leaves_no_process_behind_and_resumes(tmp_path):
    """SIGKILL a run on a 2-worker pool: its forkserver and workers go with it (none is left
    idle holding a model), and the run resumed on the pool gives the uninterrupted output."""
    import psutil

    from soberan.curate import run
    from soberan.workspace import Workspace

    ref, ws_root = _reference_and_copy(tmp_path, seed=4)
    proc = _start_and_wait_for(ws_root, 2, ws_root / "work" / "curate" / "pass0" / "done")
    family = psutil.Process(proc.pid).children(recursive=True)
    assert len(family) >= 3  # resource tracker, forkserver, workers
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(family, timeout=15)
    assert not alive, [p.cmdline()[-1][:80] for p in alive]
    assert not (ws_root / "curated" / "stats.json").exists(), "killed too late"
    ws = Workspace.open(ws_root)
    assert not run(ws, workers=2).up_to_date
    got, want = _snapshot(ws), _snapshot(ref)
    assert got == want, _differences(got, want)
