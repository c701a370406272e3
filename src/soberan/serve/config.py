"""Settings of `soberan serve` (the `[serve]` section)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ServeSettings(BaseModel):
    """Where and how `soberan serve` answers the OpenAI-compatible API. Guide: docs/serve.md"""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    host: str = "127.0.0.1"
    """Where `soberan serve` listens: loopback unless told otherwise, so nothing is exposed by
    accident. Keep 127.0.0.1 and put a TLS proxy in front to expose it (`--host`)."""
    port: int = Field(8000, ge=1, le=65535)
    """The port it listens on (`--port`)."""
    backend: Literal["auto", "transformers", "vllm"] = "auto"
    """"auto" uses vLLM when it is installed and a GPU is present, else transformers on CPU (`--backend`)."""
    quantize: Literal["none", "int8"] = "none"
    """"int8": dynamic quantization of Linear layers on the CPU backend (smaller, faster, slightly
    worse bits per byte; `--quantize`)."""
    max_batch: int = Field(32, ge=1)
    """Sequences decoded together by the CPU backend's batching loop; 1 serves one request at a
    time (`--max-batch`)."""
    max_body_bytes: int = Field(1_000_000, ge=1024)
    """Request bodies larger than this get 413 before they are read."""
    context_length: int = Field(0, ge=0)
    """Prompt + completion limit in tokens; 0 = the model's own max_position_embeddings, else at
    most that."""
    default_max_tokens: int = Field(256, ge=1)
    """max_tokens for a chat request that does not give one (completions default to 16, as
    OpenAI's)."""
    audit_content: Literal["omit", "hash", "redact"] = "hash"
    """What the audit log (serve/audit.jsonl) keeps of prompts and completions: "omit", "hash"
    (sha256), or "redact" (stored with the curate stage's PII redaction)."""
    rate_limit: int = Field(60, ge=0)
    """Requests per minute for a new API key (`soberan keys create` can override); 0 =
    unlimited."""
    token_budget: int = Field(0, ge=0)
    """Prompt + completion tokens over a new key's life (`soberan keys create` can override); 0 =
    unlimited."""
    threads: int = Field(0, ge=0)
    """torch CPU threads; 0 = all cores but one, which the HTTP loop keeps (`--threads`)."""
    tensor_parallel: int = Field(0, ge=0)
    """vLLM: GPUs to shard over; 0 = all visible GPUs."""
    header_timeout_s: float = Field(10.0, gt=0)
    """A connection whose request headers have not arrived within this is answered 408 and closed
    (slow or stalled clients)."""
    body_timeout_s: float = Field(30.0, gt=0)
    """And its body within this, else 408."""
    max_connections_per_client: int = Field(256, ge=1)
    """Open connections one client address may hold at once (more: 429 and closed). Behind a proxy
    the proxy is one client: raise it, or limit at the proxy."""
    unauthenticated_rate_limit: int = Field(30, ge=1)
    """Requests without a valid key, per client per minute (429); their audit records are
    aggregated."""
    isolate_network: Literal["auto", "on", "off"] = "auto"
    """Serve from a network namespace in which only loopback is up, so no library can reach another
    host whatever it does ("auto": when running as root or user namespaces are allowed; "on":
    refuse to start without it; `--isolate-network`). The listening socket is opened first and
    still takes clients."""
