"""Settings of `soberan tokenizer` (the `[tokenizer]` section)."""

from pydantic import BaseModel, ConfigDict


class TokenizerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
