"""A new per-document filter is a small dataclass or function: the runner walks the batch,
counts what the step saw, kept and dropped, and records each drop and change with its reason,
without the filter doing any of it."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pytest
from test_curate_fixtures import make_workspace

from soberan.curate.shard import Tally, run_step
from soberan.curate.steps import (DOC_STEPS, Context, Doc, DocFilter, DocResult, Normalize, drop, redact,
                                  run_filter)


@dataclass
class MinChars(DocFilter):
    """Drop documents shorter than `min_chars` (its own setting, not read from the config)."""

    min_chars: int = 20

    def decide(self, doc: Doc) -> DocResult | None:
        if len(doc.text) < self.min_chars:
            return drop("min_chars", f"{len(doc.text)} characters < {self.min_chars}")
        return None


def no_shouting(doc: Doc) -> DocResult | None:
    """A plain function is a filter too: it redacts a word and keeps the document."""
    if "SHOUT" in doc.text:
        return redact(doc.text.replace("SHOUT", "shout"), "no_shouting", "lower-cased SHOUT")
    return None


def _batch() -> pa.Table:
    texts = ["short", "a long enough document that stays", "tiny", "another long document, SHOUT here"]
    return pa.table({"id": [f"d{i}" for i in range(4)], "source": ["web", "web", "news", "news"],
                     "sha256": ["x"] * 4, "text": pa.array(texts, pa.large_string()),
                     "lang": ["id"] * 4})


def test_a_new_filter_gets_its_drops_counted_and_reasoned(tmp_path):
    ws = make_workspace(tmp_path / "ws", lang="id", jurisdiction="ID")
    ctx = Context(ws.root)
    tally, decisions = Tally(), {}
    kept = run_step("min_chars", MinChars(min_chars=10), _batch(), ctx, tally, decisions)
    kept = run_step("no_shouting", no_shouting, kept, ctx, tally, decisions)

    assert kept.column("id").to_pylist() == ["d1", "d3"]
    assert kept.column("text").to_pylist()[1] == "another long document, shout here"
    counts = {tuple(r[:5]): r[5] for r in tally.rows()}
    assert counts[("min_chars", "web", "id", "seen", "")] == 2
    assert counts[("min_chars", "web", "id", "kept", "")] == 1
    assert counts[("min_chars", "web", "id", "dropped", "min_chars")] == 1
    assert counts[("min_chars", "news", "id", "dropped", "min_chars")] == 1
    assert counts[("no_shouting", "news", "id", "redacted", "no_shouting")] == 1
    assert counts[("no_shouting", "news", "id", "kept", "")] == 1
    rows = decisions["min_chars"][0].to_pylist()
    assert [(r["doc_id"], r["action"], r["reason"]) for r in rows] == [
        ("d0", "dropped", "5 characters < 10"), ("d2", "dropped", "4 characters < 10")]
    (row,) = decisions["no_shouting"][0].to_pylist()
    assert (row["doc_id"], row["step"], row["action"], row["reason"]) == \
        ("d3", "no_shouting", "redacted", "lower-cased SHOUT")


def test_filters_hold_their_own_settings(tmp_path):
    """DOC_STEPS builds each filter from the config once; the filter then decides from its own
    fields, so the same filter with another setting decides otherwise on the same context."""
    ws = make_workspace(tmp_path / "ws", lang="id", jurisdiction="ID",
                        curate_toml='[curate.normalize]\nftfy = "never"\n')
    ctx = Context(ws.root)
    assert DOC_STEPS["normalize"](ws.config) == Normalize(ftfy="never")
    batch = _batch().slice(1, 1)
    batch = batch.set_column(3, "text", pa.array(["cafÃ© au lait, a long document"], pa.large_string()))
    tally, decisions = Tally(), {}
    never = run_step("normalize", DOC_STEPS["normalize"](ws.config), batch, ctx, tally, decisions)
    always = run_step("normalize", Normalize(ftfy="always"), batch, ctx, tally, decisions)
    assert never.column("text").to_pylist() == ["cafÃ© au lait, a long document"]
    assert always.column("text").to_pylist() == ["café au lait, a long document"]


def test_a_filter_that_changes_an_undeclared_column_is_told_so(tmp_path):
    @dataclass
    class DropOnly(DocFilter):
        writes = {}  # drops only: no column is rewritten

        def decide(self, doc: Doc) -> DocResult | None:
            return drop("short", "too short") if len(doc.text) < 10 else redact("x", "r", "changed")

    ws = make_workspace(tmp_path / "ws", lang="id", jurisdiction="ID")
    with pytest.raises(TypeError, match="DropOnly changed column 'text'"):
        run_filter(DropOnly(), _batch(), Context(ws.root))
