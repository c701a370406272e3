"""The evaluate stage's work, called through `soberan.evaluate.run` (see the package docstring)."""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soberan.benchmarks import Item, Rejected, load_items_checked, resolve_names, spec_files, with_paths
from soberan.common import json_sha256, read_json, write_json
from soberan.config import ConfigError
from soberan.documents import file_sha256
from soberan.evaluate import CONFIG_SECTIONS, EvalSummary
from soberan.evaluate.config import BenchmarkSpec
from soberan.evaluate.specs import continuations, fewshot_examples, fewshot_prefix, render

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
    return json_sha256(parts, default=str)


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
    write_json(path, obj, ensure_ascii=False, indent=1, default=float)  # numpy numbers as floats


def _cached(base: Path, fp: str, compute) -> tuple[dict, dict, bool]:
    """(metrics, per-row columns, reused) of one (model, unit of work): read back from
    `base`.json/.parquet when its fingerprint matches, else computed and written (so a killed
    run resumes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from soberan.documents import write_parquet_atomic

    meta_p, items_p = base.with_suffix(".json"), base.with_suffix(".parquet")
    old = read_json(meta_p, default=None) if items_p.exists() else None
    if old and old.get("fingerprint") == fp:
        return old["metrics"], pq.read_table(items_p).to_pydict(), True
    metrics, rows = compute()
    write_parquet_atomic(pa.table(rows), items_p)
    _write_json(meta_p, {"fingerprint": fp, "metrics": metrics})
    return metrics, rows, False


def _answer_stats(sd: SetData, metrics: dict, rows: dict, s) -> tuple[dict, dict]:
    """The metrics with each accuracy's 95% Wilson interval and, for multiple choice, the
    degenerate-answer flags; and the set's chance and majority-class levels (the same for every
    model). Derived from the per-item rows on every run, so results read back from an earlier
    run get them too."""
    from soberan.evaluate.compare import degenerate, levels, wilson

    metrics = dict(metrics)
    n = len(rows["correct"])
    for m, key in (("acc", "correct"), ("acc_norm", "correct_norm"), ("exact_match", "correct")):
        if m in metrics:
            metrics[f"{m}_ci95"] = list(wilson(int(np.sum(rows[key])), n))
    lv = {}
    if sd.spec.type == "mc":
        labels = list(sd.spec.labels) or None
        n_choices = np.array([len(x) for x in rows["logliks"]])
        flags = {m: degenerate(np.array(rows[k]), n_choices, labels, share=s.degenerate_share)
                 for m, k in (("acc", "pred"), ("acc_norm", "pred_norm"))}
        metrics["degenerate"] = {m: f for m, f in flags.items() if f}
        g = levels(np.array(rows["gold"]), n_choices, labels)
        lv = {"chance": g.chance, "majority": g.majority, "majority_answer": g.majority_answer}
    return metrics, lv


def _heldout_texts(held: dict[str, Path], s) -> dict[str, list[str]]:
    import pyarrow.parquet as pq

    out = {}
    for lang, p in held.items():
        texts = [t for t in pq.read_table(p, columns=["text"]).column("text").to_pylist() if t]
        out[lang] = texts[:s.bpb_max_units] if s.bpb_max_units else texts
    return out


def _score_heldout(model, tok, texts: list[str], s) -> tuple[dict, dict]:
    """Bits per byte of one language's held-out units, their 95% CI (a bootstrap over units,
    weighted by bytes) when there are enough units, and the tokenizer's fertility on them."""
    from soberan.bpb import context_length, nll_per_text

    nll, nb = nll_per_text(model, tok, texts, batch_size=s.batch_size)
    n_tokens = sum(len(x) for x in tok(texts, add_special_tokens=False)["input_ids"])
    entry = {"bpb": float(nll.sum() / (math.log(2) * nb.sum())), "units": len(texts), "bytes": int(nb.sum()),
             "window": context_length(model), "tokens": n_tokens,
             "tokens_per_char": n_tokens / max(sum(len(t) for t in texts), 1)}
    return entry, {"nll": nll.tolist(), "bytes": nb.tolist()}


