"""soberan serve, running: a real uvicorn server on 127.0.0.1 serving a tiny Llama checkpoint from a
workspace's ledger, driven over HTTP, by the official `openai` client, and by headless Chromium."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

PROMPT = "대한민국은 민주공화국이다."


@dataclass
class Running:
    url: str
    ws: object
    srv: object
    server: object
    thread: threading.Thread
    keys: dict

    @property
    def model(self) -> str:
        return self.srv.source.model_id

    def client(self, key: str | None = "alice", **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys.get(key, key)}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kw)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start(ws, model=None, **overrides) -> Running:
    import uvicorn

    from soberan.serve import build_server, settings_for, uvicorn_config
    from soberan.serve.app import create_app

    settings = settings_for(ws, **overrides)
    srv = build_server(ws, settings, model)
    server = uvicorn.Server(uvicorn_config(create_app(srv), settings, host="127.0.0.1", port=0))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return Running(f"http://127.0.0.1:{port}", ws, srv, server, thread, {})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from soberan.serve.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.getbasetemp() / "serve-tiny" / "model")


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny):
    """A workspace whose ledger holds a trained model (the tiny one), with four keys."""
    from soberan.serve.keys import create_key, keys_path
    from soberan.workspace import Workspace, init_workspace

    root = tmp_path_factory.mktemp("serve") / "ws"
    init_workspace(root, lang="ko", jurisdiction="KR", name="soberan-ko-test")
    ws = Workspace.open(root)
    shutil.copytree(tiny, ws.stage_dir("train") / "final")
    ws.ledger.record_artifact(stage="train", kind="model", path=ws.stage_dir("train") / "final",
                              meta={"note": "tiny test model"})
    path = keys_path(ws.stage_dir("serve"))
    keys = {name: create_key(path, name, **kw)[1] for name, kw in [
        ("alice", {"rate_limit": "10000/min"}), ("limited", {"rate_limit": "3/min"}),
        ("budget", {"rate_limit": 0, "token_budget": 120}), ("leaver", {"rate_limit": 0})]}
    run = start(ws, max_batch=8, max_body_bytes=16384, audit_content="hash")
    run.keys.update(keys)
    yield run
    run.stop()


def _is_openai_error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert "Traceback" not in r.text
    if code:
        assert err["code"] == code, err
    return err


def _reference_greedy(served, ids: list[int], n: int) -> str:
    import torch

    model, tok = served.srv.backend.model, served.srv.tokenizer
    out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                         max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id,
                         eos_token_id=sorted(served.srv.backend.eos_ids))
    return tok.decode(out[0, len(ids):], skip_special_tokens=True)


# --- locked down ----------------------------------------------------------------------------

def test_only_health_and_the_page_are_open(served):
    anon = served.client(key=None)
    assert anon.get("/health").json() == {"status": "ok"}
    page = anon.get("/")
    assert page.status_code == 200 and "soberan" in page.text
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert anon.get("/static/chat.js").status_code == 200
    for method, path in [("GET", "/v1/models"), ("POST", "/v1/completions"),
                         ("POST", "/v1/chat/completions"), ("GET", "/v1/nowhere"), ("GET", "/docs"),
                         ("GET", "/openapi.json")]:
        _is_openai_error(anon.request(method, path), 401, "invalid_api_key")
    _is_openai_error(served.client(key="sk-sob-000000000000.notarealsecretatallnope").get("/v1/models"),
                     401, "invalid_api_key")
    # With a key, what does not exist is a plain 404; the docs are off, not hidden.
    _is_openai_error(served.client().get("/v1/nowhere"), 404)
    _is_openai_error(served.client().get("/docs"), 404)


def test_models_names_the_checkpoint_from_the_ledger(served):
    art = served.ws.ledger.latest_artifact("train", "model")
    data = served.client().get("/v1/models").json()["data"]
    assert [m["id"] for m in data] == ["soberan-ko-test"]
    assert data[0]["checkpoint"] == art["sha256"] and data[0]["backend"] == "transformers"
    assert served.client().get(f"/v1/models/{served.model}").json()["id"] == served.model
    _is_openai_error(served.client().get("/v1/models/gpt-4"), 404, "model_not_found")


def test_revoking_a_key_locks_it_out_of_the_running_server(served, tmp_path):
    from soberan.cli import app
    from soberan.serve.keys import keys_path

    runner = CliRunner()
    res = runner.invoke(app, ["keys", "create", "temp", "-w", str(served.ws.root), "--rate-limit", "5/s"])
    assert res.exit_code == 0, res.output
    key = res.output.strip().splitlines()[-1]
    assert key.startswith("sk-sob-") and key not in keys_path(served.ws.stage_dir("serve")).read_text()
    assert served.client(key).get("/v1/models").status_code == 200
    listed = runner.invoke(app, ["keys", "list", "-w", str(served.ws.root)])
    assert "temp" in listed.output and key not in listed.output
    assert runner.invoke(app, ["keys", "revoke", "temp", "-w", str(served.ws.root)]).exit_code == 0
    err = _is_openai_error(served.client(key).get("/v1/models"), 401, "invalid_api_key")
    assert "revoked" in err["message"]
    assert "revoked" in runner.invoke(app, ["keys", "list", "-w", str(served.ws.root)]).output
    assert runner.invoke(app, ["keys", "revoke", "temp", "-w", str(served.ws.root)]).exit_code == 2


def test_rate_limit_answers_429_with_retry_after(served):
    c = served.client("limited")
    codes = [c.get("/v1/models").status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    r = c.get("/v1/models")
    _is_openai_error(r, 429, "rate_limit_exceeded")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert served.client().get("/v1/models").status_code == 200  # other keys are not affected


def test_token_budget_is_never_exceeded(served):
    c = served.client("budget")
    used, last = 0, None
    for _ in range(10):
        last = c.post("/v1/completions", json={"model": served.model, "prompt": PROMPT,
                                                "max_tokens": 40, "temperature": 0})
        if last.status_code != 200:
            break
        used += last.json()["usage"]["total_tokens"]
    _is_openai_error(last, 429, "insufficient_quota")
    assert 0 < used <= 120


# --- errors ---------------------------------------------------------------------------------

def test_error_statuses(served):
    c = served.client()
    m = served.model
    _is_openai_error(c.post("/v1/completions", content=b'{"model": "x", "prompt": ',
                            headers={"content-type": "application/json"}), 400, "invalid_json")
    _is_openai_error(c.post("/v1/completions", json=[1, 2]), 400)
    _is_openai_error(c.post("/v1/completions", json={"model": "gpt-4", "prompt": "x"}), 404, "model_not_found")
    _is_openai_error(c.post("/v1/chat/completions", json={"model": "gpt-4", "messages": [
        {"role": "user", "content": "x"}]}), 404, "model_not_found")
    err = _is_openai_error(c.post("/v1/completions", json={"model": m, "prompt": "x", "temperature": 9}), 400)
    assert err["param"] == "temperature"
    _is_openai_error(c.post("/v1/chat/completions", json={"model": m, "messages": []}), 400)
    _is_openai_error(c.post("/v1/chat/completions", json={"model": m, "messages": [
        {"role": "wizard", "content": "x"}]}), 400)
    # A prompt longer than the context (1024 tokens for the tiny model), and one that fits but
    # leaves no room for the completion asked for.
    long_prompt = [10 + i % 500 for i in range(1100)]
    _is_openai_error(c.post("/v1/completions", json={"model": m, "prompt": long_prompt}), 400,
                     "context_length_exceeded")
    _is_openai_error(c.post("/v1/completions", json={"model": m, "prompt": long_prompt[:1000],
                                                     "max_tokens": 100}), 400, "context_length_exceeded")


def test_oversized_bodies_get_413_before_being_read(served):
    c = served.client()
    big = json.dumps({"model": served.model, "prompt": "가" * 8000}).encode()
    _is_openai_error(c.post("/v1/completions", content=big, headers={"content-type": "application/json"}),
                     413, "request_too_large")

    def chunked():  # no Content-Length: the server counts as it reads and stops at the limit
        for i in range(0, len(big), 1000):
            yield big[i:i + 1000]

    _is_openai_error(c.post("/v1/completions", content=chunked(), headers={"content-type": "application/json"}),
                     413, "request_too_large")


# --- under abuse ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def strict(served, tiny):
    """A second server on the same workspace with short deadlines and small caps, so that the
    limits can be seen in a test's time."""
    run = start(served.ws, model=tiny, max_batch=2, max_body_bytes=2_000_000, header_timeout_s=0.6,
                body_timeout_s=0.8, max_connections_per_client=6, unauthenticated_rate_limit=20)
    run.keys.update(served.keys)
    yield run
    run.stop()


