"""`soberan report` and `soberan takedown`. Heavy imports stay inside the commands."""

from __future__ import annotations

from pathlib import Path

import typer

WS = typer.Option(Path("."), "--workspace", "-w", help="Workspace folder (holds soberan.toml).")


def report(workspace: Path = WS,
           license: str = typer.Option(None, "--license",
                                       help="The model's licence for the model card (SPDX id); default: other.")) -> None:
    """Write the sovereignty report (HTML + JSON), the EU AI Act training-data summary, the model
    card and Croissant metadata into report/, all generated from the ledger."""
    from soberan.offline import airgap

    airgap()
    from soberan.config import check_license
    from soberan.report import run
    from soberan.ui import console, fail, print_error
    from soberan.workspace import Workspace

    with fail():
        ws = Workspace.open(workspace)
        if license:
            try:
                check_license(license)
            except ValueError as e:
                print_error(f"--license: {e}")
                raise typer.Exit(2) from None
        with console.status("gathering facts from the ledger"):
            s = run(ws, license=license)
    mark = "[green]verified[/green]" if s.ledger_ok else "[red]verification FAILED[/red]"
    console.print(f"ledger {mark}; {s.takedowns} take-down(s)")
    for label, p in (("report", s.html), ("facts", s.json), ("EU AI Act summary", s.eu_markdown),
                     ("model card", s.model_card), ("Croissant", s.croissant)):
        if p:
            console.print(f"  {label:<18} {p}", soft_wrap=True)
    console.print(f"open [bold]{s.html}[/bold] in a browser", soft_wrap=True)
    if not s.ledger_ok:
        raise typer.Exit(1)


def takedown(workspace: Path = WS,
             source: str = typer.Option(None, "--source", help="Take down every document of this source."),
             url: str = typer.Option(None, "--url", help="Take down documents whose URL matches this glob (* and ?)."),
             doc: str = typer.Option(None, "--doc", help="Take down one document by id."),
             reason: str = typer.Option(..., "--reason", help="Why (kept in the ledger and the report).")) -> None:
    """Record a take-down, list every artifact holding the documents, and mark them stale so the
    next `soberan build` rebuilds them without those documents."""
    from rich.table import Table

    from soberan.report.takedown import request_takedown
    from soberan.ui import console, fail, print_error
    from soberan.workspace import Workspace

    given = [(k, v) for k, v in (("source", source), ("url", url), ("doc", doc)) if v]
    if len(given) != 1:
        console.print("[red]error:[/red] give exactly one of --source, --url, --doc")
        raise typer.Exit(2)
    by, value = given[0]
    with fail():
        ws = Workspace.open(workspace)
        try:
            res = request_takedown(ws, by=by, value=value, reason=reason)
        except ValueError as e:
            print_error(e)
            raise typer.Exit(2) from None
    console.print(f"take-down [bold]{res.takedown}[/bold]: {by} {value!r} → {res.docs} document(s) "
                  + (f"({', '.join(f'{k}: {v}' for k, v in res.by_source.items())})" if res.by_source else ""))
    if res.affected:
        t = Table("artifact", "stage/kind", "holds", "made from")
        for a in res.affected:
            t.add_row(a.path, f"{a.stage}/{a.kind}", str(a.docs or ""), ", ".join(a.derived_from))
        console.print(t)
        console.print(f"{len(res.affected)} artifact(s) marked stale; run [bold]soberan build -w {workspace}[/bold] "
                      "to rebuild them without these documents")
    else:
        console.print("no current artifact holds them; future builds leave them out")
