"""What it costs to record per-document decisions for 1,000,000 documents, and to query them.

Writes the decisions in Parquet batches through `Ledger.write_decisions` (the path every stage
uses), then asks DuckDB the two questions the ledger exists for: drops by rule, and one
document's lineage. Prints rows/s, seconds and bytes on disk.

    .venv/bin/python benchmarks/ledger_decisions.py [--docs 1000000] [--batch 100000]

The data is synthetic but shaped like a real curate run: 32-hex ids, a skewed mix of rules, and
a reason that carries a locator, so the bytes on disk are honest.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

RULES = {  # rule -> share of decisions, roughly a FineWeb-style filter cascade
    "kept": 0.55, "langid": 0.12, "gopher_repetition": 0.08, "gopher_quality": 0.07,
    "c4_badwords": 0.03, "exact_dedup": 0.06, "minhash_dedup": 0.07, "pii_redacted": 0.02,
}


def make_batches(n: int, batch: int, seed: int = 0) -> list[pa.Table]:
    rng = np.random.default_rng(seed)
    raw = rng.bytes(16 * n).hex()
    ids = [raw[i * 32:(i + 1) * 32] for i in range(n)]
    names = list(RULES)
    rule_idx = rng.choice(len(names), size=n, p=list(RULES.values()))
    rules = [names[i] for i in rule_idx]
    actions = ["kept" if r == "kept" else "redacted" if r == "pii_redacted" else "dropped" for r in rules]
    reasons = [f"part-{i // 10_000:05d}.parquet#{i % 10_000}: {r}" for i, r in enumerate(rules)]
    out = []
    for s in range(0, n, batch):
        e = min(s + batch, n)
        out.append(pa.table({"doc_id": ids[s:e], "step": ["quality"] * (e - s), "action": actions[s:e],
                             "rule": rules[s:e], "reason": reasons[s:e], "source": ["news"] * (e - s)}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=100_000)
    args = ap.parse_args()

    from soberan.lineage import lineage
    from soberan.workspace import Workspace, init_workspace

    with tempfile.TemporaryDirectory() as tmp:
        init_workspace(Path(tmp) / "ws", lang="ko", jurisdiction="KR", name="bench")
        ws = Workspace.open(Path(tmp) / "ws")
        led = ws.ledger
        batches = make_batches(args.docs, args.batch)
        probe = batches[len(batches) // 2].column("doc_id")[7].as_py()

        t0 = time.perf_counter()
        for k, b in enumerate(batches):
            led.write_decisions("curate", f"bench.{k:06d}", b)
        write_s = time.perf_counter() - t0
        files = list((led.decisions_dir / "curate").glob("*.parquet"))
        disk = sum(f.stat().st_size for f in files)

        t0 = time.perf_counter()
        con = led.connect()
        by_rule = con.execute("SELECT rule, action, count(*) AS n FROM decisions WHERE stage = 'curate' "
                              "GROUP BY rule, action ORDER BY n DESC").fetchall()
        group_s = time.perf_counter() - t0
        assert sum(r[2] for r in by_rule) == args.docs

        lookups = []
        for _ in range(5):
            t0 = time.perf_counter()
            rows = con.execute("SELECT stage, step, action, rule, reason FROM decisions WHERE doc_id = ?",
                               [probe]).fetchall()
            lookups.append(time.perf_counter() - t0)
        assert len(rows) == 1
        t0 = time.perf_counter()
        lin = lineage(ws, probe)
        lineage_s = time.perf_counter() - t0
        assert lin.decisions and lin.decisions[0]["stage"] == "curate"

    print(f"decisions            {args.docs:,} in {len(files)} Parquet batches of {args.batch:,}")
    print(f"write                {write_s:.2f} s  ({args.docs / write_s:,.0f} rows/s)")
    print(f"on disk              {disk / 1e6:.1f} MB  ({disk / args.docs:.1f} bytes/decision, zstd)")
    print(f"drops by rule        {group_s * 1000:.0f} ms  (DuckDB GROUP BY over all batches, incl. connect)")
    print(f"one doc's decisions  {statistics.median(lookups) * 1000:.0f} ms median of 5 (DuckDB WHERE doc_id = ?)")
    print(f"soberan lineage()    {lineage_s * 1000:.0f} ms  (new connection + lookup)")
    print("top rules:", ", ".join(f"{r}/{a} {n:,}" for r, a, n in by_rule[:4]))


if __name__ == "__main__":
    main()