def _raw_conn(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def _closed_within(sock: socket.socket, seconds: float) -> bytes:
    """Read until the server closes the connection; fail if it is still open after `seconds`."""
    sock.settimeout(seconds)
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except socket.timeout:
        pytest.fail(f"connection still open after {seconds} s (got {got[:80]!r})")
    return got


def test_unauthenticated_noise_is_bounded(strict):
    # Start a window of its own: one that began with the fixture could end during the 40
    # requests on a loaded machine, and part of the count would go to its record.
    strict.srv.noise.flush(force=True)
    log = strict.srv.audit.records_path
    before = log.stat().st_size if log.exists() else 0
    n_before = len(strict.srv.audit.records())
    anon = strict.client(key=None)
    codes = [anon.get("/v1/" + "x" * 8000).status_code for _ in range(40)]
    assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}  # then rate-limited per client
    new = strict.srv.audit.records()[n_before:]
    mine = [r for r in new if r.get("type") == "request" and r.get("key_id") is None]
    assert len(mine) <= 5  # the first few, with the path clipped
    assert all(len(r["route"]) < 300 and "(+" in r["route"] for r in mine)
    assert log.stat().st_size - before < 5 * 1024  # 40 requests of 8 KB paths: under 5 KB of log
    aggregate = strict.srv.noise.flush(force=True)  # what the next window (or shutdown) writes
    assert aggregate["refused"] == 40 - len(mine)
    assert {(b["status"], b["count"]) for b in aggregate["by_status"]} >= {(429, 20)}