def _bpb_interval(entry: dict, rows: dict, s) -> dict:
    from soberan.evaluate.compare import bootstrap_ci

    entry = dict(entry)
    if entry["units"] < s.min_heldout_units:
        entry["ci95"] = None
        entry["note"] = f"too few held-out units: {entry['units']} < {s.min_heldout_units}"
    else:
        nll, nb = np.array(rows["nll"]), np.array(rows["bytes"], dtype=float)
        entry["ci95"] = list(bootstrap_ci(nll / (math.log(2) * nb), weights=nb, n=s.bootstrap, seed=s.seed))
        entry["note"] = None
    return entry


def load_prompts(ws) -> dict[str, list[dict]]:
    """{lang: [{id, prompt}]} from `[evaluate] prompts_file`, else the shipped prompts.toml."""
    import tomllib

    s = ws.config.evaluate
    path = (ws.root / s.prompts_file) if s.prompts_file else Path(__file__).with_name("prompts.toml")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the evaluation prompts ({e})") from None
    out = {}
    for lang, entries in data.items():
        if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("prompt"), str)
                                                    and e["prompt"] for e in entries):
            raise ConfigError(f"{path}: [[{lang}]] entries need a non-empty `prompt` (and an `id`)")
        out[lang] = [{"id": str(e.get("id", i)), "prompt": e["prompt"]} for i, e in enumerate(entries)]
    return out


def _answer_prompts(model, tok, prompts: dict[str, list[dict]], s) -> tuple[dict, dict]:
    from soberan.evaluate.scoring import generate

    flat = [(lang, p) for lang, ps in prompts.items() for p in ps]
    outs = generate(model, tok, [p["prompt"] for _, p in flat], stop=[],
                    max_new_tokens=s.prompt_max_new_tokens, batch_size=s.batch_size, max_length=s.max_length)
    # The answer is its first paragraph: a model that opens with a newline before answering
    # (SmolLM2 after "Answer:") is not cut to nothing.
    return {}, {"lang": [lang for lang, _ in flat], "id": [p["id"] for _, p in flat],
                "answer": [o.strip().split("\n\n")[0].strip() for o in outs]}


def merge_results(old: dict | None, new: dict, still_valid) -> dict:
    """`new` (this run's results) laid over `old` (the results.json before it): a set or held-out
    language this run did not score keeps its earlier scores; a model this run did not score
    stays while `still_valid(entry)` (its checkpoint still hashes as it did). Scores belong to a
    checkpoint hash, not a label, so a retrained model's earlier scores are not carried over."""
    if not old or not isinstance(old.get("models"), list):
        return new
    old_by_sha = {m.get("sha256"): m for m in old["models"]}
    models = []
    for m in new["models"]:
        prev = old_by_sha.get(m["sha256"])
        if prev:
            m = {**m, "sets": {**prev.get("sets", {}), **m["sets"]}, "bpb": {**prev.get("bpb", {}), **m["bpb"]},
                 "answers": {**prev.get("answers", {}), **m.get("answers", {})}}
        models.append(m)
    shas = {m["sha256"] for m in new["models"]}
    dropped = []
    for m in old["models"]:
        if m.get("sha256") not in shas:
            (models if still_valid(m) else dropped).append(m)
    labels = {m["label"]: m["sha256"] for m in models}
    sets = {k: v for k, v in old.get("sets", {}).items() if any(k in m["sets"] for m in models)}
    sets.update(new["sets"])
    held = {**old.get("heldout", {}), **new["heldout"]}
    redone = {(c["set"], c["metric"], c["reference"], c["model"]) for c in new["comparisons"]}
    comparisons = list(new["comparisons"]) + [
        c for c in old.get("comparisons", [])
        if (c["set"], c["metric"], c["reference"], c["model"]) not in redone
        and labels.get(c["reference"]) == c.get("reference_sha256") and labels.get(c["model"]) == c.get("model_sha256")]
    prompts = {**old.get("prompts", {}), **new.get("prompts", {})}
    return {**new, "models": models, "sets": sets, "heldout": held, "comparisons": comparisons,
            "prompts": prompts, "contamination": new["contamination"] if new["sets"] else old.get(
                "contamination", new["contamination"]),
            "dropped_models": [{"label": m["label"], "sha256": m.get("sha256"),
                                "why": "its checkpoint changed or is gone"} for m in dropped]}


