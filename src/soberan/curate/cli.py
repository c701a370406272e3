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
           force: bool = typer.Option(False, "--force", help="Start over even if a run is done or half "
                                                             "done, stored signals included."),
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


def calibrate(workspace: Path = typer.Option(Path("."), "--workspace", "-w",
                                             help="Workspace folder (holds soberan.toml)."),
              reference: list[str] = typer.Option(None, "--reference",
                                                  help="A source of trusted text to keep (repeatable); "
                                                       "default: [curate.quality] reference_sources, or "
                                                       "the corpus itself."),
              keep: float = typer.Option(0.9, "--keep", help="Share of the reference the thresholds keep."),
              out: Path = typer.Option(None, "--out", help="The HTML report with the histograms "
                                                           "(default: report/calibration.html).")) -> None:
    """Per-language thresholds from the signals of the last curate run (FineWeb2's method):
    each rule's distribution on the corpus and the reference, and the thresholds that keep the
    reference, as TOML to paste into soberan.toml."""
    from rich.table import Table

    from soberan.ui import console, fail

    with fail():
        from soberan.curate.calibrate import calibrate as run_calibrate
        from soberan.curate.calibrate import report_html, toml_of
        from soberan.documents import write_text_atomic
        from soberan.workspace import Workspace

        ws = Workspace.open(workspace)
        cals = run_calibrate(ws, reference or None, keep)
        path = out or ws.root / "report" / "calibration.html"
        write_text_atomic(path, report_html(cals, keep))
    for c in cals:
        t = Table("rule", "pack", "proposed", "corpus dropped", "reference dropped",
                  title=f"{c.lang}: {c.docs} documents; reference: "
                        f"{', '.join(c.reference) or 'the corpus itself'} ({c.ref_docs})")
        for r in c.rules:
            d = lambda v, thr: f"{r.dropped(v, thr).mean():.1%}" if len(v) else "–"  # noqa: E731
            arrow = lambda v: d(v, r.current) if r.proposed == r.current else \
                f"{d(v, r.current)} → {d(v, r.proposed)}"  # noqa: E731
            t.add_row(r.key, f"{r.current}", "" if r.proposed == r.current else f"{r.proposed}",
                      arrow(r.corpus), arrow(r.reference))
        console.print(t)
        console.print(f"{c.lang}: kept now {c.kept_now[0]:.1%} of documents, {c.kept_now[1]:.1%} of "
                      f"characters; with the proposals {c.kept_new[0]:.1%} and {c.kept_new[1]:.1%} "
                      f"(reference {c.kept_now[2]:.1%} → {c.kept_new[2]:.1%})", markup=False)
    snippet = toml_of(cals)
    console.print("\nproposed thresholds for soberan.toml:\n" + (snippet or "(none: the packs keep the reference)"),
                  markup=False)
    console.print(f"histograms: {path}", markup=False)
