"""Chat data for supervised fine-tuning: JSONL conversations, rendered with the tokenizer's own
chat template, with the loss on the assistant's turns only.

Each line is {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}.
Where the assistant's words are in the rendered text is found by rendering the conversation up
to each assistant turn (with the generation prompt) and up to its end: the characters between the
two are that turn, its end-of-turn token included, so the model learns to stop. Tokens whose
characters fall inside a turn get their id as label, all others -100 (ignored by the loss), so
the model is never trained to write the user's or the system's words (InstructGPT, Ouyang et al.
2022; LLaMA-Factory's default). A line that cannot be used is rejected with its reason, never
silently skipped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IGNORE = -100


@dataclass
class Example:
    input_ids: np.ndarray
    labels: np.ndarray


@dataclass
class ChatData:
    examples: list[Example]
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (line id, reason)
    truncated: int = 0


def chat_files(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    files = sorted(path.rglob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"{path}: no .jsonl chat files")
    return files


def encode_chat(tokenizer, messages: list[dict], max_length: int) -> tuple[Example, bool]:
    """One conversation → (input ids, labels masked to the assistant's turns), and whether it was
    cut at `max_length`. Raises ValueError with a reason a person can read."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("`messages` must be a non-empty list")
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError("each message needs a string `role` and `content`")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("no assistant turn to learn from")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template (set one in [tokenizer] chat_template)")
    render = lambda msgs, gen: tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
    full = render(messages, False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before, upto = render(messages[:i], True), render(messages[:i + 1], False)
        if not (full.startswith(upto) and upto.startswith(before)):
            raise ValueError("the chat template does not render a conversation as a prefix of its "
                             "continuation; cannot locate the assistant's turns")
        spans.append((len(before), len(upto)))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    offsets = enc["offset_mapping"]
    labels = np.full(len(ids), IGNORE, dtype=np.int64)
    starts = np.array([s for s, _ in spans])
    ends = np.array([e for _, e in spans])
    for t, (a, b) in enumerate(offsets):
        # A token belongs to a turn when its text starts inside it; special tokens such as `</s>`
        # at a turn's end have their own offsets and fall inside it too.
        if b > a and ((starts <= a) & (a < ends)).any():
            labels[t] = ids[t]
    cut = len(ids) > max_length
    ids, labels = ids[:max_length], labels[:max_length]
    if not (labels != IGNORE).any():
        raise ValueError(f"no assistant token within max_length={max_length}")
    return Example(ids, labels), cut


def load_chat(path: Path, tokenizer, max_length: int) -> ChatData:
    out = ChatData([])
    for f in chat_files(path):
        with open(f, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                lid = hashlib.sha256(line.encode()).hexdigest()[:32]
                try:
                    rec = json.loads(line)
                    if not isinstance(rec, dict) or "messages" not in rec:
                        raise ValueError("no `messages` field")
                    ex, cut = encode_chat(tokenizer, rec["messages"], max_length)
                except json.JSONDecodeError as e:
                    out.rejected.append((lid, f"{f.name}:{n}: not JSON ({e.msg})"))
                    continue
                except ValueError as e:
                    out.rejected.append((lid, f"{f.name}:{n}: {e}"))
                    continue
                out.examples.append(ex)
                out.truncated += cut
    return out


class ChatSampler:
    """Epochs over the examples in an order reshuffled each epoch, `batch` examples a step."""

    def __init__(self, examples: list[Example], *, batch: int, seed: int, pad_id: int):
        if not examples:
            raise ValueError("no usable chat examples")
        self.examples, self.batch, self.seed, self.pad_id = examples, batch, seed, pad_id
        self.pos = 0  # examples drawn so far, over all epochs
        self.tokens_drawn = 0
        self._cached: tuple[int, np.ndarray] | None = None

    def _order(self, epoch: int) -> np.ndarray:
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.examples)))
        return self._cached[1]

    def next_batch(self) -> list[Example]:
        out = []
        for _ in range(self.batch):
            epoch, i = divmod(self.pos, len(self.examples))
            out.append(self.examples[int(self._order(epoch)[i])])
            self.pos += 1
            self.tokens_drawn += len(out[-1].input_ids)
        return out

    def state_dict(self) -> dict:
        return {"pos": self.pos, "n": len(self.examples), "tokens": self.tokens_drawn}

    def load_state_dict(self, state: dict) -> None:
        if state["n"] != len(self.examples):
            raise ValueError("the checkpoint was made on different chat data")
        self.pos, self.tokens_drawn = state["pos"], state["tokens"]


def collate(examples: list[Example], pad_id: int):
    """Right-padded tensors: input_ids, attention_mask, labels (-100 on padding)."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for r, e in enumerate(examples):
        n = len(e.input_ids)
        ids[r, :n] = torch.from_numpy(e.input_ids)
        labels[r, :n] = torch.from_numpy(e.labels)
        mask[r, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
