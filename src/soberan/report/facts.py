"""The facts a report states, each read from the ledger or an artifact, never typed by hand.

Counts come from DuckDB over the Parquet shards and the decision log, so the report costs one
scan of the corpus whatever its size. Tokens are counted with the workspace's own final tokenizer
(the one the model was trained with), once per corpus and tokenizer, and cached next to the
report, so "tokens" means the same unit in the funnel, the composition and the model's shares.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from soberan.common import read_json
from soberan.documents import iter_batches, shard_paths, write_parquet_atomic
from soberan.stages import build_order
from soberan.workspace import Workspace

# The host of a URL; a document read from a local file has none and is grouped as "(local files)".
HOST_SQL = ("coalesce(nullif(lower(regexp_extract(url, '^[A-Za-z][A-Za-z0-9+.-]*://([^/:?#]+)', 1)), ''), "
            "'(local files)')")
DIMENSIONS = ("lang", "source", "license", "jurisdiction", "domain")


def _list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + p.as_posix().replace("'", "''") + "'" for p in paths) + "]"


def _rows(con, sql: str, params=None) -> list[dict]:
    res = con.execute(sql, params or [])
    cols = [d[0] for d in res.description]
    return [dict(zip(cols, r)) for r in res.fetchall()]


def _jsonable(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def _clean(rows: list[dict]) -> list[dict]:
    return [{k: _jsonable(v) for k, v in r.items()} for r in rows]


# --- tokens ---------------------------------------------------------------------------------

def final_tokenizer(ws: Workspace) -> tuple[dict, object] | None:
    """The tokenizer artifact and a callable counting tokens of a list of texts, or None."""
    art = ws.ledger.latest_artifact("tokenizer", "tokenizer")
    if art is None:
        return None
    path = ws.root / art["path"]
    if (path / "tokenizer.json").exists():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(path / "tokenizer.json"))

        def count(texts: list[str]) -> list[int]:
            return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]
    else:  # a sentencepiece-only tokenizer: go through transformers
        from soberan.hf import load_tokenizer

        hf = load_tokenizer(path)

        def count(texts: list[str]) -> list[int]:
            return [len(x) for x in hf(texts, add_special_tokens=False)["input_ids"]]
    return art, count


def token_counts(ws: Workspace, stage: str, cache_dir: Path, tokenizer) -> pa.Table | None:
    """Per-document token counts (`id`, `n_tokens`) of a stage's current corpus, cached by the
    corpus and tokenizer content hashes, so rerunning the report does not re-tokenize."""
    corpus = ws.ledger.latest_artifact(stage, "corpus")
    if corpus is None or tokenizer is None:
        return None
    tok_art, count = tokenizer
    cache = cache_dir / f"tokens-{stage}-{corpus['sha256'][:16]}-{tok_art['sha256'][:16]}.parquet"
    if cache.exists():
        return pq.read_table(cache)
    ids: list[pa.Array] = []
    ns: list[pa.Array] = []
    for batch in iter_batches(ws.root / corpus["path"], columns=["id", "text"], batch_size=2048):
        ids.append(batch.column("id"))
        ns.append(pa.array(count(batch.column("text").to_pylist()), pa.int64()))
    tbl = pa.table({"id": pa.concat_arrays(ids) if ids else pa.array([], pa.string()),
                    "n_tokens": pa.concat_arrays(ns) if ns else pa.array([], pa.int64())})
    for old in cache_dir.glob(f"tokens-{stage}-*.parquet"):
        old.unlink()
    write_parquet_atomic(tbl, cache)
    return tbl


# --- the corpus: funnel and composition -------------------------------------------------------

def corpus_views(ws: Workspace, con, cache_dir: Path) -> dict:
    """Register views `raw` and `curated` (each with `n_tokens` and `domain`) on `con`."""
    import duckdb

    tok = final_tokenizer(ws)
    have: dict = {"errors": []}
    for stage, view in (("collect", "raw"), ("curate", "curated")):
        art = ws.ledger.latest_artifact(stage, "corpus")
        files = shard_paths(ws.root / art["path"]) if art else []
        have[view] = False
        if not files:
            continue
        try:
            counts = token_counts(ws, stage, cache_dir, tok)
            if counts is not None:
                con.register(f"{view}_tokens", counts)
                join = f"LEFT JOIN {view}_tokens t USING (id)"
                ntok = "t.n_tokens"
            else:
                join, ntok = "", "NULL::BIGINT"
            con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT d.*, {ntok} AS n_tokens, "
                        f"length(d.text) AS chars, {HOST_SQL.replace('url', 'd.url')} AS domain "
                        f"FROM read_parquet({_list(files)}, union_by_name=true) d {join}")
            con.execute(f"SELECT count(*) FROM {view}").fetchall()[0]
        except (duckdb.Error, pa.ArrowException, OSError) as e:
            # A damaged shard (the ledger check names it) must not take the whole report down.
            have["errors"].append(f"{art['path']}: cannot be read ({str(e).splitlines()[0]})")
            continue
        have[view] = True
    have["tokenizer"] = tok[0]["path"] if tok else None
    return have


def _totals(con, view: str) -> dict:
    r = _rows(con, f"SELECT count(*) AS docs, sum(chars)::BIGINT AS chars, sum(n_tokens)::BIGINT AS tokens "
                   f"FROM {view}")[0]
    return _clean([r])[0]


def _breakdown(con, view: str, dim: str, limit: int | None = None) -> list[dict]:
    lim = f"LIMIT {limit}" if limit else ""
    rows = _rows(con, f"""
        SELECT coalesce(CAST({dim} AS VARCHAR), '(unknown)') AS value, count(*) AS docs,
               sum(chars)::BIGINT AS chars, sum(n_tokens)::BIGINT AS tokens
        FROM {view} GROUP BY 1 ORDER BY coalesce(sum(n_tokens), sum(chars)) DESC, value {lim}""")
    total_t = sum(r["tokens"] or 0 for r in _rows(con, f"SELECT sum(n_tokens) AS tokens FROM {view}"))
    total_c = _rows(con, f"SELECT sum(chars) AS c FROM {view}")[0]["c"] or 0
    for r in rows:
        r["share"] = (r["tokens"] / total_t) if total_t and r["tokens"] is not None else \
            ((r["chars"] / total_c) if total_c else None)
    return _clean(rows)


def funnel(ws: Workspace, con, have: dict) -> dict:
    """Documents and tokens read, then kept and dropped at each step, by reason, source, language.

    Collect's rejections (unreadable, too long, taken down) happen before a document has a shard,
    so they count documents only. Each drop's tokens are its tokens as collected."""
    out: dict = {"available": have.get("raw", False)}
    if not out["available"]:
        return out
    out["collected"] = _totals(con, "raw")
    out["collected_by_source"] = _breakdown(con, "raw", "source")
    out["collected_by_lang"] = _breakdown(con, "raw", "lang")
    dec = "decisions"
    out["collect_rejected"] = _clean(_rows(con, f"""
        SELECT coalesce(rule, step) AS rule, any_value(reason) AS example_reason, count(DISTINCT doc_id) AS docs
        FROM {dec} WHERE stage = 'collect' AND action IN ('dropped', 'rejected')
        GROUP BY 1 ORDER BY docs DESC"""))
    # Steps in the order the config runs them (decisions of one batch share a timestamp); a step
    # the config does not name goes after, by when it first decided. "kept" rows are the output.
    order = {s: i for i, s in enumerate(ws.config.curate.steps)}
    steps = sorted(_rows(con, f"""SELECT step, min(time) AS first FROM {dec}
                                   WHERE stage = 'curate' AND action <> 'kept' GROUP BY step"""),
                   key=lambda r: (order.get(r["step"], len(order)), r["first"]))
    remaining = dict(out["collected"])
    out["steps"] = []
    for s in steps:
        step = s["step"]
        base = f"""FROM {dec} x LEFT JOIN raw r ON r.id = x.doc_id
                   WHERE x.stage = 'curate' AND x.step = ? AND x.action IN ('dropped', 'rejected')"""
        tot = _rows(con, f"SELECT count(DISTINCT x.doc_id) AS docs, sum(r.n_tokens)::BIGINT AS tokens, "
                         f"sum(r.chars)::BIGINT AS chars {base}", [step])[0]
        reasons = _rows(con, f"""SELECT coalesce(x.rule, '(none)') AS rule, any_value(x.reason) AS example_reason,
                   count(DISTINCT x.doc_id) AS docs, sum(r.n_tokens)::BIGINT AS tokens {base}
                   GROUP BY 1 ORDER BY docs DESC""", [step])
        by_source = _rows(con, f"""SELECT coalesce(x.source, r.source, '(unknown)') AS value,
                   count(DISTINCT x.doc_id) AS docs, sum(r.n_tokens)::BIGINT AS tokens {base}
                   GROUP BY 1 ORDER BY docs DESC""", [step])
        by_lang = _rows(con, f"""SELECT coalesce(r.lang, '(unknown)') AS value,
                   count(DISTINCT x.doc_id) AS docs, sum(r.n_tokens)::BIGINT AS tokens {base}
                   GROUP BY 1 ORDER BY docs DESC""", [step])
        redacted = _rows(con, f"""SELECT coalesce(rule, '(none)') AS rule, count(DISTINCT doc_id) AS docs
                   FROM {dec} WHERE stage = 'curate' AND step = ? AND action = 'redacted'
                   GROUP BY 1 ORDER BY docs DESC""", [step])
        for k in ("docs", "tokens", "chars"):
            if remaining.get(k) is not None:
                remaining[k] = remaining[k] - (tot[k] or 0)
        out["steps"].append({"step": step, "dropped": _clean([tot])[0], "remaining": dict(remaining),
                             "reasons": _clean(reasons), "by_source": _clean(by_source),
                             "by_lang": _clean(by_lang), "redacted": _clean(redacted)})
    if have.get("curated"):
        out["kept"] = _totals(con, "curated")
        out["kept_by_source"] = _breakdown(con, "curated", "source")
        out["kept_by_lang"] = _breakdown(con, "curated", "lang")
        # The funnel closes when collected minus every drop equals what curate wrote.
        out["closes"] = remaining["docs"] == out["kept"]["docs"]
        # Documents close; tokens and characters need one more row: curate also edits the
        # documents it keeps (normalization, boilerplate lines removed, PII placeholders), so
        # the kept documents as collected are not the kept documents as curated.
        before = _rows(con, "SELECT sum(r.n_tokens)::BIGINT AS tokens, sum(r.chars)::BIGINT AS chars "
                            "FROM curated c JOIN raw r ON r.id = c.id")[0]
        out["edited"] = {k: (before[k] - out["kept"][k]) if before[k] is not None and out["kept"].get(k)
                         is not None else None for k in ("tokens", "chars")}
        out["closes_tokens"] = (remaining.get("tokens") is not None and out["edited"]["tokens"] is not None
                                and remaining["tokens"] - out["edited"]["tokens"] == out["kept"]["tokens"])
    return out


