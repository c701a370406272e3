"""Committing one source's output: Parquet shards, rejection records, and the resume state.

A commit writes, in this order, `raw/<source>/part-<k>.parquet` (atomically), the rejections of
the same stretch as ledger decision batch `<source>.<k>`, then `raw/_state/<source>.json` with
the reader's position after that stretch. A kill before the state file is replaced leaves at
most an orphan shard `k` that the next run deletes and rewrites, so a resumed run neither
loses nor doubles a document, and its rejections are recorded exactly once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa

from soberan.collect.items import Doc, Reject, Skip
from soberan.common import read_json, write_json
from soberan.documents import DOC_SCHEMA, doc_id, text_sha256, write_parquet_atomic
from soberan.ledger import Ledger
from soberan.policy import document_violation

STATE_DIR = "_state"


@dataclass
class Counts:
    docs: int = 0
    chars: int = 0
    rejected: int = 0
    rules: dict[str, int] = field(default_factory=dict)  # rejections by rule
    skipped: dict[str, int] = field(default_factory=dict)  # non-documents by kind

    def merge(self, other: "Counts") -> None:
        self.docs += other.docs
        self.chars += other.chars
        self.rejected += other.rejected
        for mine, theirs in ((self.rules, other.rules), (self.skipped, other.skipped)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v


@dataclass
class SourceState:
    """raw/_state/<source>.json: how far a source got, and for which inputs and settings."""

    fingerprint: str
    commits: int = 0  # committed stretches; shard and decision batch k < commits are final
    token: dict = field(default_factory=dict)  # reader position after the last commit
    complete: bool = False
    counts: Counts = field(default_factory=Counts)
    started: str = ""
    finished: str | None = None


def state_path(raw: Path, name: str) -> Path:
    return raw / STATE_DIR / f"{name}.json"


def load_state(raw: Path, name: str) -> SourceState | None:
    p = state_path(raw, name)
    if not p.exists():
        return None
    d = read_json(p)
    d["counts"] = Counts(**d.get("counts", {}))
    return SourceState(**d)


def save_state(raw: Path, name: str, st: SourceState) -> None:
    p = state_path(raw, name)
    write_json(p, asdict(st), ensure_ascii=False, indent=1, sort_keys=True)


def _numbered(folder: Path, pattern: re.Pattern) -> list[tuple[int, Path]]:
    if not folder.exists():
        return []
    return [(int(m[1]), p) for p in folder.iterdir() if (m := pattern.match(p.name))]


_SHARD = re.compile(r"^part-(\d{6})\.parquet$")


def decision_files(led: Ledger, name: str) -> list[tuple[int, Path]]:
    return _numbered(led.decisions_dir / "collect", re.compile(rf"^{re.escape(name)}\.(\d{{6}})\.parquet$"))


def drop_source(raw: Path, led: Ledger, name: str) -> None:
    """Remove everything one source produced: shards, state and its collect decisions."""
    shutil.rmtree(raw / name, ignore_errors=True)
    state_path(raw, name).unlink(missing_ok=True)
    led.remove_decisions([p for _, p in decision_files(led, name)], f"source {name} dropped")


def drop_uncommitted(raw: Path, led: Ledger, name: str, commits: int) -> int:
    """Delete shards and decision batches a killed run wrote past its last commit."""
    n = 0
    for k, p in _numbered(raw / name, _SHARD):
        if k >= commits:
            p.unlink()
            n += 1
    late = [p for k, p in decision_files(led, name) if k >= commits]
    led.remove_decisions(late, f"source {name}: written after the last commit of a killed run")
    return n + len(late)


class ShardWriter:
    """Buffers one source's documents and rejections, checks each document, and commits."""

    def __init__(self, *, raw: Path, ledger: Ledger, source, policy, settings, state: SourceState,
                 takedown_rules=None):
        self.raw, self.ledger, self.source, self.policy = raw, ledger, source, policy
        self.settings, self.state, self.rules = settings, state, takedown_rules
        self.cols: dict[str, list] = {f.name: [] for f in DOC_SCHEMA}
        self.rejects: list[dict] = []
        self.pending = Counts()
        self.last_commit = time.monotonic()

    # --- one item ----------------------------------------------------------------------------

    def add(self, item) -> bool:
        """Take one reader item; True when it became a document."""
        if isinstance(item, Doc):
            return self._doc(item)
        if isinstance(item, Reject):
            self._reject(item)
        elif isinstance(item, Skip):
            self.pending.skipped[item.what] = self.pending.skipped.get(item.what, 0) + 1
        return False

    def _reject(self, r: Reject, sha: str | None = None) -> None:
        if sha is None:
            sha = text_sha256(r.text) if r.text is not None else ""
        self.rejects.append({
            "doc_id": doc_id(self.source.name, r.locator, sha), "step": self.source.kind,
            "action": "rejected", "rule": r.rule, "reason": f"{r.locator}: {r.reason}",
            "source": self.source.name})
        self.pending.rejected += 1
        self.pending.rules[r.rule] = self.pending.rules.get(r.rule, 0) + 1

    def _doc(self, d: Doc) -> bool:
        s, src = self.settings, self.source
        try:
            b = d.text.encode("utf-8")
        except UnicodeEncodeError as e:
            self._reject(Reject("invalid_unicode", f"lone surrogate at character {e.start}", d.locator, d.text))
            return False
        sha = hashlib.sha256(b).hexdigest()

        def no(rule: str, reason: str) -> bool:
            self._reject(Reject(rule, reason, d.locator), sha)
            return False

        if len(b) > s.max_doc_bytes:
            return no("too_long", f"{len(b)} bytes > collect.max_doc_bytes ({s.max_doc_bytes})")
        stripped = len(d.text.strip())
        if stripped == 0:
            return no("empty", "no text" if not d.text else "only whitespace")
        if stripped < s.min_doc_chars:
            return no("too_short", f"{stripped} characters < collect.min_doc_chars ({s.min_doc_chars})")
        lic, jur = d.license or src.license, (d.jurisdiction or src.jurisdiction).upper()
        if bad := document_violation(self.policy, lic, jur):
            return no(bad[0], f"record {bad[1]}")
        c = self.cols
        c["id"].append(doc_id(src.name, d.locator, sha))
        c["text"].append(d.text)
        c["source"].append(src.name)
        c["url"].append(d.url)
        c["license"].append(lic)
        c["jurisdiction"].append(jur)
        c["lang"].append(d.lang or src.lang)
        c["lang_score"].append(None)
        c["collected_at"].append(dt.datetime.now(dt.timezone.utc))
        c["date"].append(d.date)
        c["title"].append(d.title)
        c["sha256"].append(sha)
        self.pending.docs += 1
        self.pending.chars += len(d.text)
        return True

    # --- commits -----------------------------------------------------------------------------

    def due(self) -> bool:
        n = len(self.cols["id"])
        return (n >= self.settings.shard_docs or len(self.rejects) >= self.settings.shard_docs
                or (bool(n or self.rejects) and time.monotonic() - self.last_commit >= self.settings.checkpoint_s))

    def _table(self) -> pa.Table:
        table = pa.Table.from_pydict(self.cols, schema=DOC_SCHEMA)
        if self.rules and table.num_rows:
            import pyarrow.compute as pc
            from soberan.takedown import takedown_mask

            mask = takedown_mask(self.rules, table)
            if pc.any(mask).as_py():
                for row in table.filter(mask).select(["id", "url", "text"]).to_pylist():
                    self.rejects.append({
                        "doc_id": row["id"], "step": self.source.kind, "action": "rejected",
                        "rule": "takedown", "source": self.source.name,
                        "reason": f"{row['url']}: named by a take-down request (ledger/takedowns.parquet)"})
                    self.pending.docs -= 1
                    self.pending.chars -= len(row["text"])
                    self.pending.rejected += 1
                    self.pending.rules["takedown"] = self.pending.rules.get("takedown", 0) + 1
                table = table.filter(pc.invert(mask))
        return table

    def commit(self, token: dict, complete: bool = False) -> None:
        k = self.state.commits
        table = self._table()
        wrote = False
        if table.num_rows:
            write_parquet_atomic(table, self.raw / self.source.name / f"part-{k:06d}.parquet")
            wrote = True
        if self.rejects:
            self.ledger.write_decisions("collect", f"{self.source.name}.{k:06d}", pa.Table.from_pylist(self.rejects))
            wrote = True
        if wrote:
            self.state.commits = k + 1
        self.state.token = token
        self.state.counts.merge(self.pending)
        self.state.complete = complete
        if complete:
            self.state.finished = dt.datetime.now(dt.timezone.utc).isoformat()
        save_state(self.raw, self.source.name, self.state)
        self.cols = {f.name: [] for f in DOC_SCHEMA}
        self.rejects = []
        self.pending = Counts()
        self.last_commit = time.monotonic()
