"""The model card (Hugging Face README.md with YAML metadata) and Croissant metadata for the
curated dataset, both written from the facts the report gathered.

The card's metadata goes through `huggingface_hub.ModelCardData`, so the YAML (license, language,
datasets, base_model, tags, model-index) is what the Hub parses; the Croissant JSON-LD is built
and validated with `mlcroissant`, the MLCommons reference library, so the dataset loads in any
Croissant reader.
"""

from __future__ import annotations

import datetime as dt
import math

METRIC_NAMES = ("acc", "acc_norm", "accuracy", "exact_match", "em", "bpb", "bits_per_byte", "f1",
                "perplexity", "loss")


def _num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def eval_rows(data) -> list[dict]:
    """Evaluation results as rows {model, task, metric, value}.

    Reads the evaluate stage's `results.json` (`models`: one entry per model with its `sets`
    scores and held-out `bpb` per language); anything else is walked generically, a numeric leaf
    named like a metric becoming a row whose model is its top-level key."""
    if isinstance(data, dict) and isinstance(data.get("models"), list) and \
            all(isinstance(m, dict) and "label" in m for m in data["models"]):
        rows = []
        for m in data["models"]:
            for task, metrics in (m.get("sets") or {}).items():
                for k, v in (metrics or {}).items():
                    if _num(v) and k in METRIC_NAMES:
                        rows.append({"model": m["label"], "task": task, "metric": k, "value": float(v)})
            for lang, v in (m.get("bpb") or {}).items():
                if isinstance(v, dict) and _num(v.get("bpb")):
                    rows.append({"model": m["label"], "task": f"heldout_{lang}", "metric": "bpb",
                                 "value": float(v["bpb"])})
        return rows
    rows = []

    def walk(v, path):
        if isinstance(v, dict):
            for k, x in v.items():
                if _num(x) and k.lower() in METRIC_NAMES:
                    rows.append({"model": path[0] if path else "model", "task": "/".join(path[1:]) or "-",
                                 "metric": k, "value": float(x)})
                elif isinstance(x, dict | list):
                    walk(x, path + [str(k)])
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, path + [str(i)])

    walk(data.get("models", data) if isinstance(data, dict) else data, [])
    return rows


def model_label(ws, data) -> str | None:
    """Which model of the results is this workspace's trained model (the card describes it)."""
    art = ws.ledger.latest_artifact("train", "model", role="main")
    if isinstance(data, dict) and isinstance(data.get("models"), list) and art:
        for m in data["models"]:
            if isinstance(m, dict) and (m.get("artifact") == art["hash"] or m.get("path") == art["path"]):
                return m.get("label")
    return None


def _md(text) -> str:
    """A table cell: newlines shown as ⏎, pipes escaped."""
    return "—" if text is None else str(text).replace("|", "\\|").replace("\n", " ⏎ ").strip() or "(empty)"


def side_by_side_markdown(sbs: dict | None) -> str:
    """The models side by side (`facts.side_by_side`): held-out bits per byte and fertility per
    language, benchmark scores with CIs and degenerate flags, greedy answers to fixed prompts."""
    if not sbs:
        return ""
    names = [m["label"] for m in sbs["models"]]
    ref, others = sbs["reference"], names[1:]
    delta = [f"Δ {o} − {ref} [95% CI]" for o in others]
    out = []
    if sbs["bpb"]:
        out += ["### Held-out bits per byte (lower is better; 95% CI over held-out units)", "",
                "| language | units | " + " | ".join(names + delta) + " |",
                "|---|---:|" + "---:|" * (len(names) + len(delta))]
        out += [f"| {r['title']} | {r['units'] or '—'} | " + " | ".join([_md(c["text"]) for c in r["cells"]]
                                                                      + [_md(d or "—") for d in r["diffs"]]) + " |"
                for r in sbs["bpb"]]
        out += ["", "Tokens per character of each model's tokenizer on the same held-out units:", "",
                "| language | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        out += [f"| {r['title']} | " + " | ".join(f"{c['tokens_per_char']:.3f}" if c["tokens_per_char"] else "—"
                                                 for c in r["cells"]) + " |" for r in sbs["bpb"]]
        out.append("")
    if sbs["sets"]:
        out += ["### Benchmarks (95% CI; chance and majority-class levels beside)", "",
                "| set | lang | metric | items | chance | majority class | " + " | ".join(names + delta) + " |",
                "|---|---|---|---:|---:|---:|" + "---:|" * (len(names) + len(delta))]
        for r in sbs["sets"]:
            lv = (f"{r['chance']:.3f}", f"{r['majority']:.3f} ({r['majority_answer']})") \
                if r["chance"] is not None else ("—", "—")
            out.append(f"| {r['set']} | {r['language']} | {r['metric']} | {r['n']} | {lv[0]} | {lv[1]} | "
                       + " | ".join([_md(c["text"]) for c in r["cells"]] + [_md(d or "—") for d in r["diffs"]]) + " |")
        out.append("")
    if sbs["prompts"]:
        out += ["### Answers to fixed national prompts (greedy decoding)", "",
                "| lang | prompt | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        out += [f"| {p['lang']} | {_md(p['prompt'])} | " + " | ".join(_md(a) for a in p["answers"]) + " |"
                for p in sbs["prompts"]]
        out.append("")
    return "\n".join(out)


