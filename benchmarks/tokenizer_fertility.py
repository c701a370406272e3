"""Tokens per character, per language, for Mistral v1, Tekken, Mistral v1 extended by soberan on
Korean, and a byte-level BPE soberan trained from scratch.

Measured on NTREX-128 (the same 1,997 news sentences in English, Korean, Thai, Vietnamese,
Indonesian, Malay, Filipino, Arabic, ...) and FLORES-200 devtest (English, Indonesian, Thai,
Vietnamese, Filipino) from /work/shared/data. The extension and the trained tokenizer learn only
from Korean text that soberan itself collected and curated, in a workspace this script builds:
`korean_laws` (325 statutes), `nsmc` (150k movie reviews), `korean_hate_speech` (labeled and test
comments) and `korean_english_news` (Korean and North Korean news sentences, and their English
side for the trained tokenizer); never from NTREX or FLORES.

The reference implementations check the conversions: Mistral v1 ids must equal
`sentencepiece`'s and Tekken ids mistral-common's on every NTREX sentence.

    .venv/bin/python benchmarks/tokenizer_fertility.py [--new-tokens 4000 8000 16000] [--vocab-size 32000] [--reuse]

Goal (issue 4): the Korean extension (the last budget given) needs at most half of Mistral v1's tokens on Korean while
English tokens per character change by at most 1%. The last line reads
`ko_tokens_extended_over_base: <ratio> en_tokens_change_pct: <percent>`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SOBERAN_SHARED_DATA", REPO.parent / "shared" / "data"))
NTREX = {"en": "newstest2019-src.eng.txt", "ko": "newstest2019-ref.kor.txt", "th": "newstest2019-ref.tha.txt",
         "vi": "newstest2019-ref.vie.txt", "id": "newstest2019-ref.ind.txt", "ms": "newstest2019-ref.msa.txt",
         "tl": "newstest2019-ref.fil.txt", "ar": "newstest2019-ref.arb.txt", "ja": "newstest2019-ref.jpn.txt",
         "zh": "newstest2019-ref.zho-CN.txt"}
FLORES = {"id": "en_to_ind_Latn.jsonl", "th": "en_to_tha_Thai.jsonl", "vi": "en_to_vie_Latn.jsonl",
          "tl": "en_to_tgl_Latn.jsonl"}

SOURCES = """
[[sources]]
name = "korean_laws"
kind = "jsonl"
path = "{d}/korean_laws"
license = "LicenseRef-KR-Public-Domain"
jurisdiction = "KR"
lang = "ko"
fields = {{ text = "text", id = "id", url = "url", title = "title" }}

[[sources]]
name = "nsmc"
kind = "csv"
path = "{d}/nsmc"
include = ["ratings_train.txt"]
delimiter = "\\t"
license = "CC0-1.0"
jurisdiction = "KR"
lang = "ko"
fields = {{ text = "document", id = "id" }}

[[sources]]
name = "korean_hate_speech"
kind = "csv"
path = "{d}/korean_hate_speech"
include = ["labeled/*.tsv", "test.no_label.tsv"]
license = "CC-BY-SA-4.0"
jurisdiction = "KR"
lang = "ko"
fields = {{ text = "comments" }}

[[sources]]
name = "korean_english_news"
kind = "files"
path = "{d}/korean_english_news"
include = ["*.ko", "*.nk", "*.en"]
license = "CC-BY-SA-3.0"
jurisdiction = "KR"
description = "Korean, North Korean and English news sentences, one file per split"
"""


def parallel_sets() -> dict[str, dict[str, list[str]]]:
    """{benchmark: {lang: sentences}}; FLORES when present."""
    out = {"ntrex": {}}
    for lang, name in NTREX.items():
        p = DATA / "ntrex128" / name
        if p.exists():
            out["ntrex"][lang] = p.read_text(encoding="utf-8").splitlines()
    if (DATA / "flores200_sea").is_dir():
        flores: dict[str, list[str]] = {}
        for lang, name in FLORES.items():
            rows = [json.loads(x) for x in (DATA / "flores200_sea" / name).read_text(encoding="utf-8").splitlines()]
            flores[lang] = [r["label"] for r in rows]
            if lang == "id":
                flores["en"] = [r["prompts"][0]["text"] for r in rows]
        out["flores"] = flores
    return out


def build_workspace(root: Path) -> tuple[object, str]:
    """Collect and curate the Korean sources with soberan's own stages."""
    from soberan.workspace import Workspace, init_workspace

    shutil.rmtree(root, ignore_errors=True)
    init_workspace(root, lang="ko", jurisdiction="KR", name="fertility-bench")
    cfg = root / "soberan.toml"
    text = cfg.read_text().replace('languages = ["ko"]', 'languages = ["ko", "en"]', 1)
    cfg.write_text(text + SOURCES.format(d=DATA.as_posix()))
    ws = Workspace.open(root)
    import soberan.collect
    import soberan.curate

    t = time.monotonic()
    c = soberan.collect.run(ws)
    print(f"collect: {c}", file=sys.stderr)
    s = soberan.curate.run(ws)
    how = (f"collected and curated by soberan ({s.input_docs:,} → {s.output_docs:,} documents, "
           f"{time.monotonic() - t:.0f}s)")
    return ws, how


def set_tokenizer(ws_root: Path, **settings) -> None:
    """Edit the [tokenizer] section of the benchmark workspace's config."""
    import re

    cfg = ws_root / "soberan.toml"
    head, sep, section = cfg.read_text().partition("\n[tokenizer]\n")
    for key, value in settings.items():
        section = re.sub(rf"^#? ?{key} = .*$", f"{key} = {json.dumps(value)}", section, count=1, flags=re.M)
    cfg.write_text(head + sep + section)


