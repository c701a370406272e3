"""The training loop: accelerate's idioms, HF checkpoints with a training state, live metrics.

One loop serves pretraining, continued pretraining (with the embedding stage) and fine-tuning:
what differs is the model and the sampler handed in. The sampler draws the *global* batch
identically on every process and each process takes its own slice, so N processes with
micro-batch m train the same model as one process with micro-batch N·m (up to float rounding).

Checkpoints are written to `checkpoints/.tmp-step-N` and renamed into place, so a run killed
while saving leaves the previous checkpoint whole; `training_state.pt` beside the HF files holds
the optimizer, scheduler, RNG states and the sampler's position.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from soberan.bpb import bpb_by_language
from soberan.train.mix import DataExhausted
from soberan.train.model import (flops_per_token, freeze_for_embedding_stage, mfu, peak_flops, register_causal_sdpa,
                                 unfreeze)

STATE = "training_state.pt"


@dataclass
class LoopSpec:
    out_dir: Path
    max_steps: int
    micro_batch: int
    grad_accum: int
    lr: float
    seq_len: int
    run_key: dict
    min_lr_ratio: float = 0.1
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    embed_stage_steps: int = 0
    first_new_id: int | None = None  # the embedding stage trains rows from here on
    eval_every: int = 25
    log_every: int = 5
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    tensorboard: bool = True
    # A torch.compile backend ("inductor"), or None. The loop compiles the prepared (wrapped)
    # model itself, as accelerate's dynamo option would, because accelerate keeps its options in
    # a process-wide state that the first run of a `soberan build` would fix for the others.
    compile: str | None = None


@dataclass
class LoopResult:
    steps: int
    bpb_start: dict[str, float]
    bpb_end: dict[str, float]
    last: dict = field(default_factory=dict)  # the last metrics record (loss, tokens/s, ...)
    resumed_from: int | None = None
    stopped: str | None = None  # why training ended before max_steps, if it did
    model: object = None  # the prepared (possibly wrapped) model, for the final save


# --- checkpoints ------------------------------------------------------------------------------

def checkpoints(out_dir: Path) -> list[Path]:
    d = out_dir / "checkpoints"
    if not d.exists():
        return []
    found = [p for p in d.glob("step-*") if (p / STATE).exists() and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def latest_checkpoint(out_dir: Path) -> Path | None:
    found = checkpoints(out_dir)
    return found[-1] if found else None


def load_state(ckpt: Path) -> dict:
    # weights_only=False: the file holds numpy RNG state and plain dicts that this program wrote
    # itself into the workspace; it is never a file from elsewhere.
    state = torch.load(ckpt / STATE, map_location="cpu", weights_only=False)
    state["dir"] = ckpt
    return state


def _sharded(accelerator) -> bool:
    """FSDP and DeepSpeed shard the optimizer state: accelerate's save_state/load_state gather
    and scatter it, where a plain state_dict would hold one rank's shard only."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def _compiled(model, backend: str | None):
    return torch.compile(model, backend=backend) if backend else model


def uncompiled(model):
    """The prepared model without its `torch.compile` wrapper (DDP and FSDP wrappers stay): what
    evaluation runs, since its padded batches of other shapes would each compile a new graph,
    and what saving reads, since the wrapper prefixes every weight's name with `_orig_mod.`."""
    return getattr(model, "_orig_mod", model)


