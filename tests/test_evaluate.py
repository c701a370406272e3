"""The evaluate stage end to end on tiny models whose right answers are known by construction:
a Llama overfit in the test on the gold answers scores 1.0, an untrained one scores near chance,
and the comparison, contamination flag, held-out bpb, ledger record and resume are checked on a
real workspace, with the network switched off."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from soberan.documents import DOC_SCHEMA, doc_id, text_sha256, write_parquet_atomic
from soberan.workspace import Workspace

WORDS = ["사과", "바다", "하늘", "나무", "구름", "도시", "강물", "바람", "별빛", "노래", "책상", "의자"]
N_QUIZ = 8
N_CHANCE = 40


def quiz_records(n: int, offset: int = 0) -> list[dict]:
    """Questions with four one-word options; the gold letter cycles A, B, C, D (balanced)."""
    out = []
    for i in range(offset, offset + n):
        opts = [WORDS[(i + k) % len(WORDS)] for k in range(4)]
        out.append({"id": f"q{i}", "passage": f"{i}번 지문: 오늘은 {WORDS[i % 12]}에 관한 이야기를 나누는 날이며 "
                                               f"모두가 {WORDS[(i + 5) % 12]}을 떠올린다.",
                    "question": f"{i}번 문제의 답은?", "options": opts, "answer": "ABCD"[i % 4]})
    return out


def gen_records() -> list[dict]:
    return [{"q": f"{WORDS[i]}의 번호는?", "a": f"{i + 1}번"} for i in range(6)]


QUIZ_SPEC = """
[[evaluate.benchmarks]]
name = "{name}"
path = "bench/{name}.jsonl"
id = "id"
context = "passage"
question = "question"
choices = "options"
answer = "answer"
answer_format = "letter"
template = "{{context}}\\n{{question}}"
continuation = "{continuation}"
language = "ko"
license = "CC0-1.0"
"""

GEN_SPEC = """
[[evaluate.benchmarks]]
name = "numbers"
path = "bench/numbers.jsonl"
type = "generate"
question = "q"
answer = "a"
template = "질문: {question}\\n답:"
language = "ko"
license = "CC0-1.0"
"""


def _train_texts() -> list[str]:
    texts = [f"{r['passage']}\n{r['question']} {r['options']['ABCD'.index(r['answer'])]}"
             for r in quiz_records(N_QUIZ)]
    texts += [f"질문: {r['q']}\n답: {r['a']}\n" for r in gen_records()]
    return texts


def _tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts + [" ".join(WORDS)] * 3 + ["A B C D 0123456789"], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def _model(tok, seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(cfg)


def _overfit(model, tok, texts: list[str], steps: int = 150):
    """Train on the right answers until the model has them by heart."""
    import torch

    seqs = [[tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), tok.pad_token_id)
    labels = torch.full((len(seqs), width), -100)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        labels[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    return float(loss.detach())


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Two checkpoints with one tokenizer: `trained` (overfit on the gold answers) and `untrained`.

    Built once per session and read only: test_evaluate_stats and test_report import this
    fixture too, and would otherwise each train the same models again."""
    import torch

    # One thread: on a shared 2-core machine, a second spinning thread makes each step 10x slower.
    torch.set_num_threads(1)
    root = tmp_path_factory.getbasetemp() / "evaluate-tiny-models"
    out = {name: root / name for name in ("trained", "untrained")}
    if (root / "built").exists():
        return out
    tok = _tokenizer(_train_texts())
    trained = _model(tok, seed=0)
    _overfit(trained, tok, _train_texts())
    for name, m in (("trained", trained), ("untrained", _model(tok, seed=1))):
        m.save_pretrained(out[name])
        tok.save_pretrained(out[name])
    (root / "built").touch()
    return out


def _docs(texts: list[str], source: str = "laws") -> pa.Table:
    now = dt.datetime.now(dt.timezone.utc)
    shas = [text_sha256(t) for t in texts]
    return pa.table({
        "id": [doc_id(source, f"doc{i}", h) for i, h in enumerate(shas)], "text": texts,
        "source": [source] * len(texts), "url": [f"file://doc{i}" for i in range(len(texts))],
        "license": ["CC0-1.0"] * len(texts), "jurisdiction": ["KR"] * len(texts), "lang": ["ko"] * len(texts),
        "lang_score": [1.0] * len(texts), "collected_at": [now] * len(texts), "date": [None] * len(texts),
        "title": [None] * len(texts), "sha256": shas}, schema=DOC_SCHEMA)


