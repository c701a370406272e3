"""Curate with any batch size: batches of a few documents over several shards give the same
corpus, decisions and counts as one batch per shard. An empty decisions table once had its
columns in another order than a full one, and every shard of more than one batch crashed."""

from __future__ import annotations

import pytest
from test_curate_fixtures import make_workspace, write_raw
from test_curate_run import INDONESIAN, _snapshot, indonesian_corpus


def _curate(root, batch_size: int, docs: list[dict], workers: int = 1):
    from soberan.curate import run

    ws = make_workspace(root, lang="id", jurisdiction="ID",
                        curate_toml=f"batch_size = {batch_size}\n" + INDONESIAN)
    write_raw(ws, docs, shard_docs=10)
    s = run(ws, workers=workers)
    return ws, s


# Batches of 1 on a 2-worker pool (its forkserver and preload too) in the fast tests; batches of 3
# in one process with the slow ones.
@pytest.mark.parametrize("batch_size, workers", [(1, 2), pytest.param(3, 1, marks=pytest.mark.slow)])
def test_small_batches_over_several_shards_equal_one_batch(tmp_path, batch_size, workers):
    from soberan.curate.steps import DECISION_SCHEMA, decisions_table

    docs = indonesian_corpus(40)  # 48 documents, 5 shards; PII in one batch, copies in others
    ref, s_ref = _curate(tmp_path / "ref", 1000, docs)
    ws, s = _curate(tmp_path / "small", batch_size, docs, workers)
    assert s.shards == 5 and s.input_docs == 48
    assert s.output_docs == s_ref.output_docs < 48  # the copies went
    assert _snapshot(ws) == _snapshot(ref)
    # the schema itself: an empty table and a full one concatenate
    import pyarrow as pa

    full = decisions_table(pa.table({"id": ["a"], "source": ["s"], "lang": ["id"]}),
                           [(0, "dropped", "r", "why")], "quality")
    assert full.schema == decisions_table(full, [], "quality").schema == DECISION_SCHEMA


@pytest.mark.slow  # 16 s of CPU, 40 s on the shared 2-core machine
@pytest.mark.shared_data
def test_twenty_thousand_real_documents_in_small_batches(tmp_path, shared_data):
    """26,737 Wisesight messages (Thai social media, one per line) over 6 shards in batches of
    700: every shard has several batches, some of which drop or redact nothing in a step."""
    from soberan.curate import run

    lines = []
    for name in ("neg", "neu", "pos", "q"):
        lines += (shared_data / "wisesight_sentiment" / f"{name}.txt").read_text().splitlines()
    docs = [{"text": t, "source": "wisesight"} for t in lines if t.strip()]
    assert len(docs) >= 20_000
    ws = make_workspace(tmp_path / "ws", lang="th", jurisdiction="TH", curate_toml=(
        'batch_size = 700\nsteps = ["normalize", "langid", "quality", "pii", "exact_dedup"]\n'))
    write_raw(ws, docs, shard_docs=5000)
    s = run(ws, workers=1)
    assert s.shards == 6 and s.input_docs == len(docs)
    assert 0 < s.output_docs < len(docs)
    assert s.dropped["langid"] > 0 and s.dropped["quality"] > 0


def test_the_executor_comes_from_the_config(tmp_path, monkeypatch):
    """`[curate] executor = "ray"` (and `ray_address`) reach the run that `soberan build` makes,
    which passes no flags; a flag still overrides the config."""
    import soberan.curate.executor as ex
    from soberan.curate import run

    asked = []
    real = ex.executor

    def spy(kind="local", workers=0, ray_address=None, langs=()):
        asked.append((kind, ray_address))
        return real("local", 1, None, langs)

    monkeypatch.setattr(ex, "executor", spy)
    ws = make_workspace(tmp_path / "ws", lang="id", jurisdiction="ID",
                        curate_toml='executor = "ray"\nray_address = "ray://head:10001"\n' + INDONESIAN)
    write_raw(ws, indonesian_corpus(5))
    run(ws)  # as build calls it
    run(ws, executor="local", force=True)
    assert asked == [("ray", "ray://head:10001"), ("local", "ray://head:10001")]
