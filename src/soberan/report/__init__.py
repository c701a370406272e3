"""`soberan report`: the sovereignty report, generated from the ledger.

One self-contained HTML page (inline CSS and SVG charts, no script, nothing fetched) and the same
facts as JSON, plus the EU AI Act training-data summary (Markdown and JSON), a Hugging Face model
card and Croissant metadata for the curated dataset, all in `report/`. Every number is read from
the ledger, the decision log or an artifact; the report records itself as an artifact made from
every artifact it read.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from soberan.documents import write_text_atomic
from soberan.workspace import Workspace


@dataclass
class ReportSummary:
    folder: Path
    html: Path
    json: Path
    eu_markdown: Path
    eu_json: Path
    model_card: Path
    croissant: Path | None
    ledger_ok: bool
    takedowns: int


def takedown_facts(ws: Workspace) -> list[dict]:
    """Each take-down, what it marked stale, whether that was rebuilt, how many of its documents
    any current artifact still holds (zero once rebuilt), and the model's token shares before and
    after."""
    import pyarrow.parquet as pq

    from soberan.report.facts import flat_shares
    from soberan.report.takedown import find_affected
    from soberan.stages import main_artifacts
    from soberan.takedown import DOCS, takedown_requests

    main = main_artifacts()
    led = ws.ledger
    events = led.records("event")
    arts = led.records("artifact")
    docs_file = led.dir / DOCS
    docs = pq.read_table(docs_file).to_pylist() if docs_file.exists() else []
    out = []
    for t in takedown_requests(ws):
        tid = t["takedown"]
        ids = {d["doc_id"] for d in docs if d["takedown"] == tid}
        still = [a for a in find_affected(ws, ids) if a.docs]
        marked = []
        for e in events:
            if e.get("event") == "stale" and e.get("takedown") == tid:
                # An earlier report (its token cache holds document ids) is replaced by this one.
                rebuilt = e["stage"] == "report" or any(r["seq"] > e["seq"] and (r["path"] == e["path"] or (
                    r["stage"] == e["stage"] and main.get(r["stage"]) == r["kind"])) for r in arts)
                marked.append({"path": e["path"], "stage": e["stage"], "kind": e["kind"], "docs": e.get("docs", 0),
                               "derived_from": e.get("derived_from", []), "rebuilt": rebuilt})
        models = [r for r in arts if r["stage"] == "train" and r["kind"] == "model"]
        before = [r for r in models if r["seq"] < t["seq"]]
        after = [r for r in models if r["seq"] > t["seq"]]
        sb = flat_shares((before[-1].get("meta") or {}).get("token_shares")).get("source", {}) if before else {}
        sa = flat_shares((after[-1].get("meta") or {}).get("token_shares")).get("source", {}) if after else {}
        out.append({"takedown": tid, "by": t["by"], "value": t["value"], "reason": t["reason"],
                    "time": t["time"], "docs": t["docs"], "by_source": t.get("by_source", {}),
                    "artifacts": marked, "remaining_docs": sum(a.docs for a in still),
                    "remaining_in": [a.path for a in still],
                    "shares_before": sb, "shares_after": sa, "share_keys": sorted(set(sb) | set(sa))})
    return out


def fertility_table(data) -> dict | None:
    """The fertility measurement as a table. The tokenizer stage writes {tokenizer: {language:
    {metric: value}}} (plus "before"/"after" naming two of them): one row per tokenizer and
    language. Any other shape: every numeric leaf with its path."""
    if isinstance(data, dict):
        shaped = {k: v for k, v in data.items() if isinstance(v, dict)}
        if shaped and all(isinstance(x, dict) for v in shaped.values() for x in v.values()):
            metrics = list(dict.fromkeys(m for v in shaped.values() for x in v.values() for m, y in x.items()
                                         if isinstance(y, int | float) and not isinstance(y, bool)))
            role = {v: k for k, v in data.items() if isinstance(v, str)}
            rows = [[f"{name} ({role[name]})" if name in role else name, lang] + [x.get(m) for m in metrics]
                    for name, langs in shaped.items() for lang, x in langs.items()]
            return {"header": ["tokenizer", "language"] + [m.replace("_", " ") for m in metrics], "rows": rows}
    rows: list[list] = []

    def walk(v, path):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, path + [str(k)])
        elif isinstance(v, list):
            for i, x in enumerate(v):
                label = x.get("name") or x.get("tokenizer") or x.get("lang") if isinstance(x, dict) else None
                walk(x, path + [str(label or i)])
        elif isinstance(v, int | float) and not isinstance(v, bool):
            rows.append(path + [v])

    walk(data, [])
    if not rows:
        return None
    width = max(len(r) for r in rows)
    rows = [r[:-1] + [""] * (width - len(r)) + [r[-1]] for r in rows]
    return {"header": [f"key {i + 1}" for i in range(width - 1)] + ["value"], "rows": rows}


def _is_lang(code: str) -> bool:
    from soberan.config import check_language

    try:
        check_language(code)
        return len(code) <= 3
    except ValueError:
        return False


def _fertility_chart(data) -> str | None:
    """Tokens per character (or per word) by language, one bar per tokenizer, when the
    measurement names them."""
    from soberan import charts

    tab = fertility_table(data)
    if not tab:
        return None
    pick = None
    for metric in ("tokens_per_char", "tokens_per_character", "fertility", "tokens_per_word"):
        if any(metric in r[:-1] for r in tab["rows"]):
            pick = metric
            break
    if pick is None:
        return None
    series: dict[str, dict[str, float]] = {}
    for r in tab["rows"]:
        keys = [k for k in r[:-1] if k and k != pick]
        if pick not in r[:-1] or len(keys) < 2:
            continue
        # One key is the language (an ISO code), the other the tokenizer or before/after.
        label, lang = (keys[-1], keys[0]) if _is_lang(keys[0]) and not _is_lang(keys[-1]) else (keys[0], keys[-1])
        series.setdefault(label, {})[lang] = float(r[-1])
    langs = sorted({lang for s in series.values() for lang in s})
    if not langs:
        return None
    return charts.grouped_bars("fertility", langs, {k: [v.get(lang, 0.0) for lang in langs] for k, v in series.items()},
                               ylabel=pick.replace("_", " "))


def eval_table(rows: list[dict]) -> dict:
    """Rows as task/metric × model, for the side-by-side table."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    cells: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        cells.setdefault((r["task"], r["metric"]), {})[r["model"]] = r["value"]
    return {"models": models, "rows": [{"task": t, "metric": m, "values": [v.get(x) for x in models]}
                                       for (t, m), v in cells.items()]}


