"""WARC and WARC.gz (ISO 28500) with warcio: only HTTP responses with HTML or text become
documents; requests, metadata, redirects, errors, images and scripts are counted and passed.

warcio treats a gzip stream that ends early as a clean end of file, which would drop the rest of
a truncated archive silently. So .warc.gz is decompressed here with a reader that turns that
early end into an error, and a record whose body is shorter than its Content-Length is rejected
as truncated; both are recorded with the file and byte offset.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path

from soberan.collect.html import HTML_TYPES, TEXT_TYPES, media_type
from soberan.collect.items import ConvertOptions, Item, Reject, Skip, Todo


class TruncatedArchive(Exception):
    """The compressed stream ended before its end-of-stream marker."""


class _StrictGzip(io.RawIOBase):
    """A multi-member gzip stream (WARC.gz puts each record in its own member) that hands out
    every byte it could decompress and then raises `TruncatedArchive` if the file ends inside a
    member. Python's gzip module raises EOFError there, which warcio swallows, and its internal
    buffering loses the data decompressed just before."""

    def __init__(self, path: Path):
        self._f = open(path, "rb")
        self._d = zlib.decompressobj(wbits=31)
        self._in_member = False
        self._buf = bytearray()
        self._eof = False

    def readable(self) -> bool:
        return True

    def _feed(self, data: bytes) -> None:
        while data:
            self._in_member = True
            self._buf += self._d.decompress(data)
            if not self._d.eof:
                return
            data = self._d.unused_data
            self._d = zlib.decompressobj(wbits=31)
            self._in_member = False

    def readinto(self, b) -> int:
        while not self._buf and not self._eof:
            chunk = self._f.read(1 << 16)
            if chunk:
                self._feed(chunk)
            elif self._in_member:
                raise TruncatedArchive("the gzip stream ends inside a record's member")
            else:
                self._eof = True
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        del self._buf[:n]
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


def read_warc(path: Path, rel: str, opts: ConvertOptions, skip: int = 0) -> Iterator[Item]:
    from warcio.archiveiterator import ArchiveIterator

    raw = _StrictGzip(path) if path.suffix == ".gz" else open(path, "rb")
    n, offset = 0, 0
    with raw:
        it = ArchiveIterator(raw, check_digests=False)
        try:
            for rec in it:
                n += 1
                if n <= skip:
                    continue
                yield _record(rec, rel, opts)
                offset = it.get_record_offset()  # valid only after the record was read
        except (TruncatedArchive, EOFError, zlib.error, gzip.BadGzipFile, OSError) as e:
            n += 1
            if n > skip:
                yield Reject("truncated", f"archive ends early after record {n - 1}: {e}", f"{rel}@{offset}")
        except Exception as e:  # warcio raises assorted errors on a damaged header
            n += 1
            if n > skip:
                yield Reject("corrupt", f"unreadable record after record {n - 1} "
                                        f"({type(e).__name__}: {e})", f"{rel}@{offset}")


def _record(rec, rel: str, opts: ConvertOptions) -> Item:
    if rec.rec_type != "response":
        return Skip(f"WARC {rec.rec_type} record")
    uri = rec.rec_headers.get_header("WARC-Target-URI")
    rid = rec.rec_headers.get_header("WARC-Record-ID") or f"{rel}:{uri}"
    if rec.http_headers is None:
        return Skip("non-HTTP response")
    status = rec.http_headers.get_statuscode()
    if not status.startswith("2"):
        return Skip(f"HTTP {status[:1]}xx response")
    mtype, charset = media_type(rec.http_headers.get_header("Content-Type"))
    if mtype not in HTML_TYPES + TEXT_TYPES:
        return Skip(f"{mtype or 'untyped'} response")
    body = rec.content_stream().read(opts.max_record_bytes + 1)
    if len(body) > opts.max_record_bytes:
        return Reject("too_large", f"body over {opts.max_record_bytes} bytes (collect.max_record_bytes)", rid)
    if getattr(rec.raw_stream, "limit", 0) > 0:
        return Reject("truncated", f"record body cut short: {rec.raw_stream.limit} of its "
                                   f"Content-Length bytes missing ({rel})", rid)
    date = rec.http_headers.get_header("Last-Modified") or rec.rec_headers.get_header("WARC-Date")
    return Todo("body", (body, rid, uri, mtype in HTML_TYPES, charset, date))
