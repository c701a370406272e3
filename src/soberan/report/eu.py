"""The EU AI Act training-data summary (Art. 53(1)(d)), written from the ledger.

It follows the "Template for the Public Summary of Training Content for general-purpose AI
models" the AI Office published in July 2025: 1. general information (provider, model, modalities,
data size, content types, latest collection date, languages), 2. data sources (publicly available
datasets; private datasets from third parties; crawled data with the crawler, its robots.txt
behaviour, the collection period and the top 10% of domains by size; user data; synthetic data;
other) and 3. data processing (how reservations of rights were honoured; how unlawful content and
personal data were removed). Every value is read from the config, the ledger or an artifact;
where the record says nothing, the summary says so rather than guess.
"""

from __future__ import annotations

import math
import re

# Template section 1.3: training data size per modality, in bins (text: tokens).
SIZE_BINS = ((1_000_000_000, "Less than 1 billion tokens"),
             (10_000_000_000_000, "1 billion to 10 trillion tokens"),
             (math.inf, "More than 10 trillion tokens"))
TEMPLATE = ("Template for the Public Summary of Training Content for general-purpose AI models, "
            "AI Office, July 2025 (Article 53(1)(d) of Regulation (EU) 2024/1689)")
# A licence reference naming a paid or contractual licence puts a source in section 2.2.1.
_LICENSED = re.compile(r"proprietary|commercial|licensed|contract|agreement|paid", re.I)


def size_bin(tokens: int | None) -> str | None:
    if tokens is None:
        return None
    return next(label for bound, label in SIZE_BINS if tokens < bound)


def source_section(kind: str, license: str) -> str:
    """Where a source belongs in section 2 of the template, from its kind and licence."""
    if kind == "crawl":
        return "crawled"
    if license.startswith("LicenseRef-") and _LICENSED.search(license):
        return "licensed"
    return "public"


def _source_rows(ws, facts: dict) -> list[dict]:
    comp = facts["composition"]
    kept = {r["value"]: r for r in comp.get("source", [])} if comp.get("available") else {}
    model = (facts["composition"].get("model") or {}).get("computed", {}).get("source", {})
    taken = {t["value"]: t for t in facts.get("takedowns", []) if t["by"] == "source"}
    rows = []
    for s in ws.config.sources:
        k = kept.get(s.name, {})
        rows.append({
            "name": s.name, "kind": s.kind, "license": s.license, "jurisdiction": s.jurisdiction,
            "description": s.description, "location": s.path if s.path else ", ".join(s.urls),
            "section": source_section(s.kind, s.license), "modality": "text",
            "documents": k.get("docs", 0), "tokens": k.get("tokens"),
            "model_token_share": model.get(s.name),
            "taken_down": taken[s.name]["reason"] if s.name in taken else None,
            "crawler": ({"user_agent": s.user_agent, "max_pages": s.max_pages, "max_depth": s.max_depth,
                         "rate_limit_s": s.rate_limit_s, "seeds": list(s.urls)}
                        if s.kind == "crawl" else None),
        })
    return rows


def _top_domains(con, sources: list[str]) -> tuple[list[dict], int]:
    """The top 10% of crawled domains by tokens (at least one), and how many domains there are."""
    if not sources:
        return [], 0
    ph = ", ".join("?" * len(sources))
    rows = con.execute(f"""SELECT domain, count(*) AS docs, sum(coalesce(n_tokens, chars))::BIGINT AS size
                           FROM curated WHERE source IN ({ph}) GROUP BY 1 ORDER BY size DESC, domain""",
                       sources).fetchall()
    n = max(1, math.ceil(0.10 * len(rows))) if rows else 0
    return [{"domain": d, "documents": c, "size": s} for d, c, s in rows[:n]], len(rows)


