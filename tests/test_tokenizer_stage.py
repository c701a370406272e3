"""`soberan tokenizer run|extend|train|report` on a workspace: outputs, ledger, resume, errors."""

from __future__ import annotations

import datetime as dt
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from soberan.cli import app
from soberan.documents import DOC_SCHEMA, doc_id, text_sha256, write_parquet_atomic
from soberan.workspace import Workspace, init_workspace, konlpy_corpus_dir

runner = CliRunner()
MIXED = ["大韓民國 憲法 第1條 ① 대한민국은 民主共和國이다.", "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
         "اَلْعَرَبِيَّةُ لُغَةٌ", "emoji 😀👍🏽 def f(x):\n\treturn x  *  2\n\n", "  two  spaces\t"]


def curated_workspace(root, *, shards: int = 2, settings: dict | None = None) -> Workspace:
    """A Korean workspace whose curated corpus is the konlpy Constitution and bills, in `shards`
    shards, recorded in the ledger as curate's artifact."""
    init_workspace(root, lang="ko", jurisdiction="KR", name="tok")
    cfg = root / "soberan.toml"
    head, sep, section = cfg.read_text().partition("\n[tokenizer]\n")
    for key, value in (settings or {}).items():  # edit the [tokenizer] section only
        section, n = re.subn(rf"^#? ?{key} = .*$", f"{key} = {json.dumps(value)}", section, count=1, flags=re.M)
        assert n == 1, key
    cfg.write_text(head + sep + section)
    now = dt.datetime.now(dt.timezone.utc)
    rows = []
    for p in sorted(konlpy_corpus_dir().rglob("*.txt")):
        t = p.read_text(encoding="utf-8")
        h = text_sha256(t)
        rows.append(dict(id=doc_id("konlpy", p.name, h), text=t, source="konlpy", url=p.name,
                         license="LicenseRef-KR-Public-Domain", jurisdiction="KR", lang="ko", lang_score=1.0,
                         collected_at=now, date=None, title=None, sha256=h))
    rows.append(dict(rows[0], id="en-doc", text="An English note that is not in a target language.",
                     lang="en", sha256=text_sha256("x")))
    step = -(-len(rows) // shards)
    for i in range(shards):
        write_parquet_atomic(pa.Table.from_pylist(rows[i * step:(i + 1) * step], schema=DOC_SCHEMA),
                             root / "curated" / f"part-{i:05d}.parquet")
    ws = Workspace.open(root)
    ws.ledger.record_artifact(stage="curate", kind="corpus", path="curated", config_hash="test")
    return ws


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    ws = curated_workspace(tmp_path_factory.mktemp("ext") / "ws", settings={"new_tokens": 1500})
    res = runner.invoke(app, ["tokenizer", "run", "-w", str(ws.root)])
    assert res.exit_code == 0, res.output
    return ws, res.output


def test_run_extends_mistral_and_records_it(extended):
    from transformers import AutoTokenizer

    ws, output = extended
    assert "extended" in output and "ko" in output and "1,500 learned" in output
    final = ws.stage_dir("tokenizer") / "final"
    tok = AutoTokenizer.from_pretrained(str(final))
    assert len(tok) == 32000 + 1500 and tok.bos_token == "<s>" and tok.eos_token == "</s>"
    enc = tok("대한민국은 민주공화국이다.").input_ids
    assert enc[0] == 1 and max(enc) >= 32000  # BOS added; Korean uses new tokens
    for text in MIXED:
        assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text
    chat = tok.apply_chat_template([{"role": "user", "content": "헌법 제1조는?"}], tokenize=False,
                                   add_generation_prompt=True)
    assert chat == "<s>[INST] 헌법 제1조는? [/INST]"

    init = json.loads((final / "new_token_init.json").read_text())
    assert init["base_vocab_size"] == 32000 and init["base"] == "mistral-v1"
    assert sorted(map(int, init["new_tokens"])) == list(range(32000, 33500))
    assert all(0 <= p < 32000 for parts in init["new_tokens"].values() for p in parts)

    fert = json.loads((ws.stage_dir("tokenizer") / "fertility.json").read_text())
    assert fert["before"] == "mistral-v1" and fert["after"] == "extended"
    assert fert["extended"]["ko"]["tokens_per_char"] < 0.75 * fert["mistral-v1"]["ko"]["tokens_per_char"]
    assert fert["extended"]["ko"]["roundtrip_exact"] == 1.0
    assert (ws.stage_dir("tokenizer") / "fertility.png").exists()
    assert (ws.stage_dir("tokenizer") / "fertility.svg").exists()


def test_ledger_holds_choice_fertility_and_training_docs(extended):
    ws, _ = extended
    curate = ws.ledger.latest_artifact("curate", "corpus")
    art = ws.ledger.latest_artifact("tokenizer", "tokenizer")
    assert art["path"] == "tokenizer/final" and art["inputs"] == [curate["hash"]]
    assert art["config_hash"] == ws.config.section_hash("tokenizer", "heldout")
    m = art["meta"]
    assert m["mode"] == "extend" and m["base"] == "mistral-v1" and m["unreachable"] == 0
    assert m["fertility_after"]["ko"] < m["fertility_before"]["ko"]
    ti = ws.ledger.latest_artifact("tokenizer", "training_input")
    assert ti["path"] == "tokenizer/training_docs.parquet" and ti["inputs"] == [curate["hash"]]
    roles = pq.read_table(ws.root / ti["path"]).to_pylist()
    train = {r["id"] for r in roles if r["role"] == "train"}
    held = [r for r in roles if r["role"] == "held_out"]
    # 11 Korean documents are too few to hold out whole ones for a CI: 30 paragraph units are
    # held out (soberan.heldout), and every document trains on the rest of its lines.
    assert len(train) == 11 and len(held) == ws.config.heldout.min_units == 30
    assert "en-doc" not in train | {r["id"] for r in held}  # not a target language: neither taught nor measured
    assert ws.ledger.latest_artifact("tokenizer", "fertility")["inputs"] == [art["hash"]]
    assert ws.ledger.verify() == []
    assert not (ws.root / "work" / "tokenizer").exists()


def test_second_run_is_up_to_date(extended):
    ws, _ = extended
    n = len(ws.ledger.records())
    res = runner.invoke(app, ["tokenizer", "run", "-w", str(ws.root)])
    assert res.exit_code == 0 and "up to date" in res.output
    assert len(ws.ledger.records()) == n


def test_up_to_date_summary_is_the_recorded_one(tmp_path):
    """A run with nothing to do returns what the run that made the tokenizer returned, field by
    field, read back by name from its ledger record."""
    from dataclasses import asdict

    from soberan.tokenizer import run

    ws = curated_workspace(tmp_path / "ws")
    first = run(ws, mode="replace", vocab_size=1000)
    again = run(Workspace.open(ws.root), mode="replace", vocab_size=1000)
    assert again.up_to_date and not first.up_to_date
    assert again.artifact["hash"] == first.artifact["hash"]
    assert first.train_docs > 0 and first.fertility_after and first.after == "trained"
    differ = {"up_to_date", "artifact"}
    assert ({k: v for k, v in asdict(again).items() if k not in differ}
            == {k: v for k, v in asdict(first).items() if k not in differ})


@pytest.mark.slow  # a tokenizer run killed, then resumed
def test_killed_extension_resumes_from_counted_shards(tmp_path, monkeypatch):
    from soberan.tokenizer import extend, run

    ws = curated_workspace(tmp_path / "ws", shards=3, settings={"new_tokens": 200})

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(extend, "learn", killed)
    with pytest.raises(KeyboardInterrupt):
        run(ws)
    cached = sorted((ws.root / "work" / "tokenizer" / "counts").glob("*.roles.parquet"))
    assert len(cached) == 3
    monkeypatch.undo()

    def no_recount(*a, **k):
        raise AssertionError("a counted shard was counted again")

    monkeypatch.setattr(extend, "count_words", no_recount)
    s = run(ws)
    assert s.learned_tokens == 200 and s.train_docs == 11 and s.unreachable == 0


def test_train_from_scratch_with_chatml(tmp_path):
    from transformers import AutoTokenizer

    ws = curated_workspace(tmp_path / "ws")
    res = runner.invoke(app, ["tokenizer", "train", "-w", str(ws.root), "--vocab-size", "1200"])
    assert res.exit_code == 0, res.output
    assert "trained" in res.output
    final = ws.stage_dir("tokenizer") / "final"
    tok = AutoTokenizer.from_pretrained(str(final))
    assert len(tok) == 1200 and not (final / "new_token_init.json").exists()
    for text in MIXED:
        assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text
    chat = tok.apply_chat_template([{"role": "user", "content": "안녕하세요"}], tokenize=False,
                                   add_generation_prompt=True)
    assert chat == "<|im_start|>user\n안녕하세요<|im_end|>\n<|im_start|>assistant\n"
    assert len(tok("<|im_start|>", add_special_tokens=False).input_ids) == 1
    art = ws.ledger.latest_artifact("tokenizer", "tokenizer")
    assert art["meta"]["mode"] == "replace" and art["meta"]["vocab_size"] == 1200


def test_keep_mode_saves_the_base(tmp_path):
    from transformers import AutoTokenizer

    ws = curated_workspace(tmp_path / "ws", settings={"mode": "keep"})
    res = runner.invoke(app, ["tokenizer", "run", "-w", str(ws.root)])
    assert res.exit_code == 0, res.output
    final = ws.stage_dir("tokenizer") / "final"
    assert len(AutoTokenizer.from_pretrained(str(final))) == 32000
    assert json.loads((final / "new_token_init.json").read_text())["new_tokens"] == {}
    assert ws.ledger.latest_artifact("tokenizer", "training_input") is None


def test_report_compares_tokenizers_without_a_workspace(extended, tmp_path):
    ws, _ = extended
    ko = tmp_path / "ko.txt"
    ko.write_text("대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.\n국회는 법률을 제정한다.\n")
    en = tmp_path / "en.txt"
    en.write_text("Sovereignty resides in the people.\n")
    out = tmp_path / "rep" / "f.json"
    res = runner.invoke(app, ["tokenizer", "report", "mistral-v1", str(ws.stage_dir("tokenizer") / "final"),
                              "--text", f"ko={ko}", "--text", f"en={en}", "--out", str(out),
                              "-w", str(tmp_path / "not-a-workspace")])
    assert res.exit_code == 0, res.output
    body = json.loads(out.read_text())
    assert body["final"]["ko"]["tokens"] < body["mistral-v1"]["ko"]["tokens"]
    assert body["final"]["en"]["tokens"] == body["mistral-v1"]["en"]["tokens"]
    assert out.with_suffix(".png").exists() and out.with_suffix(".svg").exists()


def test_report_defaults_to_workspace_held_out_text(extended):
    ws, _ = extended
    res = runner.invoke(app, ["tokenizer", "report", "-w", str(ws.root)])
    assert res.exit_code == 0, res.output
    body = json.loads((ws.stage_dir("tokenizer") / "report" / "fertility.json").read_text())
    assert set(body) == {"mistral-v1", "final"} and set(body["final"]) == {"ko"}


@pytest.mark.parametrize("setup, args, message", [
    ("no-curate", ["run"], "run `soberan curate` first"),
    ("curated", ["extend", "--base", "missing/tokenizer.model"], "no tokenizer at"),
    ("curated", ["extend", "--new-tokens", "-5"], "new_tokens"),
    ("curated-no-ko", ["run"], "no curated document in ['th']"),
])
def test_errors_are_messages(tmp_path, setup, args, message):
    root = tmp_path / "ws"
    if setup == "no-curate":
        init_workspace(root, lang="ko", jurisdiction="KR")
    elif setup == "curated-no-ko":
        curated_workspace(root, settings={"languages": ["th"]})
    else:
        curated_workspace(root)
    res = runner.invoke(app, ["tokenizer", *args, "-w", str(root)])
    assert res.exit_code == 2, res.output
    assert message in res.output.replace("\n", " ")
