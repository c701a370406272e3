"""`soberan collect`: every configured source to Parquet shards under raw/, with provenance.

For each source, in config order: check the policy (before anything is read), list its inputs,
compare them with the source's state file (same inputs and settings: resume or skip; changed:
start that source over), then stream reader items through the (optional) process pool into the
shard writer. At the end, record each finished source in the ledger and raw/ as the stage's
`corpus` artifact, made from those source records.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from soberan.collect import config_hash
from soberan.collect.convert import convert, convert_batch
from soberan.collect.encoding import known_encoding
from soberan.collect.items import ConvertOptions, Item, Reject, Todo
from soberan.collect.shards import (STATE_DIR, Counts, ShardWriter, SourceState, drop_source,
                                    drop_uncommitted, load_state)
from soberan.config import Config, ConfigError, Source
from soberan.workspace import Workspace

POOL_AFTER = 256  # conversions done in-process before a pool is worth its start-up (~1 s/worker)
CHUNK = 16  # conversions per pool task


@dataclass
class SourceResult:
    name: str
    kind: str
    status: str  # collected | resumed | up to date | taken down
    docs: int = 0
    chars: int = 0
    rejected: int = 0
    rules: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    inputs: int = 0


@dataclass
class CollectSummary:
    sources: list[SourceResult]
    docs: int
    rejected: int
    artifact: str | None  # hash of the corpus artifact record, None when sources are unfinished
    unfinished: list[str] = field(default_factory=list)


# --- planning ---------------------------------------------------------------------------------

def _langs(cfg: Config, source: Source) -> tuple[str, ...]:
    out = [source.lang] if source.lang else []
    return tuple(dict.fromkeys(out + list(cfg.project.languages)))


def convert_options(cfg: Config, source: Source) -> ConvertOptions:
    return ConvertOptions(encoding=source.encoding, langs=_langs(cfg, source), html_format=source.html_format,
                          favor=source.favor, max_record_bytes=cfg.collect.max_record_bytes)


@dataclass
class Plan:
    source: Source
    opts: ConvertOptions
    inputs: list[tuple[Path, str]]  # empty for a crawl
    location: str
    fingerprint: str
    max_member_bytes: int = 256 << 20


def plan_source(cfg: Config, source: Source) -> Plan:
    """Check a source before any work starts: policy, encoding name, inputs present."""
    from soberan.collect.files import list_inputs
    from soberan.policy import check_source

    check_source(cfg, source)
    if source.encoding:
        try:
            known_encoding(source.encoding)
        except ValueError as e:
            raise ConfigError(f"source {source.name!r}: sources.encoding: {e}") from None
    if source.kind == "crawl":
        inputs, location = [], " ".join(source.urls)
    else:
        _, inputs = list_inputs(cfg, source)
        location = cfg.resolve(source.path).as_posix()
    # What decides the documents: the source's own settings (not its politeness knobs), the
    # limits and policy they are checked against, the languages that guide decoding, and the
    # input files as (path, size, mtime). A change in any starts the source over.
    body = {
        "source": source.model_dump(mode="json", exclude={"rate_limit_s", "timeout_s", "description"}),
        "limits": cfg.collect.model_dump(include={"max_doc_bytes", "min_doc_chars", "max_record_bytes",
                                                  "max_archive_member_bytes"}),
        "policy": cfg.policy.model_dump(mode="json"),
        "languages": list(cfg.project.languages),
        "inputs": [(rel, st.st_size, st.st_mtime_ns) for p, rel in inputs for st in [_lstat_if_broken(p)]],
    }
    fp = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return Plan(source, convert_options(cfg, source), inputs, location, fp,
                cfg.collect.max_archive_member_bytes)


def _lstat_if_broken(p: Path):
    try:
        return p.stat()
    except OSError:  # a symlink loop or a dangling link: its own lstat, it is rejected later
        return p.lstat()


# --- reading ----------------------------------------------------------------------------------

class _End:
    """Marks the end of one input (advances the file progress bar and the resume position)."""


END = _End()


def _read_input(plan: Plan, path: Path, rel: str, skip: int) -> Iterator[Item]:
    from soberan.collect.archive import is_archive

    if is_archive(rel) and plan.source.kind != "warc":
        yield from _read_archive(plan, path, rel, skip)
    else:
        yield from _read_one(plan, path, rel, skip)


def _read_archive(plan: Plan, path: Path, rel: str, skip: int) -> Iterator[Item]:
    """Each member of a zip as the file it holds; items are counted over the whole archive,
    so a resumed run skips exactly what was committed."""
    from soberan.collect.archive import members
    from soberan.collect.files import DEFAULT_INCLUDE, glob_match

    kind = plan.source.kind
    patterns = [p for p in DEFAULT_INCLUDE.get(kind, ["**/*"]) if not p.endswith(".zip")]
    n = 0
    for got in members(path, rel, plan.max_member_bytes, lambda name: glob_match(name, patterns)):
        items = _read_one(plan, got[0], got[1], 0) if isinstance(got, tuple) else [got]
        for item in items:
            n += 1
            if n > skip:
                yield item


def _read_one(plan: Plan, path, rel: str, skip: int) -> Iterator[Item]:
    from soberan.collect import records, warc
    from soberan.collect.archive import Member
    from soberan.collect.files import special_file

    s, o = plan.source, plan.opts
    if not isinstance(path, Member) and (problem := special_file(path)) is not None:
        if skip < 1:  # never opened: a FIFO would block, a loop would fail
            yield Reject(problem[0], problem[1], rel)
    elif s.kind == "files" and s.split == "line":
        from soberan.collect.files import read_lines

        yield from read_lines(path, rel, o, skip)
    elif isinstance(path, Member) and s.kind == "files":
        yield Todo("bytes", (path.data, rel, path.name))
    elif s.kind == "jsonl" and rel.lower().endswith((".json", ".json.gz")):
        yield from records.read_json(path, rel, s.fields, o, skip)
    elif s.kind == "files":
        if skip < 1:
            yield Todo("file", (str(path), rel))
    elif s.kind == "jsonl":
        yield from records.read_jsonl(path, rel, s.fields, o, skip)
    elif s.kind == "parquet":
        yield from records.read_parquet(path, rel, s.fields, o, skip)
    elif s.kind == "csv":
        yield from records.read_csv(path, rel, s.fields, o, s.delimiter, skip, s.header, s.columns)
    elif s.kind == "warc":
        yield from warc.read_warc(path, rel, o, skip)


def stream_inputs(plan: Plan, token: dict) -> Iterator[tuple[Item | _End, dict]]:
    """(item, position after it) over every input, starting at `token` = {"i": input, "n": items
    of that input already committed}."""
    i0, n0 = token.get("i", 0), token.get("n", 0)
    for i in range(i0, len(plan.inputs)):
        path, rel = plan.inputs[i]
        skip = n0 if i == i0 else 0
        for k, item in enumerate(_read_input(plan, path, rel, skip), skip + 1):
            yield item, {"i": i, "n": k}
        yield END, {"i": i + 1, "n": 0}


def resolve(stream: Iterator[tuple[object, object]], opts: ConvertOptions,
            workers: int) -> Iterator[tuple[object, object]]:
    """Finish the Todos of `stream` in order: inline at first, then, for a long source, on a
    process pool (`soberan.pool`: workers fork from a forkserver, not from this threaded process)."""
    todos = 0
    it = iter(stream)
    for item, tok in it:
        if isinstance(item, Todo):
            todos += 1
            yield convert(item, opts), tok
            if todos >= POOL_AFTER and workers > 1:
                break
        else:
            yield item, tok
    else:
        return
    from soberan.pool import process_pool

    ex = process_pool(workers)
    pending: deque = deque()  # (future or None, [(item, tok)])

    def drain(entry) -> Iterator[tuple[object, object]]:
        fut, pairs = entry
        done = iter(fut.result()) if fut is not None else iter(())
        for item, tok in pairs:
            yield (next(done) if isinstance(item, Todo) else item), tok

    try:
        chunk: list = []
        for pair in it:
            chunk.append(pair)
            if len(chunk) >= CHUNK:
                work = [i for i, _ in chunk if isinstance(i, Todo)]
                pending.append((ex.submit(convert_batch, work, opts) if work else None, chunk))
                chunk = []
                while len(pending) > workers * 4:
                    yield from drain(pending.popleft())
        if chunk:
            work = [i for i, _ in chunk if isinstance(i, Todo)]
            pending.append((ex.submit(convert_batch, work, opts) if work else None, chunk))
        while pending:
            yield from drain(pending.popleft())
    finally:
        ex.shutdown(wait=False, cancel_futures=True)


# --- one source -------------------------------------------------------------------------------

def _workers(n: int) -> int:
    if n:
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def collect_source(ws: Workspace, plan: Plan, *, rules=None, progress=None) -> SourceResult:
    cfg, led = ws.config, ws.ledger
    raw = ws.stage_dir("collect")
    src = plan.source
    state = load_state(raw, src.name)
    if state is not None and state.fingerprint != plan.fingerprint:
        drop_source(raw, led, src.name)
        led.record_event("collect.restart", source=src.name,
                         reason="the source's inputs, settings or the policy changed since its last run")
        state = None
    if state is not None and state.complete:
        return _result(src, "up to date", state.counts, len(plan.inputs))
    status = "resumed" if state is not None else "collected"
    if state is None:
        state = SourceState(plan.fingerprint, started=dt.datetime.now(dt.timezone.utc).isoformat())
    else:
        drop_uncommitted(raw, led, src.name, state.commits)

    writer = ShardWriter(raw=raw, ledger=led, source=src, policy=cfg.policy, settings=cfg.collect,
                         state=state, takedown_rules=rules)
    crawler = None
    if src.kind == "crawl":
        from soberan.collect.crawl import Crawler

        taken = None
        if rules and rules.url_globs:
            from soberan.takedown import is_taken_down

            taken = lambda url: is_taken_down(rules, url=url, source=src.name)  # noqa: E731
        crawler = Crawler(src, cfg.policy, plan.opts, state=state.token or None, taken_down=taken)
        stream: Iterator = ((item, crawler.snapshot) for item in crawler.items())
        total = src.max_pages
        done0 = crawler.fetched
    else:
        stream = resolve(stream_inputs(plan, state.token), plan.opts, _workers(cfg.collect.workers))
        total = len(plan.inputs)
        done0 = state.token.get("i", 0)

    t_in = progress.add_task(f"{src.name}: {'pages' if crawler else 'files'}", total=total, completed=done0) \
        if progress else None
    t_docs = progress.add_task(f"{src.name}: documents", total=None, completed=state.counts.docs) \
        if progress else None
    token_of: Callable[[object], dict] = lambda t: t() if callable(t) else t  # noqa: E731
    last = None
    try:
        for item, tok in stream:
            last = tok
            if item is END:
                if progress:
                    progress.advance(t_in)
            elif writer.add(item) and progress:
                progress.advance(t_docs)
            if crawler and progress:
                progress.update(t_in, completed=crawler.fetched)
            if writer.due():
                writer.commit(token_of(tok))
        final = token_of(last) if last is not None else state.token
        writer.commit(final, complete=True)
    finally:
        if crawler:
            crawler.close()
    return _result(src, status, writer.state.counts, len(plan.inputs))


def _result(src: Source, status: str, c: Counts, inputs: int) -> SourceResult:
    return SourceResult(src.name, src.kind, status, c.docs, c.chars, c.rejected, dict(c.rules),
                        dict(c.skipped), inputs)


# --- the stage --------------------------------------------------------------------------------

@contextmanager
def _exclusive(ws: Workspace) -> Iterator[None]:
    """One collect per workspace at a time: two would write the same shard numbers."""
    ws.ledger.dir.mkdir(parents=True, exist_ok=True)
    with open(ws.ledger.dir / "collect.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{ws.root}: another `soberan collect` is running in this workspace") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _takedown_rules(ws: Workspace):
    from soberan.takedown import load_rules

    rules = load_rules(ws)
    return rules if rules else None


def run(ws: Workspace, sources: list[str] | None = None, fresh: bool = False,
        show_progress: bool = True) -> CollectSummary:
    """Collect the configured sources (or only those named) into raw/, resuming unfinished ones.

    `fresh` discards what the named sources collected before. The corpus artifact is recorded
    when every configured source is finished."""
    from soberan.ui import progress as make_progress

    cfg, led = ws.config, ws.ledger
    if not cfg.sources:
        raise ConfigError(f"{ws.root / 'soberan.toml'}: no [[sources]] to collect")
    names = [s.name for s in cfg.sources]
    unknown = [n for n in sources or [] if n not in names]
    if unknown:
        raise ConfigError(f"no source named {', '.join(unknown)} in soberan.toml (sources: {', '.join(names)})")
    chosen = [s for s in cfg.sources if not sources or s.name in sources]
    rules = _takedown_rules(ws)
    raw = ws.stage_dir("collect")
    results: list[SourceResult] = []
    with _exclusive(ws):
        plans = []
        for s in chosen:
            if rules and s.name in rules.sources:
                drop_source(raw, led, s.name)
                results.append(SourceResult(s.name, s.kind, "taken down"))
                continue
            plans.append(plan_source(cfg, s))  # every source is checked before any is read
        if sources is None:
            _drop_orphans(ws, set(names))
        with make_progress() if show_progress else _nullcontext() as prog:
            for plan in plans:
                if fresh:
                    drop_source(raw, led, plan.source.name)
                results.append(collect_source(ws, plan, rules=rules, progress=prog))
        for r in results:
            if r.status in ("collected", "resumed"):
                plan = next(p for p in plans if p.source.name == r.name)
                s = plan.source
                led.record_source(name=s.name, kind=s.kind, location=plan.location, license=s.license,
                                  jurisdiction=s.jurisdiction, docs=r.docs, rejected=r.rejected,
                                  fingerprint=plan.fingerprint, description=s.description)
        art, unfinished = _record_corpus(ws, rules)
    order = {n: i for i, n in enumerate(names)}
    results.sort(key=lambda r: order[r.name])
    return CollectSummary(results, sum(r.docs for r in results), sum(r.rejected for r in results),
                          art["hash"] if art else None, unfinished)


@contextmanager
def _nullcontext():
    yield None


def _drop_orphans(ws: Workspace, names: set[str]) -> None:
    """A source removed from the config leaves the corpus too (its shards would otherwise reach
    curate and the model without being in the config anyone reads)."""
    raw = ws.stage_dir("collect")
    if not raw.exists():
        return
    found = ({p.name for p in raw.iterdir() if p.is_dir() and p.name != STATE_DIR}
             | {p.stem for p in (raw / STATE_DIR).glob("*.json")})
    gone = sorted(found - names)
    for name in gone:
        drop_source(raw, ws.ledger, name)
    if gone:
        ws.ledger.record_event("collect.removed", sources=gone,
                               reason="no longer in soberan.toml [[sources]]")


def _record_corpus(ws: Workspace, rules) -> tuple[dict | None, list[str]]:
    cfg, led = ws.config, ws.ledger
    raw = ws.stage_dir("collect")
    per: dict[str, dict] = {}
    unfinished = []
    inputs = []
    source_records = {r["name"]: r for r in led.records("source")}
    for s in cfg.sources:
        if rules and s.name in rules.sources:
            per[s.name] = {"kind": s.kind, "status": "taken down", "docs": 0}
            continue
        st = load_state(raw, s.name)
        if st is None or not st.complete:
            unfinished.append(s.name)
            continue
        c = st.counts
        per[s.name] = {"kind": s.kind, "license": s.license, "jurisdiction": s.jurisdiction,
                       "docs": c.docs, "chars": c.chars, "rejected": c.rejected, "rejections": c.rules}
        if s.name in source_records:
            inputs.append(source_records[s.name]["hash"])
    if unfinished:
        return None, unfinished
    raw.mkdir(parents=True, exist_ok=True)
    meta = {"sources": per, "docs": sum(v["docs"] for v in per.values()),
            "rejected": sum(v.get("rejected", 0) for v in per.values())}
    art = led.record_artifact(stage="collect", kind="corpus", path=raw, inputs=inputs,
                              config_hash=config_hash(ws), meta=meta)
    return art, []

