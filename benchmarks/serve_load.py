"""Load test for `soberan serve`: continuous batching against one request at a time, fp32 against int8.

Each mode starts `soberan serve` in its own process on 127.0.0.1 and drives it from this process
with a bounded number of concurrent streaming clients (httpx, asyncio). Per mode it prints
requests/s, output tokens/s, target-language characters/s, p50/p99 time to first token and
latency, and errors; then the bits-per-byte cost of int8 on held-out text. The last line reads
`batching_speedup: <ratio> errors: <count>` (output tokens/s with batching over one-at-a-time;
errors summed over every mode).

    .venv/bin/python benchmarks/serve_load.py                    # demo/model/final, else a tiny model
    .venv/bin/python benchmarks/serve_load.py --model PATH --streams 64 --requests 128 --max-tokens 48

Request i samples at temperature 0.8 with seed i in every mode, so every mode does the same work
for the same prompts and the modes differ only in how the server schedules it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SOBERAN_SHARED_DATA", REPO.parent / "shared" / "data"))
COUNTRY = {"ko": "KR", "th": "TH", "vi": "VN", "id": "ID", "ms": "MY", "tl": "PH", "ar": "SA", "en": "US"}
SCRIPT = {"ko": "HANGUL", "th": "THAI", "ar": "ARABIC"}  # others: Latin letters
NTREX = {"ko": "kor", "th": "tha", "vi": "vie", "id": "ind", "ms": "msa", "tl": "fil", "ar": "arb"}


@dataclass
class Result:
    ok: bool
    ttft: float = 0.0
    latency: float = 0.0
    tokens: int = 0
    text: str = ""
    error: str = ""


@dataclass
class Mode:
    name: str
    max_batch: int
    quantize: str = "none"
    results: list[Result] = field(default_factory=list)
    wall: float = 0.0


def target_chars(text: str, lang: str) -> int:
    """Characters of the target language's script: Hangul for Korean, Thai, Arabic, else Latin."""
    script = SCRIPT.get(lang, "LATIN")
    return sum(1 for c in text if c.isalpha() and unicodedata.name(c, "").startswith(script))


def prompts_for(lang: str, n: int) -> list[str]:
    """Short target-language prompts: NTREX-128 news sentences when ../shared/data is there
    (not in the demo's training data), else lines of the konlpy corpus."""
    lines: list[str] = []
    ntrex = SHARED / "ntrex128" / f"newstest2019-ref.{NTREX.get(lang, lang)}.txt"
    if ntrex.exists():
        lines = [x.strip() for x in ntrex.read_text(encoding="utf-8").splitlines() if x.strip()]
    if not lines:
        from soberan.serve.tiny import korean_lines

        lines = korean_lines(50_000)
    return [" ".join(line.split()[:8]) for line in lines[:n]] or ["안녕하세요"] * n


