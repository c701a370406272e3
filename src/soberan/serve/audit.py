"""The serving audit log: one hash-chained JSONL record per request, in `serve/audit.jsonl`.

It is the ledger's chain (same record layout, same `record_hash`, a head file that makes the
removal of the last records visible, the same anchor outside the workspace), kept in the serve
folder so that a busy server never contends with the build stages for the ledger's lock. Prompts
and completions are omitted, keyed-hashed, or stored with the PII redaction curate uses too (`soberan.lang.pii`), as
`[serve] audit_content` says. The log and its secret are readable by their owner only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

from soberan.ledger import Ledger, Problem


class AuditLog(Ledger):
    """A ledger chain over `serve/audit.jsonl`; only `append`, `records` and `verify` are used."""

    file_mode = 0o600

    def __init__(self, serve_dir: Path):
        super().__init__(Path(serve_dir).parent)
        self.dir = Path(serve_dir)
        self.records_path = self.dir / "audit.jsonl"
        self.head_path = self.dir / "AUDIT_HEAD"
        self.decisions_dir = self.dir / ".no-decisions"
        for p in (self.records_path, self.head_path):  # logs written before 0600 was the rule
            try:
                if p.exists() and p.stat().st_mode & 0o077:
                    p.chmod(0o600)
            except OSError:
                pass

    def log(self, body: dict) -> dict:
        return self.append("request", body)

    def verify(self, check_files: bool = False) -> list[Problem]:
        if not self.records_path.exists() and not self.head_path.exists() and not self.anchored():
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


def audit_secret(serve_dir: Path) -> bytes:
    """The workspace's key for prompt hashes (`serve/audit.secret`, 0600), made on first use.
    With a plain SHA-256 anyone holding the log could confirm a guessed prompt by hashing it;
    with HMAC they need this file too."""
    path = Path(serve_dir) / "audit.secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return bytes.fromhex(path.read_text().strip())


def keyed_hash(secret: bytes, text: str) -> str:
    return hmac.new(secret, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def content_recorder(mode: str, languages: Sequence[str], secret: bytes | None = None) -> Callable[[str], dict]:
    """What the audit log keeps of a prompt or completion: nothing, its HMAC-SHA256 under the
    workspace's audit secret, or the text with personal data replaced by typed placeholders
    (national IDs, phones, e-mail, cards)."""
    if mode == "omit":
        return lambda text: {}
    if mode == "hash":
        if not secret:
            raise ValueError("audit_content = hash needs the workspace's audit secret")
        return lambda text: {"hmac_sha256": keyed_hash(secret, text)}
    if mode == "redact":
        from soberan.lang.pii import redact, rules_for

        rules = rules_for(list(languages))

        def redacted(text: str) -> dict:
            clean, kinds = redact(text, rules)
            return {"text": clean, "redacted": sorted(set(kinds))}

        return redacted
    raise ValueError(f"audit_content must be omit, hash or redact, not {mode!r}")
