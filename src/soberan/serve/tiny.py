"""A tiny, randomly initialised Llama checkpoint with a real Korean BPE tokenizer and a chat template.

Tests and `benchmarks/serve_load.py` serve it when no trained model is at hand: it is a genuine HF
checkpoint (config, safetensors, tokenizer.json, chat template), so the server code paths are the
ones a trained model takes, only smaller. Built from the Korean text the konlpy wheel ships; no
download.
"""

from __future__ import annotations

from pathlib import Path

from soberan.serve.model import CHATML

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def korean_lines(limit_chars: int = 150_000) -> list[str]:
    from soberan.workspace import konlpy_corpus_dir

    lines, total = [], 0
    for f in sorted(konlpy_corpus_dir().rglob("*.txt")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                lines.append(line.strip())
                total += len(line)
        if total >= limit_chars:
            break
    return lines


def build_tiny_checkpoint(out: Path, *, vocab_size: int = 1024, hidden: int = 64, layers: int = 2,
                          heads: int = 4, context: int = 1024, seed: int = 0) -> Path:
    """Write a tiny LlamaForCausalLM + byte-level BPE tokenizer to `out` (kept if already there,
    so test modules and benchmark runs share one); return `out`."""
    out = Path(out)
    if all((out / f).exists() for f in ("config.json", "tokenizer.json", "model.safetensors")):
        return out
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(korean_lines(), trainer)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                     bos_token="<|endoftext|>", pad_token="<|endoftext|>")
    hf_tok.chat_template = CHATML
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, intermediate_size=hidden * 2,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                      max_position_embeddings=context, bos_token_id=hf_tok.bos_token_id,
                      eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    hf_tok.save_pretrained(out)
    return out
