"""The CPU backend: a transformers causal LM behind a continuous-batching loop.

One background thread owns the model. Each step it (1) drops sequences whose client went away,
(2) decodes one token for every active sequence in a single forward pass over a shared, left-padded
KV cache, (3) prefills newly arrived prompts together and merges their cache into the batch, so new
requests join between steps instead of waiting for the batch to drain (continuous batching, Yu et
al., "Orca", OSDI 2022), and (4) samples each sequence with its own parameters and stop conditions.
A finished or cancelled sequence leaves the batch at once and frees its slot.

transformers' own continuous-batching manager targets paged attention on GPUs and applies one
generation config to the whole batch; here every request carries its own temperature, top-p,
penalties, seed and stop strings, so the scheduler is ours and the model, cache and tokenizer are
the library's.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import traceback
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sampling:
    """Per-request sampling parameters (OpenAI semantics)."""

    max_tokens: int
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class Chunk:
    """What a generation stream yields: new text, tokens so far, and why it ended (once)."""

    text: str
    completion_tokens: int
    finish_reason: str | None = None  # "stop" | "length" | "error"


class Stream:
    """The request side of one sequence: a queue the engine thread fills, and a cancel flag.

    An async iterator of chunks. `aclose()` (or cancelling the task that waits on it) takes the
    sequence out of the batch, even if it was never iterated -- a client can leave before the
    first token."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Chunk] = asyncio.Queue()
        self.cancelled = False
        self.done = False

    def put(self, chunk: Chunk) -> None:  # called from the engine thread
        _deliver([(self, chunk)])

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Chunk:
        if self.done:
            raise StopAsyncIteration
        try:
            chunk = await self.queue.get()
        except BaseException:  # cancelled while waiting: the reader is gone
            self.cancelled = True
            raise
        # When the reader lags behind the engine, hand over everything queued as one chunk:
        # fewer, larger SSE events under load, one token per event when there is no hurry.
        while not self.queue.empty() and chunk.finish_reason is None:
            more = self.queue.get_nowait()
            chunk = Chunk(chunk.text + more.text, more.completion_tokens, more.finish_reason)
        if chunk.finish_reason is not None:
            self.done = True
        return chunk

    async def aclose(self) -> None:
        if not self.done:
            self.cancelled = True
            self.done = True


class _Seq:
    __slots__ = ("stream", "prompt", "sampling", "out", "generator", "ids", "prefix", "read", "text",
                 "sent", "next_token", "holdback")

    def __init__(self, stream: Stream, prompt: list[int], sampling: Sampling) -> None:
        self.stream, self.prompt, self.sampling = stream, prompt, sampling
        self.out: list[int] = []
        self.generator = None
        if sampling.seed is not None:
            self.generator = torch.Generator().manual_seed(sampling.seed % 2**63)
        # Incremental detokenization state: a few prompt tokens of context (so a SentencePiece
        # decoder keeps the first token's leading space), and offsets into it (see _detok).
        self.ids = prompt[-_CONTEXT:]
        self.prefix, self.read = 0, len(self.ids)
        self.text, self.sent, self.next_token = "", 0, -1
        # Text that could be the start of a stop string is held back until it cannot be.
        self.holdback = max((len(s) for s in sampling.stop), default=1) - 1


_CONTEXT = 6  # prompt tokens kept as detokenization context


