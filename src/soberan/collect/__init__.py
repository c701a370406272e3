"""`soberan collect`: a nation's text, from files, records, web archives and a polite crawler,
to zstd Parquet shards under raw/ with full provenance. Guide: docs/collect.md

Modules, by role: `files`, `records` (JSONL, Parquet, CSV), `warc` and `crawl` read; `encoding`
and `html` turn bytes into text; `shards` commits documents, rejections and resume state;
`stage` ties them together. Imports stay lazy: `soberan.config` imports this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from soberan import stages

# The config sections this stage reads (the stage registry keeps them): hashed into each artifact
# it records, and what `soberan build` compares to decide whether the stage must run again.
CONFIG_SECTIONS = stages.get("collect").config_sections

if TYPE_CHECKING:
    from soberan.collect.stage import CollectSummary, Fingerprint
    from soberan.workspace import Workspace


def run(ws: "Workspace", sources: list[str] | None = None, fresh: bool = False,
        show_progress: bool = True) -> "CollectSummary":
    """Collect the configured sources (or only those named) into raw/; see `stage.run`."""
    from soberan.collect.stage import run as _run

    return _run(ws, sources=sources, fresh=fresh, show_progress=show_progress)


def source_fingerprints(ws: "Workspace") -> "dict[str, Fingerprint]":
    """Per source, what a run now would collect from and what it was last collected from: what
    `soberan build` compares to decide whether collect must run (see `stage.source_fingerprints`)."""
    from soberan.collect.stage import source_fingerprints as _fingerprints

    return _fingerprints(ws)


def config_hash(ws: "Workspace") -> str:
    """The config hash collect records with its artifact (what `soberan build` compares)."""
    return ws.config.section_hash(*CONFIG_SECTIONS)
