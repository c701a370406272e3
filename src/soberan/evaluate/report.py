"""The terminal view of eval/results.json: one table per set and language, models as rows, each
score with its 95% CI, the difference to the reference model with its paired 95% CI, and what
makes a number mean less than it seems (chance and majority-class levels, degenerate answers,
too little held-out text)."""

from __future__ import annotations

from rich.table import Table


def _fmt(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _ci(v, ci, digits: int = 3) -> str:
    """A value with its 95% CI, e.g. `0.420 [0.352,0.491]`."""
    if v is None:
        return "–"
    return _fmt(v, digits) + (f" [{ci[0]:.{digits}f},{ci[1]:.{digits}f}]" if ci else "")


def _diff(c: dict | None) -> str:
    if c is None:
        return ""
    if c.get("ci95") is None:
        return f"[dim]{c['diff']:+.3f} (no CI)[/dim]"
    good = (c["diff"] > 0) == c["higher_is_better"]
    colour = ("green" if good else "red") if c["significant"] else "dim"
    mark = " [yellow]⚠[/yellow]" if c.get("note") else ""
    return f"[{colour}]{c['diff']:+.3f} [{c['ci95'][0]:+.3f},{c['ci95'][1]:+.3f}][/{colour}]{mark}"


def lang_title(results: dict, lang: str) -> str:
    """`en (forgetting check)` when English is held out beside the nation's languages."""
    return lang + (" (forgetting check)" if (results.get("heldout", {}).get(lang) or {}).get("forgetting_check")
                   else "")


def _notes(console, notes: list[str]) -> None:
    for n in dict.fromkeys(notes):
        console.print(f"  [yellow]⚠ {n}[/yellow]")


def print_tables(console, results: dict) -> None:
    models = results["models"]
    ref = models[0]["label"]
    comp = {(c["set"], c["metric"], c["model"]): c for c in results["comparisons"]}
    several = len(models) > 1
    for name, info in results["sets"].items():
        metrics = ["acc", "acc_norm"] if info["type"] == "mc" else ["exact_match"]
        levels = (f" · chance {info['chance']:.3f} · majority class {info['majority']:.3f} "
                  f"({info['majority_answer']})" if info.get("chance") is not None else "")
        title = (f"{name} ({info['language']}) · {info['limit']} items · {info['num_fewshot']}-shot" + levels
                 + (f" · [yellow]{info['contaminated']} contaminated[/yellow]" if info["contaminated"] else "")
                 + (f" · [red]{info['rejected']} rows rejected[/red]" if info["rejected"] else "")
                 + "\nscores with 95% CI" + (f"; Δ = model − {ref}, paired bootstrap 95% CI" if several else ""))
        console.print(f"\n[bold]{title}[/bold]")
        t = Table()
        for col in ("model", "metric", "score [95% CI]", *(["Δ [95% CI]"] if several else []), ""):
            t.add_column(col, justify="right" if "CI" in col else "left")
        notes = []
        for m_ in models:
            got = m_["sets"].get(name)
            if got is None:
                continue
            flags = got.get("degenerate") or {}
            for m in metrics:
                row = [m_["label"], m, _ci(got.get(m), got.get(f"{m}_ci95"))]
                if several:
                    c = comp.get((name, m, m_["label"]))
                    row.append(_diff(c))
                    if c and c.get("note"):
                        notes.append(f"Δ{m} {m_['label']}: not significant, {c['note']}")
                row.append("[red]degenerate[/red]" if flags.get(m) else "")
                t.add_row(*row)
            notes += [f"{m_['label']} ({m}): {f}" for m, f in flags.items()]
        console.print(t)
        _notes(console, notes)
    langs = sorted({lang for m in models for lang in m["bpb"]})
    for lang in langs:
        held = results["heldout"].get(lang, {})
        console.print(f"\n[bold]bits per byte, held-out {lang_title(results, lang)} text · "
                      f"{held.get('units', held.get('docs'))} units · lower is better · 95% CI over units"
                      + (f"\nΔ = model − {ref}, paired bootstrap 95% CI" if several else "") + "[/bold]")
        t, notes = Table(), []
        t.add_column("model")
        t.add_column("bpb [95% CI]", justify="right")
        t.add_column("tokens/char", justify="right")
        if several:
            t.add_column("Δbpb [95% CI]", justify="right")
        for m_ in models:
            b = m_["bpb"].get(lang)
            if b is None:
                continue
            row = [m_["label"], _ci(b.get("bpb"), b.get("ci95"), 4), _fmt(b.get("tokens_per_char"))]
            if b.get("note"):
                notes.append(f"{b['note']}: no CI, no difference claimed")
            if several:
                row.append(_diff(comp.get((f"heldout_{lang}", "bpb", m_["label"]))))
            t.add_row(*row)
        console.print(t)
        _notes(console, notes)
    if several and (results["sets"] or langs):
        _summary(console, results, comp)
    c = results["contamination"]
    if c.get("checked"):
        n = sum(info["contaminated"] for info in results["sets"].values())
        console.print(f"contamination: {n} item(s) found in {', '.join(c['corpora'])} "
                      f"({c['window_chars']}-character windows)")
    elif results["sets"]:
        console.print(f"[yellow]contamination not checked[/yellow]: {c.get('why_not', '')}")
    for d in results.get("dropped_models") or []:
        console.print(f"[yellow]earlier results of {d['label']} dropped[/yellow]: {d['why']}")


def _summary(console, results: dict, comp: dict) -> None:
    """All sets in one table: each model's headline metric, and each model's Δ to the reference."""
    models = results["models"]
    console.print(f"\n[bold]summary · Δ = model − {models[0]['label']}, paired bootstrap 95% CI[/bold]")
    t = Table()
    for col in ("set", "lang", "metric", *(m["label"] for m in models)):
        t.add_column(col, justify="left" if col in ("set", "lang", "metric") else "right")
    for m in models[1:]:
        t.add_column(f"Δ {m['label']}", justify="right")
    for name, info in results["sets"].items():
        metric = "acc" if info["type"] == "mc" else "exact_match"

        def cell(m):
            got = m["sets"].get(name) or {}
            flag = (got.get("degenerate") or {}).get(metric)
            return _fmt(got.get(metric)) + (" [red]degen.[/red]" if flag else "")

        t.add_row(name, info["language"], metric, *(cell(m) for m in models),
                  *(_diff(comp.get((name, metric, m["label"]))) for m in models[1:]))
    for lang in sorted({lang for m in models for lang in m["bpb"]}):
        t.add_row("held-out text", lang_title(results, lang), "bpb ↓",
                  *(_fmt(m["bpb"].get(lang, {}).get("bpb"), 4) for m in models),
                  *(_diff(comp.get((f"heldout_{lang}", "bpb", m["label"]))) for m in models[1:]))
    console.print(t)
