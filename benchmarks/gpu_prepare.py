"""Prepare, on the development machine, what `benchmarks/gpu_stages.sh` needs on the GPU box.

Everything lands in one ignored folder (default `.gpu/`), which travels with the tree:

    .gpu/wheels/   the wheels train, evaluate and serve need and the box's image lacks
                   (`gpu_box.CARRY`, the versions installed here, CPython 3.12 manylinux x86_64)
    .gpu/slice/    a Korean workspace already collected, curated, tokenized and packed by soberan:
                   korean_laws from ../shared/data (else the konlpy text), the Mistral v1 tokenizer
                   extended with Korean tokens, `model/data/tokens.bin` and the held-out split,
                   and a KoBEST slice under `eval-data/` for `soberan evaluate`

It prints the size of each part and the total with the tracked tree, against the 64 MiB that a
lent machine accepts, and exits 1 when the total is over.

    python benchmarks/gpu_prepare.py                  # wheels + slice from korean_laws
    python benchmarks/gpu_prepare.py --no-wheels --source konlpy --out /tmp/g   # tiny, offline
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SOBERAN_SHARED_DATA", REPO.parent / "shared" / "data"))
LIMIT_MIB = 64
KOBEST = ["BoolQ", "COPA", "HellaSwag", "SentiNeg", "WiC"]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "src"))

from gpu_box import CARRY  # noqa: E402


def download_wheels(dest: Path) -> list[Path]:
    """One wheel per carried distribution, the version installed here, for the box's Python."""
    pins = [f"{d}=={md.version(d)}" for d in CARRY]
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.glob("*.whl"))
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp",
           "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
           "--platform", "manylinux2014_x86_64", "-d", str(dest), *pins]
    subprocess.run(cmd, check=True)
    wanted = {_key(p) for p in pins}
    kept = []
    for w in sorted(set(dest.glob("*.whl")) | before):
        name, version = w.name.split("-")[:2]
        if (_norm(name), version) in wanted:
            kept.append(w)
        else:  # an older version from an earlier run: one version of each travels
            w.unlink()
    missing = wanted - {(_norm(w.name.split("-")[0]), w.name.split("-")[1]) for w in kept}
    if missing:
        raise SystemExit(f"no wheel for {sorted(missing)}")
    return kept


