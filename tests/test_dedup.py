"""Corpus-wide dedup resolution (DuckDB) on synthetic on-disk hashes and band keys: clusters
through chains of candidate pairs, the first document kept, cluster sizes weighted by exact
copies, and a memory limit far below the size of the signatures."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from soberan.curate.dedup import content_hash, doc_numbers, resolve
from soberan.curate.minhash import MinHashParams
from soberan.documents import write_parquet_atomic

P = MinHashParams()


def _write(pass_dir, shards: int, per_shard: int, plant):
    """Random band keys for every document, then `plant(keys, hashes)` edits them in place."""
    rng = np.random.default_rng(0)
    n = shards * per_shard
    keys = rng.integers(0, 2**63, size=(n, P.bands), dtype=np.uint64)
    hashes = np.array([f"h{i}" for i in range(n)], dtype=object)
    plant(keys, hashes)
    for s in range(shards):
        lo, hi = s * per_shard, (s + 1) * per_shard
        docs = doc_numbers(s, 0, per_shard)
        write_parquet_atomic(pa.table({
            "doc": docs, "shard": np.full(per_shard, s, np.int32), "row": np.arange(per_shard),
            "id": [f"d{i}" for i in range(lo, hi)], "source": ["x"] * per_shard,
            "lang": ["ko"] * per_shard, "w": np.ones(per_shard, np.int32),
            "cluster": [f"d{i}" for i in range(lo, hi)], "hash": hashes[lo:hi].tolist()}),
            pass_dir / "index" / f"part-{s:05d}.parquet")
        for b in range(P.bands):
            write_parquet_atomic(pa.table({"doc": docs, "key": keys[lo:hi, b]}),
                                 pass_dir / "minhash" / f"band={b:03d}" / f"part-{s:05d}.parquet")


def _read(folder):
    if not folder.exists():
        return {}
    t = ds.dataset(str(folder), format="parquet", partitioning="hive").to_table()
    cols = [c for c in t.column_names if c not in ("shard", "row")]
    return {(int(s), int(r)): tuple(t.column(c)[i].as_py() for c in cols)
            for i, (s, r) in enumerate(zip(t.column("shard").to_pylist(), t.column("row").to_pylist()))}


def test_clusters_chains_exact_copies_and_first_kept(tmp_path):
    per = 100

    def g(s, r):  # global index of (shard, row)
        return s * per + r

    def plant(keys, hashes):
        # chain: (0,5) ~ (1,7) on band 0, (1,7) ~ (2,9) on band 3 -> one cluster of three
        keys[g(1, 7), 0] = keys[g(0, 5), 0]
        keys[g(2, 9), 3] = keys[g(1, 7), 3]
        # a pair inside one shard, on every band
        keys[g(3, 2)] = keys[g(3, 1)]
        # exact copies: (2,50) and (4,50) are copies of (0,50); (0,50) is also near (3,60)
        hashes[g(2, 50)] = hashes[g(4, 50)] = hashes[g(0, 50)]
        keys[g(3, 60), 5] = keys[g(0, 50), 5]

    pass_dir = tmp_path / "pass0"
    _write(pass_dir, shards=5, per_shard=per, plant=plant)
    report = resolve(pass_dir, ["exact_dedup", "fuzzy_dedup"], P, "256MB")
    exact = _read(pass_dir / "drops" / "exact_dedup")
    fuzzy = _read(pass_dir / "drops" / "fuzzy_dedup")
    dups = _read(pass_dir / "dups")
    assert set(exact) == {(2, 50), (4, 50)}
    assert "d50" in exact[(2, 50)][1]  # the reason names the kept document
    assert set(fuzzy) == {(1, 7), (2, 9), (3, 2), (3, 60)}
    assert "d5," in fuzzy[(2, 9)][1] and "cluster of 3" in fuzzy[(2, 9)][1]
    assert "cluster of 4" in fuzzy[(3, 60)][1]  # 3 exact copies + 1 near-duplicate
    assert dups[(0, 5)] == ("d5", 3) and dups[(3, 1)] == ("d301", 2) and dups[(0, 50)] == ("d50", 4)
    assert report["exact_dedup"]["dropped"] == 2 and report["fuzzy_dedup"]["dropped"] == 4
    assert not (pass_dir / "dedup.duckdb").exists()


@pytest.mark.slow  # a subprocess under a memory limit
def test_resolution_stays_within_a_small_memory_limit(tmp_path):
    """120k documents x 14 bands (1.7M band keys, 27 MB as raw integers, several times that in
    DuckDB's window and hash tables) resolved with a 32 MB limit: DuckDB spills to disk."""
    shards, per = 4, 30_000
    rng = np.random.default_rng(1)
    planted = rng.choice(shards * per, size=(1_000, 2), replace=False)

    def plant(keys, hashes):
        for a, b in planted:
            band = int(a % P.bands)
            keys[b, band] = keys[a, band]

    pass_dir = tmp_path / "pass0"
    _write(pass_dir, shards, per, plant)
    report = resolve(pass_dir, ["fuzzy_dedup"], P, "32MB")
    dropped = _read(pass_dir / "drops" / "fuzzy_dedup")
    expect = {(int(max(a, b)) // per, int(max(a, b)) % per) for a, b in planted}
    assert set(dropped) == expect
    assert report["fuzzy_dedup"]["clusters"] == 1_000


def test_content_hash_folds_case_and_whitespace():
    assert content_hash("Hello  World\n") == content_hash("hello world")
    assert content_hash("hello world") != content_hash("hello, world")


@pytest.mark.parametrize("shard,row", [(0, 0), (3, 17), (70_000, 2**32 - 1)])
def test_doc_numbers_order_by_shard_then_row(shard, row):
    n = doc_numbers(shard, row, 1)[0]
    assert int(n) >> 32 == shard and int(n) & 0xFFFFFFFF == row
