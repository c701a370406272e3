"""Which files a source names, and a folder of text files as documents (one file, one document).

`.txt`/`.md` and unknown extensions are decoded as text; `.html`/`.htm`/`.xhtml` (or content
that starts like HTML) go through trafilatura. A `.gz` suffix is decompressed transparently; a
`.zip` is read member by member (soberan.collect.archive).
"""

from __future__ import annotations

import errno
import gzip
import os
import re
import stat
import zlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from soberan.collect.encoding import Undecodable, decode
from soberan.collect.html import body_to_doc, looks_like_html
from soberan.collect.items import ConvertOptions, Doc, Reject

if TYPE_CHECKING:
    from soberan.config import Config, Source

# What a folder source picks up when `include` is left at its default, per kind.
DEFAULT_INCLUDE = {
    "files": ["**/*"],
    "jsonl": ["**/*.jsonl", "**/*.jsonl.gz", "**/*.ndjson", "**/*.ndjson.gz", "**/*.json",
              "**/*.json.gz"],
    "parquet": ["**/*.parquet"],
    "csv": ["**/*.csv", "**/*.tsv", "**/*.csv.gz", "**/*.tsv.gz"],
    "warc": ["**/*.warc", "**/*.warc.gz"],
}
# Archives are read member by member (soberan.collect.archive); a folder source picks them up
# too, and inside one takes the members its kind's patterns above name.
for _kind in ("jsonl", "parquet", "csv"):
    DEFAULT_INCLUDE[_kind].append("**/*.zip")
HTML_SUFFIXES = {".html", ".htm", ".xhtml", ".shtml"}
TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text", ".rst"}


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern:
    """A glob over `/`-separated relative paths: `**/` spans zero or more folders, `*` and `?`
    stay inside one folder (pathlib's `match` in Python 3.11 cannot do `**`)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1:]:
            j = pattern.index("]", i + 1)
            out.append("[" + pattern[i + 1:j].replace("!", "^", 1) + "]")
            i = j + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def glob_match(rel: str, patterns: list[str]) -> bool:
    return any(_glob_regex(p).match(rel) for p in patterns)


def special_file(path: Path) -> tuple[str, str] | None:
    """(rule, reason) when `path` is not a regular file to read: a symlink loop (a→b→a, or a
    link to a folder above it), a dangling link, a link to a folder (not followed), or a FIFO,
    socket or device, which must never be opened (a FIFO would block the run). Only lstat and
    stat are used. None for a regular file or a link to one."""
    try:
        st = os.lstat(path)
    except OSError as e:
        return "unreadable", f"{type(e).__name__}: {e.strerror or e}"
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.stat(path)
        except OSError as e:
            if e.errno == errno.ELOOP:
                return "symlink_loop", f"symbolic link loop ({os.readlink(path)!r} leads back to itself)"
            return "broken_symlink", f"symbolic link to {os.readlink(path)!r}, which does not exist"
        if stat.S_ISDIR(target.st_mode):
            real = Path(path).resolve()
            if real in Path(path).absolute().parents or real == Path(path).absolute().parent:
                return "symlink_loop", f"link to {os.readlink(path)!r}, a folder that contains it"
            return "symlink_dir", f"link to the folder {os.readlink(path)!r}, not followed"
        st = target
    if stat.S_ISREG(st.st_mode):
        return None
    kind = ("FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode)
            else "device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
    return "not_a_file", f"{kind}: not read"


def _walk(base: Path) -> list[Path]:
    """Every entry under `base` but folders, without following links to folders (`glob.glob`
    does, and a link to `..` then repeats the tree until the path is too long)."""
    out = []
    for root, dirs, files in os.walk(base, followlinks=False):
        r = Path(root)
        # os.walk lists a link to a folder among `dirs` and never enters it: report it.
        out += [r / d for d in dirs if (r / d).is_symlink()]
        out += [r / f for f in files]
    return out


def list_inputs(cfg: Config, source: Source) -> tuple[Path, list[tuple[Path, str]]]:
    """(base folder, [(file, path relative to base)]) for a path/folder/glob source, sorted so
    every run sees the same order. Hidden files and folders (`.git`, `.DS_Store`) are left out.
    Entries that are not regular files (FIFOs, symlink loops, ...) are listed too: reading one
    yields a rejection (`special_file`), so it is in the decision log, not silently skipped."""
    raw = source.path or ""
    full = cfg.resolve(raw)
    include = source.include if "include" in source.model_fields_set else DEFAULT_INCLUDE[source.kind]
    if any(c in raw for c in "*?["):
        parts = full.parts
        k = next(i for i, p in enumerate(parts) if any(c in p for c in "*?["))
        base = Path(*parts[:k])
        pattern = Path(*parts[k:]).as_posix()
        pairs = [(p, p.relative_to(base).as_posix()) for p in _walk(base)]
        pairs = [(p, r) for p, r in pairs if glob_match(r, [pattern])]
    elif full.is_file():
        base, pairs = full.parent, [(full, full.name)]
    elif full.is_dir():
        base = full
        pairs = [(p, p.relative_to(full).as_posix()) for p in _walk(full)]
        pairs = [(p, r) for p, r in pairs if glob_match(r, include)]
    else:
        raise FileNotFoundError(f"source {source.name!r}: path {full} does not exist")
    pairs = [(p, r) for p, r in pairs
             if not any(part.startswith(".") for part in r.split("/"))
             and not glob_match(r, source.exclude)]
    if not pairs:
        from soberan.config import ConfigError

        raise ConfigError(f"source {source.name!r}: no files match path {raw!r} "
                          f"(include {include}, exclude {source.exclude})")
    return base, sorted(pairs, key=lambda pr: pr[1])


def read_limited(path: Path, limit: int) -> bytes:
    """The file's bytes (decompressed for .gz), or ValueError past `limit` bytes. gzip's
    EOFError/BadGzipFile and zlib.error propagate for the caller to record."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"more than {limit} bytes{' decompressed' if path.suffix == '.gz' else ''}")
    return data


