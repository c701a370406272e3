"""API keys, stored hashed in `serve/keys.json`, with a rate limit and a token budget each.

A key reads `sk-sob-<key id>.<secret>`. The key id is public (it names the key in the audit log);
only a salted SHA-256 of the secret is stored. The secret is 256 random bits, so a fast hash is
enough: there is no dictionary to try, and a slow KDF (scrypt, bcrypt) would cost every request
tens of milliseconds for no gain -- the reasoning behind GitHub's and Stripe's token storage.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from soberan.config import ConfigError

PREFIX = "sk-sob-"
_KEY = re.compile(r"^sk-sob-([0-9a-f]{12})\.([A-Za-z0-9_\-]{20,})$")
_RATE = re.compile(r"^\s*(\d+)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*$")
WINDOWS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


@dataclass
class ApiKey:
    name: str
    key_id: str
    salt: str
    sha256: str  # of salt + secret
    created: str
    rate_limit: int  # requests per window; 0 = unlimited
    rate_window_s: int
    token_budget: int  # prompt + completion tokens over the key's life; 0 = unlimited
    revoked: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None


def parse_rate(text: str) -> tuple[int, int]:
    """"30", "30/min", "5/s", "1000/hour" -> (requests, window seconds)."""
    m = _RATE.match(str(text))
    if not m:
        raise ConfigError(f"rate limit {text!r}: write N or N/s, N/min, N/hour")
    return int(m.group(1)), WINDOWS[m.group(2) or "min"]


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def keys_path(serve_dir: Path) -> Path:
    return Path(serve_dir) / "keys.json"


def load_keys(path: Path) -> list[ApiKey]:
    if not path.exists():
        return []
    try:
        return [ApiKey(**k) for k in json.loads(path.read_text(encoding="utf-8"))["keys"]]
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not a valid key file ({e})") from None


@contextmanager
def _locked(path: Path) -> Iterator[list[ApiKey]]:
    """Read-modify-write the key file under a lock; written atomically, readable by owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(".keys.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        keys = load_keys(path)
        yield keys
        tmp = path.with_name(".keys.json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"keys": [asdict(k) for k in keys]}, f, indent=1)
        os.replace(tmp, path)


def create_key(path: Path, name: str, *, rate_limit: str | int = 60, token_budget: int = 0) -> tuple[ApiKey, str]:
    """Create a key; return its record and the plain key, which is shown once and never stored."""
    if not re.match(r"^[A-Za-z0-9_.@\-]{1,64}$", name):
        raise ConfigError(f"key name {name!r}: use letters, digits, _ . @ - (at most 64)")
    if token_budget < 0:
        raise ConfigError("token budget must be >= 0 (0 = unlimited)")
    limit, window = parse_rate(rate_limit)
    secret, salt = secrets.token_urlsafe(32), secrets.token_hex(16)
    with _locked(path) as keys:
        if any(k.name == name and k.active for k in keys):
            raise ConfigError(f"a key named {name!r} already exists (revoke it first)")
        ids = {k.key_id for k in keys}
        key_id = secrets.token_hex(6)
        while key_id in ids:
            key_id = secrets.token_hex(6)
        rec = ApiKey(name=name, key_id=key_id, salt=salt, sha256=_digest(salt, secret),
                     created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     rate_limit=limit, rate_window_s=window, token_budget=token_budget)
        keys.append(rec)
    return rec, f"{PREFIX}{key_id}.{secret}"


def revoke_key(path: Path, name: str) -> ApiKey:
    with _locked(path) as keys:
        for k in keys:
            if (k.name == name or k.key_id == name) and k.active:
                k.revoked = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
                return k
    raise ConfigError(f"no active key named {name!r} in {path}")


class KeyStore:
    """The server's view of keys.json, re-read whenever the file changes, so that
    `soberan keys revoke` takes effect on a running server at its next request."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp: tuple | None = None
        self._by_id: dict[str, ApiKey] = {}

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._by_id = {k.key_id: k for k in load_keys(self.path)}
            self._stamp = stamp

    def check(self, token: str | None) -> tuple[ApiKey | None, str]:
        """The key behind a bearer token, or None and the reason it was refused."""
        if not token:
            return None, "missing API key (send Authorization: Bearer <key>)"
        m = _KEY.match(token.strip())
        if not m:
            return None, "invalid API key"
        self._refresh()
        key = self._by_id.get(m.group(1))
        if key is None or not hmac.compare_digest(key.sha256, _digest(key.salt, m.group(2))):
            return None, "invalid API key"
        if not key.active:
            return None, f"API key {key.name!r} was revoked on {key.revoked}"
        return key, ""

    def __len__(self) -> int:
        self._refresh()
        return sum(k.active for k in self._by_id.values())


def sliding_window(q: deque, limit: int, window_s: float, now: float | None = None) -> float | None:
    """A sliding-window log of request times: count one more in `q` and return None if it is
    within `limit` per `window_s`, else the seconds until it would be (and count nothing)."""
    now = time.monotonic() if now is None else now
    while q and q[0] <= now - window_s:
        q.popleft()
    if len(q) >= limit:
        return max(q[0] + window_s - now, 0.001)
    q.append(now)
    return None


class Quotas:
    """Per-key request rate (sliding-window log) and token budget, in memory. Token use already
    spent is read back from the audit log at start, so a restart does not refill a budget."""

    def __init__(self, spent: dict[str, int] | None = None):
        self._times: dict[str, deque[float]] = {}
        self.spent: dict[str, int] = dict(spent or {})
        self._reserved: dict[str, int] = {}

    def admit(self, key: ApiKey, now: float | None = None) -> float | None:
        """Count one request; return None if allowed, else seconds until one would be."""
        if not key.rate_limit:
            return None
        return sliding_window(self._times.setdefault(key.key_id, deque()), key.rate_limit,
                              key.rate_window_s, now)

    def reserve(self, key: ApiKey, prompt_tokens: int, max_tokens: int) -> int:
        """Reserve the tokens a request may use; return how many completion tokens it may have
        (max_tokens, cut to what is left), 0 if the budget cannot cover it."""
        if not key.token_budget:
            return max_tokens
        left = key.token_budget - self.spent.get(key.key_id, 0) - self._reserved.get(key.key_id, 0)
        allowed = min(max_tokens, left - prompt_tokens)
        if allowed <= 0:
            return 0
        self._reserved[key.key_id] = self._reserved.get(key.key_id, 0) + prompt_tokens + allowed
        return allowed

    def settle(self, key: ApiKey, reserved: int, used: int) -> None:
        """Release a reservation and charge what the request really used."""
        if key.token_budget and reserved:
            self._reserved[key.key_id] -= reserved
        self.spent[key.key_id] = self.spent.get(key.key_id, 0) + used
