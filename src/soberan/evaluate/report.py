"""The terminal view of eval/results.json: one table per set and language, models as rows, the
difference to the reference model with its 95% CI."""

from __future__ import annotations

from rich.table import Table


def _fmt(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _diff(c: dict | None) -> str:
    if c is None:
        return ""
    good = (c["diff"] > 0) == c["higher_is_better"]
    colour = ("green" if good else "red") if c["significant"] else "dim"
    return f"[{colour}]{c['diff']:+.3f} [{c['ci95'][0]:+.3f},{c['ci95'][1]:+.3f}][/{colour}]"


def print_tables(console, results: dict) -> None:
    models = results["models"]
    ref = models[0]["label"]
    comp = {(c["set"], c["metric"], c["model"]): c for c in results["comparisons"]}
    several = len(models) > 1
    for name, info in results["sets"].items():
        metrics = ["acc", "acc_norm"] if info["type"] == "mc" else ["exact_match"]
        title = (f"{name} ({info['language']}) · {info['limit']} items · {info['num_fewshot']}-shot"
                 + (f" · [yellow]{info['contaminated']} contaminated[/yellow]" if info["contaminated"] else "")
                 + (f" · [red]{info['rejected']} rows rejected[/red]" if info["rejected"] else "")
                 + (f"\nΔ = model − {ref}, paired bootstrap 95% CI" if several else ""))
        console.print(f"\n[bold]{title}[/bold]")
        t = Table()
        t.add_column("model")
        for m in metrics:
            t.add_column(m, justify="right")
            if several:
                t.add_column(f"Δ{m} [95% CI]", justify="right")
        for m_ in models:
            row = [m_["label"]]
            for m in metrics:
                row.append(_fmt(m_["sets"][name].get(m)))
                if several:
                    row.append(_diff(comp.get((name, m, m_["label"]))))
            t.add_row(*row)
        console.print(t)
    langs = sorted({lang for m in models for lang in m["bpb"]})
    for lang in langs:
        console.print(f"\n[bold]bits per byte, held-out {lang} text · {results['heldout'][lang]['docs']} docs · "
                      "lower is better" + (f"\nΔ = model − {ref}, paired bootstrap 95% CI" if several else "")
                      + "[/bold]")
        t = Table()
        t.add_column("model")
        t.add_column("bpb", justify="right")
        if several:
            t.add_column("Δbpb [95% CI]", justify="right")
        for m_ in models:
            row = [m_["label"], _fmt(m_["bpb"].get(lang, {}).get("bpb"), 4)]
            if several:
                row.append(_diff(comp.get((f"heldout_{lang}", "bpb", m_["label"]))))
            t.add_row(*row)
        console.print(t)
    if several and (results["sets"] or langs):
        _summary(console, results, comp)
    c = results["contamination"]
    if c.get("checked"):
        n = sum(info["contaminated"] for info in results["sets"].values())
        console.print(f"contamination: {n} item(s) found in {', '.join(c['corpora'])} "
                      f"({c['window_chars']}-character windows)")
    elif results["sets"]:
        console.print(f"[yellow]contamination not checked[/yellow]: {c.get('why_not', '')}")


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
        t.add_row(name, info["language"], metric, *(_fmt(m["sets"][name].get(metric)) for m in models),
                  *(_diff(comp.get((name, metric, m["label"]))) for m in models[1:]))
    for lang in sorted({lang for m in models for lang in m["bpb"]}):
        t.add_row("held-out text", lang, "bpb ↓", *(_fmt(m["bpb"].get(lang, {}).get("bpb"), 4) for m in models),
                  *(_diff(comp.get((f"heldout_{lang}", "bpb", m["label"]))) for m in models[1:]))
    console.print(t)
