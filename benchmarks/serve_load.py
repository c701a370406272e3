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

The `stall` phase is the server under attack: 300 connections from another loopback address
(127.0.0.2, so they count as another client) each send half a request header and then nothing,
reopening when the server closes them, while the 64 streaming clients run as above and
`/health` is probed every 50 ms. Goal: 0 errors for the streaming clients, `/health` p99 under
200 ms. Loopback only; every socket is closed when the phase ends.

    .venv/bin/python benchmarks/serve_load.py --phases stall     # just the attack phase
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


async def stall_one(host: str, port: int, stop: asyncio.Event, stats: dict) -> None:
    """One attacker connection: half a header, then silence; reopened after the server closes it."""
    while not stop.is_set():
        writer = None
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.2", 0))
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
            await writer.drain()
            stats["open"] += 1
            stats["peak"] = max(stats["peak"], stats["open"])
            reply, closed = b"", False
            while not stop.is_set() and not closed:
                try:
                    chunk = await asyncio.wait_for(reader.read(4096), timeout=0.5)
                except asyncio.TimeoutError:
                    continue  # still held open by the server: keep stalling
                except OSError:
                    chunk = b""
                reply += chunk
                closed = not chunk
            stats["open"] -= 1
            if closed:
                status = reply.split(b" ", 2)[1].decode() if reply.startswith(b"HTTP/") else "no reply"
                stats["closed_by"][status] = stats["closed_by"].get(status, 0) + 1
        except OSError as e:
            stats["connect_errors"][type(e).__name__] = stats["connect_errors"].get(type(e).__name__, 0) + 1
        finally:
            if writer is not None:
                writer.close()
        await asyncio.sleep(0.5)  # a patient attacker, not a CPU burner on a 2-core machine


PROBE = """
import json, sys, time, httpx
lat, errors = [], []
with httpx.Client(base_url=sys.argv[1], timeout=10) as c:
    while not sys.stdin.closed:
        t0 = time.perf_counter()
        try:
            ok = c.get("/health").status_code == 200
            lat.append(time.perf_counter() - t0)
            if not ok:
                errors.append("health not 200")
        except httpx.HTTPError as e:
            errors.append(type(e).__name__)
        import select
        if select.select([sys.stdin], [], [], 0.05)[0]:
            break
print(json.dumps({"lat": lat, "errors": errors}))
"""


def start_prober(url: str) -> subprocess.Popen:
    """/health every 50 ms from its own process, so that this process's own load (300 attacker
    sockets, 64 streams) is not in the measurement; stopped by closing its stdin."""
    return subprocess.Popen([sys.executable, "-c", PROBE, url], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


async def under_attack(url: str, key: str, model: str, prompts: list[str], streams: int, max_tokens: int,
                       stalled: int, seconds: float) -> tuple[list[Result], float, dict]:
    host, port = url.removeprefix("http://").split(":")
    stats = {"open": 0, "peak": 0, "closed_by": {}, "connect_errors": {}}
    stop = asyncio.Event()
    attackers = [asyncio.create_task(stall_one(host, int(port), stop, stats)) for _ in range(stalled)]
    await asyncio.sleep(2.0)  # the stalled connections are in place before the real clients come
    prober = start_prober(url)
    try:
        # Rounds of the streaming workload until the attack has run `seconds`, so that the
        # server's header deadline (10 s) passes at least once while the clients stream.
        results, wall = [], 0.0
        while wall < seconds:
            more, took = await drive(url, key, model, prompts, streams, max_tokens)
            results += more
            wall += took
    finally:
        probed = json.loads(prober.communicate(input="stop\n", timeout=30)[0])
        stop.set()
        await asyncio.gather(*attackers, return_exceptions=True)
    health, health_errors = probed["lat"], probed["errors"]
    stats.update(health_p50=pct(health, 50), health_p99=pct(health, 99), health_max=max(health, default=0),
                 health_probes=len(health), health_errors=health_errors[:3], health_error_count=len(health_errors))
    return results, wall, stats


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
    ap.add_argument("--phases", default="batched,one,int8,stall",
                    help="which phases to run, comma-separated: batched, one, int8, stall")
    ap.add_argument("--stalled", type=int, default=300, help="stalled connections in the stall phase")
    ap.add_argument("--stall-seconds", type=float, default=25.0, help="how long the stall phase streams")
    args = ap.parse_args()

    sys.path.insert(0, str(REPO / "src"))
    from soberan.serve.keys import create_key, keys_path
    from soberan.offline import go_offline
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

    phases = set(args.phases.split(","))
    if args.no_int8:
        phases.discard("int8")
    modes = [m for m, p in [(Mode("batched", args.max_batch), "batched"), (Mode("one-at-a-time", 1), "one"),
                            (Mode("batched int8", args.max_batch, "int8"), "int8"),
                            (Mode(f"batched, {args.stalled} stalled connections", args.max_batch), "stall")]
             if p in phases]
    attack: dict | None = None
    for mode in modes:
        proc, url = start_server(ws.root, model, mode, args.threads)
        try:
            import httpx

            model_id = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).json()["data"][0]["id"]
            if "stalled" in mode.name:
                mode.results, mode.wall, attack = asyncio.run(under_attack(
                    url, key, model_id, prompts, args.streams, args.max_tokens, args.stalled, args.stall_seconds))
            else:
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
    if attack is not None:
        out["stall"] = attack
        print(f"\nunder attack: {args.stalled} stalled connections from 127.0.0.2 (peak held open "
              f"{attack['peak']}, closed by the server: {attack['closed_by']}, connect errors: "
              f"{attack['connect_errors'] or 0}); /health p50 {1000 * attack['health_p50']:.0f} ms, "
              f"p99 {1000 * attack['health_p99']:.0f} ms, max {1000 * attack['health_max']:.0f} ms over "
              f"{attack['health_probes']} probes, {attack['health_error_count']} failed")
    by = {r["mode"]: r for r in rows}
    if "int8" in phases and {"batched", "batched int8"} <= set(by):
        fp32, int8, nbytes = bpb_cost(model, args.lang)
        speed = by["batched int8"]["tok_s"] / by["batched"]["tok_s"] if by["batched"]["tok_s"] else float("nan")
        out["bpb"] = {"fp32": fp32, "int8": int8, "bytes": nbytes}
        print(f"\nint8: bits/byte {int8:.5f} vs fp32 {fp32:.5f} ({int8 - fp32:+.5f}, "
              f"{100 * (int8 - fp32) / fp32:+.2f}%) on {nbytes} bytes of held-out {args.lang} text; "
              f"batched throughput x{speed:.2f} of fp32")
    speedup = (by["batched"]["tok_s"] / by["one-at-a-time"]["tok_s"]
               if {"batched", "one-at-a-time"} <= set(by) and by["one-at-a-time"]["tok_s"] else float("nan"))
    errors = sum(r["errors"] for r in rows)
    if args.json:
        args.json.write_text(json.dumps({**out, "batching_speedup": speedup, "errors": errors}, indent=1))
    print(f"batching_speedup: {speedup:.2f} errors: {errors}")


if __name__ == "__main__":
    main()