def composition(ws: Workspace, con, have: dict) -> dict:
    out: dict = {"available": have.get("curated", False)}
    if out["available"]:
        out["total"] = _totals(con, "curated")
        for dim in DIMENSIONS:
            out[dim] = _breakdown(con, "curated", dim, limit=10 if dim == "domain" else None)
        out["domains"] = _rows(con, "SELECT count(DISTINCT domain) AS n FROM curated")[0]["n"]
    out["model"] = model_shares(ws, con)
    return out


def model_shares(ws: Workspace, con) -> dict:
    """The token shares that went into the model, as the train stage recorded them (tokens drawn
    by its sampler, after the mix weights and repetition caps), beside the shares of its packed
    data (model/data/docs.parquet, each document once), so the effect of the mix is visible."""
    art = ws.ledger.latest_artifact("train", "model", role="main")
    out: dict = {"available": art is not None}
    if art is None:
        return out
    meta = art.get("meta") or {}
    out["artifact"] = art["path"]
    out["artifact_sha256"] = art["sha256"]
    out["recorded"] = meta.get("token_shares")
    out["meta"] = {k: v for k, v in meta.items() if k != "token_shares" and not isinstance(v, dict | list)}
    idx = ws.stage_dir("train") / "data" / "docs.parquet"
    if idx.exists():
        names = pq.read_schema(idx).names
        q = idx.as_posix().replace("'", "''")
        out["total_tokens"] = _rows(con, f"SELECT sum(n_tokens)::BIGINT AS t FROM read_parquet('{q}')")[0]["t"]
        out["documents"] = _rows(con, f"SELECT count(DISTINCT doc_id) AS n FROM read_parquet('{q}')")[0]["n"]
        out["computed"] = {}
        for dim in ("source", "license", "jurisdiction", "lang"):
            if dim in names:
                rows = _rows(con, f"""SELECT coalesce(CAST({dim} AS VARCHAR), '(unknown)') AS value,
                    sum(n_tokens)::BIGINT AS tokens FROM read_parquet('{q}') GROUP BY 1 ORDER BY tokens DESC""")
                tot = sum(r["tokens"] or 0 for r in rows) or 1
                out["computed"][dim] = {r["value"]: r["tokens"] / tot for r in rows}
    return out


