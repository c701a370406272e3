"""Shared fixtures. Tests make their own small data; `../shared/data` is read when present and the
tests that need it skip cleanly when it is not."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Chains are anchored outside their workspace (soberan.ledger.anchor_dir); tests never write to ~.
os.environ.setdefault("SOBERAN_ANCHOR_DIR", tempfile.mkdtemp(prefix="soberan-anchors-"))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SOBERAN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture
def workspace(tmp_path):
    """An empty Korean workspace (no sources), for tests that add their own."""
    from soberan.workspace import Workspace, init_workspace

    init_workspace(tmp_path / "ws", lang="ko", jurisdiction="KR", name="test")
    return Workspace.open(tmp_path / "ws")


def write_config(ws_root: Path, extra: str) -> None:
    """Append TOML (e.g. [[sources]] tables) to a workspace's config. Appending [[sources]] after
    stage sections is valid TOML, so tests can add sources to a generated config."""
    cfg = ws_root / "soberan.toml"
    cfg.write_text(cfg.read_text() + "\n" + extra)
