"""`soberan collect`. Only typer and pathlib at module level, so `soberan --help` stays fast."""

from __future__ import annotations

from pathlib import Path

import typer


def collect(workspace: Path = typer.Option(Path("."), "--workspace", "-w",
                                           help="Workspace folder (holds soberan.toml)."),
            source: list[str] = typer.Option(None, "--source", "-s",
                                             help="Collect only this source (repeat for several)."),
            fresh: bool = typer.Option(False, "--fresh",
                                       help="Discard what these sources collected before and start over.")) -> None:
    """Collect the configured sources into raw/ as Parquet shards, with provenance.

    Resumable: kill it at any moment and run it again. Bad input becomes a recorded rejection
    (see `soberan ledger query` and `soberan lineage`)."""
    from rich.table import Table

    from soberan.collect import run
    from soberan.ui import console, fail
    from soberan.workspace import Workspace

    with fail():
        ws = Workspace.open(workspace)
        summary = run(ws, sources=source or None, fresh=fresh)
    t = Table("source", "kind", "status", "documents", "characters", "rejected", "top rejection rules")
    for r in summary.sources:
        top = ", ".join(f"{k} {v}" for k, v in sorted(r.rules.items(), key=lambda kv: -kv[1])[:3])
        t.add_row(r.name, r.kind, r.status, f"{r.docs:,}", f"{r.chars:,}", f"{r.rejected:,}", top)
    console.print(t)
    if summary.artifact:
        console.print(f"[green]✓[/green] raw/: {summary.docs:,} documents from {len(summary.sources)} "
                      f"source(s), {summary.rejected:,} rejections recorded; artifact {summary.artifact[:12]}")
    else:
        console.print(f"[yellow]raw/ not recorded yet[/yellow]: unfinished source(s) "
                      f"{', '.join(summary.unfinished)}; run `soberan collect` to finish them")