def test_tokenizing_happens_off_the_event_loop(strict):
    """Two clients send 1 MB prompts while /health is probed: it stays fast, and the prompts are
    refused by size before a tokenizer sees them."""
    big = {"model": strict.model, "prompt": "가나다 " * 110_000, "max_tokens": 4}  # 1.1 MB of UTF-8
    results, lat = [], []

    def hammer():
        with strict.client() as c:
            for _ in range(2):
                results.append(c.post("/v1/completions", json=big))

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    with strict.client(key=None) as anon:
        while any(t.is_alive() for t in threads):
            t0 = time.perf_counter()
            assert anon.get("/health").status_code == 200
            lat.append(time.perf_counter() - t0)
            time.sleep(0.01)
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [400] * 4
    assert all(r.json()["error"]["code"] == "context_length_exceeded" for r in results)
    assert "characters" in results[0].json()["error"]["message"]
    assert max(lat) < 0.5, f"/health took up to {max(lat):.2f} s"


def test_bad_bodies_are_4xx_not_500(strict, capfd):
    c, m = strict.client(), strict.model
    r = c.post("/v1/chat/completions", content=b'{"model": "%s", "messages": [{"role": "user", '
               b'"content": "\\ud800"}]}' % m.encode(), headers={"content-type": "application/json"})
    _is_openai_error(r, 400, "invalid_value")
    assert "surrogate" in r.json()["error"]["message"]
    _is_openai_error(c.post("/v1/completions", content=b"[" * 100_000 + b"]" * 100_000,
                            headers={"content-type": "application/json"}), 400, "invalid_json")
    # a client that leaves mid-body: 499 in the audit log, no traceback on the console
    kid = strict.keys["alice"].split("-")[2].split(".")[0]
    with _raw_conn(strict.url) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer " + strict.keys["alice"].encode() +
                  b"\r\nContent-Length: 5000\r\n\r\n{\"model\": ")
        time.sleep(0.2)
    deadline = time.time() + 5
    while time.time() < deadline:
        last = [r for r in strict.srv.audit.records() if r.get("key_id") == kid][-1]
        if last["status"] == 499:
            break
        time.sleep(0.05)
    assert last["status"] == 499 and last["route"] == "/v1/completions"
    err = capfd.readouterr().err
    assert "Traceback" not in err and "500" not in err


