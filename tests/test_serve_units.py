"""soberan serve, piece by piece: the batching engine, keys and quotas, the audit chain, request
validation, the offline guard. The running server is tested in test_serve.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from contextlib import asynccontextmanager

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from soberan.serve.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.getbasetemp() / "serve-tiny" / "model")


@pytest.fixture(scope="module")
def loaded(tiny):
    from soberan.serve.model import load_transformers

    return load_transformers(tiny)


def _reference(loaded, prompt: list[int], n: int) -> list[int]:
    """Greedy continuation by transformers' own generate(), one sequence, no batching."""
    out = loaded.model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                pad_token_id=loaded.tokenizer.pad_token_id)
    return out[0, len(prompt):].tolist()


async def _collect(engine, prompt, sampling, delay=0.0):
    await asyncio.sleep(delay)
    text, last = "", None
    async for c in engine.generate(prompt, sampling):
        text += c.text
        last = c
    return text, last


@asynccontextmanager
async def running(loaded, max_batch: int):
    """A batching engine on the tiny model; no EOS, so every sequence runs to max_tokens."""
    from soberan.serve.engine import BatchEngine

    engine = BatchEngine(loaded.model, loaded.tokenizer, max_batch=max_batch,
                         context_length=loaded.context_length, eos_ids=set())
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()


def _ids(loaded, text: str) -> list[int]:
    return loaded.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_continuous_batching_matches_unbatched_greedy(loaded):
    """Prompts of different lengths, arriving while others decode, give exactly what each would
    give alone: left padding, per-row positions and cache merging do not change the answer."""
    from soberan.serve.engine import Sampling

    prompts = [_ids(loaded, t) for t in ["대한민국은 민주공화국이다.", "국회", "대통령은 국가의 원수이며",
                                         "모든 국민은 법 앞에 평등하다. 누구든지 성별·종교", "헌법재판소"]]
    n = 12

    async def main():
        async with running(loaded, max_batch=3) as engine:
            return await asyncio.gather(*[
                _collect(engine, p, Sampling(max_tokens=n, temperature=0), delay=0.004 * i)
                for i, p in enumerate(prompts)]), engine.peak_batch, engine.active

    results, peak, active = asyncio.run(main())
    assert peak > 1 and active == 0
    for p, (text, last) in zip(prompts, results):
        assert last.completion_tokens == n and last.finish_reason == "length"
        assert text == loaded.tokenizer.decode(_reference(loaded, p, n), skip_special_tokens=True)


def test_cancel_frees_the_slot_and_queue_moves_on(loaded):
    from soberan.serve.engine import Sampling

    prompt = _ids(loaded, "대한민국")

    async def main():
        async with running(loaded, max_batch=1) as engine:
            long = engine.generate(prompt, Sampling(max_tokens=900, temperature=0))
            first = await long.__anext__()
            waiting = asyncio.ensure_future(_collect(engine, prompt, Sampling(max_tokens=3, temperature=0)))
            await asyncio.sleep(0.05)
            assert engine.pending == 1  # max_batch=1: the second waits for the slot
            await long.aclose()  # the client leaves
            text, last = await asyncio.wait_for(waiting, 30)
            return first, last, engine.active, engine.pending

    first, last, active, pending = asyncio.run(main())
    assert first.completion_tokens < 900
    assert last.completion_tokens == 3 and (active, pending) == (0, 0)


def test_sampling_seed_top_p_penalties_and_stop(loaded):
    from soberan.serve.engine import Sampling

    prompt = _ids(loaded, "국민의 권리와 의무")

    async def main(**stop):
        async with running(loaded, max_batch=8) as engine:
            run = lambda **kw: _collect(engine, prompt, Sampling(max_tokens=24, **kw))
            if stop:
                return await run(temperature=0, **stop)
            return await asyncio.gather(
                run(temperature=1.0, seed=7), run(temperature=1.0, seed=7), run(temperature=1.0, seed=8),
                run(temperature=0), run(temperature=0, frequency_penalty=2.0),
                run(temperature=1.0, top_p=1e-6, seed=3))

    (a, _), (b, _), (c, _), (greedy, _), (penalised, _), (nucleus, _) = asyncio.run(main())
    assert a == b and a != c  # a seed fixes the sample, whatever else shares the batch
    assert penalised != greedy  # the random model repeats itself greedily; the penalty breaks it
    assert nucleus == greedy  # top_p -> 0 keeps only the most likely token
    stop = greedy[5:7]
    text, last = asyncio.run(main(stop=(stop,)))
    assert text == greedy[:greedy.find(stop)] and last.finish_reason == "stop"


