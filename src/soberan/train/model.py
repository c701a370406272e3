"""The model side of `soberan train`: the depth dial, FLOPs and MFU, new-token embeddings.

Imports only torch and transformers (no pydantic, typer or duckdb), so
`benchmarks/train_throughput.py` runs with `PYTHONPATH=src` on a GPU box that has nothing else.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import torch

# The width of one dial step and the head size, after nanochat (karpathy/nanochat, `gpt.py`):
# the model is `depth` layers of width `depth * 64`, heads of 128, so one number sizes it.
ASPECT = 64
HEAD_DIM = 128


@dataclass(frozen=True)
class Dial:
    """What the depth dial derives. Everything else in the Llama config keeps its default."""

    depth: int
    width: int
    heads: int
    head_dim: int
    ffn: int
    lr: float


def dial(depth: int, head_dim: int = HEAD_DIM) -> Dial:
    """Width, heads, SwiGLU size and peak learning rate from the number of layers.

    The learning rate scales as 1/sqrt(width) from GPT-3's 6e-4 at width 768 (Brown et al. 2020,
    table 2.1), the same 1/sqrt(d_model) rule nanochat applies to its AdamW groups.
    """
    if depth < 1:
        raise ValueError("depth must be at least 1")
    width = depth * ASPECT
    heads = max(1, width // head_dim)
    # SwiGLU with 8/3·width hidden units keeps the MLP at the cost of a 4·width GELU MLP
    # (Shazeer 2020); rounded up to a multiple of 64 for tensor cores.
    ffn = int(math.ceil(8 * width / 3 / 64) * 64)
    return Dial(depth, width, heads, width // heads, ffn, 6e-4 * math.sqrt(768 / width))


def round_vocab(n: int, multiple: int = 64) -> int:
    """Embedding rows, padded so the output matmul tiles evenly on GPUs (unused rows are harmless)."""
    return int(math.ceil(n / multiple) * multiple)


def llama_config(depth: int, vocab_size: int, seq_len: int, *, tie_embeddings: bool = True,
                 bos_token_id: int | None = None, eos_token_id: int | None = None,
                 pad_token_id: int | None = None, head_dim: int = HEAD_DIM):
    """A `transformers.LlamaConfig` sized by `depth` (see `dial`)."""
    from transformers import LlamaConfig

    d = dial(depth, head_dim)
    return LlamaConfig(
        vocab_size=round_vocab(vocab_size), hidden_size=d.width, intermediate_size=d.ffn,
        num_hidden_layers=depth, num_attention_heads=d.heads, num_key_value_heads=d.heads,
        head_dim=d.head_dim, max_position_embeddings=max(seq_len, 2048), rope_theta=10000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=tie_embeddings, bos_token_id=bos_token_id,
        eos_token_id=eos_token_id, pad_token_id=pad_token_id, attention_dropout=0.0,
        use_cache=True, initializer_range=0.02)


def build_model(config, seed: int = 0, attn_implementation: str = "sdpa"):
    """A freshly initialized `LlamaForCausalLM`, the same weights for the same seed."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM._from_config(config, attn_implementation=attn_implementation,
                                         dtype=torch.float32)


CAUSAL_SDPA = "causal_sdpa"


