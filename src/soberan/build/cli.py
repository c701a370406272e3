"""`soberan build`: every stage in order, skipping what is current. Heavy imports stay inside."""

from __future__ import annotations

from pathlib import Path

import typer

from soberan.stages import build_order

STAGES = ", ".join(build_order())


def build(workspace: Path = typer.Option(Path("."), "--workspace", "-w",
                                         help="Workspace folder (holds soberan.toml)."),
          from_: str = typer.Option(None, "--from", help=f"Rerun this stage and all after it ({STAGES})."),
          only: str = typer.Option(None, "--only", help="Run this one stage and nothing else."),
          fresh: bool = typer.Option(False, "--fresh", help="Empty each stage's folder before it runs."),
          dry_run: bool = typer.Option(False, "--dry-run", help="Say what would run and why; run nothing."),
          isolate_network: bool = typer.Option(False, "--isolate-network", help="Run in a network namespace "
                                               "with only loopback (root or user namespaces; not with "
                                               "crawl sources).")) -> None:
    """Run collect → curate → tokenizer → train → evaluate from soberan.toml, offline.

    A stage whose config, inputs and outputs are unchanged since its last recorded artifact is
    skipped; what changed reruns, and so does everything downstream of it. A killed build resumes
    where it stopped; a take-down's stale marks force a rebuild without the taken-down documents.
    """
    if isolate_network:  # first, before a library starts a thread that would stay outside
        from soberan.offline import isolate_network as isolate
        from soberan.ui import console

        try:
            console.print(f"egress: {isolate()}")
        except OSError as e:
            console.print(f"[red]error:[/red] --isolate-network: {e}")
            raise typer.Exit(2) from None
    from soberan.offline import airgap

    airgap()  # before any stage module (and so torch, transformers, ray) is imported

    from rich.table import Table

    from soberan.build import BuildError, StageResult
    from soberan.build import run as run_build
    from soberan.ui import console, fail, print_error
    from soberan.workspace import Workspace

    def show(r: StageResult) -> None:
        mark = {"skipped": "[dim]·[/dim]", "ran": "[green]✓[/green]", "resumed": "[green]↻[/green]",
                "rebuilt": "[yellow]✓[/yellow]"}[r.action]
        verb = ("would run" if dry_run and r.action != "skipped" else r.action)
        took = f" in {r.seconds:.1f}s" if r.seconds else ""
        console.print(f"{mark} [bold]{r.stage}[/bold] {verb}{took}: {r.reason}", soft_wrap=True)

    def start(r: StageResult) -> None:
        console.rule(f"[bold]{r.stage}[/bold]: {r.action.replace('ran', 'running')} ({r.reason})", align="left")

    with fail():
        ws = Workspace.open(workspace)
        try:
            summary = run_build(ws, from_stage=from_, only=only, fresh=fresh, dry_run=dry_run,
                                on_stage=show, on_start=start)
        except BuildError as e:
            print_error(e)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/yellow]: run `soberan build` again to resume")
            raise typer.Exit(130) from None
    if dry_run:
        return
    t = Table("stage", "action", "seconds", "artifact")
    for r in summary.stages:
        t.add_row(r.stage, r.action, f"{r.seconds:.1f}", (r.artifact or "")[:12])
    console.print(t)
    console.print(f"[green]build done[/green]: {len(summary.ran)} stage(s) ran, "
                  f"{len(summary.stages) - len(summary.ran)} current. "
                  f"Next: soberan report -w {workspace}")
