"""`soberan serve`, `soberan keys ...`, `soberan audit verify`. Heavy imports stay inside."""

from __future__ import annotations

from pathlib import Path

import typer

from soberan.ui import console, fail

WS = typer.Option(Path("."), "--workspace", "-w", help="Workspace folder (holds soberan.toml).")

keys_app = typer.Typer(help="Create, list and revoke the API keys of `soberan serve`.", no_args_is_help=True)
audit_app = typer.Typer(help="Check the serving audit log (serve/audit.jsonl).", no_args_is_help=True)


def serve(workspace: Path = WS,
          model: Path = typer.Option(None, "--model", help="Serve this HF checkpoint folder instead "
                                                           "of the workspace's newest model."),
          host: str = typer.Option(None, help="Address to listen on (default [serve] host, 127.0.0.1)."),
          port: int = typer.Option(None, help="Port (default [serve] port, 8000)."),
          max_batch: int = typer.Option(None, "--max-batch", help="Sequences decoded together; "
                                                                  "1 = one request at a time."),
          quantize: str = typer.Option(None, help="none or int8 (CPU backend)."),
          backend: str = typer.Option(None, help="auto, transformers or vllm."),
          threads: int = typer.Option(None, help="torch CPU threads (0 = all cores but one)."),
          isolate_network: str = typer.Option(None, "--isolate-network", help="auto, on or off: serve "
                                              "from a network namespace with only loopback "
                                              "(needs root or user namespaces).")) -> None:
    """Serve the workspace's model: OpenAI-compatible API, API keys, audit log, chat page."""
    from soberan.serve import open_listener, run

    opts = dict(host=host, port=port, max_batch=max_batch, quantize=quantize, backend=backend,
                threads=threads, isolate_network=isolate_network)
    with fail():
        listener = open_listener(workspace, **opts)  # first: before pyarrow starts threads
        from soberan.workspace import Workspace

        ws = Workspace.open(workspace)
        run(ws, model=model, listener=listener, **opts)


def _keys_file(workspace: Path) -> tuple:
    from soberan.serve.keys import keys_path
    from soberan.workspace import Workspace

    ws = Workspace.open(workspace)
    return ws, keys_path(ws.stage_dir("serve"))


@keys_app.command("create")
def keys_create(name: str = typer.Argument(..., help="Who or what the key is for."),
                workspace: Path = WS,
                rate_limit: str = typer.Option(None, "--rate-limit", help="Requests per minute, or "
                                               "N/s, N/min, N/hour; 0 = unlimited (default [serve] rate_limit)."),
                token_budget: int = typer.Option(None, "--token-budget", help="Prompt + completion "
                                                 "tokens over the key's life; 0 = unlimited.")) -> None:
    """Create a key. It is printed once, alone on the last line, and stored only as a hash."""
    from soberan.serve.keys import create_key

    with fail():
        ws, path = _keys_file(workspace)
        cfg = ws.config.serve
        rec, key = create_key(path, name, rate_limit=cfg.rate_limit if rate_limit is None else rate_limit,
                              token_budget=cfg.token_budget if token_budget is None else token_budget)
    limit = f"{rec.rate_limit}/{rec.rate_window_s}s" if rec.rate_limit else "unlimited"
    budget = f"{rec.token_budget} tokens" if rec.token_budget else "unlimited"
    console.print(f"created key [bold]{rec.name}[/bold] (id {rec.key_id}; rate {limit}; budget {budget}); "
                  "it is shown once, store it now:")
    typer.echo(key)


@keys_app.command("list")
def keys_list(workspace: Path = WS) -> None:
    """List keys (never the keys themselves) with their limits and tokens spent."""
    from rich.table import Table

    from soberan.serve.audit import AuditLog
    from soberan.serve.keys import load_keys

    with fail():
        ws, path = _keys_file(workspace)
        keys = load_keys(path)
        spent = AuditLog(ws.stage_dir("serve")).tokens_by_key()
    t = Table("name", "id", "created", "rate limit", "token budget", "tokens spent", "status")
    for k in keys:
        t.add_row(k.name, k.key_id, k.created,
                  f"{k.rate_limit}/{k.rate_window_s}s" if k.rate_limit else "unlimited",
                  str(k.token_budget) if k.token_budget else "unlimited", str(spent.get(k.key_id, 0)),
                  "active" if k.active else f"revoked {k.revoked}")
    console.print(t)


@keys_app.command("revoke")
def keys_revoke(name: str = typer.Argument(..., help="The key's name (or id)."), workspace: Path = WS) -> None:
    """Revoke a key; a running server refuses it from its next request on."""
    from soberan.serve.keys import revoke_key

    with fail():
        _, path = _keys_file(workspace)
        rec = revoke_key(path, name)
    console.print(f"revoked key [bold]{rec.name}[/bold] (id {rec.key_id})")


@audit_app.command("verify")
def audit_verify(workspace: Path = WS) -> None:
    """Re-hash the audit chain; fail naming any edited, removed or reordered record."""
    from soberan.serve.audit import AuditLog
    from soberan.workspace import Workspace

    with fail():
        log = AuditLog(Workspace.open(workspace).stage_dir("serve"))
        problems = log.verify()
    n = len(log.records()) if log.records_path.exists() else 0
    if n or problems:
        for note in log.notes():
            console.print(f"[yellow]•[/yellow] {note}")
    if problems:
        for p in problems:
            console.print(f"[red]✗[/red] {p}")
        console.print(f"[red]audit log verification failed[/red]: {len(problems)} problem(s) in {n} records")
        raise typer.Exit(1)
    console.print(f"[green]✓[/green] audit log OK: {n} request records chained")
