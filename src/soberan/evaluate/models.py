"""The models an evaluation scores: where they are, what they hash to, what they were trained on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from soberan.config import ConfigError
from soberan.documents import tree_sha256


@dataclass(frozen=True)
class ModelRef:
    label: str  # its role when that names it alone ("base", "adapted"), else its path in the workspace
    path: Path
    sha256: str  # tree hash of the checkpoint folder, recomputed now
    record: dict | None  # its artifact record in the ledger, when it has one
    role: str | None = None  # "base" (a base_model artifact), "adapted" (trained from one), "model"


def base_model_record(ws) -> dict | None:
    """The newest base_model artifact of the workspace (a pretrained model imported into it, its
    name and license in `meta`), whatever stage recorded it; None for a model trained from scratch."""
    recs = [r for r in ws.ledger.artifacts() if r["kind"] == "base_model"]
    return recs[-1] if recs else None


def _role(ws, rec: dict | None, arts: dict[str, dict]) -> str | None:
    """base: a base_model artifact; adapted: a trained model with a base_model up its inputs (or
    a base model named in its meta); model: any other trained model."""
    if rec is None:
        return None
    if rec["kind"] == "base_model":
        return "base"
    if rec["kind"] != "model":
        return None
    seen, frontier = set(), list(rec.get("inputs", []))
    while frontier:
        h = frontier.pop()
        if h in seen or h not in arts:
            continue
        seen.add(h)
        if arts[h]["kind"] == "base_model":
            return "adapted"
        frontier += arts[h].get("inputs", [])
    return "adapted" if (rec.get("meta") or {}).get("base_model") else "model"


def resolve_models(ws, given: list[str | Path]) -> list[ModelRef]:
    """The named model folders; by default the base model (when the ledger has a base_model
    artifact) followed by the train stage's latest model, so base and adapted are compared.
    Each must be a Hugging Face checkpoint folder (config.json); a name is a path, absolute or
    relative to the workspace. A model is labelled by its role ("base", "adapted") when no other
    model of the run has that role, else by its path."""
    if not given:
        rec = ws.ledger.latest_artifact("train", "model", role="main")
        if rec is None:
            raise FileNotFoundError("no model to evaluate: the ledger has no train/model artifact "
                                    "(run `soberan train`, or name model folders with --compare)")
        base = base_model_record(ws)
        given = ([base["path"]] if base and (ws.root / base["path"] / "config.json").is_file() else []) + [rec["path"]]
    by_path = {r["path"]: r for r in ws.ledger.artifacts()}
    arts = {r["hash"]: r for r in ws.ledger.records("artifact")}
    found, seen = [], set()
    for g in given:
        p = Path(g).expanduser()
        p = (p if p.is_absolute() else ws.root / p).resolve()
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"{p}: not a model checkpoint folder (no config.json)")
        if p in seen:
            raise ConfigError(f"model {g} is named twice")
        seen.add(p)
        rel = ws.ledger.rel(p)
        rec = by_path.get(rel)
        found.append((rel, p, rec, _role(ws, rec, arts)))
    roles = [r for *_, r in found]
    return [ModelRef(label=role if role in ("base", "adapted") and roles.count(role) == 1 else rel,
                     path=p, sha256=tree_sha256(p), record=rec, role=role) for rel, p, rec, role in found]


def training_corpora(ws, models: list[ModelRef]) -> list[Path]:
    """The corpus folders these models were trained on, read from the ledger: for each model the
    nearest `corpus` artifacts up its chain of inputs (curated/ for the adapted model, raw/ for a
    baseline trained on raw text). A model the ledger does not know is checked against the
    workspace's latest curated (else collected) corpus; its base model's own pretraining data is
    not something this workspace can see."""
    arts = {r["hash"]: r for r in ws.ledger.records("artifact")}
    found: dict[str, Path] = {}
    for m in models:
        frontier = [m.record] if m.record else []
        hits: list[dict] = []
        seen: set[str] = set()
        while frontier and not hits:
            nxt = []
            for rec in frontier:
                for h in rec.get("inputs", []):
                    parent = arts.get(h)
                    if parent is None or h in seen:
                        continue
                    seen.add(h)
                    (hits if parent["kind"] == "corpus" else nxt).append(parent)
            frontier = nxt
        if not hits:
            latest = ws.ledger.latest_artifact("curate", "corpus") or ws.ledger.latest_artifact("collect", "corpus")
            hits = [latest] if latest else []
        for rec in hits:
            found.setdefault(rec["path"], ws.root / rec["path"])
    return [p for p in found.values() if p.exists()]


def heldout_files(ws, models: list[ModelRef]) -> dict[str, Path]:
    """Held-out text per language, `<lang>.parquet` (one row per unit: a document, or a paragraph
    of a long one): the first compared model's own held-out folder (the train stage writes
    `<out>/heldout/` beside `<out>/final/`; a base model has none), else the ledger's latest
    train/heldout artifact. Every compared model is scored on these same units."""
    candidates = [m.path.parent / "heldout" for m in models]
    rec = ws.ledger.latest_artifact("train", "heldout")
    if rec:
        candidates.append(ws.root / rec["path"])
    for c in candidates:
        if c.is_dir():
            files = {p.stem: p for p in sorted(c.glob("*.parquet")) if not p.name.startswith(".tmp-")}
            if files:
                return files
        elif c.is_file() and c.suffix == ".parquet":
            return {c.stem: c}
    return {}


def load_model(path: Path, device: str = "auto"):
    """Model and tokenizer from a local folder only (no hub lookup), in eval mode."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the stage shows its own progress

    from soberan import hf
    from soberan.device import pick_device
    from soberan.ui import console

    device = pick_device(device, console.print, "evaluating")  # no CUDA: say why, use the CPU
    try:
        tok = hf.load_tokenizer(path)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"{path}: no tokenizer saved with the model ({e})") from None
    model = hf.load_model(path, dtype="auto")
    if device == "cpu":
        model = model.float()  # bf16 matmuls are slow on most CPUs and lose precision in the sum
    return model.to(device).eval(), tok
