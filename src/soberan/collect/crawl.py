"""A polite crawler confined to the policy's domains.

- Only URLs whose host is in `policy.crawl_domains` (a suffix match on names: `go.kr` allows
  `www.law.go.kr`; an IP address such as `127.0.0.1` must be listed exactly) are fetched, and a
  redirect elsewhere is refused and recorded, never followed.
- robots.txt is honoured as RFC 9309 says: 4xx means no rules, 5xx or an unreachable server means
  nothing may be fetched; its Crawl-delay raises the per-host delay, never lowers it.
- One request per host per `rate_limit_s`, at most `max_pages` fetches, links followed to
  `max_depth`, with the source's own User-Agent.
- Breadth-first over a frontier whose state (queue, seen URLs, pages fetched) is committed with
  every shard, so a killed crawl resumes where its last shard ended.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

from soberan.collect.html import HTML_TYPES, TEXT_TYPES, body_to_doc, links, media_type
from soberan.collect.items import ConvertOptions, Item, Reject, Skip
from soberan.config import Policy, Source
from soberan.policy import domain_allowed

MAX_REDIRECTS = 5  # RFC 9309 §2.3.1.2 asks crawlers to follow at least five for robots.txt


def normalize_url(url: str) -> str:
    """Lower-case scheme and host, no fragment, no default port, `/` for an empty path."""
    u = urlsplit(urldefrag(url.strip())[0])
    host = (u.hostname or "").lower()
    port = u.port
    if port and not ((u.scheme == "http" and port == 80) or (u.scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    if ":" in (u.hostname or "") and not host.startswith("["):  # IPv6 literal
        host = f"[{host}]"
    return urlunsplit((u.scheme.lower(), host, u.path or "/", u.query, ""))


# One rule for "may we fetch this URL", shared with the policy check of seed URLs.
url_allowed = domain_allowed


class Crawler:
    """One crawl's state; `items()` yields one item per URL taken from the frontier."""

    def __init__(self, source: Source, policy: Policy, opts: ConvertOptions,
                 state: dict | None = None, taken_down=None):
        import httpx

        self.source, self.policy, self.opts = source, policy, opts
        self.taken_down = taken_down  # url -> bool, from the take-down list
        state = state or {}
        seeds = [(normalize_url(u), 0) for u in source.urls]
        self.queue: deque[tuple[str, int]] = deque(tuple(x) for x in state.get("queue", seeds))
        self.seen: set[str] = set(state.get("seen", [u for u, _ in seeds]))
        self.fetched: int = state.get("fetched", 0)
        self.robots: dict[str, RobotFileParser] = {}
        self.last: dict[str, float] = {}
        self.client = httpx.Client(headers={"User-Agent": source.user_agent}, timeout=source.timeout_s,
                                   follow_redirects=False, trust_env=False)

    def snapshot(self) -> dict:
        return {"queue": [list(x) for x in self.queue], "seen": sorted(self.seen), "fetched": self.fetched}

    def close(self) -> None:
        self.client.close()

    # --- politeness ---------------------------------------------------------------------------

    def _wait(self, url: str) -> None:
        host = urlsplit(url).netloc
        delay = self.source.rate_limit_s
        rp = self.robots.get(self._origin(url))
        if rp is not None:
            delay = max(delay, float(rp.crawl_delay(self.source.user_agent) or 0))
        if host in self.last:
            pause = self.last[host] + delay - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        self.last[host] = time.monotonic()

    @staticmethod
    def _origin(url: str) -> str:
        u = urlsplit(url)
        return f"{u.scheme}://{u.netloc}"

    def _robots_for(self, url: str) -> RobotFileParser:
        import httpx

        origin = self._origin(url)
        if origin in self.robots:
            return self.robots[origin]
        rp = RobotFileParser(origin + "/robots.txt")
        target = origin + "/robots.txt"
        try:
            for _ in range(MAX_REDIRECTS + 1):
                self._wait(target)
                r = self.client.get(target)
                if r.is_redirect and "location" in r.headers:
                    nxt = normalize_url(urljoin(target, r.headers["location"]))
                    if not url_allowed(self.policy, nxt):
                        rp.disallow_all = True  # robots.txt elsewhere: not ours to read
                        break
                    target = nxt
                    continue
                if r.status_code == 200:
                    rp.parse(r.text.splitlines())
                elif 400 <= r.status_code < 500:
                    rp.allow_all = True  # RFC 9309 §2.3.1.3: unavailable, no rules
                else:
                    rp.disallow_all = True  # §2.3.1.4: unreachable, assume complete disallow
                break
            else:
                rp.disallow_all = True
        except httpx.HTTPError:
            rp.disallow_all = True
        self.robots[origin] = rp
        return rp

    def _robots_ok(self, url: str) -> bool:
        return self._robots_for(url).can_fetch(self.source.user_agent, url)

    # --- the crawl ----------------------------------------------------------------------------

    def items(self) -> Iterator[Item]:
        while self.queue and self.fetched < self.source.max_pages:
            url, depth = self.queue.popleft()
            yield self._visit(url, depth)

    def _refuse(self, url: str, locator: str) -> Reject | None:
        if not url_allowed(self.policy, url):
            return Reject("policy.crawl_domains", f"{url} is outside policy.crawl_domains "
                                                  f"{self.policy.crawl_domains}", locator)
        if self.taken_down is not None and self.taken_down(url):
            return Reject("takedown", f"{url} matches a take-down request", locator)
        if not self._robots_ok(url):
            return Reject("robots.txt", f"{url} is disallowed for this User-Agent by robots.txt", locator)
        return None

    def _visit(self, url: str, depth: int) -> Item:
        import httpx

        if (refused := self._refuse(url, url)) is not None:
            return refused
        self.fetched += 1
        cur = url
        try:
            for _ in range(MAX_REDIRECTS + 1):
                self._wait(cur)
                with self.client.stream("GET", cur) as r:
                    if r.is_redirect and "location" in r.headers:
                        nxt = normalize_url(urljoin(cur, r.headers["location"]))
                        if (refused := self._refuse(nxt, url)) is not None:
                            refused.reason = f"redirect from {cur}: {refused.reason}"
                            return refused
                        if nxt in self.seen:
                            return Skip("redirect to a page already queued")
                        self.seen.add(nxt)
                        cur = nxt
                        continue
                    if r.status_code != 200:
                        return Reject("http_status", f"HTTP {r.status_code}", cur)
                    mtype, charset = media_type(r.headers.get("content-type"))
                    if mtype not in HTML_TYPES + TEXT_TYPES:
                        return Skip(f"{mtype or 'untyped'} response")
                    body = bytearray()
                    for chunk in r.iter_bytes():
                        body += chunk
                        if len(body) > self.opts.max_record_bytes:
                            return Reject("too_large", f"body over {self.opts.max_record_bytes} bytes "
                                                       "(collect.max_record_bytes)", cur)
                    last_modified = r.headers.get("last-modified")
                break
            else:
                return Reject("too_many_redirects", f"more than {MAX_REDIRECTS} redirects", url)
        except httpx.HTTPError as e:
            return Reject("fetch_error", f"{type(e).__name__}: {e}", cur)
        html = mtype in HTML_TYPES
        if html and depth < self.source.max_depth:
            for link in links(bytes(body), cur):
                link = normalize_url(link)
                if link not in self.seen and url_allowed(self.policy, link):
                    self.seen.add(link)
                    self.queue.append((link, depth + 1))
        return body_to_doc(bytes(body), locator=cur, url=cur, html=html, charset=charset,
                           date=last_modified, opts=self.opts)