def _norm(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").lower()


def _key(pin: str) -> tuple[str, str]:
    name, version = pin.split("==")
    return _norm(name), version


def _soberan(*args: str) -> None:
    subprocess.run([sys.executable, "-c", "from soberan.cli import main; main()", *args], check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"})


def set_key(cfg: Path, section: str, key: str, value: str) -> None:
    """Set `key = value` at the top of `[section]` in soberan.toml, replacing an earlier value."""
    lines = cfg.read_text().splitlines()
    start = lines.index(f"[{section}]") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
    lines[start:end] = [f"{key} = {value}"] + [x for x in lines[start:end] if x.split(" = ")[0].strip() != key]
    cfg.write_text("\n".join(lines) + "\n")


def prepare_slice(out: Path, source: str, max_files: int, new_tokens: int, kobest_items: int) -> Path:
    """collect → curate → tokenizer → pack, each by soberan itself, into `out/ws`."""
    ws = out / "ws"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    laws = SHARED / "korean_laws"
    if source == "laws" and not laws.is_dir():
        print(f"{laws} not present: the slice is the konlpy text", file=sys.stderr)
        source = "konlpy"
    # Not `init --demo`: the demo adapts a base model, and this slice trains one from scratch.
    _soberan("init", str(ws), "--lang", "ko", "--jurisdiction", "KR", "--name", "gpu-slice")
    picked = out.parent / f".{out.name}-input"  # the collect input; raw/ holds it once collected
    shutil.rmtree(picked, ignore_errors=True)
    if source == "laws":
        picked.mkdir()
        for f in sorted(laws.glob("laws-*.jsonl"))[:max_files]:
            shutil.copy(f, picked / f.name)
        src = ('name = "laws"\nkind = "jsonl"\ndescription = "Korean statutes in force (law.go.kr)"\n')
    else:
        from soberan.workspace import konlpy_corpus_dir

        shutil.copytree(konlpy_corpus_dir(), picked)
        src = ('name = "konlpy"\nkind = "files"\ninclude = ["**/*.txt"]\n'
               'description = "Constitution of the Republic of Korea and National Assembly bills (konlpy wheel)"\n')
    # Public domain under Art. 7 of the Korean Copyright Act. Statutes repeat their formulae and
    # number their articles by design: as in the demo, edited institutional text skips the
    # web-page document filters.
    cfg = ws / "soberan.toml"
    name = src.split('"')[1]
    cfg.write_text(cfg.read_text() + f'\n[curate.quality]\nexempt_sources = ["{name}"]\n\n[[sources]]\n{src}'
                   f'path = "{picked}"\nlicense = "LicenseRef-KR-Public-Domain"\njurisdiction = "KR"\nlang = "ko"\n')
    set_key(cfg, "tokenizer", "new_tokens", str(new_tokens))
    _soberan("collect", "-w", str(ws))
    _soberan("curate", "-w", str(ws))
    _soberan("tokenizer", "run", "-w", str(ws))  # extend Mistral v1, as [tokenizer] says
    pack(ws)
    shutil.rmtree(picked, ignore_errors=True)
    shutil.rmtree(ws / "work", ignore_errors=True)  # curate's scratch space
    if kobest_items and (SHARED / "kobest" / "v1.0").is_dir():
        for task in KOBEST:
            for split in ("test", "train"):  # train: the few-shot examples
                tsv = SHARED / "kobest" / "v1.0" / task / f"{split}.tsv"
                dst = ws / "eval-data" / "kobest" / "v1.0" / task / tsv.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                with open(tsv, encoding="utf-8") as f:
                    dst.write_text("".join(line for _, line in zip(range(kobest_items + 1), f)), encoding="utf-8")
        set_key(cfg, "evaluate", "shared_data", '"eval-data"')
        set_key(cfg, "evaluate", "sets", '["kobest"]')
    return ws


def pack(ws_root: Path) -> None:
    """The train stage's own packing (tokens.bin, docs.parquet, held-out split, their ledger
    records), without training: the GPU run finds the key unchanged and reuses it."""
    from soberan.hf import load_tokenizer
    from soberan.train.pretrain import _resolve, prepare_data
    from soberan.train.session import accelerator_for
    from soberan.ui import console
    from soberan.workspace import Workspace

    ws = Workspace.open(ws_root)
    acc = accelerator_for("fp32")
    inp = _resolve(ws, acc, corpus_dir=None, tokenizer_dir=None, output_dir=None, base_model=None, role=None)
    inp.out.mkdir(parents=True, exist_ok=True)
    prepare_data(ws, acc, inp, load_tokenizer(inp.tok_dir), console.print, None)


def size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def tree_size() -> int:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return sum((REPO / f).stat().st_size for f in files.decode().split("\0") if f and (REPO / f).is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / ".gpu")
    ap.add_argument("--source", choices=["laws", "konlpy"], default="laws")
    ap.add_argument("--max-files", type=int, default=6, help="korean_laws files (of 6) to take")
    ap.add_argument("--new-tokens", type=int, default=8000, help="Korean tokens added to Mistral v1")
    ap.add_argument("--kobest-items", type=int, default=200, help="items per KoBEST task (0: none)")
    ap.add_argument("--no-wheels", action="store_true")
    args = ap.parse_args()

    parts = {}
    if not args.no_wheels:
        wheels = download_wheels(args.out / "wheels")
        for w in wheels:
            print(f"  {w.name}  {w.stat().st_size / 2**20:.2f} MiB")
        parts["wheels"] = size(args.out / "wheels")
    ws = prepare_slice(args.out / "slice", args.source, args.max_files, args.new_tokens, args.kobest_items)
    for sub in ("raw", "curated", "tokenizer", "model/data", "model/heldout", "ledger", "eval-data"):
        if (ws / sub).exists():
            print(f"  slice {sub}/  {size(ws / sub) / 2**20:.2f} MiB")
    parts["slice"] = size(args.out / "slice")
    parts["tracked tree"] = tree_size()
    total = sum(parts.values())
    print(" + ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in parts.items())
          + f" = total {total / 2**20:.1f} MiB (limit {LIMIT_MIB} MiB)")
    if total > LIMIT_MIB * 2**20:
        raise SystemExit(f"over the {LIMIT_MIB} MiB a lent machine accepts: take fewer --max-files")


if __name__ == "__main__":
    main()
