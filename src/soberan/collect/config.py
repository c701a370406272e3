"""Settings of `soberan collect` (the `[collect]` section). Per-source options (globs, field
mapping, encoding, crawl budget) live on each `[[sources]]` table instead."""

from pydantic import BaseModel, ConfigDict, Field


class CollectSettings(BaseModel):
    """Turns every [[sources]] table into zstd Parquet shards under raw/<source>/, one rejection
    record per bad input in the ledger. Kill it at any moment and run it again: it resumes.
    Guide: docs/collect.md"""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    shard_docs: int = Field(10_000, ge=1)
    """Documents per Parquet shard."""
    max_doc_bytes: int = Field(20_000_000, ge=1)
    """A longer document (UTF-8 bytes) is rejected (`too_long`)."""
    min_doc_chars: int = Field(1, ge=1)
    """A document with fewer non-space characters is rejected (`empty`, `too_short`)."""
    max_record_bytes: int = Field(64_000_000, ge=1)
    """A single input record (a file, a JSONL line, an HTTP body, a WARC record) above this size is
    rejected without being read into memory: a 100 MB one-line file must not stall the run."""
    max_archive_member_bytes: int = Field(256 << 20, ge=1)
    """A member of a `.zip` input is read into memory; a larger one (as declared, and as it
    inflates) is rejected as too large, never extracted to disk (soberan.collect.archive)."""
    workers: int = Field(0, ge=0)
    """Processes for HTML extraction and decoding; 0 = one per CPU core. The pool starts only for
    sources with more than 256 such inputs."""
    checkpoint_s: float = Field(60.0, gt=0)
    """Commit a (smaller) shard at least this often, so a kill loses little."""