def _workspace(workspace, tiny_models, corpus: list[str], evaluate_keys: str) -> Workspace:
    """A workspace as the earlier stages leave it: a curated corpus, a model trained on it (and
    a baseline), held-out Korean text, all recorded in the ledger."""
    root = workspace.root
    bench = root / "bench"
    bench.mkdir()
    for name, recs in (("quiz", quiz_records(N_QUIZ)), ("chance", quiz_records(N_CHANCE, offset=100)),
                       ("numbers", gen_records())):
        (bench / f"{name}.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in recs) + "\n")
    write_parquet_atomic(_docs(corpus), root / "curated" / "part-00000.parquet")
    ledger = workspace.ledger
    corpus_rec = ledger.record_artifact(stage="curate", kind="corpus", path="curated")
    shutil.copytree(tiny_models["trained"], root / "model" / "final")
    shutil.copytree(tiny_models["untrained"], root / "model-baseline" / "final")
    # What the trained model knows by heart (its bpb must be far lower), as 30 units: the least a
    # language needs for a bits-per-byte CI.
    held = (_train_texts() * 3)[:30]
    pa_held = pa.table({"id": [f"h{i}" for i in range(len(held))], "text": held,
                        "source": ["laws"] * len(held), "lang": ["ko"] * len(held)})
    write_parquet_atomic(pa_held, root / "model" / "heldout" / "ko.parquet")
    ledger.record_artifact(stage="train", kind="model", path="model/final", inputs=[corpus_rec["hash"]])
    ledger.record_artifact(stage="train", kind="model", path="model-baseline/final", inputs=[corpus_rec["hash"]])
    cfg = root / "soberan.toml"
    text = cfg.read_text().replace("\n[evaluate]\n", "\n[evaluate]\n" + evaluate_keys + "\n", 1)
    text += QUIZ_SPEC.format(name="quiz", continuation="text")
    text += QUIZ_SPEC.format(name="chance", continuation="letter") + GEN_SPEC
    cfg.write_text(text)
    return Workspace.open(root)


@pytest.fixture
def no_network(monkeypatch):
    """Refuse every connection that leaves this machine."""
    real = socket.socket.connect

    def guarded(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"network disabled in this test (tried {address[0]})")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def test_scorer_knows_the_answers_it_was_trained_on(tiny_models):
    from soberan.evaluate.models import load_model
    from soberan.evaluate.scoring import generate, loglikelihoods

    model, tok = load_model(tiny_models["trained"], "cpu")
    recs = quiz_records(N_QUIZ)
    pairs = [(f"{r['passage']}\n{r['question']}", " " + o) for r in recs for o in r["options"]]
    lls = loglikelihoods(model, tok, pairs, batch_size=5, max_length=256)
    by_item = np.array([ll.logprob for ll in lls]).reshape(N_QUIZ, 4)
    gold = np.array(["ABCD".index(r["answer"]) for r in recs])
    assert (by_item.argmax(1) == gold).all()
    assert all(lls[i * 4 + g].greedy for i, g in enumerate(gold))
    # Batching and padding do not change a score: one pair at a time gives the same numbers.
    single = loglikelihoods(model, tok, pairs[:6], batch_size=1, max_length=256)
    assert np.allclose([x.logprob for x in single], [x.logprob for x in lls[:6]], atol=1e-4)
    outs = generate(model, tok, [f"질문: {r['q']}\n답:" for r in gen_records()], stop=["\n"], max_new_tokens=8)
    assert [o.strip() for o in outs] == [r["a"] for r in gen_records()]


def test_context_whitespace_moves_to_the_continuation(tiny_models):
    """A trailing space of the context is scored as part of the continuation (lm-eval's rule), and
    the context is conditioned on BOS: the score equals one forward pass over BOS + the text."""
    import torch

    from soberan.evaluate.models import load_model
    from soberan.evaluate.scoring import loglikelihoods

    model, tok = load_model(tiny_models["trained"], "cpu")
    [a] = loglikelihoods(model, tok, [("답: ", "사과")], batch_size=1, max_length=256)
    [b] = loglikelihoods(model, tok, [("답:", " 사과")], batch_size=1, max_length=256)
    assert a == b
    ctx = tok("답:", add_special_tokens=False)["input_ids"]
    seq = [tok.bos_token_id] + tok("답: 사과", add_special_tokens=False)["input_ids"]
    assert seq[1:1 + len(ctx)] == ctx and len(seq) > 1 + len(ctx)
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([seq])).logits[0].float(), -1)
    want = sum(float(lp[i - 1, seq[i]]) for i in range(1 + len(ctx), len(seq)))
    assert a.logprob == pytest.approx(want, abs=1e-4)


