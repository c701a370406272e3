"""Web bodies (HTML or plain text) to documents: decoding plus trafilatura's main-text extraction.

Boilerplate (menus, footers, cookie banners) is not the nation's text; trafilatura is the
extractor behind FineWeb and RefinedWeb-style pipelines and scores best among open extractors
in Barbaresi (2021), "Trafilatura: A Web Scraping Library and Command-Line Tool for Text
Discovery and Extraction", ACL demo. Shared by folders of .html files, WARC and the crawler.
"""

from __future__ import annotations

import codecs
from functools import lru_cache

from soberan.collect.encoding import Undecodable, declared_charset, decode
from soberan.collect.items import ConvertOptions, Doc, Reject, iso_date

HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = ("text/plain", "text/markdown")


def media_type(content_type: str | None) -> tuple[str, str | None]:
    """(`text/html`, `euc-kr`) from a Content-Type header value."""
    if not content_type:
        return "", None
    parts = [p.strip() for p in content_type.split(";")]
    charset = None
    for p in parts[1:]:
        k, _, v = p.partition("=")
        if k.strip().lower() == "charset" and v:
            try:
                charset = codecs.lookup(v.strip().strip("\"'")).name
            except LookupError:
                charset = None
    return parts[0].lower(), charset


def looks_like_html(head: bytes) -> bool:
    h = head[:1024].lstrip().lower()
    return h.startswith((b"<!doctype html", b"<html", b"<?xml")) and b"<html" in head[:4096].lower()


@lru_cache(maxsize=1)
def _trafilatura_config():
    from trafilatura.settings import use_config

    cfg = use_config()
    # Short pages (a statute's article, a ministry notice) are real documents; length filters
    # belong to curate, where each language pack sets them.
    cfg.set("DEFAULT", "MIN_EXTRACTED_SIZE", "25")
    cfg.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")
    # htmldate's extensive search (scanning the whole page for date-like strings) more than
    # doubles the time per page; the date in <meta>, <time> and the URL is what we keep.
    cfg.set("DEFAULT", "EXTENSIVE_DATE_SEARCH", "off")
    return cfg


def extract(html: str, url: str | None, opts: ConvertOptions) -> tuple[str, str | None, str | None] | None:
    """(main text, title, date) of an HTML page, or None when it has no main text."""
    import trafilatura

    doc = trafilatura.bare_extraction(
        html, url=url, with_metadata=True, include_comments=False, include_tables=True,
        favor_precision=opts.favor == "precision", favor_recall=opts.favor == "recall",
        config=_trafilatura_config())
    if doc is None or not (doc.text or "").strip():
        return None
    text = doc.text
    if opts.html_format == "markdown":
        md = trafilatura.extract(html, url=url, output_format="markdown", include_comments=False,
                                 include_tables=True, favor_precision=opts.favor == "precision",
                                 favor_recall=opts.favor == "recall", config=_trafilatura_config())
        text = md or text
    return text, doc.title, doc.date


def body_to_doc(body: bytes, *, locator: str, url: str | None, html: bool,
                charset: str | None, date: str | None, opts: ConvertOptions) -> Doc | Reject:
    """A fetched or archived body (already size-checked) to a document or a rejection."""
    if len(body) > opts.max_record_bytes:
        return Reject("too_large", f"{len(body)} bytes > collect.max_record_bytes", locator)
    try:
        declared = charset or (declared_charset(body) if html else None)
        text, _ = decode(body, forced=opts.encoding, declared=declared, langs=opts.langs)
    except Undecodable as e:
        return Reject(e.rule, str(e), locator)
    title = None
    if html:
        got = extract(text, url, opts)
        if got is None:
            return Reject("no_main_text", "HTML page without main text (trafilatura)", locator)
        text, title, page_date = got
        date = page_date or date
    return Doc(text=text, locator=locator, url=url, title=title, date=iso_date(date))


def links(html: str | bytes, base_url: str) -> list[str]:
    """Absolute http(s) links of a page, in document order, fragments removed."""
    from urllib.parse import urldefrag, urljoin

    import lxml.html

    try:
        root = lxml.html.fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return []
    base = root.xpath("string(//base/@href)") or base_url
    out: list[str] = []
    for href in root.xpath("//a/@href"):
        u = urldefrag(urljoin(urljoin(base_url, base), href.strip()))[0]
        if u.startswith(("http://", "https://")):
            out.append(u)
    return out
