"""`soberan tokenizer report|train|extend|run`. Only typer and pathlib are imported here; the
tokenizer libraries load inside the commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

app = typer.Typer(help="Measure, train or extend the tokenizer (fertility per language).",
                  no_args_is_help=True)

WS = typer.Option(Path("."), "--workspace", "-w", help="Workspace folder (holds soberan.toml).")
FORCE = typer.Option(False, "--force", help="Run again even if tokenizer/final/ is up to date.")


@contextmanager
def _errors() -> Iterator[None]:
    """A tokenizer file or setting the stage cannot use is a message, not a stack trace."""
    from soberan.config import ConfigError

    try:
        yield
    except ValueError as e:  # pydantic's ValidationError included
        raise ConfigError(str(e)) from None


def _show(summary) -> None:
    from soberan.tokenizer import fertility
    from soberan.ui import console

    s = summary
    if s.report and s.report.exists():
        rep = fertility.read_json(s.report)
        if rep and any(rep.values()):
            console.print(fertility.table(rep))
    if s.up_to_date:
        console.print(f"[green]✓[/green] {s.path} is up to date ({s.mode}, {s.vocab_size:,} tokens); "
                      "use --force to run again")
        return
    what = {"keep": f"kept {s.base}",
            "extend": f"extended {s.base} ({s.base_vocab_size:,} ids) with {s.learned_tokens:,} learned "
                      f"tokens" + (f" + {s.new_tokens - s.learned_tokens} special" if s.new_tokens > s.learned_tokens else ""),
            "replace": "trained a byte-level BPE from scratch"}[s.mode]
    console.print(f"[green]✓[/green] {what}: {s.vocab_size:,} tokens → {s.path}/")
    if s.mode != "keep":
        console.print(f"  learned from {s.train_docs:,} documents ({s.train_chars:,} chars); "
                      f"{s.held_out_docs:,} held out for the table above")
    if s.unreachable:
        console.print(f"[red]✗ {s.unreachable} new tokens are unreachable[/red]")


@app.command("run")
def run_cmd(workspace: Path = WS, force: bool = FORCE) -> None:
    """Keep, extend or replace the tokenizer as \\[tokenizer] mode says."""
    from soberan.ui import fail

    with fail(), _errors():
        from soberan.tokenizer import run
        from soberan.workspace import Workspace

        s = run(Workspace.open(workspace), force=force)
    _show(s)


@app.command()
def extend(workspace: Path = WS,
           base: str = typer.Option(None, "--base", help="Base tokenizer: tokenizer.json, folder, SentencePiece "
                                                         ".model, Tekken .json, mistral-v1 or tekken "
                                                         "(default: \\[tokenizer] base)."),
           new_tokens: int = typer.Option(None, "--new-tokens", help="At most this many new tokens."),
           force: bool = FORCE) -> None:
    """Add tokens learned from the curated corpus to a base tokenizer (original ids unchanged)."""
    from soberan.ui import fail

    with fail(), _errors():
        from soberan.tokenizer import run
        from soberan.workspace import Workspace

        s = run(Workspace.open(workspace), mode="extend", base=base, new_tokens=new_tokens, force=force)
    _show(s)


@app.command()
def train(workspace: Path = WS,
          vocab_size: int = typer.Option(None, "--vocab-size", help="Vocabulary size (default: \\[tokenizer] vocab_size)."),
          force: bool = FORCE) -> None:
    """Train a byte-level BPE tokenizer from scratch on the curated corpus."""
    from soberan.ui import fail

    with fail(), _errors():
        from soberan.tokenizer import run
        from soberan.workspace import Workspace

        s = run(Workspace.open(workspace), mode="replace", vocab_size=vocab_size, force=force)
    _show(s)


@app.command()
def report(tokenizers: list[str] = typer.Argument(None, help="Tokenizers to compare: paths or mistral-v1, tekken "
                                                            "(default: the workspace's base and tokenizer/final/)."),
           workspace: Path = WS,
           text: list[str] = typer.Option(None, "--text", help="LANG=FILE, one sample per line (repeatable); "
                                                               "default: the workspace's held-out text."),
           out: Path = typer.Option(None, "--out", help="JSON to write; a PNG and SVG chart go beside it "
                                                        "(default: tokenizer/report/fertility.json)."),
           ) -> None:
    """Fertility per language: tokens per character and word, byte pieces, round trip."""
    from soberan.config import ConfigError
    from soberan.ui import console, fail

    with fail(), _errors():
        from soberan import hf
        from soberan.tokenizer import fertility, settings, workspace_eval_sets
        from soberan.workspace import Workspace

        ws = None
        if not (tokenizers and text):
            ws = Workspace.open(workspace)
        root = ws.config.root if ws else Path.cwd()
        if text:
            sets = []
            for item in text:
                code, sep, path = item.partition("=")
                if not sep or not Path(path).is_file():
                    raise ConfigError(f"--text {item!r}: give LANG=FILE with an existing file")
                lines = [ln for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
                sets.append(fertility.eval_set(code.strip(), lines))
        else:
            sets = workspace_eval_sets(ws)
            if not sets:
                raise ConfigError("no held-out text: the workspace has no curated documents in its languages "
                                  "and no tokenizer.eval_texts; pass --text LANG=FILE")
        if not tokenizers:
            tokenizers = [settings(ws).base]
            if (ws.stage_dir("tokenizer") / "final" / "tokenizer.json").exists():
                tokenizers.append(str(ws.stage_dir("tokenizer") / "final"))
        rep: fertility.Report = {}
        for spec in tokenizers:
            loaded = hf.load(spec, root)
            label = spec if spec in hf.BUILTIN else Path(spec).name or spec
            rep[label] = fertility.measure(loaded, sets)
        if out is None:
            out = (ws.stage_dir("tokenizer") / "report" / "fertility.json") if ws else Path("fertility.json")
        fertility.write_json(rep, out)
        charts = fertility.chart(rep, out.with_suffix(".png"))
    console.print(fertility.table(rep))
    console.print(f"wrote {out} and {', '.join(str(c) for c in charts)}")
