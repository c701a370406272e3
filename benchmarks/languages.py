"""Every seed language, one script: `soberan init` → build on real slices of ../shared/data for
Korean, Thai, Indonesian, Arabic and Vietnamese, as a lab in each country would start.

Per language:
1. `init --lang X --jurisdiction Y`, the corpus (and a trusted reference) as sources, a tiny model;
2. collect, then curate with the packs as shipped (FineWeb2's thresholds): what they keep;
3. `soberan calibrate` on the stored signals against the reference, its proposals written into
   soberan.toml (with the `short_social` preset for posts and reviews);
4. `soberan build`: curate again (decided from the stored signals, nothing segmented again),
   the tokenizer extended from Mistral v1, a few training steps, held-out bits per byte.

It prints, per language, the corpus's documents and characters in and kept (default packs and
calibrated), the top drop reasons, tokens per word before and after the tokenizer extension,
and held-out bits per byte, then a Markdown table for the README.

    nice -n 10 .venv/bin/python benchmarks/languages.py [--langs ko th id ar vi] [--out /tmp/langs]

The slices are small so the whole run takes about ten minutes on two shared cores; the model is
four steps of a one-layer transformer, so its bits per byte say that the pipeline runs end to end
on the language, not how good a model would be.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SOBERAN_SHARED_DATA", REPO.parent / "shared" / "data"))
sys.path.insert(0, str(REPO / "src"))

TINY = {
    "tokenizer": {"new_tokens": "2000", "min_frequency": "2"},
    "train": {"depth": "1", "seq_len": "64", "micro_batch": "2", "max_steps": "4", "warmup_steps": "1",
              "eval_every": "2", "log_every": "1", "checkpoint_every": "4", "tensorboard": "false"},
    "evaluate": {"sets": "[]", "bpb_max_docs": "50"},
}


def _lines(src: Path, dst: Path, n: int) -> Path:
    """`n` non-blank lines of a text file spread evenly over it (every k-th line: some sets are
    ordered, e.g. by length), as a file of the slice."""
    lines = [ln for ln in src.read_text(encoding="utf-8").splitlines() if ln.strip()]
    out = lines[::max(1, len(lines) // n)][:n]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(out) + "\n", encoding="utf-8")
    return dst


def slices(root: Path) -> dict[str, dict]:
    """Per language: jurisdiction, the corpus source and the reference source (TOML), preset."""
    d = root / "data"
    ntrex = DATA / "ntrex128"

    def ntrex_source(code: str, lang: str, jur: str) -> str:
        path = _lines(ntrex / f"newstest2019-ref.{code}.txt", d / lang / "ntrex.txt", 1997)
        return f'''
[[sources]]
name = "ntrex"
kind = "files"
path = "{path}"
split = "line"
license = "CC-BY-SA-4.0"
jurisdiction = "{jur}"
lang = "{lang}"
description = "NTREX-128 news sentences: the trusted reference for calibration"
'''

    ws_dir = d / "th"
    for name in ("neg", "neu", "pos", "q"):
        _lines(DATA / "wisesight_sentiment" / f"{name}.txt", ws_dir / "wisesight" / f"{name}.txt", 1500)
    id_dir = d / "id"
    smsa = _lines(DATA / "indonlu" / "smsa_doc-sentiment-prosa" / "train_preprocess.tsv",
                  id_dir / "smsa.tsv", 5000)
    with zipfile.ZipFile(DATA / "saudinewsnet" / "dataset" / "2015-07-21.zip") as z:
        articles = json.loads(z.read("2015-07-21.json"))
    (d / "ar").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(d / "ar" / "2015-07-21.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("2015-07-21.json", json.dumps(articles[:1500], ensure_ascii=False))
    laws = sorted((DATA / "korean_laws").glob("laws-*.jsonl"))[0]
    ko_laws = _lines(laws, d / "ko" / "laws.jsonl", 40)
    return {
        "ko": {"jur": "KR", "corpus": "korean_laws", "reference": [], "preset": "", "source": f'''
[[sources]]
name = "korean_laws"
kind = "jsonl"
path = "{ko_laws}"
license = "LicenseRef-KR-Public-Domain"
jurisdiction = "KR"
lang = "ko"
fields = {{ text = "text", url = "url", title = "title", date = "promulgation_date" }}
'''},
        "th": {"jur": "TH", "corpus": "wisesight", "reference": ["ntrex"], "preset": "short_social",
               "source": f'''
[[sources]]
name = "wisesight"
kind = "files"
path = "{ws_dir / 'wisesight'}"
split = "line"
license = "CC0-1.0"
jurisdiction = "TH"
lang = "th"
''' + ntrex_source("tha", "th", "TH")},
        "id": {"jur": "ID", "corpus": "indonlu", "reference": ["ntrex"], "preset": "short_social",
               "source": f'''
[[sources]]
name = "indonlu"
kind = "csv"
path = "{smsa}"
header = false
columns = ["text", "label"]
license = "MIT"
jurisdiction = "ID"
lang = "id"
''' + ntrex_source("ind", "id", "ID")},
        # news articles are their own reference: NTREX's single sentences are not articles
        "ar": {"jur": "SA", "corpus": "saudinewsnet", "reference": [], "preset": "",
               "licenses": ["CC-BY-NC-SA-4.0"], "source": f'''
[[sources]]
name = "saudinewsnet"
kind = "jsonl"
path = "{d / 'ar'}"
license = "CC-BY-NC-SA-4.0"
jurisdiction = "SA"
lang = "ar"
fields = {{ text = "content", url = "url", title = "title", date = "date_extracted" }}
'''},
        "vi": {"jur": "VN", "corpus": "ntrex", "reference": [], "preset": "", "source": ntrex_source("vie", "vi", "VN")},
    }


def corpus_numbers(ws, source: str) -> dict:
    """Documents and characters of `source` collected and curated, and its top drop reasons."""
    import duckdb

    raw = ws.root / "raw"
    cur = ws.root / "curated"
    q = "SELECT count(*), coalesce(sum(length(text)), 0) FROM read_parquet('{}') WHERE source = ?"
    docs_in, chars_in = duckdb.execute(q.format(f"{raw}/**/*.parquet"), [source]).fetchone()
    docs_out, chars_out = duckdb.execute(q.format(f"{cur}/part-*.parquet"), [source]).fetchone()
    stats = json.loads((cur / "stats.json").read_text())
    drops: dict[str, int] = {}
    for s in stats["steps"]:
        by = s.get("by_source", {}).get(source, {})
        for rule, n in by.get("dropped_by_rule", {}).items():
            drops[f"{s['step']}:{rule}"] = drops.get(f"{s['step']}:{rule}", 0) + n
    top = sorted(drops.items(), key=lambda kv: -kv[1])[:3]
    return {"docs_in": docs_in, "chars_in": chars_in, "docs_out": docs_out, "chars_out": chars_out,
            "top_drops": top, "signals": stats.get("signals")}


def run_language(lang: str, spec: dict, root: Path) -> dict:
    from soberan.build import run as build
    from soberan.collect import run as collect
    from soberan.curate import run as curate
    from soberan.curate.calibrate import calibrate, toml_of
    from soberan.workspace import Workspace, init_workspace, set_keys

    t0 = time.monotonic()
    ws_root = root / f"ws-{lang}"
    shutil.rmtree(ws_root, ignore_errors=True)
    cfg = init_workspace(ws_root, lang=lang, jurisdiction=spec["jur"], name=f"soberan-{lang}")
    text = cfg.read_text()
    if spec.get("licenses"):
        text = text.replace("licenses = [", "licenses = [" + ", ".join(f'"{x}"' for x in spec["licenses"]) + ", ", 1)
    for section, keys in TINY.items():
        text = set_keys(text, section, keys)
    text = set_keys(text, "curate", {"workers": "2"})
    cfg.write_text(text + spec["source"])
    ws = Workspace.open(ws_root)
    collect(ws, show_progress=False)
    curate(ws)
    default = corpus_numbers(ws, spec["corpus"])

    if spec["preset"]:
        cfg.write_text(set_keys(cfg.read_text(), "curate.quality", {"preset": json.dumps(spec["preset"])})
                       if "[curate.quality]\n" in cfg.read_text()
                       else cfg.read_text() + f'\n[curate.quality]\npreset = "{spec["preset"]}"\n')
        ws = Workspace.open(ws_root)
    cals = calibrate(ws, spec["reference"], keep=0.9)
    snippet = toml_of(cals)
    if snippet:
        cfg.write_text(cfg.read_text() + "\n" + snippet)
    ws = Workspace.open(ws_root)
    build(ws)
    calibrated = corpus_numbers(ws, spec["corpus"])
    fert = json.loads((ws_root / "tokenizer" / "fertility.json").read_text())
    res = json.loads((ws_root / "eval" / "results.json").read_text())
    bpb = res["models"][0].get("bpb", {}).get(lang, {}).get("bpb")
    return {"lang": lang, "corpus": spec["corpus"], "reference": spec["reference"] or ["itself"],
            "preset": spec["preset"], "default": default, "calibrated": calibrated, "thresholds": snippet,
            "tokens_per_word_before": fert[fert["before"]][lang]["tokens_per_word"],
            "tokens_per_word_after": fert[fert["after"]][lang]["tokens_per_word"],
            "bpb": bpb, "seconds": round(time.monotonic() - t0, 1)}


def table(rows: list[dict]) -> str:
    out = ["| lang | corpus (reference) | docs in | chars in | kept, default packs (docs / chars) | "
           "kept, calibrated (docs / chars) | top drop reasons, calibrated | tokens/word before → after "
           "| held-out bpb | s |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d, c = r["default"], r["calibrated"]
        pct = lambda a, b: f"{a / b:.0%}" if b else "–"  # noqa: E731
        drops = ", ".join(f"{k} {n}" for k, n in c["top_drops"]) or "none"
        ref = ", ".join(r["reference"]) + (f"; preset {r['preset']}" if r["preset"] else "")
        out.append(f"| {r['lang']} | {r['corpus']} ({ref}) | {d['docs_in']:,} | {d['chars_in']:,} | "
                   f"{pct(d['docs_out'], d['docs_in'])} / {pct(d['chars_out'], d['chars_in'])} | "
                   f"{pct(c['docs_out'], c['docs_in'])} / {pct(c['chars_out'], c['chars_in'])} | {drops} | "
                   f"{r['tokens_per_word_before']:.2f} → {r['tokens_per_word_after']:.2f} | "
                   f"{r['bpb']:.2f} | {r['seconds']:.0f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--langs", nargs="+", default=["ko", "th", "id", "ar", "vi"])
    ap.add_argument("--out", type=Path, default=Path("/tmp/soberan-languages"))
    args = ap.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA}: the shared data is not here")
    args.out.mkdir(parents=True, exist_ok=True)
    specs = slices(args.out)
    rows = []
    for lang in args.langs:
        r = run_language(lang, specs[lang], args.out)
        rows.append(r)
        print(json.dumps(r, ensure_ascii=False), flush=True)
    print(table(rows))
    (args.out / "languages.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