class BatchEngine:
    """Owns a model and its batching thread. `generate()` is the whole public surface."""

    def __init__(self, model, tokenizer, *, max_batch: int, context_length: int,
                 eos_ids: set[int]) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_batch, self.context_length, self.eos_ids = max_batch, context_length, eos_ids
        pad = tokenizer.pad_token_id  # which id pads is irrelevant: padding is masked out
        self.pad_id = pad if pad is not None else min(eos_ids, default=0)
        self.vocab = len(tokenizer)
        self._pending: deque[_Seq] = deque()
        self._active: list[_Seq] = []
        self._cache = None
        self._mask: torch.Tensor | None = None  # (batch, cache length): 1 = real token
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="soberan-engine", daemon=True)
        self._cache_kw = _cache_kwarg(model)
        self.steps = 0
        self.peak_batch = 0

    # --- public ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=30)

    @property
    def active(self) -> int:
        return len(self._active)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def generate(self, prompt: list[int], sampling: Sampling) -> AsyncIterator[Chunk]:
        """Queue a sequence; its chunks arrive as the batch decodes. Closing the iterator
        (or cancelling the task reading it) takes the sequence out of the batch."""
        stream = Stream()
        self._pending.append(_Seq(stream, list(prompt), sampling))
        self._wake.set()
        return stream

    # --- the loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping:
            try:
                self._drop_cancelled()
                new = self._admit()
                if not self._active and not new:
                    self._wake.wait(0.05)
                    self._wake.clear()
                    continue
                with torch.inference_mode():
                    logits = []
                    if self._active:
                        logits.append(self._decode())
                    if new:
                        logits.append(self._prefill(new))
                        self._active.extend(new)
                    tokens = self._sample(torch.cat(logits), self._active)
                self.steps += 1
                self.peak_batch = max(self.peak_batch, len(self._active))
                self._advance(tokens)
            except Exception:  # never let one bad step kill the server: fail the batch, go on
                traceback.print_exc(file=sys.stderr)
                for s in self._active:
                    s.stream.put(Chunk("", len(s.out), "error"))
                self._active, self._cache, self._mask = [], None, None

    def _admit(self) -> list[_Seq]:
        new = []
        while self._pending and len(self._active) + len(new) < self.max_batch:
            s = self._pending.popleft()
            if not s.stream.cancelled:
                new.append(s)
        return new

    def _drop_cancelled(self) -> None:
        gone = [i for i, s in enumerate(self._active) if s.stream.cancelled]
        if gone:
            self._remove(gone)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache):
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                         logits_to_keep=1, **{self._cache_kw: cache})
        return out.logits[:, -1, :], getattr(out, self._cache_kw)

    def _decode(self) -> torch.Tensor:
        ids = torch.tensor([[s.next_token] for s in self._active], device=self._mask.device)
        pos = self._mask.sum(1, keepdim=True)  # each row's own position: padding does not count
        self._mask = torch.cat([self._mask, torch.ones_like(pos)], 1)
        logits, self._cache = self._forward(ids, self._mask, pos, self._cache)
        return logits

    def _prefill(self, new: list[_Seq]) -> torch.Tensor:
        from transformers import DynamicCache

        width = max(len(s.prompt) for s in new)
        ids = torch.full((len(new), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(new), width), dtype=torch.long)
        for i, s in enumerate(new):  # left padding: every row's last column is its last token
            ids[i, width - len(s.prompt):] = torch.tensor(s.prompt)
            mask[i, width - len(s.prompt):] = 1
        # Built on the CPU, then moved at once: the model may be on a GPU.
        dev = next(self.model.parameters()).device
        ids, mask = ids.to(dev), mask.to(dev)
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        logits, cache = self._forward(ids, mask, pos, DynamicCache())
        if self._cache is None:
            self._cache, self._mask = cache, mask
        else:
            self._merge(cache, mask)
        return logits

    def _merge(self, cache, mask: torch.Tensor) -> None:
        """Append the rows of a freshly prefilled cache to the batch, left-padding the shorter."""
        width = max(self._mask.shape[1], mask.shape[1])
        for old, add in zip(self._cache.layers, cache.layers, strict=True):
            old.keys = torch.cat([_lpad(old.keys, width, 2), _lpad(add.keys, width, 2)], 0)
            old.values = torch.cat([_lpad(old.values, width, 2), _lpad(add.values, width, 2)], 0)
        self._mask = torch.cat([_lpad(self._mask, width, 1), _lpad(mask, width, 1)], 0)

    def _remove(self, rows: list[int]) -> None:
        gone = set(rows)
        keep = [i for i in range(len(self._active)) if i not in gone]
        self._active = [self._active[i] for i in keep]
        if not keep:
            self._cache, self._mask = None, None
            return
        idx = torch.tensor(keep, device=self._mask.device)
        self._mask = self._mask[idx]
        # Columns that are padding in every remaining row are dead weight: cut them.
        first = int(self._mask.any(0).long().argmax())
        self._mask = self._mask[:, first:]
        for layer in self._cache.layers:
            layer.keys = layer.keys[idx, :, first:]
            layer.values = layer.values[idx, :, first:]

    def _sample(self, logits: torch.Tensor, seqs: list[_Seq]) -> list[int]:
        logits = logits.float()
        dev = logits.device  # the model's: sampling stays on the GPU when the model is there
        logits[:, self.vocab:] = float("-inf")  # padded embedding rows are not tokens
        for i, s in enumerate(seqs):
            p = s.sampling
            if (p.presence_penalty or p.frequency_penalty) and s.out:
                # OpenAI's definition: mu[j] -= c[j] * alpha_frequency + (c[j] > 0) * alpha_presence
                counts = torch.bincount(torch.tensor(s.out, device=dev), minlength=logits.shape[1]).float()
                logits[i] -= counts * p.frequency_penalty + (counts > 0).float() * p.presence_penalty
        out = logits.argmax(-1)
        temps = torch.tensor([s.sampling.temperature for s in seqs], device=dev)
        sampled = [i for i, s in enumerate(seqs) if s.sampling.temperature > 0]
        if sampled:
            rows = torch.tensor(sampled, device=dev)
            probs = torch.softmax(logits[rows] / temps[rows, None], -1)
            top_p = torch.tensor([seqs[i].sampling.top_p for i in sampled], device=dev)
            if bool((top_p < 1).any()):  # nucleus sampling (Holtzman et al., ICLR 2020)
                sp, idx = probs.sort(-1, descending=True)
                sp[(sp.cumsum(-1) - sp) > top_p[:, None]] = 0
                probs = torch.zeros_like(probs).scatter_(1, idx, sp)
            # Inverse-CDF sampling, vectorized: one uniform number per row (a seeded row draws
            # its own from its generator), then one cumsum and searchsorted for the whole batch.
            # A multinomial call per row, or exponential noise over the vocabulary, costs 10-50x
            # more at a 32k vocabulary.
            # Drawn on the CPU (a seeded request gives the same text on any device), then moved.
            u = torch.rand(len(sampled), 1)
            for j, i in enumerate(sampled):
                if seqs[i].generator is not None:
                    u[j] = torch.rand(1, generator=seqs[i].generator)
            u = u.to(dev)
            cdf = probs.cumsum(-1)
            # right=True: the first token whose cumulative mass exceeds u, never a zero-mass one
            pick = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp_(max=probs.shape[1] - 1)
            out[rows] = pick.flatten()
        return out.tolist()

    def _advance(self, tokens: list[int]) -> None:
        done, out = [], []
        for i, (s, tok) in enumerate(zip(self._active, tokens, strict=True)):
            s.out.append(tok)
            s.next_token = tok
            try:
                finish = self._finish(s, tok)
            except Exception:  # one sequence's failure (a decoder error) ends that sequence only
                traceback.print_exc(file=sys.stderr)
                s.text, finish = s.text[:s.sent], "error"
            visible = len(s.text) if finish else max(s.sent, len(s.text) - s.holdback)
            delta = s.text[s.sent:visible]
            s.sent = visible
            if delta or finish:
                out.append((s.stream, Chunk(delta, len(s.out), finish)))
            if finish:
                done.append(i)
        if done:
            self._remove(done)  # before the last chunks go out: a finished client finds its slot free
        _deliver(out)

    def _finish(self, s: _Seq, tok: int) -> str | None:
        """Take a new token into the sequence's text; say whether and why the sequence ends."""
        if tok in self.eos_ids:
            return "stop"
        before = len(s.text)
        s.text += self._detok(s, tok)
        for stop in s.sampling.stop:
            at = s.text.find(stop, max(0, before - len(stop) + 1))
            if at >= 0:
                s.text = s.text[:at]
                return "stop"
        if len(s.out) >= s.sampling.max_tokens or len(s.prompt) + len(s.out) >= self.context_length:
            return "length"
        return None

    def _detok(self, s: _Seq, tok: int) -> str:
        """The new text a token adds, by decoding a short window twice (the offsets method of
        Hugging Face's text-generation-inference and vLLM): it works for byte-level BPE and
        SentencePiece alike, and holds back a token that ends mid-character (Hangul is three
        UTF-8 bytes) until the character is whole."""
        s.ids.append(tok)
        prefix = self._text(s.ids[s.prefix:s.read])
        full = self._text(s.ids[s.prefix:])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            s.prefix, s.read = s.read, len(s.ids)
            return full[len(prefix):]
        return ""

    def _text(self, ids: list[int]) -> str:
        backend = getattr(self.tokenizer, "backend_tokenizer", None)  # Rust, no Python per token
        if backend is not None:
            return backend.decode(ids, skip_special_tokens=True)
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def _deliver(out: list[tuple[Stream, Chunk]]) -> None:
    """Hand a step's chunks to their event loops with one wake-up per loop, not one per chunk."""
    by_loop: dict = {}
    for stream, chunk in out:
        by_loop.setdefault(stream.loop, []).append((stream, chunk))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put_all, items)
        except RuntimeError:  # the event loop is gone (server shutting down)
            for stream, _ in items:
                stream.cancelled = True


def _put_all(items: list[tuple[Stream, Chunk]]) -> None:
    for stream, chunk in items:
        stream.queue.put_nowait(chunk)


def _lpad(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """Left-pad `t` with zeros along `dim` up to `width`."""
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim)


def _cache_kwarg(model) -> str:
    """transformers 5 calls the KV cache `cache`; 4.x called it `past_key_values`."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