@pytest.mark.parametrize("sent", [b"", b"GET /health HTTP/1.1\r\nHo",
                                  b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                  b"Content-Length: 100\r\nAuthorization: Bearer KEY\r\n\r\n{\"mo"])
def test_stalled_connections_are_closed(strict, sent):
    with _raw_conn(strict.url) as s:
        s.sendall(sent.replace(b"KEY", strict.keys["alice"].encode()))
        got = _closed_within(s, 5)
    assert b" 408 " in got.split(b"\r\n")[0]


def test_a_body_promised_to_a_public_route_does_not_hold_the_connection(strict):
    """/health answers without reading a body; a client that promised one and sends nothing
    is closed at the header deadline (0.6 s here), not held until the 5 s keep-alive."""
    with _raw_conn(strict.url) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        t0 = time.monotonic()
        got = _closed_within(s, 4)
    assert got.startswith(b"HTTP/1.1 200") and time.monotonic() - t0 < 4


def test_connections_per_client_are_capped(strict):
    socks = [_raw_conn(strict.url) for _ in range(6)]
    try:
        time.sleep(0.1)
        with _raw_conn(strict.url) as extra:
            assert b" 429 " in _closed_within(extra, 5)
    finally:
        for s in socks:
            s.close()
    time.sleep(0.1)
    assert strict.client(key=None).get("/health").status_code == 200  # the slots came back


@pytest.mark.parametrize("field, value, words", [
    ("max_tokens", "5", "must be an integer"), ("max_tokens", True, "must be an integer"),
    ("stream", "yes", "must be a boolean"), ("temperature", "0.5", "must be a number")])
def test_wrong_types_are_422_naming_the_field(served, field, value, words):
    r = served.client().post("/v1/completions", json={"model": served.model, "prompt": "x", field: value})
    err = _is_openai_error(r, 422, "invalid_type")
    assert err["param"] == field and words in err["message"]