def make_charts(f: dict) -> dict[str, str | None]:
    from soberan import charts

    out: dict[str, str | None] = {}
    fu = f["funnel"]
    if fu.get("available"):
        labels = ["collected"] + [s["step"] for s in fu["steps"]]
        vals = [fu["collected"]["docs"]] + [s["remaining"]["docs"] for s in fu["steps"]]
        out["funnel"] = charts.hbar("funnel", labels, vals, xlabel="documents remaining after each step")
    c = f["composition"]
    if c.get("available"):
        for dim in ("lang", "source", "license", "jurisdiction", "domain"):
            rows = c[dim]
            use_tokens = all(r["tokens"] is not None for r in rows)
            out[f"comp_{dim}"] = charts.hbar(f"composition-{dim}", [r["value"] for r in rows],
                                             [r["tokens"] if use_tokens else r["chars"] for r in rows],
                                             xlabel="tokens" if use_tokens else "characters")
    shares = f.get("model_shares_flat", {}).get("source")
    if shares:
        out["model_shares"] = charts.hbar("model-token-shares", list(shares), [100 * v for v in shares.values()],
                                          xlabel="% of training tokens, by source", fmt="{:.1f}%")
    tr = f["training"]
    if tr.get("available"):
        s = tr["series"]
        loss = {k: v for k, v in s.items() if "loss" in k}
        bpb = {k: v for k, v in s.items() if "bpb" in k or "bits_per_byte" in k}
        if (tr.get("summary") or {}).get("bpb_end"):  # the train stage's last held-out measurement
            last = tr["summary"].get("steps") or max((x for pts in s.values() for x, _ in pts), default=0)
            for lang, v in tr["summary"]["bpb_end"].items():
                pts = bpb.setdefault(f"bpb {lang}", [])
                if isinstance(v, int | float) and (not pts or pts[-1][0] < last):
                    bpb[f"bpb {lang}"] = pts + [(last, v)]
        out["train_loss"] = charts.lines("training-loss", loss, ylabel="loss (nats/token)")
        out["train_bpb"] = charts.lines("training-bpb", bpb, ylabel="bits per byte")
        if not loss and not bpb:
            out["train_other"] = charts.lines("training", s)
    if f["fertility"].get("available"):
        out["fertility"] = _fertility_chart(f["fertility"]["data"])
    table = f["evaluation"].get("table")
    if table and table["rows"]:
        rows = table["rows"]  # every row: one per line, so labels never overlap however many
        out["evaluation"] = charts.hbar_groups("evaluation", [f"{r['task']} {r['metric']}" for r in rows],
                                               {m: [r["values"][i] for r in rows]
                                                for i, m in enumerate(table["models"])}, xlabel="score")
    return out


