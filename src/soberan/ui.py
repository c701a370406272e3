"""Terminal output shared by every stage: one rich console, progress bars, and error reporting."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

console = Console(stderr=False, highlight=False)


def progress(transient: bool = False) -> Progress:
    """A progress display for long work (files, documents, steps). Quiet when not a terminal."""
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=transient, disable=not console.is_terminal)


@contextmanager
def fail() -> Iterator[None]:
    """Turn expected errors (bad config, policy violations, missing or damaged inputs) into a clear message
    and exit code 2 instead of a stack trace."""
    from soberan.config import ConfigError
    from soberan.documents import CorpusError
    from soberan.policy import PolicyError

    try:
        yield
    except (ConfigError, PolicyError, CorpusError, FileNotFoundError) as e:
        console.print(f"[red]error:[/red] {e}", soft_wrap=True)
        raise typer.Exit(2) from None
