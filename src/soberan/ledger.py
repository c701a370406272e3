"""The provenance ledger: a hash-chained record of sources and artifacts, and a decision log.

Layout inside a workspace (DESIGN.md, "The ledger"):

    ledger/records.jsonl             append-only, hash-chained: sources, artifacts, events
    ledger/HEAD                      sequence number and hash of the last record
    ledger/decisions/<stage>/*.parquet  per-document decisions, written in batches

The chain is JSON lines rather than a database file so that any tool can read it and an edit is
visible to `diff`; DuckDB queries it and the Parquet decision log in place, so nothing is loaded
into Python row by row. HEAD makes the removal of the last records visible too, which a chain
alone cannot.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from soberan.documents import tree_sha256, write_parquet_atomic

GENESIS = "0" * 64

DECISION_SCHEMA = pa.schema([
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("stage", pa.string(), nullable=False),
    pa.field("step", pa.string(), nullable=False),
    pa.field("action", pa.string(), nullable=False),  # kept | dropped | redacted | rejected
    pa.field("rule", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("source", pa.string()),
    pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
])

ACTIONS = ("kept", "dropped", "redacted", "rejected")


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def record_hash(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(_canonical(body)).hexdigest()


@dataclass(frozen=True)
class Problem:
    seq: int | None
    what: str

    def __str__(self) -> str:
        return f"record {self.seq}: {self.what}" if self.seq is not None else self.what


class Ledger:
    """The ledger of one workspace. Cheap to create; every call opens what it needs."""

    def __init__(self, workspace_root: Path):
        self.ws = Path(workspace_root)
        self.dir = self.ws / "ledger"
        self.records_path = self.dir / "records.jsonl"
        self.head_path = self.dir / "HEAD"
        self.decisions_dir = self.dir / "decisions"

    # --- the chain -------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _head(self) -> tuple[int, str]:
        if not self.head_path.exists():
            return -1, GENESIS
        seq, h = self.head_path.read_text().split()
        return int(seq), h

    def append(self, type: str, body: dict) -> dict:
        """Append one record to the chain and return it (with its `seq` and `hash`)."""
        with self._locked():
            seq, prev = self._head()
            rec = {"seq": seq + 1, "time": now().isoformat(), "type": type, "prev": prev, **body}
            rec["hash"] = record_hash(rec)
            with open(self.records_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            tmp = self.head_path.with_suffix(".tmp")
            tmp.write_text(f"{rec['seq']} {rec['hash']}\n")
            os.replace(tmp, self.head_path)
            return rec

    def records(self, type: str | None = None) -> list[dict]:
        if not self.records_path.exists():
            return []
        out = []
        with open(self.records_path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    rec = json.loads(line)
                    if type is None or rec.get("type") == type:
                        out.append(rec)
        return out

    # --- typed helpers ---------------------------------------------------------------------

    def record_source(self, *, name: str, kind: str, location: str, license: str,
                      jurisdiction: str, **extra) -> dict:
        return self.append("source", {"name": name, "kind": kind, "location": location,
                                      "license": license, "jurisdiction": jurisdiction,
                                      "collected_at": now().isoformat(), **extra})

    def rel(self, path: Path | str) -> str:
        p = Path(path)
        try:
            return p.resolve().relative_to(self.ws.resolve()).as_posix()
        except ValueError:
            return p.resolve().as_posix()

    def record_artifact(self, *, stage: str, kind: str, path: Path | str,
                        inputs: Sequence[str] = (), config_hash: str = "",
                        meta: dict | None = None) -> dict:
        """Record a file or folder a stage wrote. `inputs` are hashes of the artifact records
        it was made from, so the chain also answers "what must be rebuilt if X goes"."""
        p = Path(path)
        full = p if p.is_absolute() else self.ws / p
        if not full.exists():
            raise FileNotFoundError(f"artifact {full} does not exist")
        return self.append("artifact", {
            "stage": stage, "kind": kind, "path": self.rel(full),
            "sha256": tree_sha256(full), "inputs": list(inputs),
            "config_hash": config_hash, "meta": meta or {},
        })

    def record_event(self, event: str, **body) -> dict:
        return self.append("event", {"event": event, **body})

    def artifacts(self, stage: str | None = None, kind: str | None = None,
                  current: bool = True) -> list[dict]:
        """Artifact records, oldest first. With `current`, only the newest record per path, and
        none whose path was retired (deleted on purpose, e.g. by a take-down rebuild)."""
        recs = [r for r in self.records("artifact")
                if (stage is None or r["stage"] == stage) and (kind is None or r["kind"] == kind)]
        if not current:
            return recs
        retired = {}
        for e in self.records("event"):
            if e.get("event") == "retire":
                retired[e["path"]] = e["seq"]
        latest: dict[str, dict] = {}
        for r in recs:
            latest[r["path"]] = r
        return [r for r in latest.values() if retired.get(r["path"], -1) < r["seq"]]

    def latest_artifact(self, stage: str, kind: str, role: str | None = None) -> dict | None:
        """The newest current artifact of a stage and kind. `role` picks among several of one
        kind by `meta.role` (train records the nation's model as "main", beside "baseline" and
        "chat"); records without a role count as "main"."""
        recs = self.artifacts(stage, kind)
        if role is not None:
            recs = [r for r in recs if (r.get("meta") or {}).get("role", "main") == role]
        return max(recs, key=lambda r: r["seq"]) if recs else None

    def retire(self, path: Path | str, reason: str) -> dict:
        return self.record_event("retire", path=self.rel(self.ws / path), reason=reason)

    # --- verification ----------------------------------------------------------------------

    def verify(self, check_files: bool = True) -> list[Problem]:
        """Re-hash the chain and the current artifacts; return every problem found."""
        problems: list[Problem] = []
        if not self.records_path.exists():
            return [Problem(None, f"no ledger at {self.records_path}")]
        prev, expected_seq = GENESIS, 0
        with open(self.records_path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    problems.append(Problem(None, f"line {lineno}: not valid JSON (edited?)"))
                    prev = None
                    continue
                seq = rec.get("seq")
                if seq != expected_seq:
                    problems.append(Problem(seq, f"expected record {expected_seq} here "
                                                 "(a record was removed or reordered)"))
                if prev is not None and rec.get("prev") != prev:
                    problems.append(Problem(seq, "does not chain to the record before it"))
                if record_hash(rec) != rec.get("hash"):
                    problems.append(Problem(seq, f"{rec.get('type')} record was changed "
                                                 "(its hash no longer matches its content)"))
                prev, expected_seq = rec.get("hash"), (seq if isinstance(seq, int) else expected_seq) + 1
        head_seq, head_hash = self._head()
        if head_seq != expected_seq - 1 or head_hash != prev:
            problems.append(Problem(head_seq, f"HEAD says the last record is {head_seq}, the chain "
                                              f"ends at {expected_seq - 1} (records removed?)"))
        if check_files:
            for art in self.artifacts():
                full = self.ws / art["path"] if not Path(art["path"]).is_absolute() else Path(art["path"])
                if not full.exists():
                    problems.append(Problem(art["seq"], f"artifact {art['path']} "
                                                        f"({art['stage']}/{art['kind']}) was removed"))
                elif tree_sha256(full) != art["sha256"]:
                    problems.append(Problem(art["seq"], f"artifact {art['path']} "
                                                        f"({art['stage']}/{art['kind']}) was changed"))
        return problems

    # --- per-document decisions ------------------------------------------------------------

    def write_decisions(self, stage: str, key: str, table: pa.Table) -> Path | None:
        """Write one batch of decisions as one Parquet file, atomically.

        `key` names the unit of work (an input shard, a step of a run): writing the same key again
        replaces the file, so a resumed run never doubles a decision.
        """
        if table.num_rows == 0:
            return None
        # Sorted by doc_id so that DuckDB's row-group statistics skip most files in a lineage lookup.
        table = conform(table, DECISION_SCHEMA, stage=stage).sort_by("doc_id")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
        return write_parquet_atomic(table, self.decisions_dir / stage / f"{safe}.parquet")

    def decisions_glob(self) -> str:
        return (self.decisions_dir / "**" / "*.parquet").as_posix()

    def connect(self):
        """A DuckDB connection with views `decisions`, `records`, `artifacts`, `sources`."""
        import duckdb

        con = duckdb.connect()
        dec = list(self.decisions_dir.rglob("*.parquet")) if self.decisions_dir.exists() else []
        if dec:
            con.execute(f"CREATE VIEW decisions AS SELECT * FROM read_parquet('{self.decisions_glob()}', "
                        "union_by_name=true)")
        else:
            con.execute("CREATE TABLE decisions (doc_id VARCHAR, stage VARCHAR, step VARCHAR, "
                        "action VARCHAR, rule VARCHAR, reason VARCHAR, source VARCHAR, "
                        "time TIMESTAMPTZ)")
        if self.records_path.exists() and self.records_path.stat().st_size:
            con.execute(f"CREATE VIEW records AS SELECT * FROM read_json_auto('{self.records_path.as_posix()}', "
                        "format='newline_delimited', union_by_name=true)")
        else:
            con.execute("CREATE TABLE records (seq BIGINT, type VARCHAR)")
        return con


def conform(table: pa.Table, schema: pa.Schema, **constants) -> pa.Table:
    """Give a decision (or any) table exactly `schema`: fill missing columns with constants or
    nulls, cast the rest. Lets stages pass only the columns they know."""
    n = table.num_rows
    cols = []
    for field in schema:
        if field.name in table.column_names:
            cols.append(table.column(field.name).cast(field.type))
        elif field.name in constants:
            cols.append(pa.array([constants[field.name]] * n, field.type))
        elif field.name == "time":
            cols.append(pa.array([now()] * n, field.type))
        else:
            cols.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(cols, schema=schema)
