"""`soberan curate --what-if 'th.min_words=10'`: the funnel a changed threshold would give,
decided from the signals the last run stored (soberan.curate.signals), before anything runs or
is written. No document is read or segmented again.

A change is `LANG.THRESHOLD=VALUE` (a name of soberan.lang.BASE_THRESHOLDS; an n-gram table entry
as `top_n_grams.2=0.25`; `off` switches a rule off), several separated by commas or given as
repeated options. `language_score` is decided again from the stored lid.176 label and score of
each document (the whole-document rule; a run also reads mixed documents line by line).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace

from soberan.config import ConfigError

_CHANGE = re.compile(r"^([A-Za-z_]+)\.([a-z_]+)(?:\.(\d+)|\[(\d+)\])?\s*=\s*(\S+)$")


@dataclass(frozen=True)
class Change:
    lang: str
    name: str
    n: int | None  # the n-gram size, for top_n_grams / dup_n_grams
    value: float | None  # None: the rule is off

    def __str__(self) -> str:
        key = f"{self.name}.{self.n}" if self.n is not None else self.name
        return f"{self.lang}.{key}={'off' if self.value is None else f'{self.value:g}'}"


def parse(exprs: list[str], languages: list[str]) -> list[Change]:
    """The changes named, or a ConfigError saying which part is wrong and what is known."""
    from soberan.lang import ALIASES, BASE_THRESHOLDS

    out = []
    for part in (p.strip() for e in exprs for p in e.split(",")):
        if not part:
            continue
        m = _CHANGE.match(part)
        if not m:
            raise ConfigError(f"--what-if {part!r}: expected LANG.THRESHOLD=VALUE, e.g. th.min_words=10")
        lang, name, n1, n2, raw = m.groups()
        lang = ALIASES.get(lang.lower(), lang.lower())
        if lang not in languages:
            raise ConfigError(f"--what-if {part!r}: unknown language {lang!r}; this workspace's "
                              f"languages are {languages} (project.languages)")
        if name not in BASE_THRESHOLDS:
            raise ConfigError(f"--what-if {part!r}: unknown signal threshold {name!r}; known: "
                              f"{sorted(BASE_THRESHOLDS)}")
        n = int(n1 or n2) if (n1 or n2) else None
        table = isinstance(BASE_THRESHOLDS[name], dict)
        if table and n is None:
            raise ConfigError(f"--what-if {part!r}: {name} is a table by n-gram size; name one, "
                              f"e.g. {lang}.{name}.{min(BASE_THRESHOLDS[name])}=0.2")
        if not table and n is not None:
            raise ConfigError(f"--what-if {part!r}: {name} takes no n-gram size")
        if raw.lower() in ("off", "none"):
            value = None
        else:
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"--what-if {part!r}: {raw!r} is not a number (or `off`)") from None
        out.append(Change(lang, name, n, value))
    if not out:
        raise ConfigError("--what-if: no change given, e.g. --what-if 'th.min_words=10'")
    return out


def apply(thresholds: dict, changes: list[Change]) -> dict:
    t = dict(thresholds)
    for c in changes:
        if c.n is not None:
            table = dict(t.get(c.name) or {})
            if c.value is None:
                table.pop(c.n, None)
            else:
                table[c.n] = c.value
            t[c.name] = table
        else:
            t[c.name] = c.value
    return t


@dataclass
class Funnel:
    """Per language: what the stored signals decide now and with the changes."""

    lang: str
    docs: int = 0
    chars: int = 0
    kept_now: int = 0
    kept_new: int = 0
    chars_now: int = 0
    chars_new: int = 0
    rules_now: Counter = field(default_factory=Counter)
    rules_new: Counter = field(default_factory=Counter)
    langid: tuple[int, int, int] | None = None  # (documents scored, passing now, passing with the change)


def what_if(ws, exprs: list[str]) -> tuple[list[Change], list[Funnel]]:
    from soberan.curate.quality import MissingSignal, decide
    from soberan.curate.signals import QUALITY_NAMES, read_signals
    from soberan.curate.steps import Context, min_score

    cfg = ws.config
    langs = list(cfg.project.languages)
    changes = parse(exprs, langs)
    table = read_signals(ws.root)
    ctx = Context(ws.root)
    filters = list(ctx.cur.quality.filters)
    exempt = set(ctx.cur.quality.exempt_sources)
    funnels = {code: Funnel(code) for code in langs}
    new_packs = {}
    for code in langs:
        pack = ctx.pack(code)
        mine = [c for c in changes if c.lang == code]
        new_packs[code] = replace(pack, thresholds=apply(pack.thresholds, mine)) if mine else pack

    rows = table.filter(table.column("quality_sha").is_valid()).to_pylist()
    for r in rows:
        code = r["lang"]
        if code not in funnels:
            continue
        f = funnels[code]
        stats = {k: r[k] for k in QUALITY_NAMES}
        for k in ("top_n_grams", "dup_n_grams"):
            if stats[k] is not None:
                stats[k] = {int(n): v for n, v in stats[k]}
        chars = stats["chars"] or 0
        f.docs += 1
        f.chars += chars
        try:
            now = None if r["source"] in exempt else decide(stats, ctx.pack(code), filters)
            new = None if r["source"] in exempt else decide(stats, new_packs[code], filters)
        except MissingSignal as e:
            raise ConfigError(f"--what-if: {e}; run `soberan curate` with it to measure it") from None
        for v, kept, rules in ((now, "now", f.rules_now), (new, "new", f.rules_new)):
            if v is None:
                setattr(f, f"kept_{kept}", getattr(f, f"kept_{kept}") + 1)
                setattr(f, f"chars_{kept}", getattr(f, f"chars_{kept}") + chars)
            else:
                rules[v.rule] += 1

    for code in langs:  # language ID, from the stored whole-document label and score
        mine = [c for c in changes if c.lang == code and c.name == "language_score"]
        if not mine:
            continue
        label = ctx.pack(code).lid_label
        lid = table.filter(table.column("lid_label").is_valid()).select(["lid_label", "lid_score"]).to_pylist()
        scores = [r["lid_score"] for r in lid if r["lid_label"] == label]
        old_min, new_min = min_score(ctx.cur.langid, ctx.pack(code)), mine[-1].value or 0.0
        funnels[code].langid = (len(scores), sum(s >= old_min for s in scores),
                                sum(s >= new_min for s in scores))
    return changes, list(funnels.values())


def print_funnel(changes: list[Change], funnels: list[Funnel], console) -> None:
    from rich.table import Table

    console.print("what-if " + ", ".join(str(c) for c in changes) + ", from the stored signals "
                  "(nothing is run or written):", markup=False)
    t = Table("language", "step", "documents in", "kept now", "kept with change", "characters kept now",
              "characters kept with change")
    for f in funnels:
        if f.langid is not None:
            n, a, b = f.langid
            t.add_row(f.lang, "langid (whole document)", f"{n:,}", f"{a:,}", f"{b:,}", "", "")
        pct = lambda x, y: f"{x:,} ({x / y:.0%})" if y else f"{x:,}"  # noqa: E731
        t.add_row(f.lang, "quality", f"{f.docs:,}", pct(f.kept_now, f.docs), pct(f.kept_new, f.docs),
                  pct(f.chars_now, f.chars), pct(f.chars_new, f.chars))
    console.print(t)
    for f in funnels:
        rules = sorted(set(f.rules_now) | set(f.rules_new), key=lambda r: -max(f.rules_now[r], f.rules_new[r]))
        if rules:
            console.print(f"{f.lang} drops by rule, now → with change: " + ", ".join(
                f"{r} {f.rules_now[r]} → {f.rules_new[r]}" for r in rules), markup=False)