@dataclass
class _Scores:
    """What every model scored, by model label: what results.json and the comparisons read."""

    sets: dict[str, dict[str, dict]] = field(default_factory=dict)  # model -> set -> metrics
    levels: dict[str, dict] = field(default_factory=dict)  # set -> chance and majority levels
    per_item: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (model, set/metric) -> per item
    bpb: dict[str, dict[str, dict]] = field(default_factory=dict)  # model -> language -> entry
    bpb_units: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # bpb, bytes
    answers: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # model -> language -> answers
    reused: int = 0  # (model, set) results read back from an earlier run


@dataclass
class _Work:
    """What this run scores each model on."""

    sets: list[SetData]
    held: dict[str, Path]  # language -> held-out parquet
    held_texts: dict[str, list[str]]
    prompts: dict[str, list[dict]]


@dataclass
class _OnDemand:
    """A model loaded at its first use (all its results may be cached) and let go after it."""

    path: Path
    device: str
    loaded: list = field(default_factory=list)

    def get(self) -> list:
        if not self.loaded:
            from soberan.evaluate.models import load_model

            self.loaded.extend(load_model(self.path, self.device))
        return self.loaded


def _score_sets(ref, model: _OnDemand, work: _Work, items_dir: Path, s, prog, sc: _Scores) -> None:
    sc.sets[ref.label] = {}
    for sd in work.sets:
        fp = _fingerprint(ref.sha256, sd.spec.model_dump(), sd.files, len(sd.items), sd.k,
                          [x.id for x in sd.shots], sorted(sd.flags), s.max_length, s.max_new_tokens)

        def score(sd=sd):
            res = _score_set(*model.get(), sd, s, prog)
            return res["metrics"], res["rows"]

        metrics, rows, was = _cached(items_dir / sd.spec.name, fp, score)
        sc.reused += was
        metrics, sc.levels[sd.spec.name] = _answer_stats(sd, metrics, rows, s)
        sc.sets[ref.label][sd.spec.name] = metrics
        for m in _main_metric(sd.spec):
            key = {"acc": "correct", "acc_norm": "correct_norm", "exact_match": "correct"}[m]
            sc.per_item[(ref.label, f"{sd.spec.name}/{m}")] = np.array(rows[key], dtype=float)


def _score_bpb(ref, model: _OnDemand, work: _Work, items_dir: Path, s, prog, sc: _Scores) -> None:
    sc.bpb[ref.label] = {}
    for lang, texts in work.held_texts.items():
        if not texts:
            continue
        fp = _fingerprint(ref.sha256, file_sha256(work.held[lang]), len(texts), s.batch_size)

        def heldout(texts=texts, lang=lang):
            prog.add_task(f"bits per byte ({lang}, {len(texts)} units)", total=None)
            return _score_heldout(*model.get(), texts, s)

        entry, rows, _ = _cached(items_dir / f"heldout_{lang}", fp, heldout)
        sc.bpb[ref.label][lang] = _bpb_interval(entry, rows, s)
        nll, nb = np.array(rows["nll"]), np.array(rows["bytes"], dtype=float)
        sc.bpb_units[(ref.label, lang)] = (nll / (math.log(2) * nb), nb)


def _score_prompts(ref, model: _OnDemand, work: _Work, items_dir: Path, s, prog, sc: _Scores) -> None:
    prompts = work.prompts
    fp = _fingerprint(ref.sha256, prompts, s.prompt_max_new_tokens, s.max_length)

    def answer():
        prog.add_task(f"answering {sum(map(len, prompts.values()))} fixed prompts", total=None)
        return _answer_prompts(*model.get(), prompts, s)

    _, rows, _ = _cached(items_dir / "prompts", fp, answer)
    sc.answers[ref.label] = {}
    for lang, a in zip(rows["lang"], rows["answer"]):
        sc.answers[ref.label].setdefault(lang, []).append(a)