def eu_summary(ws, facts: dict, con) -> dict:
    cfg = ws.config
    comp = facts["composition"]
    model = comp.get("model") or {}
    meta = model.get("meta") or {}
    kept = comp.get("total") or {}
    tokens = model.get("total_tokens") or kept.get("tokens")
    srcs = _source_rows(ws, facts)
    crawled = [s for s in srcs if s["section"] == "crawled"]
    dates = {}
    if comp.get("available"):
        r = con.execute("SELECT min(collected_at), max(collected_at) FROM curated").fetchall()[0]
        dates = {"first": r[0].isoformat() if r[0] else None, "latest": r[1].isoformat() if r[1] else None}
        if crawled:
            ph = ", ".join("?" * len(crawled))
            c = con.execute(f"SELECT min(collected_at), max(collected_at) FROM curated WHERE source IN ({ph})",
                            [s["name"] for s in crawled]).fetchall()[0]
            dates["crawl"] = {"from": c[0].isoformat() if c[0] else None, "to": c[1].isoformat() if c[1] else None}
    top, n_domains = _top_domains(con, [s["name"] for s in crawled]) if comp.get("available") else ([], 0)
    langs = [{"language": r["value"], "share": r["share"]} for r in comp.get("lang", [])]
    content = sorted({s["description"] for s in srcs if s["description"]}) or \
        [f"{s['kind']} source {s['name']}" for s in srcs]

    steps = facts["funnel"].get("steps", [])
    dropped = [{"step": st["step"], "rule": r["rule"], "documents": r["docs"], "example": r["example_reason"]}
               for st in steps for r in st["reasons"]]
    # Personal data: the redactions of the PII step (other steps' `redacted` rows are text edits,
    # e.g. langid removing lines in another language).
    redacted = [{"step": st["step"], "rule": r["rule"], "documents": r["docs"]}
                for st in steps if "pii" in st["step"].lower() for r in st.get("redacted", [])]
    takedowns = facts.get("takedowns", [])
    return {
        "template": TEMPLATE,
        "general_information": {
            "provider": cfg.project.provider,
            "model_name": cfg.project.name,
            "model_version": (model.get("artifact_sha256") or "")[:12] or None,
            # The ledger's base_model artifact (name and license); else what train noted, if anything.
            "base_model": (facts.get("base_model_text") if facts.get("base_model") else None)
            or meta.get("base_model") or (meta.get("init") if isinstance(meta.get("init"), str) else None),
            "base_model_license": (facts.get("base_model") or {}).get("license"),
            "modalities": ["text"],
            "training_data_size": {"text": {"tokens": tokens, "bin": size_bin(tokens)}},
            "content_types": content,
            "latest_collection_date": dates.get("latest"),
            "languages": langs,
            "jurisdictions": [r["value"] for r in comp.get("jurisdiction", [])],
        },
        "data_sources": {
            "publicly_available_datasets": [s for s in srcs if s["section"] == "public"],
            "private_third_party_datasets": {
                "licensed_by_rightsholders": [s for s in srcs if s["section"] == "licensed"],
                "other": [],
            },
            "crawled_data": {
                "used": bool(crawled),
                "crawlers": [{"source": s["name"], **(s["crawler"] or {})} for s in crawled],
                "purpose": "collecting training text for this model" if crawled else None,
                "behaviour": ("robots.txt is fetched before a site is crawled and honoured as RFC 9309 "
                              "says (disallow rules; Crawl-delay can only slow the crawler); only domains under policy.crawl_domains "
                              f"({', '.join(cfg.policy.crawl_domains) or 'none'}) are visited, redirects "
                              "included; no login, paywall or CAPTCHA is passed") if crawled else None,
                "collection_period": dates.get("crawl"),
                "sources": crawled,
                "top_domains": top,
                "domains_total": n_domains,
                "top_domains_rule": "top 10% of domain names by size of content (tokens) scraped",
            },
            "user_data": {"used": False, "detail": "No data from users of this model or of other services: "
                          "the build reads only the sources listed in soberan.toml, all recorded in the ledger."},
            "synthetic_data": {"used": False, "detail": "No AI-generated training data: no source is "
                               "synthetic and no stage generates training text."},
            "other": [],
        },
        "data_processing": {
            "reservation_of_rights": {
                "licences_allowed": list(cfg.policy.licenses),
                "jurisdictions_allowed": list(cfg.policy.jurisdictions),
                "robots_txt": bool(crawled),
                "takedowns": [{"id": t["takedown"], "by": t["by"], "value": t["value"], "reason": t["reason"],
                               "documents": t["docs"], "time": t["time"]} for t in takedowns],
                "measures": ("Every source is admitted only under a licence and jurisdiction the policy lists; "
                             + ("crawling honours robots.txt; " if crawled else "")
                             + "a take-down request removes the named documents from every artifact, which is "
                               "then rebuilt and re-recorded in the ledger."),
            },
            "unlawful_content_and_personal_data": {
                "documents_dropped_by_rule": dropped,
                "documents_redacted_by_rule": redacted,
                "measures": ("Curation steps as recorded in the ledger's decision log: "
                             + (", ".join(st["step"] for st in steps) or "none recorded") + ". "
                             + (f"Personal data: {sum(r['documents'] for r in redacted):,} document(s) had "
                                "identifiers replaced by typed placeholders. " if redacted else
                                "No personal data redaction is recorded. ")
                             + "No classifier for other unlawful content is run; sources are limited to the "
                               "policy's licences and jurisdictions."),
            },
            "other": {"ledger_head": facts["ledger"]["head"], "ledger_verified": facts["ledger"]["ok"]},
        },
    }


