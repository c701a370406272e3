"""Bits per byte: how well a causal language model predicts raw text, whatever its tokenizer.

Mean token loss (nats per token) depends on what a token is. Extend a tokenizer with 3,000
Korean tokens and each token covers more text, so the loss per token rises even when the model
predicts the text better; two models with different vocabularies cannot be compared by it at
all. Bits per byte divides the total negative log-likelihood of a text by the number of UTF-8
bytes of that text, a unit that does not move when the vocabulary does, so the base model, the
adapted model with an extended tokenizer and a from-scratch baseline all land on one scale
(Gao et al. 2020, "The Pile", §4; nanochat's `loss_eval.py` does the same).

This module imports only torch and numpy, so the train and evaluate stages (and a bare GPU box) share it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["bits_per_byte", "bpb_by_language", "context_length", "nll_and_bytes", "nll_per_text", "start_token"]

# Context length when a model's config names none (an old GPT-2-style config without n_positions).
DEFAULT_CONTEXT = 2048
# Tokens per forward pass when scoring: a window of the model's full context (8,192 tokens for
# SmolLM2) times a 49k vocabulary is 1.6 GB of float32 logits, so batches are cut by tokens too.
MAX_BATCH_TOKENS = 4096


def start_token(tokenizer) -> int | None:
    """The token a text is conditioned on so that its first real token is also scored: BOS when
    the tokenizer has one (Llama, Mistral), else EOS as a document separator (GPT-2 style)."""
    for name in ("bos_token_id", "eos_token_id"):
        tid = getattr(tokenizer, name, None)
        if tid is not None:
            return int(tid)
    return None


def context_length(model) -> int:
    """The window every bits-per-byte measurement uses: the context the model's config declares
    (`max_position_embeddings`, or the name another architecture gives it). One window for train
    and evaluate, so the ledger's held-out bpb and `eval/results.json` agree for one model; a
    distributed or peft wrapper is looked through."""
    seen = model
    for _ in range(4):  # DDP/FSDP keep the model in `.module`; peft forwards `.config`
        cfg = getattr(seen, "config", None)
        if cfg is not None:
            for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx"):
                v = getattr(cfg, name, None)
                if isinstance(v, int) and not isinstance(v, bool) and v >= 2:
                    return v
            break
        seen = getattr(seen, "module", None)
        if seen is None:
            break
    return DEFAULT_CONTEXT


def _windows(ids: list[int], max_length: int) -> list[list[int]]:
    """Split one token sequence into windows of at most `max_length` tokens that overlap by one
    token, so that every token after the first is predicted exactly once (the rolling
    log-likelihood of lm-evaluation-harness, with disjoint contexts)."""
    if len(ids) <= max_length:
        return [ids]
    out, step = [], max_length - 1
    for start in range(0, len(ids) - 1, step):
        out.append(ids[start:start + max_length])
    return out


def _batches(lengths: list[int], batch_size: int, max_tokens: int):
    """Indices in batches, longest first (similar lengths share a batch, so little compute goes to
    padding), each at most `batch_size` rows and `max_tokens` padded tokens (one row at least)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    b: list[int] = []
    for i in order:
        if b and (len(b) >= batch_size or (len(b) + 1) * lengths[b[0]] > max_tokens):
            yield b
            b = []
        b.append(i)
    if b:
        yield b


@torch.no_grad()
def nll_per_text(model, tokenizer, texts: list[str], max_length: int | None = None,
                 batch_size: int = 8, max_batch_tokens: int = MAX_BATCH_TOKENS) -> tuple[np.ndarray, np.ndarray]:
    """Negative log-likelihood in nats of each text under `model`, and each text's UTF-8 bytes.

    Each text is scored on its own (after a BOS or EOS start token), in windows of `max_length`
    tokens (default: the model's context, `context_length`). Per text, so that a bootstrap can
    resample the units of a held-out split; an empty text scores 0 nats over 0 bytes.
    """
    max_length = context_length(model) if max_length is None else max_length
    if max_length < 2:
        raise ValueError("max_length must be at least 2")
    start = start_token(tokenizer)
    n_bytes = np.zeros(len(texts), dtype=np.int64)
    nll = np.zeros(len(texts), dtype=np.float64)
    windows: list[list[int]] = []
    owner: list[int] = []
    for t, text in enumerate(texts):
        if not text:
            continue
        n_bytes[t] = len(text.encode("utf-8", "surrogatepass"))
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if start is not None:
            ids = [start] + list(ids)
        for w in _windows(list(ids), max_length):
            if len(w) > 1:
                windows.append(w)
                owner.append(t)
    if not windows:
        return nll, n_bytes
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for idx in _batches([len(w) for w in windows], batch_size, max_batch_tokens):
            width = len(windows[idx[0]])
            input_ids = torch.zeros(len(idx), width, dtype=torch.long)
            mask = torch.zeros(len(idx), width, dtype=torch.long)
            for r, i in enumerate(idx):
                input_ids[r, :len(windows[i])] = torch.tensor(windows[i])
                mask[r, :len(windows[i])] = 1
            input_ids, mask = input_ids.to(device), mask.to(device)
            logits = model(input_ids=input_ids, attention_mask=mask).logits
            targets = input_ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            # float32 log-softmax even for a bf16 model: the sum over millions of tokens must
            # not inherit bf16's 8-bit mantissa.
            tok_nll = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)),
                                      targets.reshape(-1), ignore_index=-100, reduction="none")
            per_row = tok_nll.view(len(idx), -1).sum(dim=1).double().cpu().numpy()
            for r, i in enumerate(idx):
                nll[owner[i]] += per_row[r]
    finally:
        model.train(was_training)
    return nll, n_bytes


def nll_and_bytes(model, tokenizer, texts: list[str], max_length: int | None = None,
                  batch_size: int = 8) -> tuple[float, int]:
    """Total negative log-likelihood in nats of `texts` and their UTF-8 bytes (sums of
    `nll_per_text`, so callers can pool texts)."""
    nll, n_bytes = nll_per_text(model, tokenizer, texts, max_length, batch_size)
    return float(nll.sum()), int(n_bytes.sum())


def bits_per_byte(model, tokenizer, texts: list[str], max_length: int | None = None,
                  batch_size: int = 8) -> float:
    """Sum of token NLL in nats over `texts`, divided by ln(2) × their total UTF-8 bytes, in
    windows of the model's context unless `max_length` says otherwise.

    Tokenizer-independent, so it compares models whose vocabularies differ (see the module
    docstring). Returns NaN when `texts` hold no bytes.
    """
    nll, n_bytes = nll_and_bytes(model, tokenizer, texts, max_length, batch_size)
    if n_bytes == 0:
        return float("nan")
    return nll / (math.log(2) * n_bytes)


def bpb_by_language(model, tokenizer, texts: dict[str, list[str]]) -> dict[str, float]:
    """{lang: bits per byte} of held-out texts per language (rounded to 5 places, as logged)."""
    return {lang: round(bits_per_byte(model, tokenizer, t), 5) for lang, t in texts.items() if t}