def heldout_texts(lang: str, limit: int = 200) -> list[str]:
    ntrex = SHARED / "ntrex128" / f"newstest2019-ref.{NTREX.get(lang, lang)}.txt"
    if ntrex.exists():
        return [x for x in ntrex.read_text(encoding="utf-8").splitlines() if x.strip()][-limit:]
    from soberan.serve.tiny import korean_lines

    return korean_lines(400_000)[-limit:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(ws: Path, model: Path, mode: Mode, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "soberan.serve", "-w", str(ws),
           "--model", str(model), "--port", str(port), "--max-batch", str(mode.max_batch),
           "--quantize", mode.quantize, "--backend", "transformers"]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    wait_up(proc, url, lambda: proc.stdout.read())
    return proc, url


def wait_up(proc: subprocess.Popen, url: str, output) -> None:
    """Wait until the server answers /health; stop with its output (`output()`) if it exits."""
    import httpx

    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"soberan serve exited:\n{output()}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("soberan serve did not come up in 300 s")


async def one(client, sem, model: str, prompt: str, max_tokens: int, seed: int) -> Result:
    async with sem:
        t0 = time.perf_counter()
        ttft, tokens, parts, done = 0.0, 0, [], False
        try:
            async with client.stream("POST", "/v1/completions", json={
                    "model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8,
                    "seed": seed,
                    "stream": True, "stream_options": {"include_usage": True}}) as r:
                if r.status_code != 200:
                    return Result(False, error=f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
                async for line in r.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line[6:]
                    if data == "[DONE]":
                        done = True
                        break
                    msg = json.loads(data)
                    if "error" in msg:
                        return Result(False, error=msg["error"]["message"])
                    if msg.get("usage"):
                        tokens = msg["usage"]["completion_tokens"]
                    for ch in msg.get("choices", []):
                        if ch["text"]:
                            ttft = ttft or time.perf_counter() - t0
                            parts.append(ch["text"])
        except Exception as e:  # a refused or dropped connection is an error to count, not a crash
            return Result(False, error=f"{type(e).__name__}: {e}")
        if not done:
            return Result(False, error="stream ended without [DONE]")
        return Result(True, ttft or time.perf_counter() - t0, time.perf_counter() - t0, tokens, "".join(parts))


async def drive(url: str, key: str, model: str, prompts: list[str], streams: int, max_tokens: int) -> tuple[list[Result], float]:
    import httpx

    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=httpx.Timeout(600.0), limits=limits) as client:
        await one(client, asyncio.Semaphore(1), model, prompts[0], 4, 0)  # warm-up, not counted
        sem = asyncio.Semaphore(streams)
        t0 = time.perf_counter()
        results = await asyncio.gather(*[one(client, sem, model, p, max_tokens, i)
                                         for i, p in enumerate(prompts)])
        return list(results), time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def summarize(mode: Mode, lang: str) -> dict:
    ok = [r for r in mode.results if r.ok]
    toks = sum(r.tokens for r in ok)
    chars = sum(target_chars(r.text, lang) for r in ok)
    return {"mode": mode.name, "max_batch": mode.max_batch, "quantize": mode.quantize,
            "requests": len(mode.results), "errors": len(mode.results) - len(ok),
            "req_s": len(ok) / mode.wall, "tok_s": toks / mode.wall, "chars_s": chars / mode.wall,
            "ttft_p50": pct([r.ttft for r in ok], 50), "ttft_p99": pct([r.ttft for r in ok], 99),
            "lat_p50": pct([r.latency for r in ok], 50), "lat_p99": pct([r.latency for r in ok], 99),
            "wall_s": mode.wall, "tokens": toks}


def bpb_cost(model: Path, lang: str) -> tuple[float, float, int]:
    """Bits per byte of held-out text under the fp32 model and its int8 quantization."""
    from soberan.bpb import bits_per_byte
    from soberan.serve.model import load_transformers, quantize_int8

    loaded = load_transformers(model)
    texts = heldout_texts(lang)
    ctx = min(loaded.context_length, 512)
    fp32 = bits_per_byte(loaded.model, loaded.tokenizer, texts, max_length=ctx)
    int8 = bits_per_byte(quantize_int8(loaded.model), loaded.tokenizer, texts, max_length=ctx)
    return fp32, int8, sum(len(t.encode()) for t in texts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="HF checkpoint (default: demo/model/final, else a tiny model)")
    ap.add_argument("--lang", default="ko")
    ap.add_argument("--streams", type=int, default=64, help="concurrent streaming clients")
    ap.add_argument("--requests", type=int, default=0, help="requests per mode (default: 2 x streams)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-batch", type=int, default=64, help="the batching server's max batch")
    ap.add_argument("--threads", type=int, default=0, help="server torch threads (0 = all cores)")
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 mode and its bpb cost")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    sys.path.insert(0, str(REPO / "src"))
    from soberan.serve.keys import create_key, keys_path
    from soberan.serve.offline import go_offline
    from soberan.workspace import Workspace, init_workspace

    go_offline()
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    model = args.model or (REPO / "demo" / "model" / "final")
    if not (model / "config.json").exists():
        from soberan.serve.tiny import build_tiny_checkpoint

        print(f"no model at {model}; building a tiny one", file=sys.stderr)
        model = build_tiny_checkpoint(tmp / "tiny")
    init_workspace(tmp / "ws", lang=args.lang, jurisdiction=COUNTRY.get(args.lang, "KR"), name="bench")
    ws = Workspace.open(tmp / "ws")
    _, key = create_key(keys_path(ws.stage_dir("serve")), "bench", rate_limit=0)
    n = args.requests or 2 * args.streams
    prompts = (prompts_for(args.lang, n) * n)[:n]

    modes = [Mode("batched", args.max_batch), Mode("one-at-a-time", 1)]
    if not args.no_int8:
        modes.append(Mode("batched int8", args.max_batch, "int8"))
    for mode in modes:
        proc, url = start_server(ws.root, model, mode, args.threads)
        try:
            import httpx

            model_id = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).json()["data"][0]["id"]
            mode.results, mode.wall = asyncio.run(drive(url, key, model_id, prompts, args.streams, args.max_tokens))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        errs = [r.error for r in mode.results if not r.ok]
        print(f"{mode.name}: {len(mode.results) - len(errs)}/{len(mode.results)} ok in {mode.wall:.1f} s"
              + (f"; first error: {errs[0]}" if errs else ""), file=sys.stderr)

    rows = [summarize(m, args.lang) for m in modes]
    print(f"\nmodel {model} · {args.streams} concurrent streams · {n} requests per mode · "
          f"max_tokens {args.max_tokens} · temperature 0.8, seeded · {len(os.sched_getaffinity(0))} CPUs")
    print("| mode | max batch | req/s | out tok/s | target chars/s | TTFT p50 / p99 (s) | latency p50 / p99 (s) | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['max_batch']} | {r['req_s']:.2f} | {r['tok_s']:.1f} | {r['chars_s']:.1f} | "
              f"{r['ttft_p50']:.2f} / {r['ttft_p99']:.2f} | {r['lat_p50']:.2f} / {r['lat_p99']:.2f} | {r['errors']} |")
    out = {"model": str(model), "streams": args.streams, "requests": n, "max_tokens": args.max_tokens, "modes": rows}
    if not args.no_int8:
        fp32, int8, nbytes = bpb_cost(model, args.lang)
        speed = rows[2]["tok_s"] / rows[0]["tok_s"] if rows[0]["tok_s"] else float("nan")
        out["bpb"] = {"fp32": fp32, "int8": int8, "bytes": nbytes}
        print(f"\nint8: bits/byte {int8:.5f} vs fp32 {fp32:.5f} ({int8 - fp32:+.5f}, "
              f"{100 * (int8 - fp32) / fp32:+.2f}%) on {nbytes} bytes of held-out {args.lang} text; "
              f"batched throughput x{speed:.2f} of fp32")
    speedup = rows[0]["tok_s"] / rows[1]["tok_s"] if rows[1]["tok_s"] else float("nan")
    errors = sum(r["errors"] for r in rows)
    if args.json:
        args.json.write_text(json.dumps({**out, "batching_speedup": speedup, "errors": errors}, indent=1))
    print(f"batching_speedup: {speedup:.2f} errors: {errors}")


if __name__ == "__main__":
    main()