def _fmt(v) -> str:
    if v is None:
        return "not recorded"
    if isinstance(v, float):
        return f"{v:.2%}" if v <= 1 else f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _src_table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["None.", ""]
    out = ["| source | kind | licence | jurisdiction | documents | tokens | description |",
           "|---|---|---|---|---|---|---|"]
    for s in rows:
        td = f" (taken down: {s['taken_down']})" if s.get("taken_down") else ""
        out.append(f"| {s['name']}{td} | {s['kind']} | {s['license']} | {s['jurisdiction']} | "
                   f"{_fmt(s['documents'])} | {_fmt(s['tokens'])} | {s['description'] or '—'} |")
    return out + [""]


def eu_markdown(s: dict) -> str:
    g, d, p = s["general_information"], s["data_sources"], s["data_processing"]
    size = g["training_data_size"]["text"]
    L = [f"# Public summary of training content: {g['model_name']}", "", f"_{s['template']}._", "",
         "## 1. General information", "",
         f"- **Provider:** {g['provider']}",
         f"- **Model:** {g['model_name']}, version {g['model_version'] or 'not recorded'}",
         f"- **Base model:** {g['base_model'] or 'none: trained from scratch'}",
         f"- **Modalities:** {', '.join(g['modalities'])}",
         f"- **Training data size (text):** {size['bin'] or 'not recorded'} ({_fmt(size['tokens'])} tokens)",
         f"- **Types of content:** {'; '.join(g['content_types'])}",
         f"- **Latest date of data collection:** {g['latest_collection_date'] or 'not recorded'}",
         "- **Languages:** " + (", ".join(f"{x['language']} ({_fmt(x['share'])})" for x in g["languages"])
                                or "not recorded"),
         "", "## 2. List of data sources", "",
         "### 2.1 Publicly available datasets", "", *_src_table(d["publicly_available_datasets"]),
         "### 2.2 Private non-publicly available datasets obtained from third parties", "",
         "#### 2.2.1 Datasets commercially licensed by rightsholders or their representatives", "",
         *_src_table(d["private_third_party_datasets"]["licensed_by_rightsholders"]),
         "#### 2.2.2 Other private datasets obtained from third parties", "", "None.", "",
         "### 2.3 Data crawled and scraped from online sources", ""]
    c = d["crawled_data"]
    if c["used"]:
        L += ["- **Crawlers:** " + "; ".join(f"`{x.get('user_agent')}` (source {x['source']})" for x in c["crawlers"]),
              f"- **Purpose:** {c['purpose']}", f"- **Behaviour:** {c['behaviour']}",
              f"- **Collection period:** {(c['collection_period'] or {}).get('from')} to "
              f"{(c['collection_period'] or {}).get('to')}",
              f"- **Top domains ({c['top_domains_rule']}; {len(c['top_domains'])} of {c['domains_total']}):** "
              + ", ".join(f"{x['domain']}" for x in c["top_domains"]), "", *_src_table(c["sources"])]
    else:
        L += ["No data was crawled or scraped for this model.", ""]
    L += ["### 2.4 User data", "", d["user_data"]["detail"], "",
          "### 2.5 Synthetic data", "", d["synthetic_data"]["detail"], "",
          "### 2.6 Other sources of data", "", "None.", "",
          "## 3. Data processing aspects", "",
          "### 3.1 Respect of reservation of rights from text and data mining", "",
          p["reservation_of_rights"]["measures"], "",
          f"- Licences allowed: {', '.join(p['reservation_of_rights']['licences_allowed'])}",
          f"- Jurisdictions allowed: {', '.join(p['reservation_of_rights']['jurisdictions_allowed'])}"]
    for t in p["reservation_of_rights"]["takedowns"]:
        L.append(f"- Take-down {t['id']} ({t['time']}): {t['by']} `{t['value']}`, {t['documents']} document(s) "
                 f"removed; reason: {t['reason']}")
    u = p["unlawful_content_and_personal_data"]
    L += ["", "### 3.2 Removal of illegal content", "", u["measures"], ""]
    if u["documents_dropped_by_rule"]:
        L += ["| step | rule | documents dropped |", "|---|---|---|"]
        L += [f"| {x['step']} | {x['rule']} | {x['documents']:,} |" for x in u["documents_dropped_by_rule"]]
        L.append("")
    if u["documents_redacted_by_rule"]:
        L += ["| step | personal data rule | documents redacted |", "|---|---|---|"]
        L += [f"| {x['step']} | {x['rule']} | {x['documents']:,} |" for x in u["documents_redacted_by_rule"]]
        L.append("")
    o = p["other"]
    L += ["### 3.3 Other information", "",
          f"Every figure above is generated from the workspace's hash-chained provenance ledger (head "
          f"`{o['ledger_head']}`, verification {'passed' if o['ledger_verified'] else 'FAILED'}).", ""]
    return "\n".join(L)
