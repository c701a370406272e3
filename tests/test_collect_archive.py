"""`.zip` inputs: each member read as the file it holds (archive and member in the provenance),
a JSON array of records as SaudiNewsNet ships it, and bad archives recorded as rejections:
a zip bomb, a `..` member, a corrupt archive, a non-UTF-8 member name. Nothing is extracted."""

from __future__ import annotations

import io
import re
import json
import zipfile

import pytest
from test_collect import docs_of, rejections

from soberan.collect import run
from soberan.workspace import Workspace, init_workspace

AR = ("أعلنت وزارة التعليم في المملكة العربية السعودية اليوم عن خطة جديدة لتطوير المدارس الحكومية "
      "في جميع المناطق، وقال المتحدث الرسمي إن الخطة تشمل تدريب المعلمين وتحديث المناهج الدراسية "
      "وتوفير الأجهزة الحديثة للطلاب خلال العام الدراسي المقبل.")


def articles(day: int, n: int) -> list[dict]:
    return [{"source": "spa", "url": f"http://www.spa.gov.sa/{day}/{k}", "date_extracted":
             f"2015-07-{day:02d} 10:00:00", "title": f"خبر {k}", "author": "واس",
             "content": f"{AR}\nالخبر رقم {k} ليوم {day}."} for k in range(n)]


def saudi_zip(path, day: int, n: int) -> None:
    """A zip as SaudiNewsNet publishes them: one JSON file holding an array of articles."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"2015-07-{day:02d}.json", json.dumps(articles(day, n), ensure_ascii=False, indent=4))


def saudi_source(data) -> str:
    """The [[sources]] table of SaudiNewsNet as published (a folder of zipped JSON arrays)."""
    return f"""
