"""Fertility: what a tokenizer costs on each language, measured on held-out text.

Tokens per character is the fair cross-language number (Thai and Japanese put no spaces between
words, so "per word" depends on a segmenter); tokens per word uses each language pack's own
segmenter and is the number papers report (NorMistral: 1.79 → 1.22 subwords per word). Bytes per
token is the compression the model sees; the byte-fallback share is how often the tokenizer
gives up on a character and spells it in raw bytes (Rust et al., 2021, "How Good is Your
Tokenizer?", ACL: fertility and continued words predict downstream quality). Round trip says
whether decode(encode(text)) gives the text back exactly, which a model needs to copy names,
code and numbers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from soberan.hf import Loaded, byte_piece_ids, piece_bytes


@dataclass
class EvalSet:
    """Held-out text of one language, with its size measured once for every tokenizer."""

    lang: str
    texts: list[str]
    chars: int
    bytes: int
    words: int | None  # None when no language pack segments this language


@dataclass
class Fertility:
    lang: str
    texts: int
    chars: int
    words: int | None
    tokens: int
    tokens_per_char: float
    tokens_per_word: float | None
    bytes_per_token: float
    byte_fallback_share: float  # byte pieces (<0xE2>) or byte-level pieces that are not whole characters
    unknown_share: float
    roundtrip_exact: float  # share of texts that decode back exactly


def eval_set(lang: str, texts: list[str]) -> EvalSet:
    texts = [t for t in texts if t]
    try:
        from soberan.lang import get_pack

        segment = get_pack(lang).words
    except KeyError:
        segment = None  # reported as "no segmenter", never guessed with an English default
    # Line by line: no word spans a newline, and segmenters (Kiwi's lattice above all) slow down
    # sharply on one long paragraph-free document.
    words = sum(len(segment(ln)) for t in texts for ln in t.splitlines() if ln.strip()) if segment else None
    return EvalSet(lang, texts, sum(map(len, texts)), sum(len(t.encode("utf-8")) for t in texts), words)


def _partial_ids(loaded: Loaded) -> set[int]:
    """Ids of pieces that are not whole characters: byte-fallback pieces, or byte-level pieces
    whose bytes are not valid UTF-8 on their own."""
    if loaded.style == "sentencepiece":
        return set(byte_piece_ids(loaded))
    if loaded.style != "bytelevel":
        return set()
    out = set()
    for piece, i in loaded.tokenizer.get_vocab(with_added_tokens=False).items():
        try:
            piece_bytes(piece, "bytelevel").decode("utf-8")
        except UnicodeDecodeError:
            out.add(i)
    return out


def measure(loaded: Loaded, sets: list[EvalSet]) -> dict[str, Fertility]:
    tok = loaded.tokenizer
    partial = _partial_ids(loaded)
    unk = tok.token_to_id(loaded.unk) if loaded.unk else None
    out = {}
    for s in sets:
        enc = tok.encode_batch(s.texts, add_special_tokens=False)
        ids = [e.ids for e in enc]
        n = sum(map(len, ids))
        n_partial = sum(1 for row in ids for i in row if i in partial)
        n_unk = sum(row.count(unk) for row in ids) if unk is not None else 0
        decoded = tok.decode_batch(ids, skip_special_tokens=False)
        exact = sum(d == t for d, t in zip(decoded, s.texts))
        out[s.lang] = Fertility(
            s.lang, len(s.texts), s.chars, s.words, n,
            tokens_per_char=n / s.chars if s.chars else 0.0,
            tokens_per_word=n / s.words if s.words else None,
            bytes_per_token=s.bytes / n if n else 0.0,
            byte_fallback_share=n_partial / n if n else 0.0,
            unknown_share=n_unk / n if n else 0.0,
            roundtrip_exact=exact / len(s.texts) if s.texts else 1.0)
    return out


Report = dict[str, dict[str, Fertility]]  # tokenizer label → language → numbers


def write_json(report: Report, path: Path, **labels: str) -> Path:
    """{tokenizer label: {lang: numbers}}, plus string keys naming the roles ("before": label),
    so a reader that walks the numbers finds tokenizer, language and metric on every path."""
    body = {name: {lang: asdict(f) for lang, f in langs.items()} for name, langs in report.items()}
    body.update(labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def read_json(path: Path) -> Report:
    body = json.loads(Path(path).read_text(encoding="utf-8"))
    return {name: {lang: Fertility(**f) for lang, f in langs.items()}
            for name, langs in body.items() if isinstance(langs, dict)}


def table(report: Report, title: str = "tokenizer fertility (held-out text)"):
    """A rich table, one row per language and tokenizer (narrow enough for any terminal), with
    the change in tokens against the first tokenizer."""
    from rich.table import Table

    names = list(report)
    langs = sorted({lang for r in report.values() for lang in r})
    chars = ", ".join(f"{lang} {next(r[lang].chars for r in report.values() if lang in r):,}" for lang in langs)
    t = Table(title=title, caption=f"held-out characters: {chars}; byte%: tokens that are raw bytes; "
                                   "exact: decode(encode(x)) == x", padding=(0, 1))
    t.add_column("lang")
    t.add_column("tokenizer", no_wrap=True, min_width=max(map(len, names)) if names else 9)
    for col in ("tok/char", "tok/word", "bytes/tok", "byte%", "exact", "tokens"):
        t.add_column(col, justify="right", no_wrap=True)
    for lang in langs:
        first = report[names[0]].get(lang)
        for k, n in enumerate(names):
            f = report[n].get(lang)
            if f is None:
                continue
            change = ""
            if k and first and first.tokens:
                pct = 100 * (f.tokens - first.tokens) / first.tokens
                change = f"[{'green' if pct < 0 else 'red' if pct > 0 else 'white'}]{pct:+.1f}%[/]"
            t.add_row(lang if k == 0 else "", n,
                      f"{f.tokens_per_char:.3f}", f"{f.tokens_per_word:.2f}" if f.tokens_per_word else "–",
                      f"{f.bytes_per_token:.2f}", f"{f.byte_fallback_share:.1%}", f"{f.roundtrip_exact:.0%}",
                      change, end_section=k == len(names) - 1)
    return t


def chart(report: Report, path: Path) -> list[Path]:
    """Grouped bars of tokens per character, one group per language; PNG and SVG beside `path`."""
    import matplotlib

    matplotlib.use("Agg")  # no display: this runs on servers and in CI
    import matplotlib.pyplot as plt

    names = list(report)
    langs = sorted({lang for r in report.values() for lang in r})
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(langs) * max(1, len(names)) / 2 + 2), 3.6))
    for k, n in enumerate(names):
        xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(langs))]
        ys = [report[n][lang].tokens_per_char if lang in report[n] else 0.0 for lang in langs]
        bars = ax.bar(xs, ys, width, label=n)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(range(len(langs)), langs)
    ax.set_ylabel("tokens per character (lower is better)")
    ax.set_title("Tokenizer fertility on held-out text")
    ax.legend(fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in (".png", ".svg"):
        p = path.with_suffix(ext)
        # no timestamp in the SVG, so the same numbers give the same file (and ledger hash)
        fig.savefig(p, dpi=150, metadata={"Date": None} if ext == ".svg" else None)
        out.append(p)
    plt.close(fig)
    return out
