"""What every training run sets up and finishes with, for pretraining and fine-tuning alike.

The accelerator and who speaks to a person, the checkpoint a run resumes from, the loop's
settings that `[train]` holds for every mode, and at the end the published model and its ledger
record. `pretrain` and `finetune` differ in their data and model, never in these.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from soberan.train import CONFIG_SECTIONS
from soberan.workspace import Workspace


@dataclass
class Session:
    """The processes a run trains in. Only the main process speaks: `say`, `console` and
    `progress` are silent (None) on the others."""

    acc: object  # accelerate's Accelerator
    say: Callable[[str], None]
    console: object = None
    progress: object = None

    @property
    def main(self) -> bool:
        return self.acc.is_main_process

    @property
    def world(self) -> int:
        return self.acc.num_processes


def accelerator_for(precision: str):
    import torch
    from accelerate import Accelerator
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bar is the one a person reads

    from soberan.device import pick_device

    cuda = pick_device("auto") == "cuda"
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    # cpu=True on a machine without a GPU: accelerate then runs several processes over gloo.
    return Accelerator(mixed_precision="no" if precision == "fp32" else precision, cpu=not cuda)


def start(precision: str, what: str, console=None, progress=None) -> Session:
    """The accelerator for `[train] precision`; without CUDA, says why `what` runs on the CPU."""
    from soberan.device import pick_device

    acc = accelerator_for(precision)
    main = acc.is_main_process
    say = (lambda m: console.print(m)) if (console and main) else (lambda m: None)
    pick_device("auto", say, what)  # no CUDA: say why, once
    return Session(acc, say, console if main else None, progress if main else None)


def resume_point(sess: Session, out: Path, resume: bool) -> tuple[Path | None, dict | None]:
    """The newest checkpoint under `out` and its training state, or (None, None) to start
    fresh; without `resume` the old checkpoints go, so a later run cannot resume from them."""
    from soberan.train.loop import latest_checkpoint, load_state

    ckpt = latest_checkpoint(out) if resume else None
    if not resume and sess.main:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    sess.acc.wait_for_everyone()
    return ckpt, (load_state(ckpt) if ckpt else None)


def loop_spec(s, **run_fields):
    """The loop's settings: what `[train]` (`s`) says for every mode, and `run_fields`, what
    this run decides (output, steps, batch, learning rate, run key, ...)."""
    from soberan.train.loop import LoopSpec

    return LoopSpec(min_lr_ratio=s.min_lr_ratio, grad_clip=s.grad_clip, eval_every=s.eval_every,
                    log_every=s.log_every, checkpoint_every=s.checkpoint_every,
                    keep_checkpoints=s.keep_checkpoints, tensorboard=s.tensorboard, **run_fields)


def train(sess: Session, model, tokenizer, sampler, collate, spec, *, heldout, resume: dict | None,
          on_checkpoint=None):
    """The one training loop (`soberan.train.loop`), with this session's console and progress."""
    from soberan.train.loop import train_loop

    return train_loop(sess.acc, model, tokenizer, sampler, collate, spec, heldout=heldout, resume=resume,
                      on_checkpoint=on_checkpoint, console=sess.console, progress=sess.progress)


def publish(acc, model, tokenizer, out: Path, merge_lora: bool = False) -> Path:
    """Write `out/final` whole or not at all: into a temporary folder, then renamed into place.
    With `merge_lora`, the adapter goes to `out/adapter` and the merged weights to `out/final`."""
    final, tmp = out / "final", out / ".tmp-final"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    from soberan.train.loop import save_hf

    try:
        if merge_lora:
            save_hf(model, tokenizer, out / ".tmp-adapter", acc)
            if acc.is_main_process:
                shutil.rmtree(out / "adapter", ignore_errors=True)
                os.replace(out / ".tmp-adapter", out / "adapter")
                merged = acc.unwrap_model(model).merge_and_unload()
                merged.save_pretrained(tmp, safe_serialization=True)
                tokenizer.save_pretrained(tmp)
        else:
            save_hf(model, tokenizer, tmp, acc)
    except BaseException:  # no half-written model left behind; the checkpoints stay whole
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if acc.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    acc.wait_for_everyone()
    return final


def record_model(ws: Workspace, sess: Session, final: Path, inputs: list[str], meta: dict) -> str | None:
    """The `train/model` ledger record of `final`, written by the main process: its hash, or
    None on the other processes."""
    art = None
    if sess.main:
        art = ws.ledger.record_artifact(stage="train", kind="model", path=final, inputs=inputs,
                                        config_hash=ws.config.section_hash(*CONFIG_SECTIONS), meta=meta)["hash"]
    sess.acc.wait_for_everyone()
    return art
