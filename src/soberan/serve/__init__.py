"""soberan serve: the nation's model behind an OpenAI-compatible, locked-down API.

`run(ws)` serves the workspace's newest model until stopped: keys checked on every route but
`/health`, a rate limit and token budget per key, an audit record per request, and no outbound
connection. Guide: docs/serve.md.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from soberan.serve.config import ServeSettings


@dataclass
class ServeSummary:
    model_id: str
    checkpoint: str
    backend: str
    url: str
    requests: int  # audit records written while it ran


@dataclass
class Listener:
    """The listening socket, opened before the process leaves the host's network, and which
    egress protection is in force."""

    sock: socket.socket | None
    egress: str


HOOK_ONLY = "Python audit hook (no network namespace)"


def open_listener(workspace: Path, **overrides) -> Listener:
    """Bind the serving socket, then, as `[serve] isolate_network` says, move the process into a
    network namespace with only loopback (`offline.isolate_network`). Runs before the workspace
    is opened: that loads pyarrow, whose threads would stay in the host's namespace. The socket
    stays in the namespace it was bound in, so clients still reach the server."""
    from soberan.config import CONFIG_NAME, ConfigError, load_config
    from soberan.offline import isolate_network

    path = Path(workspace).resolve() / CONFIG_NAME
    if not path.exists():
        return Listener(None, HOOK_ONLY)  # Workspace.open says what is wrong
    settings = _validated(load_config(path).serve, overrides)
    if settings.isolate_network == "off":
        return Listener(None, HOOK_ONLY)
    family, kind, proto, _, addr = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: {e.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    try:
        return Listener(sock, isolate_network() + " + Python audit hook")
    except OSError as e:
        if settings.isolate_network == "on":
            sock.close()
            raise ConfigError(f"isolate_network = \"on\": {e}") from None
        return Listener(sock, f"{HOOK_ONLY}: {e}")


def _validated(section, overrides: dict) -> ServeSettings:
    from pydantic import ValidationError

    from soberan.config import ConfigError

    values = section.model_dump()
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ServeSettings.model_validate(values)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"serve.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def settings_for(ws, **overrides) -> ServeSettings:
    """The `[serve]` section with command-line overrides (None = not given), validated."""
    return _validated(ws.config.serve, overrides)


def choose_backend(settings: ServeSettings) -> str:
    from soberan.config import ConfigError
    from soberan.serve.model import vllm_available

    if settings.backend == "vllm" or (settings.backend == "auto" and vllm_available()):
        if settings.quantize != "none":
            raise ConfigError("--quantize int8 is for the CPU backend; for vLLM serve a checkpoint "
                              "quantized ahead of time (AWQ, GPTQ, FP8)")
        return "vllm"
    return "transformers"


def build_server(ws, settings: ServeSettings, model: Path | None = None):
    """Load the model and assemble everything the app needs (not yet listening)."""
    from soberan.serve.app import Server
    from soberan.serve.audit import AuditLog, audit_secret, content_recorder
    from soberan.serve.keys import KeyStore, Quotas, keys_path
    from soberan.serve.limits import Noise
    from soberan.serve.model import load_transformers, resolve_model
    from soberan.offline import go_offline
    from soberan.ui import console

    go_offline()
    source = resolve_model(ws, model)
    serve_dir = ws.stage_dir("serve")
    audit = AuditLog(serve_dir)
    for problem in audit.verify():  # recovers a torn last line first: never fatal
        console.print(f"[red]warning: audit log[/red] {problem} (see `soberan audit verify`)")
    for e in audit.torn_events():
        console.print(f"[yellow]audit log[/yellow]: record {e['seq']} recovered a torn last line, "
                      f"kept in {audit.records_path.with_name(e['kept_aside'])}")
    record = content_recorder(settings.audit_content, ws.config.project.languages,
                              audit_secret(serve_dir))
    backend_name = choose_backend(settings)
    loaded = load_transformers(source.path, quantize=settings.quantize, threads=settings.threads,
                               context_length=settings.context_length,
                               weights=backend_name == "transformers", device="auto")
    if backend_name == "vllm":
        from soberan.serve.vllm_engine import VllmEngine

        backend = VllmEngine(source.path, context_length=loaded.context_length,
                             max_batch=settings.max_batch, tensor_parallel=settings.tensor_parallel)
    else:
        from soberan.serve.engine import BatchEngine

        backend = BatchEngine(loaded.model, loaded.tokenizer, max_batch=settings.max_batch,
                              context_length=loaded.context_length, eos_ids=loaded.eos_ids)
    return Server(backend=backend, backend_name=backend_name, tokenizer=loaded.tokenizer,
                  chat_template=loaded.chat_template, chat_stop=loaded.extra_stop, source=source,
                  context_length=loaded.context_length, keys=KeyStore(keys_path(serve_dir)),
                  quotas=Quotas(audit.tokens_by_key()), audit=audit, record_content=record,
                  max_body_bytes=settings.max_body_bytes,
                  default_max_tokens=settings.default_max_tokens,
                  owned_by=ws.config.project.provider, quantize=settings.quantize,
                  body_timeout_s=settings.body_timeout_s,
                  noise=Noise(per_client=settings.unauthenticated_rate_limit))


def uvicorn_config(app, settings: ServeSettings, **overrides):
    """uvicorn's settings for the app: the stall guard as its HTTP protocol (header deadline,
    connections per client), quiet logs, and a short graceful shutdown."""
    import uvicorn

    from soberan.serve.limits import stall_guard

    kw = dict(host=settings.host, port=settings.port, log_level="warning", access_log=False,
              timeout_graceful_shutdown=5,
              http=stall_guard(settings.header_timeout_s, settings.max_connections_per_client))
    return uvicorn.Config(app, **{**kw, **overrides})


def run(ws, *, model: Path | None = None, listener: Listener | None = None, **overrides) -> ServeSummary:
    """Serve until interrupted; return what was served. `listener` is `open_listener`'s, made
    before the workspace was opened; without it the server binds its own socket and only the
    audit hook guards egress."""
    import uvicorn

    from soberan.serve.app import create_app
    from soberan.offline import refuse_outbound
    from soberan.ui import console

    settings = settings_for(ws, **overrides)
    listener = listener or Listener(None, HOOK_ONLY)
    refuse_outbound()
    # The engine thread's Python work between torch calls holds the GIL; at the default 5 ms
    # switch interval a runnable event loop can wait several of those per step. 1 ms keeps
    # /health and new connections answered while the batch decodes.
    sys.setswitchinterval(0.001)
    srv = build_server(ws, settings, model)
    before = len(srv.audit.records())
    url = f"http://{settings.host}:{settings.port}"
    ws.ledger.record_event("serve", model=srv.source.model_id, checkpoint=srv.source.checkpoint,
                           artifact_seq=srv.source.artifact_seq, backend=srv.backend_name,
                           quantize=settings.quantize, url=url, egress=listener.egress)
    console.print(f"serving [bold]{srv.source.model_id}[/bold] (checkpoint {srv.source.checkpoint[:16]}, "
                  f"{srv.backend_name}{', int8' if settings.quantize == 'int8' else ''}, "
                  f"max batch {settings.max_batch}) on [bold]{url}[/bold]; chat page at {url}/")
    console.print(f"egress guard: {listener.egress}")
    if not len(srv.keys):
        console.print("[yellow]no API keys yet[/yellow]: every request will get 401 until you run "
                      f"`soberan keys create NAME -w {ws.root}`")

    def summary() -> ServeSummary:
        return ServeSummary(srv.source.model_id, srv.source.checkpoint, srv.backend_name, url,
                            len(srv.audit.records()) - before)

    def on_stop() -> None:
        console.print(f"stopped; {summary().requests} request(s) audited in "
                      f"{ws.ledger.rel(srv.audit.records_path)}")

    uvicorn.Server(uvicorn_config(create_app(srv, on_stop), settings)).run(
        sockets=[listener.sock] if listener.sock else None)
    return summary()