def _score_models(refs, work: _Work, out_dir: Path, s) -> _Scores:
    """Each model on the sets, the held-out text and the fixed prompts, one model in memory at
    a time; a (model, unit of work) whose fingerprint is unchanged is read back, not rerun."""
    from soberan.ui import progress

    sc = _Scores()
    for ref in refs:
        model = _OnDemand(ref.path, s.device)
        items_dir = out_dir / "items" / ref.sha256[:16]
        with progress() as prog:
            _score_sets(ref, model, work, items_dir, s, prog, sc)
            _score_bpb(ref, model, work, items_dir, s, prog, sc)
            if work.prompts:
                _score_prompts(ref, model, work, items_dir, s, prog, sc)
        model.loaded.clear()  # one model in memory at a time
    return sc


def _set_comparisons(base, other, sd: SetData, sc: _Scores, s) -> list[dict]:
    """`other` against `base` on one set's main metrics: a paired bootstrap over items, not
    called significant when either model answers degenerately."""
    from soberan.evaluate.compare import paired_bootstrap

    out = []
    for m in _main_metric(sd.spec):
        a = sc.per_item[(base.label, f"{sd.spec.name}/{m}")]
        b = sc.per_item[(other.label, f"{sd.spec.name}/{m}")]
        d = paired_bootstrap(a, b, n=s.bootstrap, seed=s.seed)
        flags = [f"{r.label} {sc.sets[r.label][sd.spec.name].get('degenerate', {}).get(m)}"
                 for r in (base, other) if sc.sets[r.label][sd.spec.name].get("degenerate", {}).get(m)]
        out.append({"set": sd.spec.name, "language": sd.spec.language, "metric": m,
                    "reference": base.label, "model": other.label, "n": len(a),
                    "reference_sha256": base.sha256, "model_sha256": other.sha256,
                    "reference_value": float(a.mean()), "value": float(b.mean()),
                    "diff": d.value, "ci95": [d.lo, d.hi],
                    "significant": d.significant and not flags,
                    "note": "; ".join(flags) if flags else None,
                    "higher_is_better": True})
    return out


def _bpb_comparison(base, other, lang: str, sc: _Scores, s) -> dict:
    """`other` against `base` in bits per byte on one language's held-out units: a paired
    bootstrap weighted by bytes, unless there are too few units for an interval."""
    from soberan.evaluate.compare import paired_bootstrap

    (a, w), (b, _) = sc.bpb_units[(base.label, lang)], sc.bpb_units[(other.label, lang)]
    ref_bpb, bpb = sc.bpb[base.label][lang], sc.bpb[other.label][lang]
    c = {"set": f"heldout_{lang}", "language": lang, "metric": "bpb",
         "reference": base.label, "model": other.label, "n": len(a),
         "reference_sha256": base.sha256, "model_sha256": other.sha256,
         "reference_value": ref_bpb["bpb"], "value": bpb["bpb"], "diff": bpb["bpb"] - ref_bpb["bpb"],
         "ci95": None, "significant": False, "note": ref_bpb["note"], "higher_is_better": False}
    if c["note"] is None:
        d = paired_bootstrap(a, b, n=s.bootstrap, seed=s.seed, weights=w)
        c.update(diff=d.value, ci95=[d.lo, d.hi], significant=d.significant)
    return c


def _comparisons(refs, work: _Work, sc: _Scores, s) -> list[dict]:
    """Every other model against the first, set by set and language by language."""
    base, out = refs[0], []
    for other in refs[1:]:
        for sd in work.sets:
            out += _set_comparisons(base, other, sd, sc, s)
        out += [_bpb_comparison(base, other, lang, sc, s) for lang in work.held_texts
                if (base.label, lang) in sc.bpb_units]
    return out


