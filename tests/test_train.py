"""`soberan train`: packing, the mix, new-token init, staged freezing, chat masking, LoRA, resume
after a kill, and two processes against one. Tiny models (width 64), a few steps each."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from soberan.documents import DOC_SCHEMA, doc_id, text_sha256, write_parquet_atomic

# Tiny matmuls on a shared 2-core machine are far faster on one thread than on two that spin.
torch.set_num_threads(1)
os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the resume test forks
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
SRC = Path(__file__).resolve().parents[1] / "src"

KO = ["대한민국은 민주공화국이다", "모든 국민은 법 앞에 평등하다", "국회는 법률을 제정한다",
      "대통령은 국가의 원수이다", "국민의 자유와 권리는 존중된다", "법원은 헌법과 법률에 의하여 심판한다"]
EN = ["the court shall decide", "every citizen is equal before the law", "the assembly makes the laws",
      "the president is the head of state"]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SMALL = """
depth = 1
seq_len = 32
micro_batch = 4
max_steps = 6
warmup_steps = 2
eval_every = 3
log_every = 3
checkpoint_every = 3
eval_max_bytes = 2000
tensorboard = false
"""


def corpus(n_ko: int = 30, n_en: int = 12, seed: int = 0) -> pa.Table:
    r = random.Random(seed)
    rows = []
    for i in range(n_ko + n_en):
        ko = i < n_ko
        text = " ".join(r.choice(KO if ko else EN) + "." for _ in range(r.randint(3, 12)))
        src, sha = ("laws" if ko else "news"), text_sha256(text)
        rows.append({"id": doc_id(src, f"doc{i}", sha), "text": text, "source": src, "url": f"doc{i}",
                     "license": "CC0-1.0" if ko else "CC-BY-4.0", "jurisdiction": "KR",
                     "lang": "ko" if ko else "en", "lang_score": 1.0,
                     "collected_at": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), "date": None,
                     "title": None, "sha256": sha})
    return pa.Table.from_pylist(rows, schema=DOC_SCHEMA)


def tiny_tokenizer(out: Path, texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.chat_template = CHATML
    fast.save_pretrained(out)
    return fast


@pytest.fixture
def tiny_ws(workspace):
    """A workspace with a curated corpus (two shards, two sources) and a tokenizer in the ledger."""
    root = workspace.root
    t = corpus()
    write_parquet_atomic(t.slice(0, 20), root / "curated" / "part-0.parquet")
    write_parquet_atomic(t.slice(20), root / "curated" / "part-1.parquet")
    workspace.ledger.record_artifact(stage="curate", kind="corpus", path=root / "curated")
    tiny_tokenizer(root / "tokenizer" / "final", t.column("text").to_pylist())
    workspace.ledger.record_artifact(stage="tokenizer", kind="tokenizer", path=root / "tokenizer" / "final")
    return reopen(workspace, SMALL)


def reopen(ws, extra: str = ""):
    from soberan.workspace import Workspace

    if extra:  # set keys of [train], replacing earlier values
        cfg = ws.root / "soberan.toml"
        text = cfg.read_text()
        head, rest = text.split("[train]\n", 1)
        body, sep, tail = rest.partition("\n[")
        new = dict(line.split(" = ", 1) for line in extra.strip().splitlines())
        kept = [line for line in body.splitlines() if line.split(" = ", 1)[0] not in new]
        body = "\n".join([f"{k} = {v}" for k, v in new.items()] + kept)
        cfg.write_text(head + "[train]\n" + body + sep + tail)
    return Workspace.open(ws.root)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        out.update(load_file(f))
    return out


# --- data -------------------------------------------------------------------------------------

def test_pack_spans_decode_to_documents_and_heldout_is_never_packed(tiny_ws):
    from soberan.heldout import HeldoutSettings
    from soberan.train.data import CorpusInput, load_packed, pack, plan_heldout
    from soberan.hf import load_tokenizer

    tok = load_tokenizer(tiny_ws.root / "tokenizer" / "final")
    out = tiny_ws.root / "model"
    rule = lambda us: plan_heldout(us, HeldoutSettings(fraction=0.1, min_units=1, max_doc_share=0.5))
    s = pack([CorpusInput(tiny_ws.root / "curated")], tok, out, key={"k": 1}, heldout=rule)
    packed = load_packed(s.data_dir)
    texts = {r["id"]: r["text"] for r in corpus().to_pylist()}
    held = {r["doc_id"] for lang in ("ko", "en") for r in pq.read_table(out / "heldout" / f"{lang}.parquet").to_pylist()}
    assert held and s.heldout_docs["ko"] >= 1 and s.heldout_docs["en"] >= 1
    docs = packed.docs.to_pylist()
    assert {d["doc_id"] for d in docs}.isdisjoint(held)
    assert {d["doc_id"] for d in docs} | held == set(texts)
    assert sum(d["n_tokens"] for d in docs) == len(packed.tokens) == s.n_tokens
    for d in docs:
        span = packed.tokens[d["start"]:d["start"] + d["n_tokens"]].tolist()
        assert span[0] == tok.bos_token_id and span[-1] == tok.eos_token_id
        assert tok.decode(span[1:-1]) == texts[d["doc_id"]]
    # Same key: reused as it is; the held-out rule is a pure function of the ids.
    again = pack([CorpusInput(tiny_ws.root / "curated")], tok, out, key={"k": 1}, heldout=rule)
    assert again.reused and again.n_tokens == s.n_tokens


def test_pack_resumes_after_a_failure_halfway(tiny_ws):
    from soberan.heldout import HeldoutSettings
    from soberan.train.data import CorpusInput, pack, plan_heldout
    from soberan.hf import load_tokenizer

    tok = load_tokenizer(tiny_ws.root / "tokenizer" / "final")
    rule = lambda us: plan_heldout(us, HeldoutSettings(fraction=0.1, min_units=1, max_doc_share=0.5))
    inp = [CorpusInput(tiny_ws.root / "curated")]
    calls = []

    def dies_on_second_shard(t):
        calls.append(t.num_rows)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the first shard is done, the second one half-written

    with pytest.raises(KeyboardInterrupt):
        pack(inp, tok, tiny_ws.root / "a", key={}, heldout=rule, check=dies_on_second_shard)
    prog = json.loads((tiny_ws.root / "a" / "data" / "progress.json").read_text())
    assert len(prog["units"]) == 1
    resumed = pack(inp, tok, tiny_ws.root / "a", key={}, heldout=rule)
    clean = pack(inp, tok, tiny_ws.root / "b", key={}, heldout=rule)
    assert resumed.resumed_units == 1 and resumed.n_tokens == clean.n_tokens
    a = (tiny_ws.root / "a" / "data" / "tokens.bin").read_bytes()
    assert a == (tiny_ws.root / "b" / "data" / "tokens.bin").read_bytes()
    assert pq.read_table(tiny_ws.root / "a" / "data" / "docs.parquet").equals(
        pq.read_table(tiny_ws.root / "b" / "data" / "docs.parquet"))


def _packed(sizes: dict[tuple[str, str, bool], int]):
    from soberan.train.data import Packed

    rows, start, toks = [], 0, []
    for i, ((src, lang, replay), n) in enumerate(sizes.items()):
        for d in range(10):
            rows.append({"doc_id": f"{src}{d}", "source": src, "license": "CC0-1.0", "jurisdiction": "KR",
                         "lang": lang, "replay": replay, "start": start, "n_tokens": n // 10})
            toks += [i] * (n // 10)
            start += n // 10
    return Packed(np.array(toks, dtype=np.uint32), pa.Table.from_pylist(rows))


def test_mix_follows_weights_and_replay_share_and_resumes_exactly():
    from soberan.train.mix import MixSampler

    p = _packed({("a", "ko", False): 40000, ("b", "ko", False): 10000, ("en", "en", True): 5000})
    kw = dict(seq_len=17, batch=64, seed=3, source_weights={"b": 4.0}, replay_share=0.2, max_epochs=100)
    m = MixSampler(p, **kw)
    # a: 40000×1, b: 10000×4 → equal halves of the 80% that is not replay.
    assert m.planned_shares() == pytest.approx({"a": 0.4, "b": 0.4, "en": 0.2})
    for _ in range(30):
        m.next_batch()
    shares = m.token_shares()
    assert shares["source"]["a"]["share"] == pytest.approx(0.4, abs=0.05)
    assert shares["replay"]["share"] == pytest.approx(0.2, abs=0.05)
    assert shares["source"]["en"]["tokens"] == shares["replay"]["tokens"]
    # Each window comes from one group (its tokens are that group's index here).
    batch = m.next_batch()
    assert all(len(set(row.tolist())) == 1 for row in batch)
    state = m.state_dict()
    follow = [m.next_batch() for _ in range(3)]
    m2 = MixSampler(p, **kw)
    m2.load_state_dict(state)
    for b in follow:
        assert np.array_equal(b, m2.next_batch())


def test_repetition_cap_stops_a_source_then_the_data():
    from soberan.train.mix import DataExhausted, MixSampler

    p = _packed({("small", "ko", False): 200, ("big", "ko", False): 2000})
    m = MixSampler(p, seq_len=11, batch=4, seed=0, max_epochs=2.0)
    with pytest.raises(DataExhausted):
        for _ in range(1000):
            m.next_batch()
    used = m.token_shares()["source"]
    # A source stops within one batch of windows past its cap of 2 epochs; the batch that found
    # the data spent is not counted.
    assert 400 <= used["small"]["tokens"] < 400 + 10 * 4
    assert 4000 - 10 * 4 <= used["big"]["tokens"] < 4000 + 10 * 4
    assert used["small"]["tokens"] + used["big"]["tokens"] == m.samples * 10


# --- new tokens and staged freezing --------------------------------------------------------

def _extended(ws, new_words: list[str]) -> tuple[Path, dict[int, list[int]]]:
    """A copy of the workspace tokenizer with `new_words` added, and its new_token_init.json."""
    from soberan.hf import load_tokenizer

    tok = load_tokenizer(ws.root / "tokenizer" / "final")
    base = len(tok)
    parts = {w: tok(w, add_special_tokens=False)["input_ids"] for w in new_words}
    tok.add_tokens(new_words)
    out = ws.root / "tokenizer" / "extended"
    tok.save_pretrained(out)
    new = {tok.convert_tokens_to_ids(w): parts[w] for w in new_words}
    (out / "new_token_init.json").write_text(json.dumps(
        {"base_vocab_size": base, "base": "tiny", "new_tokens": {str(k): v for k, v in new.items()}}))
    return out, new


def _base_model(path: Path, vocab: int, tie: bool):
    from soberan.train.model import build_model, llama_config

    m = build_model(llama_config(1, vocab, 32, tie_embeddings=tie, bos_token_id=0, eos_token_id=1,
                                 pad_token_id=2), seed=7)
    m.config.vocab_size = m.get_input_embeddings().weight.shape[0]
    m.save_pretrained(path)
    return m


@pytest.mark.parametrize("tie", [True, False])
def test_new_token_embedding_is_the_mean_of_its_parts(tiny_ws, tie):
    from transformers import AutoModelForCausalLM

    from soberan.hf import load_tokenizer
    from soberan.train.pretrain import adapt_vocab

    tok_dir, new = _extended(tiny_ws, ["대한민국은", "평등하다"])
    base = _base_model(tiny_ws.root / "base", 320, tie)
    # The base has 320 rows (a multiple of 64) and the tokenizer 322 tokens: rows must be added.
    model = AutoModelForCausalLM.from_pretrained(tiny_ws.root / "base")
    first = adapt_vocab(model, load_tokenizer(tok_dir), tok_dir, tiny_ws.config.train, print)
    assert first == 320
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert emb.shape[0] >= 322 and (head is emb) == tie
    for nid, parts in new.items():
        assert torch.allclose(emb[nid], base.get_input_embeddings().weight[parts].mean(0), atol=1e-6)
        assert torch.allclose(head[nid], base.get_output_embeddings().weight[parts].mean(0), atol=1e-6)
    assert torch.equal(emb[:320], base.get_input_embeddings().weight)


def test_embedding_stage_freezes_everything_but_new_rows_then_trains_all(tiny_ws):
    from transformers import AutoModelForCausalLM

    from soberan.train import run
    from soberan.hf import load_tokenizer
    from soberan.train.pretrain import adapt_vocab

    tok_dir, new = _extended(tiny_ws, ["대한민국은", "평등하다", "법률을"])
    _base_model(tiny_ws.root / "base", 320, tie=True)
    base_w = weights(tiny_ws.root / "base")
    ws = reopen(tiny_ws, 'base_model = "base"\nbase_model_license = "Apache-2.0"\nembed_stage_steps = 3\nlr = 0.01\nwarmup_steps = 0')
    s = run(ws, tokenizer_dir=tok_dir)
    assert s.steps == 6
    init = AutoModelForCausalLM.from_pretrained(ws.root / "base")
    adapt_vocab(init, load_tokenizer(tok_dir), tok_dir, ws.config.train, lambda m: None)
    init_emb = init.get_input_embeddings().weight.detach()
    stage1 = weights(ws.root / "model" / "checkpoints" / "step-3")
    final = weights(s.output)
    emb = "model.embed_tokens.weight"
    for name, w in base_w.items():
        if name != emb:
            assert torch.equal(stage1[name], w), f"{name} moved during the embedding stage"
    assert torch.equal(stage1[emb][:320], base_w[emb])  # the base vocabulary's rows: untouched
    for nid in new:  # the new rows learned
        assert not torch.allclose(stage1[emb][nid], init_emb[nid])
    # Stage two trains the whole model.
    for name in ("model.layers.0.mlp.up_proj.weight", "model.norm.weight"):
        assert not torch.equal(final[name], stage1[name])
    assert not torch.equal(final[emb][:320], base_w[emb])


# --- chat fine-tuning ----------------------------------------------------------------------

def test_chat_loss_is_masked_to_assistant_turns(tiny_ws):
    from soberan.train.chat import IGNORE, encode_chat
    from soberan.hf import load_tokenizer

    tok = load_tokenizer(tiny_ws.root / "tokenizer" / "final")
    msgs = [{"role": "system", "content": "법원은 심판한다"}, {"role": "user", "content": "the court?"},
            {"role": "assistant", "content": "the court shall decide"}, {"role": "user", "content": "국회는?"},
            {"role": "assistant", "content": "국회는 법률을 제정한다"}]
    ex, cut = encode_chat(tok, msgs, 512)
    assert not cut and len(ex.input_ids) == len(ex.labels)
    learned = ex.labels != IGNORE
    # Labels are either the token itself or ignored, and the learned tokens spell exactly the two
    # assistant turns, each with its end-of-turn marker.
    assert np.array_equal(ex.labels[learned], ex.input_ids[learned])
    runs, cur = [], []
    for i, on in enumerate(learned):
        if on:
            cur.append(int(ex.input_ids[i]))
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    assert [tok.decode(r) for r in runs] == ["the court shall decide<|im_end|>\n", "국회는 법률을 제정한다<|im_end|>\n"]
    with pytest.raises(ValueError, match="no assistant"):
        encode_chat(tok, msgs[:2], 512)


def _chat_file(path: Path) -> Path:
    lines = [json.dumps({"messages": [{"role": "user", "content": f"{e}?"},
                                      {"role": "assistant", "content": k}]}, ensure_ascii=False)
             for e, k in zip(EN * 3, KO * 2)]
    lines += ["not json", json.dumps({"messages": [{"role": "user", "content": "hi"}]})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_lora_trains_adapters_only_and_rejects_bad_lines(tiny_ws):
    from soberan.train import run

    _base_model(tiny_ws.root / "base", 320, tie=True)
    from soberan.hf import load_tokenizer

    load_tokenizer(tiny_ws.root / "tokenizer" / "final").save_pretrained(tiny_ws.root / "base")
    base_w = weights(tiny_ws.root / "base")
    chat = _chat_file(tiny_ws.root / "chat.jsonl")
    ws = reopen(tiny_ws)
    s = run(ws, finetune=True, chat_data=chat, base_model="base", lora=True, max_steps=3)
    adapter = weights(ws.root / "model" / "chat" / "adapter")
    assert adapter and all("lora_" in k for k in adapter)
    # LoRA's B starts at zero; after training it is not, and the merged model moved with it.
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)
    merged = weights(s.output)
    assert set(merged) == set(base_w)
    assert not torch.equal(merged["model.layers.0.self_attn.q_proj.weight"],
                           base_w["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(merged["model.norm.weight"], base_w["model.norm.weight"])
    rej = ws.ledger.connect().execute("SELECT reason FROM decisions WHERE stage='train' AND action='rejected'"
                                      ).fetchall()
    reasons = " ".join(r[0] for r in rej)
    assert "not JSON" in reasons and "no assistant turn" in reasons
    rec = ws.ledger.latest_artifact("train", "model")
    assert rec["meta"]["role"] == "chat" and rec["meta"]["lora"] is True


# --- the whole run: ledger, CLI, resume after a kill, two processes -------------------------

def test_run_records_model_heldout_and_token_shares(tiny_ws):
    from typer.testing import CliRunner

    from soberan.cli import app

    reopen(tiny_ws, "tensorboard = true")
    r = CliRunner().invoke(app, ["train", "-w", str(tiny_ws.root), "--max-steps", "4"])
    assert r.exit_code == 0, r.output
    assert "held-out bits per byte" in r.output and "no English/code replay" in r.output
    led = tiny_ws.ledger
    model = led.latest_artifact("train", "model")
    assert model["path"] == "model/final" and model["meta"]["steps"] == 4
    shares = model["meta"]["token_shares"]
    assert set(shares["source"]) == {"laws", "news"} and set(shares["license"]) == {"CC0-1.0", "CC-BY-4.0"}
    assert sum(v["tokens"] for v in shares["source"].values()) == model["meta"]["tokens"] == 4 * 4 * 31
    curate, tok = led.latest_artifact("curate", "corpus"), led.latest_artifact("tokenizer", "tokenizer")
    assert model["inputs"] == [curate["hash"], tok["hash"]]
    assert led.latest_artifact("train", "heldout")["path"] == "model/heldout"
    events = [e for e in led.records("event") if e["event"] == "train_tokens"]
    assert [e["step"] for e in events] == [3, 4, 4] and events[-1]["final"]
    metrics = [json.loads(x) for x in (tiny_ws.root / "model" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["step"] == 0 and set(metrics[0]["bpb"]) == {"ko", "en"}
    assert metrics[-1]["tokens_per_s"] > 0 and "mfu" in metrics[-1]
    assert list((tiny_ws.root / "model" / "tensorboard").glob("events.out.tfevents.*"))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(tiny_ws.root / "model" / "final")
    AutoTokenizer.from_pretrained(tiny_ws.root / "model" / "final")
    assert (tiny_ws.root / "model" / "final" / "generation_config.json").exists()
    assert led.verify() == []


def _sdpa_calls(model, **inputs) -> tuple[float, list[tuple[bool, bool]]]:
    """The loss of a compiled forward, and (mask given, is_causal) for each SDPA call in its graph."""
    calls = []

    def backend(gm, example_inputs):
        calls.extend((n.kwargs.get("attn_mask") is not None, n.kwargs.get("is_causal"))
                     for n in gm.graph.nodes if "scaled_dot_product" in str(n.target))
        return gm.forward

    torch._dynamo.reset()
    return float(torch.compile(model, backend=backend)(**inputs).loss), calls


@pytest.mark.slow  # torch.compile
def test_causal_sdpa_keeps_the_causal_kernel_when_compiled():
    from soberan.train.model import build_model, llama_config, register_causal_sdpa

    model = build_model(llama_config(2, 300, 32), seed=0)
    model.config.use_cache = False
    x = torch.randint(0, 300, (2, 32), generator=torch.Generator().manual_seed(0))
    padded = torch.ones_like(x)
    padded[0, :7] = 0
    eager = float(model(input_ids=x, labels=x).loss)
    eager_padded = float(model(input_ids=x, attention_mask=padded, labels=x).loss)
    # transformers, compiling, cannot rule out packed rows and hands SDPA a full mask ...
    loss, calls = _sdpa_calls(model, input_ids=x, labels=x)
    assert calls and all(masked for masked, _ in calls) and loss == pytest.approx(eager, abs=1e-5)
    # ... which causal_sdpa leaves out, so the causal kernels run: same loss.
    model.set_attn_implementation(register_causal_sdpa())
    loss, calls = _sdpa_calls(model, input_ids=x, labels=x)
    assert calls and all(c == (False, True) for c in calls) and loss == pytest.approx(eager, abs=1e-5)
    # Padding still gets its mask.
    loss, calls = _sdpa_calls(model, input_ids=x, attention_mask=padded, labels=x)
    assert calls and all(masked for masked, _ in calls) and loss == pytest.approx(eager_padded, abs=1e-5)


@pytest.mark.slow  # torch.compile
def test_compiled_run_trains_the_same_model_and_saves_plain_weights(tiny_ws):
    from typer.testing import CliRunner

    from soberan.cli import app

    from torch._dynamo.utils import counters

    final = tiny_ws.root / "model" / "final"
    runs = {}
    for backend in ("off", "aot_eager"):
        reopen(tiny_ws, f'compile = "{backend}"')
        torch._dynamo.reset()
        counters.clear()
        r = CliRunner().invoke(app, ["train", "-w", str(tiny_ws.root), "--max-steps", "3", "--no-resume"])
        assert r.exit_code == 0, r.output
        assert bool(counters["stats"]["unique_graphs"]) == (backend != "off")  # dynamo did trace it
        assert tiny_ws.ledger.latest_artifact("train", "model")["meta"]["compile"] == backend
        metrics = [json.loads(x) for x in (tiny_ws.root / "model" / "metrics.jsonl").read_text().splitlines()]
        runs[backend] = (weights(final), metrics[-1])
    (eager, m_eager), (compiled, m_compiled) = runs["off"], runs["aot_eager"]
    assert sorted(compiled) == sorted(eager)  # no `_orig_mod.` prefix: transformers loads it as is
    assert all(torch.allclose(compiled[k], eager[k], atol=1e-5) for k in eager)
    assert m_compiled["loss"] == pytest.approx(m_eager["loss"], abs=1e-4)
    assert m_compiled["bpb"] == pytest.approx(m_eager["bpb"], abs=1e-4)


def test_replay_file_gets_its_share_and_policy_is_enforced(tiny_ws):
    from soberan.policy import PolicyError
    from soberan.train import run

    replay = tiny_ws.root / "replay.jsonl"
    replay.write_text("\n".join(json.dumps({"text": f"def f{i}(x):\n    return x + {i}\n" * 3}) for i in range(20)))
    ws = reopen(tiny_ws, 'replay_path = "replay.jsonl"\nreplay_license = "GPL-3.0-only"\n'
                         'replay_jurisdiction = "KR"\nreplay_share = 0.5\nmax_steps = 8')
    with pytest.raises(PolicyError, match="GPL-3.0-only"):
        run(ws, output_dir="model-x")
    ws = reopen(tiny_ws, 'replay_path = "replay.jsonl"\nreplay_license = "MIT"\n'
                         'replay_jurisdiction = "KR"\nreplay_share = 0.5\nmax_steps = 8')
    s = run(ws, output_dir="model-r")
    assert s.token_shares["replay"]["share"] == pytest.approx(0.5, abs=0.2)
    assert s.token_shares["license"]["MIT"]["tokens"] == s.token_shares["replay"]["tokens"]


def _train_in_child(root: str) -> None:
    from soberan.train import run
    from soberan.workspace import Workspace

    run(Workspace.open(root))


@pytest.mark.slow  # a training process killed, then resumed
def test_resume_after_kill_matches_an_uninterrupted_run(tiny_ws, tmp_path):
    import multiprocessing as mp
    import shutil

    from soberan.train import run
    from soberan.workspace import Workspace

    extra = "max_steps = 24\ncheckpoint_every = 4\neval_every = 100\nlog_every = 4\nkeep_checkpoints = 2"
    ws = reopen(tiny_ws, extra)
    other = tmp_path / "copy"
    shutil.copytree(ws.root, other)
    # A forked child has torch imported already, so the test pays for training, not for imports.
    proc = mp.get_context("fork").Process(target=_train_in_child, args=(str(ws.root),))
    proc.start()
    ck = ws.root / "model" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not (ck / "step-8").exists() and proc.is_alive():
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert not (ws.root / "model" / "final").exists(), "the run finished before it could be killed"
    done = sorted(int(p.name[5:]) for p in ck.glob("step-*"))
    assert done and 8 <= done[-1] < 24
    resumed = run(Workspace.open(ws.root))
    assert resumed.resumed_from == done[-1] and resumed.steps == 24
    clean = run(Workspace.open(other))
    assert clean.resumed_from is None
    a, b = weights(resumed.output), weights(clean.output)
    assert set(a) == set(b)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    assert resumed.token_shares == clean.token_shares


@pytest.mark.slow  # two torch.distributed processes
def test_two_processes_train_the_same_model_as_one(tiny_ws, tmp_path):
    import shutil

    from soberan.train import run
    from soberan.workspace import Workspace

    one = reopen(tiny_ws, "max_steps = 4\nmicro_batch = 4\ncheckpoint_every = 100\neval_every = 100")
    two_root = tmp_path / "two"
    shutil.copytree(one.root, two_root)
    cfg = two_root / "soberan.toml"
    cfg.write_text(cfg.read_text().replace("micro_batch = 4\n", "micro_batch = 2\n", 1))
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_port", str(29500 + os.getpid() % 1000), "-m", "soberan.train.launch",
                        "-w", str(two_root)], env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    single = run(one)
    rec = Workspace.open(two_root).ledger.latest_artifact("train", "model")
    assert rec["meta"]["world_size"] == 2
    assert rec["meta"]["distributed"] == "MULTI_CPU"  # accelerate enables FSDP on accelerators only
    a, b = weights(two_root / "model" / "final"), weights(single.output)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4), k
    assert rec["meta"]["token_shares"] == single.token_shares


def test_launch_entry_point_runs_train_with_its_arguments(workspace, monkeypatch, capsys):
    """The entry point torchrun and `accelerate launch` start in every process (the two-process
    run above is slow): it passes its arguments to `soberan train`."""
    from soberan.train import launch

    monkeypatch.setattr(sys, "argv", ["launch", "-w", str(workspace.root)])
    with pytest.raises(SystemExit) as e:
        launch.main()
    out = capsys.readouterr()
    assert e.value.code == 2 and "no curated corpus in the ledger" in out.out + out.err


def test_resume_refuses_a_checkpoint_of_other_settings(tiny_ws):
    """A checkpoint continues only the run that wrote it: other settings or another global batch
    would train a model an uninterrupted run does not; the error names what changed."""
    from soberan.train import run

    first = run(reopen(tiny_ws, "max_steps = 3"))
    assert first.steps == 3
    with pytest.raises(ValueError, match=r"different settings \(seed\); pass --no-resume"):
        run(reopen(tiny_ws, "max_steps = 6\nseed = 5"))
    with pytest.raises(ValueError, match="global batch of 4 sequences, this run 2"):
        run(reopen(tiny_ws, "max_steps = 6\nseed = 1234\nmicro_batch = 2"))
    resumed = run(reopen(tiny_ws, "max_steps = 6\nmicro_batch = 4"))
    assert resumed.resumed_from == 3 and resumed.steps == 6


def test_missing_upstream_is_a_clear_error(workspace):
    from typer.testing import CliRunner

    from soberan.cli import app

    r = CliRunner().invoke(app, ["train", "-w", str(workspace.root)])
    assert r.exit_code == 2 and "no curated corpus in the ledger" in r.output


def test_baseline_never_trains_on_the_main_models_heldout_text(tiny_ws):
    from soberan.train import run

    # A "raw" corpus: the curated documents plus some that curation dropped.
    write_parquet_atomic(corpus(40, 15, seed=0), tiny_ws.root / "raw" / "part-0.parquet")
    base = run(tiny_ws, corpus_dir="raw", output_dir="model-baseline", role="baseline", max_steps=2)
    main = run(tiny_ws, max_steps=2)
    held = {r["id"] for p in (tiny_ws.root / "model" / "heldout").glob("*.parquet") for r in pq.read_table(p).to_pylist()}
    trained = set(pq.read_table(tiny_ws.root / "model-baseline" / "data" / "docs.parquet").column("doc_id").to_pylist())
    assert held and not held & trained
    arts = {a["path"]: a["meta"]["role"] for a in tiny_ws.ledger.artifacts("train", "model")}
    assert arts == {"model-baseline/final": "baseline", "model/final": "main"}
    assert base.role == "baseline" and main.role == "main"