def flat_shares(shares) -> dict[str, dict[str, float]]:
    """Token shares as {dimension: {value: share}}. The train stage records
    {dimension: {value: {"tokens": n, "share": x}}} plus a "replay" total; a flat {value: share}
    is read as by source."""
    if not isinstance(shares, dict) or not shares:
        return {}
    if not any(isinstance(v, dict) for v in shares.values()):
        return {"source": {k: float(v) for k, v in shares.items() if isinstance(v, int | float)}}
    out: dict[str, dict[str, float]] = {}
    for dim, vals in shares.items():
        if not isinstance(vals, dict) or "share" in vals:  # "replay": a total, not a dimension
            continue
        d = {k: float(v["share"] if isinstance(v, dict) else v) for k, v in vals.items()
             if isinstance(v, int | float) or (isinstance(v, dict) and isinstance(v.get("share"), int | float))}
        if d:
            out[dim] = d
    return out


# --- tokenizer, training, evaluation ----------------------------------------------------------

def fertility(ws: Workspace) -> dict:
    path = ws.stage_dir("tokenizer") / "fertility.json"
    return {"available": path.exists(), "path": "tokenizer/fertility.json", "data": read_json(path, default=None)}


def training(ws: Workspace) -> dict:
    """Every numeric series in model/metrics.jsonl, by step (loss, bits per byte, learning rate)."""
    path = ws.stage_dir("train") / "metrics.jsonl"
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill mid-write
    series: dict[str, list[tuple[float, float]]] = {}

    def add(name, x, v):
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            series.setdefault(name, []).append((x, v))

    for i, r in enumerate(rows):
        x = r.get("step", i)
        for k, v in r.items():
            if k in ("step", "time"):
                continue
            if isinstance(v, dict):  # per language, e.g. held-out {"bpb": {"ko": 1.9}}
                for sub, y in v.items():
                    add(f"{k} {sub}", x, y)
            else:
                add(k, x, v)
    art = ws.ledger.latest_artifact("train", "model", role="main")
    meta = (art or {}).get("meta") or {}
    summary = {k: meta.get(k) for k in ("how", "params", "steps", "tokens", "final_loss", "bpb_start", "bpb_end",
                                        "stopped", "world_size") if k in meta}
    return {"available": bool(rows), "path": "model/metrics.jsonl", "rows": len(rows), "series": series,
            "summary": summary}


