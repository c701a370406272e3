"""Settings of `soberan collect` (the `[collect]` section)."""

from pydantic import BaseModel, ConfigDict


class CollectSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shard_docs: int = 10_000  # documents per Parquet shard
    max_doc_bytes: int = 20_000_000  # a longer document is rejected with its reason
    min_doc_chars: int = 1
