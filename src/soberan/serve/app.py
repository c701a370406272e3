"""The HTTP app: OpenAI-compatible routes behind a key gate, an audit record per request, and the
chat page.

Every route but `GET /health` and the page's static files needs a valid key. The gate runs before
routing, so an unknown route without a key is a 401, not a map of what exists. FastAPI's own
`/docs` and `/openapi.json` are switched off for the same reason.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.staticfiles import StaticFiles

from soberan.serve.audit import AuditLog
from soberan.serve.engine import Chunk, Sampling
from soberan.serve.keys import ApiKey, KeyStore, Quotas
from soberan.serve.limits import Noise, clip
from soberan.serve.model import ModelSource, render_chat
from soberan.serve.protocol import ApiError, ChatRequest, CompletionRequest, error_response, parse

STATIC = Path(__file__).parent / "static"
PUBLIC_PATHS = {"/health", "/", "/favicon.ico"}
# The page may talk to this server and nothing else: no CDN, no analytics, no fonts.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; connect-src 'self'; "
                                           "img-src 'self' data:; base-uri 'none'; form-action 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
DISCONNECTED = 499  # nginx's "client closed request": the client left before the answer ended


@dataclass
class Server:
    """Everything the routes need: the model, its backend, keys, quotas and the audit log."""

    backend: object  # BatchEngine or VllmEngine: generate(prompt_ids, Sampling) -> chunks
    backend_name: str
    tokenizer: object
    chat_template: str
    source: ModelSource
    context_length: int
    keys: KeyStore
    quotas: Quotas
    audit: AuditLog
    record_content: Callable[[str], dict]
    max_body_bytes: int = 1_000_000
    default_max_tokens: int = 256
    chat_stop: tuple[str, ...] = ()
    owned_by: str = "soberan"
    quantize: str = "none"
    body_timeout_s: float = 30.0
    noise: Noise = field(default_factory=Noise)
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self):
        # The longest token, in characters: a text of n characters is at least n / this many
        # tokens, so a prompt that could never fit is refused without tokenizing it.
        vocab = self.tokenizer.get_vocab() if hasattr(self.tokenizer, "get_vocab") else {}
        self.max_token_chars = max((len(t) for t in vocab), default=0) or 64

    def refuse_oversized(self, chars: int, param: str) -> None:
        at_least = chars // self.max_token_chars
        if at_least >= self.context_length:
            raise ApiError(400, f"This model's maximum context length is {self.context_length} tokens; "
                                f"the {param} has {chars} characters, so at least {at_least} tokens.",
                           param=param, code="context_length_exceeded")

    def model_card(self) -> dict:
        return {"id": self.source.model_id, "object": "model", "created": self.created,
                "owned_by": self.owned_by, "checkpoint": self.source.checkpoint,
                "context_length": self.context_length, "backend": self.backend_name,
                "quantize": self.quantize}

    @property
    def fingerprint(self) -> str:
        return f"sob-{self.source.checkpoint[:16]}"


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith("/static/")


class Gate:
    """ASGI middleware: key check, rate limit, body size, and one audit record per request."""

    def __init__(self, app, server: Server):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if _public(scope["path"]):
            return await self.app(scope, receive, _with_headers(send, PAGE_HEADERS))
        srv = self.server
        t0 = time.perf_counter()
        client = (scope.get("client") or ("?",))[0]
        # What the client chose (method, path) is clipped: a 60 KB path is not 60 KB of log.
        rec: dict = {"method": clip(scope["method"], 16), "route": clip(scope["path"]), "key_id": None,
                     "model": srv.source.model_id, "checkpoint": srv.source.checkpoint}
        scope.setdefault("state", {}).update(audit=rec, t0=t0)
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            refusal = self._admit(scope, rec, client)
            if refusal is not None:
                rec["error"] = refusal.code
                return await refusal.response()(scope, receive, send_status)
            await self.app(scope, receive, send_status)
        finally:
            rec["status"] = rec.pop("status_override", None) or status[0]
            rec["latency_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            # Without a key, only the first few refusals per client and minute get a record of
            # their own; the rest are counted into one aggregate record a minute.
            if rec["key_id"] is not None or srv.noise.keep(client, rec["status"], rec.get("error") or ""):
                await _in_thread(srv.audit.log, rec)
            if (aggregate := srv.noise.flush()) is not None:
                await _in_thread(srv.audit.append, "noise", aggregate)

    def _admit(self, scope, rec: dict, client: str) -> ApiError | None:
        srv = self.server
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        key, why = srv.keys.check(token)
        if key is None:
            wait = srv.noise.limited(client)
            if wait is not None:
                return ApiError(429, f"too many requests without a valid API key; retry in {math.ceil(wait)} s",
                                type="requests", code="rate_limit_exceeded",
                                headers={"Retry-After": str(math.ceil(wait))})
            return ApiError(401, why, code="invalid_api_key")
        rec["key_id"] = key.key_id
        scope["state"]["key"] = key
        wait = srv.quotas.admit(key)
        if wait is not None:
            return ApiError(429, f"rate limit of key {key.name!r} reached ({key.rate_limit} requests "
                                 f"per {key.rate_window_s} s); retry in {math.ceil(wait)} s",
                            type="requests", code="rate_limit_exceeded",
                            headers={"Retry-After": str(math.ceil(wait))})
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return ApiError(400, "invalid Content-Length header")
            if int(length) > srv.max_body_bytes:  # refused before a byte of the body is read
                return _too_large(srv.max_body_bytes)
        return None


def _with_headers(send, extra: dict[str, str]):
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]

    async def wrapped(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": list(message.get("headers", [])) + raw}
        await send(message)

    return wrapped


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body larger than {limit} bytes", code="request_too_large")


async def _in_thread(fn, *args):
    """Blocking work (tokenizing, hashing, an fsync'd audit write) off the event loop, so that
    `/health` and every other connection stay served meanwhile. Shielded: a request cancelled
    at shutdown still finishes its audit record."""
    return await asyncio.shield(asyncio.to_thread(fn, *args))


class ClientGone(Exception):
    """The client closed the connection before its request body was all sent."""


def _decode(raw: bytes):
    try:
        body = json.loads(raw)
    except RecursionError:
        raise ApiError(400, "malformed JSON body: nested too deeply", code="invalid_json") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"malformed JSON body: {e}", code="invalid_json") from None
    try:  # "\ud800" is valid JSON but not text: no tokenizer can take it
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "the body holds a lone UTF-16 surrogate (such as \\ud800), which is not "
                            "text", code="invalid_value") from None
    except RecursionError:
        raise ApiError(400, "malformed JSON body: nested too deeply", code="invalid_json") from None
    return body


async def read_json(request: Request, limit: int, timeout_s: float = 30.0):
    """The body as JSON: `application/json` only, read incrementally so a body without
    Content-Length is cut at `limit`, and within `timeout_s` (a stalled body gets 408)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise ApiError(415, f"send the body as JSON, with Content-Type: application/json (not {clip(ctype, 60)!r})"
                       if ctype else "send the body as JSON, with Content-Type: application/json",
                       code="unsupported_media_type")
    buf = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                buf += chunk
                if len(buf) > limit:
                    raise _too_large(limit)
    except TimeoutError:
        raise ApiError(408, f"request body not received within {timeout_s:g} s", code="request_timeout",
                       headers={"Connection": "close"}) from None
    except ClientDisconnect:
        raise ClientGone() from None
    return await _in_thread(_decode, bytes(buf))


class SSEResponse(StreamingResponse):
    """Server-sent events that close their reply however the response ends (even before the
    first event), so a client that leaves frees its sequence's slot at once."""

    media_type = "text/event-stream"

    def __init__(self, reply: Reply, events, **kw):
        super().__init__(events, **kw)
        self.reply = reply

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()
            await self.reply.close(disconnected=True)  # a no-op when the stream ended normally


def sse(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def create_app(srv: Server, on_stop: Callable[[], None] | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app):
        srv.backend.start()
        try:
            yield
        finally:
            if (aggregate := srv.noise.flush(force=True)) is not None:
                srv.audit.append("noise", aggregate)
            srv.backend.stop()
            if on_stop:  # uvicorn re-raises SIGTERM/SIGINT after shutdown: say goodbye here
                on_stop()

    # FastAPI >= 0.16x ships OpenTelemetry hooks that can add OTLP exporters from the environment;
    # switched off explicitly (older versions keep the unknown keyword in `app.extra`).
    telemetry = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False,
                 "auto_configure": False}
    app = FastAPI(title="soberan", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, telemetry=telemetry)
    app.state.server = srv
    app.add_middleware(Gate, server=srv)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return exc.response()

    @app.exception_handler(ClientGone)
    @app.exception_handler(ClientDisconnect)
    async def _gone(request, exc):
        return Response(status_code=DISCONNECTED)  # nobody reads it; the audit record says 499

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None)

    @app.exception_handler(Exception)
    async def _crash(request, exc: Exception):
        traceback.print_exc(file=sys.stderr)  # for the operator; the client gets no stack trace
        return error_response(500, "internal server error", type="server_error")

    @app.get("/health", include_in_schema=False)
    async def health():
        return {"status": "ok"}

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.api_route("/favicon.ico", methods=["GET", "HEAD"], include_in_schema=False)
    async def favicon():
        return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [srv.model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        _check_model(srv, model_id)
        return srv.model_card()

    @app.post("/v1/completions")
    async def completions(request: Request):
        req = parse(CompletionRequest, await read_json(request, srv.max_body_bytes, srv.body_timeout_s))
        _check_model(srv, req.model)
        if isinstance(req.prompt, str):
            text = req.prompt
            srv.refuse_oversized(len(text), "prompt")
            ids = await _in_thread(lambda: srv.tokenizer(text, add_special_tokens=False)["input_ids"])
        else:
            ids = list(req.prompt)
            if len(ids) >= srv.context_length:
                raise ApiError(400, f"This model's maximum context length is {srv.context_length} tokens; "
                                    f"the prompt has {len(ids)}.", param="prompt", code="context_length_exceeded")
            if any(not 0 <= t < len(srv.tokenizer) for t in ids):
                raise ApiError(400, "prompt holds token ids outside the vocabulary", param="prompt",
                               code="invalid_value")
            text = await _in_thread(srv.tokenizer.decode, ids)
        if not ids:
            bos = srv.tokenizer.bos_token_id
            if bos is None:
                raise ApiError(400, "the prompt is empty", param="prompt")
            ids = [bos]
        return await _answer(srv, request, req, ids, text, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        req = parse(ChatRequest, await read_json(request, srv.max_body_bytes, srv.body_timeout_s))
        _check_model(srv, req.model)
        messages = [m.as_template() for m in req.messages]
        srv.refuse_oversized(sum(len(m["content"]) for m in messages), "messages")
        ids = await _in_thread(render_chat, srv.tokenizer, srv.chat_template, messages)
        text = "\n".join(f"{m['role']}: {m['content']}" for m in messages)
        return await _answer(srv, request, req, ids, text, chat=True)

    return app


def _check_model(srv: Server, name: str) -> None:
    if name != srv.source.model_id:
        raise ApiError(404, f"The model `{name}` does not exist; this server serves "
                            f"`{srv.source.model_id}`", param="model", code="model_not_found")


async def _answer(srv: Server, request: Request, req, ids: list[int], prompt_text: str, *, chat: bool):
    rec: dict = request.state.audit
    key: ApiKey = request.state.key
    n_prompt, ctx = len(ids), srv.context_length
    param = "messages" if chat else "prompt"
    if n_prompt >= ctx:
        raise ApiError(400, f"This model's maximum context length is {ctx} tokens; the prompt has "
                            f"{n_prompt}.", param=param, code="context_length_exceeded")
    asked = req.limit if chat else req.max_tokens
    if asked is None:
        asked = min(srv.default_max_tokens, ctx - n_prompt) if chat else min(16, ctx - n_prompt)
    elif n_prompt + asked > ctx:
        raise ApiError(400, f"This model's maximum context length is {ctx} tokens; {n_prompt + asked} "
                            f"were requested ({n_prompt} in the prompt, {asked} for the completion).",
                       param="max_tokens", code="context_length_exceeded")
    allowed = srv.quotas.reserve(key, n_prompt, asked)
    if allowed == 0:
        raise ApiError(429, f"the token budget of key {key.name!r} ({key.token_budget} tokens) is spent",
                       type="insufficient_quota", code="insufficient_quota")
    reserved = n_prompt + allowed if key.token_budget else 0
    sampling = Sampling(max_tokens=allowed, temperature=req.temperature, top_p=req.top_p,
                        presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
                        stop=req.stops + (srv.chat_stop if chat else ()), seed=req.seed)
    rec.update(prompt_tokens=n_prompt, completion_tokens=0, stream=req.stream)
    if content := await _in_thread(srv.record_content, prompt_text):
        rec["prompt"] = content
    reply = Reply(srv, rec, key, reserved, n_prompt, request.state.t0,
                  srv.backend.generate(ids, sampling))
    if req.stream:
        return SSEResponse(reply, reply.events(chat, req.include_usage),
                           headers={"X-Soberan-Checkpoint": srv.source.checkpoint,
                                    "Cache-Control": "no-cache"})
    text, reason = await reply.collect(request)
    if reason == "error":
        raise ApiError(500, "generation failed", type="server_error")
    body = reply.envelope(chat, stream=False)
    if chat:
        body["choices"] = [{"index": 0, "message": {"role": "assistant", "content": text},
                            "logprobs": None, "finish_reason": reason}]
    else:
        body["choices"] = [{"index": 0, "text": text, "logprobs": None, "finish_reason": reason}]
    body["usage"] = reply.usage()
    return JSONResponse(body, headers={"X-Soberan-Checkpoint": srv.source.checkpoint})


class Reply:
    """One answer in progress: its text, token count, audit record and budget settlement."""

    def __init__(self, srv: Server, rec: dict, key: ApiKey, reserved: int, n_prompt: int, t0: float,
                 chunks: AsyncIterator[Chunk]):
        self.srv, self.rec, self.key, self.reserved, self.n_prompt = srv, rec, key, reserved, n_prompt
        self.t0 = t0  # when the request arrived
        self.chunks = chunks
        self.closed = False
        self.id = uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.parts: list[str] = []
        self.tokens = 0
        self.reason: str | None = None

    def take(self, c: Chunk) -> None:
        if c.text and "ttft_ms" not in self.rec:
            self.rec["ttft_ms"] = round((time.perf_counter() - self.t0) * 1000, 1)
        self.parts.append(c.text)
        self.tokens, self.reason = c.completion_tokens, c.finish_reason

    def usage(self) -> dict:
        return {"prompt_tokens": self.n_prompt, "completion_tokens": self.tokens,
                "total_tokens": self.n_prompt + self.tokens}

    def envelope(self, chat: bool, stream: bool) -> dict:
        obj = ("chat.completion.chunk" if stream else "chat.completion") if chat else "text_completion"
        return {"id": ("chatcmpl-" if chat else "cmpl-") + self.id, "object": obj,
                "created": self.created, "model": self.srv.source.model_id,
                "system_fingerprint": self.srv.fingerprint}

    async def close(self, disconnected: bool) -> None:
        """Stop the generation if it still runs, then account for it once: audit record, budget."""
        if self.closed:
            return
        self.closed = True
        await self.chunks.aclose()
        text = "".join(self.parts)
        self.rec.update(completion_tokens=self.tokens, finish_reason=self.reason)
        if content := self.srv.record_content(text):
            self.rec["completion"] = content
        if disconnected:
            self.rec["status_override"] = DISCONNECTED
        self.srv.quotas.settle(self.key, self.reserved, self.n_prompt + self.tokens)

    async def collect(self, request: Request) -> tuple[str, str | None]:
        """Gather a whole answer, watching for the client to leave meanwhile."""

        async def gather():
            async for c in self.chunks:
                self.take(c)

        task = asyncio.ensure_future(gather())
        left = False
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=0.25)
                if not task.done() and await request.is_disconnected():
                    left = True
                    task.cancel()
                    break
            if not left:
                task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})  # let the reader unwind before closing the stream
            await self.close(disconnected=left)
        return "".join(self.parts), self.reason

    async def events(self, chat: bool, include_usage: bool):
        """The SSE stream, OpenAI's shape: role first (chat), then deltas, then [DONE]."""
        finished = False
        try:
            if chat:
                yield sse({**self.envelope(chat, True), "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                     "finish_reason": None}]})
            async for c in self.chunks:
                self.take(c)
                if c.finish_reason == "error":
                    yield sse({"error": {"message": "generation failed", "type": "server_error",
                                         "param": None, "code": None}})
                    break
                if c.text or c.finish_reason:
                    delta = {"content": c.text} if c.text else {}
                    choice = ({"index": 0, "delta": delta, "logprobs": None, "finish_reason": c.finish_reason}
                              if chat else {"index": 0, "text": c.text, "logprobs": None,
                                            "finish_reason": c.finish_reason})
                    yield sse({**self.envelope(chat, True), "choices": [choice]})
            if include_usage:
                yield sse({**self.envelope(chat, True), "choices": [], "usage": self.usage()})
            yield "data: [DONE]\n\n"
            finished = True
        finally:
            await self.close(disconnected=not finished)
