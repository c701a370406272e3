"""Record sources: JSON Lines, Parquet and CSV/TSV, mapped to documents by `[sources.fields]`.

Each reader yields one item per record position (a line, a row) so that a resumed run can skip
exactly what an earlier run committed. A broken line, a record without the text field, a line
longer than `collect.max_record_bytes` or a truncated gzip becomes a rejection naming the file
and line; everything around it is still read.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

from soberan.collect.archive import Member
from soberan.collect.encoding import Undecodable, decode
from soberan.collect.items import ConvertOptions, Doc, Item, Reject, Skip, iso_date
from soberan.config import FieldMap

_MISSING = object()


def lookup(rec: Mapping, name: str):
    """A field by name; a dotted name reaches into nested objects when no key has the dots."""
    if name in rec:
        return rec[name]
    cur = rec
    for part in name.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def _opt(rec: Mapping, name: str | None) -> str | None:
    if name is None:
        return None
    v = lookup(rec, name)
    if v is _MISSING or v is None:
        return None
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return str(v).strip() or None


def doc_from_record(rec: Mapping, fields: FieldMap, locator: str, opts: ConvertOptions) -> Doc | Reject:
    text = lookup(rec, fields.text)
    if text is _MISSING:
        return Reject("missing_field", f"no {fields.text!r} field (sources.fields.text)", locator)
    if text is None:
        text = ""
    if isinstance(text, bytes):  # CSV columns arrive as bytes so that legacy encodings decode here
        try:
            text, _ = decode(text, forced=opts.encoding, langs=opts.langs) if text else ("", "")
        except Undecodable as e:
            return Reject(e.rule, str(e), locator)
    if not isinstance(text, str):
        return Reject("bad_field", f"field {fields.text!r} is {type(text).__name__}, not text", locator)
    rec_id = _opt(rec, fields.id)
    return Doc(text=text, locator=locator, url=_opt(rec, fields.url) or rec_id,
               title=_opt(rec, fields.title), date=iso_date(_opt(rec, fields.date)),
               lang=_opt(rec, fields.lang), license=_opt(rec, fields.license),
               jurisdiction=_opt(rec, fields.jurisdiction))


def _open_binary(path: Path | Member):
    if isinstance(path, Member):  # a zip member, already in memory (soberan.collect.archive)
        f = io.BytesIO(path.data)
        return gzip.GzipFile(fileobj=f, mode="rb") if path.suffix == ".gz" else f
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _arrow_input(path: Path | Member):
    """A pyarrow input stream over a file or a zip member, gzip inflated."""
    import pyarrow as pa

    if isinstance(path, Member):
        return pa.input_stream(pa.BufferReader(path.data),
                               compression="gzip" if path.suffix == ".gz" else None)
    return pa.input_stream(str(path), compression="detect")


def read_json(path: Path | Member, rel: str, fields: FieldMap, opts: ConvertOptions,
              skip: int = 0) -> Iterator[Item]:
    """A `.json` file holding one record (an object) or an array of them, as publishers often
    ship a corpus (SaudiNewsNet: one array of articles a day). The whole file is one input
    record for `collect.max_record_bytes`; each element is located as `file#k`."""
    try:
        with _open_binary(path) as f:
            data = f.read(opts.max_record_bytes + 1)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        if skip < 1:
            yield Reject("truncated", f"corrupt or truncated: {type(e).__name__}: {e}", rel)
        return
    if len(data) > opts.max_record_bytes:
        if skip < 1:
            yield Reject("too_large", f"JSON file of more than {opts.max_record_bytes} bytes "
                                      "> collect.max_record_bytes; write it as JSON Lines", rel)
        return
    try:
        s, _ = decode(data, forced=opts.encoding, langs=opts.langs)
        doc = json.loads(s.lstrip("\ufeff"))
    except Undecodable as e:
        if skip < 1:
            yield Reject(e.rule, str(e), rel)
        return
    except json.JSONDecodeError as e:
        if skip < 1:
            yield Reject("bad_json", f"{e.msg} at line {e.lineno} column {e.colno}", rel)
        return
    except RecursionError:
        if skip < 1:
            yield Reject("bad_json", "nested too deeply", rel)
        return
    recs = doc if isinstance(doc, list) else [doc]
    for k, rec in enumerate(recs, 1):
        if k <= skip:
            continue
        loc = f"{rel}#{k}"
        if not isinstance(rec, dict):
            yield Reject("bad_json", f"element {k} is a JSON {type(rec).__name__}, not an object", loc)
        else:
            yield doc_from_record(rec, fields, loc, opts)


def read_jsonl(path: Path | Member, rel: str, fields: FieldMap, opts: ConvertOptions, skip: int = 0) -> Iterator[Item]:
    limit = opts.max_record_bytes
    n = 0
    with _open_binary(path) as f:
        try:
            while True:
                line = f.readline(limit + 1)
                if not line:
                    return
                n += 1
                if len(line) - line.endswith(b"\n") > limit:
                    total = len(line)
                    while not line.endswith(b"\n"):  # drain the rest without holding it
                        line = f.readline(1 << 20)
                        if not line:
                            break
                        total += len(line)
                    if n > skip:
                        yield Reject("line_too_long", f"line of {total} bytes > collect.max_record_bytes",
                                     f"{rel}:{n}")
                    continue
                if n <= skip:
                    continue
                yield _parse_line(line, f"{rel}:{n}", fields, opts)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
            n += 1
            if n > skip:
                yield Reject("truncated", f"input ends early ({type(e).__name__}: {e}) after line {n - 1}",
                             f"{rel}:{n}")


def _parse_line(line: bytes, locator: str, fields: FieldMap, opts: ConvertOptions) -> Item:
    if not line.strip():
        return Skip("blank line")
    try:
        s = line.decode(opts.encoding or "utf-8")
    except UnicodeDecodeError:
        try:
            s, _ = decode(line, forced=opts.encoding, langs=opts.langs)
        except Undecodable as e:
            return Reject(e.rule, str(e), locator)
    try:
        rec = json.loads(s.lstrip("\ufeff"))  # a UTF-8 BOM on the first line
    except json.JSONDecodeError as e:
        return Reject("bad_json", f"{e.msg} at column {e.colno}", locator)
    except RecursionError:
        return Reject("bad_json", "nested too deeply", locator)
    if not isinstance(rec, dict):
        return Reject("bad_json", f"a JSON {type(rec).__name__}, not an object", locator)
    return doc_from_record(rec, fields, locator, opts)


def _needed_columns(fields: FieldMap, names: list[str]) -> list[str]:
    want = [v for v in fields.model_dump().values() if v]
    cols = []
    for w in want:
        top = w if w in names else w.split(".")[0]
        if top in names and top not in cols:
            cols.append(top)
    return cols


def read_parquet(path: Path | Member, rel: str, fields: FieldMap, opts: ConvertOptions, skip: int = 0) -> Iterator[Item]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(pa.BufferReader(path.data) if isinstance(path, Member) else path)
    except (pa.ArrowException, OSError) as e:
        if skip < 1:
            yield Reject("corrupt", f"not a readable Parquet file: {e}", rel)
        return
    names = pf.schema_arrow.names
    if fields.text not in names and fields.text.split(".")[0] not in names:
        if skip < 1:
            yield Reject("missing_field", f"no column {fields.text!r} (sources.fields.text); "
                                          f"columns: {names}", rel)
        return
    n = 0
    try:
        for batch in pf.iter_batches(batch_size=2048, columns=_needed_columns(fields, names)):
            if n + batch.num_rows <= skip:  # resumed: skip whole batches without converting them
                n += batch.num_rows
                continue
            for rec in batch.to_pylist():
                n += 1
                if n > skip:
                    yield doc_from_record(rec, fields, f"{rel}#{n}", opts)
    except (pa.ArrowException, OSError) as e:
        n += 1
        if n > skip:
            yield Reject("corrupt", f"unreadable after row {n - 1}: {e}", f"{rel}#{n}")


def read_csv(path: Path | Member, rel: str, fields: FieldMap, opts: ConvertOptions, delimiter: str | None,
             skip: int = 0, header: bool = True, column_names: list[str] | None = None) -> Iterator[Item]:
    """CSV/TSV with a header row, or without one (`header=False`: `column_names` names them, or
    f0, f1, ...). Mapped columns are read as bytes and decoded per value, so a legacy-encoded
    export works; a row with the wrong number of columns is rejected alone."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    name = path.name[:-3] if path.suffix == ".gz" else path.name
    if delimiter is None:
        delimiter = "\t" if name.lower().endswith((".tsv", ".tab")) else ","
    bad: list[tuple[int | None, str]] = []

    def on_invalid(row) -> str:
        bad.append((row.number, row.text))
        return "skip"

    def open_reader(columns: list[str] | None):
        return pcsv.open_csv(
            _arrow_input(path),
            read_options=pcsv.ReadOptions(use_threads=False, block_size=4 << 20,
                                          column_names=list(column_names or []) if not header else None,
                                          autogenerate_column_names=not header and not column_names),
            parse_options=pcsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(
                include_columns=columns, column_types={c: pa.binary() for c in columns or []}))

    n = 0
    try:
        names = open_reader(None).schema.names
        bad.clear()  # the header probe may have met bad rows of the first block already
        if fields.text not in names:
            if skip < 1:
                yield Reject("missing_field", f"no column {fields.text!r} (sources.fields.text); "
                                              f"columns: {names}", rel)
            return
        rows = 0
        for batch in itertools.chain(open_reader(_needed_columns(fields, names)), [None]):
            # Rows the parser refused while reading a block come before that block's good rows
            # (and after the last block, when a file ends with bad rows or has only bad rows).
            for number, text in bad:
                n += 1
                if n > skip:
                    yield Reject("bad_row", f"wrong number of columns: {text[:80]!r}",
                                 f"{rel}:{number}" if number else f"{rel}#{rows + 1}")
            bad.clear()
            for rec in batch.to_pylist() if batch is not None else ():
                n += 1
                rows += 1
                if n > skip:
                    yield doc_from_record(rec, fields, f"{rel}#{rows}", opts)
    except (pa.ArrowException, OSError, EOFError, zlib.error) as e:
        n += 1
        if n > skip:
            yield Reject("corrupt", f"unreadable after {n - 1} rows: {e}", f"{rel}#{n}")
