"""Signals once, decisions cheap: every document's statistics are stored with its id and
content hash; a changed threshold decides again from them without segmenting any document,
and `--what-if` prints the funnel a change would give before anything runs or is written."""

from __future__ import annotations

import random
import sys
import textwrap

import pyarrow.parquet as pq
import pytest
from test_curate_fixtures import make_workspace, write_raw
from typer.testing import CliRunner

# Ido, written by the test: its segmenter counts its calls.
IO_PACK = '''
import re
from soberan.lang import LangPack, thresholds

CALLS = []

def words(text):
    CALLS.append(text)
    return re.findall(r"\\w+|[^\\w\\s]", text)

PACK = LangPack(code="io", name="Ido", words=words,
                stop_words=frozenset("la e di en esas a por ke ne".split()),
                thresholds=thresholds(min_words=30, min_avg_word_length=2))
'''
WORDS = ("la", "e", "di", "en", "esas", "homo", "urbo", "libro", "domo", "rivero", "monto", "bela",
         "granda", "vidis", "skribis", "trovis", "merkato", "lernejo", "kafeerio", "ponto")
STEPS = 'steps = ["normalize", "quality", "pii", "exact_dedup", "fuzzy_dedup"]\nworkers = 1\n'


def io_docs(n: int) -> list[dict]:
    rng = random.Random(5)
    docs = []
    for k in range(n):
        sents = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))).capitalize() + "."
                 for _ in range(rng.randint(1, 12))]
        docs.append({"text": "\n".join(sents), "lang": "io"})
    docs.append(dict(docs[3]))  # an exact copy
    return docs


@pytest.fixture
def io_pack(tmp_path, monkeypatch):
    import soberan.lang as lang

    pkg = tmp_path / "packs"
    pkg.mkdir()
    (pkg / "io.py").write_text(textwrap.dedent(IO_PACK))
    monkeypatch.setattr(lang, "__path__", [*lang.__path__, str(pkg)])
    sys.modules.pop("soberan.lang.io", None)
    lang.get_pack.cache_clear()
    yield lambda: sys.modules["soberan.lang.io"].CALLS
    lang.get_pack.cache_clear()
    sys.modules.pop("soberan.lang.io", None)


def _set_min_words(ws, value: int):
    from soberan.workspace import Workspace

    cfg = ws.root / "soberan.toml"
    text = cfg.read_text()
    text = text.replace("\n[curate]\n", f"\n[curate]\n{STEPS}", 1) if STEPS not in text else text
    marker = "[curate.quality.thresholds.io]\n"
    if marker in text:
        start = text.index(marker) + len(marker)
        text = text[:start] + f"min_words = {value}\n" + text[text.index("\n", start) + 1:]
    else:
        text += f"\n{marker}min_words = {value}\n"
    cfg.write_text(text)
    return Workspace.open(ws.root)


def test_a_changed_threshold_decides_again_without_segmenting(tmp_path, io_pack):
    from soberan.curate import run
    from soberan.curate.signals import read_signals

    ws = make_workspace(tmp_path / "ws", lang="io", jurisdiction="KR", curate_toml=STEPS)
    docs = io_docs(60)
    write_raw(ws, docs, shard_docs=20)
    calls = io_pack
    s1 = run(ws, workers=1)
    first = len(calls())
    assert first > 0 and 0 < s1.output_docs < len(docs)
    assert s1.dropped["quality"] > 0 and s1.dropped["exact_dedup"] == 1

    sig = read_signals(ws.root)
    q = sig.filter(sig.column("quality_sha").is_valid())
    assert q.num_rows == len(docs)  # every document reaching quality, kept or dropped
    assert set(sig.column_names) >= {"doc_id", "sha256", "words", "stop_words", "dup_line_frac",
                                     "top_n_grams", "new_line_ratio", "pii_counts", "minhash"}
    assert all(m is not None for m in q.column("minhash").to_pylist())  # every text has words

    # looser: documents dropped before are kept now, and their MinHash is stored already
    ws = _set_min_words(ws, 10)
    s2 = run(ws, workers=1)
    assert len(calls()) == first, "a threshold change segmented documents again"
    assert s2.output_docs > s1.output_docs
    import json

    stats = json.loads((ws.root / "curated" / "stats.json").read_text())
    assert stats["signals"] == {"measured": 0, "reused": len(docs)}
    # stricter again: same output as a run from scratch with that threshold
    ws = _set_min_words(ws, 30)
    s3 = run(ws, workers=1)
    assert len(calls()) == first
    assert s3.output_docs == s1.output_docs


def test_what_if_prints_the_funnel_and_writes_nothing(tmp_path, io_pack):
    from soberan.cli import app
    from soberan.curate import run

    ws = make_workspace(tmp_path / "ws", lang="io", jurisdiction="KR", curate_toml=STEPS)
    write_raw(ws, io_docs(40), shard_docs=15)
    runner = CliRunner()
    res = runner.invoke(app, ["curate", "-w", str(ws.root), "--what-if", "io.min_words=10"])
    assert res.exit_code == 2 and "soberan curate" in res.output  # no signals stored yet
    s = run(ws, workers=1)
    calls = len(io_pack())
    before = sorted((p, p.stat().st_mtime_ns) for p in ws.root.rglob("*") if p.is_file())
    res = runner.invoke(app, ["curate", "-w", str(ws.root), "--what-if", "io.min_words=10"],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "io.min_words=10" in res.output and "gopher_short_doc" in res.output
    row = next(l for l in res.output.splitlines() if "quality" in l and "io" in l)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells[2] == "41" and cells[3].startswith(str(s.output_docs + 1))  # + the exact copy
    assert int(cells[4].split()[0]) > int(cells[3].split()[0])
    assert len(io_pack()) == calls  # nothing segmented
    after = sorted((p, p.stat().st_mtime_ns) for p in ws.root.rglob("*") if p.is_file())
    assert after == before  # nothing written

    for bad, says in (("xx.min_words=3", "unknown language 'xx'"),
                      ("io.min_wordz=3", "unknown signal threshold 'min_wordz'"),
                      ("io.min_words=lots", "not a number"),
                      ("io.top_n_grams=0.2", "name one"),
                      ("min_words=3", "LANG.THRESHOLD=VALUE")):
        res = runner.invoke(app, ["curate", "-w", str(ws.root), "--what-if", bad])
        assert res.exit_code == 2 and says in res.output, (bad, res.output)
    res = runner.invoke(app, ["curate", "-w", str(ws.root), "--what-if", "io.top_n_grams.7=0.2"])
    assert res.exit_code == 2 and "top_n_grams[7] was not measured" in res.output
