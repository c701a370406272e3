"""The crawler, against a local HTTP server on 127.0.0.1 that the test starts (never the
internet): domain confinement, robots.txt, redirects, budget, depth, rate limit, resume."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_collect import KO, docs_of, rejections, sources
from test_collect_resume import kill_mid_run

from soberan.collect import run
from soberan.collect.crawl import normalize_url, url_allowed
from soberan.config import Policy
from soberan.policy import PolicyError
from soberan.workspace import Workspace

UA = "soberan-test/1.0 (+mailto:corpus@example.kr)"


def page(title: str, links: list[str], body: str = KO) -> bytes:
    a = "".join(f'<li><a href="{h}">{h}</a></li>' for h in links)
    return (f"<html><head><title>{title}</title></head><body><nav><ul>{a}</ul></nav>"
            f"<article><h1>{title}</h1><p>{body}</p><p>{body} {title}</p></article></body></html>").encode()


class Site:
    """A tiny web site: path -> (status, headers, body); logs every request it receives."""

    def __init__(self, routes: dict, delay: float = 0.0):
        self.routes, self.delay, self.log = routes, delay, []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                site.log.append((self.path, self.headers.get("Host"), self.headers.get("User-Agent"),
                                 time.monotonic()))
                status, headers, body = site.routes.get(self.path, (404, {}, b"not found"))
                if site.delay and self.path != "/robots.txt":
                    time.sleep(site.delay)
                self.send_response(status)
                for k, v in {"Content-Type": "text/html; charset=utf-8", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def paths(self) -> list[str]:
        return [p for p, *_ in self.log]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site():
    made = []

    def make(routes_for, delay=0.0):
        s = Site({}, delay)
        s.routes = routes_for(s)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def gov_site(s: Site) -> dict:
    off = f"http://localhost:{s.port}"
    return {
        "/robots.txt": (200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private/\n"),
        "/": (200, {}, page("home", ["/a", "/b", "/a#top", "/private/x", f"{off}/off", "/redirect-out",
                                     "/redirect-in", "/logo.png", "/missing", "mailto:x@y.kr"])),
        "/a": (200, {}, page("a", ["/c"])),
        "/b": (200, {"Last-Modified": "Tue, 08 Aug 2023 10:00:00 GMT"}, page("b", [])),
        "/c": (200, {"Content-Type": "text/html; charset=euc-kr"}, page("c", ["/d"]).decode().encode("euc-kr")),
        "/d": (200, {"Content-Type": "text/plain; charset=utf-8"}, f"{KO} 일반 텍스트".encode()),
        "/private/x": (200, {}, page("private", [])),
        "/redirect-out": (302, {"Location": f"{off}/secret"}, b""),
        "/redirect-in": (301, {"Location": "/b"}, b""),
        "/logo.png": (200, {"Content-Type": "image/png"}, b"\x89PNG\r\n\x1a\n\0\0"),
        "/secret": (200, {}, page("secret", [])),
    }


def crawl_ws(workspace, seed: str, name: str = "gov", **opts) -> Workspace:
    opts.setdefault("rate_limit_s", 0)
    extra = "\n".join(f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in opts.items())
    return sources(workspace, f"""
