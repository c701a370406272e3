"""Corpus-wide dedup: exact (normalized content hash) and fuzzy (MinHash LSH), both resolved by
DuckDB over small files the workers wrote, so memory stays bounded however large the corpus.

Workers write, per shard, an index (document number, id, source, language, weight, content
hash) and the MinHash band keys as Parquet partitioned by band. Resolution then:

- exact: a window over the hash column keeps the first document of each hash (shard order,
  then row order);
- fuzzy: documents sharing a (band, key) bucket are candidate pairs; each bucket links its
  members to its first document (a star, not all pairs), and connected components are found by
  min-label propagation with pointer jumping, one SQL join per round, until nothing changes.
  The component's first document is kept; the others are dropped as near-duplicates.

DuckDB works within `memory_limit` and spills to the work folder beyond it, so neither step
needs the corpus, the signatures or the pairs in memory. A document's number is
`shard << 32 | row`, so ordering by it is ordering by position in the corpus.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from soberan.curate.minhash import EMPTY, MinHashParams, band_keys, ngram_hashes, signatures

_SPACE = re.compile(r"\s+")


def content_hash(text: str) -> str:
    """Hash of the text with case and whitespace folded: the key of exact dedup (CCNet, Wenzek
    et al. 2020, hashes normalized paragraphs the same way)."""
    import xxhash

    return xxhash.xxh3_128_hexdigest(_SPACE.sub(" ", text).strip().casefold().encode("utf-8", "surrogatepass"))


def doc_numbers(shard: int, start: int, n: int) -> np.ndarray:
    return (np.uint64(shard) << np.uint64(32)) | np.arange(start, start + n, dtype=np.uint64)


def index_table(table: pa.Table, shard: int, start: int, with_hash: bool) -> pa.Table:
    n = table.num_rows
    cols = {
        "doc": pa.array(doc_numbers(shard, start, n)),
        "shard": pa.array(np.full(n, shard, dtype=np.int32)),
        "row": pa.array(np.arange(start, start + n, dtype=np.int64)),
        "id": table.column("id"),
        "source": table.column("source"),
        "lang": table.column("lang"),
        "w": table.column("dup_cluster_size").fill_null(1),
        "cluster": pc.coalesce(table.column("dup_cluster"), table.column("id")),
    }
    if with_hash:
        cols["hash"] = pa.array([content_hash(t) for t in table.column("text").to_pylist()], pa.string())
    return pa.table(cols)


def params_key(params: MinHashParams) -> str:
    return json.dumps(dataclasses.asdict(params), sort_keys=True)


def minhash_of(words_list: list[list[str]], params: MinHashParams) -> list[np.ndarray | None]:
    """Each text's MinHash signature from its words; None for a text without shingles."""
    shingles = [np.unique(ngram_hashes(w, params.shingle_size)) for w in words_list]
    sig = signatures(shingles, params)
    return [row if len(sh) else None for row, sh in zip(sig, shingles)]


def signature_table(table: pa.Table, words_of, shard: int, start: int,
                    params: MinHashParams, store=None) -> pa.Table:
    """(band, doc, key) rows of the batch; documents without words are left out. With a
    ShardSignals `store`, a document whose text has a signature stored (by the quality step of
    this run, or by the last run) takes it instead of being segmented again; every signature is
    stored."""
    n = table.num_rows
    sig = np.full((n, params.permutations), EMPTY, dtype=np.uint32)
    has = np.zeros(n, dtype=bool)
    ids = table.column("id").to_pylist()
    key = params_key(params)
    todo, words, shas = [], [], {}
    for i, (t, lang) in enumerate(zip(table.column("text").to_pylist(), table.column("lang").to_pylist())):
        if store is not None:
            shas[i], got, found = store.minhash(ids[i], t, key)
            if found:
                if got is not None:
                    sig[i], has[i] = got, True
                store.put_minhash(ids[i], shas[i], key, got, measured=False)
                continue
        todo.append(i)
        words.append(words_of(t, lang))
    for i, row in zip(todo, minhash_of(words, params)):
        if row is not None:
            sig[i], has[i] = row, True
        if store is not None:
            store.put_minhash(ids[i], shas[i], key, row)
    keys = band_keys(sig, params)
    docs = doc_numbers(shard, start, n)
    keys, docs = keys[has], docs[has]
    return pa.table({
        "band": pa.array(np.repeat(np.arange(params.bands, dtype=np.int16)[None, :], len(docs), 0).ravel()),
        "doc": pa.array(np.repeat(docs, params.bands)),
        "key": pa.array(keys.ravel()),
    })