def test_compare_run_offline(workspace, tiny_models, no_network):
    """`soberan evaluate --compare A B`: the overfit model scores 1.0, the untrained one is near
    chance, the difference has a CI above zero, bpb is far lower; results land in the ledger."""
    from soberan.cli import app

    ws = _workspace(workspace, tiny_models, ["법률 문서 한 편."] * 3,
                    'sets = ["quiz", "chance", "numbers"]\nbootstrap = 500\nbatch_size = 8')
    res = CliRunner().invoke(app, ["evaluate", "-w", str(ws.root), "--compare", "model/final",
                                   "model-baseline/final"])
    assert res.exit_code == 0, res.output
    assert "Δ [95% CI]" in res.output and "Δ = model − model/final" in res.output and "bits per byte" in res.output
    results = json.loads((ws.root / "eval" / "results.json").read_text())
    trained, base = results["models"]
    assert trained["label"] == "model/final" and base["label"] == "model-baseline/final"
    assert trained["sets"]["quiz"]["acc"] == 1.0 and trained["sets"]["quiz"]["acc_norm"] == 1.0
    assert trained["sets"]["numbers"]["exact_match"] == 1.0
    assert base["sets"]["numbers"]["exact_match"] == 0.0
    # Untrained, letter continuations, balanced gold letters: chance is 0.25.
    assert 0.1 <= base["sets"]["chance"]["acc"] <= 0.45
    assert base["sets"]["quiz"]["acc"] < 1.0
    comp = {(c["set"], c["metric"]): c for c in results["comparisons"]}
    quiz = comp[("quiz", "acc")]
    assert quiz["diff"] < 0 and quiz["ci95"][1] < 0 and quiz["significant"]  # baseline is worse
    bpb = comp[("heldout_ko", "bpb")]
    assert base["bpb"]["ko"]["bpb"] > 2 * trained["bpb"]["ko"]["bpb"]
    assert bpb["diff"] > 0 and bpb["ci95"][0] > 0 and not bpb["higher_is_better"]
    # Provenance: checkpoint hashes, data hashes, template and seed; the ledger record's inputs
    # are the two model artifacts.
    from soberan.documents import file_sha256, tree_sha256

    assert trained["sha256"] == tree_sha256(ws.root / "model" / "final")
    info = results["sets"]["quiz"]
    assert info["template"] == "{context}\n{question}" and info["seed"] == 1234
    quiz_file = ws.root / "bench" / "quiz.jsonl"
    assert info["data_files"] == {quiz_file.as_posix(): file_sha256(quiz_file)}
    rec = ws.ledger.latest_artifact("evaluate", "results")
    models = {r["path"]: r["hash"] for r in ws.ledger.artifacts("train", "model")}
    assert rec["path"] == "eval/results.json" and sorted(rec["inputs"]) == sorted(models.values())
    assert rec["meta"]["scores"]["model/final"]["quiz"]["acc"] == 1.0
    assert not ws.ledger.verify()
    # A second run with nothing changed reuses every (model, set) result.
    from soberan.evaluate import run

    again = run(Workspace.open(ws.root), show=False, models=["model/final", "model-baseline/final"])
    assert again.reused == 6 and again.scores["model/final"]["quiz"]["acc"] == 1.0


def test_template_and_rendered_example_are_recorded(workspace, tiny_models):
    from soberan.evaluate import run
    from soberan.benchmarks import load_items, load_spec
    from soberan.evaluate.specs import render

    ws = _workspace(workspace, tiny_models, ["짧은 문서."], 'sets = ["quiz"]\nbpb = false\nnum_fewshot = 0')
    p = ws.root / "soberan.toml"  # give the quiz a few-shot split and ask for 2 shots
    p.write_text(p.read_text().replace('name = "quiz"\npath = "bench/quiz.jsonl"',
                                       'name = "quiz"\npath = "bench/quiz.jsonl"\nfewshot_path = "bench/chance.jsonl"')
                 .replace("num_fewshot = 0", "num_fewshot = 2"))
    ws = Workspace.open(ws.root)
    run(ws, show=False)
    info = json.loads((ws.root / "eval" / "results.json").read_text())["sets"]["quiz"]
    spec = load_spec(ws.config, "quiz")
    first = load_items(spec)[0]
    shots = {r["id"]: r for r in quiz_records(N_CHANCE, offset=100)}
    assert info["num_fewshot"] == 2 and len(info["fewshot_ids"]) == 2
    assert all(i in shots for i in info["fewshot_ids"])  # examples come from the few-shot split
    ex = info["rendered_example"]
    assert ex["prompt"].endswith(render(spec, first)) and ex["gold"] == first.answer
    shot = shots[info["fewshot_ids"][0]]
    assert ex["prompt"].startswith(f"{shot['passage']}\n{shot['question']} "
                                   f"{shot['options']['ABCD'.index(shot['answer'])]}\n\n")
    assert ex["continuations"] == [" " + o for o in first.choices]


