"""The provenance ledger: a hash-chained record of sources and artifacts, and a decision log.

Layout inside a workspace (DESIGN.md, "The ledger"):

    ledger/records.jsonl             append-only, hash-chained: sources, artifacts, events
    ledger/HEAD                      sequence number and hash of the last record
    ledger/decisions/<stage>/*.parquet  per-document decisions, written in batches

The chain is JSON lines rather than a database file so that any tool can read it and an edit is
visible to `diff`; DuckDB queries it and the Parquet decision log in place, so nothing is loaded
into Python row by row. HEAD makes the removal of the last records visible too, which a chain
alone cannot.

HEAD lives in the workspace, so whoever can write the workspace can rewrite it along with the
chain. Every append is therefore also *anchored*: its sequence number and hash are appended to a
file outside the workspace (`anchor_dir()`, `~/.local/state/soberan/anchors/` by default), and
`verify` checks the chain against it. A cut chain, a record edited and every later one re-hashed,
or a chain deleted outright no longer matches what the anchor saw. Every decisions Parquet file
is hashed into the chain as it is written, so a deleted row, an edited reason or a deleted file
fails `verify` too.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from soberan.documents import file_sha256, tree_sha256, write_parquet_atomic

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


ANCHOR_ENV = "SOBERAN_ANCHOR_DIR"
TORN = "torn_tail"  # the event that records a torn last line, kept aside


def anchor_dir() -> Path:
    """Where chains are anchored: `$SOBERAN_ANCHOR_DIR`, else `$XDG_STATE_HOME/soberan/anchors`
    (`~/.local/state/soberan/anchors`). Outside every workspace on purpose: it is what someone
    who can write a workspace does not hold."""
    if os.environ.get(ANCHOR_ENV):
        return Path(os.environ[ANCHOR_ENV]).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "soberan" / "anchors"


def anchor_path(records_path: Path) -> Path:
    """The anchor file of one chain, named by the chain's absolute path."""
    where = str(Path(records_path).resolve())
    return anchor_dir() / f"{hashlib.sha256(where.encode()).hexdigest()[:32]}.anchors"


def read_anchors(path: Path) -> dict[int, str]:
    """seq -> hash of every anchored record (a torn last anchor line is ignored)."""
    out: dict[int, str] = {}
    if not path.exists():
        return out
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if line.endswith("\n") and len(parts) == 2 and parts[0].isdigit() and len(parts[1]) == 64:
                out[int(parts[0])] = parts[1]
    return out


@dataclass(frozen=True)
class Problem:
    seq: int | None
    what: str

    def __str__(self) -> str:
        return f"record {self.seq}: {self.what}" if self.seq is not None else self.what


