"""Scoring a causal language model on benchmark items: log-likelihood multiple choice and greedy
exact match, batched.

Multiple choice follows lm-evaluation-harness (Gao et al. 2021-2024, `lm_eval/api/model.py` and
`lm_eval/models/huggingface.py`) so that numbers carry over:
- each (context, continuation) pair is tokenized as `context + continuation` and the continuation
  is the tokens past the context's own tokenization; trailing spaces of the context move to the
  continuation;
- the sequence is cut on the left to `max_length` tokens;
- `acc` takes the choice with the highest summed log-probability, `acc_norm` divides it by the
  choice's length in characters first (lm-eval's `acc_norm`), which removes the bias towards
  short choices.
Pairs of similar length share a forward pass (longest first, right padding), and the
log-softmax is taken only at the continuation positions, in float32.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LogLik:
    logprob: float  # summed log-probability of the continuation's tokens
    greedy: bool  # every continuation token was the argmax


def _encode_pair(tokenizer, context: str, continuation: str, start: int | None) -> tuple[list[int], list[int]]:
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    cont = list(whole[len(ctx):])
    ctx = list(whole[:len(ctx)])
    if start is not None:
        ctx = [start] + ctx
    if not ctx:
        raise ValueError("empty context and no BOS/EOS token to condition on")
    if not cont:  # the continuation merged into the context's last token; score it on its own
        cont = list(tokenizer(continuation, add_special_tokens=False)["input_ids"])
    return ctx, cont


def start_token(tokenizer) -> int | None:
    """BOS when the tokenizer has one, else EOS: what a text is conditioned on (as soberan.bpb)."""
    from soberan.bpb import start_token as first

    return first(tokenizer)


@contextmanager
def _inference(model) -> Iterator:
    """Eval mode and no gradients for the block (restored after); yields the model's device."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield next(model.parameters()).device
    finally:
        model.train(was_training)


def _longest_first(lengths: list[int], batch_size: int) -> Iterator[list[int]]:
    """Batches of indices, longest first: similar lengths share a batch, so little goes to padding."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for b in range(0, len(order), batch_size):
        yield order[b:b + batch_size]


def loglikelihoods(model, tokenizer, pairs: Sequence[tuple[str, str]], *, batch_size: int = 16,
                   max_length: int = 1024, on_batch: Callable[[int], None] | None = None) -> list[LogLik]:
    """Log-likelihood of each continuation given its context, in the order given."""
    import torch

    start = start_token(tokenizer)
    encoded = []
    for ctx, cont in pairs:
        c, k = _encode_pair(tokenizer, ctx, cont, start)
        k = k[-max_length:]
        seq = (c + k)[-(max_length + 1):]
        encoded.append((seq, len(k)))
    out: list[LogLik | None] = [None] * len(encoded)
    with _inference(model) as device:
        for idx in _longest_first([len(e[0]) for e in encoded], batch_size):
            width = len(encoded[idx[0]][0]) - 1
            ids = torch.zeros(len(idx), width, dtype=torch.long)
            mask = torch.zeros(len(idx), width, dtype=torch.long)
            for r, i in enumerate(idx):
                inp = encoded[i][0][:-1]
                ids[r, :len(inp)] = torch.tensor(inp)
                mask[r, :len(inp)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            for r, i in enumerate(idx):
                seq, n_cont = encoded[i]
                end = len(seq) - 1  # positions 0..end-1 predict seq[1..end]
                lp = torch.log_softmax(logits[r, end - n_cont:end].float(), dim=-1)
                target = torch.tensor(seq[-n_cont:], device=lp.device)
                tok_lp = lp.gather(1, target[:, None]).squeeze(1)
                out[i] = LogLik(float(tok_lp.sum()), bool((lp.argmax(-1) == target).all()))
            if on_batch:
                on_batch(len(idx))
    return out  # type: ignore[return-value]


def generate(model, tokenizer, prompts: Sequence[str], *, stop: Sequence[str], max_new_tokens: int = 32,
             batch_size: int = 16, max_length: int = 1024,
             on_batch: Callable[[int], None] | None = None) -> list[str]:
    """Greedy continuation of each prompt, cut at the first stop string."""
    import torch

    start = start_token(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    enc = []
    for p in prompts:
        ids = tokenizer(p, add_special_tokens=False)["input_ids"]
        ids = ([start] if start is not None else []) + list(ids)
        enc.append(ids[-(max_length - max_new_tokens):] if max_length > max_new_tokens else ids[-1:])
    out: list[str] = [""] * len(enc)
    with _inference(model) as device:
        for idx in _longest_first([len(e) for e in enc], batch_size):
            width = max(len(enc[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros(len(idx), width, dtype=torch.long)
            for r, i in enumerate(idx):  # left padding: every prompt ends where generation starts
                ids[r, width - len(enc[i]):] = torch.tensor(enc[i])
                mask[r, width - len(enc[i]):] = 1
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
            for r, i in enumerate(idx):
                text = tokenizer.decode(gen[r, width:], skip_special_tokens=True)
                cut = min((text.find(s) for s in stop if s and s in text), default=len(text))
                out[i] = text[:cut]
            if on_batch:
                on_batch(len(idx))
    return out


_PUNCT = re.compile(r"[\W_]+")


def normalize_answer(text: str) -> str:
    """For exact match: NFKC, case-folded, punctuation dropped, spaces collapsed (SQuAD's
    normalization, Rajpurkar et al. 2016, without its English article list)."""
    t = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_PUNCT.sub(" ", t).split())


def macro_f1(gold: np.ndarray, pred: np.ndarray) -> float:
    """Macro-averaged F1 over the classes seen in gold or predictions (sklearn's `average="macro"`),
    the metric KoBEST reports."""
    classes = np.union1d(gold, pred)
    f1s = []
    for c in classes:
        tp = np.sum((pred == c) & (gold == c))
        fp = np.sum((pred == c) & (gold != c))
        fn = np.sum((pred != c) & (gold == c))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else float("nan")
