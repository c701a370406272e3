"""The `soberan` command. One subcommand per stage module, so the CLI is the table of contents:
`soberan collect` → `soberan/collect/`, `soberan curate` → `soberan/curate/`, and so on.

Stage modules' `cli.py` files import only typer at module level; the heavy libraries (torch,
transformers, ray) load inside the commands, so `soberan --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from soberan.ui import console, fail

app = typer.Typer(help="Build a nation's own LLM from its own data, on its own machines.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
ledger_app = typer.Typer(help="Inspect and verify the provenance ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")

WS = typer.Option(Path("."), "--workspace", "-w", help="Workspace folder (holds soberan.toml).")


@app.command()
def init(directory: Path = typer.Argument(..., help="Workspace folder to create."),
         lang: str = typer.Option(..., "--lang", help="Main target language (ISO 639)."),
         jurisdiction: str = typer.Option(..., "--jurisdiction", help="Country (ISO 3166-1 alpha-2)."),
         name: str = typer.Option(None, help="Project name (default: the folder's name)."),
         demo: bool = typer.Option(False, help="Use the bundled Korean demo corpus as the source."),
         force: bool = typer.Option(False, help="Overwrite an existing soberan.toml.")) -> None:
    """Create a workspace with a commented soberan.toml."""
    from soberan.workspace import init_workspace

    with fail():
        cfg = init_workspace(directory, lang=lang, jurisdiction=jurisdiction, name=name,
                             demo=demo, force=force)
    console.print(f"wrote [bold]{cfg}[/bold]")


@ledger_app.command("verify")
def ledger_verify(workspace: Path = WS,
                  no_files: bool = typer.Option(False, help="Check the chain only, not artifact files.")) -> None:
    """Re-hash the record chain and every current artifact; fail naming what changed."""
    from soberan.workspace import Workspace

    with fail():
        ws = Workspace.open(workspace)
        problems = ws.ledger.verify(check_files=not no_files)
    n = len(ws.ledger.records())
    for note in ws.ledger.notes():
        console.print(f"[yellow]•[/yellow] {note}")
    if problems:
        for p in problems:
            console.print(f"[red]✗[/red] {p}")
        console.print(f"[red]ledger verification failed[/red]: {len(problems)} problem(s) in {n} records")
        raise typer.Exit(1)
    arts = len(ws.ledger.artifacts())
    dec = len(ws.ledger.decisions_files())
    console.print(f"[green]✓[/green] ledger OK: {n} records chained, {arts} current artifacts and "
                  f"{dec} decisions files re-hashed")


@ledger_app.command("query")
def ledger_query(sql: str = typer.Argument(..., help="SQL over views decisions and records."),
                 workspace: Path = WS) -> None:
    """Run a DuckDB query over the ledger (views: decisions, records)."""
    from soberan.workspace import Workspace

    with fail():
        ws = Workspace.open(workspace)
        res = ws.ledger.connect().execute(sql)
        cols = [d[0] for d in res.description]
        rows = res.fetchall()
    t = Table(*cols)
    for r in rows:
        t.add_row(*[str(x) for x in r])
    console.print(t)


@app.command()
def lineage(doc_id: str = typer.Argument(..., help="A document id."), workspace: Path = WS) -> None:
    """Where a document came from and what happened to it at every stage so far."""
    from soberan.lineage import lineage as get_lineage
    from soberan.workspace import Workspace

    with fail():
        ws = Workspace.open(workspace)
        lin = get_lineage(ws, doc_id)
    if lin.origin is None and not lin.decisions:
        console.print(f"[red]no document {doc_id} in this workspace[/red]")
        raise typer.Exit(1)
    if lin.origin:
        o = lin.origin
        console.print(f"[bold]{doc_id}[/bold] from source [bold]{o['source']}[/bold] ({o['url']})")
        console.print(f"  license {o['license']}, jurisdiction {o['jurisdiction']}, collected "
                      f"{o['collected_at']}, {o['chars']} chars, sha256 {o['sha256'][:16]}…")
    if lin.source:
        console.print(f"  source record #{lin.source['seq']}: {lin.source['kind']} at {lin.source['location']}")
    t = Table("stage", "step", "action", "rule", "reason", "time")
    for d in lin.decisions:
        t.add_row(*(str(d[k] or "") for k in ("stage", "step", "action", "rule", "reason", "time")))
    console.print(t)
    console.print("  present in: " + (", ".join(lin.present_in) or "no later stage"))


def _register() -> None:
    """Attach each stage's commands. Every module is part of soberan: one that fails to import is
    a broken install, and says so, rather than a command that silently goes missing."""
    import importlib

    for module, attr, name in [
        ("soberan.collect.cli", "collect", "collect"),
        ("soberan.curate.cli", "curate", "curate"),
        ("soberan.curate.cli", "calibrate", "calibrate"),
        ("soberan.tokenizer.cli", "app", "tokenizer"),
        ("soberan.train.cli", "train", "train"),
        ("soberan.evaluate.cli", "evaluate", "evaluate"),
        ("soberan.serve.cli", "serve", "serve"),
        ("soberan.serve.cli", "keys_app", "keys"),
        ("soberan.serve.cli", "audit_app", "audit"),
        ("soberan.report.cli", "report", "report"),
        ("soberan.report.cli", "takedown", "takedown"),
        ("soberan.build.cli", "build", "build"),
    ]:
        obj = getattr(importlib.import_module(module), attr)
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=name)
        else:
            app.command(name=name)(obj)


_register()


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
