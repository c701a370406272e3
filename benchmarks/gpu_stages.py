"""The parts of `benchmarks/gpu_stages.sh` that are more than one command: set the run's sizes,
read the train stage's own metrics, compare two loss curves, time `soberan evaluate`, and load a
served model with concurrent streams.

    python benchmarks/gpu_stages.py configure WS train.depth=20 train.seq_len=2048 ...
    python benchmarks/gpu_stages.py train-summary WS --warm 20 --json OUT/train.json
    python benchmarks/gpu_stages.py curves CLEAN_WS RESUMED_WS --tol 0.02
    python benchmarks/gpu_stages.py evaluate WS --json OUT/evaluate.json
    python benchmarks/gpu_stages.py serve WS MODEL --streams 64 --requests 128 --single 16 --json OUT/serve.json

Each prints one line that starts with the part's name and holds its figures, so the script's
summary is a grep. Every figure comes from the stage's own output (`model/metrics.jsonl`,
`eval/results.json`) or from requests to the running server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gpu_prepare import set_key  # noqa: E402


def configure(ws: Path, settings: list[str]) -> None:
    """`section.key=value` pairs (TOML values) into the workspace's soberan.toml."""
    for s in settings:
        dotted, value = s.split("=", 1)
        section, key = dotted.rsplit(".", 1)
        set_key(ws / "soberan.toml", section, key, value)


