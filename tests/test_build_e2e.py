"""The whole demo on the real stages, air-gapped: `soberan init --demo`, `soberan build`,
`soberan report`, `soberan ledger verify`, then a take-down of one source and the rebuild.

Every command runs in a child process whose Python (and every process it starts) loads a socket
guard from a `sitecustomize.py` on PYTHONPATH: a connection, datagram or name lookup for anything
but loopback is refused and logged, and the test fails if the log is not empty. The test process
installs the same guard. The demo's corpus (the konlpy wheel's Korean text) is split into its two
parts, `kolaw` (the Constitution) and `kobill` (ten bills), so a take-down of one source can be
checked against the other; training is a few steps of the tiniest model.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from soberan.workspace import set_keys

pytestmark = pytest.mark.slow

GUARD = r'''
"""Air-gap guard for tests: refuse every non-loopback connection, datagram and name lookup."""
import ipaddress
import os
import socket

_LOG = os.environ.get("SOBERAN_AIRGAP_LOG")
_ORIG = {"connect": socket.socket.connect, "connect_ex": socket.socket.connect_ex,
         "sendto": socket.socket.sendto, "getaddrinfo": socket.getaddrinfo}


def _loopback(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host in (None, "", "localhost") or str(host).endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _refuse(what, address):
    if _LOG:
        with open(_LOG, "a") as f:
            f.write(f"{os.getpid()} {what} {address!r}\n")
    raise ConnectionRefusedError(f"air-gap guard: {what} {address!r} refused")


def _check(sock, address, what):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
        _refuse(what, address)


def connect(self, address):
    _check(self, address, "connect")
    return _ORIG["connect"](self, address)


def connect_ex(self, address):
    _check(self, address, "connect")
    return _ORIG["connect_ex"](self, address)


def sendto(self, data, *args):
    _check(self, args[-1], "sendto")
    return _ORIG["sendto"](self, data, *args)


def _literal(host) -> bool:
    try:
        ipaddress.ip_address((host.decode() if isinstance(host, bytes) else str(host)).split("%")[0])
        return True
    except ValueError:
        return False


def getaddrinfo(host, *args, **kwargs):
    # A name other than localhost would be a DNS query; an IP literal is not (connect decides).
    if not _loopback(host) and not _literal(host):
        if _LOG:
            with open(_LOG, "a") as f:
                f.write(f"{os.getpid()} resolve {host!r}\n")
        raise socket.gaierror(socket.EAI_NONAME, f"air-gap guard: lookup of {host!r} refused")
    return _ORIG["getaddrinfo"](host, *args, **kwargs)


def install():
    socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = connect, connect_ex, sendto
    socket.getaddrinfo = getaddrinfo


def uninstall():
    socket.socket.connect, socket.socket.connect_ex = _ORIG["connect"], _ORIG["connect_ex"]
    socket.socket.sendto, socket.getaddrinfo = _ORIG["sendto"], _ORIG["getaddrinfo"]


install()
'''

# The tiniest real run: a few steps of a one-layer model from scratch with a Mistral v1
# extension, bits per byte only (no benchmark files): the demo's own base model (SmolLM2,
# tests/test_basemodel.py imports and trains a GGUF) would make this a ten-minute test on two
# cores. Curate runs every default step, but with no heuristic quality filter: the Gopher
# repetition filter drops the Constitution (its articles repeat their formulas), and the test
# needs both sources in the model to see one leave it.
TINY = {
    "curate.quality": {"filters": "[]"},  # the demo config's own [curate.quality] table
    "tokenizer": {"mode": '"extend"', "base": '"mistral-v1"', "new_tokens": "500", "min_frequency": "2"},
    "train": {"depth": "1", "seq_len": "32", "micro_batch": "2", "max_steps": "4", "warmup_steps": "1",
              "eval_every": "2", "log_every": "1", "checkpoint_every": "2", "tensorboard": "false"},
    "evaluate": {"sets": "[]", "bpb_max_units": "4", "prompts": "false"},
}


@pytest.fixture(scope="module")
def guard(tmp_path_factory):
    d = tmp_path_factory.mktemp("airgap")
    (d / "sitecustomize.py").write_text(GUARD)
    log = d / "blocked.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(PYTHONPATH=os.pathsep.join([str(d), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               SOBERAN_AIRGAP_LOG=str(log), NO_COLOR="1", COLUMNS="200")
    mod = runpy.run_path(str(d / "sitecustomize.py"))  # the test process too
    yield env, log
    mod["uninstall"]()


def soberan(env, *args, timeout=900) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "from soberan.cli import app; app()", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r.stdout


def blocked(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture(scope="module")
def demo(guard, tmp_path_factory):
    env, log = guard
    root = tmp_path_factory.mktemp("e2e") / "demo"
    ok(soberan(env, "init", str(root), "--lang", "ko", "--jurisdiction", "KR", "--name", "soberan-ko-demo", "--demo"))
    cfg = root / "soberan.toml"
    text = cfg.read_text()
    corpus = re.search(r'^path = "(.*)"$', text, re.M).group(1)
    block = re.search(r"^\[\[sources\]\]\n(?:(?!^\[).*\n)*", text, re.M).group(0)
    two = "".join(f'''[[sources]]
name = "{name}"
kind = "files"
path = "{corpus}/{name}"
include = ["*.txt"]
license = "LicenseRef-KR-Public-Domain"
jurisdiction = "KR"
lang = "ko"
description = "{desc}"

''' for name, desc in (("kolaw", "Constitution of the Republic of Korea"),
                       ("kobill", "National Assembly bills")))
    text = text.replace(block, two)
    text = re.sub(r'^base_model = .*\n', "", text, flags=re.M)  # from scratch (see TINY)
    for section, keys in TINY.items():
        text = set_keys(text, section, keys)
    cfg.write_text(text)
    build = soberan(env, "build", "-w", str(root))
    return root, env, log, build


def test_air_gap_guard_refuses_the_network_and_allows_loopback(guard):
    env, log = guard
    with pytest.raises(ConnectionRefusedError, match="air-gap guard"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # TEST-NET-1: refused before any packet
    with pytest.raises(socket.gaierror, match="air-gap guard"):
        socket.getaddrinfo("example.org", 443)  # no DNS query leaves either
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    code = ("import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=1)\n"
            "except ConnectionRefusedError as e:\n    print('refused', e)\n"
            f"socket.create_connection(('127.0.0.1', {port}), timeout=5).close()\nprint('loopback ok')\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    srv.close()
    assert "refused air-gap guard" in r.stdout and "loopback ok" in r.stdout, r.stderr
    assert any("192.0.2.1" in line for line in blocked(log))
    log.unlink()


def test_demo_builds_air_gapped(demo):
    root, env, log, build = demo
    out = ok(build)
    assert blocked(log) == [], "a stage tried to reach the network"
    assert "build done" in out
    from soberan.ledger import Ledger
    from soberan.stages import main_artifacts

    led = Ledger(root)
    for stage, kind in main_artifacts().items():
        assert led.latest_artifact(stage, kind), f"no {stage} artifact"
    assert "ledger OK" in ok(soberan(env, "ledger", "verify", "-w", str(root)))
    again = ok(soberan(env, "build", "-w", str(root)))
    assert "0 stage(s) ran, 5 current" in again


def test_demo_report(demo):
    root, env, log, build = demo
    ok(build)
    out = ok(soberan(env, "report", "-w", str(root)))
    assert blocked(log) == []
    assert "index.html" in out
    f = json.loads((root / "report" / "report.json").read_text())
    raw = pq.ParquetDataset(str(root / "raw")).read(columns=["id"]).num_rows
    assert f["funnel"]["collected"]["docs"] == raw and f["funnel"]["collected"]["tokens"] > 0
    assert f["funnel"]["kept"]["docs"] > 0 and f["ledger"]["ok"]
    assert {r["value"] for r in f["composition"]["source"]} <= {"kolaw", "kobill"}
    # The demo's English replay (replay_path) is its own source in the model's shares.
    assert set(f["model_shares_flat"]["source"]) == {"kolaw", "kobill", "replay"}
    assert f["training"]["available"] and f["evaluation"]["available"]
    eu = json.loads((root / "report" / "eu_training_summary.json").read_text())
    assert eu["general_information"]["training_data_size"]["text"]["bin"] == "Less than 1 billion tokens"
    assert (root / "report" / "model_card" / "README.md").read_text().startswith("---\n")
    assert "ledger OK" in ok(soberan(env, "ledger", "verify", "-w", str(root)))


def test_takedown_of_a_demo_source_reaches_every_rebuilt_artifact(demo):
    root, env, log, build = demo
    ok(build)
    import duckdb

    raw_ids = {r[0] for r in duckdb.sql(f"SELECT id FROM read_parquet('{root}/raw/**/*.parquet') "
                                        "WHERE source = 'kolaw'").fetchall()}
    assert raw_ids
    out = ok(soberan(env, "takedown", "-w", str(root), "--source", "kolaw", "--reason", "test: rights holder request"))
    assert "marked stale" in out
    rebuilt = ok(soberan(env, "build", "-w", str(root)))
    assert blocked(log) == []
    assert "5 stage(s) ran" in rebuilt
    # No document of the source in any Parquet file of any stage (shards, tokenizer input,
    # packed training data, held-out text) ...
    leftovers = {}
    for folder in ("raw", "curated", "tokenizer", "model", "eval", "work"):
        for p in (root / folder).rglob("*.parquet") if (root / folder).exists() else []:
            names = pq.read_schema(p).names
            # doc_id first: a held-out paragraph's own id is "<doc id>:<n>"
            col = "doc_id" if "doc_id" in names else "id" if "id" in names else None
            if col:
                hit = raw_ids & set(pq.read_table(p, columns=[col]).column(0).to_pylist())
                if hit:
                    leftovers[str(p.relative_to(root))] = len(hit)
            if "source" in names:
                assert "kolaw" not in set(pq.read_table(p, columns=["source"]).column(0).to_pylist()), p
    assert leftovers == {}
    # ... and the rebuilt model's recorded token shares exclude it.
    from soberan.ledger import Ledger

    model = Ledger(root).latest_artifact("train", "model")
    shares = model["meta"]["token_shares"]
    assert set(shares["source"]) == {"kobill", "replay"}
    assert "ledger OK" in ok(soberan(env, "ledger", "verify", "-w", str(root)))
    ok(soberan(env, "report", "-w", str(root)))
    f = json.loads((root / "report" / "report.json").read_text())
    (t,) = f["takedowns"]
    assert t["remaining_docs"] == 0 and all(a["rebuilt"] for a in t["artifacts"]), [a["path"] for a in t["artifacts"] if not a["rebuilt"]]
    assert "kolaw" in t["shares_before"] and "kolaw" not in t["shares_after"]