# --- resolution ---------------------------------------------------------------------------------

def connect(work: Path, memory_limit: str):
    import duckdb

    work.mkdir(parents=True, exist_ok=True)
    db = work / "dedup.duckdb"
    for p in (db, db.with_suffix(".duckdb.wal")):
        p.unlink(missing_ok=True)  # a run killed halfway left it; resolution starts over
    con = duckdb.connect(str(db))
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET temp_directory = '{(work / 'duckdb-tmp').as_posix()}'")
    con.execute("SET preserve_insertion_order = false")
    return con


def _q(p: Path) -> str:
    return p.as_posix().replace("'", "''")


def resolve(pass_dir: Path, steps: list[str], params: MinHashParams, memory_limit: str) -> dict:
    """Resolve the corpus-wide steps prepared in `pass_dir`, in order. Writes
    `drops/<step>/shard=N/*.parquet` (row, rule, reason) and `dups/shard=N/*.parquet` (row,
    dup_cluster, dup_cluster_size), and returns a small report."""
    con = connect(pass_dir, memory_limit)
    report: dict = {}
    index_glob = _q(pass_dir / "index" / "*.parquet")
    if not list((pass_dir / "index").glob("*.parquet")):
        return report
    # `alive`: documents still in the corpus, with their cluster (id of the kept one) and weight
    # (documents it stands for).
    con.execute(f"CREATE TABLE alive AS SELECT doc, shard, row, id, w, cluster, "
                f"{'hash' if 'exact_dedup' in steps else 'NULL AS hash'} "
                f"FROM read_parquet('{index_glob}')")
    changed = False
    for step in steps:
        if step == "exact_dedup":
            report[step] = _exact(con, pass_dir)
        elif step == "fuzzy_dedup":
            report[step] = _fuzzy(con, pass_dir, params)
        changed = True
    if changed:
        _copy(con, "SELECT shard, row, cluster AS dup_cluster, CAST(w AS INTEGER) AS dup_cluster_size "
                   "FROM alive WHERE w > 1", pass_dir / "dups")
    con.close()
    for p in (pass_dir / "dedup.duckdb", pass_dir / "dedup.duckdb.wal"):
        p.unlink(missing_ok=True)
    return report


def _copy(con, sql: str, folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    n = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]
    if n:
        con.execute(f"COPY ({sql}) TO '{_q(folder)}' (FORMAT parquet, PARTITION_BY (shard), "
                    "OVERWRITE_OR_IGNORE true)")


def _exact(con, pass_dir: Path) -> dict:
    con.execute("""
        CREATE TABLE exact AS SELECT doc, shard, row, id, w, cluster,
            first_value(doc) OVER g AS keep_doc, first_value(id) OVER g AS keep_id,
            sum(w) OVER (PARTITION BY hash) AS size
        FROM alive WINDOW g AS (PARTITION BY hash ORDER BY doc)""")
    _copy(con, "SELECT shard, row, 'exact_dedup.duplicate' AS rule, "
               "'exact duplicate (after case and whitespace folding) of ' || keep_id || "
               "', which is kept; ' || size || ' copies in all' AS reason "
               "FROM exact WHERE doc <> keep_doc", pass_dir / "drops" / "exact_dedup")
    groups, dropped = con.execute("SELECT count(DISTINCT keep_doc) FILTER (WHERE size > 1), "
                                  "count(*) FILTER (WHERE doc <> keep_doc) FROM exact").fetchone()
    con.execute("CREATE OR REPLACE TABLE alive AS SELECT doc, shard, row, id, size AS w, keep_id AS cluster, "
                "NULL AS hash FROM exact WHERE doc = keep_doc")
    con.execute("DROP TABLE exact")
    return {"groups": groups, "dropped": dropped}


