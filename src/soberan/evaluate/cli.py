"""`soberan evaluate`. Only typer and pathlib at import time; torch loads inside the command."""

from __future__ import annotations

from pathlib import Path

import typer


def evaluate(
    models: list[Path] = typer.Argument(None, help="Model folders (after --compare, more of them)."),
    workspace: Path = typer.Option(Path("."), "--workspace", "-w", help="Workspace folder (holds soberan.toml)."),
    compare: list[Path] = typer.Option(None, "--compare", help="A model folder to score side by side; "
                                       "`--compare A B` or repeated. The first is the reference."),
    sets: list[str] = typer.Option(None, "--sets", help="Benchmarks or groups (comma-separated or repeated); "
                                   "default: the config's evaluate.sets."),
    limit: int = typer.Option(None, "--limit", min=1, help="Items per set (the first N)."),
    export_lm_eval: Path = typer.Option(None, "--export-lm-eval", help="Write lm-evaluation-harness task "
                                        "YAMLs for the sets into this folder, and stop."),
) -> None:
    """Score models on the configured benchmarks and held-out text, offline; compare them."""
    from soberan.ui import console, fail
    from soberan.workspace import Workspace

    names = [n.strip() for s in sets or [] for n in s.split(",") if n.strip()]
    with fail():
        ws = Workspace.open(workspace)
        if export_lm_eval is not None:
            from soberan.evaluate.export import export_lm_eval as export
            from soberan.benchmarks import resolve_names, with_paths

            chosen = names or ws.config.evaluate.sets
            if not chosen:
                raise FileNotFoundError("no sets to export: name them with --sets or in [evaluate] sets")
            specs = [with_paths(ws.config, s) for s in resolve_names(ws.config, chosen)]
            for e in export(specs, export_lm_eval, max_length=ws.config.evaluate.max_length):
                console.print(f"wrote [bold]{e.path}[/bold] (checked against soberan on {e.checked} items)")
            return
        from soberan.evaluate import run

        named = [*(compare or []), *(models or [])]
        summary = run(ws, models=named or None, sets=names or None, limit=limit)
    console.print(f"[green]✓[/green] {len(summary.models)} model(s) × {len(summary.sets)} set(s) → "
                  f"{summary.results_path}" + (f" ({summary.reused} reused)" if summary.reused else ""))