def test_no_redistribute_keeps_item_text_out_of_results(workspace, tiny_models):
    from soberan.evaluate import run

    ws = _workspace(workspace, tiny_models, ["짧은 문서."], 'sets = ["quiz"]\nbpb = false')
    p = ws.root / "soberan.toml"
    p.write_text(p.read_text().replace('name = "quiz"\npath = "bench/quiz.jsonl"',
                                       'name = "quiz"\npath = "bench/quiz.jsonl"\nredistribute = false'))
    run(Workspace.open(ws.root), show=False)
    text = (ws.root / "eval" / "results.json").read_text()
    assert "license forbids redistribution" in text and quiz_records(1)[0]["passage"] not in text


def test_contaminated_items_are_flagged(workspace, tiny_models):
    """Plant one item's passage (re-spaced, re-punctuated, inside a longer document) into the
    curated corpus the model was trained on: exactly that item is flagged, with the document."""
    from soberan.evaluate import run

    planted = quiz_records(N_QUIZ)[3]["passage"]
    disguised = "국회 회의록. " + planted.replace(" ", "  ").replace(":", " -") + " 이상입니다."
    corpus = ["법률 제1조 이 법은 국민의 권리를 정한다.", disguised, "다른 문서입니다. " * 20]
    ws = _workspace(workspace, tiny_models, corpus, 'sets = ["quiz", "chance"]\nbpb = false')
    summary = run(ws, show=False)
    assert summary.contaminated == {"quiz": 1, "chance": 0}
    results = json.loads((ws.root / "eval" / "results.json").read_text())
    assert results["sets"]["quiz"]["contaminated_ids"] == ["q3"]
    assert results["contamination"]["corpora"] == ["curated"]
    import pyarrow.parquet as pq

    sha = results["models"][0]["sha256"][:16]
    rows = pq.read_table(ws.root / "eval" / "items" / sha / "quiz.parquet").to_pylist()
    flagged = [r for r in rows if r["contaminated"]]
    assert [r["id"] for r in flagged] == ["q3"]
    assert flagged[0]["found_in"] == _docs(corpus).column("id")[1].as_py()
    assert results["models"][0]["sets"]["quiz"]["contaminated"] == 1


def test_contamination_normalizes_and_ignores_short_text():
    from soberan.evaluate.contamination import BenchIndex, normalize

    assert normalize("Hello,  WORLD — ๑๒๓!") == normalize("hello world๑๒๓")
    idx = BenchIndex(50)
    idx.add(("s", "1"), ["예"])  # a label word says nothing
    assert len(idx) == 0
    idx.add(("s", "2"), ["가" * 30])  # shorter than the window, long enough: matched whole
    idx.add(("s", "3"), ["나" * 60])  # 11 windows, all equal
    assert set(idx.hashes) == {25, 50} and len(idx) == 2
    [(key, whole)] = next(iter(idx.hashes[25].values()))
    assert key == ("s", "2") and whole == "가" * 30


def test_short_text_needs_the_whole_text_in_the_corpus(tmp_path):
    """A short item is flagged only where all of it occurs, not just its first half."""
    from soberan.evaluate.contamination import BenchIndex, scan

    item = "대한민국은 민주공화국이다 대한민국의 주권은 국민에게 있고"  # 26 letters once normalized
    idx = BenchIndex(50)
    idx.add(("s", "whole"), [item])
    # Same first 25 letters (the hashed prefix) as the item, then it differs.
    idx.add(("s", "half"), ["대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있다 그리고 다른 말"])
    write_parquet_atomic(_docs(["서문. " + item + " 끝.", "무관한 문서"]), tmp_path / "c" / "part.parquet")
    assert len(idx.hashes[25]) == 1  # both share one prefix hash
    flags = scan(idx, [tmp_path / "c"])
    assert set(flags) == {("s", "whole")}


def test_missing_model_is_a_clear_error(workspace):
    from soberan.cli import app

    res = CliRunner().invoke(app, ["evaluate", "-w", str(workspace.root)])
    assert res.exit_code == 2 and "no model to evaluate" in res.output
