"""`soberan calibrate`: per-language thresholds fitted to the nation's own text (FineWeb2's
method, Penedo et al. 2025, section 3: each filter's statistic is compared between the
language's corpus and a reference of text known to be good, and the threshold is put where it
keeps most of the reference).

It reads the signals the last curate run stored (soberan.curate.signals), so nothing is
segmented again. For each language and each rule of the configured filters (and language ID)
it shows the statistic's distribution on the corpus and on the reference, and proposes a
threshold: the reference's percentile that keeps `keep` of it, lowered until all the rules
together keep `keep` of the reference. A proposal only ever relaxes the pack's value: a rule
that already keeps the reference is left as it is, so calibration cannot make a pack stricter
than FineWeb2's.

The reference is the sources named with `--reference` (or `[curate.quality] reference_sources`),
e.g. statutes or a news agency; with none, the corpus is its own reference, which fits the
thresholds to the nation's text as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from soberan.config import ConfigError

# threshold name, statistic, "min" (drops values below) or "max" (drops values above), filter
RULES: list[tuple[str, str, str, str]] = [
    ("min_words", "content_words", "min", "gopher_quality"),
    ("min_avg_word_length", "mean_word_length", "min", "gopher_quality"),
    ("max_avg_word_length", "mean_word_length", "max", "gopher_quality"),
    ("max_symbol_word_ratio", "symbol_ratio", "max", "gopher_quality"),
    ("max_bullet_lines_ratio", "bullet_lines_ratio", "max", "gopher_quality"),
    ("max_ellipsis_lines_ratio", "end_ellipsis_lines_ratio", "max", "gopher_quality"),
    ("min_alpha_words_ratio", "alpha_words_ratio", "min", "gopher_quality"),
    ("min_stop_words", "stop_words", "min", "gopher_quality"),
    ("dup_para_frac", "dup_para_frac", "max", "gopher_repetition"),
    ("dup_para_char_frac", "dup_para_char_frac", "max", "gopher_repetition"),
    ("dup_line_frac", "dup_line_frac", "max", "gopher_repetition"),
    ("dup_line_char_frac", "dup_line_char_frac", "max", "gopher_repetition"),
    ("top_n_grams", "top_n_grams", "max", "gopher_repetition"),
    ("dup_n_grams", "dup_n_grams", "max", "gopher_repetition"),
    ("line_punct_thr", "line_punct_ratio", "min", "fineweb_quality"),
    ("short_line_thr", "short_line_ratio", "max", "fineweb_quality"),
    ("char_duplicates_ratio", "char_dup_ratio", "max", "fineweb_quality"),
    ("new_line_ratio", "new_line_ratio", "max", "fineweb_quality"),
    ("language_score", "lid_score", "min", "langid"),
]
INTEGER = {"min_words", "min_stop_words"}


@dataclass
class Rule:
    key: str  # "min_words", "top_n_grams.2"
    signal: str
    direction: str
    current: float | None
    proposed: float | None
    corpus: np.ndarray  # the statistic on the corpus
    reference: np.ndarray
    corpus_chars: np.ndarray

    def dropped(self, values: np.ndarray, thr: float | None) -> np.ndarray:
        if thr is None or not thr or len(values) == 0:
            return np.zeros(len(values), dtype=bool)
        return values < thr if self.direction == "min" else values > thr


@dataclass
class LangCalibration:
    lang: str
    reference: list[str]  # source names, [] = the corpus itself
    docs: int
    ref_docs: int
    rules: list[Rule] = field(default_factory=list)
    kept_now: tuple[float, float, float] = (0, 0, 0)  # corpus docs, corpus chars, reference docs
    kept_new: tuple[float, float, float] = (0, 0, 0)
    changes: dict = field(default_factory=dict)  # threshold name -> proposed value
    # the pack's n-gram tables: an override replaces a whole table, so a proposal for one size
    # is written with the others as they are
    tables: dict = field(default_factory=dict)


def _rows_by_lang(table, lang: str) -> list[dict]:
    import pyarrow.compute as pc

    t = table.filter(pc.and_(table.column("quality_sha").is_valid(), pc.equal(table.column("lang"), lang)))
    return t.to_pylist()


def _stats(r: dict) -> dict:
    from soberan.curate.signals import QUALITY_NAMES

    s = {k: r[k] for k in QUALITY_NAMES}
    for k in ("top_n_grams", "dup_n_grams"):
        if s[k] is not None:
            s[k] = {int(n): v for n, v in s[k]}
    return s


def _value(s: dict, signal: str, n: int | None) -> float:
    if signal == "symbol_ratio":
        v = max(s["hash_ratio"] or 0.0, s["ellipsis_ratio"] or 0.0)
    elif n is not None:
        v = (s[signal] or {}).get(n)
    else:
        v = s.get(signal)
    return float("nan") if v is None else float(v)


def _round(key: str, direction: str, v: float) -> float:
    """Round a proposal outward (never stricter than the percentile): floor a minimum, ceil a maximum."""
    name = key.split(".")[0]
    if name in INTEGER:
        return float(math.floor(v)) if direction == "min" else float(math.ceil(v))
    return math.floor(v * 1000) / 1000 if direction == "min" else math.ceil(v * 1000) / 1000


def _propose(rule: Rule, p: float) -> float | None:
    if not rule.current:
        return rule.current  # a rule that is off stays off
    ref = rule.reference[~np.isnan(rule.reference)]
    if len(ref) == 0:
        return rule.current
    q = float(np.quantile(ref, 1 - p if rule.direction == "min" else p))
    q = _round(rule.key, rule.direction, q)
    return min(rule.current, q) if rule.direction == "min" else max(rule.current, q)


def _thresholds_with(base: dict, values: dict) -> dict:
    t = dict(base)
    for key, v in values.items():
        if "." in key:
            name, n = key.split(".")
            t[name] = {**(t.get(name) or {}), int(n): v}
        else:
            t[key] = int(v) if key in INTEGER and v is not None else v
    return t


def calibrate(ws, references: list[str] | None = None, keep: float = 0.9) -> list[LangCalibration]:
    """Proposed thresholds per language from the stored signals."""
    from soberan.curate.quality import decide
    from soberan.curate.signals import read_signals
    from soberan.curate.steps import Context, min_score

    if not 0 < keep < 1:
        raise ConfigError(f"--keep {keep}: a share of the reference between 0 and 1, e.g. 0.9")
    cfg = ws.config
    refs = list(references if references is not None else cfg.curate.quality.reference_sources)
    unknown = sorted(set(refs) - {s.name for s in cfg.sources})
    if unknown:
        raise ConfigError(f"--reference {unknown}: no such source; sources are "
                          f"{[s.name for s in cfg.sources]}")
    table = read_signals(ws.root)
    ctx = Context(ws.root)
    filters = list(ctx.cur.quality.filters)
    exempt = set(ctx.cur.quality.exempt_sources)
    out = []
    for code in cfg.project.languages:
        pack = ctx.pack(code)
        rows = _rows_by_lang(table, code)
        if not rows:
            continue
        stats = [_stats(r) for r in rows]
        chars = np.array([s["chars"] or 0 for s in stats], dtype=float)
        is_ref = np.array([(r["source"] in refs) if refs else True for r in rows])
        if refs and not is_ref.any():
            raise ConfigError(f"{code}: the reference sources {refs} hold no {code} document that "
                              "reached the quality step")
        cal = LangCalibration(code, refs, len(rows), int(is_ref.sum()),
                              tables={k: dict(pack.thresholds.get(k) or {}) for k in ("top_n_grams", "dup_n_grams")})
        rules: list[Rule] = []
        for name, signal, direction, filt in RULES:
            if filt == "langid":
                if "langid" not in ctx.cur.steps:
                    continue
                label = pack.lid_label
                lid = table.filter(table.column("lid_label").is_valid()).select(
                    ["lid_label", "lid_score", "source"]).to_pylist()
                mine = [r for r in lid if r["lid_label"] == label]
                vals = np.array([r["lid_score"] for r in mine], dtype=float)
                ref = np.array([r["lid_score"] for r in mine if not refs or r["source"] in refs], dtype=float)
                rules.append(Rule(name, signal, direction, min_score(ctx.cur.langid, ctx.pack(code)), None,
                                  vals, ref, np.zeros(len(vals))))
                continue
            if filt not in filters:
                continue
            if name in ("line_punct_thr",) and not pack.sentence_end:
                continue
            ns = sorted((pack.thresholds.get(name) or {})) if name in ("top_n_grams", "dup_n_grams") else [None]
            for n in ns:
                key = f"{name}.{n}" if n is not None else name
                cur = pack.thresholds.get(name)
                cur = cur.get(n) if n is not None else cur
                vals = np.array([_value(s, signal, n) for s in stats], dtype=float)
                rules.append(Rule(key, signal, direction, cur, None, vals, vals[is_ref], chars))
        cal.rules = rules

        def kept(thr_values: dict) -> tuple[float, float, float]:
            p = replace(pack, thresholds=_thresholds_with(pack.thresholds, thr_values))
            k = np.array([r["source"] in exempt or decide(s, p, filters) is None for r, s in zip(rows, stats)])
            return (float(k.mean()), float(chars[k].sum() / max(chars.sum(), 1)),
                    float(k[is_ref].mean()) if is_ref.any() else 0.0)

        cal.kept_now = kept({})
        quality_rules = [r for r in rules if r.signal != "lid_score"]
        p = keep
        for _ in range(8):  # per-rule share, raised until the rules together keep `keep` of the reference
            for r in rules:
                r.proposed = _propose(r, p)
            changes = {r.key: r.proposed for r in quality_rules if r.proposed != r.current}
            got = kept(changes)
            if got[2] >= keep:
                break
            p = 1 - (1 - p) / 2
        cal.kept_new = got
        cal.changes = {r.key: r.proposed for r in rules if r.proposed != r.current}
        out.append(cal)
    if not out:
        raise ConfigError("no document of the project's languages reached the quality step in the "
                          "stored signals; run `soberan curate` first")
    return out


def toml_of(cals: list[LangCalibration]) -> str:
    """The proposals as `[curate.quality.thresholds.<lang>]` tables (and langid min_scores)."""
    parts = []
    scores = {}
    for c in cals:
        lines, tables = [], {}
        for key, v in sorted(c.changes.items()):
            if key == "language_score":
                scores[c.lang] = v
            elif "." in key:
                name, n = key.split(".")
                tables.setdefault(name, dict(c.tables.get(name, {})))[int(n)] = v
            else:
                lines.append(f"{key} = {int(v) if key in INTEGER else v:g}")
        for name, kv in tables.items():
            lines.append(f"{name} = {{ {', '.join(f'{n} = {x:g}' for n, x in sorted(kv.items()))} }}")
        if lines:
            parts.append(f"[curate.quality.thresholds.{c.lang}]\n" + "\n".join(lines))
    if scores:
        parts.insert(0, "[curate.langid]\nmin_scores = { " + ", ".join(f"{k} = {v:g}" for k, v in scores.items())
                     + " }")
    return "\n\n".join(parts) + "\n" if parts else ""


# --- the report: histograms with the thresholds drawn in -------------------------------------------

def histogram_svg(rule: Rule, title: str, bins: int = 30) -> str:
    """Corpus and reference as overlaid histograms (shares of documents), the pack's threshold
    dashed and the proposal solid."""
    from html import escape

    from soberan.charts import PALETTE, svg

    vals = [v[~np.isnan(v)] for v in (rule.corpus, rule.reference)]
    allv = np.concatenate(vals) if any(len(v) for v in vals) else np.zeros(1)
    lo, hi = float(np.quantile(allv, 0.0)), float(np.quantile(allv, 0.99))
    for t in (rule.current, rule.proposed):
        if t:
            lo, hi = min(lo, float(t)), max(hi, float(t))
    if hi <= lo:
        hi = lo + 1
    edges = np.linspace(lo, hi, bins + 1)
    w, h, pad = 360, 150, 28
    body = []
    hists = [np.histogram(np.clip(v, lo, hi), edges)[0] / max(len(v), 1) for v in vals]
    top = max(float(max(x.max() for x in hists)), 1e-9)
    bw = (w - 2 * pad) / bins
    for k, (hist, color) in enumerate(zip(hists, PALETTE[:2])):
        for i, y in enumerate(hist):
            bh = (h - 2 * pad) * y / top
            body.append(f'<rect x="{pad + i * bw:.1f}" y="{h - pad - bh:.1f}" width="{bw:.1f}" '
                        f'height="{bh:.1f}" fill="{color}" fill-opacity="{0.55 if k else 0.75}"/>')
    for t, dash, color, label in ((rule.current, ' stroke-dasharray="4 3"', "#444", "pack"),
                                  (rule.proposed, "", "#c8453b", "proposed")):
        if t:
            x = pad + (float(t) - lo) / (hi - lo) * (w - 2 * pad)
            body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{pad - 6}" y2="{h - pad}" stroke="{color}" '
                        f'stroke-width="2"{dash}/>')
            body.append(f'<text x="{x + 3:.1f}" y="{pad - 8}" fill="{color}">{label} {float(t):g}</text>')
    body.append(f'<text x="{pad}" y="{h - 8}">{lo:g}</text><text x="{w - pad}" y="{h - 8}" '
                f'text-anchor="end">{hi:g}</text>')
    body.append(f'<text x="{w / 2}" y="12" text-anchor="middle">{escape(title)}</text>')
    return svg(f"calibration-{rule.key}", w, h, body, title)


def report_html(cals: list[LangCalibration], keep: float) -> str:
    from html import escape

    out = ["<!doctype html><meta charset='utf-8'><title>soberan calibration</title>",
           "<style>body{font-family:system-ui,sans-serif;margin:2em}svg{width:360px;margin:4px}"
           "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd}</style>",
           f"<h1>Calibration: thresholds that keep {keep:.0%} of the reference</h1>",
           "<p>Blue: the corpus; orange: the reference. Dashed: the pack's threshold; red: the "
           "proposal. Shares of documents per bin.</p>"]
    for c in cals:
        ref = ", ".join(c.reference) or "the corpus itself"
        out.append(f"<h2>{escape(c.lang)}: {c.docs} documents, reference {escape(ref)} ({c.ref_docs})</h2>")
        out.append(f"<p>kept now: {c.kept_now[0]:.1%} of documents, {c.kept_now[1]:.1%} of characters, "
                   f"{c.kept_now[2]:.1%} of the reference; with the proposals: {c.kept_new[0]:.1%}, "
                   f"{c.kept_new[1]:.1%}, {c.kept_new[2]:.1%}</p>")
        out.append("<table><tr><th>rule</th><th>pack</th><th>proposed</th><th>corpus dropped now</th>"
                   "<th>with proposal</th><th>reference dropped now</th><th>with proposal</th></tr>")
        for r in c.rules:
            pct = lambda v, t: f"{r.dropped(v, t).mean():.1%}" if len(v) else "–"  # noqa: E731
            out.append(f"<tr><td>{escape(r.key)}</td><td>{r.current}</td><td>{r.proposed}</td>"
                       f"<td>{pct(r.corpus, r.current)}</td><td>{pct(r.corpus, r.proposed)}</td>"
                       f"<td>{pct(r.reference, r.current)}</td><td>{pct(r.reference, r.proposed)}</td></tr>")
        out.append("</table><div>")
        out += [histogram_svg(r, f"{c.lang} {r.key} ({r.signal})") for r in c.rules if len(r.corpus)]
        out.append("</div>")
    return "\n".join(out)
