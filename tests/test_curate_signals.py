"""Signals once, decisions cheap: every document's statistics are stored with its id and
content hash; a changed threshold decides again from them without segmenting any document,
and `--what-if` prints the funnel a change would give before anything runs or is written."""

from __future__ import annotations

import random
import re
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
    assert stats["signals"] == {"measured": 0, "reused": len(docs), "decontam_measured": 0, "lid_measured": 0}
    # stricter again: same output as a run from scratch with that threshold
    ws = _set_min_words(ws, 30)
    s3 = run(ws, workers=1)
    assert len(calls()) == first
    assert s3.output_docs == s1.output_docs


def test_measured_share_says_how_much_a_rerun_decides_from_signals(tmp_path, io_pack):
    """The share of collected documents whose signals were stored for the same text: all of
    them after a run, fewer once a collected text changes, none after `--force` clears them."""
    from soberan.curate import run
    from soberan.curate.signals import measured_share
    from soberan.documents import shard_paths

    ws = make_workspace(tmp_path / "ws", lang="io", jurisdiction="KR", curate_toml=STEPS)
    docs = io_docs(20)
    write_raw(ws, docs, shard_docs=7)
    inputs = shard_paths(ws.stage_dir("collect"))
    assert measured_share(ws.root, inputs) == (0.0, len(docs))
    run(ws, workers=1)
    assert measured_share(ws.root, inputs) == (1.0, len(docs))
    docs[0] = {"text": docs[0]["text"] + " Nova.", "lang": "io"}
    write_raw(ws, docs, shard_docs=7)
    share, n = measured_share(ws.root, shard_paths(ws.stage_dir("collect")))
    assert n == len(docs) and share == pytest.approx((len(docs) - 1) / len(docs))


def test_language_id_is_looked_up_on_a_rerun(tmp_path, io_pack):
    """lid.176 is a pure function of the text: a rerun after a changed threshold (here the
    language-ID threshold itself) predicts no document and no line again, and decides as a run
    from scratch with that threshold does."""
    import json

    from soberan.curate import run
    from soberan.documents import read_corpus
    from soberan.workspace import Workspace

    docs = io_docs(30)
    docs[4]["text"] += "\nThis line is plainly written in English, and long enough to be read alone."
    steps = 'steps = ["langid", "quality"]\nworkers = 1\n[curate.langid]\nmin_score = 0.3\n'
    ws = make_workspace(tmp_path / "ws", lang="io", jurisdiction="KR", curate_toml=steps)
    write_raw(ws, docs, shard_docs=10)
    run(ws, workers=1)
    stats = json.loads((ws.root / "curated" / "stats.json").read_text())
    assert stats["signals"]["lid_measured"] > len(docs)  # the documents, and lines of some
    cfg = ws.root / "soberan.toml"
    cfg.write_text(cfg.read_text().replace("min_score = 0.3", "min_score = 0.6"))
    s2 = run(Workspace.open(ws.root), workers=1)
    stats = json.loads((ws.root / "curated" / "stats.json").read_text())
    assert stats["signals"]["lid_measured"] == 0
    ids2 = read_corpus(ws.root / "curated", columns=["id"]).column("id").to_pylist()
    fresh = make_workspace(tmp_path / "fresh", lang="io", jurisdiction="KR",
                           curate_toml=steps.replace("min_score = 0.3", "min_score = 0.6"))
    write_raw(fresh, docs, shard_docs=10)
    s3 = run(fresh, workers=1)
    assert (s2.output_docs, s2.dropped) == (s3.output_docs, s3.dropped)
    assert ids2 == read_corpus(fresh.root / "curated", columns=["id"]).column("id").to_pylist()