def save_hf(model, tokenizer, target: Path, accelerator) -> None:
    """The model (or a peft adapter), its generation config and tokenizer, as transformers and
    vLLM load them."""
    model = uncompiled(model)
    state = accelerator.get_state_dict(model)
    unwrapped = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        unwrapped.save_pretrained(target, state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(target)


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(s: dict) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


# --- optimizer and schedule -------------------------------------------------------------------

def param_groups(model, weight_decay: float) -> list[dict]:
    """Weight decay on the weight matrices only: not on norms, biases or embedding rows, so the
    base vocabulary's rows stay exactly as they are while they receive no gradient."""
    emb = {id(model.get_input_embeddings().weight)}
    head = model.get_output_embeddings()
    if head is not None:
        emb.add(id(head.weight))
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and id(p) not in emb else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_lambda(spec: LoopSpec) -> Callable[[int], float]:
    """Linear warmup, then cosine decay to `min_lr_ratio`; the embedding stage (when there is
    one) warms up and stays flat, and the full stage warms up again from its own start."""
    s1 = spec.embed_stage_steps

    def f(step: int) -> float:
        if step < s1:
            return min(1.0, (step + 1) / max(1, spec.warmup_steps))
        s, total = step - s1, max(1, spec.max_steps - s1)
        if s < spec.warmup_steps:
            return (s + 1) / spec.warmup_steps
        frac = min(1.0, (s - spec.warmup_steps) / max(1, total - spec.warmup_steps))
        return spec.min_lr_ratio + (1 - spec.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))

    return f


# --- the loop ---------------------------------------------------------------------------------

def check_resume(resume: dict, spec: LoopSpec, global_batch: int) -> None:
    """A checkpoint continues only the run that wrote it: the same settings and global batch, or
    the model it trains would not be the one an uninterrupted run trains."""
    if resume["run_key"] != spec.run_key:
        changed = sorted(k for k in set(resume["run_key"]) | set(spec.run_key)
                         if resume["run_key"].get(k) != spec.run_key.get(k))
        raise ValueError(f"the checkpoint in {spec.out_dir / 'checkpoints'} was made with different "
                         f"settings ({', '.join(changed)}); pass --no-resume to start over")
    if resume["global_batch"] != global_batch:
        raise ValueError(f"the checkpoint used a global batch of {resume['global_batch']} sequences, "
                         f"this run {global_batch}: set micro_batch/grad_accum to match")


@dataclass
class _Run:
    """What the loop holds from setup to its last checkpoint."""

    accelerator: object
    spec: LoopSpec
    raw: object  # the unwrapped model: the embedding stage freezes and unfreezes its parameters
    model: object  # the prepared (wrapped, perhaps compiled) model the steps run
    optimizer: object
    scheduler: object
    sampler: object
    tokenizer: object
    handles: list  # the embedding stage's gradient hooks; empty once (or when) it is over
    staged: bool
    sharded: bool
    global_batch: int
    step: int = 0
    resumed_from: int | None = None
    bpb_start: dict[str, float] = field(default_factory=dict)
    last: dict = field(default_factory=dict)

    def stage_name(self, s: int) -> str:
        return "embeddings" if self.staged and s < self.spec.embed_stage_steps else "full"


def _setup(accelerator, raw, tokenizer, sampler, spec: LoopSpec, resume: dict | None) -> _Run:
    """The optimizer and schedule, the resumed state (checked), the embedding stage's freeze and
    the prepared model: everything the first step needs."""
    global_batch = spec.micro_batch * spec.grad_accum * accelerator.num_processes
    staged = spec.embed_stage_steps > 0 and spec.first_new_id is not None
    sharded = _sharded(accelerator)
    if not sharded:
        # On the device before the optimizer exists, so fused AdamW and a resumed optimizer
        # state land where the parameters are.
        raw.to(accelerator.device)
    fused = accelerator.device.type == "cuda" and not sharded
    optimizer = torch.optim.AdamW(param_groups(raw, spec.weight_decay), lr=spec.lr, betas=(0.9, 0.95),
                                  eps=1e-8, **({"fused": True} if fused else {}))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(spec))
    run = _Run(accelerator, spec, raw, raw, optimizer, scheduler, sampler, tokenizer, [], staged, sharded,
               global_batch)
    if resume is not None:
        check_resume(resume, spec, global_batch)
        if resume["optimizer"] is not None:
            optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        sampler.load_state_dict(resume["sampler"])
        _set_rng_state(resume["rng"])
        run.step = run.resumed_from = resume["step"]
        run.bpb_start = resume.get("bpb_start", {})
        run.last = resume.get("last", {})
    in_stage = staged and run.step < spec.embed_stage_steps
    if in_stage and sharded:
        raise ValueError("the embedding stage cannot change which parameters train under FSDP/DeepSpeed: "
                         "run it with DDP (it trains only the embeddings), then the full stage with FSDP "
                         "from its checkpoint as base_model")
    run.handles = freeze_for_embedding_stage(raw, spec.first_new_id) if in_stage else []
    if spec.compile and getattr(raw.config, "_attn_implementation", None) == "sdpa":
        # Compiled, transformers would hand SDPA a materialized causal mask and lose the
        # FlashAttention/cuDNN kernels (see register_causal_sdpa); our rows need none.
        raw.set_attn_implementation(register_causal_sdpa())
    model, run.optimizer = accelerator.prepare(raw, optimizer)
    run.model = _compiled(model, spec.compile)
    if resume is not None and resume["optimizer"] is None:
        accelerator.load_state(str(resume["dir"] / "sharded"))
    return run


