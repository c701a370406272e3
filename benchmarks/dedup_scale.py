"""Fuzzy dedup at scale under a memory cap: soberan curate vs HuggingFace datatrove, same input.

The corpus is generated: N documents (default 1,000,000) of 30-90 words drawn from a Zipf
distribution over 50,000 made-up syllable words, written as JSONL. A tenth of them are planted
near-duplicates: an earlier document with one word replaced (Jaccard of 5-gram shingles 0.75 to
0.9, above the 0.72 knee of 14 bands x 8 rows), so recall and precision are measured on
known pairs. The text is tagged Indonesian, a language written with spaces, so word splitting
is a regex on both sides (datatrove gets soberan's `space_words` as its word tokenizer) and the
benchmark measures dedup, not a segmenter.

Both sides run the same MinHash LSH: 5-gram word shingles, 14 bands of 8 rows, 2 workers.
- soberan: `soberan collect` (not capped, not timed: datatrove's input is the JSONL as is), then
  `soberan curate` with `steps = ["fuzzy_dedup"]`, under the cap. Resolution runs in DuckDB
  with `[curate] memory_limit` (`--duckdb-memory`, 1 GB by default, so DuckDB, Python and the
  workers fit in 2 GB; it spills to the work folder beyond it).
- datatrove 0.10: its documented four stages (MinhashDedupSignature, MinhashDedupBuckets,
  MinhashDedupCluster, MinhashDedupFilter + JsonlWriter) on LocalPipelineExecutor, under the
  same cap.

The cap: each side runs in its own process tree inside a cgroup with a memory limit (v2
`memory.max`, or v1 `memory.limit_in_bytes` + `memsw`), so the kernel kills it if the whole tree
goes over; where no cgroup can be made, RLIMIT_AS on each process instead (address space, which
over-counts: reserved but untouched memory counts too). Peak memory is reported two ways: the
sampled peak of the summed proportional set size (PSS) of the tree, every 0.5 s, and the
cgroup's own high-water mark, which also counts the page cache of the files the side wrote.

    /work/bvenv/bin/python benchmarks/dedup_scale.py [--docs 1000000] [--cap 2G] [--workers 2]
        [--root DIR] [--sides soberan,datatrove] [--duckdb-memory 1GB] [--reuse]

Needs the `bench` extra for the datatrove side (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curate_vs_datatrove import _tree_memory_sampler  # noqa: E402  (one PSS sampler for both benchmarks)

FILES = 16
SHARD_DOCS = 50_000
DUP_SHARE = 0.1


# --- corpus -------------------------------------------------------------------------------------

def vocabulary(rng: random.Random, size: int = 50_000) -> list[str]:
    syllables = [c + v for c in "bcdfghjklmnprstwy" for v in "aiueo"] + ["ng", "ny", "kh"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def generate(root: Path, n: int) -> list[tuple[str, str]]:
    """Writes root/jsonl/part-XX.jsonl; returns the planted (original id, copy id) pairs."""
    import numpy as np

    rng = random.Random(0)
    np_rng = np.random.default_rng(0)
    vocab = vocabulary(rng)
    cdf = np.cumsum(1 / np.arange(1, len(vocab) + 1, dtype=np.float64) ** 1.1)
    cdf /= cdf[-1]

    def draw(k: int) -> list[str]:  # k Zipf-distributed words
        return [vocab[j] for j in np.searchsorted(cdf, np_rng.random(k))]

    out = root / "jsonl"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    fhs = [open(out / f"part-{i:02d}.jsonl", "w", encoding="utf-8") for i in range(FILES)]
    pairs: list[tuple[str, str]] = []
    recent: list[tuple[str, list[str]]] = []  # originals a later copy may take (a bounded window)
    lengths = np_rng.integers(30, 91, size=n)
    for i in range(n):
        doc_id = f"d{i:07d}"
        if recent and rng.random() < DUP_SHARE:
            src_id, words = recent[rng.randrange(len(recent))]
            words = list(words)
            words[rng.randrange(len(words))] = draw(1)[0]
            pairs.append((src_id, doc_id))
        else:
            words = draw(int(lengths[i]))
            recent.append((doc_id, words))
            if len(recent) > 2000:
                recent.pop(rng.randrange(len(recent)))
        fhs[i % FILES].write(json.dumps({"id": doc_id, "text": " ".join(words)}) + "\n")
    for fh in fhs:
        fh.close()
    (root / "pairs.json").write_text(json.dumps(pairs))
    return pairs


# --- the two sides (each in its own capped subprocess) ------------------------------------------

def prepare_soberan(root: Path, workers: int) -> None:
    from soberan.collect import run as collect
    from soberan.workspace import Workspace, init_workspace, set_keys

    ws_root = root / "ws"
    shutil.rmtree(ws_root, ignore_errors=True)
    cfg = init_workspace(ws_root, lang="id", jurisdiction="ID", name="dedup-scale")
    text = cfg.read_text().replace("licenses = [", 'licenses = ["CC0-1.0", ', 1)
    text = set_keys(text, "collect", {"shard_docs": str(SHARD_DOCS)})
    text = set_keys(text, "curate", {"steps": '["fuzzy_dedup"]', "workers": str(workers)})
    cfg.write_text(text + f'''
[[sources]]
name = "generated"
kind = "jsonl"
path = "{root / 'jsonl'}"
license = "CC0-1.0"
jurisdiction = "ID"
lang = "id"
fields = {{ text = "text", title = "id" }}
''')
    t = time.perf_counter()
    collect(Workspace.open(ws_root), show_progress=False)
    print(f"soberan collect (uncapped, untimed in the comparison): {time.perf_counter() - t:.0f} s", flush=True)


def run_soberan(root: Path, workers: int, duckdb_memory: str) -> dict:
    import duckdb

    from soberan.curate import run
    from soberan.workspace import Workspace, set_keys

    cfg = root / "ws" / "soberan.toml"
    cfg.write_text(set_keys(cfg.read_text(), "curate", {"memory_limit": f'"{duckdb_memory}"'}))
    ws = Workspace.open(root / "ws")
    t = time.perf_counter()
    run(ws, workers=workers, force=True)
    seconds = time.perf_counter() - t
    # the generated id travels as the document's title (collect gives documents ids of its own)
    raw = (ws.root / "raw").as_posix()
    dropped = [r[0] for r in duckdb.sql(
        f"SELECT r.title FROM read_parquet('{ws.ledger.decisions_glob()}') d "
        f"JOIN read_parquet('{raw}/**/*.parquet') r ON r.id = d.doc_id "
        "WHERE d.step = 'fuzzy_dedup' AND d.action = 'dropped'").fetchall()]
    return {"seconds": seconds, "dropped": dropped}


try:
    from datatrove.utils.word_tokenizers import WordTokenizer as _WordTokenizer
except ImportError:  # the bench extra is not installed: only the soberan side can run
    _WordTokenizer = object


class SpaceWords(_WordTokenizer):
    """soberan's regex word split, handed to datatrove so both sides shingle the same words."""

    def __init__(self):
        if _WordTokenizer is not object:
            super().__init__("id")

    def word_tokenize(self, text: str) -> list[str]:
        from soberan.lang import space_words

        return space_words(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


def run_datatrove(root: Path, workers: int) -> dict:
    import gzip

    from curate_vs_datatrove import datatrove_minhash
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    dt = root / "datatrove"
    shutil.rmtree(dt, ignore_errors=True)
    cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)
    t = time.perf_counter()
    datatrove_minhash(dt, cfg, workers, FILES, first=[JsonlReader(str(root / "jsonl"), id_key="id")],
                      signature_language=SpaceWords(), reread=JsonlReader(str(root / "jsonl"), id_key="id"),
                      out=JsonlWriter(str(dt / "out")), exclusion=JsonlWriter(str(dt / "removed")))
    seconds = time.perf_counter() - t
    dropped = [json.loads(line)["id"] for f in sorted((dt / "removed").glob("*")) for line in gzip.open(f, "rt")]
    return {"seconds": seconds, "dropped": dropped}