def evaluation(ws: Workspace) -> dict:
    art = ws.ledger.latest_artifact("evaluate", "results")
    if art is None:
        return {"available": False}
    return {"available": True, "path": art["path"], "data": read_json(ws.root / art["path"], default=None)}


def base_model(ws: Workspace) -> dict | None:
    """The pretrained model this workspace's model was adapted from, as its base_model artifact
    records it (name, license, source sha256, quantization, parameters), or None when the model
    was trained from scratch."""
    recs = [r for r in ws.ledger.artifacts() if r["kind"] == "base_model"]
    if not recs:
        return None
    rec = recs[-1]
    meta = rec.get("meta") or {}
    return {"name": meta.get("name") or rec["path"], "license": meta.get("license"), "path": rec["path"],
            "sha256": meta.get("source_sha256") or meta.get("sha256") or rec["sha256"],
            "quantization": meta.get("quantization"),
            "params": meta.get("params"), "origin": meta.get("origin")}


def base_model_text(base: dict | None) -> str:
    """One line naming the base model and its license, for the card, the page and the EU summary."""
    if base is None:
        return "none: trained from scratch"
    extra = ", ".join(x for x in (base.get("params") and f"{base['params']:,} parameters",
                                  base.get("quantization") and f"source quantization {base['quantization']}",
                                  base.get("origin") and f"from {base['origin']}") if x)
    return (f"{base['name']} (license {base.get('license') or 'not recorded'}"
            + (f"; {extra}" if extra else "") + f"; sha256 {str(base['sha256'])[:16]})")


def _value_ci(v, ci, digits: int) -> str:
    if not isinstance(v, int | float):
        return "—"
    return f"{v:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def _diff_text(c: dict | None) -> str:
    """A comparison as one line: the difference, its paired 95% CI and whether it is claimed."""
    if not c:
        return ""
    if c.get("ci95") is None:
        return f"{c['diff']:+.4f} (no CI; {c.get('note') or 'not computed'})"
    verdict = "significant" if c["significant"] else "not significant"
    return (f"{c['diff']:+.4f} [{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}] {verdict}"
            + (f" ({c['note']})" if c.get("note") else ""))


