"""What an extended tokenizer costs at step 0, by how its new rows are initialized.

Before any training, the base model with its own tokenizer and the same model with an extended
tokenizer (new rows initialized several ways) score the same held-out text; the extension is
worth starting only if an initialization costs little. Byte-level BPE bases (SmolLM2, Llama 3,
Qwen) spell a Korean syllable with three byte tokens, so a new token's parts are bytes whose
embeddings carry little of its meaning.

Variants (input row / output row; tied models are untied where the two differ):
  mean                 mean of the parts' rows, tied (soberan's default; EEVE, Jais)
  mean_noise           mean plus 0.1 std of noise (soberan's `mean_noise`)
  in_mean_out_first    input: mean of parts; output: the first part's row
  in_last_out_first    input: the last part's row (the state the base reaches after reading the
                       parts ends there); output: the first part's row
  in_mean_out_allmean  input: mean of parts; output: the mean of all rows (Hewitt 2021: new tokens
                       start improbable instead of stealing their parts' mass)

    .venv/bin/python benchmarks/new_token_init.py --workspace benchmarks/out/adapt/ws [--n 100]

It reads the base and the extended tokenizer that benchmarks/adapt_base.py made in its workspace
and scores NTREX-128 Korean (sentences no arm trained on).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SOBERAN_SHARED_DATA", REPO.parent / "shared" / "data"))
VARIANTS = ["mean", "mean_noise", "in_mean_out_first", "in_last_out_first", "in_mean_out_allmean"]


def bpb(model, tok, texts) -> float:
    from soberan.bpb import nll_and_bytes

    n, b = nll_and_bytes(model, tok, texts)
    return n / (math.log(2) * b)


def variant(base_dir: Path, n_rows: int, new: dict[int, list[int]], name: str):
    import torch
    from transformers import AutoModelForCausalLM

    from soberan.train.model import init_new_embeddings

    m = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    base_rows = m.get_input_embeddings().weight.shape[0]
    m.resize_token_embeddings(n_rows, mean_resizing=False)
    if name in ("mean", "mean_noise"):
        init_new_embeddings(m, new, noise=0.1 if name == "mean_noise" else 0.0, seed=0)
        return m
    emb = m.get_input_embeddings().weight
    if m.get_output_embeddings().weight is emb:  # untie: the output rows differ from the input's
        head = torch.nn.Linear(emb.shape[1], emb.shape[0], bias=False)
        head.weight.data = emb.data.clone()
        m.lm_head = head
        m.config.tie_word_embeddings = False
    out = m.get_output_embeddings().weight
    with torch.no_grad():
        all_mean = out[:base_rows].mean(0)
        for t, parts in new.items():
            p = torch.tensor(parts)
            emb[t] = emb[parts[-1]] if name == "in_last_out_first" else emb[p].mean(0)
            out[t] = all_mean if name == "in_mean_out_allmean" else out[parts[0]]
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace", type=Path, default=REPO / "benchmarks" / "out" / "adapt" / "ws")
    ap.add_argument("--n", type=int, default=100, help="NTREX Korean sentences")
    args = ap.parse_args()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    base_dir = next((args.workspace / "base").iterdir())
    ext_dir = args.workspace / "tok-extend"
    texts = [ln.strip() for ln in (DATA / "ntrex128" / "newstest2019-ref.kor.txt").read_text().splitlines()
             if ln.strip()][:args.n]
    base_tok, ext = AutoTokenizer.from_pretrained(str(base_dir)), AutoTokenizer.from_pretrained(str(ext_dir))
    info = json.loads((ext_dir / "new_token_init.json").read_text())
    new = {int(k): v for k, v in info["new_tokens"].items()}
    ref = bpb(AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32), base_tok, texts)
    print(f"NTREX ko, {len(texts)} sentences; {len(new):,} new tokens\n")
    print("| initialization | bpb at step 0 | vs the base |\n|---|---|---|")
    print(f"| base tokenizer (keep) | {ref:.4f} | |")
    for name in VARIANTS:
        v = bpb(variant(base_dir, len(ext), new, name), ext, texts)
        print(f"| {name} | {v:.4f} | {v / ref - 1:+.1%} |", flush=True)


if __name__ == "__main__":
    main()
