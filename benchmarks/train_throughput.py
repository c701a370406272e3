"""Training throughput and model FLOPs utilization of soberan's Llama on the available device.

    PYTHONPATH=src python benchmarks/train_throughput.py                       # size by device
    PYTHONPATH=src python benchmarks/train_throughput.py --depth 20 --seq-len 2048 --batch 8 --compile

The model is what `soberan train` builds from scratch (`soberan.train.model`: one depth dial,
width 64·depth, heads of 128, SwiGLU), trained the way the train stage trains it: bf16 autocast
over fp32 master weights, SDPA attention (`causal_sdpa`, so that the causal kernels run under
`torch.compile`; see `soberan.train.model.register_causal_sdpa`), fused AdamW. Needs only torch,
transformers and numpy: no pydantic, typer or duckdb, so it runs on a bare GPU box.

MFU counts 6·N FLOPs per token for the matmul weights plus attention (PaLM, appendix B) against
the device's dense bf16 peak (H100/H200 SXM: 989 TFLOP/s); on a CPU the peak is an estimate from
its clock and vector units. The last line reads `tokens_per_s: <x> mfu: <fraction> device: <name>`.
"""

from __future__ import annotations

import argparse
import time

import torch

from soberan.train.model import (build_model, device_name, flops_per_token, llama_config, mfu, peak_flops,
                                 register_causal_sdpa)


def main() -> None:
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, default=20 if cuda else 2, help="layers; width = 64·depth")
    ap.add_argument("--seq-len", type=int, default=2048 if cuda else 256)
    ap.add_argument("--batch", type=int, default=8 if cuda else 4, help="sequences per step")
    ap.add_argument("--steps", type=int, default=20 if cuda else 5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=5 if cuda else 2, help="untimed steps first")
    ap.add_argument("--vocab", type=int, default=32768, help="vocabulary (Mistral v1: 32000)")
    ap.add_argument("--tie", action="store_true", help="tie input and output embeddings")
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16" if cuda else "fp32")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--attn", default="causal_sdpa",
                    help="attention implementation (causal_sdpa, sdpa, eager, flash_attention_2)")
    ap.add_argument("--sdpa-backend", choices=["auto", "flash", "cudnn", "efficient"], default="auto",
                    help="the only SDPA kernel allowed (auto: torch's own choice)")
    ap.add_argument("--profile", metavar="FILE", help="profile 3 more steps; write the kernels by GPU time here")
    args = ap.parse_args()
    register_causal_sdpa()
    if args.sdpa_backend != "auto":
        for name in ("flash", "cudnn", "mem_efficient", "math"):
            on = name == args.sdpa_backend or (name == "mem_efficient" and args.sdpa_backend == "efficient")
            getattr(torch.backends.cuda, f"enable_{name}_sdp")(on)

    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cfg = llama_config(args.depth, args.vocab, args.seq_len, tie_embeddings=args.tie)
    model = build_model(cfg, seed=0, attn_implementation=args.attn).to(device)
    model.config.use_cache = False
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1,
                            **({"fused": True} if cuda else {}))
    step_fn = torch.compile(model) if args.compile else model
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")
    gen = torch.Generator(device="cpu").manual_seed(0)
    batches = [torch.randint(0, args.vocab, (args.batch, args.seq_len), generator=gen) for _ in range(4)]
    batches = [b.to(device) for b in batches]

    def step(i: int) -> float:
        x = batches[i % len(batches)]
        with amp:
            loss = step_fn(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for i in range(args.warmup):
        step(i)
    sync()
    t0 = time.perf_counter()
    for i in range(args.steps):
        loss = step(i)
    sync()
    dt = time.perf_counter() - t0
    tps = args.batch * args.seq_len * args.steps / dt
    fpt = flops_per_token(cfg, args.seq_len)
    peak, where = peak_flops(device)
    m = mfu(tps, fpt, peak)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=acts) as prof:
            for i in range(3):
                step(i)
            sync()
        key = "self_device_time_total" if cuda else "self_cpu_time_total"
        with open(args.profile, "w") as f:
            f.write(prof.key_averages().table(sort_by=key, row_limit=40, max_name_column_width=90))
    mem = f", peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if cuda else ""
    print(f"model: depth {args.depth}, width {cfg.hidden_size}, heads {cfg.num_attention_heads}, "
          f"{n_params / 1e6:.1f}M parameters, vocab {cfg.vocab_size}, tied {args.tie}")
    print(f"run: seq_len {args.seq_len}, batch {args.batch}, {args.dtype}, attn {args.attn}, "
          f"sdpa kernels {args.sdpa_backend}, compile {args.compile}, {args.steps} steps in {dt:.2f}s, "
          f"loss {float(loss):.3f}{mem}")
    print(f"flops/token {fpt / 1e9:.2f} GFLOP, peak {peak / 1e12 if peak else float('nan'):.1f} TFLOP/s ({where})")
    print(f"tokens_per_s: {tps:.1f} mfu: {f'{m:.4f}' if m is not None else 'n/a'} device: {device_name(device)}")


if __name__ == "__main__":
    main()
