"""Settings of `soberan tokenizer` (the `[tokenizer]` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TokenizerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # keep: use the base as it is; extend: add `new_tokens` learned from the curated corpus by
    # continuing the base's BPE; replace: train a byte-level BPE of `vocab_size` from scratch.
    mode: Literal["keep", "extend", "replace"] = "extend"
    # A tokenizer.json, a folder holding one, a SentencePiece .model, a Tekken .json, or a name
    # of a file the mistral-common wheel ships: "mistral-v1" (32k SentencePiece) or "tekken".
    base: str = "mistral-v1"
    new_tokens: int = Field(8000, ge=0)  # extend: at most this many (EEVE-Korean added 8,960)
    # extend: stop early when the best new token would save fewer tokens than this over the corpus.
    min_frequency: int = Field(3, ge=1)
    vocab_size: int = Field(32000, ge=300)  # replace: the whole vocabulary, special tokens included
    # Languages whose curated documents teach the tokenizer (empty: project.languages).
    languages: list[str] = []
    # Extra special tokens to add when missing (bos/eos/pad and the chat template's are added anyway).
    special_tokens: list[str] = []
    # None: the base's own (keep, extend), or <s> and </s> for a tokenizer trained from scratch.
    bos_token: str | None = None
    eos_token: str | None = None
    pad_token: str | None = None  # None: the base's own; padding reuses eos where there is none
    # "auto" (the base's own; Mistral's [INST] format for Mistral bases; ChatML otherwise),
    # "chatml", "mistral", or a Jinja template string.
    chat_template: str = "auto"
    # Fertility is measured on the workspace's held-out units (`[heldout]`), never trained on.
    # Extra held-out text per language for the fertility report: {lang = "path/to/file.txt"},
    # one sample per line, relative to soberan.toml. Never used for training.
    eval_texts: dict[str, str] = {}
    max_train_chars: int = Field(0, ge=0)  # read at most this many characters (0: no limit)