def read_metrics(ws: Path, output: str = "model") -> dict[int, dict]:
    """The last record per step of the train stage's metrics.jsonl: a resumed run appends again
    the steps it redoes after the checkpoint, and those are the ones its final model kept."""
    by_step: dict[int, dict] = {}
    for line in (ws / output / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        by_step[rec["step"]] = rec
    return dict(sorted(by_step.items()))


def train_summary(ws: Path, warm: int) -> dict:
    """Tokens/s and MFU as the stage logged them, the median over intervals that end after step
    `warm` (the first intervals hold torch.compile's work), and the whole curve."""
    recs = [r for r in read_metrics(ws).values() if r.get("tokens_per_s")]
    steady = [r for r in recs if r["step"] > warm] or recs
    model = json.loads((ws / "model" / "final" / "config.json").read_text())
    ledger = [json.loads(x) for x in (ws / "ledger" / "records.jsonl").read_text().splitlines()]
    rec = [r for r in ledger if r.get("type") == "artifact" and r.get("kind") == "model"][-1]
    out = {"steps": recs[-1]["step"], "tokens": recs[-1]["tokens"],
           "tokens_per_s": statistics.median(r["tokens_per_s"] for r in steady),
           "mfu": statistics.median(r["mfu"] for r in steady) if steady[0].get("mfu") is not None else None,
           "first_interval_tokens_per_s": recs[0]["tokens_per_s"], "intervals": len(steady),
           "loss_first": recs[0]["loss"], "loss_last": recs[-1]["loss"], "params": rec["meta"]["params"],
           "compile": rec["meta"]["compile"], "layers": model["num_hidden_layers"],
           "hidden": model["hidden_size"], "vocab": model["vocab_size"], "seq_len": rec["meta"]["seq_len"],
           "bpb_start": rec["meta"]["bpb_start"], "bpb_end": rec["meta"]["bpb_end"]}
    mfu = f"{out['mfu']:.3f}" if out["mfu"] is not None else "n/a"
    print(f"train: tokens_per_s {out['tokens_per_s']:,.0f} mfu {mfu} (median of {len(steady)} intervals "
          f"after step {warm}; first interval {out['first_interval_tokens_per_s']:,.0f}) · "
          f"{out['params'] / 1e6:.0f}M params, {out['layers']} layers, seq {out['seq_len']}, "
          f"compile {out['compile']} · loss {out['loss_first']:.3f} → {out['loss_last']:.3f} "
          f"over {out['steps']} steps")
    return out


def curves(clean: Path, resumed: Path, tol: float) -> dict:
    """The loss at every logged step of an uninterrupted run against a killed-and-resumed one."""
    a = {s: r["loss"] for s, r in read_metrics(clean).items() if r.get("loss") is not None}
    b = {s: r["loss"] for s, r in read_metrics(resumed).items() if r.get("loss") is not None}
    steps = sorted(set(a) & set(b))
    if not steps or set(a) != set(b):
        raise SystemExit(f"resume: the runs logged different steps ({sorted(a)} vs {sorted(b)})")
    diff = max(abs(a[s] - b[s]) for s in steps)
    ok = diff <= tol
    print(f"resume: {'same' if ok else 'DIFFERENT'} loss curve over {len(steps)} logged steps "
          f"(max |Δloss| {diff:.2e}, tolerance {tol:g}); loss {a[steps[0]]:.3f} → {a[steps[-1]]:.3f}")
    return {"steps": len(steps), "max_abs_diff": diff, "tolerance": tol, "same": ok}


def evaluate(ws: Path) -> dict:
    """`soberan evaluate` as the stage runs it, timed in this process: the whole stage (model
    load, contamination scan and held-out text included), and the time inside its batched
    benchmark scoring calls alone."""
    import soberan.evaluate.scoring as scoring_mod
    from soberan.evaluate import run
    from soberan.workspace import Workspace

    scoring = [0.0]
    real = scoring_mod.loglikelihoods  # the stage imports it from here when it scores a set

    def timed(*a, **kw):  # the stage's own function, with a stopwatch around it
        t = time.perf_counter()
        try:
            return real(*a, **kw)
        finally:
            scoring[0] += time.perf_counter() - t

    scoring_mod.loglikelihoods = timed
    w = Workspace.open(ws)
    # Per-item results of an earlier run of the same model would be reused, and nothing timed.
    shutil.rmtree(w.stage_dir("evaluate") / "items", ignore_errors=True)
    t0 = time.perf_counter()
    s = run(w, show=False)
    wall = time.perf_counter() - t0
    results = json.loads(s.results_path.read_text())
    model = results["models"][0]
    items = sum(v["n"] for v in model["sets"].values())
    docs = sum(v.get("units", v.get("docs", 0)) for v in model["bpb"].values())
    device = "cuda" if _cuda() else "cpu"
    out = {"device": device, "items": items, "heldout_docs": docs, "wall_s": wall, "items_per_s": items / wall,
           "scoring_s": scoring[0], "scoring_items_per_s": items / scoring[0] if scoring[0] else None,
           "batch_size": w.config.evaluate.batch_size,
           "acc": {k: v.get("acc") for k, v in model["sets"].items()},
           "bpb": {k: v["bpb"] for k, v in model["bpb"].items()}}
    rate = f"{out['scoring_items_per_s']:.1f}" if out["scoring_items_per_s"] else "n/a"
    print(f"evaluate: {items} benchmark items + {docs} held-out documents in {wall:.1f} s on {device}: "
          f"{rate} items/s while scoring (batch {out['batch_size']}), {out['items_per_s']:.1f} over the "
          f"whole stage (model load, contamination scan, held-out bpb) · "
          f"bpb {', '.join(f'{k} {v:.3f}' for k, v in out['bpb'].items())} · acc "
          + ", ".join(f"{k} {v:.3f}" for k, v in out["acc"].items() if v is not None))
    return out


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _prompts(ws: Path, n: int) -> list[str]:
    """Short Korean prompts: the first words of held-out documents' lines (never trained on)."""
    import pyarrow.parquet as pq

    lines = []
    for p in sorted((ws / "model" / "heldout").glob("*.parquet")):
        for text in pq.read_table(p, columns=["text"]).column("text").to_pylist():
            lines += [" ".join(x.split()[:8]) for x in text.splitlines() if len(x.split()) >= 4]
    if not lines:
        raise SystemExit(f"{ws}/model/heldout: no text to make prompts from")
    return (lines * (n // len(lines) + 1))[:n]


def _start(ws: Path, model: Path, max_batch: int, backend: str, log: Path, cpu: bool):
    """`soberan serve` in its own process, with this interpreter and its flags (`-S` in the
    rehearsal, so the server imports only what the GPU box has)."""
    from serve_load import free_port, wait_up

    port = free_port()
    cmd = [sys.executable, *(["-S"] if sys.flags.no_site else []), "-c", "from soberan.cli import main; main()",
           "serve", "-w", str(ws), "--model", str(model), "--port", str(port), "--max-batch", str(max_batch),
           "--backend", backend]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **({"CUDA_VISIBLE_DEVICES": ""} if cpu else {})}
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_up(proc, url, lambda: log.read_text()[-3000:])
    return proc, url


def serve(ws: Path, model: Path, streams: int, requests: int, single: int, max_tokens: int,
          out_dir: Path, cpu: bool) -> dict:
    """Output tokens/s of the batching server (max batch = streams) against one request at a
    time on the same device, in the same run; vLLM beside them when it is importable. With `cpu`,
    the server sees no GPU: a checkpoint written on the GPU, served by the CPU."""
    import importlib.util

    import httpx

    from serve_load import Mode, drive, summarize
    from soberan.serve.keys import create_key, keys_path
    from soberan.workspace import Workspace

    w = Workspace.open(ws)
    _, key = create_key(keys_path(w.stage_dir("serve")), f"bench-{time.time_ns()}", rate_limit=0)
    prompts = _prompts(ws, requests)
    modes = [(Mode("batched", streams), "transformers", prompts),
             (Mode("one-at-a-time", 1), "transformers", prompts[:single])]
    if cpu:
        modes = [(Mode("cpu, one-at-a-time", 1), "transformers", prompts[:single])]
    elif importlib.util.find_spec("vllm") is not None and _cuda():
        modes.append((Mode("vllm", streams), "vllm", prompts))
    rows = []
    for mode, backend, ps in modes:
        log = out_dir / f"serve-{mode.name.replace(' ', '').replace(',', '-')}.log"
        proc, url = _start(ws, model, mode.max_batch, backend, log, cpu)
        try:
            model_id = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).json()["data"][0]["id"]
            mode.results, mode.wall = asyncio.run(drive(url, key, model_id, ps, min(streams, len(ps)), max_tokens))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        row = summarize(mode, "ko")
        row["backend"] = backend
        row["device"] = "cpu" if cpu or "no CUDA device" in log.read_text() else "cuda"
        errs = [r.error for r in mode.results if not r.ok]
        row["first_error"] = errs[0] if errs else None
        row["sample"] = next((r.text for r in mode.results if r.ok), "")[:80]
        rows.append(row)
        print(f"serve {mode.name} ({backend}, {row['device']}, max batch {mode.max_batch}): "
              f"{row['requests'] - row['errors']}/{row['requests']} ok, {row['tok_s']:.1f} out tok/s, "
              f"{row['req_s']:.2f} req/s, TTFT p50 {row['ttft_p50']:.2f} s"
              + (f"; first error: {errs[0]}" if errs else ""))
    out = {"streams": streams, "max_tokens": max_tokens, "modes": rows}
    if not cpu:
        out["batching_speedup"] = rows[0]["tok_s"] / rows[1]["tok_s"] if rows[1]["tok_s"] else float("nan")
        out["errors"] = sum(r["errors"] for r in rows)
        print(f"serve: batching_speedup {out['batching_speedup']:.2f}x errors {out['errors']} "
              f"({streams} concurrent streams; goal >= 5x, 0 errors)")
    else:
        out["errors"] = rows[0]["errors"]
        print(f"cpu-load: {model.name} of the training run served on the CPU: {rows[0]['requests'] - rows[0]['errors']}"
              f"/{rows[0]['requests']} ok, sample {rows[0]['sample']!r}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("configure")
    c.add_argument("ws", type=Path)
    c.add_argument("settings", nargs="+")
    t = sub.add_parser("train-summary")
    t.add_argument("ws", type=Path)
    t.add_argument("--warm", type=int, default=20)
    k = sub.add_parser("curves")
    k.add_argument("clean", type=Path)
    k.add_argument("resumed", type=Path)
    k.add_argument("--tol", type=float, default=1e-4)
    e = sub.add_parser("evaluate")
    e.add_argument("ws", type=Path)
    s = sub.add_parser("serve")
    s.add_argument("ws", type=Path)
    s.add_argument("model", type=Path)
    s.add_argument("--streams", type=int, default=64)
    s.add_argument("--requests", type=int, default=128)
    s.add_argument("--single", type=int, default=16, help="requests for the one-at-a-time mode")
    s.add_argument("--max-tokens", type=int, default=64)
    s.add_argument("--cpu", action="store_true", help="hide the GPU from the server")
    for p in (t, k, e, s):
        p.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.cmd == "configure":
        return configure(args.ws, args.settings)
    if args.cmd == "train-summary":
        out = train_summary(args.ws, args.warm)
    elif args.cmd == "curves":
        out = curves(args.clean, args.resumed, args.tol)
    elif args.cmd == "evaluate":
        out = evaluate(args.ws)
    else:
        out_dir = args.json.parent if args.json else Path(".")
        out = serve(args.ws, args.model, args.streams, args.requests, args.single, args.max_tokens, out_dir, args.cpu)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, ensure_ascii=False))
    if args.cmd == "curves" and not out["same"]:
        sys.exit(1)
    if args.cmd == "serve" and out["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