def register_causal_sdpa() -> str:
    """Register `attn_implementation="causal_sdpa"`: SDPA that lets its causal kernels run under
    `torch.compile`, as they do without it. Returns the name.

    Without padding, transformers hands SDPA `is_causal=True` and no mask, so that the
    FlashAttention (or cuDNN) kernel runs. While compiling it cannot look at the data, so it must
    assume the position ids may mark several documents packed in one row ("padding-free"
    packing) and builds a (batch, 1, T, T) mask; SDPA given a mask leaves its causal kernels and
    reads the mask in every layer (19% of the tokens/s on an H100, docs/train.md). Pretraining
    here packs documents into rows separated by EOS, every row one causal stream, so the mask is
    the plain causal one: with no padding mask and no cache this returns none, the eager path's
    answer. Anything else
    (padding, a cache, a sliding window) goes to transformers' own SDPA mask. The attention
    function is transformers' SDPA itself. Not for models that add mask rules of their own
    (vision-language models); the name is not saved in a checkpoint's config.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    sdpa_mask = ALL_MASK_ATTENTION_FUNCTIONS["sdpa"]

    def causal_sdpa_mask(*args, **kwargs):
        q_len = kwargs.get("q_length")
        if q_len is None and kwargs.get("cache_position") is not None:  # older transformers
            q_len = kwargs["cache_position"].shape[0]
        kv_offset = kwargs.get("kv_offset", 0)
        if (not args and kwargs.get("attention_mask") is None and kwargs.get("local_size") is None
                and isinstance(kv_offset, int) and kv_offset == 0 and q_len is not None
                and q_len == kwargs.get("kv_length")):
            return None
        return sdpa_mask(*args, **kwargs)

    AttentionInterface.register(CAUSAL_SDPA, ALL_ATTENTION_FUNCTIONS["sdpa"])
    AttentionMaskInterface.register(CAUSAL_SDPA, causal_sdpa_mask)
    return CAUSAL_SDPA


# --- FLOPs and MFU ----------------------------------------------------------------------------

def flops_per_token(config, seq_len: int) -> float:
    """Training FLOPs per token: 6·N for the matmul weights (input embeddings excluded, the output
    head included) plus 12·L·H·Q·T for attention scores, the accounting of PaLM's MFU
    (Chowdhery et al. 2022, appendix B)."""
    width = config.hidden_size
    layers = config.num_hidden_layers
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    hd = getattr(config, "head_dim", None) or width // heads
    ffn = config.intermediate_size
    per_layer = width * hd * (heads + 2 * kv) + heads * hd * width + 3 * width * ffn
    n = layers * per_layer + config.vocab_size * width
    return 6.0 * n + 12.0 * layers * heads * hd * seq_len


# Dense bf16 tensor-core peak FLOP/s per device, from the vendors' datasheets (no sparsity).
PEAK_FLOPS = [
    (r"GB200|B200", 2.25e15), (r"B100", 1.75e15),
    (r"H200|GH200", 989e12), (r"H100.*PCIe", 756e12), (r"H100|H800", 989e12),
    (r"MI300X|MI325X", 1307e12), (r"MI250", 362e12),
    (r"A100|A800", 312e12), (r"L40S", 362e12), (r"L40\b", 181e12), (r"A6000", 155e12),
    (r"RTX 4090", 165e12), (r"RTX 3090", 71e12), (r"A10G", 70e12), (r"A10\b", 125e12),
    (r"L4\b", 121e12), (r"V100", 125e12), (r"T4\b", 65e12),
]


def cpu_peak_flops(threads: int | None = None) -> float | None:
    """A rough fp32 peak for this CPU: threads × clock × FLOPs per cycle from its vector ISA
    (two FMA units: 64 FLOPs/cycle with AVX-512, 32 with AVX2, 16 with NEON). An estimate, so a
    CPU's MFU is a coarse figure; None when /proc/cpuinfo says nothing."""
    try:
        info = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return None
    mhz = [float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", info)]
    flags = set(re.search(r"(?:flags|Features)\s*:\s*(.*)", info).group(1).split()) if re.search(
        r"(?:flags|Features)\s*:", info) else set()
    if not mhz:
        return None
    per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 16 if (
        "asimd" in flags) else 8
    threads = threads or torch.get_num_threads()
    return threads * max(mhz) * 1e6 * per_cycle


def device_name(device: torch.device | str | None = None) -> str:
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def peak_flops(device: torch.device | str | None = None) -> tuple[float | None, str]:
    """(peak FLOP/s of one device, where the figure comes from). `SOBERAN_PEAK_FLOPS` overrides."""
    if os.environ.get("SOBERAN_PEAK_FLOPS"):
        return float(os.environ["SOBERAN_PEAK_FLOPS"]), "SOBERAN_PEAK_FLOPS"
    name = device_name(device)
    if name.startswith("cpu"):
        est = cpu_peak_flops()
        return est, "cpu estimate (fp32, from /proc/cpuinfo)" if est else "unknown"
    for pattern, value in PEAK_FLOPS:
        if re.search(pattern, name):
            return value, f"datasheet bf16 dense ({pattern})"
    return None, "unknown device"


def mfu(tokens_per_s: float, flops_token: float, peak: float | None, devices: int = 1) -> float | None:
    return None if not peak else tokens_per_s * flops_token / (peak * devices)


# --- new tokens of an extended tokenizer -----------------------------------------------------

def init_new_embeddings(model, new_tokens: dict[int, list[int]], *, noise: float = 0.0,
                        seed: int = 0) -> int:
    """Set each new token's embedding row (and output-head row, when untied) to the mean of the
    rows of the base tokens it decomposes into; with `noise` > 0 add Gaussian noise of that many
    standard deviations of the base rows. The mean keeps a new token's first prediction close to
    what the base model meant by its parts (EEVE, Kim et al. 2024; Jais, Sengupta et al. 2023;
    Hewitt 2021 on why a mean beats a random init). Returns the number of rows set."""
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    head_w = head.weight if head is not None and head.weight is not emb else None
    gen = torch.Generator().manual_seed(seed)
    done = 0
    with torch.no_grad():
        for w in [emb] + ([head_w] if head_w is not None else []):
            std = w[: min(new_tokens, default=w.shape[0])].float().std().item()
            for new_id, parts in new_tokens.items():
                if not parts:
                    raise ValueError(f"new token {new_id} has no base parts to initialize from")
                row = w[torch.tensor(parts, device=w.device)].float().mean(0)
                if noise > 0:
                    row = row + torch.randn(row.shape, generator=gen).to(row.device) * noise * std
                w[new_id] = row.to(w.dtype)
            done = len(new_tokens)
    return done


def freeze_for_embedding_stage(model, first_new_id: int) -> list:
    """Stage one of the EEVE/Jais recipe: only the new embedding rows and the output head learn.

    Every other parameter gets `requires_grad=False` (no gradient, no optimizer update, no
    memory for its gradient); the embedding matrix keeps learning, but a gradient hook zeroes the
    rows of the base vocabulary, so with no weight decay on embeddings those rows stay exactly as
    they were. When the head is tied it is the same matrix, so its base rows stay too. Returns
    the hook handles; `unfreeze` removes them.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    emb = model.get_input_embeddings().weight
    emb.requires_grad_(True)
    head = model.get_output_embeddings()
    if head is not None:
        head.weight.requires_grad_(True)
    mask = torch.zeros(emb.shape[0], 1, dtype=emb.dtype, device=emb.device)
    mask[first_new_id:] = 1
    return [emb.register_hook(lambda g: g * mask.to(g.device, g.dtype))]


def unfreeze(model, handles: list) -> None:
    for h in handles:
        h.remove()
    handles.clear()
    for p in model.parameters():
        p.requires_grad_(True)
