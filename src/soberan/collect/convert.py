"""The costly part of reading files and web bodies (decoding, HTML extraction), run inline or in
pool workers. Kept free of the config and workspace modules so a spawned worker starts fast."""

from __future__ import annotations

from soberan.collect.items import ConvertOptions, Item, Reject, Todo


def convert(item: Item, opts: ConvertOptions) -> Item:
    """Finish a `Todo` (in a worker or inline). A library failing on one input is that input's
    rejection, never the end of a national run."""
    if not isinstance(item, Todo):
        return item
    from soberan.collect.files import bytes_to_doc, read_file
    from soberan.collect.html import body_to_doc

    locator = item.args[1]
    try:
        if item.fn == "file":
            return read_file(*item.args, opts)
        if item.fn == "bytes":  # an archive member: (data, locator, member name)
            data, loc, name = item.args
            return bytes_to_doc(data, name, loc, opts)
        body, rid, uri, html, charset, date = item.args
        return body_to_doc(body, locator=rid, url=uri, html=html, charset=charset, date=date, opts=opts)
    except Exception as e:  # noqa: BLE001 - recorded with its type and message
        return Reject("error", f"{type(e).__name__}: {e}", locator)


def convert_batch(items: list[Item], opts: ConvertOptions) -> list[Item]:
    return [convert(i, opts) for i in items]