def side_main(side: str, root: Path, workers: int, duckdb_memory: str) -> None:
    stop, peak = threading.Event(), [0.0]
    sampler = threading.Thread(target=_tree_memory_sampler, args=(stop, peak), daemon=True)
    sampler.start()
    res = run_soberan(root, workers, duckdb_memory) if side == "soberan" else run_datatrove(root, workers)
    stop.set()
    sampler.join()
    res["peak_pss_mb"] = peak[0]
    (root / f"{side}.json").write_text(json.dumps(res))


# --- the cap ------------------------------------------------------------------------------------

def parse_size(s: str) -> int:
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    return int(float(s[:-1]) * units[s[-1].upper()]) if s[-1].upper() in units else int(s)


def make_cgroup(name: str, cap: int) -> tuple[Path, str] | None:
    """A fresh memory cgroup with the cap, or None where this machine does not allow one."""
    v2 = Path("/sys/fs/cgroup")
    try:
        if (v2 / "cgroup.controllers").exists() and "memory" in (v2 / "cgroup.controllers").read_text():
            d = v2 / name
            d.mkdir(exist_ok=True)
            (d / "memory.max").write_text(str(cap))
            (d / "memory.swap.max").write_text("0")
            return d, "v2"
        d = v2 / "memory" / name
        if d.exists():
            d.rmdir()
        d.mkdir()
        (d / "memory.limit_in_bytes").write_text(str(cap))
        try:
            (d / "memory.memsw.limit_in_bytes").write_text(str(cap))  # no escape into swap
        except OSError:
            pass
        return d, "v1"
    except OSError:
        return None


