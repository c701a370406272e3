"""`soberan train`. Only typer and pathlib at import time; torch loads inside the command."""

from __future__ import annotations

from pathlib import Path

import typer


def train(workspace: Path = typer.Option(Path("."), "--workspace", "-w", help="Workspace folder (holds soberan.toml)."),
          max_steps: int = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
          resume: bool = typer.Option(True, "--resume/--no-resume", help="Go on from the last checkpoint."),
          finetune: bool = typer.Option(False, "--finetune", help="Fine-tune on chat JSONL instead of pretraining."),
          chat_data: Path = typer.Option(None, "--chat-data", help="Chat JSONL file or folder (implies --finetune)."),
          lora: bool = typer.Option(None, "--lora/--full", help="Fine-tune LoRA adapters or every weight."),
          base_model: str = typer.Option(None, "--base-model", help="A local HF checkpoint to start from."),
          corpus: Path = typer.Option(None, "--corpus", help="Train on this corpus folder instead of curated/."),
          tokenizer: str = typer.Option(None, "--tokenizer", help="Use this tokenizer (a folder, a .model/.json, "
                                        "or mistral-v1/tekken) instead of tokenizer/final/."),
          output: Path = typer.Option(None, "--output", help="Write here instead of model/ (e.g. model-baseline)."),
          role: str = typer.Option(None, "--role", help="The model's role in the ledger (main, baseline, ...).")) -> None:
    """Pretrain, continue pretraining, or fine-tune the nation's model; resumes after a kill."""
    from soberan.train import run
    from soberan.ui import console, fail, print_error, progress
    from soberan.workspace import Workspace

    def here(p):
        """Paths typed on the command line are relative to where they are typed (a name such as
        `mistral-v1` stays a name)."""
        return None if p is None else str(Path(p).resolve()) if Path(p).exists() else str(p)

    with fail():
        ws = Workspace.open(workspace)
        corpus, chat_data, base_model, tokenizer = map(here, (corpus, chat_data, base_model, tokenizer))
        output = str(output.resolve()) if output is not None else None
        with progress() as prog:
            try:
                s = run(ws, corpus_dir=corpus, tokenizer_dir=tokenizer, output_dir=output, max_steps=max_steps,
                        resume=resume, base_model=base_model, role=role, finetune=finetune or chat_data is not None,
                        chat_data=chat_data, lora=lora, console=console, progress=prog)
            except ValueError as e:
                print_error(e)
                raise typer.Exit(2) from None
    console.print(f"[green]✓[/green] {s.role} model after {s.steps} steps ({s.tokens:,} tokens): "
                  f"{ws.ledger.rel(s.output)}")
    for lang, v in s.bpb_end.items():
        console.print(f"  held-out bits per byte ({lang}): {s.bpb_start.get(lang, float('nan')):.4f} → {v:.4f}")
