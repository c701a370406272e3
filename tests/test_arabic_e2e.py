"""Arabic end to end on real data: a slice of SaudiNewsNet, zipped JSON as published and
CC-BY-NC-SA-4.0, builds under a policy that allows its license (collect → curate → tokenizer →
train → evaluate on ACVA and EXAMS-ar) and is refused, naming the license, under the default
policy, which allows no NC license."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest
from test_build_e2e import TINY
from test_collect_archive import saudi_source

from soberan.workspace import set_keys

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def _workspace(root, data, shared, allow_nc: bool):
    from soberan.workspace import init_workspace

    cfg = init_workspace(root, lang="ar", jurisdiction="SA", name="soberan-sa")
    text = cfg.read_text()
    assert "KR" not in text.split("[collect]")[0]  # the Arabic template names no Korean license
    if allow_nc:
        text = text.replace("licenses = [", 'licenses = ["CC-BY-NC-SA-4.0", ', 1)
    for section, keys in TINY.items():
        if section != "curate.quality":
            text = set_keys(text, section, keys)
    text = set_keys(text, "evaluate", {"sets": '["acva_arabic", "exams_ar"]', "limit": "16",
                                       "shared_data": json.dumps(str(shared))})
    cfg.write_text(text + saudi_source(data))


def _build(root):
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    return subprocess.run([sys.executable, "-c", "from soberan.cli import app; app()", "build", "-w",
                           str(root)], env=env, capture_output=True, text=True, timeout=900)


def test_saudinewsnet_builds_when_its_license_is_allowed_and_is_refused_otherwise(tmp_path, shared_data):
    day = shared_data / "saudinewsnet" / "dataset" / "2015-07-21.zip"
    with zipfile.ZipFile(day) as z:
        articles = json.loads(z.read("2015-07-21.json"))
    data = tmp_path / "data"
    data.mkdir()
    with zipfile.ZipFile(data / "2015-07-21.zip", "w", zipfile.ZIP_DEFLATED) as z:  # a 400-article slice
        z.writestr("2015-07-21.json", json.dumps(articles[:400], ensure_ascii=False))

    refused = tmp_path / "refused"
    _workspace(refused, data, shared_data, allow_nc=False)
    r = _build(refused)
    assert r.returncode != 0 and "CC-BY-NC-SA-4.0" in r.stdout + r.stderr
    assert not (refused / "curated").exists()

    ws = tmp_path / "sa"
    _workspace(ws, data, shared_data, allow_nc=True)
    r = _build(ws)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "build done" in r.stdout
    stats = json.loads((ws / "curated" / "stats.json").read_text())
    assert stats["input_docs"] == 400 and stats["output_docs"] >= 300
    results = {p.name for p in (ws / "eval").rglob("*.json")}
    out = r.stdout
    assert "acva_arabic (ar) · 16 items" in out and "exams_ar (ar) · 16 items" in out
    assert "bits per byte, held-out ar text" in out
    assert results
