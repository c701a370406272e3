"""The GPU backend: vLLM's in-process async engine behind soberan's own gateway.

We run vLLM in-process (not `vllm serve` on another port) so there is exactly one listening
socket, and every request passes soberan's key check, rate limit, budget and audit log before
vLLM sees it: vLLM's `--api-key` leaves some routes open and it keeps no audit log. vLLM does its
own continuous batching and paged attention; tensor parallelism spreads the model over the GPUs.

Untested in soberan's CI (no GPU, and vLLM does not install there); it is chosen only when
`import vllm` works and CUDA is available, or when `[serve] backend = "vllm"` asks for it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from soberan.offline import go_offline
from soberan.serve.engine import Chunk, Sampling


class VllmEngine:
    """Same surface as `BatchEngine`: start(), stop(), generate(prompt_ids, Sampling)."""

    def __init__(self, path: Path, *, context_length: int = 0, max_batch: int = 256,
                 tensor_parallel: int = 0) -> None:
        go_offline()
        # vLLM finds "its" IP by opening a UDP socket towards 8.8.8.8 unless told; one node needs none.
        os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
        import torch
        from vllm import AsyncEngineArgs

        try:  # vLLM >= 0.8 (V1 engine); AsyncLLMEngine is an alias of it there
            from vllm.v1.engine.async_llm import AsyncLLM as Engine
        except ImportError:  # pragma: no cover - older vLLM
            from vllm import AsyncLLMEngine as Engine

        args = AsyncEngineArgs(model=str(path), tokenizer=str(path),
                               tensor_parallel_size=tensor_parallel or max(torch.cuda.device_count(), 1),
                               max_model_len=context_length or None, max_num_seqs=max_batch,
                               disable_log_stats=True, trust_remote_code=False)
        self.engine = Engine.from_engine_args(args)
        self.active = 0
        self.pending = 0

    def start(self) -> None:
        pass  # vLLM's engine runs from construction

    def stop(self) -> None:
        shutdown = getattr(self.engine, "shutdown", None)
        if shutdown:
            shutdown()

    async def generate(self, prompt: list[int], sampling: Sampling) -> AsyncIterator[Chunk]:
        from vllm import SamplingParams

        params = SamplingParams(n=1, max_tokens=sampling.max_tokens, temperature=sampling.temperature,
                                top_p=sampling.top_p, presence_penalty=sampling.presence_penalty,
                                frequency_penalty=sampling.frequency_penalty,
                                stop=list(sampling.stop) or None, seed=sampling.seed)
        rid = uuid.uuid4().hex
        sent, done = 0, False
        self.active += 1
        try:
            async for out in self.engine.generate({"prompt_token_ids": list(prompt)}, params, rid):
                o = out.outputs[0]  # cumulative text and token ids (the default output kind)
                reason = o.finish_reason if out.finished else None
                if reason not in (None, "stop", "length"):
                    reason = "error"
                delta, sent = o.text[sent:], len(o.text)
                if delta or reason:
                    yield Chunk(delta, len(o.token_ids), reason)
                if out.finished:
                    done = True
                    return
        finally:
            self.active -= 1
            if not done:  # the client left: free the sequence's KV blocks now
                await self.engine.abort(rid)
