"""`.zip` archives as inputs: each member is read as the file it holds, in memory, never
extracted to disk, so nothing an archive says can be written outside the workspace.

A corpus often arrives zipped as its publisher made it (SaudiNewsNet: one zip a day, each holding
one JSON file). Every member is checked before it is read, and a member that fails a check is a
rejection with its reason, the rest of the archive still read:

- `bad_member_name`: a name that is not UTF-8 (zip names without the UTF-8 flag are CP437 by the
  format; a name whose CP437 bytes are not UTF-8 either is refused rather than guessed);
- `path_traversal`: an absolute name, a drive letter or a `..` part;
- `encrypted`, `nested_archive` (an archive inside an archive is not opened);
- `too_large`: a member declared above `collect.max_archive_member_bytes`;
- `zip_bomb`: a compression ratio above `MAX_RATIO`, or a member that inflates past its declared
  size or the limit (the declared size is checked, then enforced while reading);
- `corrupt_archive`: an archive zipfile cannot open, or a member that fails its CRC or inflation.

A member's locator is `archive!/member`, so the archive and member name stay in the provenance
of every document and rejection read from it.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from soberan.collect.items import Reject, Skip

# A deflated member above this ratio of inflated to stored bytes is refused. Text compresses
# 3-10x; highly repetitive logs reach ~100x; zip bombs use 1000x and more (Fifield 2019, "A
# better zip bomb", reaches 28 million x). Small members are exempt: a 40 kB run of spaces is no threat.
MAX_RATIO = 200
RATIO_MIN_BYTES = 1 << 20
ARCHIVE_SUFFIXES = (".zip",)
_UTF8_FLAG = 0x800
_ENCRYPTED_FLAG = 0x1


@dataclass(frozen=True)
class Member:
    """A member's bytes and name, standing in for a file path in the record readers."""

    name: str  # the member's own name inside the archive (its suffix picks the reader)
    data: bytes

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def stem_name(self) -> str:
        return PurePosixPath(self.name).name


def is_archive(rel: str) -> bool:
    return rel.lower().endswith(ARCHIVE_SUFFIXES)


def member_name(info: zipfile.ZipInfo) -> str | None:
    """The member's name as UTF-8, or None when it is not UTF-8."""
    name = info.filename
    if info.flag_bits & _UTF8_FLAG or name.isascii():
        return name
    try:  # zipfile decoded the raw bytes as CP437: get them back and try UTF-8 (many tools omit the flag)
        return name.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None


def unsafe_path(name: str) -> bool:
    p = name.replace("\\", "/")
    parts = PurePosixPath(p).parts
    return p.startswith("/") or (len(p) > 1 and p[1] == ":") or ".." in parts


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """The member's bytes, refusing to inflate past `limit` or past its declared size."""
    cap = min(limit, info.file_size)
    out = bytearray()
    with zf.open(info) as f:
        while True:
            chunk = f.read(min(1 << 20, cap + 1 - len(out)))
            if not chunk:
                break
            out += chunk
            if len(out) > cap:
                raise OverflowError(f"inflates past {'its declared size ' if cap == info.file_size else ''}"
                                    f"{cap} bytes")
    return bytes(out)


def members(path: Path, rel: str, limit: int, wanted) -> Iterator[tuple[Member, str] | Reject | Skip]:
    """(member, locator) for each member `wanted(name)` accepts, in archive order; a rejection
    for each member (or archive) that fails a check; a Skip for folders and unwanted members."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        yield Reject("corrupt_archive", f"not a readable zip archive: {e}", rel)
        return
    with zf:
        for info in zf.infolist():
            name = member_name(info)
            if name is None:
                raw = info.filename.encode("cp437", "replace")
                yield Reject("bad_member_name", f"member name is not UTF-8: {raw!r}", f"{rel}!/{raw!r}")
                continue
            loc = f"{rel}!/{name}"
            if unsafe_path(name):
                yield Reject("path_traversal", f"member path {name!r} leaves the archive "
                                               "(absolute or `..`); not read", loc)
                continue
            if info.is_dir():
                yield Skip("archive folder")
                continue
            if is_archive(name):
                yield Reject("nested_archive", "an archive inside an archive is not opened; "
                                               "unpack it and name it as a source", loc)
                continue
            if not wanted(name):
                yield Skip("archive member of another kind")
                continue
            if info.flag_bits & _ENCRYPTED_FLAG:
                yield Reject("encrypted", "encrypted member; not read", loc)
                continue
            if info.file_size > limit:
                yield Reject("too_large", f"{info.file_size} bytes declared > "
                                          f"collect.max_archive_member_bytes {limit}", loc)
                continue
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > RATIO_MIN_BYTES and ratio > MAX_RATIO:
                yield Reject("zip_bomb", f"compression ratio {ratio:.0f}x > {MAX_RATIO}x "
                                         f"({info.file_size} bytes from {info.compress_size})", loc)
                continue
            try:
                data = _read_member(zf, info, limit)
            except OverflowError as e:
                yield Reject("zip_bomb", f"member {e}; not read", loc)
                continue
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
                    RuntimeError) as e:
                yield Reject("corrupt_archive", f"member unreadable: {type(e).__name__}: {e}", loc)
                continue
            yield Member(name, data), loc