[[sources]]
name = "saudinewsnet"
kind = "jsonl"
path = "{data}"
license = "CC-BY-NC-SA-4.0"
jurisdiction = "SA"
lang = "ar"
fields = {{ text = "content", url = "url", title = "title", date = "date_extracted" }}
"""


def saudi_workspace(root, data, licenses: list[str] | None = None) -> Workspace:
    init_workspace(root, lang="ar", jurisdiction="SA", name="sa")
    cfg = root / "soberan.toml"
    text = cfg.read_text()
    if licenses is not None:
        start = text.index("licenses = [")
        text = text[:start] + "licenses = " + json.dumps(licenses) + text[text.index("]", start) + 1:]
    cfg.write_text(text + saudi_source(data))
    return Workspace.open(root)


def test_zipped_json_arrays_are_collected_with_archive_and_member(tmp_path):
    d = tmp_path / "dataset"
    d.mkdir()
    saudi_zip(d / "2015-07-21.zip", 21, 5)
    saudi_zip(d / "2015-07-22.zip", 22, 3)
    ws = saudi_workspace(tmp_path / "ws", d, licenses=["CC-BY-NC-SA-4.0"])
    res = run(ws, show_progress=False)
    assert res.docs == 8 and res.rejected == 0
    docs = docs_of(ws)
    assert {r["url"] for r in docs} == {f"http://www.spa.gov.sa/{d}/{k}" for d, n in ((21, 5), (22, 3))
                                        for k in range(n)}
    assert all(r["license"] == "CC-BY-NC-SA-4.0" and r["jurisdiction"] == "SA" for r in docs)
    assert docs[0]["date"].startswith("2015-07-2")


def test_a_policy_without_nc_licenses_refuses_saudinewsnet(tmp_path):
    from soberan.policy import PolicyError

    d = tmp_path / "dataset"
    d.mkdir()
    saudi_zip(d / "2015-07-21.zip", 21, 2)
    ws = saudi_workspace(tmp_path / "ws", d)  # the default licenses: no NC
    with pytest.raises(PolicyError, match="CC-BY-NC-SA-4.0"):
        run(ws, show_progress=False)
    assert not any(ws.stage_dir("collect").glob("**/*.parquet"))


def _rename_raw(data: bytes, old: bytes, new: bytes) -> bytes:
    """Replace a member's name bytes in the local header and central directory (the CRC covers
    only the content), to make a name no writer would: not UTF-8, and without the UTF-8 flag."""
    assert len(old) == len(new) and data.count(old) == 2
    return data.replace(old, new)


def test_bad_archives_are_rejections_and_nothing_is_extracted(tmp_path):
    d = tmp_path / "dataset"
    d.mkdir()
    good = json.dumps(articles(23, 2), ensure_ascii=False).encode()
    with zipfile.ZipFile(d / "mixed.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ok.json", good)
        z.writestr("../../escape.json", good)  # path traversal
        z.writestr("/etc/abs.json", good)
        z.writestr("bomb.json", b"[" + b" " * (50 << 20) + b"]")  # ~50 MB of spaces, ~1000x
        z.writestr("inner.zip", b"PK\x05\x06" + b"\0" * 18)
        z.writestr("notes/readme.txt", b"not a record file")
        z.writestr("AAAAAA.json", good)
    data = _rename_raw((d / "mixed.zip").read_bytes(), b"AAAAAA.json", b"\xff\xfe\xfd\xfc\xfb\xfa.json")
    (d / "mixed.zip").write_bytes(data)
    (d / "corrupt.zip").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    cut = io.BytesIO()
    with zipfile.ZipFile(cut, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("day.json", json.dumps(articles(24, 50), ensure_ascii=False))
    raw = bytearray(cut.getvalue())
    raw[60:200] = bytes(140)  # damage the deflated stream; the central directory stays readable
    (d / "damaged.zip").write_bytes(bytes(raw))

    ws = saudi_workspace(tmp_path / "ws", d, licenses=["CC-BY-NC-SA-4.0"])
    before = sorted(p for p in tmp_path.rglob("*"))
    res = run(ws, show_progress=False)
    assert res.docs == 2  # ok.json's two articles
    rules = {r["reason"].split(": ", 1)[0]: r["rule"] for r in rejections(ws)}
    assert rules == {
        "mixed.zip!/../../escape.json": "path_traversal",
        "mixed.zip!/bomb.json": "zip_bomb",
        "mixed.zip!/inner.zip": "nested_archive",
        "mixed.zip!/b'\\xff\\xfe\\xfd\\xfc\\xfb\\xfa.json'": "bad_member_name",
        "mixed.zip!//etc/abs.json": "path_traversal",
        "corrupt.zip": "corrupt_archive",
        "damaged.zip!/day.json": "corrupt_archive",
    }
    # nothing was written outside the workspace: the only new paths are under it
    after = sorted(p for p in tmp_path.rglob("*"))
    assert [p for p in after if p not in before and ws.root not in p.parents] == []
    assert not (tmp_path / "escape.json").exists() and not (tmp_path.parent / "escape.json").exists()


def test_a_lying_declared_size_is_caught_while_inflating(tmp_path):
    """A member whose header declares fewer bytes than it inflates to is refused as it is read."""
    from soberan.collect.archive import members

    p = tmp_path / "lie.zip"
    body = b"x" * 100_000
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.json", body)
    got = list(members(p, "lie.zip", limit=10_000, wanted=lambda n: True))
    assert [(g.rule, g.locator) for g in got] == [("too_large", "lie.zip!/a.json")]
    data = p.read_bytes()
    import struct

    # patch the central directory's uncompressed size (offset 24 in the entry) to 1,000
    cd = data.rindex(b"PK\x01\x02")
    patched = data[:cd + 24] + struct.pack("<I", 1000) + data[cd + 28:]
    p.write_bytes(patched)
    got = list(members(p, "lie.zip", limit=10_000, wanted=lambda n: True))
    assert got[0].rule in ("zip_bomb", "corrupt_archive") and got[0].locator == "lie.zip!/a.json"


def test_one_document_per_line_and_headerless_tsv(tmp_path):
    """`split = "line"`: each non-blank line of a text file is a document (`file:N`);
    `header = false` + `columns`: a TSV without a header row (IndoNLU's SmSA)."""
    from soberan.collect import run

    d = tmp_path / "data"
    d.mkdir()
    (d / "posts.txt").write_text("สวัสดีครับ วันนี้อากาศดีมาก\n\nร้านนี้อร่อย แนะนำเลย\r\nขอบคุณค่ะ\n")
    (d / "smsa.tsv").write_text("warung ini enak sekali\tpositive\nharga mahal , pelayanan lambat\tnegative\n")
    init_workspace(tmp_path / "ws", lang="th", jurisdiction="TH")
    cfg = tmp_path / "ws" / "soberan.toml"
    cfg.write_text(cfg.read_text() + f"""
[[sources]]
name = "posts"
kind = "files"
path = "{d / 'posts.txt'}"
split = "line"
license = "CC0-1.0"
jurisdiction = "TH"

[[sources]]
name = "smsa"
kind = "csv"
path = "{d / 'smsa.tsv'}"
header = false
columns = ["text", "label"]
license = "CC0-1.0"
jurisdiction = "TH"
""")
    ws = Workspace.open(tmp_path / "ws")
    res = run(ws, show_progress=False)
    assert res.rejected == 0
    posts = docs_of(ws, "posts")
    assert [(r["url"], r["text"]) for r in posts] == [
        ("posts.txt:1", "สวัสดีครับ วันนี้อากาศดีมาก"), ("posts.txt:3", "ร้านนี้อร่อย แนะนำเลย"),
        ("posts.txt:4", "ขอบคุณค่ะ")]
    assert sorted(r["text"] for r in docs_of(ws, "smsa")) == ["harga mahal , pelayanan lambat",
                                                             "warung ini enak sekali"]


def test_split_and_header_are_checked(tmp_path):
    from soberan.config import ConfigError
    from soberan.workspace import Workspace

    init_workspace(tmp_path / "ws", lang="th", jurisdiction="TH")
    cfg = tmp_path / "ws" / "soberan.toml"
    base = cfg.read_text()
    for extra, says in (('kind = "jsonl"\nsplit = "line"', "split = 'line' is for files"),
                        ('kind = "csv"\ncolumns = ["text"]', "set header = false"),
                        ('kind = "files"\nheader = false', "header/columns are for csv")):
        cfg.write_text(base + f'\n[[sources]]\nname = "x"\npath = "."\n{extra}\nlicense = "CC0-1.0"\n'
                              'jurisdiction = "TH"\n')
        with pytest.raises(ConfigError, match=re.escape(says)):
            Workspace.open(tmp_path / "ws")