def read_file(path: str, rel: str, opts: ConvertOptions) -> Doc | Reject:
    """One file of a `files` source as one document."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > opts.max_record_bytes:
            return Reject("too_large", f"{size} bytes > collect.max_record_bytes", rel)
        data = read_limited(p, opts.max_record_bytes)
    except ValueError as e:
        return Reject("too_large", f"{e} (collect.max_record_bytes)", rel)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        return Reject("truncated", f"corrupt or truncated gzip: {e}", rel)
    except OSError as e:
        return Reject("unreadable", f"{type(e).__name__}: {e}", rel)
    return bytes_to_doc(data, p.name, rel, opts)


def read_lines(path: Path | Member, rel: str, opts: ConvertOptions, skip: int = 0):
    """Each non-blank line of a text file (or archive member) as one document, located as
    `file:N`; blank lines are counted, not stored. The file is decoded whole, so one legacy
    encoding is detected for all its lines."""
    from soberan.collect.archive import Member
    from soberan.collect.items import Skip

    reject = None
    try:
        data = path.data if isinstance(path, Member) else read_limited(path, opts.max_record_bytes)
        text, _ = decode(data, forced=opts.encoding, langs=opts.langs)
    except Undecodable as e:
        reject = Reject(e.rule, str(e), rel)
    except ValueError as e:
        reject = Reject("too_large", f"{e} (collect.max_record_bytes)", rel)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        reject = Reject("truncated", f"corrupt or truncated gzip: {e}", rel)
    except OSError as e:
        reject = Reject("unreadable", f"{type(e).__name__}: {e}", rel)
    if reject is not None:
        if skip < 1:
            yield reject
        return
    # "\n" only: str.splitlines would also cut at U+2028, U+0085 and form feeds inside a message
    for n, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        if n <= skip:
            continue
        loc = f"{rel}:{n}"
        yield Doc(text=line, locator=loc, url=loc) if line.strip() else Skip("blank line")


def bytes_to_doc(data: bytes, name: str, rel: str, opts: ConvertOptions) -> Doc | Reject:
    """A file's bytes (a file on disk, or a member of an archive) as one document: HTML by its
    name or content, text otherwise."""
    if len(data) > opts.max_record_bytes:
        return Reject("too_large", f"{len(data)} bytes > collect.max_record_bytes", rel)
    name = name[:-3] if name.endswith(".gz") else name
    suffix = Path(name).suffix.lower()
    if suffix in HTML_SUFFIXES or (suffix not in TEXT_SUFFIXES and looks_like_html(data)):
        return body_to_doc(data, locator=rel, url=rel, html=True, charset=None, date=None, opts=opts)
    try:
        text, _ = decode(data, forced=opts.encoding, langs=opts.langs)
    except Undecodable as e:
        return Reject(e.rule, str(e), rel)
    return Doc(text=text, locator=rel, url=rel)