def cgroup_peak(cg: tuple[Path, str]) -> tuple[float, bool]:
    """(high-water mark in MB, whether the kernel's OOM killer fired in the group)."""
    d, v = cg
    if v == "v2":
        peak = int((d / "memory.peak").read_text()) if (d / "memory.peak").exists() else 0
        events = dict(line.split() for line in (d / "memory.events").read_text().splitlines())
        return peak / 2**20, int(events.get("oom_kill", 0)) > 0
    control = dict(line.split() for line in (d / "memory.oom_control").read_text().splitlines())
    oom = int(control.get("oom_kill", 0)) > 0
    return int((d / "memory.max_usage_in_bytes").read_text()) / 2**20, oom


def run_capped(side: str, root: Path, workers: int, cap: int, duckdb_memory: str) -> dict:
    # `-c`, not this file: a forkserver's children import the parent's __main__ file, and this
    # one imports datatrove, which soberan's workers should not pay for (in memory, here)
    boot = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            "import dedup_scale as b; b.main()")
    cmd = [sys.executable, "-c", boot, "--side", side, "--root", str(root), "--workers", str(workers),
           "--duckdb-memory", duckdb_memory]
    cg = make_cgroup(f"soberan-bench-{side}", cap)
    if cg is not None:
        def enter():
            (cg[0] / "cgroup.procs").write_text(str(os.getpid()))
        how = f"cgroup {cg[1]}"
    else:
        def enter():
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        how = "RLIMIT_AS per process"
    t = time.perf_counter()
    proc = subprocess.run(cmd, preexec_fn=enter)
    wall = time.perf_counter() - t
    out = {"side": side, "rc": proc.returncode, "cap": how, "wall": wall}
    if cg is not None:
        out["cgroup_peak_mb"], out["oom_killed"] = cgroup_peak(cg)
        try:
            cg[0].rmdir()
        except OSError:
            pass
    res_file = root / f"{side}.json"
    if proc.returncode == 0 and res_file.exists():
        out.update(json.loads(res_file.read_text()))
    return out


def quality(dropped: list[str], pairs: list[tuple[str, str]]) -> dict:
    """Over the planted groups (an original and its near-copies): the share left with exactly
    one document (found), with more than one (missed copies), with none (merged into another
    group: over-merging); and the drops outside every group (false positives)."""
    groups: dict[str, set[str]] = {}
    for a, b in pairs:
        groups.setdefault(a, {a}).add(b)
    d = set(dropped)
    left = [len(g - d) for g in groups.values()]
    planted = {x for g in groups.values() for x in g}
    n = len(left)
    return {"groups": n, "one_left": sum(x == 1 for x in left) / n, "several_left": sum(x > 1 for x in left) / n,
            "none_left": sum(x == 0 for x in left) / n, "other_drops": len(d - planted)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--cap", default="2G")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--root", type=Path)
    ap.add_argument("--sides", default="soberan,datatrove")
    ap.add_argument("--reuse", action="store_true", help="keep the corpus and workspace of an earlier run at --root")
    ap.add_argument("--duckdb-memory", default="1GB",
                    help="soberan's [curate] memory_limit: DuckDB's share of the cap; beyond it, it spills to disk")
    ap.add_argument("--side", choices=["soberan", "datatrove"])
    args = ap.parse_args()
    if args.side:
        side_main(args.side, args.root, args.workers, args.duckdb_memory)
        return
    root = args.root or Path("/tmp/soberan-dedup-scale")
    root.mkdir(parents=True, exist_ok=True)
    sides = args.sides.split(",")
    if args.reuse and (root / "pairs.json").exists():
        pairs = [tuple(p) for p in json.loads((root / "pairs.json").read_text())]
    else:
        t = time.perf_counter()
        pairs = generate(root, args.docs)
        print(f"generated {args.docs:,} documents, {len(pairs):,} planted near-duplicates in "
              f"{time.perf_counter() - t:.0f} s", flush=True)
    if "soberan" in sides and not (args.reuse and (root / "ws" / "raw").exists()):
        prepare_soberan(root, args.workers)
    cap = parse_size(args.cap)
    rows = []
    for side in sides:
        r = run_capped(side, root, args.workers, cap, args.duckdb_memory)
        finished = r["rc"] == 0 and "seconds" in r
        line = f"{side}{f' (DuckDB memory_limit {args.duckdb_memory})' if side == 'soberan' else ''}: rc {r['rc']}, {'finished' if finished else 'DID NOT FINISH'} under {args.cap} ({r['cap']})"
        if finished:
            q = r["quality"] = quality(r["dropped"], pairs)
            line += (f"; {r['seconds']:.0f} s; peak PSS {r['peak_pss_mb']:.0f} MB; dropped {len(r['dropped']):,}; "
                     f"planted groups ({q['groups']:,}) left with one document {q['one_left']:.3f}, "
                     f"several {q['several_left']:.3f}, none {q['none_left']:.3f}; {q['other_drops']:,} other drops")
        if "cgroup_peak_mb" in r:
            line += f"; cgroup high-water {r['cgroup_peak_mb']:.0f} MB (page cache included), OOM kill: {r['oom_killed']}"
        print(line, flush=True)
        rows.append(r)
    (root / f"result-{args.duckdb_memory}.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "dropped"} for r in rows], indent=1))


if __name__ == "__main__":
    main()