def side_by_side(data) -> dict | None:
    """The evaluate stage's results as the report and the model card show them: every model in
    one column (the base first when there is one), per language its held-out bits per byte with
    the 95% CI and its tokenizer's fertility, per set its scores with CIs, degenerate flags and
    the chance and majority-class levels, each difference to the reference with its CI, and every
    model's greedy answers to the fixed national prompts. Cells carry their display text, so the
    page and the card say the same thing."""
    if not isinstance(data, dict) or not isinstance(data.get("models"), list) or not data["models"]:
        return None
    # The base first: it is the reference every other model is read against.
    models = sorted(data["models"], key=lambda m: m.get("role") != "base")
    ref = models[0]["label"]
    comp = {(c["set"], c["metric"], c["model"]): c for c in data.get("comparisons") or [] if c["reference"] == ref}
    held = data.get("heldout") or {}
    langs = list(dict.fromkeys(lang for m in models for lang in (m.get("bpb") or {})))
    bpb = []
    for lang in sorted(langs, key=lambda x: (x == "en", x)):  # English, the forgetting check, last
        cells = [(m.get("bpb") or {}).get(lang) or {} for m in models]
        forgetting = bool((held.get(lang) or {}).get("forgetting_check"))
        bpb.append({"lang": lang, "title": lang + (" (forgetting check)" if forgetting else ""),
                    "units": (held.get(lang) or {}).get("units", (held.get(lang) or {}).get("docs")),
                    "cells": [{"value": c.get("bpb"), "ci95": c.get("ci95"), "note": c.get("note"),
                               "text": _value_ci(c.get("bpb"), c.get("ci95"), 4)
                               + (f" ({c['note']})" if c.get("note") else ""),
                               "tokens_per_char": c.get("tokens_per_char")} for c in cells],
                    "diffs": [_diff_text(comp.get((f"heldout_{lang}", "bpb", m["label"]))) for m in models[1:]]})
    sets = []
    for name, info in (data.get("sets") or {}).items():
        for metric in (["acc", "acc_norm"] if info.get("type") == "mc" else ["exact_match"]):
            cells = [((m.get("sets") or {}).get(name) or {}) for m in models]
            sets.append({"set": name, "language": info.get("language"), "metric": metric, "n": info.get("limit"),
                         "chance": info.get("chance"), "majority": info.get("majority"),
                         "majority_answer": info.get("majority_answer"),
                         "cells": [{"value": c.get(metric), "ci95": c.get(f"{metric}_ci95"),
                                    "degenerate": (c.get("degenerate") or {}).get(metric),
                                    "text": _value_ci(c.get(metric), c.get(f"{metric}_ci95"), 3)
                                    + (f" ⚠ {(c.get('degenerate') or {})[metric]}"
                                       if (c.get("degenerate") or {}).get(metric) else "")} for c in cells],
                         "diffs": [_diff_text(comp.get((name, metric, m["label"]))) for m in models[1:]]})
    prompts = []
    for lang, ps in (data.get("prompts") or {}).items():
        got = [(m.get("answers") or {}).get(lang) or [] for m in models]
        prompts += [{"lang": lang, "prompt": p, "answers": [a[i] if i < len(a) else None for a in got]}
                    for i, p in enumerate(ps)]
    return {"models": [{"label": m["label"], "role": m.get("role"), "path": m.get("path")} for m in models],
            "reference": ref, "bpb": bpb, "sets": sets, "prompts": prompts}


# --- the ledger itself ------------------------------------------------------------------------

def ledger_status(ws: Workspace) -> dict:
    led = ws.ledger
    problems = led.verify()
    recs = led.records()
    head = recs[-1]["hash"] if recs else None
    arts = [{"stage": a["stage"], "kind": a["kind"], "path": a["path"], "sha256": a["sha256"],
             "seq": a["seq"], "time": a["time"], "config_hash": a.get("config_hash", ""),
             "inputs": a.get("inputs", [])} for a in led.artifacts()]
    order = {s: i for i, s in enumerate(build_order())}
    arts.sort(key=lambda a: (order.get(a["stage"], 99), a["seq"]))
    served = [e for e in led.records("event") if e.get("event") == "serve"]
    anchor = led.anchored()
    return {"ok": not problems, "problems": [str(p) for p in problems], "records": len(recs),
            "head": head, "artifacts": arts, "anchor": str(anchor) if anchor else None,
            # which egress protection the last `soberan serve` ran under (docs/serve.md)
            "serve_egress": served[-1].get("egress") if served else None,
            "sources": [{k: r.get(k) for k in ("name", "kind", "location", "license", "jurisdiction",
                                                "collected_at")} for r in led.records("source")]}


def build_history(ws: Workspace) -> list[dict]:
    return [{k: e.get(k) for k in ("time", "stage", "phase", "action", "reason", "seconds")}
            for e in ws.ledger.records("event") if e.get("event") == "build" and e.get("phase") != "start"]
