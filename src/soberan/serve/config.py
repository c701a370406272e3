"""Settings of `soberan serve` (the `[serve]` section)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"  # loopback unless told otherwise: nothing is exposed by accident
    port: int = Field(8000, ge=1, le=65535)
    backend: Literal["auto", "transformers", "vllm"] = "auto"  # auto: vLLM when installed and a GPU is present
    quantize: Literal["none", "int8"] = "none"  # int8: dynamic quantization of Linear layers (CPU backend)
    max_batch: int = Field(32, ge=1)  # sequences decoded together; 1 serves one request at a time
    max_body_bytes: int = Field(1_000_000, ge=1024)  # larger request bodies get 413
    context_length: int = Field(0, ge=0)  # 0: the model's own max_position_embeddings
    default_max_tokens: int = Field(256, ge=1)  # chat requests that do not say max_tokens
    audit_content: Literal["omit", "hash", "redact"] = "hash"  # what the audit log keeps of prompts
    rate_limit: int = Field(60, ge=0)  # requests per minute for a new key; 0 = unlimited
    token_budget: int = Field(0, ge=0)  # prompt + completion tokens for a new key; 0 = unlimited
    threads: int = Field(0, ge=0)  # torch CPU threads; 0 = all cores but one (kept for HTTP)
    tensor_parallel: int = Field(0, ge=0)  # vLLM: GPUs to shard over; 0 = all visible GPUs
    header_timeout_s: float = Field(10.0, gt=0)  # a connection's request headers must arrive within this
    body_timeout_s: float = Field(30.0, gt=0)  # and its body within this, else 408
    max_connections_per_client: int = Field(256, ge=1)  # open connections per client address
    unauthenticated_rate_limit: int = Field(30, ge=1)  # requests without a valid key, per client per minute
    # auto: serve from a network namespace with only loopback when root or user namespaces allow
    isolate_network: Literal["auto", "on", "off"] = "auto"
