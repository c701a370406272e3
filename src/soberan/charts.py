"""Charts as hand-built inline SVG.

Three shapes cover the report (bars by category, grouped bars, lines over steps), so a few dozen
lines of SVG replace a plotting library: the page needs no script and no file beside it, labels
stay text (Hangul, Thai and Arabic render with the reader's fonts and can be searched and copied),
and the same data gives the same bytes. Numbers are escaped like any other text.

Core, because more than the report draws: curate's calibration page draws its histograms with
`svg` and `PALETTE` too.
"""

from __future__ import annotations

import math
from html import escape

PALETTE = ["#1f5f8b", "#e07b39", "#3a9d5d", "#c8453b", "#7b5ea7", "#8c6d46", "#d36ba6", "#6f7f8f",
           "#b5a22c", "#2ba3b3"]
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _short(label, n: int = 30) -> str:
    label = str(label)
    return label if len(label) <= n else label[: n - 1] + "…"


def svg(name: str, width: int, height: int, body: list[str], title: str = "") -> str:
    """An inline chart: `body` (SVG elements) in a titled, labelled `<svg>` of this size."""
    t = escape(title or name)
    return (f'<svg class="chart" data-chart="{escape(name)}" role="img" aria-label="{t}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" {FONT}>'
            f"<title>{t}</title>" + "".join(body) + "</svg>")


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (Heckbert, "Nice numbers for graph labels", 1990)."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, v = [round(start, 10)], start
    while ticks[-1] < hi:
        v += step
        ticks.append(round(v, 10))
    return ticks


def _fmt(v: float) -> str:
    if abs(v) >= 1e9:
        return f"{v / 1e9:.3g}B"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.3g}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.3g}k"
    return f"{v:.4g}"


def hbar(name: str, labels: list[str], values: list[float], *, xlabel: str = "",
         fmt: str = "{:,.0f}") -> str | None:
    """Horizontal bars in the order given, each with its value written beside it."""
    if not labels:
        return None
    left, right, row, top = 190, 90, 24, 10
    width = 640
    plot = width - left - right
    height = top + row * len(labels) + 34
    vmax = max(max(values), 0) or 1
    body = []
    for i, (lab, v) in enumerate(zip(labels, values)):
        y = top + i * row
        w = max(plot * max(v, 0) / vmax, 0.5)
        body.append(f'<text x="{left - 6}" y="{y + 16}" text-anchor="end">{escape(_short(lab))}</text>'
                    f'<rect x="{left}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" '
                    f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(str(lab))}: {escape(fmt.format(v))}</title></rect>'
                    f'<text x="{left + w + 5:.1f}" y="{y + 16}" fill="#333">{escape(fmt.format(v))}</text>')
    body += _baseline(left, top, top + row * len(labels), plot, xlabel, 22)
    return svg(name, width, height, body, xlabel or name)


def _baseline(left: float, top: float, base: float, plot: float, xlabel: str, below: float) -> list[str]:
    """The vertical axis of a horizontal bar chart, and its caption under the bars."""
    out = [f'<line x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="#333"/>']
    if xlabel:
        out.append(f'<text x="{left + plot / 2}" y="{base + below}" text-anchor="middle" fill="#555">'
                   f"{escape(xlabel)}</text>")
    return out


def grouped_bars(name: str, groups: list[str], series: dict[str, list[float]], *,
                 ylabel: str = "") -> str | None:
    """Bars per group, one colour per series (fertility before and after, per language)."""
    if not groups or not series:
        return None
    width, height, left, bottom, top = 640, 280, 60, 60, 20
    plot_w, plot_h = width - left - 20, height - top - bottom
    vmax = max((v for vals in series.values() for v in vals), default=1) or 1
    ticks = nice_ticks(0, vmax)
    ymax = ticks[-1] or 1
    body = []
    for t in ticks:
        y = top + plot_h - plot_h * t / ymax
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e3e6ea"/>'
                    f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{_fmt(t)}</text>')
    gw = plot_w / len(groups)
    bw = gw * 0.8 / len(series)
    for gi, g in enumerate(groups):
        for si, (label, vals) in enumerate(series.items()):
            v = vals[gi]
            h = plot_h * v / ymax
            x = left + gi * gw + gw * 0.1 + si * bw
            body.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" '
                        f'fill="{PALETTE[si % len(PALETTE)]}"><title>{escape(label)} {escape(g)}: {v:.4g}</title></rect>'
                        f'<text x="{x + bw / 2:.1f}" y="{top + plot_h - h - 4:.1f}" text-anchor="middle" '
                        f'font-size="10">{v:.3g}</text>')
        body.append(f'<text x="{left + gi * gw + gw / 2:.1f}" y="{top + plot_h + 18}" text-anchor="middle">'
                    f"{escape(_short(g, 14))}</text>")
    body.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>')
    body += _legend(list(series), left, height - 18)
    if ylabel:
        body.append(f'<text transform="translate(14 {top + plot_h / 2}) rotate(-90)" text-anchor="middle" '
                    f'fill="#555">{escape(ylabel)}</text>')
    return svg(name, width, height, body, ylabel or name)


