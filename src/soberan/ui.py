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


def print_error(message: object) -> None:
    """An error as plain text: a message quotes lists, paths and config keys with square
    brackets (`policy.licenses ['CC0-1.0']`, `[curate]`), which rich would take as markup and drop."""
    from rich.markup import escape

    console.print(f"[red]error:[/red] {escape(str(message))}", soft_wrap=True)


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
        print_error(e)
        raise typer.Exit(2) from None