@dataclass
class _Metrics:
    """`metrics.jsonl` and the TensorBoard curves, written by the main process only."""

    path: Path
    main: bool
    writer: object = None

    def log(self, rec: dict) -> None:
        if not self.main:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if self.writer:
            for k in ("loss", "lr", "tokens_per_s", "mfu", "grad_norm"):
                if rec.get(k) is not None:
                    self.writer.add_scalar(f"train/{k}", rec[k], rec["step"])
            for lang, v in rec.get("bpb", {}).items():
                self.writer.add_scalar(f"heldout_bpb/{lang}", v, rec["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer:
            self.writer.close()


def _open_metrics(out: Path, main: bool, tensorboard: bool, fresh: bool) -> _Metrics:
    metrics = _Metrics(out / "metrics.jsonl", main)
    if main and tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        if fresh:  # a fresh run: no curves of an earlier one in the same plot
            shutil.rmtree(out / "tensorboard", ignore_errors=True)
        metrics.writer = SummaryWriter(str(out / "tensorboard"))
    return metrics


def _save_checkpoint(run: _Run, on_checkpoint: Callable[[int, Path], None] | None) -> None:
    """`checkpoints/step-N`, whole or not at all, and the oldest beyond `keep_checkpoints` gone."""
    acc, spec, s = run.accelerator, run.spec, run.step
    main = acc.is_main_process
    ck = spec.out_dir / "checkpoints"
    tmp, final = ck / f".tmp-step-{s}", ck / f"step-{s}"
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    try:
        save_hf(run.model, run.tokenizer, tmp, acc)
        if run.sharded:
            acc.save_state(str(tmp / "sharded"))
        if main:
            torch.save({"step": s, "stage": run.stage_name(s),
                        "optimizer": None if run.sharded else run.optimizer.state_dict(),
                        "scheduler": run.scheduler.state_dict(), "sampler": run.sampler.state_dict(),
                        "rng": _rng_state(), "run_key": spec.run_key, "global_batch": run.global_batch,
                        "world_size": acc.num_processes, "bpb_start": run.bpb_start, "last": run.last},
                       tmp / STATE)
    except BaseException as e:
        # A save that fails (out of memory while gathering, a full disk, a kill signal turned
        # into an exception) leaves no half-written folder; the previous checkpoint stays whole.
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, torch.OutOfMemoryError):
            raise _oom(e, spec, s, acc.device, saving=True) from e
        raise
    if main:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in checkpoints(spec.out_dir)[:-spec.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        if on_checkpoint:
            on_checkpoint(s, final)
    acc.wait_for_everyone()


def _train_step(run: _Run, batch, collate: Callable, run_loss: torch.Tensor):
    """One optimizer step on the global `batch`: this process's micro-batches, gradients
    accumulated and synchronized on the last. Adds the loss to `run_loss`; returns the gradient
    norm and the tokens this process saw."""
    acc, spec = run.accelerator, run.spec
    world, rank = acc.num_processes, acc.process_index
    local_tokens = 0
    try:
        for a in range(spec.grad_accum):
            lo = (a * world + rank) * spec.micro_batch
            inputs = {k: v.to(acc.device) for k, v in collate(batch[lo:lo + spec.micro_batch]).items()}
            local_tokens += int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else inputs["input_ids"].numel()
            sync = a == spec.grad_accum - 1
            with nullcontext() if sync else acc.no_sync(run.model):
                loss = run.model(**inputs).loss / spec.grad_accum
                acc.backward(loss)
            run_loss += loss.detach()
        # The wrapped model's parameters: under FSDP accelerate then clips by the global norm.
        grad_norm = acc.clip_grad_norm_(run.model.parameters(), spec.grad_clip)
        run.optimizer.step()
    except torch.OutOfMemoryError as e:
        raise _oom(e, spec, run.step, acc.device) from e
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return grad_norm, local_tokens


def _end_embedding_stage(run: _Run) -> None:
    """Stage two: the whole model learns. The process wrapper is rebuilt because the set of
    parameters that need gradients changed (DDP fixes it when it wraps)."""
    unfreeze(run.raw, run.handles)
    run.model = _compiled(run.accelerator.prepare_model(run.raw), run.spec.compile)


@dataclass
class _Window:
    """Loss and throughput since the last log line; time spent saving is not training time."""

    loss: torch.Tensor
    steps: int = 0
    tokens: int = 0
    t_mark: float = field(default_factory=time.perf_counter)
    paused: float = 0.0

    def reset(self) -> None:
        self.loss.zero_()
        self.steps, self.tokens, self.t_mark, self.paused = 0, 0, time.perf_counter(), 0.0


def _window_record(run: _Run, window: _Window, grad_norm, flops_tok: float, peak) -> tuple[dict, float, float]:
    """The metrics record of the steps since the last one (the loss averaged over processes),
    with the unrounded loss and tokens/s the console shows."""
    world = run.accelerator.num_processes
    loss_v = float(run.accelerator.reduce(window.loss, "mean")) / window.steps
    tps = window.tokens / max(time.perf_counter() - window.t_mark - window.paused, 1e-9)
    m = mfu(tps, flops_tok, peak, world)
    rec = {"step": run.step, "stage": run.stage_name(run.step - 1), "loss": round(loss_v, 5),
           "lr": run.scheduler.get_last_lr()[0], "grad_norm": round(float(grad_norm), 4),
           "tokens": int(run.sampler.tokens_drawn), "tokens_per_s": round(tps, 1),
           "mfu": round(m, 5) if m is not None else None, "time": time.time()}
    return rec, loss_v, tps


def train_loop(accelerator, model, tokenizer, sampler, collate: Callable, spec: LoopSpec, *,
               heldout: dict[str, list[str]], resume: dict | None = None,
               on_checkpoint: Callable[[int, Path], None] | None = None,
               console=None, progress=None) -> LoopResult:
    """Train `model` (unwrapped) to `spec.max_steps`; returns the prepared model's result.

    `resume` is a loaded training state (`load_state`) whose weights the caller already put
    into `model`."""
    out = spec.out_dir
    out.mkdir(parents=True, exist_ok=True)
    world, main = accelerator.num_processes, accelerator.is_main_process
    run = _setup(accelerator, model, tokenizer, sampler, spec, resume)
    say = console.print if console and main else (lambda m: None)
    flops_tok = flops_per_token(run.raw.config, spec.seq_len)
    peak, _ = peak_flops(accelerator.device)
    metrics = _open_metrics(out, main, spec.tensorboard, fresh=resume is None)

    def evaluate() -> dict[str, float]:
        # The one window of soberan.bpb (the model's context), so the ledger's held-out bpb is
        # the number `soberan evaluate` reports for the same model and texts.
        return bpb_by_language(uncompiled(run.model), tokenizer, heldout)

    if resume is None:
        if main:
            metrics.path.unlink(missing_ok=True)
        run.bpb_start = evaluate()
        metrics.log({"step": 0, "stage": run.stage_name(0), "tokens": 0, "bpb": run.bpb_start, "time": time.time()})
        if run.bpb_start:
            say("held-out bits per byte at start: " + _fmt_bpb(run.bpb_start))
    task = progress.add_task("training", total=spec.max_steps, completed=run.step) if progress else None
    window, stopped = _Window(torch.zeros((), device=accelerator.device)), None
    while run.step < spec.max_steps:
        if run.handles and run.step >= spec.embed_stage_steps:
            _end_embedding_stage(run)
            say(f"step {run.step}: embedding stage done; training the whole model")
        try:
            batch = sampler.next_batch()
        except DataExhausted as e:
            stopped = str(e)
            break
        grad_norm, local_tokens = _train_step(run, batch, collate, window.loss)
        run.step += 1
        step = run.step
        window.steps += 1
        window.tokens += local_tokens * world
        if progress:
            progress.advance(task)
        is_eval = step % spec.eval_every == 0 or step == spec.max_steps
        if step % spec.log_every == 0 or is_eval:
            run.last, loss_v, tps = _window_record(run, window, grad_norm, flops_tok, peak)
            if is_eval:
                run.last["bpb"] = evaluate()
                say(f"step {step}: loss {loss_v:.3f}  held-out bpb {_fmt_bpb(run.last['bpb'])}  {tps:,.0f} tokens/s")
            metrics.log(run.last)
            if progress:
                progress.update(task, description=f"training  loss {loss_v:.3f}")
            window.reset()
        if step % spec.checkpoint_every == 0 or step == spec.max_steps:
            t0 = time.perf_counter()
            _save_checkpoint(run, on_checkpoint)
            window.paused += time.perf_counter() - t0  # tokens/s counts training, not saving
    if stopped:
        if run.last.get("step") != run.step or "bpb" not in run.last:
            run.last = {**run.last, "step": run.step, "bpb": evaluate(), "time": time.time()}
            metrics.log(run.last)
        _save_checkpoint(run, on_checkpoint)
        say(f"[yellow]warning:[/yellow] stopped at step {run.step}: {stopped}")
    metrics.close()
    bpb_end = run.last.get("bpb") or evaluate()
    return LoopResult(run.step, run.bpb_start, bpb_end, run.last, run.resumed_from, stopped, run.model)


def _oom(err: BaseException, spec: LoopSpec, step: int, device, saving: bool = False) -> Exception:
    """The error a person reads when a step does not fit: the batch, the memory, what to change.
    The same global batch with a smaller micro-batch trains the same model (grad_accum)."""
    from soberan.config import ConfigError
    from soberan.device import oom_message

    where = "while saving the checkpoint of" if saving else "at"
    batch = (f"train.micro_batch = {spec.micro_batch} × seq_len {spec.seq_len} "
             f"({spec.micro_batch * spec.seq_len:,} tokens per forward pass; grad_accum {spec.grad_accum}) "
             f"on {device}, {where} step {step + (0 if saving else 1)}")
    if spec.micro_batch > 1:
        smaller = max(d for d in range(1, spec.micro_batch) if spec.micro_batch % d == 0)
        remedy = (f"Lower micro_batch and raise grad_accum, which keeps the global batch and so the "
                  f"model it trains: micro_batch = {smaller}, "
                  f"grad_accum = {spec.grad_accum * spec.micro_batch // smaller}.")
    else:
        remedy = "micro_batch is already 1: lower seq_len, use a smaller model, or shard it over GPUs (FSDP)."
    return ConfigError(oom_message(err, batch=batch, remedy=remedy)
                       + " Checkpoints already written are whole; the run resumes from the last one.")


def _fmt_bpb(b: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in b.items())