def stage(ws_root: Path, keep: Path, **settings):
    """Run `soberan tokenizer` with these [tokenizer] settings; copy tokenizer/final/ to `keep`."""
    from soberan.tokenizer import run
    from soberan.workspace import Workspace

    set_tokenizer(ws_root, **settings)
    t = time.monotonic()
    summary = run(Workspace.open(ws_root), force=True)
    seconds = time.monotonic() - t
    shutil.rmtree(keep, ignore_errors=True)
    shutil.copytree(summary.path, keep)
    return summary, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--new-tokens", type=int, nargs="+", default=[4000, 8000, 16000],
                    help="extension budgets to compare; the goal line is about the last one")
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--work", type=Path, default=REPO / "benchmarks" / "out" / "tokenizer_fertility")
    ap.add_argument("--reuse", action="store_true", help="reuse a workspace this script curated before")
    args = ap.parse_args()
    if not (DATA / "ntrex128").is_dir():
        sys.exit(f"{DATA}/ntrex128 not found (set SOBERAN_SHARED_DATA)")

    import sentencepiece as spm
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    from soberan import hf as formats
    from soberan.tokenizer import fertility

    sets = parallel_sets()
    work = args.work
    if args.reuse and (work / "ws" / "curated").is_dir():
        from soberan.workspace import Workspace

        ws = Workspace.open(work / "ws")
        how = "collected and curated by soberan (reused workspace)"
    else:
        ws, how = build_workspace(work / "ws")
    import duckdb

    kept = duckdb.sql(f"SELECT source, lang, count(*) AS docs, sum(length(text)) AS chars FROM read_parquet("
                      f"'{(ws.root / 'curated').as_posix()}/**/*.parquet') GROUP BY ALL ORDER BY ALL").fetchall()

    # Extensions: Mistral v1 continued on the Korean documents only, at each budget; from
    # scratch: byte-level BPE on the Korean documents and the English side of the news.
    toks = {"mistral-v1": formats.load("mistral-v1"), "tekken": formats.load("tekken")}
    runs = {}
    for n in args.new_tokens:
        name = f"mistral-v1+{n // 1000}k ko"
        runs[name] = stage(ws.root, work / f"extended-{n}", mode="extend", base="mistral-v1", new_tokens=n,
                           languages=["ko"], min_frequency=3)
        toks[name] = formats.load(work / f"extended-{n}")
    ext_name = name
    trained, t_train = stage(ws.root, work / "trained", mode="replace", vocab_size=args.vocab_size,
                             languages=["ko", "en"])
    toks[f"soberan BPE {args.vocab_size // 1000}k"] = formats.load(work / "trained")
    results = {}

    # The conversions are exact: same ids as the reference implementations.
    sp = spm.SentencePieceProcessor(model_file=str(formats.mistral_common_file("mistral-v1")))
    tek = Tekkenizer.from_file(formats.mistral_common_file("tekken"))
    agree = {"mistral-v1": 0, "tekken": 0}
    total = 0
    for lines in sets["ntrex"].values():
        total += len(lines)
        a = toks["mistral-v1"].tokenizer.encode_batch(lines, add_special_tokens=False)
        b = toks["tekken"].tokenizer.encode_batch(lines, add_special_tokens=False)
        agree["mistral-v1"] += sum(e.ids == r for e, r in zip(a, sp.encode(lines)))
        agree["tekken"] += sum(e.ids == tek.encode(x, bos=False, eos=False) for e, x in zip(b, lines))

    for bench, by_lang in sets.items():
        evs = [fertility.EvalSet(lang, lines, sum(map(len, lines)), sum(len(x.encode()) for x in lines), None)
               for lang, lines in sorted(by_lang.items())]
        results[bench] = {name: fertility.measure(t, evs) for name, t in toks.items()}
        fertility.write_json(results[bench], work / f"{bench}.json")
        fertility.chart(results[bench], work / f"{bench}.png")

    names = list(toks)
    print(f"\nTraining text: {how}; kept after curation (source, lang, docs, chars): {kept}")
    for name, (s, secs) in runs.items():
        print(f"{name}: learned {s.learned_tokens:,} tokens in {secs:.0f}s (unreachable: {s.unreachable})")
    print(f"BPE trained on {trained.train_docs:,} documents ({trained.train_chars:,} chars) in {t_train:.0f}s")
    print(f"reference agreement on {total:,} NTREX sentences: mistral-v1 vs sentencepiece "
          f"{agree['mistral-v1']}/{total}, tekken vs mistral-common {agree['tekken']}/{total}\n")
    for bench, rep in results.items():
        print(f"### {bench}: tokens per character (round trip exact on all: "
              f"{all(f.roundtrip_exact == 1.0 for r in rep.values() for f in r.values())})\n")
        print("| lang | " + " | ".join(names) + " |")
        print("|---|" + "---:|" * len(names))
        for lang in sorted(next(iter(rep.values()))):
            print(f"| {lang} | " + " | ".join(f"{rep[n][lang].tokens_per_char:.3f}" for n in names) + " |")
        print()
    nt = results["ntrex"]
    base, extd = nt["mistral-v1"], nt[ext_name]
    ratio = extd["ko"].tokens / base["ko"].tokens
    en_pct = 100 * (extd["en"].tokens_per_char - base["en"].tokens_per_char) / base["en"].tokens_per_char
    ok = ratio <= 0.5 and abs(en_pct) <= 1.0
    print(f"goal (ko ≤ 0.5× base, |en change| ≤ 1%): {'met' if ok else 'NOT met'}")
    print(f"ko_tokens_extended_over_base: {ratio:.3f} en_tokens_change_pct: {en_pct:+.2f}")


if __name__ == "__main__":
    main()
