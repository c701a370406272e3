"""Chat fine-tuning, full or LoRA, on JSONL conversations: model/chat/final/ in the ledger."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import pyarrow as pa

from soberan.config import ConfigError
from soberan.documents import tree_sha256
from soberan.hf import load_model, load_tokenizer
from soberan.train import TrainSummary, session
from soberan.train.pretrain import artifact_at
from soberan.workspace import Workspace


def _base(ws: Workspace, base_model: str | None) -> tuple[Path, dict | None]:
    if base_model:
        from soberan import basemodel

        if basemodel.is_base_spec(base_model):  # a builtin name or a .gguf: imported once, license-checked
            p = basemodel.resolve(ws, base_model, ws.config.train.base_model_license)
            return p, artifact_at(ws, p)
        p = ws.config.resolve(base_model)
        if not (p / "config.json").exists():
            raise FileNotFoundError(f"{p}: not a Hugging Face checkpoint (no config.json)")
        return p, artifact_at(ws, p)
    mains = [a for a in ws.ledger.artifacts("train", "model") if a["meta"].get("role") == "main"]
    if not mains:
        raise ConfigError(f"{ws.root}: no pretrained model to fine-tune (run `soberan train` first, "
                          "or set [train.finetune] base_model)")
    rec = max(mains, key=lambda a: a["seq"])
    return ws.root / rec["path"], rec


def finetune(ws: Workspace, *, chat_data=None, base_model=None, output_dir=None, max_steps=None,
             lora: bool | None = None, resume: bool = True, console=None, progress=None) -> TrainSummary:
    import torch

    from soberan.train.chat import ChatSampler, collate, load_chat
    from soberan.train.data import read_heldout

    cfg, s = ws.config, ws.config.train
    f = s.finetune
    lora = f.lora if lora is None else lora
    chat_path = chat_data or f.chat_data
    if not chat_path:
        raise ConfigError("no chat data: pass --chat-data PATH or set [train.finetune] chat_data")
    chat_path = cfg.resolve(chat_path)
    if not chat_path.exists():
        raise FileNotFoundError(f"chat data {chat_path} does not exist")
    base, base_rec = _base(ws, base_model or f.base_model)
    out = cfg.resolve(output_dir) if output_dir is not None else ws.stage_dir("train") / "chat"
    sess = session.start(s.precision, "fine-tuning", console, progress)
    main, say = sess.main, sess.say
    tokenizer = load_tokenizer(base)
    data = load_chat(chat_path, tokenizer, f.max_length)
    if data.rejected and main:
        ws.ledger.write_decisions("train", f"{out.name}-chat", pa.table({
            "doc_id": [i for i, _ in data.rejected], "step": ["chat"] * len(data.rejected),
            "action": ["rejected"] * len(data.rejected), "rule": ["chat_format"] * len(data.rejected),
            "reason": [r for _, r in data.rejected], "source": [chat_path.name] * len(data.rejected)}))
    say(f"chat data: {len(data.examples)} conversations, {len(data.rejected)} rejected"
        + (f" (first: {data.rejected[0][1]})" if data.rejected else "")
        + (f", {data.truncated} cut at {f.max_length} tokens" if data.truncated else ""))
    if not data.examples:
        raise ConfigError(f"{chat_path}: no usable conversations (see the rejections above)")
    batch = f.micro_batch * f.grad_accum * sess.world
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sampler = ChatSampler(data.examples, batch=batch, seed=s.seed, pad_id=pad)
    steps = max_steps or f.max_steps or max(1, math.ceil(f.epochs * len(data.examples) / batch))

    ckpt, state = session.resume_point(sess, out, resume)
    model = load_model(base if not (ckpt and not lora) else ckpt, dtype=torch.float32)
    if lora:
        import warnings

        from peft import LoraConfig, PeftModel, get_peft_model

        # peft asks transformers 5 a deprecated question; the answer is right, the warning noise.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        if ckpt:
            model = PeftModel.from_pretrained(model, str(ckpt), is_trainable=True)
        else:
            model = get_peft_model(model, LoraConfig(r=f.lora_r, lora_alpha=f.lora_alpha,
                                                     lora_dropout=f.lora_dropout,
                                                     target_modules=f.lora_target, task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    say(f"fine-tuning {base.name if base.name != 'final' else ws.ledger.rel(base)} "
        f"({'LoRA' if lora else 'full'}: {trainable / 1e6:.2f}M of {total / 1e6:.1f}M parameters train) "
        f"for {steps} steps")
    heldout = read_heldout(ws.stage_dir("train") / "heldout", s.eval_max_bytes)
    chat_sha = tree_sha256(chat_path)
    run_key = {"chat": chat_sha, "base": base.as_posix(), "lora": lora, "seed": s.seed,
               "max_length": f.max_length,
               "lora_cfg": [f.lora_r, f.lora_alpha, f.lora_dropout, f.lora_target] if lora else None}
    spec = session.loop_spec(s, out_dir=out, max_steps=steps, micro_batch=f.micro_batch, grad_accum=f.grad_accum,
                             lr=f.lr or (2e-4 if lora else 2e-5), seq_len=f.max_length, run_key=run_key,
                             warmup_steps=min(s.warmup_steps, steps // 10), weight_decay=0.0)
    res = session.train(sess, model, tokenizer, sampler, partial(collate, pad_id=pad), spec, heldout=heldout,
                        resume=state)

    final = session.publish(sess.acc, res.model, tokenizer, out, merge_lora=lora)
    meta = {"role": "chat", "lora": lora, "steps": res.steps, "conversations": len(data.examples),
            "rejected": len(data.rejected), "tokens": sampler.tokens_drawn, "final_loss": res.last.get("loss"),
            "bpb_start": res.bpb_start, "bpb_end": res.bpb_end, "base_model": ws.ledger.rel(base),
            "chat_data": ws.ledger.rel(chat_path), "chat_sha256": chat_sha, "trainable_params": trainable, "last": res.last}
    art = session.record_model(ws, sess, final, [base_rec["hash"]] if base_rec else [], meta)
    return TrainSummary(final, "chat", res.steps, sampler.tokens_drawn, res.last.get("loss"), res.bpb_start,
                        res.bpb_end, {}, res.resumed_from, res.stopped, total, art)