def _read_results(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a damaged file has nothing to keep; this run's results replace it


def _ledger_meta(results: dict) -> dict:
    """The headline of results.json that the ledger record carries."""
    models = results["models"]
    return {"models": [m["label"] for m in models], "sets": sorted(results["sets"]),
            "scores": {m["label"]: {k: {x: v.get(x) for x in ("acc", "acc_norm", "exact_match") if x in v}
                                    for k, v in m["sets"].items()} for m in models},
            "bpb": {m["label"]: {k: v["bpb"] for k, v in m["bpb"].items()} for m in models},
            "degenerate": {m["label"]: {k: v["degenerate"] for k, v in m["sets"].items() if v.get("degenerate")}
                           for m in models},
            "contaminated": {k: v["contaminated"] for k, v in results["sets"].items()}}


def _plan(ws, s, refs, names: list[str], limit: int | None) -> tuple[_Work, dict]:
    """The sets, held-out text and prompts to score, and the contamination check's record."""
    from soberan.evaluate.models import heldout_files

    set_data = _prepare_sets(ws, names, limit) if names else []
    held = heldout_files(ws, refs) if s.bpb else {}
    if not set_data and not held:
        raise ConfigError("evaluate: nothing to score (no `sets` in [evaluate], and no held-out text "
                          "from the train stage)")
    contamination = _contamination(ws, set_data, refs) if set_data else {"checked": False}
    held_texts = _heldout_texts(held, s)
    prompts = {}
    if s.prompts:
        keep = set(ws.config.project.languages) | set(held_texts) | {"en"}
        prompts = {lang: ps for lang, ps in load_prompts(ws).items() if lang in keep}
    return _Work(set_data, held, held_texts, prompts), contamination


def evaluate(ws, *, models: list[str | Path] | None = None, sets: list[str] | None = None,
        limit: int | None = None, show: bool = True) -> EvalSummary:
    """See `soberan.evaluate.run`."""
    from soberan.documents import tree_sha256
    from soberan.evaluate.models import resolve_models
    from soberan.evaluate.report import print_tables
    from soberan.ui import console

    s = ws.config.evaluate
    limit = limit if limit is not None else s.limit
    refs = resolve_models(ws, list(models) if models else list(s.compare))
    work, contamination = _plan(ws, s, refs, list(sets) if sets else list(s.sets), limit)
    out_dir = ws.stage_dir("evaluate")
    sc = _score_models(refs, work, out_dir, s)
    comparisons = _comparisons(refs, work, sc, s)
    targets = set(ws.config.project.languages)
    new = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(),
        "seed": s.seed, "limit": limit, "bootstrap": s.bootstrap, "max_length": s.max_length,
        "min_heldout_units": s.min_heldout_units, "degenerate_share": s.degenerate_share,
        "models": [{"label": r.label, "role": r.role, "path": ws.ledger.rel(r.path), "sha256": r.sha256,
                    "artifact": r.record["hash"] if r.record else None, "sets": sc.sets[r.label],
                    "bpb": sc.bpb.get(r.label, {}), "answers": sc.answers.get(r.label, {})}
                   for r in refs],
        "sets": {sd.spec.name: {**_set_record(sd, s), **sc.levels[sd.spec.name]} for sd in work.sets},
        "heldout": {lang: {"path": ws.ledger.rel(p), "sha256": file_sha256(p), "units": len(work.held_texts[lang]),
                           "forgetting_check": lang == "en" and "en" not in targets}
                    for lang, p in work.held.items()},
        "prompts": {lang: [p["prompt"] for p in ps] for lang, ps in work.prompts.items()},
        "contamination": contamination,
        "comparisons": comparisons,
    }
    results_path = out_dir / "results.json"

    def still_valid(m: dict) -> bool:
        p = ws.root / m.get("path", "")
        return bool(m.get("path")) and (p / "config.json").is_file() and tree_sha256(p) == m.get("sha256")

    results = merge_results(_read_results(results_path), new, still_valid)
    _write_json(results_path, results)
    inputs = {r.record["hash"] for r in refs if r.record}
    inputs |= {m["artifact"] for m in results["models"] if m.get("artifact")}
    rec = ws.ledger.record_artifact(stage="evaluate", kind="results", path=results_path, inputs=sorted(inputs),
                                    config_hash=ws.config.section_hash(*CONFIG_SECTIONS), meta=_ledger_meta(results))
    if show:
        print_tables(console, results)
    return EvalSummary(results_path, [r.label for r in refs], [sd.spec.name for sd in work.sets],
                       sc.sets, {k: {lang: v["bpb"] for lang, v in d.items()} for k, d in sc.bpb.items()},
                       comparisons, {sd.spec.name: len(sd.flags) for sd in work.sets},
                       rec["hash"], sc.reused)
