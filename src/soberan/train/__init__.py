"""`soberan train`: the nation's model from the curated corpus and the chosen tokenizer.

    corpus ──pack──▶ model/data/ (tokens.bin + docs.parquet) ──mix──▶ training loop ──▶ model/final/
                └──▶ model/heldout/<lang>.parquet (never trained on) ──▶ bits per byte

From scratch (a Llama sized by one `depth` dial), or continued pretraining of a local HF
checkpoint with an extended tokenizer (new rows from the mean of their parts, then an embedding
stage and the full model), or chat fine-tuning (full or LoRA). One process by default; several
GPUs or nodes through `accelerate launch` or `torchrun` (docs/train.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from soberan import stages

if TYPE_CHECKING:  # soberan.config imports this package's config: nothing heavy at import time
    from soberan.workspace import Workspace

__all__ = ["run", "TrainSummary", "CONFIG_SECTIONS"]

# The config sections this stage reads (the stage registry keeps them): hashed into each artifact
# it records, and what `soberan build` compares to decide whether the stage must run again.
CONFIG_SECTIONS = stages.get("train").config_sections


@dataclass
class TrainSummary:
    output: Path  # the final model folder
    role: str  # main | baseline | chat | ...
    steps: int
    tokens: int
    final_loss: float | None
    bpb_start: dict[str, float]
    bpb_end: dict[str, float]
    token_shares: dict = field(default_factory=dict)
    resumed_from: int | None = None
    stopped: str | None = None  # why training ended before max_steps, if it did
    params: int = 0
    artifact: str | None = None  # hash of the model's ledger record


def run(ws: "Workspace", *, corpus_dir: Path | str | None = None, tokenizer_dir: Path | str | None = None,
        output_dir: Path | str | None = None, max_steps: int | None = None, resume: bool = True,
        base_model: str | None = None, role: str | None = None, finetune: bool = False,
        chat_data: Path | str | None = None, lora: bool | None = None,
        console=None, progress=None) -> TrainSummary:
    """Train what `[train]` says and record the model in the ledger.

    The overrides let one workspace hold a second model: e.g. a from-scratch baseline on the raw
    corpus with the base tokenizer (`corpus_dir="raw", tokenizer_dir=..., output_dir=
    "model-baseline", role="baseline"`), which never trains on the main model's held-out text.
    With `finetune`, fine-tune the newest pretrained model on chat JSONL instead.
    """
    if finetune:
        from soberan.train.finetune import finetune as _finetune

        return _finetune(ws, chat_data=chat_data, base_model=base_model, output_dir=output_dir,
                         max_steps=max_steps, lora=lora, resume=resume, console=console, progress=progress)
    from soberan.train.pretrain import pretrain

    return pretrain(ws, corpus_dir=corpus_dir, tokenizer_dir=tokenizer_dir, output_dir=output_dir,
                    max_steps=max_steps, resume=resume, base_model=base_model, role=role,
                    console=console, progress=progress)
