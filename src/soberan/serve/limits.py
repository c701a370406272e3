"""What keeps a client without a key from costing the server more than a few bytes and a socket.

- `StallGuard`: a uvicorn HTTP protocol that closes a connection whose request headers have not
  all arrived within `header_timeout_s` (nothing sent, or half a header: slowloris), and refuses
  a client's connections beyond `max_connections_per_client`. uvicorn itself only times out
  idle keep-alive connections; a connection that never finishes its first request stays open.
- `Noise`: unauthenticated requests are rate-limited per client, and only the first few per
  client and per minute get their own audit record; the rest are counted and written as one
  aggregate record a minute, so a flood adds a bounded number of bytes to the audit log.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_FIELD = 200  # characters kept of a path or method sent by the client in an audit record


def clip(text: str, limit: int = MAX_FIELD) -> str:
    """A client-chosen string as the audit log keeps it: at most `limit` characters, and saying
    how many more there were."""
    return text if len(text) <= limit else f"{text[:limit]}…(+{len(text) - limit} chars)"


def _raw(status: str, message: str, extra: str = "") -> bytes:
    """A whole HTTP/1.1 error response in OpenAI's shape, written before any app runs."""
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                 "code": None}}).encode()
    head = (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\n{extra}"
            f"content-length: {len(body)}\r\n\r\n")
    return head.encode() + body


_TIMEOUT = _raw("408 Request Timeout", "request headers not received in time")
_BUSY = _raw("429 Too Many Requests", "too many open connections from this client", "retry-after: 1\r\n")


def stall_guard(header_timeout_s: float, max_connections_per_client: int) -> type[H11Protocol]:
    """A uvicorn `http=` protocol class with its own per-client connection count (one per
    server, so two servers in one process do not share it)."""
    open_by_client: dict[str, int] = {}

    class StallGuard(H11Protocol):
        _timer: asyncio.TimerHandle | None = None
        _counted: str | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            host = self.client[0] if self.client else "?"
            if open_by_client.get(host, 0) >= max_connections_per_client:
                transport.write(_BUSY)
                transport.close()
                return
            open_by_client[host] = open_by_client.get(host, 0) + 1
            self._counted = host
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._timer = self.loop.call_later(header_timeout_s, self._stalled)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _stalled(self) -> None:
            self._timer = None
            if self.transport.is_closing():
                return
            # Still waiting for (the rest of) a request line and headers: close it. A request
            # whose headers arrived is the app's to time out (its body) or to answer.
            if self.conn.their_state is h11.IDLE:
                self.transport.write(_TIMEOUT)
                self.transport.close()
            # Answered, but the body the client promised never came (a route that reads none,
            # such as /health): the connection cannot take another request, so it goes now,
            # not after uvicorn's keep-alive.
            elif self.conn.our_state is h11.DONE and self.conn.their_state is h11.SEND_BODY:
                self.transport.close()

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:
                self._disarm()  # the headers are in

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request on this connection gets the same deadline

        def connection_lost(self, exc) -> None:
            self._disarm()
            if self._counted is not None:
                left = open_by_client.get(self._counted, 1) - 1
                if left > 0:
                    open_by_client[self._counted] = left
                else:
                    open_by_client.pop(self._counted, None)
                self._counted = None
            super().connection_lost(exc)

    StallGuard.open_by_client = open_by_client
    return StallGuard


@dataclass
class Noise:
    """Requests refused for want of a valid key: a per-client rate limit, and an audit record
    for the first `logged_per_client` of each client and `logged_total` overall per window;
    the rest are summed into one `noise` record per window."""

    per_client: int = 30  # unauthenticated requests per client per window before 429
    logged_per_client: int = 5
    logged_total: int = 60
    window_s: float = 60.0
    _times: dict[str, deque] = field(default_factory=dict)
    _logged: dict[str, int] = field(default_factory=dict)
    _logged_total: int = 0
    _counts: dict[tuple[int, str], int] = field(default_factory=dict)
    _clients: set = field(default_factory=set)
    _window_start: float = field(default_factory=time.monotonic)

    def limited(self, client: str, now: float | None = None) -> float | None:
        """Count one unauthenticated request; seconds to wait if over the client's limit."""
        from soberan.serve.keys import sliding_window

        return sliding_window(self._times.setdefault(client, deque()), self.per_client, self.window_s, now)

    def keep(self, client: str, status: int, error: str) -> bool:
        """True: write this refusal's own record. False: it was counted into the aggregate."""
        n = self._logged.get(client, 0)
        if n < self.logged_per_client and self._logged_total < self.logged_total:
            self._logged[client] = n + 1
            self._logged_total += 1
            return True
        self._counts[(status, error)] = self._counts.get((status, error), 0) + 1
        self._clients.add(client)
        return False

    def flush(self, now: float | None = None, force: bool = False) -> dict | None:
        """The aggregate record of a window that ended (or of everything, with `force`), once."""
        now = time.monotonic() if now is None else now
        if not force and now - self._window_start < self.window_s:
            return None
        body = None
        if self._counts:
            body = {"window_s": round(now - self._window_start, 1), "clients": len(self._clients),
                    "refused": sum(self._counts.values()),
                    "by_status": [{"status": s, "error": e, "count": c}
                                  for (s, e), c in sorted(self._counts.items())]}
        self._counts, self._clients, self._logged, self._logged_total = {}, set(), {}, 0
        self._window_start = now
        for client in [c for c, q in self._times.items() if not q or q[-1] <= now - self.window_s]:
            self._times.pop(client)  # memory stays bounded by the clients of one window
        return body