[[sources]]
name = "{name}"
kind = "crawl"
urls = ["{seed}"]
license = "LicenseRef-KR-Public-Domain"
jurisdiction = "KR"
user_agent = "{UA}"
{extra}
""", crawl_domains=["127.0.0.1"])


def test_crawl_confined_robots_redirects(workspace, site):
    s = site(gov_site)
    ws = crawl_ws(workspace, f"{s.base}/")
    res = run(ws, show_progress=False).sources[0]
    b = s.base
    rows = {r["url"]: r for r in docs_of(ws)}
    assert set(rows) == {f"{b}/", f"{b}/a", f"{b}/b", f"{b}/c", f"{b}/d"}
    assert "로그인" not in rows[f"{b}/a"]["text"] and KO in rows[f"{b}/c"]["text"]  # EUC-KR page
    assert rows[f"{b}/b"]["date"].startswith("2023-08-08") and rows[f"{b}/a"]["title"] == "a"
    assert rows[f"{b}/d"]["text"] == f"{KO} 일반 텍스트"
    rej = {r["reason"].split(": ", 1)[0]: r for r in rejections(ws)}
    assert rej[f"{b}/private/x"]["rule"] == "robots.txt"
    assert rej[f"{b}/redirect-out"]["rule"] == "policy.crawl_domains"
    assert f"localhost:{s.port}/secret" in rej[f"{b}/redirect-out"]["reason"]
    assert rej[f"{b}/missing"]["rule"] == "http_status" and "404" in rej[f"{b}/missing"]["reason"]
    assert res.skipped == {"image/png response": 1, "redirect to a page already queued": 1}
    # What the server saw: robots.txt once, our User-Agent on every request, and never a
    # disallowed path, an off-domain host or the target of a refused redirect.
    paths = s.paths()
    assert paths[0] == "/robots.txt" and paths.count("/robots.txt") == 1
    assert {ua for *_, ua, _ in s.log} == {UA}
    assert {h for _, h, *_ in s.log} == {f"127.0.0.1:{s.port}"}
    assert not {"/private/x", "/secret", "/off"} & set(paths)
    assert paths.count("/a") == 1  # `/a#top` is the same page


def test_robots_disallow_all_for_our_agent(workspace, site):
    s = site(lambda s: {"/robots.txt": (200, {"Content-Type": "text/plain"},
                                        b"User-agent: soberan-test\nDisallow: /\n\nUser-agent: *\nAllow: /\n"),
                        "/": (200, {}, page("home", ["/a"]))})
    ws = crawl_ws(workspace, f"{s.base}/")
    run(ws, show_progress=False)
    assert docs_of(ws) == [] and s.paths() == ["/robots.txt"]
    assert [r["rule"] for r in rejections(ws)] == ["robots.txt"]


def test_robots_unreachable_means_nothing_is_fetched(workspace, site):
    s = site(lambda s: {"/robots.txt": (503, {}, b"down"), "/": (200, {}, page("home", []))})
    ws = crawl_ws(workspace, f"{s.base}/")
    run(ws, show_progress=False)
    assert s.paths() == ["/robots.txt"] and [r["rule"] for r in rejections(ws)] == ["robots.txt"]


def test_page_budget_and_depth(workspace, site):
    s = site(gov_site)
    ws = crawl_ws(workspace, f"{s.base}/", max_pages=2)
    run(ws, show_progress=False)
    assert [p for p in s.paths() if p != "/robots.txt"] == ["/", "/a"]
    s2 = site(gov_site)
    cfg = ws.root / "soberan.toml"
    cfg.write_text(cfg.read_text().replace("max_pages = 2", "max_depth = 1").replace(str(s.port), str(s2.port)))
    run(Workspace.open(ws.root), show_progress=False)
    fetched = set(s2.paths())
    assert {"/", "/a", "/b"} <= fetched and not {"/c", "/d"} & fetched  # /c is two links away


def test_rate_limit_spaces_requests_to_a_host(workspace, site):
    s = site(gov_site)
    ws = crawl_ws(workspace, f"{s.base}/", max_pages=3, rate_limit_s=0.3)
    run(ws, show_progress=False)
    times = [t for *_, t in s.log]  # robots.txt and three pages: three waits of 0.3 s at least
    assert len(times) == 4 and times[-1] - times[0] >= 0.75  # (slack for the server's clock reading)


def test_seed_outside_policy_is_refused(workspace, site):
    s = site(gov_site)
    ws = crawl_ws(workspace, f"http://localhost:{s.port}/")
    with pytest.raises(PolicyError, match="outside policy.crawl_domains"):
        run(ws, show_progress=False)
    assert s.log == []


def test_domain_rules():
    p = Policy(licenses=["CC0-1.0"], jurisdictions=["KR"], crawl_domains=["go.kr", "127.0.0.1"])
    assert url_allowed(p, "https://www.law.go.kr/x") and url_allowed(p, "http://go.kr/")
    assert not url_allowed(p, "https://evilgo.kr/") and not url_allowed(p, "ftp://www.go.kr/")
    assert not url_allowed(p, "https://go.kr.evil.com/") and not url_allowed(p, "https://go.kr@evil.com/")
    assert url_allowed(p, "http://127.0.0.1:8080/") and not url_allowed(p, "http://10.127.0.0.1/")
    p2 = Policy(licenses=["CC0-1.0"], jurisdictions=["KR"], crawl_domains=["0.0.1"])
    assert not url_allowed(p2, "http://127.0.0.1/")  # no suffix matching on IP addresses
    assert normalize_url("HTTP://WWW.Korea.KR:80/a#x") == "http://www.korea.kr/a"


@pytest.mark.slow  # a crawl killed, then resumed
def test_killed_crawl_resumes_to_the_same_pages(workspace, site, tmp_path):
    def chain(s: Site) -> dict:
        routes = {"/robots.txt": (200, {"Content-Type": "text/plain"}, b"User-agent: *\nAllow: /\n")}
        for i in range(40):
            routes[f"/p{i}"] = (200, {}, page(f"p{i}", [f"/p{i + 1}", f"/p{(i * 7) % 40}"]))
        return routes

    s = site(chain, delay=0.03)
    ws = crawl_ws(workspace, f"{s.base}/p0", name="chain", max_depth=100)
    cfg = ws.root / "soberan.toml"
    cfg.write_text(cfg.read_text().replace("# shard_docs = 10000", "shard_docs = 4"))
    st = kill_mid_run(ws.root, "chain", min_commits=2)
    assert 8 <= st["token"]["fetched"] < 40
    assert run(Workspace.open(ws.root), show_progress=False).sources[0].status == "resumed"
    urls = [r["url"] for r in docs_of(Workspace.open(ws.root))]
    assert len(urls) == len(set(urls)) == 40
    assert {u.rsplit("/", 1)[1] for u in urls} == {f"p{i}" for i in range(40)}
    # Resumed from the committed frontier: pages of committed shards were not fetched again.
    pages = [p for p in s.paths() if p != "/robots.txt"]
    assert len(pages) - 40 <= 4 + 1  # at most the uncommitted stretch (and the page in flight)
