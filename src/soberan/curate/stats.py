"""`curated/stats.json`: what every step saw, kept, dropped and redacted, by rule, per language
and per source, merged from the counts each shard's worker saved in its done-marker."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from soberan.common import read_json


def _blank() -> dict:
    return {"seen": 0, "kept": 0, "dropped": 0, "redacted": 0, "dropped_by_rule": {},
            "redacted_by_rule": {}}


def _add(d: dict, action: str, rule: str, n: int) -> None:
    d[action] += n
    if action in ("dropped", "redacted") and rule:
        by = d[f"{action}_by_rule"]
        by[rule] = by.get(rule, 0) + n


def build_stats(work: Path, n_passes: int, n_shards: int, dedup: dict, minhash: dict) -> dict:
    steps: dict[str, dict] = {}
    order: list[str] = []
    rows_in = rows_out = 0
    # quality statistics computed / found stored; documents looked up in the benchmark n-grams
    # texts lid.176 read (documents and their lines), not found stored
    signals = {"measured": 0, "reused": 0, "decontam_measured": 0, "lid_measured": 0}
    for k in range(n_passes):
        for marker in sorted((work / f"pass{k}" / "done").glob("*.json")):
            m = read_json(marker)
            for what, n in m.get("signals", {}).items():
                signals[what] = signals.get(what, 0) + n
            if k == 0:
                rows_in += m["rows_in"]
            if k == n_passes - 1:
                rows_out += m["rows_out"]
            for step, source, lang, action, rule, n in m["tally"]:
                if step not in steps:
                    steps[step] = {**_blank(), "by_lang": defaultdict(_blank),
                                   "by_source": defaultdict(_blank)}
                    order.append(step)
                s = steps[step]
                _add(s, action, rule, n)
                _add(s["by_lang"][lang or "und"], action, rule, n)
                _add(s["by_source"][source], action, rule, n)
    # Steps in pipeline order: the order they were first seen in pass 0's first shard is not it
    # when a shard was empty, so sort by pass, then by the step's position in the tasks.
    ranked = []
    for k in range(n_passes):
        for marker in sorted((work / f"pass{k}" / "done").glob("*.json"))[:1]:
            t = read_json(marker)["task"]
            ranked += [*t["apply"], *t["steps"]] + (["output"] if t["final"] else [])
    order = [s for s in ranked if s in steps] + [s for s in order if s not in ranked]
    return {
        "input_docs": rows_in, "output_docs": rows_out, "shards": n_shards,
        "steps": [{"step": s, **{k: (dict(v) if k.startswith("by_") else v)
                                 for k, v in steps[s].items()}} for s in order],
        "dedup": dedup, "minhash": minhash, "signals": signals,
    }


def summary_of(stats: dict, n_shards: int):
    from soberan.curate import CurateSummary

    return CurateSummary(
        input_docs=stats["input_docs"], output_docs=stats["output_docs"], shards=n_shards,
        dropped={s["step"]: s["dropped"] for s in stats["steps"] if s["dropped"]},
        redacted={s["step"]: s["redacted"] for s in stats["steps"] if s["redacted"]},
    )
