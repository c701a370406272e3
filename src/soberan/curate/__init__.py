"""`soberan curate`: turn the collected corpus (`raw/`) into a training corpus (`curated/`).

The configured steps run in passes. Per-document steps (normalize, langid, quality, pii,
decontam) run shard by shard on the executor; a corpus-wide step (exact_dedup, fuzzy_dedup) ends
a pass: the workers prepare what it needs (hashes, MinHash band keys), DuckDB resolves it over the
whole corpus, and the next pass drops what it resolved. With the default order that is two passes:

    pass 0: normalize, langid, quality, pii  (+ hashes, signatures)
    resolve: exact_dedup, fuzzy_dedup
    pass 1: drop duplicates, decontam -> curated/part-*.parquet

Every drop, redaction and surviving document is in the ledger's decision log; counts per step,
language and source are in `curated/stats.json`. A run killed at any point resumes from the
shards and resolutions already done (work/curate/), and gives the same output.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from soberan import stages
from soberan.common import json_sha256, read_json, write_json

if TYPE_CHECKING:  # soberan.config imports this package for CurateSettings: no import cycle
    from soberan.workspace import Workspace

STAGE = "curate"
# The config sections this stage reads (the stage registry keeps them, and says why; decontamination also reads benchmark texts, which `config_hash` adds: the texts themselves, not the rest of [evaluate]): hashed into
# each artifact it records, and what `soberan build` compares to decide whether it must run again.
CONFIG_SECTIONS = stages.get(STAGE).config_sections
VERSION = "1"  # bump when a step's behaviour changes, so a resumed run does not mix versions


@dataclass(frozen=True)
class Pass:
    apply: tuple[str, ...]
    steps: tuple[str, ...]
    prepare: tuple[str, ...]


@dataclass
class CurateSummary:
    input_docs: int
    output_docs: int
    shards: int
    dropped: dict[str, int] = field(default_factory=dict)  # step -> documents dropped
    redacted: dict[str, int] = field(default_factory=dict)  # step -> documents changed
    path: Path | None = None
    seconds: float = 0.0
    up_to_date: bool = False
    artifact: dict | None = None


def plan(steps: list[str]) -> list[Pass]:
    """Cut the step list into passes at each run of corpus-wide steps."""
    from soberan.curate.steps import CORPUS_STEPS

    passes: list[Pass] = []
    apply: tuple[str, ...] = ()
    doc: list[str] = []
    corpus: list[str] = []
    for s in steps:
        if s in CORPUS_STEPS:
            corpus.append(s)
            continue
        if corpus:
            passes.append(Pass(apply, tuple(doc), tuple(corpus)))
            apply, doc, corpus = tuple(corpus), [], []
        doc.append(s)
    if corpus:
        passes.append(Pass(apply, tuple(doc), tuple(corpus)))
        apply, doc = tuple(corpus), []
    passes.append(Pass(apply, tuple(doc), ()))
    return passes


# Deciding a document from its stored signals takes about 0.13 ms (7,590 documents in 1 s on
# one core, 2026-12-06), and starting a pool of worker processes about 1.5 s: below this many
# documents one process is done before a pool has started.
IN_PROCESS_MAX_DOCS = 20_000


def config_hash(ws: Workspace) -> str:
    """The config hash curate records with its artifact and `soberan build` compares: its config
    sections and, when the decontam step runs, the texts it decontaminates against."""
    sections = ws.config.section_hash(*CONFIG_SECTIONS)
    if "decontam" not in ws.config.curate.steps:
        return sections
    from soberan.curate.decontam import texts_digest

    try:
        texts = texts_digest(ws.config, ws.hash_cache, ws.root / "work" / "decontam-texts.json")
    finally:
        ws.hash_cache.save()
    return json_sha256({"sections": sections, "benchmark_texts": texts})


def _fingerprint(raw_art: dict, chash: str) -> str:
    return json_sha256({"raw": raw_art["hash"], "config": chash, "version": VERSION})


def _check(ws: Workspace) -> None:
    """Fail before any work on what would otherwise fail halfway."""
    from soberan.config import ConfigError
    from soberan.lang import get_pack

    cur = ws.config.curate
    for code in ws.config.project.languages:
        try:
            get_pack(code)
        except KeyError as e:
            raise ConfigError(f"project.languages: {e.args[0]}") from None
    if "quality" in cur.steps:
        from soberan.curate.quality import QUALITY_FILTERS

        unknown = [f for f in cur.quality.filters if f not in QUALITY_FILTERS]
        if unknown:
            raise ConfigError(f"curate.quality.filters: unknown filter(s) {unknown}; "
                              f"known: {sorted(QUALITY_FILTERS)}")


def _reset(ws: Workspace, work: Path, out: Path, fingerprint: str) -> None:
    """A new input or config: start from scratch, and say so in the chain."""
    existed = work.exists() or out.exists() or (ws.ledger.decisions_dir / STAGE).exists()
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    ws.ledger.remove_decisions([ws.ledger.decisions_dir / STAGE], "curate reset: input or config changed")
    work.mkdir(parents=True)
    (work / "RUN").write_text(fingerprint + "\n")
    if existed:
        ws.ledger.record_event("curate.reset", reason="input corpus or [curate] config changed; "
                                                      "earlier curate outputs and decisions removed")


def run(ws: Workspace, *, executor: str | None = None, workers: int | None = None,
        ray_address: str | None = None, force: bool = False) -> CurateSummary:
    """Curate the newest collected corpus of the workspace into `curated/`. `executor`,
    `workers` and `ray_address` default to the `[curate]` settings."""
    from soberan.curate.executor import executor as make_executor
    from soberan.curate.shard import ShardTask
    from soberan.curate.stats import build_stats, summary_of
    from soberan.documents import check_shards, shard_paths
    from soberan.freshness import freshness
    from soberan.ui import console, progress

    t0 = time.monotonic()
    cfg, cur = ws.config, ws.config.curate
    executor = executor or cur.executor
    ray_address = ray_address or cur.ray_address
    raw_art = ws.ledger.latest_artifact("collect", "corpus")
    if raw_art is None:
        raise FileNotFoundError(f"{ws.root}: no collected corpus in the ledger; run `soberan collect` first")
    inputs = shard_paths(ws.root / raw_art["path"])
    if not inputs:
        raise FileNotFoundError(f"{ws.root / raw_art['path']}: the collected corpus has no shards")
    _check(ws)
    check_shards(inputs)
    chash = config_hash(ws)
    out = ws.stage_dir(STAGE)
    fresh = freshness(ws, STAGE, config_hash=chash, inputs={"collect": raw_art}, takedowns=False)
    if not force and fresh.current:
        art = fresh.artifact
        stats = read_json(out / "stats.json")
        s = summary_of(stats, len(inputs))
        s.path, s.up_to_date, s.artifact, s.seconds = out, True, art, time.monotonic() - t0
        return s

    work = ws.root / "work" / STAGE
    if force:  # start over: the stored signals are measured again too
        from soberan.curate.signals import signals_root

        shutil.rmtree(signals_root(ws.root), ignore_errors=True)
    fp = _fingerprint(raw_art, chash)
    if force or not (work / "RUN").exists() or (work / "RUN").read_text().strip() != fp:
        _reset(ws, work, out, fp)
    passes = plan(list(cur.steps))
    n_workers = workers if workers is not None else cur.workers

    if "decontam" in cur.steps:  # segment benchmark items once, here, not in every worker
        from soberan.curate.steps import Context

        ctx = Context(ws.root, work)
        index = ctx.decontam_index()
        if index is not None:
            for code in cfg.project.languages:
                index.for_pack(ctx.pack(code))

    reports: dict = {}
    # Warm the segmenters in the forkserver for a first run only. After one, most documents are
    # decided from their stored signals, and loading Kiwi (about 5 s a process) was most of a
    # rerun's time (py-spy, benchmarks/curate_vs_datatrove.py); a worker that meets a changed
    # document loads its segmenter itself. A small corpus decided almost wholly from its
    # signals is curated in this process: starting a pool would cost more than it saves.
    import pyarrow.parquet as pq

    from soberan.curate.signals import measured_share, signals_root

    stored = any(signals_root(ws.root).glob("pass*/part-*.parquet"))
    n_docs = sum(pq.ParquetFile(f).metadata.num_rows for f in inputs)
    # Matching the stored signals against the corpus reads every id: only where it can matter.
    if (executor == "local" and stored and n_docs <= IN_PROCESS_MAX_DOCS and (n_workers or 0) != 1
            and (share := measured_share(ws.root, inputs)[0]) >= 0.95):
        console.print(f"curate: {share:.0%} of {n_docs:,} documents decided from their stored signals, "
                      "in this process")
        n_workers = 1
    with make_executor(executor, n_workers or 0, ray_address,
                       () if stored else cfg.project.languages) as ex, \
            progress() as bar:
        for k, p in enumerate(passes):
            final = k == len(passes) - 1
            tasks = []
            for i, src in enumerate(inputs):
                prev = work / f"pass{k - 1}" / "out" / f"part-{i:05d}.parquet"
                dst = (out if final else work / f"pass{k}" / "out") / f"part-{i:05d}.parquet"
                tasks.append(ShardTask(str(ws.root), str(work), k, i, str(src if k == 0 else prev),
                                       str(dst), p.apply, p.steps, p.prepare, final))
            todo = [t for t in tasks if not t.marker.exists()]
            what = ", ".join([f"drop {s}" for s in p.apply] + list(p.steps)) or "copy"
            job = bar.add_task(f"pass {k + 1}/{len(passes)}: {what}", total=len(tasks),
                               completed=len(tasks) - len(todo))
            ex.run(todo, on_done=lambda _c, job=job: bar.advance(job))
            if p.prepare:
                reports.update(_resolve(work / f"pass{k}", list(p.prepare), cur, console))

    _drop_stale_signals(ws, len(passes), len(inputs))
    stats = build_stats(work, len(passes), len(inputs), reports, cur.fuzzy_dedup.model_dump())
    if "decontam" in cur.steps:
        stats["decontam_benchmarks"] = _decontam_report(work)
    write_json(out / "stats.json", stats, ensure_ascii=False, indent=1)
    summary = summary_of(stats, len(inputs))
    art = ws.ledger.record_artifact(stage=STAGE, kind="corpus", path=out, inputs=[raw_art["hash"]],
                                    config_hash=chash,
                                    meta={"input_docs": summary.input_docs,
                                          "output_docs": summary.output_docs,
                                          "dropped": summary.dropped, "redacted": summary.redacted,
                                          "steps": list(cur.steps), "executor": executor})
    if not cur.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    summary.path, summary.artifact, summary.seconds = out, art, time.monotonic() - t0
    return summary


def _drop_stale_signals(ws: Workspace, n_passes: int, n_shards: int) -> None:
    """Signals of passes or shards this run does not have (an earlier config had more), so that
    `--what-if` and `calibrate` read only this run's."""
    import re

    from soberan.curate.signals import signals_root

    for f in signals_root(ws.root).glob("pass*/part-*.parquet"):
        m = re.fullmatch(r"pass(\d+)", f.parent.name), re.fullmatch(r"part-(\d+)\.parquet", f.name)
        if not (m[0] and m[1]) or int(m[0][1]) >= n_passes or int(m[1][1]) >= n_shards:
            f.unlink(missing_ok=True)


def _resolve(pass_dir: Path, steps: list[str], cur, console) -> dict:
    from soberan.curate.dedup import resolve
    from soberan.curate.minhash import MinHashParams
    marker = pass_dir / "resolved.json"
    if marker.exists():
        return read_json(marker)
    console.print(f"resolving {', '.join(steps)} over the whole corpus (DuckDB)")
    report = resolve(pass_dir, steps, MinHashParams(**cur.fuzzy_dedup.model_dump()), cur.memory_limit)
    write_json(marker, report)
    return report


def _decontam_report(work: Path) -> dict:
    import pyarrow.parquet as pq

    out = {}
    for f in sorted((work / "decontam").glob("*.parquet")):
        meta = pq.read_schema(f).metadata or {}
        if b"report" in meta:
            out[f.stem] = json.loads(meta[b"report"])
    return out