def _fuzzy(con, pass_dir: Path, params: MinHashParams) -> dict:
    sig_glob = _q(pass_dir / "minhash" / "**" / "*.parquet")
    if not list((pass_dir / "minhash").rglob("*.parquet")):
        return {"candidate_edges": 0, "clusters": 0, "dropped": 0}
    # Star edges: every member of a bucket to the bucket's first document.
    con.execute(f"""
        CREATE TABLE edges AS SELECT DISTINCT doc AS a, root AS b FROM (
            SELECT s.doc, min(s.doc) OVER (PARTITION BY s.band, s.key) AS root
            FROM read_parquet('{sig_glob}', hive_partitioning = true) s SEMI JOIN alive USING (doc))
        WHERE doc <> root""")
    n_edges = con.execute("SELECT count(*) FROM edges").fetchone()[0]
    con.execute("CREATE TABLE lab AS SELECT node, min(label) AS label FROM "
                "(SELECT a AS node, b AS label FROM edges UNION ALL SELECT b, b FROM edges) GROUP BY node")
    rounds = 0
    while True:
        rounds += 1
        con.execute("""
            CREATE OR REPLACE TABLE lab2 AS SELECT node, min(label) AS label FROM (
                SELECT node, label FROM lab
                UNION ALL SELECT e.a, l.label FROM edges e JOIN lab l ON e.b = l.node
                UNION ALL SELECT e.b, l.label FROM edges e JOIN lab l ON e.a = l.node) GROUP BY node""")
        # Pointer jumping: take the label of your label, which halves the distance to the root.
        con.execute("""
            CREATE OR REPLACE TABLE lab2 AS SELECT x.node, least(x.label, coalesce(y.label, x.label)) AS label
            FROM lab2 x LEFT JOIN lab2 y ON x.label = y.node""")
        moved = con.execute("SELECT count(*) FROM lab2 JOIN lab USING (node) "
                            "WHERE lab2.label <> lab.label").fetchone()[0]
        con.execute("DROP TABLE lab")
        con.execute("ALTER TABLE lab2 RENAME TO lab")
        if moved == 0:
            break
    con.execute("""
        CREATE TABLE comp AS SELECT a.doc, a.shard, a.row, a.id, a.w, a.cluster, l.label AS root,
            sum(a.w) OVER (PARTITION BY l.label) AS size
        FROM alive a JOIN lab l ON a.doc = l.node""")
    con.execute("CREATE TABLE comp_root AS SELECT c.root, a.id AS root_id FROM "
                "(SELECT DISTINCT root FROM comp) c JOIN alive a ON a.doc = c.root")
    sig = f"MinHash LSH, {params.shingle_size}-gram shingles, {params.bands}x{params.rows} bands"
    _copy(con, f"SELECT c.shard, c.row, 'fuzzy_dedup.near_duplicate' AS rule, "
               f"'near-duplicate of ' || r.root_id || ', which is kept ({sig}; cluster of ' "
               f"|| c.size || ' documents)' AS reason FROM comp c JOIN comp_root r USING (root) "
               f"WHERE c.doc <> c.root", pass_dir / "drops" / "fuzzy_dedup")
    clusters, dropped = con.execute("SELECT count(DISTINCT root), count(*) FILTER (WHERE doc <> root) "
                                    "FROM comp").fetchone()
    con.execute("""
        CREATE OR REPLACE TABLE alive AS
        SELECT a.doc, a.shard, a.row, a.id, coalesce(c.size, a.w) AS w,
               coalesce(r.root_id, a.cluster) AS cluster, NULL AS hash
        FROM alive a LEFT JOIN comp c USING (doc) LEFT JOIN comp_root r ON c.root = r.root
        WHERE c.doc IS NULL OR c.doc = c.root""")
    for t in ("edges", "lab", "comp", "comp_root"):
        con.execute(f"DROP TABLE {t}")
    return {"candidate_edges": n_edges, "clusters": clusters, "dropped": dropped, "rounds": rounds}
