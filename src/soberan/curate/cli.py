"""`soberan curate`. Imports only typer and pathlib here; the pipeline loads inside the command."""

from __future__ import annotations

from pathlib import Path

import typer


def curate(workspace: Path = typer.Option(Path("."), "--workspace", "-w",
                                          help="Workspace folder (holds soberan.toml)."),
           executor: str = typer.Option(None, "--executor",
                                        help="local (process pool) or ray (Ray Data); default: "
                                             "[curate] executor."),
           ray_address: str = typer.Option(None, "--ray-address",
                                           help="Ray cluster to join (default: start a local Ray)."),
           workers: int = typer.Option(None, "--workers",
                                       help="Processes for the per-shard steps (default: [curate] workers, "
                                            "0 = one per core)."),
           force: bool = typer.Option(False, "--force", help="Start over even if a run is done or half done."),
           what_if: list[str] = typer.Option(None, "--what-if",
                                             help="LANG.THRESHOLD=VALUE (e.g. th.min_words=10): print the "
                                                  "funnel it would give, from the last run's stored "
                                                  "signals, and write nothing. Repeatable.")) -> None:
    """Clean, filter, redact, dedup and decontaminate the collected corpus into curated/."""
    from rich.table import Table

    from soberan.ui import console, fail, print_error

    if executor not in (None, "local", "ray"):
        print_error(f"--executor must be local or ray, not {executor!r}")
        raise typer.Exit(2)
    if what_if:
        with fail():
            from soberan.curate.whatif import print_funnel
            from soberan.curate.whatif import what_if as run_what_if
            from soberan.workspace import Workspace

            changes, funnels = run_what_if(Workspace.open(workspace), what_if)
        print_funnel(changes, funnels, console)
        return
    with fail():
        from soberan.curate import run
        from soberan.workspace import Workspace

        ws = Workspace.open(workspace)
        s = run(ws, executor=executor, workers=workers, ray_address=ray_address, force=force)
    if s.up_to_date:
        console.print(f"[green]✓[/green] curated/ is up to date ({s.output_docs} documents); "
                      "use --force to run again")
        return
    t = Table("step", "dropped", "redacted")
    for step in dict.fromkeys([*s.dropped, *s.redacted]):
        t.add_row(step, str(s.dropped.get(step, 0)), str(s.redacted.get(step, 0)))
    console.print(t)
    console.print(f"[green]✓[/green] curated {s.input_docs} → {s.output_docs} documents in "
                  f"{s.shards} shard(s), {s.seconds:.1f}s → {s.path}/ (stats.json; why each drop: "
                  "`soberan ledger query` or `soberan lineage ID`)")