def _sentencepiece_style(lines):
    """A Llama/Mistral-style tokenizer: Metaspace normalization, BPE with byte fallback, so a
    rare Hangul syllable becomes three <0xXX> byte tokens."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", "<s>", "</s>"],
                                                       show_progress=False))
    spec = json.loads(tok.to_str())  # byte tokens are ordinary vocabulary, as in Llama's
    for i in range(256):
        spec["model"]["vocab"].setdefault(f"<0x{i:02X}>", len(spec["model"]["vocab"]))
    tok = Tokenizer.from_str(json.dumps(spec))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.mark.parametrize("kind", ["byte-level", "sentencepiece"])
def test_streamed_text_is_the_decoded_text(loaded, kind):
    """Token by token, the engine's incremental detokenizer emits exactly the text, never half a
    character, for byte-level BPE and for SentencePiece-style byte fallback alike."""
    from soberan.serve.engine import BatchEngine, Sampling
    from soberan.serve.tiny import korean_lines

    lines = korean_lines(20_000)
    tok = loaded.tokenizer if kind == "byte-level" else _sentencepiece_style(lines)
    text = "대한민국의 영토는 한반도와 그 부속도서로 한다. 國民 😀 ok"
    prompt, answer = tok("헌법 제3조", add_special_tokens=False)["input_ids"], tok(text, add_special_tokens=False)["input_ids"]
    if kind == "sentencepiece":
        assert any(tok.convert_ids_to_tokens(i).startswith("<0x") for i in answer)  # byte fallback in play
    engine = BatchEngine(_Scripted(answer, len(tok)), tok, max_batch=1, context_length=10_000, eos_ids=set())

    async def main():
        engine.start()
        try:
            return [c async for c in engine.generate(prompt, Sampling(max_tokens=len(answer), temperature=0))]
        finally:
            engine.stop()

    chunks = asyncio.run(main())
    assert chunks[-1].completion_tokens == len(answer) and chunks[-1].finish_reason == "length"
    assert "".join(c.text for c in chunks).strip() == text
    assert not any("\ufffd" in c.text for c in chunks)


class _Scripted(torch.nn.Module):
    """A causal LM whose greedy answer is a given token sequence, one token per forward pass (the
    engine's prefill, then each decode step), so that the engine streams exactly those tokens."""

    def __init__(self, script: list[int], vocab: int) -> None:
        super().__init__()
        self.script, self.vocab, self.step = script, vocab, 0
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # the engine reads the device from it

    def forward(self, input_ids, past_key_values=None, **_):
        from types import SimpleNamespace

        logits = torch.zeros(input_ids.shape[0], 1, self.vocab)
        logits[:, -1, self.script[min(self.step, len(self.script) - 1)]] = 1.0
        self.step += 1
        return SimpleNamespace(logits=logits, past_key_values=past_key_values)


def test_int8_quantization_replaces_linear_layers(tiny):
    from soberan.serve.model import load_transformers

    q = load_transformers(tiny, quantize="int8")
    kinds = {type(m).__module__ + "." + type(m).__name__ for m in q.model.modules()}
    assert any("quantized" in k and k.endswith("Linear") for k in kinds)
    assert not any(type(m) is torch.nn.Linear for m in q.model.modules())
    ids = torch.tensor([q.tokenizer("대한민국", add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        assert torch.isfinite(q.model(input_ids=ids).logits).all()


# --- keys and quotas ------------------------------------------------------------------------

def test_keys_are_stored_hashed_and_checked(tmp_path):
    from soberan.serve.keys import KeyStore, create_key, revoke_key

    path = tmp_path / "keys.json"
    rec, key = create_key(path, "ministry", rate_limit="5/s", token_budget=100)
    assert key.startswith("sk-sob-") and (rec.rate_limit, rec.rate_window_s) == (5, 1)
    stored = path.read_text()
    assert key.split(".")[1] not in stored and rec.sha256 in stored
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    store = KeyStore(path)
    assert store.check(key)[0].name == "ministry"
    assert store.check(key[:-1] + ("A" if key[-1] != "A" else "B"))[0] is None
    assert store.check(None)[1].startswith("missing")
    assert store.check("Bearer nonsense")[0] is None
    with pytest.raises(Exception, match="already exists"):
        create_key(path, "ministry")
    revoke_key(path, "ministry")
    found, why = store.check(key)
    assert found is None and "revoked" in why
    _, key2 = create_key(path, "ministry")  # a revoked name can be reused; it is a new key
    assert store.check(key2)[0] is not None and store.check(key)[0] is None


def test_rate_limit_is_a_sliding_window():
    from soberan.serve.keys import ApiKey, Quotas

    k = ApiKey("a", "0" * 12, "00", "", "", rate_limit=2, rate_window_s=60, token_budget=0)
    q = Quotas()
    assert q.admit(k, now=0.0) is None and q.admit(k, now=1.0) is None
    assert q.admit(k, now=2.0) == pytest.approx(58.0)
    assert q.admit(k, now=60.5) is None  # the first request left the window


def test_token_budget_reserves_and_settles():
    from soberan.serve.keys import ApiKey, Quotas

    k = ApiKey("a", "1" * 12, "00", "", "", rate_limit=0, rate_window_s=60, token_budget=100)
    q = Quotas(spent={k.key_id: 30})
    assert q.reserve(k, prompt_tokens=10, max_tokens=50) == 50  # 30 spent + 60 reserved
    assert q.reserve(k, prompt_tokens=5, max_tokens=50) == 5  # only 10 left: cut to 5
    assert q.reserve(k, prompt_tokens=5, max_tokens=50) == 0
    q.settle(k, reserved=60, used=20)  # the first used less than it reserved
    assert q.reserve(k, prompt_tokens=5, max_tokens=50) == 35


@pytest.mark.parametrize("text, expect", [("30", (30, 60)), ("30/min", (30, 60)), ("2/s", (2, 1)),
                                          ("1000/hour", (1000, 3600)), ("0", (0, 60))])
def test_parse_rate(text, expect):
    from soberan.serve.keys import parse_rate

    assert parse_rate(text) == expect


def test_parse_rate_rejects_nonsense():
    from soberan.config import ConfigError
    from soberan.serve.keys import parse_rate

    with pytest.raises(ConfigError):
        parse_rate("fast")


# --- audit log ------------------------------------------------------------------------------

def _audit_with(tmp_path, n=4):
    from soberan.serve.audit import AuditLog

    log = AuditLog(tmp_path / "serve")
    for i in range(n):
        log.log({"key_id": "k", "route": "/v1/completions", "status": 200, "prompt_tokens": i,
                 "completion_tokens": 1})
    return log


def test_audit_chain_verifies_and_counts_tokens(tmp_path):
    log = _audit_with(tmp_path)
    assert log.verify() == []
    assert log.tokens_by_key() == {"k": 0 + 1 + 2 + 3 + 4}


@pytest.mark.parametrize("tamper, words", [
    ("edit", "changed"), ("remove", "removed or reordered"), ("reorder", "removed or reordered"),
    ("truncate", "HEAD"),
])
def test_audit_tampering_is_detected(tmp_path, tamper, words):
    log = _audit_with(tmp_path)
    lines = log.records_path.read_text().splitlines()
    if tamper == "edit":
        rec = json.loads(lines[1])
        rec["status"] = 500
        lines[1] = json.dumps(rec, sort_keys=True)
    elif tamper == "remove":
        del lines[1]
    elif tamper == "reorder":
        lines[1], lines[2] = lines[2], lines[1]
    else:
        lines = lines[:-1]
    log.records_path.write_text("\n".join(lines) + "\n")
    problems = log.verify()
    assert problems and any(words in str(p) for p in problems), problems


def test_audit_content_modes():
    from soberan.serve.audit import content_recorder

    text = "제 전화번호는 010-1234-5678 이고 메일은 hong@example.kr 입니다"
    assert content_recorder("omit", ["ko"])(text) == {}
    keyed = content_recorder("hash", ["ko"], b"k" * 32)
    h = keyed(text)["hmac_sha256"]
    assert len(h) == 64 and h != keyed(text + " ")["hmac_sha256"]
    # keyed: a guess hashed without the workspace's secret does not match
    assert h != hashlib.sha256(text.encode()).hexdigest()
    assert h != content_recorder("hash", ["ko"], b"j" * 32)(text)["hmac_sha256"]
    red = content_recorder("redact", ["ko"])(text)
    assert "010-1234-5678" not in red["text"] and "hong@example.kr" not in red["text"]
    assert red["redacted"] and "전화번호" in red["text"]


# --- request validation ---------------------------------------------------------------------

@pytest.mark.parametrize("body, param, words", [
    ({"model": "m", "prompt": "x", "temperature": 2.5}, "temperature", "less than or equal"),
    ({"model": "m", "prompt": "x", "top_p": 0}, "top_p", "greater than"),
    ({"model": "m", "prompt": "x", "max_tokens": 0}, "max_tokens", "greater than"),
    ({"model": "m", "prompt": "x", "presence_penalty": -3}, "presence_penalty", "greater than"),
    ({"model": "m", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
    ({"model": "m", "prompt": "x", "n": 2}, "n", "not supported"),
    ({"model": "m", "prompt": "x", "logprobs": 5}, "logprobs", "not supported"),
    ({"model": "m", "prompt": "x", "colour": "red"}, "colour", "Unrecognized request argument"),
    ({"model": "m", "prompt": ["a", "b"]}, "prompt", "one prompt per request"),
    ({"prompt": "x"}, "model", "required"),
])
def test_bad_requests_name_the_parameter(body, param, words):
    from soberan.serve.protocol import ApiError, CompletionRequest, parse

    with pytest.raises(ApiError) as e:
        parse(CompletionRequest, body)
    assert e.value.status == 400 and e.value.param == param and words in e.value.message


def test_accepted_openai_fields():
    from soberan.serve.protocol import ChatRequest, parse

    req = parse(ChatRequest, {"model": "m", "messages": [{"role": "developer", "content": [
        {"type": "text", "text": "안녕"}]}], "n": 1, "user": "u1", "stop": "\n",
        "max_completion_tokens": 5, "stream": True, "stream_options": {"include_usage": True}})
    assert req.limit == 5 and req.stops == ("\n",) and req.include_usage
    assert req.messages[0].as_template() == {"role": "system", "content": "안녕"}


# --- config and offline ---------------------------------------------------------------------

def test_outbound_guard_refuses_internet_but_not_loopback():
    code = (
        "import socket\n"
        "from soberan.offline import refuse_outbound\n"
        "srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()\n"
        "refuse_outbound()\n"
        "socket.create_connection(srv.getsockname(), timeout=2).close()\n"
        "for target in [('93.184.216.34', 80), ('example.org', 80)]:\n"
        "    try:\n"
        "        socket.create_connection(target, timeout=2)\n"
        "    except PermissionError as e:\n"
        "        print('refused', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("refused") == 2 and "93.184.216.34" in out.stdout and "example.org" in out.stdout


# --- the audit log under attack -------------------------------------------------------------

def test_audit_secret_and_log_are_owner_only(tmp_path):
    from soberan.serve.audit import audit_secret

    log = _audit_with(tmp_path, 2)
    secret = audit_secret(tmp_path / "serve")
    assert len(secret) == 32 and audit_secret(tmp_path / "serve") == secret
    for p in (log.records_path, log.head_path, tmp_path / "serve" / "audit.secret"):
        assert p.stat().st_mode & 0o777 == 0o600, p


def test_torn_audit_tail_is_recovered_for_verify_keys_list_and_serve(tmp_path):
    from typer.testing import CliRunner

    from soberan.cli import app
    from soberan.serve.audit import AuditLog
    from soberan.workspace import init_workspace

    init_workspace(tmp_path / "ws", lang="ko", jurisdiction="KR", name="t")
    log = _audit_with(tmp_path / "ws", 6)
    with open(log.records_path, "r+b") as f:  # `truncate -s -100 serve/audit.jsonl`
        f.truncate(log.records_path.stat().st_size - 100)
    runner = CliRunner()
    listed = runner.invoke(app, ["keys", "list", "-w", str(tmp_path / "ws")])
    assert listed.exit_code == 0, listed.output
    ok = runner.invoke(app, ["audit", "verify", "-w", str(tmp_path / "ws")])
    assert ok.exit_code == 0 and "torn" in ok.output and "audit.jsonl.torn-" in ok.output, ok.output
    again = AuditLog(tmp_path / "ws" / "serve")
    assert again.tokens_by_key() == {"k": 0 + 1 + 2 + 3 + 4 + 5}  # the five whole records
    assert again.verify() == []


@pytest.mark.parametrize("attack", ["cut_and_rewrite_head", "edit_and_rehash", "delete_both"])
def test_audit_history_cannot_be_rewritten_undetected(tmp_path, attack):
    from soberan.ledger import record_hash

    log = _audit_with(tmp_path, 120)
    lines = log.records_path.read_text().splitlines()
    if attack == "delete_both":
        log.records_path.unlink()
        log.head_path.unlink()
    else:
        if attack == "cut_and_rewrite_head":
            lines, start = lines[:-5], len(lines)
        else:
            rec = json.loads(lines[100])
            rec["status"] = 403
            lines[100] = json.dumps(rec)
            start = 100
        prev = json.loads(lines[start - 1])["hash"] if start <= len(lines) else None
        for i in range(min(start, len(lines)), len(lines)):
            rec = json.loads(lines[i])
            rec["prev"] = prev
            rec["hash"] = prev = record_hash(rec)
            lines[i] = json.dumps(rec, sort_keys=True)
        log.records_path.write_text("\n".join(lines) + "\n")
        last = json.loads(lines[-1])
        log.head_path.write_text(f"{last['seq']} {last['hash']}\n")
    problems = [str(p) for p in log.verify()]
    assert problems, attack
    assert any(w in p for p in problems for w in ("cut", "rewritten", "deleted")), problems


# --- the egress guard: every path out, refused before the system call --------------------------

_EGRESS = r"""
import json, socket
from soberan.offline import refuse_outbound
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
udp_local = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp_local.bind(("127.0.0.1", 0))
refuse_outbound()
def udp():
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def udp6():
    return socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
probes = {
    "gethostbyname": lambda: socket.gethostbyname("example.com"),
    "gethostbyname_ex": lambda: socket.gethostbyname_ex("example.com"),
    "getaddrinfo": lambda: socket.getaddrinfo("example.com", 443),
    "getaddrinfo_x.localhost": lambda: socket.getaddrinfo("x.localhost", 80),
    "gethostbyname_x.localhost": lambda: socket.gethostbyname("evil.localhost"),
    "gethostbyaddr": lambda: socket.gethostbyaddr("1.1.1.1"),
    "getnameinfo": lambda: socket.getnameinfo(("1.1.1.1", 53), 0),
    "udp_sendto": lambda: udp().sendto(b"\x00" * 12, ("1.1.1.1", 53)),
    "udp_sendto_v4mapped": lambda: udp6().sendto(b"\x00" * 12, ("::ffff:1.1.1.1", 53)),
    "udp_sendto_name": lambda: udp().sendto(b"\x00" * 12, ("example.com", 53)),
    "udp_sendmsg_name": lambda: udp().sendmsg([b"\x00" * 12], [], 0, ("example.com", 53)),
    "udp_sendmsg": lambda: udp().sendmsg([b"\x00" * 12], [], 0, ("1.1.1.1", 53)),
    "udp_connect": lambda: udp().connect(("1.1.1.1", 53)),
    "tcp_connect": lambda: socket.socket().connect(("93.184.216.34", 80)),
    "tcp_connect_ex": lambda: socket.socket().connect_ex(("93.184.216.34", 80)),
    "tcp_connect_name": lambda: socket.socket().connect(("example.org", 80)),
    "create_connection": lambda: socket.create_connection(("example.org", 80), timeout=2),
    "raw_socket": lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
    # what must keep working
    "ok_loopback_tcp": lambda: socket.create_connection(srv.getsockname(), timeout=2).close(),
    "ok_localhost_lookup": lambda: socket.getaddrinfo("localhost", 80),
    "ok_loopback_udp": lambda: udp().sendto(b"x", udp_local.getsockname()),
    "ok_ip_literal_lookup": lambda: socket.getaddrinfo("10.1.2.3", 80, type=socket.SOCK_STREAM),
}
out = {}
for name, probe in probes.items():
    try:
        probe()
        out[name] = "ok"
    except PermissionError as e:
        out[name] = "refused: " + str(e)
    except OSError as e:
        out[name] = "oserror: " + type(e).__name__ + " " + str(e)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def egress_probes():
    """Run every probe in a child process (an audit hook cannot be removed). Where user
    namespaces allow, the child also runs in a network namespace with no way out, so that a
    hole in the guard shows as an OSError, never as a packet on the wire."""
    import shutil as _shutil

    prefix = []
    if _shutil.which("unshare") and subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0:
        prefix = ["unshare", "-rn"]
    out = subprocess.run(prefix + [sys.executable, "-c", _EGRESS], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("probe", [
    "gethostbyname", "gethostbyname_ex", "getaddrinfo", "getaddrinfo_x.localhost",
    "gethostbyname_x.localhost", "gethostbyaddr", "getnameinfo", "udp_sendto", "udp_sendto_v4mapped",
    "udp_sendto_name", "udp_sendmsg_name",
    "udp_sendmsg", "udp_connect", "tcp_connect", "tcp_connect_ex", "tcp_connect_name",
    "create_connection", "raw_socket"])
def test_egress_guard_refuses(egress_probes, probe):
    assert egress_probes[probe].startswith("refused: soberan refuses"), egress_probes[probe]


@pytest.mark.parametrize("probe", ["ok_loopback_tcp", "ok_localhost_lookup", "ok_loopback_udp",
                                   "ok_ip_literal_lookup"])
def test_egress_guard_lets_loopback_through(egress_probes, probe):
    assert not egress_probes[probe].startswith("refused"), egress_probes[probe]


def _netns_allowed() -> bool:
    import shutil as _shutil

    return bool(_shutil.which("unshare")) and subprocess.run(
        ["unshare", "-rn", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _netns_allowed(), reason="no root and no unprivileged user namespaces")
def test_network_namespace_leaves_only_loopback():
    """Real isolation, without the audit hook: a connection to another host finds no route,
    loopback works, and a socket bound before the move still accepts from outside."""
    code = (
        "import socket\n"
        "from soberan.offline import isolate_network\n"
        "outer = socket.socket(); outer.bind(('127.0.0.1', 0)); outer.listen()\n"
        "print('mode', isolate_network())\n"
        "try:\n"
        "    socket.socket().connect(('192.0.2.1', 9)); print('LEAK')\n"
        "except OSError as e:\n"
        "    print('unreachable', e.errno)\n"
        "inner = socket.socket(); inner.bind(('127.0.0.1', 0)); inner.listen()\n"
        "socket.create_connection(inner.getsockname(), timeout=2).close(); print('loopback ok')\n"
        "print('port', outer.getsockname()[1], flush=True)\n"
        "conn, _ = outer.accept(); conn.sendall(b'hi'); conn.close()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line.strip())
        if line.startswith("port"):
            import socket as _socket

            with _socket.create_connection(("127.0.0.1", int(line.split()[1])), timeout=5) as c:
                assert c.recv(2) == b"hi"  # the host reaches the server's pre-bound socket
            break
    proc.wait(timeout=30)
    out = "\n".join(lines)
    assert proc.returncode == 0, proc.stderr.read()
    assert "network namespace" in out and "unreachable" in out and "LEAK" not in out and "loopback ok" in out


def test_noise_is_counted_not_logged_past_the_first_few():
    from soberan.serve.limits import Noise, clip

    n = Noise(per_client=3, logged_per_client=2, logged_total=3, window_s=60, _window_start=0.0)
    assert [n.limited("a", now=t) for t in (0, 1, 2)] == [None, None, None]
    assert n.limited("a", now=3) == pytest.approx(57)  # the first of the 3 leaves at t=60
    kept = [n.keep(c, 401, "invalid_api_key") for c in ("a", "a", "a", "b", "b", "c")]
    assert kept == [True, True, False, True, False, False]  # 2 per client, 3 in all
    assert n.flush(now=30) is None  # the window has not ended
    agg = n.flush(now=61)
    assert agg["refused"] == 3 and agg["clients"] == 3 and agg["by_status"] == [
        {"status": 401, "error": "invalid_api_key", "count": 3}]
    assert n.flush(now=200) is None  # nothing new
    assert clip("x" * 500).endswith("…(+300 chars)") and len(clip("x" * 500)) < 220


def test_noise_forgets_the_clients_of_past_windows():
    """A scan from ever new addresses holds memory for one window's clients, not for all it saw:
    20 windows of 1,000 new clients each keep ~17 MB without the forgetting, ~30 kB with it."""
    import tracemalloc

    import soberan.serve.keys  # noqa: F401 (imported on first use: not part of what is measured)
    from soberan.serve.limits import Noise

    n = Noise(per_client=3, window_s=60, _window_start=0.0)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for w in range(20):
            for c in range(1000):
                assert n.limited(f"10.{w}.{c // 256}.{c % 256}", now=w * 60 + c / 100) is None
            n.flush(now=(w + 1) * 60 + 10)
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert held < 2_000_000, held