def gather(ws: Workspace, cache_dir: Path) -> tuple[dict, object]:
    """Every fact of the report, and the DuckDB connection they were read with."""
    from importlib.metadata import version

    from soberan.report import facts as F
    from soberan.report.card import eval_rows, model_label
    from soberan.report.eu import eu_summary

    cfg = ws.config
    f: dict = {
        "generated_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "soberan_version": version("soberan"),
        "workspace": {"name": cfg.project.name, "provider": cfg.project.provider,
                      "jurisdiction": cfg.project.jurisdiction, "languages": list(cfg.project.languages),
                      "description": cfg.project.description},
        # Verified first, before this run writes anything under report/.
        "ledger": F.ledger_status(ws),
    }
    con = ws.ledger.connect()
    have = F.corpus_views(ws, con, cache_dir)
    f["read_errors"] = have["errors"]
    f["tokens_unit"] = f"tokenizer {have['tokenizer']}" if have["tokenizer"] else "characters (no tokenizer yet)"
    f["funnel"] = F.funnel(ws, con, have)
    f["composition"] = F.composition(ws, con, have)
    f["model_shares_flat"] = F.flat_shares((f["composition"]["model"] or {}).get("recorded")) or \
        (f["composition"]["model"] or {}).get("computed") or {}
    f["fertility"] = F.fertility(ws)
    f["fertility_table"] = fertility_table(f["fertility"]["data"]) if f["fertility"]["available"] else None
    f["training"] = F.training(ws)
    f["base_model"] = F.base_model(ws)
    f["base_model_text"] = F.base_model_text(f["base_model"])
    f["evaluation"] = F.evaluation(ws)
    f["eval_rows"] = eval_rows(f["evaluation"].get("data")) if f["evaluation"]["available"] else []
    if f["evaluation"]["available"]:
        data = f["evaluation"]["data"]
        f["evaluation"]["model_label"] = model_label(ws, data)
        f["evaluation"]["comparisons"] = (data.get("comparisons") or []) if isinstance(data, dict) else []
        f["evaluation"]["table"] = eval_table(f["eval_rows"])
        f["evaluation"]["side_by_side"] = F.side_by_side(data)
    f["takedowns"] = takedown_facts(ws)
    f["build"] = F.build_history(ws)
    f["eu_summary"] = eu_summary(ws, f, con)
    return f, con


def run(ws: Workspace, *, license: str | None = None) -> ReportSummary:
    """Write the report into `report/` and record it in the ledger. `license` is the model's
    licence for the model card (an SPDX id); without one the card says `other`."""
    import jinja2

    from soberan.offline import airgap
    from soberan.report.card import croissant, model_card
    from soberan.report.eu import eu_markdown

    airgap()
    out = ws.stage_dir("report")
    f, _con = gather(ws, out / "cache")
    card = model_card(ws, f, license=license)
    cro = croissant(ws, f)
    charts = make_charts(f)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=True, keep_trailing_newline=True)
    html = env.get_template("report.html").render(
        f=f, charts=charts, model_card=card,
        croissant=json.dumps(cro, indent=1, ensure_ascii=False) if cro else None)

    s = ReportSummary(
        folder=out,
        html=write_text_atomic(out / "index.html", html),
        json=write_text_atomic(out / "report.json", json.dumps(f, indent=1, ensure_ascii=False, default=str)),
        eu_markdown=write_text_atomic(out / "eu_training_summary.md", eu_markdown(f["eu_summary"])),
        eu_json=write_text_atomic(out / "eu_training_summary.json",
                                  json.dumps(f["eu_summary"], indent=1, ensure_ascii=False, default=str)),
        model_card=write_text_atomic(out / "model_card" / "README.md", card),
        croissant=write_text_atomic(out / "croissant.json",
                                    json.dumps(cro, indent=1, ensure_ascii=False)) if cro else None,
        ledger_ok=f["ledger"]["ok"], takedowns=len(f["takedowns"]))
    used = [a for a in ws.ledger.artifacts() if a["stage"] != "report"]
    ws.ledger.record_artifact(
        stage="report", kind="report", path=out, inputs=[a["hash"] for a in used],
        config_hash=ws.config.section_hash("project", "policy"),
        meta={"ledger_ok": s.ledger_ok, "takedowns": s.takedowns,
              "documents_kept": (f["funnel"].get("kept") or {}).get("docs"),
              "training_tokens": (f["composition"]["model"] or {}).get("total_tokens")})
    return s