class Ledger:
    """The ledger of one workspace. Cheap to create; every call opens what it needs."""

    file_mode = 0o644  # the audit log narrows it: its records name who asked what

    def __init__(self, workspace_root: Path):
        self.ws = Path(workspace_root)
        self.dir = self.ws / "ledger"
        self.records_path = self.dir / "records.jsonl"
        self.head_path = self.dir / "HEAD"
        self.decisions_dir = self.dir / "decisions"
        self._anchor_warned = False

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
        try:
            seq, h = self.head_path.read_text().split()
            return int(seq), h
        except (FileNotFoundError, ValueError):
            return -1, GENESIS

    def _last_record(self) -> dict | None:
        """The chain's last whole record, read from its end (the file can be large)."""
        if not self.records_path.exists():
            return None
        with open(self.records_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = pos = f.tell()
            while pos > 0:
                step = min(1 << 16, pos)
                f.seek(pos - step)
                chunk = f.read(step)
                # the newline that ends the line before the last one
                nl = chunk.rfind(b"\n", 0, len(chunk) - (1 if pos == end else 0))
                if nl >= 0:
                    pos = pos - step + nl + 1
                    break
                pos -= step
            f.seek(pos)
            line = f.read(end - pos)
        try:
            rec = json.loads(line)
        except ValueError:
            return None
        return rec if isinstance(rec, dict) else None

    def _open_append(self, path: Path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.file_mode)
        return os.fdopen(fd, "a", encoding="utf-8")

    def _write_record(self, rec: dict) -> dict:
        """Append a finished record, move HEAD to it, anchor it. Under the lock."""
        rec["hash"] = record_hash(rec)
        with self._open_append(self.records_path) as f:
            f.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp = self.head_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self.file_mode)
        with os.fdopen(fd, "w") as f:
            f.write(f"{rec['seq']} {rec['hash']}\n")
        os.replace(tmp, self.head_path)
        self._anchor(rec)
        return rec

    def _anchor(self, rec: dict) -> None:
        """Append (seq, hash) to the chain's anchor file outside the workspace. The chain is
        written first, so a crash between the two leaves the chain ahead of its anchor, which
        `verify` accepts; an anchor ahead of the chain is what a cut looks like."""
        path = anchor_path(self.records_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if rec["seq"] == 0 and path.exists():
                # A new chain where an earlier one stood (`rm -rf demo && soberan init demo`): the
                # earlier anchor is kept beside, named, and `verify` notes it, instead of failing
                # the new chain against records it never had.
                os.replace(path, path.with_name(f"{path.name}.replaced-{now().strftime('%Y%m%dT%H%M%S%f')}"))
            new = not path.exists()
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                if new:  # which chain this is, for a person reading the anchor folder
                    f.write(f"# {self.records_path.resolve()}\n")
                f.write(f"{rec['seq']} {rec['hash']}\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            # Anchoring must not stop a build or a server; the chain itself is intact, and
            # `verify` says the anchor lags. Said once per process, not once per record.
            if not self._anchor_warned:
                print(f"warning: cannot anchor {self.records_path} in {path.parent}: {e} "
                      f"(set {ANCHOR_ENV} to a writable folder outside the workspace)", file=sys.stderr)
                self._anchor_warned = True

    def _last_complete(self) -> tuple[int, str]:
        """Sequence number and hash of the chain's last complete record (not HEAD's word)."""
        if not self.records_path.exists():
            return -1, GENESIS
        with open(self.records_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            pos, tail = end, b""
            while pos > 0:  # read backwards until a whole line is in hand
                step = min(1 << 16, pos)
                pos -= step
                f.seek(pos)
                tail = f.read(step) + tail
                lines = [ln for ln in tail.split(b"\n") if ln.strip()]
                if len(lines) >= 2 or (pos == 0 and lines):
                    try:
                        rec = json.loads(lines[-1])
                        return int(rec["seq"]), rec["hash"]
                    except (ValueError, KeyError, TypeError):
                        return self._head()  # an edited line: verify names it
        return -1, GENESIS

    def recover_torn_tail(self) -> dict | None:
        """A last line without its newline is a write that never finished (a crash, a full disk,
        a truncation). Keep its bytes aside in a file next to the chain, cut the chain back to
        its last whole record, and record that as an event naming the file. Under the lock.
        Returns the event, or None when the chain ends cleanly."""
        if not self.records_path.exists():
            return None
        with open(self.records_path, "rb+") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size == 0:
                return None
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return None
            pos = size
            while pos > 0:
                step = min(1 << 16, pos)
                f.seek(pos - step)
                nl = f.read(step).rfind(b"\n")
                if nl >= 0:
                    pos = pos - step + nl + 1
                    break
                pos -= step
            f.seek(pos)
            torn = f.read()
            stamp = now().strftime("%Y%m%dT%H%M%S%f")
            aside = self.records_path.with_name(f"{self.records_path.name}.torn-{stamp}")
            fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_mode)
            with os.fdopen(fd, "wb") as out:
                out.write(torn)
                out.flush()
                os.fsync(out.fileno())
            f.truncate(pos)
            f.flush()
            os.fsync(f.fileno())
        seq, prev = self._last_complete()
        head_seq, head_hash = self._head()
        rec = {"seq": seq + 1, "time": now().isoformat(), "type": "event", "prev": prev,
               "event": TORN, "kept_aside": aside.name, "torn_bytes": len(torn)}
        if head_seq == seq + 1:
            # HEAD (and the anchor) had taken the torn record: this event stands in its place.
            rec["replaces"] = {"seq": head_seq, "hash": head_hash}
        return self._write_record(rec)

    def append(self, type: str, body: dict) -> dict:
        """Append one record to the chain and return it (with its `seq` and `hash`)."""
        with self._locked():
            self.recover_torn_tail()
            seq, prev = self._head()
            last = self._last_record()
            if last is not None and isinstance(last.get("seq"), int) and last["seq"] > seq:
                # Killed after the chain's fsync and before HEAD moved: the chain is the truth, or
                # the next record would repeat a number.
                seq, prev = last["seq"], last["hash"]
            rec = {"seq": seq + 1, "time": now().isoformat(), "type": type, "prev": prev, **body}
            return self._write_record(rec)

    def recover(self) -> dict | None:
        """Recover a torn last line now (see `recover_torn_tail`); the event, or None."""
        if not self.records_path.exists():
            return None
        with self._locked():
            return self.recover_torn_tail()

    def records(self, type: str | None = None) -> list[dict]:
        """Every readable record. A line that is not JSON (torn or edited) is skipped here, never
        fatal: `verify` is what names it."""
        if not self.records_path.exists():
            return []
        out = []
        with open(self.records_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.strip():
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(rec, dict) and (type is None or rec.get("type") == type):
                        out.append(rec)
        return out

    def torn_events(self) -> list[dict]:
        return [e for e in self.records("event") if e.get("event") == TORN]

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
        """Re-hash the chain, check it against its anchor and HEAD, and re-hash the current
        artifacts and decisions files; return every problem found."""
        self.recover()  # a torn last line is kept aside and recorded, never fatal
        anchors = read_anchors(anchor_path(self.records_path))
        if not self.records_path.exists():
            if anchors:
                return [Problem(None, f"{self.records_path.name} is gone, but its anchor "
                                      f"({anchor_path(self.records_path)}) saw {len(anchors)} records, "
                                      f"the last numbered {max(anchors)} (the chain was deleted)")]
            return [Problem(None, f"no ledger at {self.records_path}")]
        problems: list[Problem] = []
        prev, expected_seq = GENESIS, 0
        seen: dict[int, dict] = {}
        with open(self.records_path, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    if not isinstance(rec, dict):
                        raise ValueError
                except ValueError:
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
                if isinstance(seq, int) and seq in anchors:
                    seen[seq] = {"hash": rec.get("hash"), "replaces": rec.get("replaces")
                                 if rec.get("event") == TORN else None}
                prev, expected_seq = rec.get("hash"), (seq if isinstance(seq, int) else expected_seq) + 1
        head_seq, head_hash = self._head()
        if head_seq != expected_seq - 1 or head_hash != prev:
            problems.append(Problem(head_seq, f"HEAD says the last record is {head_seq}, the chain "
                                              f"ends at {expected_seq - 1} (records removed?)"))
        problems += self._check_anchors(anchors, seen, expected_seq - 1)
        if check_files:
            for art in self.artifacts():
                full = self.ws / art["path"] if not Path(art["path"]).is_absolute() else Path(art["path"])
                if not full.exists():
                    problems.append(Problem(art["seq"], f"artifact {art['path']} "
                                                        f"({art['stage']}/{art['kind']}) was removed"))
                elif tree_sha256(full) != art["sha256"]:
                    problems.append(Problem(art["seq"], f"artifact {art['path']} "
                                                        f"({art['stage']}/{art['kind']}) was changed"))
            problems += self._check_decisions()
        return problems

    def _check_anchors(self, anchors: dict[int, str], seen: dict[int, dict], last: int) -> list[Problem]:
        """Every anchored record must still be in the chain with the hash the anchor saw. The
        one exception is a torn last record, replaced by the event that recorded its tear."""
        problems = []
        if anchors and max(anchors) > last:
            problems.append(Problem(None, f"the chain ends at record {last}, but its anchor saw "
                                          f"record {max(anchors)} (records were cut)"))
        for seq, h in sorted(anchors.items()):
            if seq > last:
                break
            got = seen.get(seq)
            if got is None:
                problems.append(Problem(seq, "anchored record is missing from the chain"))
            elif got["hash"] != h and (got["replaces"] or {}).get("hash") != h:
                problems.append(Problem(seq, "differs from the hash its anchor saw "
                                             "(the record was rewritten and the chain re-hashed)"))
        return problems

    def notes(self) -> list[str]:
        """What `verify` wants a person to know that is not a failure: torn tails recovered
        (and where their bytes are), and where the chain is anchored."""
        out = [f"record {e['seq']}: a torn last line ({e['torn_bytes']} bytes) was recovered on "
               f"{e['time'][:19]}; its bytes are kept in {self.rel(self.records_path.with_name(e['kept_aside']))}"
               for e in self.torn_events()]
        anchor = self.anchored()
        for old in sorted(anchor_path(self.records_path).parent.glob(anchor_path(self.records_path).name + ".replaced-*")):
            out.append(f"an earlier chain at this path was replaced by this one (its anchor is kept in {old})")
        out.append(f"anchored in {anchor}" if anchor else
                   f"not anchored yet (no anchor in {anchor_dir()}; the next record starts one)")
        return out

    def anchored(self) -> Path | None:
        """The chain's anchor file, if anything was ever anchored for it."""
        path = anchor_path(self.records_path)
        return path if path.exists() else None

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
        path = write_parquet_atomic(table, self.decisions_dir / stage / f"{safe}.parquet")
        self._adopt_unrecorded(path)
        # Into the chain: a row deleted, a reason edited or the file removed later fails verify.
        self.append("decisions", {"stage": stage, "path": self.rel(path), "rows": table.num_rows,
                                  "sha256": file_sha256(path)})
        return path

    def _adopt_unrecorded(self, skip: Path) -> None:
        """A workspace built before decisions files were hashed into the chain has files without
        a record; once the chain hashes some, verify would name those. So the first write into
        such a workspace records them as found, once (`.in-chain` marks that it was done; if it
        is deleted, the scan runs again and records only files that still have no record, so a
        file already recorded and since edited stays named by verify)."""
        marker = self.decisions_dir / ".in-chain"
        if marker.exists():
            return
        known = {r["path"] for r in self.records("decisions")}
        for p in sorted(self.decisions_dir.rglob("*.parquet")):
            if p != skip and self.rel(p) not in known:
                import pyarrow.parquet as pq

                self.append("decisions", {"stage": p.parent.name, "path": self.rel(p),
                                          "rows": pq.read_metadata(p).num_rows, "sha256": file_sha256(p),
                                          "adopted": "written before decisions files were hashed into the chain"})
        marker.touch()

    def remove_decisions(self, paths: Sequence[Path], reason: str) -> None:
        """Delete decisions files on purpose (a reset, a rerun, a dropped source), retiring each
        in the chain first so that verify tells this apart from tampering."""
        for p in paths:
            p = Path(p)
            if p.exists():
                self.retire(p, reason)
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink()

    def decisions_files(self) -> list[dict]:
        """The newest `decisions` record per file, leaving out files retired since (a retired
        folder retires the files in it)."""
        retired: dict[str, int] = {}
        latest: dict[str, dict] = {}
        for r in self.records():
            if r.get("type") == "decisions":
                latest[r["path"]] = r
            elif r.get("type") == "event" and r.get("event") == "retire":
                retired[r["path"]] = r["seq"]

        def is_retired(r: dict) -> bool:
            parts = r["path"].split("/")
            return any(retired.get("/".join(parts[:i]), -1) > r["seq"] for i in range(1, len(parts) + 1))

        return [r for r in latest.values() if not is_retired(r)]

    def _check_decisions(self) -> list[Problem]:
        problems = []
        known = set()
        for r in self.decisions_files():
            full = self.ws / r["path"]
            known.add(full.resolve())
            if not full.exists():
                problems.append(Problem(r["seq"], f"decisions file {r['path']} ({r['rows']} "
                                                  "decisions) was removed"))
            elif file_sha256(full) != r["sha256"]:
                problems.append(Problem(r["seq"], f"decisions file {r['path']} was changed "
                                                  "(a row deleted or edited)"))
        if self.decisions_dir.exists() and any(r.get("type") == "decisions" for r in self.records()):
            # Only once the chain hashes decisions: a workspace built before that has none yet.
            for p in sorted(self.decisions_dir.rglob("*.parquet")):
                if p.resolve() not in known:
                    problems.append(Problem(None, f"decisions file {self.rel(p)} is not in the chain "
                                                  "(written outside a stage, or added since?)"))
        return problems

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
