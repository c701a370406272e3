"""Bits per byte: how well a causal language model predicts raw text, whatever its tokenizer.

Mean token loss (nats per token) depends on what a token is. Extend a tokenizer with 3,000
Korean tokens and each token covers more text, so the loss per token rises even when the model
predicts the text better; two models with different vocabularies cannot be compared by it at
all. Bits per byte divides the total negative log-likelihood of a text by the number of UTF-8
bytes of that text, a unit that does not move when the vocabulary does, so the base model, the
adapted model with an extended tokenizer and a from-scratch baseline all land on one scale
(Gao et al. 2020, "The Pile", §4; nanochat's `loss_eval.py` does the same).

This module imports only torch, so the train and evaluate stages (and a bare GPU box) share it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["bits_per_byte", "nll_and_bytes"]


def _start_token(tokenizer) -> int | None:
    """The token a text is conditioned on so that its first real token is also scored: BOS when
    the tokenizer has one (Llama, Mistral), else EOS as a document separator (GPT-2 style)."""
    for name in ("bos_token_id", "eos_token_id"):
        tid = getattr(tokenizer, name, None)
        if tid is not None:
            return int(tid)
    return None


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


@torch.no_grad()
def nll_and_bytes(model, tokenizer, texts: list[str], max_length: int = 512,
                  batch_size: int = 8) -> tuple[float, int]:
    """Total negative log-likelihood in nats of `texts` under `model`, and their UTF-8 bytes.

    Each text is scored on its own (after a BOS or EOS start token); texts longer than
    `max_length` tokens are scored in windows. Returned as sums so callers can pool texts.
    """
    if max_length < 2:
        raise ValueError("max_length must be at least 2")
    start = _start_token(tokenizer)
    n_bytes = 0
    windows: list[list[int]] = []
    for text in texts:
        if not text:
            continue
        n_bytes += len(text.encode("utf-8", "surrogatepass"))
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if start is not None:
            ids = [start] + list(ids)
        windows.extend(w for w in _windows(list(ids), max_length) if len(w) > 1)
    if not windows:
        return 0.0, n_bytes
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = 0.0
    # Longest first: similar lengths share a batch, so little compute goes to padding.
    order = sorted(range(len(windows)), key=lambda i: -len(windows[i]))
    try:
        for b in range(0, len(order), batch_size):
            batch = [windows[i] for i in order[b:b + batch_size]]
            width = len(batch[0])
            input_ids = torch.zeros(len(batch), width, dtype=torch.long)
            mask = torch.zeros(len(batch), width, dtype=torch.long)
            for r, w in enumerate(batch):
                input_ids[r, :len(w)] = torch.tensor(w)
                mask[r, :len(w)] = 1
            input_ids, mask = input_ids.to(device), mask.to(device)
            logits = model(input_ids=input_ids, attention_mask=mask).logits
            targets = input_ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            # float32 log-softmax even for a bf16 model: the sum over millions of tokens must
            # not inherit bf16's 8-bit mantissa.
            nll = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)),
                                  targets.reshape(-1), ignore_index=-100, reduction="sum")
            total += float(nll)
    finally:
        model.train(was_training)
    return total, n_bytes


def bits_per_byte(model, tokenizer, texts: list[str], max_length: int = 512,
                  batch_size: int = 8) -> float:
    """Sum of token NLL in nats over `texts`, divided by ln(2) × their total UTF-8 bytes.

    Tokenizer-independent, so it compares models whose vocabularies differ (see the module
    docstring). Returns NaN when `texts` hold no bytes.
    """
    nll, n_bytes = nll_and_bytes(model, tokenizer, texts, max_length, batch_size)
    if n_bytes == 0:
        return float("nan")
    return nll / (math.log(2) * n_bytes)
