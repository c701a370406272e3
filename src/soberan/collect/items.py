"""What the readers yield, one per input position: a document, a rejection, a non-document to
count, or work to finish in a worker process. Kept tiny and picklable, because they cross
process boundaries; the writer turns documents into Arrow columns in batches."""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from dataclasses import dataclass


@dataclass(slots=True)
class Doc:
    text: str
    locator: str  # where in the source: relative path, `path:line`, `path#row`, WARC-Record-ID, URL
    url: str | None = None
    title: str | None = None
    date: str | None = None
    lang: str | None = None
    license: str | None = None  # None: the source's
    jurisdiction: str | None = None


@dataclass(slots=True)
class Reject:
    rule: str  # short, stable, queryable: "binary", "bad_json", "truncated", "policy.licenses"...
    reason: str  # for a person
    locator: str
    text: str | None = None  # when it had text, so the rejection carries the document's own id


@dataclass(slots=True)
class Skip:
    """A record that is not a document (a WARC request, an image response, a blank line):
    counted by kind in the run's summary, not written to the decision log."""

    what: str


@dataclass(slots=True)
class Todo:
    """Costly conversion (decode + HTML extraction) a worker process does: `fn(*args, opts)`."""

    fn: str  # "file" | "body"
    args: tuple


Item = Doc | Reject | Skip | Todo


@dataclass(frozen=True)
class ConvertOptions:
    """What a worker needs to turn bytes into a document: per source, picklable."""

    encoding: str | None = None  # forced
    langs: tuple[str, ...] = ()  # target languages, for legacy-encoding detection
    html_format: str = "txt"
    favor: str = "balanced"
    max_record_bytes: int = 64_000_000


_YMD = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}")


def iso_date(value) -> str | None:
    """A document date as ISO 8601 where it is recognisable (`20230808`, `2023-08-08T...`, an
    RFC 2822 HTTP date); otherwise the source's own string, never dropped."""
    if value is None:
        return None
    s = str(value).strip()
    if not s:
        return None
    if m := _YMD.match(s):
        try:
            return dt.date(int(m[1]), int(m[2]), int(m[3])).isoformat()
        except ValueError:
            return s
    if _ISO.match(s):
        return s
    try:
        return email.utils.parsedate_to_datetime(s).astimezone(dt.timezone.utc).isoformat()
    except (TypeError, ValueError, IndexError):
        return s