def test_decontamination_decides_again_from_stored_signals(tmp_path, io_pack):
    """With decontamination in the steps, a changed quality threshold, a changed `min_matches`
    and a switch to `mode = "lines"` of a measured document decide again without segmenting any
    document or benchmark item; each decision is the one a run from scratch makes."""
    import json

    from soberan.curate import run
    from soberan.workspace import Workspace

    docs = io_docs(40)
    # two documents quote a benchmark item: one line each, long enough for 8-grams
    item = "la homo skribis libro en la domo di la granda rivero e la bela monto"
    docs[5]["text"] += "\n" + item.capitalize() + "."
    docs[9]["text"] += "\n" + item.capitalize() + "."
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"q": item}) + "\n")
    steps = ('steps = ["normalize", "quality", "decontam"]\nworkers = 1\n'
             f'[curate.decontam]\nmin_matches = 1\nfiles = [{{ name = "qa", path = "{bench}", fields = ["q"] }}]\n')
    ws = make_workspace(tmp_path / "ws", lang="io", jurisdiction="KR",
                        curate_toml=steps + "[curate.quality.thresholds.io]\nmin_words = 10\n")
    write_raw(ws, docs, shard_docs=15)
    s1 = run(ws, workers=1)
    assert s1.dropped["decontam"] == 2
    first = len(io_pack())
    cfg = ws.root / "soberan.toml"

    def rerun(old: str, new: str):
        cfg.write_text(cfg.read_text().replace(old, new, 1))
        summary = run(Workspace.open(ws.root), workers=1)
        stats = json.loads((ws.root / "curated" / "stats.json").read_text())
        return summary, stats

    s2, st = rerun("min_words = 10", "min_words = 12")  # a quality threshold
    assert len(io_pack()) == first and st["signals"]["decontam_measured"] == 0
    assert s2.dropped["decontam"] == 2
    s3, st = rerun("min_matches = 1", "min_matches = 50")  # no document shares 50 n-grams
    assert len(io_pack()) == first and st["signals"]["decontam_measured"] == 0
    assert "decontam" not in s3.dropped or s3.dropped["decontam"] == 0
    s4, st = rerun("min_matches = 50", 'min_matches = 1\nmode = "lines"\nmin_kept_share = 0.1')
    # the two quoting documents are measured again, line by line; nothing else
    assert st["signals"]["decontam_measured"] == 2
    assert "decontam" not in s4.dropped or s4.dropped["decontam"] == 0
    texts = pq.read_table(next((ws.root / "curated").rglob("*.parquet")), columns=["text"]).column("text").to_pylist()
    assert not any(item.capitalize() in t for t in texts)
    calls = len(io_pack())
    s5, st = rerun("min_kept_share = 0.1", "min_kept_share = 0.2")  # lines stored: nothing segmented
    assert len(io_pack()) == calls and st["signals"]["decontam_measured"] == 0


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


def test_calibrate_proposes_thresholds_that_keep_the_reference(tmp_path, io_pack):
    """FineWeb2's method on stored signals: the reference's percentiles, relaxed only, keep
    `keep` of it; nothing is segmented; the report draws both thresholds on the histograms."""
    from soberan.cli import app
    from soberan.curate import run
    from soberan.curate.calibrate import calibrate, toml_of

    rng = random.Random(9)
    docs = [dict(d, source="posts") for d in io_docs(30)]
    for _ in range(40):  # the trusted text: 12-40 words, often under the pack's 30
        n = rng.randint(12, 40)
        words = [rng.choice(WORDS) for _ in range(n)]
        docs.append({"text": " ".join(words).capitalize() + ".", "lang": "io", "source": "laws"})
    ws = make_workspace(tmp_path / "ws", lang="io", jurisdiction="KR", curate_toml=STEPS)
    cfg = ws.root / "soberan.toml"
    cfg.write_text(cfg.read_text() + "".join(f'''
[[sources]]
name = "{n}"
kind = "jsonl"
path = "x.jsonl"
license = "CC0-1.0"
jurisdiction = "KR"
''' for n in ("posts", "laws")))
    from soberan.workspace import Workspace

    ws = Workspace.open(ws.root)
    write_raw(ws, docs, shard_docs=25)
    run(ws, workers=1)
    calls = len(io_pack())
    (cal,) = calibrate(ws, ["laws"], keep=0.9)
    assert len(io_pack()) == calls
    rule = {r.key: r for r in cal.rules}["min_words"]
    assert rule.current == 30 and rule.proposed < 30
    assert cal.kept_now[2] < 0.9 <= cal.kept_new[2]  # the reference: dropped now, kept with the proposal
    assert all(r.proposed == r.current or (r.proposed < r.current if r.direction == "min" else
                                            r.proposed > r.current) for r in cal.rules if r.current)
    snippet = toml_of([cal])
    assert snippet.startswith("[curate.quality.thresholds.io]\n")
    assert f"\nmin_words = {int(rule.proposed)}\n" in snippet
    if "top_n_grams" in snippet:  # a table is written whole: an override replaces the pack's
        assert re.search(r"top_n_grams = \{ 2 = [\d.]+, 3 = [\d.]+, 4 = [\d.]+ \}", snippet)

    res = CliRunner().invoke(app, ["calibrate", "-w", str(ws.root), "--reference", "laws"],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "min_words" in res.output and "[curate.quality.thresholds.io]" in res.output
    html = (ws.root / "report" / "calibration.html").read_text()
    assert html.count("<svg") >= 10 and "proposed" in html and "pack 30" in html
    res = CliRunner().invoke(app, ["calibrate", "-w", str(ws.root), "--reference", "statutes"])
    assert res.exit_code == 2 and "no such source" in res.output


def test_short_social_preset_under_the_languages_own_overrides(tmp_path):
    from soberan.curate.steps import Context
    from soberan.lang import PRESETS

    ws = make_workspace(tmp_path / "ws", lang="th", jurisdiction="TH", curate_toml=(
        '[curate.quality]\npreset = "short_social"\n[curate.quality.thresholds.th]\nmin_words = 5\n'))
    th = Context(ws.root).pack("th").thresholds
    assert th["min_words"] == 5  # the language's own override wins
    assert th["line_punct_thr"] == PRESETS["short_social"]["line_punct_thr"]
    assert th["language_score"] == 0.5 and th["dup_line_frac"] == 0.349  # untouched: the pack's