def _hf_license(spdx: str | None) -> tuple[str, str | None]:
    """HF wants a lowercase id from its list, or "other" plus a name."""
    if not spdx or spdx.startswith("LicenseRef-"):
        return "other", (spdx or "see-training-data-licenses").removeprefix("LicenseRef-").lower()
    return spdx.lower(), None


CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ name }}

{{ description }}

A {{ languages_text }} language model built by **{{ provider }}** with
soberan from the nation's own data, on its own machines. Every figure on this
card is generated from the workspace's hash-chained provenance ledger (head `{{ ledger_head }}`,
verification **{{ ledger_ok }}**).

**Base model:** {{ base_text }}.

## Training data

{{ data_table }}

Tokens the model was trained on, by source: {{ shares_text }}.

Curation (as recorded in the ledger's decision log): {{ curation_text }}.

The EU AI Act training-data summary (Art. 53(1)(d)) is published beside this card as
`eu_training_summary.md`; the curated dataset's Croissant metadata as `croissant.json`.

## Evaluation

{{ side_by_side }}

{{ eval_table }}

## Training

{{ training_text }}

## Take-downs

{{ takedown_text }}

## Provenance

| artifact | stage | sha256 |
|---|---|---|
{% for a in artifacts %}| `{{ a.path }}` | {{ a.stage }}/{{ a.kind }} | `{{ a.sha256[:16] }}` |
{% endfor %}
"""


def model_card(ws, facts: dict, license: str | None = None) -> str:
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    cfg = ws.config
    comp = facts["composition"]
    model = comp.get("model") or {}
    meta = model.get("meta") or {}
    langs = [r["value"] for r in comp.get("lang", []) if r["value"] != "(unknown)"] or list(cfg.project.languages)
    lic, lic_name = _hf_license(license)
    ev = facts["evaluation"]
    rows = facts.get("eval_rows") or []
    mine = ev.get("model_label")
    own = [r for r in rows if mine is None or r["model"] == mine]
    results = [EvalResult(task_type="text-generation", dataset_type=r["task"], dataset_name=r["task"],
                          metric_type=r["metric"], metric_value=round(r["value"], 6)) for r in own]
    data = ModelCardData(
        language=langs, license=lic, license_name=lic_name,
        datasets=[s.name for s in cfg.sources],
        base_model=(facts.get("base_model") or {}).get("name") or meta.get("base_model"),
        library_name="transformers", pipeline_tag="text-generation",
        tags=["soberan", "sovereign-ai", *[f"jurisdiction:{j}" for j in cfg.policy.jurisdictions]],
        model_name=cfg.project.name, eval_results=results or None)

    src_rows = comp.get("source", [])
    data_table = "\n".join(["| source | licence | documents | tokens |", "|---|---|---|---|"] + [
        f"| {r['value']} | {next((s.license for s in cfg.sources if s.name == r['value']), '?')} | "
        f"{r['docs']:,} | {r['tokens'] if r['tokens'] is not None else '—'} |" for r in src_rows]) \
        if src_rows else "No curated corpus recorded yet."
    from soberan.report.facts import flat_shares

    shares = flat_shares(model.get("recorded")).get("source") or (model.get("computed") or {}).get("source") or {}
    shares_text = ", ".join(f"{k} {v:.1%}" for k, v in shares.items()) or "not recorded"
    steps = facts["funnel"].get("steps", [])
    curation_text = "; ".join(f"{s['step']} dropped {s['dropped']['docs']:,}" for s in steps) or "no steps recorded"
    eval_table = "\n".join(["All metrics as recorded:", "", "| model | task | metric | value |",
                            "|---|---|---|---|"] + [
        f"| {r['model']}{' (this model)' if r['model'] == mine else ''} | {r['task']} | {r['metric']} | "
        f"{r['value']:.4f} |" for r in rows]) if rows else "No evaluation recorded yet."
    ts = facts["training"].get("summary") or {}
    training_text = "; ".join(x for x in (
        ts.get("how") and f"{ts['how']}" + (f", {ts['params']:,} parameters" if ts.get("params") else ""),
        ts.get("steps") is not None and f"{ts['steps']:,} steps, {ts.get('tokens') or 0:,} tokens drawn",
        ts.get("final_loss") is not None and f"final loss {ts['final_loss']:.4g}",
        *[f"held-out bits per byte ({k}) {(ts.get('bpb_start') or {}).get(k, float('nan')):.4g} → {v:.4g}"
          for k, v in (ts.get("bpb_end") or {}).items()],
    ) if x) or "No training recorded yet."
    tds = facts.get("takedowns", [])
    takedown_text = "\n".join(f"- {t['takedown']} ({t['time'][:10]}): {t['by']} `{t['value']}`, "
                              f"{t['docs']} document(s) removed and every artifact holding them rebuilt; "
                              f"reason: {t['reason']}" for t in tds) or "None."
    card = ModelCard.from_template(
        data, template_str=CARD_TEMPLATE, name=cfg.project.name,
        description=cfg.project.description or f"The {cfg.project.jurisdiction} national model.",
        languages_text="/".join(langs), provider=cfg.project.provider,
        ledger_head=facts["ledger"]["head"], ledger_ok="passed" if facts["ledger"]["ok"] else "FAILED",
        data_table=data_table, shares_text=shares_text, curation_text=curation_text,
        eval_table=eval_table, training_text=training_text, takedown_text=takedown_text,
        base_text=facts.get("base_model_text") or "none: trained from scratch",
        side_by_side=side_by_side_markdown(ev.get("side_by_side")),
        artifacts=[a for a in facts["ledger"]["artifacts"] if a["stage"] != "report"])
    return str(card)


def croissant(ws, facts: dict) -> dict | None:
    """Croissant 1.0 JSON-LD for the curated corpus: one record set of documents with their
    provenance fields, read from the shards by a FileSet relative to the curated folder (place the
    file beside the shards when publishing them), plus the RAI fields the ledger can fill."""
    import mlcroissant as mlc
    import pyarrow.parquet as pq

    from soberan.documents import shard_paths

    art = ws.ledger.latest_artifact("curate", "corpus")
    if art is None:
        return None
    folder = ws.root / art["path"]
    shards = shard_paths(folder)
    if not shards:
        return None
    cfg = ws.config
    nested = all(p.parent != folder for p in shards)
    types = {"string": mlc.DataType.TEXT, "large_string": mlc.DataType.TEXT, "float": mlc.DataType.FLOAT,
             "double": mlc.DataType.FLOAT, "int64": mlc.DataType.INTEGER, "int32": mlc.DataType.INTEGER,
             "bool": mlc.DataType.BOOL}
    schema = pq.read_schema(shards[0])
    fields = []
    for f in schema:
        t = str(f.type)
        dtype = mlc.DataType.DATE if t.startswith("timestamp") else types.get(t)
        if dtype is None:
            continue  # nested columns a later stage added; the provenance columns are all flat
        fields.append(mlc.Field(id=f"documents/{f.name}", name=f.name, data_types=[dtype],
                                source=mlc.Source(file_set="curated-shards", extract=mlc.Extract(column=f.name))))
    comp = facts["composition"]
    steps = facts["funnel"].get("steps", [])
    licenses = sorted({s.license for s in cfg.sources})
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    md = mlc.Metadata(
        name=f"{cfg.project.name}-curated",
        description=(f"The curated {'/'.join(cfg.project.languages)} corpus of {cfg.project.name}: "
                     f"{(comp.get('total') or {}).get('docs', 0):,} documents from "
                     f"{len(cfg.sources)} source(s), each with its source, URL, licence, jurisdiction "
                     f"and collection time. Content hash (sha256 of the shard tree): {art['sha256']}."),
        license=[f"https://spdx.org/licenses/{x}.html" if not x.startswith("LicenseRef-") else x
                 for x in licenses],
        version="1.0.0",
        date_published=now, cite_as=f"{cfg.project.provider}. {cfg.project.name}-curated (ledger {art['sha256'][:12]}).",
        creators=[mlc.Organization(name=cfg.project.provider)],
        in_language=list(cfg.project.languages),
        keywords=["soberan", "sovereign-ai", *cfg.project.languages],
        distribution=[mlc.FileSet(id="curated-shards", name="curated-shards",
                                  encoding_formats=["application/x-parquet"],
                                  includes=["**/*.parquet" if nested else "*.parquet"])],
        record_sets=[mlc.RecordSet(id="documents", name="documents", key=["documents/id"], fields=fields)],
        data_collection="; ".join(f"{s.name}: {s.kind} ({s.description or s.path or ', '.join(s.urls)})"
                                  for s in cfg.sources),
        data_preprocessing_protocol=[f"{s['step']}: {s['dropped']['docs']} dropped"
                                     + (f", {sum(r['docs'] for r in s['redacted'])} redacted" if s["redacted"] else "")
                                     for s in steps] or None,
        personal_sensitive_information=[
            "National identifiers and contact data of the configured languages are replaced by typed "
            "placeholders during curation (see the decision log's `redacted` rows)."],
    )
    problems = md.issues.errors
    if problems:
        raise ValueError("Croissant metadata is invalid: " + "; ".join(sorted(problems)))
    return md.to_json()