def test_nan_temperature_and_content_type(served):
    c = served.client()
    r = c.post("/v1/completions", content=b'{"model": "%s", "prompt": "x", "temperature": NaN}'
               % served.model.encode(), headers={"content-type": "application/json"})
    err = _is_openai_error(r, 422)
    assert err["param"] == "temperature" and "must be a number" in err["message"]
    body = json.dumps({"model": served.model, "prompt": "x"})
    for ctype in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": ctype} if ctype else {}
        _is_openai_error(c.post("/v1/completions", content=body, headers=headers), 415, "unsupported_media_type")
    ok = c.post("/v1/completions", content=body, headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200, ok.text


def test_chat_page_head_favicon_hidden_and_fonts(served):
    anon = served.client(key=None)
    head = anon.head("/")
    assert head.status_code == 200 and head.headers["content-type"].startswith("text/html")
    icon = anon.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO header
    css = anon.get("/static/chat.css").text
    assert "[hidden] { display: none !important; }" in css  # #login{display:flex} cannot win
    assert '"Noto Sans CJK KR"' in css and '"Malgun Gothic"' in css and "fonts-noto-cjk" in css


# --- generation -----------------------------------------------------------------------------

def test_completion_is_the_models_own_greedy_answer(served):
    c = served.client()
    r = c.post("/v1/completions", json={"model": served.model, "prompt": PROMPT, "max_tokens": 12,
                                        "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    ids = served.srv.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    assert body["object"] == "text_completion" and body["model"] == served.model
    assert body["system_fingerprint"] == "sob-" + served.srv.source.checkpoint[:16]
    assert r.headers["x-soberan-checkpoint"] == served.srv.source.checkpoint
    u = body["usage"]
    assert u["prompt_tokens"] == len(ids) and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert 1 <= u["completion_tokens"] <= 12
    assert body["choices"][0]["text"] == _reference_greedy(served, ids, 12)


def test_chat_uses_the_chat_template_and_streams_the_same_answer(served):
    c = served.client()
    messages = [{"role": "system", "content": "한국어로 답하세요."}, {"role": "user", "content": "헌법이란?"}]
    req = {"model": served.model, "messages": messages, "max_tokens": 10, "temperature": 0}
    body = c.post("/v1/chat/completions", json=req).json()
    tok = served.srv.tokenizer
    ids = tok(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
              add_special_tokens=False)["input_ids"]
    answer = body["choices"][0]["message"]
    assert body["object"] == "chat.completion" and answer["role"] == "assistant"
    assert body["usage"]["prompt_tokens"] == len(ids)
    assert answer["content"] == _reference_greedy(served, ids, 10)

    with c.stream("POST", "/v1/chat/completions",
                  json={**req, "stream": True, "stream_options": {"include_usage": True}}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(ch["object"] == "chat.completion.chunk" for ch in chunks)
    text = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks if ch["choices"])
    assert text == answer["content"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == body["usage"]
    assert chunks[-2]["choices"][0]["finish_reason"] == body["choices"][0]["finish_reason"]


def test_sampling_parameters_reach_the_model(served):
    c = served.client()
    ask = lambda **kw: c.post("/v1/completions", json={"model": served.model, "prompt": PROMPT,
                                                       "max_tokens": 16, **kw}).json()["choices"][0]
    assert ask(temperature=1.0, seed=11)["text"] == ask(temperature=1.0, seed=11)["text"]
    greedy = ask(temperature=0)["text"]
    assert ask(temperature=0, frequency_penalty=2.0)["text"] != greedy
    stop = greedy[4:6]
    stopped = ask(temperature=0, stop=[stop])
    assert stopped["text"] == greedy[:greedy.find(stop)] and stopped["finish_reason"] == "stop"


def _wait_idle(served, timeout=20.0) -> None:
    engine = served.srv.backend
    deadline = time.time() + timeout
    while (engine.active or engine.pending) and time.time() < deadline:
        time.sleep(0.02)
    assert (engine.active, engine.pending) == (0, 0), "the sequence kept its slot"


def _audit_for(served, key: str) -> list[dict]:
    kid = served.keys[key].split("-")[2].split(".")[0]
    return [r for r in served.srv.audit.records() if r.get("key_id") == kid]


def test_client_leaving_mid_stream_stops_generation(served):
    """The client reads two events and hangs up; the sequence leaves the batch at once."""
    with served.client("leaver") as c:
        with c.stream("POST", "/v1/completions", json={"model": served.model, "prompt": PROMPT,
                                                       "max_tokens": 1000, "temperature": 0,
                                                       "stream": True}) as r:
            lines = r.iter_lines()
            seen = [next(lines) for _ in range(3)]
            assert any(s.startswith("data: ") for s in seen)
    _wait_idle(served)
    deadline = time.time() + 10
    while not _audit_for(served, "leaver") and time.time() < deadline:
        time.sleep(0.05)
    rec = _audit_for(served, "leaver")[-1]
    assert rec["status"] == 499 and rec["stream"] is True
    assert 0 < rec["completion_tokens"] < 1000


def test_client_leaving_a_plain_request_stops_generation(served):
    before = len(_audit_for(served, "leaver"))
    with pytest.raises(httpx.ReadTimeout):
        served.client("leaver", ).post("/v1/completions", timeout=0.5, json={
            "model": served.model, "prompt": PROMPT, "max_tokens": 1000, "temperature": 0})
    _wait_idle(served)
    deadline = time.time() + 10
    while len(_audit_for(served, "leaver")) == before and time.time() < deadline:
        time.sleep(0.05)
    rec = _audit_for(served, "leaver")[-1]
    assert rec["status"] == 499 and rec["completion_tokens"] < 1000


# --- the openai client ----------------------------------------------------------------------

def test_official_openai_client_works_unchanged(served):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=served.url + "/v1", api_key=served.keys["alice"], max_retries=0)
    assert [m.id for m in client.models.list()] == [served.model]
    comp = client.completions.create(model=served.model, prompt=PROMPT, max_tokens=8, temperature=0)
    assert comp.choices[0].text and comp.usage.completion_tokens <= 8
    chat = client.chat.completions.create(model=served.model, max_tokens=8, temperature=0,
                                          messages=[{"role": "user", "content": "안녕하세요"}])
    assert chat.choices[0].message.role == "assistant" and chat.usage.prompt_tokens > 0
    stream = client.chat.completions.create(model=served.model, max_tokens=8, temperature=0, stream=True,
                                            messages=[{"role": "user", "content": "안녕하세요"}])
    streamed = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    assert streamed == chat.choices[0].message.content
    text_stream = client.completions.create(model=served.model, prompt=PROMPT, max_tokens=8,
                                            temperature=0, stream=True)
    assert "".join(ch.choices[0].text for ch in text_stream) == comp.choices[0].text
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="x")
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=served.model, prompt="x", temperature=7)
    bad = openai.OpenAI(base_url=served.url + "/v1", api_key="sk-sob-bad", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


# --- nothing leaves the building ------------------------------------------------------------

def test_serving_opens_no_outbound_connection(served, monkeypatch, tiny):
    """Record every connect() made in this process while a server loads a model and answers."""
    from soberan.offline import is_local

    seen = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(self, address):
        seen.append(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        seen.append(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    other = start(served.ws, model=tiny, max_batch=2)  # loads a model too
    try:
        other.keys.update(served.keys)
        c = other.client()
        assert c.post("/v1/chat/completions", json={"model": other.model, "max_tokens": 4, "messages": [
            {"role": "user", "content": "안녕"}]}).status_code == 200
        with c.stream("POST", "/v1/completions", json={"model": other.model, "prompt": "가",
                                                       "max_tokens": 4, "stream": True}) as r:
            assert r.status_code == 200 and list(r.iter_lines())
    finally:
        other.stop()
    inet = [a for a in seen if isinstance(a, tuple)]
    assert inet, "the test client's own connections should have been seen"
    assert all(is_local(a[0]) for a in inet), inet


# --- the chat page in a real browser --------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.slow  # headless Chromium
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_chat_page_streams_a_korean_answer_in_chromium(served):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            outside = []
            page.on("request", lambda req: None if req.url.startswith(served.url) else outside.append(req.url))
            page.goto(served.url + "/")
            page.fill("#key", served.keys["alice"])
            page.click("#connect")
            page.wait_for_function("document.getElementById('model').textContent.length > 0", timeout=20000)
            assert page.text_content("#model") == served.model
            assert served.srv.source.checkpoint[:16] in page.text_content("#checkpoint")
            page.fill("#max-tokens", "24")
            page.fill("#prompt", "대한민국의 수도는 어디인가요?")
            page.click("#send")
            page.wait_for_selector(".msg.assistant.done", timeout=60000)
            answer = page.text_content(".msg.assistant.done")
            status = page.text_content("#status")
            assert page.text_content(".msg.user") == "대한민국의 수도는 어디인가요?"
            assert answer and "error" not in page.get_attribute(".msg.assistant.done", "class")
            assert status.startswith("done")
            assert not outside, outside
        finally:
            browser.close()
    rec = [r for r in served.srv.audit.records() if r.get("route") == "/v1/chat/completions"][-1]
    assert rec["status"] == 200 and rec["stream"] is True and rec["completion_tokens"] > 0


# --- the audit log ----------------------------------------------------------------------------

def test_audit_log_holds_every_request_and_verifies(served, tmp_path):
    """Stands alone: it makes the requests whose records it checks."""
    from soberan.cli import app
    from soberan.serve.audit import audit_secret, keyed_hash
    from soberan.serve.keys import create_key, keys_path

    m, c = served.model, served.client()
    once = create_key(keys_path(served.ws.stage_dir("serve")), "audit-once", rate_limit="1/min")[1]
    assert c.post("/v1/completions", json={"model": m, "prompt": PROMPT, "max_tokens": 2}).status_code == 200
    assert c.post("/v1/completions", json={"model": m, "prompt": "x", "temperature": 9}).status_code == 400
    assert served.client(key=None).get("/v1/models").status_code == 401
    assert c.get("/v1/models/gpt-4").status_code == 404
    assert c.post("/v1/completions", content=b"{" * 20000,
                  headers={"content-type": "application/json"}).status_code == 413
    assert [served.client(once).get("/v1/models").status_code for _ in range(2)] == [200, 429]
    with pytest.raises(httpx.ReadTimeout):
        c.post("/v1/completions", timeout=0.5, json={"model": m, "prompt": PROMPT, "max_tokens": 1000,
                                                     "temperature": 0})
    _wait_idle(served)
    deadline = time.time() + 10
    while served.srv.audit.records()[-1].get("status") != 499 and time.time() < deadline:
        time.sleep(0.05)

    recs = served.srv.audit.records()
    assert {r["status"] for r in recs} >= {200, 400, 401, 404, 413, 429, 499}
    for r in recs:
        assert {"time", "key_id", "route", "status"} <= set(r)
        if r["type"] == "request" and r.get("key_id"):
            assert r["checkpoint"] == served.srv.source.checkpoint and "latency_ms" in r
    done = [r for r in recs if r["status"] == 200 and r["route"] == "/v1/completions"]
    assert all(r["prompt_tokens"] > 0 and "completion_tokens" in r for r in done)
    # hash mode: a keyed hash (HMAC under the workspace's audit secret), never the text, and
    # never a plain SHA-256 that anyone could confirm by hashing a guess
    secret = audit_secret(served.ws.stage_dir("serve"))
    assert any(r.get("prompt", {}).get("hmac_sha256") == keyed_hash(secret, PROMPT) for r in done)
    text = served.srv.audit.records_path.read_text()
    assert PROMPT not in text and hashlib.sha256(PROMPT.encode()).hexdigest() not in text
    assert served.srv.audit.records_path.stat().st_mode & 0o777 == 0o600

    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "-w", str(served.ws.root)])
    assert ok.exit_code == 0 and "audit log OK" in ok.output, ok.output
    # Tamper with a copy of the workspace: change one record's status.
    copy = tmp_path / "ws"
    shutil.copytree(served.ws.root, copy)
    log = copy / "serve" / "audit.jsonl"
    lines = log.read_text().splitlines()
    rec = json.loads(lines[3])
    rec["status"] = 200 if rec["status"] != 200 else 500
    lines[3] = json.dumps(rec, ensure_ascii=False, sort_keys=True)
    log.write_text("\n".join(lines) + "\n")
    bad = runner.invoke(app, ["audit", "verify", "-w", str(copy)])
    assert bad.exit_code == 1 and "record 3" in bad.output and "changed" in bad.output


# --- the command itself ---------------------------------------------------------------------

@pytest.mark.slow  # `soberan serve` in its own process
def test_serve_command_runs_locked_down(served, tiny, tmp_path):
    """`soberan serve --model ...` in its own process: health open, everything else keyed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-c", "from soberan.cli import app; app()", "serve", "-w", str(served.ws.root),
           "--model", str(tiny), "--port", str(port), "--max-batch", "4", "--quantize", "int8"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "soberan serve did not come up"
            time.sleep(0.2)
        assert httpx.get(url + "/v1/models").status_code == 401
        r = httpx.post(url + "/v1/completions", headers={"Authorization": f"Bearer {served.keys['alice']}"},
                       json={"model": "model", "prompt": PROMPT, "max_tokens": 4}, timeout=60)
        assert r.status_code == 200, r.text
        assert httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {served.keys['alice']}"}
                         ).json()["data"][0]["quantize"] == "int8"
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "serving model" in out and f"127.0.0.1:{port}" in out
    assert "request(s) audited" in out  # it shut down cleanly on SIGTERM
    # which egress protection was in force is said, and recorded in the ledger
    assert "egress guard:" in out
    event = [e for e in served.ws.ledger.records("event") if e.get("event") == "serve"][-1]
    assert event["egress"] in out
    if os.geteuid() == 0:
        assert "network namespace" in event["egress"]
