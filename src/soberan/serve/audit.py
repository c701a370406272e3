"""The serving audit log: one hash-chained JSONL record per request, in `serve/audit.jsonl`.

It is the ledger's chain (same record layout, same `record_hash`, a head file that makes the
removal of the last records visible), kept in the serve folder so that a busy server never
contends with the build stages for the ledger's lock. Prompts and completions are omitted,
hashed, or stored with the curate stage's PII redaction, as `[serve] audit_content` says.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

from soberan.ledger import Ledger, Problem


class AuditLog(Ledger):
    """A ledger chain over `serve/audit.jsonl`; only `append`, `records` and `verify` are used."""

    def __init__(self, serve_dir: Path):
        super().__init__(Path(serve_dir).parent)
        self.dir = Path(serve_dir)
        self.records_path = self.dir / "audit.jsonl"
        self.head_path = self.dir / "AUDIT_HEAD"
        self.decisions_dir = self.dir / ".no-decisions"

    def log(self, body: dict) -> dict:
        return self.append("request", body)

    def verify(self, check_files: bool = False) -> list[Problem]:
        if not self.records_path.exists() and not self.head_path.exists():
            return []  # nothing served yet
        return super().verify(check_files=False)

    def tokens_by_key(self) -> dict[str, int]:
        """Prompt + completion tokens each key has spent, for budgets that survive a restart."""
        spent: dict[str, int] = {}
        for r in self.records("request"):
            if r.get("key_id"):
                spent[r["key_id"]] = (spent.get(r["key_id"], 0) + int(r.get("prompt_tokens") or 0)
                                      + int(r.get("completion_tokens") or 0))
        return spent


def content_recorder(mode: str, languages: Sequence[str]) -> Callable[[str], dict]:
    """What the audit log keeps of a prompt or completion: nothing, its SHA-256, or the text
    with personal data replaced by typed placeholders (national IDs, phones, e-mail, cards)."""
    if mode == "omit":
        return lambda text: {}
    if mode == "hash":
        return lambda text: {"sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()}
    if mode == "redact":
        from soberan.curate.pii import redact, rules_for

        rules = rules_for(list(languages))

        def redacted(text: str) -> dict:
            clean, kinds = redact(text, rules)
            return {"text": clean, "redacted": sorted(set(kinds))}

        return redacted
    raise ValueError(f"audit_content must be omit, hash or redact, not {mode!r}")
