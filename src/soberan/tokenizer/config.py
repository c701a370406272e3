"""Settings of `soberan tokenizer` (the `[tokenizer]` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TokenizerSettings(BaseModel):
    """The tokenizer the model reads with: the base's as it is, extended with tokens learned from
    the curated corpus, or trained from scratch. Guide: docs/tokenizer.md"""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    mode: Literal["keep", "extend", "replace"] = "extend"
    """keep: use the base tokenizer as it is; extend: add `new_tokens` learned from the curated
    corpus by continuing the base's BPE (every original token keeps its id); replace: train a
    byte-level BPE of `vocab_size` from scratch."""
    base: str = "mistral-v1"
    """A tokenizer.json (or a folder holding one), a SentencePiece .model, a Tekken .json, or the
    name of a file the mistral-common wheel ships: "mistral-v1" (32,000 SentencePiece pieces) or
    "tekken" (131k). Also a base model's builtin name ("smollm2-135m-instruct") or .gguf file,
    whose own tokenizer is used (docs/train.md). Relative paths start at soberan.toml."""
    new_tokens: int = Field(8000, ge=0)
    """extend: at most this many new tokens (EEVE-Korean added 8,960)."""
    min_frequency: int = Field(3, ge=1)
    """extend: stop early when the best new token would save fewer tokens than this over the
    corpus."""
    vocab_size: int = Field(32000, ge=300)
    """replace: the whole vocabulary of the byte-level BPE trained from scratch, special tokens
    included."""
    languages: list[str] = []
    """Languages whose curated documents teach the tokenizer (empty: project.languages)."""
    special_tokens: list[str] = []
    """Extra special tokens to add when missing; bos/eos/pad and the chat template's own are added
    anyway."""
    bos_token: str | None = Field(None, examples=["<s>"])
    """Unset: the base's own (keep, extend), or <s> for a tokenizer trained from scratch."""
    eos_token: str | None = Field(None, examples=["</s>"])
    """Unset: the base's own (keep, extend), or </s> for a tokenizer trained from scratch."""
    pad_token: str | None = Field(None, examples=["<pad>"])
    """Unset: the base's own; padding reuses eos where there is none."""
    chat_template: str = "auto"
    """"auto" (the base's own; Mistral's [INST] format for Mistral bases; ChatML otherwise),
    "chatml", "mistral", or a Jinja template string."""
    eval_texts: dict[str, str] = Field({}, examples=[{"en": "eval/en.txt"}])
    """Fertility is measured on the workspace's held-out units (`[heldout]`), never trained on.
    This adds held-out text per language for the fertility report: {lang = "path/to/file.txt"},
    one sample per line, relative to soberan.toml. Never used for training."""
    max_train_chars: int = Field(0, ge=0)
    """Read at most this many characters of the corpus (0: all of it)."""
