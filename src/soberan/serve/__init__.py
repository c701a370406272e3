"""soberan serve: the nation's model behind an OpenAI-compatible, locked-down API.

`run(ws)` serves the workspace's newest model until stopped: keys checked on every route but
`/health`, a rate limit and token budget per key, an audit record per request, and no outbound
connection. Guide: docs/serve.md.
"""

from __future__ import annotations

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


def settings_for(ws, **overrides) -> ServeSettings:
    """The `[serve]` section with command-line overrides (None = not given), validated."""
    from pydantic import ValidationError

    from soberan.config import ConfigError

    values = ws.config.serve.model_dump()
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ServeSettings.model_validate(values)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"serve.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None


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
    from soberan.serve.audit import AuditLog, content_recorder
    from soberan.serve.keys import KeyStore, Quotas, keys_path
    from soberan.serve.model import load_transformers, resolve_model
    from soberan.serve.offline import go_offline
    from soberan.ui import console

    go_offline()
    source = resolve_model(ws, model)
    serve_dir = ws.stage_dir("serve")
    audit = AuditLog(serve_dir)
    for problem in audit.verify():
        console.print(f"[red]warning: audit log[/red] {problem} (see `soberan audit verify`)")
    record = content_recorder(settings.audit_content, ws.config.project.languages)
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
                  owned_by=ws.config.project.provider, quantize=settings.quantize)


def run(ws, *, model: Path | None = None, **overrides) -> ServeSummary:
    """Serve until interrupted; return what was served."""
    import uvicorn

    from soberan.serve.app import create_app
    from soberan.serve.offline import refuse_outbound
    from soberan.ui import console

    settings = settings_for(ws, **overrides)
    refuse_outbound()
    srv = build_server(ws, settings, model)
    before = len(srv.audit.records())
    url = f"http://{settings.host}:{settings.port}"
    ws.ledger.record_event("serve", model=srv.source.model_id, checkpoint=srv.source.checkpoint,
                           artifact_seq=srv.source.artifact_seq, backend=srv.backend_name,
                           quantize=settings.quantize, url=url)
    console.print(f"serving [bold]{srv.source.model_id}[/bold] (checkpoint {srv.source.checkpoint[:16]}, "
                  f"{srv.backend_name}{', int8' if settings.quantize == 'int8' else ''}, "
                  f"max batch {settings.max_batch}) on [bold]{url}[/bold]; chat page at {url}/")
    if not len(srv.keys):
        console.print("[yellow]no API keys yet[/yellow]: every request will get 401 until you run "
                      f"`soberan keys create NAME -w {ws.root}`")

    def summary() -> ServeSummary:
        return ServeSummary(srv.source.model_id, srv.source.checkpoint, srv.backend_name, url,
                            len(srv.audit.records()) - before)

    def on_stop() -> None:
        console.print(f"stopped; {summary().requests} request(s) audited in "
                      f"{ws.ledger.rel(srv.audit.records_path)}")

    uvicorn.Server(uvicorn.Config(create_app(srv, on_stop), host=settings.host, port=settings.port,
                                  log_level="warning", access_log=False,
                                  timeout_graceful_shutdown=5)).run()
    return summary()
