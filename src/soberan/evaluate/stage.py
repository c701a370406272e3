"""The evaluate stage's work, called through `soberan.evaluate.run` (see the package docstring)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soberan.config import ConfigError
from soberan.documents import file_sha256, write_text_atomic
from soberan.evaluate import CONFIG_SECTIONS, EvalSummary
from soberan.evaluate.config import BenchmarkSpec
from soberan.evaluate.specs import (Item, Rejected, continuations, fewshot_examples, fewshot_prefix,
                                    load_items_checked, render, resolve_names, spec_files, with_paths)

MAX_REJECTIONS_SHOWN = 20


@dataclass
class SetData:
    spec: BenchmarkSpec
    items: list[Item]
    rejected: list[Rejected]
    shots: list[Item]
    k: int
    files: dict[str, str]  # path -> sha256
    note: str = ""
    flags: dict[str, str] = field(default_factory=dict)  # item id -> training doc id containing it


def _fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _prepare_sets(ws, names: list[str], limit: int | None) -> list[SetData]:
    s = ws.config.evaluate
    out = []
    for spec in resolve_names(ws.config, names):
        spec = with_paths(ws.config, spec)
        items, rejected = load_items_checked(spec, limit=limit)
        if not items:
            reason = rejected[0].reason if rejected else "the file has no rows"
            raise ConfigError(f"benchmark {spec.name}: no item to score ({reason})")
        k, note = spec.num_fewshot, ""
        if s.num_fewshot is not None:
            if spec.fewshot_path or s.num_fewshot == 0:
                k = s.num_fewshot
            else:
                k, note = 0, f"{s.num_fewshot}-shot asked; this set has no few-shot split, scored 0-shot"
        shots = fewshot_examples(spec, k, s.seed)
        files = {f.as_posix(): file_sha256(f) for p in (spec.path, spec.fewshot_path) if p
                 for f in spec_files(p)}
        out.append(SetData(spec, items, rejected, shots, k, files, note))
    return out


def _contamination(ws, sets: list[SetData], models) -> dict:
    """Flag items whose text occurs in the models' training corpora; returns the run's record."""
    from soberan.evaluate.contamination import BenchIndex, scan
    from soberan.evaluate.models import training_corpora
    from soberan.ui import progress

    s = ws.config.evaluate
    corpora = training_corpora(ws, models)
    info = {"method": f"{s.contamination_chars}-character normalized windows (GPT-4 report, App. C)",
            "window_chars": s.contamination_chars,
            "corpora": [ws.ledger.rel(c) for c in corpora]}
    if not s.contamination or not corpora:
        info["checked"] = False
        info["why_not"] = "disabled in config" if not s.contamination else "no training corpus in the ledger"
        return info
    index = BenchIndex(s.contamination_chars)
    for sd in sets:
        for it in sd.items:
            index.add((sd.spec.name, it.id), it.texts)
    import pyarrow.parquet as pq

    from soberan.documents import shard_paths

    total = sum(pq.ParquetFile(p).metadata.num_rows for c in corpora for p in shard_paths(c))
    with progress(transient=True) as prog:
        task = prog.add_task("contamination check", total=total)
        flags = scan(index, corpora, on_batch=lambda n: prog.advance(task, n))
    for sd in sets:
        sd.flags = {iid: f.doc_id for (name, iid), f in flags.items() if name == sd.spec.name}
    info["checked"] = True
    info["documents"] = total
    return info


def _score_set(model, tok, sd: SetData, s, prog) -> dict:
    """Score one set with one model; returns metrics and per-item arrays."""
    from soberan.evaluate.scoring import generate, loglikelihoods, macro_f1, normalize_answer

    spec = sd.spec
    prefix = fewshot_prefix(spec, sd.shots)
    prompts = [prefix + render(spec, it) for it in sd.items]
    contaminated = np.array([it.id in sd.flags for it in sd.items])
    rows: dict[str, list] = {"id": [it.id for it in sd.items], "contaminated": contaminated.tolist(),
                             "found_in": [sd.flags.get(it.id) for it in sd.items]}
    if spec.type == "mc":
        pairs, owner = [], []
        for i, (it, p) in enumerate(zip(sd.items, prompts)):
            for c in continuations(spec, it):
                pairs.append((p, c))
                owner.append(i)
        task = prog.add_task(f"{spec.name}", total=len(pairs))
        lls = loglikelihoods(model, tok, pairs, batch_size=s.batch_size, max_length=s.max_length,
                             on_batch=lambda n: prog.advance(task, n))
        per_item: list[list[float]] = [[] for _ in sd.items]
        for o, ll in zip(owner, lls):
            per_item[o].append(ll.logprob)
        gold = np.array([it.answer for it in sd.items])
        pred = np.array([int(np.argmax(v)) for v in per_item])
        lens = [[max(len(c) - len(spec.target_delimiter), 1) for c in continuations(spec, it)] for it in sd.items]
        pred_norm = np.array([int(np.argmax(np.array(v) / np.array(n))) for v, n in zip(per_item, lens)])
        correct, correct_norm = pred == gold, pred_norm == gold
        rows.update(gold=gold.tolist(), pred=pred.tolist(), pred_norm=pred_norm.tolist(),
                    correct=correct.tolist(), correct_norm=correct_norm.tolist(), logliks=per_item)
        metrics = {"acc": float(correct.mean()), "acc_norm": float(correct_norm.mean()),
                   "f1": macro_f1(gold, pred)}
        if contaminated.any() and not contaminated.all():
            metrics["acc_clean"] = float(correct[~contaminated].mean())
    else:
        task = prog.add_task(f"{spec.name}", total=len(prompts))
        outs = generate(model, tok, prompts, stop=spec.stop, max_new_tokens=s.max_new_tokens,
                        batch_size=s.batch_size, max_length=s.max_length,
                        on_batch=lambda n: prog.advance(task, n))
        correct = np.array([normalize_answer(o) == normalize_answer(it.target) for o, it in zip(outs, sd.items)])
        rows.update(output=outs, correct=correct.tolist())
        metrics = {"exact_match": float(correct.mean())}
        if contaminated.any() and not contaminated.all():
            metrics["exact_match_clean"] = float(correct[~contaminated].mean())
    metrics.update(n=len(sd.items), contaminated=int(contaminated.sum()))
    return {"metrics": metrics, "rows": rows}


def _main_metric(spec: BenchmarkSpec) -> list[str]:
    return ["acc", "acc_norm"] if spec.type == "mc" else ["exact_match"]


def _set_record(sd: SetData, s) -> dict:
    spec = sd.spec
    example = None
    if spec.redistribute:
        it = sd.items[0]
        example = {"prompt": fewshot_prefix(spec, sd.shots) + render(spec, it),
                   "continuations": continuations(spec, it) if spec.type == "mc" else None,
                   "gold": it.answer if spec.type == "mc" else it.target}
    return {
        "language": spec.language, "license": spec.license, "type": spec.type, "group": spec.group,
        "template": spec.template, "instruction": spec.instruction,
        "target_delimiter": spec.target_delimiter, "fewshot_delimiter": spec.fewshot_delimiter,
        "continuation": spec.continuation,
        "choices": list(spec.labels) if spec.labels else None,
        "rendered_example": example if example else "(not copied: the set's license forbids redistribution)",
        "num_fewshot": sd.k, "fewshot_ids": [x.id for x in sd.shots], "seed": s.seed,
        "limit": len(sd.items), "data_files": sd.files, "note": sd.note,
        "rejected": len(sd.rejected),
        "rejections": [{"row": r.row, "reason": r.reason} for r in sd.rejected[:MAX_REJECTIONS_SHOWN]],
        "contaminated": len(sd.flags), "contaminated_ids": sorted(sd.flags),
        "citation": spec.citation,
    }


def _write_json(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=1, default=float))


def evaluate(ws, *, models: list[str | Path] | None = None, sets: list[str] | None = None,
        limit: int | None = None, show: bool = True) -> EvalSummary:
    """See `soberan.evaluate.run`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from soberan.bpb import nll_and_bytes
    from soberan.documents import write_parquet_atomic
    from soberan.evaluate.compare import paired_bootstrap
    from soberan.evaluate.models import heldout_files, load_model, resolve_models
    from soberan.evaluate.report import print_tables
    from soberan.ui import console, progress

    s = ws.config.evaluate
    limit = limit if limit is not None else s.limit
    names = list(sets) if sets else list(s.sets)
    refs = resolve_models(ws, list(models) if models else list(s.compare))
    set_data = _prepare_sets(ws, names, limit) if names else []
    held = heldout_files(ws, refs[0]) if s.bpb else {}
    if not set_data and not held:
        raise ConfigError("evaluate: nothing to score (no `sets` in [evaluate], and no held-out text "
                          "from the train stage)")
    contamination = _contamination(ws, set_data, refs) if set_data else {"checked": False}

    out_dir = ws.stage_dir("evaluate")
    scores: dict[str, dict[str, dict]] = {}
    per_item: dict[tuple[str, str], np.ndarray] = {}  # (model, set/metric) -> per-item values
    bpb: dict[str, dict[str, dict]] = {}
    bpb_docs: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    reused = 0
    held_texts = {}
    for lang, p in held.items():
        texts = [t for t in pq.read_table(p, columns=["text"]).column("text").to_pylist() if t]
        held_texts[lang] = texts[:s.bpb_max_docs] if s.bpb_max_docs else texts

    for ref in refs:
        model = tok = None
        scores[ref.label] = {}
        with progress() as prog:
            for sd in set_data:
                fp = _fingerprint(ref.sha256, sd.spec.model_dump(), sd.files, len(sd.items), sd.k,
                                  [x.id for x in sd.shots], sorted(sd.flags), s.max_length, s.max_new_tokens)
                base = out_dir / "items" / ref.sha256[:16] / sd.spec.name
                meta_p, items_p = base.with_suffix(".json"), base.with_suffix(".parquet")
                old = json.loads(meta_p.read_text()) if meta_p.exists() and items_p.exists() else None
                if old and old.get("fingerprint") == fp:
                    metrics, rows = old["metrics"], pq.read_table(items_p).to_pydict()
                    reused += 1
                else:
                    if model is None:
                        model, tok = load_model(ref.path, s.device)
                    res = _score_set(model, tok, sd, s, prog)
                    metrics, rows = res["metrics"], res["rows"]
                    write_parquet_atomic(pa.table(rows), items_p)
                    _write_json(meta_p, {"fingerprint": fp, "metrics": metrics})
                scores[ref.label][sd.spec.name] = metrics
                for m in _main_metric(sd.spec):
                    key = {"acc": "correct", "acc_norm": "correct_norm", "exact_match": "correct"}[m]
                    per_item[(ref.label, f"{sd.spec.name}/{m}")] = np.array(rows[key], dtype=float)
            if held_texts:
                if model is None:
                    model, tok = load_model(ref.path, s.device)
                bpb[ref.label] = {}
                for lang, texts in held_texts.items():
                    task = prog.add_task(f"bits per byte ({lang})", total=len(texts))
                    nll, nb = [], []
                    for t in texts:  # one text at a time: the paired bootstrap needs each one's bpb
                        a, b = nll_and_bytes(model, tok, [t], max_length=512, batch_size=s.batch_size)
                        nll.append(a)
                        nb.append(b)
                        prog.advance(task)
                    nll_a, nb_a = np.array(nll), np.array(nb, dtype=float)
                    value = float(nll_a.sum() / (math.log(2) * nb_a.sum()))
                    bpb[ref.label][lang] = {"bpb": value, "docs": len(texts), "bytes": int(nb_a.sum())}
                    bpb_docs[(ref.label, lang)] = (nll_a / (math.log(2) * nb_a), nb_a)
        del model, tok

    comparisons = []
    base = refs[0].label
    for other in refs[1:]:
        for sd in set_data:
            for m in _main_metric(sd.spec):
                a = per_item[(base, f"{sd.spec.name}/{m}")]
                b = per_item[(other.label, f"{sd.spec.name}/{m}")]
                d = paired_bootstrap(a, b, n=s.bootstrap, seed=s.seed)
                comparisons.append({"set": sd.spec.name, "language": sd.spec.language, "metric": m,
                                    "reference": base, "model": other.label, "n": len(a),
                                    "reference_value": float(a.mean()), "value": float(b.mean()),
                                    "diff": d.value, "ci95": [d.lo, d.hi], "significant": d.significant,
                                    "higher_is_better": True})
        for lang in held_texts:
            (a, w), (b, _) = bpb_docs[(base, lang)], bpb_docs[(other.label, lang)]
            d = paired_bootstrap(a, b, n=s.bootstrap, seed=s.seed, weights=w)
            comparisons.append({"set": f"heldout_{lang}", "language": lang, "metric": "bpb",
                                "reference": base, "model": other.label, "n": len(a),
                                "reference_value": bpb[base][lang]["bpb"], "value": bpb[other.label][lang]["bpb"],
                                "diff": d.value, "ci95": [d.lo, d.hi], "significant": d.significant,
                                "higher_is_better": False})

    results = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(),
        "seed": s.seed, "limit": limit, "bootstrap": s.bootstrap, "max_length": s.max_length,
        "models": [{"label": r.label, "path": ws.ledger.rel(r.path), "sha256": r.sha256,
                    "artifact": r.record["hash"] if r.record else None,
                    "sets": scores[r.label], "bpb": bpb.get(r.label, {})} for r in refs],
        "sets": {sd.spec.name: _set_record(sd, s) for sd in set_data},
        "heldout": {lang: {"path": ws.ledger.rel(p), "sha256": file_sha256(p), "docs": len(held_texts[lang])}
                    for lang, p in held.items()},
        "contamination": contamination,
        "comparisons": comparisons,
    }
    results_path = out_dir / "results.json"
    _write_json(results_path, results)
    meta = {"models": [r.label for r in refs], "sets": [sd.spec.name for sd in set_data],
            "scores": {r.label: {k: {m: v.get(m) for m in ("acc", "acc_norm", "exact_match") if m in v}
                                 for k, v in scores[r.label].items()} for r in refs},
            "bpb": {r.label: {k: v["bpb"] for k, v in bpb.get(r.label, {}).items()} for r in refs},
            "contaminated": {sd.spec.name: len(sd.flags) for sd in set_data}}
    rec = ws.ledger.record_artifact(stage="evaluate", kind="results", path=results_path,
                                    inputs=[r.record["hash"] for r in refs if r.record],
                                    config_hash=ws.config.section_hash(*CONFIG_SECTIONS), meta=meta)
    if show:
        print_tables(console, results)
    return EvalSummary(results_path, [r.label for r in refs], [sd.spec.name for sd in set_data],
                       scores, {k: {l: v["bpb"] for l, v in d.items()} for k, d in bpb.items()},
                       comparisons, {sd.spec.name: len(sd.flags) for sd in set_data},
                       rec["hash"], reused)
