"""The small helpers every layer shares (soberan.common, soberan.policy.document_violation):
each replaced a copy kept in several stages, so each must give what those copies gave."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from soberan.common import cpu_workers, json_sha256, read_json, write_json
from soberan.config import Policy
from soberan.policy import document_violation


def test_json_sha256_ignores_key_order_and_keeps_old_digests():
    a = {"b": [1, "x"], "a": {"d": 2, "c": None}}
    b = {"a": {"c": None, "d": 2}, "b": [1, "x"]}
    assert json_sha256(a) == json_sha256(b)
    # the digest the stages recorded before (rebuild keys must not change under an upgrade)
    assert json_sha256(a) == hashlib.sha256(json.dumps(a, sort_keys=True).encode()).hexdigest()
    assert json_sha256(["1", "abc", ["th"], "k"]) == \
        hashlib.sha256(json.dumps(["1", "abc", ["th"], "k"]).encode()).hexdigest()
    with pytest.raises(TypeError):
        json_sha256({"p": object()})
    assert len(json_sha256({"p": object()}, default=lambda o: "obj")) == 64


def test_read_and_write_json(tmp_path):
    p = tmp_path / "deep" / "meta.json"
    write_json(p, {"b": 1, "a": "ภาษาไทย"}, ensure_ascii=False, indent=1, sort_keys=True)
    assert p.read_text(encoding="utf-8") == '{\n "a": "ภาษาไทย",\n "b": 1\n}'
    assert read_json(p) == {"a": "ภาษาไทย", "b": 1}
    assert not [f for f in p.parent.iterdir() if f != p]  # no temporary file left behind
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "absent.json")
    assert read_json(tmp_path / "absent.json", default=None) is None
    (tmp_path / "torn.json").write_text('{"a": ')  # a file cut short: a cache to rebuild
    assert read_json(tmp_path / "torn.json", default={}) == {}
    with pytest.raises(ValueError):
        read_json(tmp_path / "torn.json")


def test_cpu_workers():
    assert cpu_workers(3) == 3
    assert cpu_workers(0) == cpu_workers() == len(os.sched_getaffinity(0))


def test_document_violation_names_the_rule():
    pol = Policy(licenses=["CC0-1.0", "CC-BY-4.0"], jurisdictions=["KR"])
    assert document_violation(pol, "CC0-1.0", "KR") is None
    assert document_violation(pol, "CC0-1.0 OR GPL-3.0", "KR") is None
    assert document_violation(pol, "GPL-3.0", "KR") == (
        "policy.licenses", "license 'GPL-3.0' is not allowed by policy.licenses")
    assert document_violation(pol, "CC0-1.0", "TH") == (
        "policy.jurisdictions", "jurisdiction 'TH' is not allowed by policy.jurisdictions")
    assert document_violation(pol, "GPL-3.0", "TH")[0] == "policy.licenses"  # the license first