def hbar_groups(name: str, groups: list[str], series: dict[str, list[float]], *,
                xlabel: str = "", fmt: str = "{:.3g}") -> str | None:
    """Horizontal grouped bars: one row per group (every group, however many), one bar per
    series in it. The labels sit left of their rows, one per row, so none can overlap, and the
    chart grows downwards instead of squeezing labels under each other."""
    if not groups or not series:
        return None
    bar, gap, top = 12, 10, 10
    n = len(series)
    row = bar * n + gap
    label_chars = min(max(len(str(g)) for g in groups), 48)
    left, right, width = max(120, 12 + int(6.6 * label_chars)), 70, 760
    plot = width - left - right
    vmax = max((v for vals in series.values() for v in vals if v is not None), default=1) or 1
    body = []
    for gi, g in enumerate(groups):
        y = top + gi * row
        body.append(f'<text x="{left - 6}" y="{y + bar * n / 2 + 4:.1f}" text-anchor="end">'
                    f"<title>{escape(str(g))}</title>{escape(_short(g, 48))}</text>")
        for si, (label, vals) in enumerate(series.items()):
            v = vals[gi]
            w = max(plot * max(v or 0, 0) / vmax, 0.5)
            shown = "–" if v is None else fmt.format(v)
            body.append(f'<rect x="{left}" y="{y + si * bar}" width="{w:.1f}" height="{bar - 2}" '
                        f'fill="{PALETTE[si % len(PALETTE)]}"><title>{escape(label)} · {escape(str(g))}: '
                        f"{escape(shown)}</title></rect>"
                        f'<text x="{left + w + 4:.1f}" y="{y + si * bar + bar - 3}" font-size="10" '
                        f'fill="#333">{escape(shown)}</text>')
    base = top + row * len(groups)
    body += _baseline(left, top, base, plot, xlabel, 16)
    body += _legend(list(series), left, base + 36)
    return svg(name, width, base + 46, body, xlabel or name)


def _legend(labels: list[str], x: float, y: float) -> list[str]:
    out = []
    for i, lab in enumerate(labels):
        out.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
                   f'<text x="{x + 14}" y="{y}">{escape(_short(lab, 24))}</text>')
        x += 24 + 7 * min(len(lab), 24)
    return out


def lines(name: str, series: dict[str, list[tuple[float, float]]], *, xlabel: str = "step",
          ylabel: str = "") -> str | None:
    """One line per series over steps (training curves), with round-number axes."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    width, height, left, bottom, top, right = 640, 300, 64, 62, 16, 16
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    xt, yt = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]
    sx = lambda x: left + plot_w * (x - x0) / ((x1 - x0) or 1)  # noqa: E731
    sy = lambda y: top + plot_h - plot_h * (y - y0) / ((y1 - y0) or 1)  # noqa: E731
    body = []
    for t in yt:
        body.append(f'<line x1="{left}" y1="{sy(t):.1f}" x2="{left + plot_w}" y2="{sy(t):.1f}" stroke="#e3e6ea"/>'
                    f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end" fill="#555">{_fmt(t)}</text>')
    for t in xt:
        body.append(f'<text x="{sx(t):.1f}" y="{top + plot_h + 16}" text-anchor="middle" fill="#555">{_fmt(t)}</text>')
    body.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>')
    for i, (label, pts) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        d = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for j, (x, y) in enumerate(pts))
        body.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"><title>{escape(label)}</title></path>')
        if len(pts) <= 40:
            body += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}">'
                     f"<title>{escape(label)} step {x:g}: {y:.4g}</title></circle>" for x, y in pts]
    body.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h + 34}" text-anchor="middle" fill="#555">'
                f"{escape(xlabel)}</text>")
    if ylabel:
        body.append(f'<text transform="translate(14 {top + plot_h / 2}) rotate(-90)" text-anchor="middle" '
                    f'fill="#555">{escape(ylabel)}</text>')
    body += _legend(list(series), left, height - 6)
    return svg(name, width, height, body, ylabel or name)
