"""Evaluation that cannot be fooled: one bits-per-byte for train and evaluate, CIs over enough
held-out units, accuracies with their CIs beside chance and majority-class levels, degenerate
answers flagged and never called significant, English as the forgetting check, merged results,
and base vs adapted labelled by their ledger roles. Tiny models built in the tests."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pytest
from test_evaluate import QUIZ_SPEC, _workspace, quiz_records, tiny_models  # noqa: F401 (fixture)
from test_train import reopen, tiny_ws  # noqa: F401 (fixture)
from typer.testing import CliRunner

from soberan.documents import write_parquet_atomic
from soberan.workspace import Workspace


def _results(ws) -> dict:
    return json.loads((ws.root / "eval" / "results.json").read_text())


def _set_keys(ws, keys: str) -> Workspace:
    """Replace `[evaluate]` keys of the workspace's config."""
    p = ws.root / "soberan.toml"
    text = p.read_text()
    for line in keys.strip().splitlines():
        k = line.split(" = ")[0]
        text = "\n".join(x for x in text.splitlines() if not x.startswith(k + " = "))
        text = text.replace("\n[evaluate]\n", f"\n[evaluate]\n{line}\n", 1)
    p.write_text(text + "\n")
    return Workspace.open(ws.root)


def _zero_head(src, dst):
    """A copy of a checkpoint whose output layer is zero: every token equally likely, so every
    one-letter choice ties and the scorer picks the first, A, on every item."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    m = AutoModelForCausalLM.from_pretrained(src)
    with torch.no_grad():
        m.lm_head.weight.zero_()
    m.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)


# --- one bits per byte ------------------------------------------------------------------------

def test_train_and_evaluate_report_the_same_bits_per_byte(tiny_ws):  # noqa: F811
    """The ledger's held-out bpb after training is the number evaluate reports for that model on
    the same held-out texts: one function, one window (the model's context)."""
    from soberan.cli import app

    ws = reopen(tiny_ws, "eval_max_bytes = 100000000")  # train scores every held-out unit, whole
    r = CliRunner().invoke(app, ["train", "-w", str(ws.root), "--max-steps", "2"])
    assert r.exit_code == 0, r.output
    ws = _set_keys(ws, "bpb_max_units = 100000")  # and so does evaluate
    bpb_end = ws.ledger.latest_artifact("train", "model")["meta"]["bpb_end"]
    assert set(bpb_end) == {"ko", "en"}
    r = CliRunner().invoke(app, ["evaluate", "-w", str(ws.root)])
    assert r.exit_code == 0, r.output
    model = _results(ws)["models"][0]
    for lang, v in bpb_end.items():
        assert model["bpb"][lang]["bpb"] == pytest.approx(v, abs=1e-5)
        assert model["bpb"][lang]["window"] == 2048  # the tiny Llama's max_position_embeddings


def test_window_is_the_models_context_and_per_text_sums_match(tiny_models):  # noqa: F811
    from soberan.bpb import bits_per_byte, context_length, nll_and_bytes, nll_per_text
    from soberan.evaluate.models import load_model

    model, tok = load_model(tiny_models["trained"], "cpu")
    assert context_length(model) == 256
    texts = ["대한민국은 민주공화국이다. " * 40, "짧은 글", "", "the law " * 30]
    whole = bits_per_byte(model, tok, texts)
    assert whole == pytest.approx(bits_per_byte(model, tok, texts, max_length=256), rel=1e-9)
    assert whole != pytest.approx(bits_per_byte(model, tok, texts, max_length=16), rel=1e-3)  # windows matter
    nll, nb = nll_per_text(model, tok, texts, batch_size=3, max_batch_tokens=64)
    assert nb.tolist() == [len(t.encode()) for t in texts] and nll[2] == 0.0
    for t, x in zip(texts, nll):  # each text's share is the text scored on its own
        assert nll_and_bytes(model, tok, [t])[0] == pytest.approx(x, rel=1e-5, abs=1e-6)


# --- held-out units and their CIs -------------------------------------------------------------

def test_bpb_gets_a_ci_over_enough_units_and_no_claim_below(workspace, tiny_models):  # noqa: F811
    from soberan.cli import app
    from soberan.evaluate import run

    ws = _workspace(workspace, tiny_models, ["짧은 문서."], "bootstrap = 300\nprompts = false")
    run(ws, show=False, models=["model/final", "model-baseline/final"])
    res = _results(ws)
    for m in res["models"]:
        b = m["bpb"]["ko"]
        assert b["units"] == 30 and b["note"] is None
        assert b["ci95"][0] <= b["bpb"] <= b["ci95"][1] and b["ci95"][0] < b["ci95"][1]
        assert 0 < b["tokens_per_char"] < 2
    c = next(c for c in res["comparisons"] if c["metric"] == "bpb")
    assert c["ci95"][0] > 0 and c["significant"]

    ws = _set_keys(ws, "bpb_max_units = 6")  # now only 6 units per language: too few
    out = CliRunner().invoke(app, ["evaluate", "-w", str(ws.root), "--compare", "model/final", "model-baseline/final"])
    assert out.exit_code == 0, out.output
    assert "too few held-out units: 6 < 30" in out.output
    res = _results(ws)
    for m in res["models"]:
        assert m["bpb"]["ko"]["ci95"] is None and m["bpb"]["ko"]["note"] == "too few held-out units: 6 < 30"
    c = next(c for c in res["comparisons"] if c["metric"] == "bpb")
    assert c["significant"] is False and c["ci95"] is None and "too few held-out units" in c["note"]
    assert c["diff"] > 0  # the difference is still reported, as a number without a claim


def test_min_heldout_units_is_a_setting(workspace, tiny_models):  # noqa: F811
    from soberan.evaluate import run

    ws = _workspace(workspace, tiny_models, ["짧은 문서."], "min_heldout_units = 31\nprompts = false")
    run(ws, show=False, models=["model/final"])
    assert _results(ws)["models"][0]["bpb"]["ko"]["note"] == "too few held-out units: 30 < 31"


# --- accuracies: CIs, chance, majority class, degenerate answers ------------------------------

def test_interval_and_level_functions():
    from soberan.evaluate.compare import bootstrap_ci, degenerate, levels, wilson

    lo, hi = wilson(0, 10)
    assert lo == 0.0 and 0.25 < hi < 0.35  # the Wilson interval does not collapse at 0 correct
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    lv = levels(np.array([0, 0, 0, 1, 2, 3]), np.array([4, 4, 4, 4, 2, 2]))
    assert lv.chance == pytest.approx((4 * 0.25 + 2 * 0.5) / 6) and lv.majority == 0.5 and lv.majority_answer == "A"
    assert levels(np.array([1, 1, 0]), np.array([2, 2, 2]), ["부정", "긍정"]).majority_answer == "긍정"
    four = np.full(10, 4)
    assert degenerate(np.array([1] * 6 + [0, 2, 3, 0]), four) == "degenerate: answers B on 60%"
    assert degenerate(np.array([1] * 5 + [0, 2, 3, 0, 2]), four) is None  # exactly half is not more than half
    two = np.full(10, 2)  # two choices: one of them always holds half; the bar is 75%
    assert degenerate(np.array([0] * 7 + [1] * 3), two, ["no", "yes"]) is None
    assert degenerate(np.array([1] * 8 + [0] * 2), two, ["no", "yes"]) == "degenerate: answers yes on 80%"
    x = np.arange(40, dtype=float)
    lo, hi = bootstrap_ci(x, n=500)
    assert lo < x.mean() < hi and hi - lo < 20


def test_degenerate_model_is_flagged_and_never_significant(workspace, tiny_models, tmp_path):  # noqa: F811
    """A set whose gold answer is always A: a model that answers A whatever it reads scores 1.0.
    Its lead over a model that scores 0 has a CI far above zero, and is still not claimed."""
    from soberan.cli import app

    ws = _workspace(workspace, tiny_models, ["짧은 문서."],
                    'sets = ["all_a", "quiz"]\nbpb = false\nprompts = false')
    recs = [{**r, "answer": "A"} for r in quiz_records(12, offset=200)]
    (ws.root / "bench" / "all_a.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in recs))
    p = ws.root / "soberan.toml"
    p.write_text(p.read_text() + QUIZ_SPEC.format(name="all_a", continuation="letter"))
    _zero_head(tiny_models["trained"], ws.root / "always-a")
    r = CliRunner().invoke(app, ["evaluate", "-w", str(ws.root), "--compare", "model-baseline/final", "always-a"])
    assert r.exit_code == 0, r.output
    res = _results(ws)
    always = res["models"][1]
    assert always["sets"]["all_a"]["acc"] == 1.0
    assert always["sets"]["all_a"]["degenerate"] == {"acc": "degenerate: answers A on 100%",
                                                     "acc_norm": "degenerate: answers A on 100%"}
    info = res["sets"]["all_a"]
    assert info["majority"] == 1.0 and info["majority_answer"] == "A" and info["chance"] == 0.25
    c = next(c for c in res["comparisons"] if c["set"] == "all_a" and c["metric"] == "acc")
    assert c["diff"] > 0.5 and c["ci95"][0] > 0  # the interval alone would call it a win
    assert c["significant"] is False and "always-a degenerate: answers A on 100%" in c["note"]
    assert "degenerate: answers A on 100%" in r.output and "chance 0.250" in r.output
    rec = Workspace.open(ws.root).ledger.latest_artifact("evaluate", "results")
    assert rec["meta"]["degenerate"]["always-a"]["all_a"]["acc"] == "degenerate: answers A on 100%"
    # Every accuracy carries its own interval; the quiz gold cycles A-D, so chance = majority = 0.25.
    from soberan.evaluate.compare import wilson

    for m in res["models"]:
        for name, got in m["sets"].items():
            k = round(got["acc"] * got["n"])
            assert got["acc_ci95"] == pytest.approx(list(wilson(k, got["n"])))
    assert res["sets"]["quiz"]["chance"] == 0.25 and res["sets"]["quiz"]["majority"] == 0.25


# --- English as the forgetting check ----------------------------------------------------------

def test_every_heldout_language_is_scored_and_english_is_the_forgetting_check(workspace, tiny_models):  # noqa: F811
    from soberan.cli import app

    ws = _workspace(workspace, tiny_models, ["짧은 문서."], "prompts = false")
    en = [f"The law number {i} says that every citizen is equal." for i in range(30)]
    write_parquet_atomic(pa.table({"id": [f"e{i}" for i in range(30)], "text": en, "source": ["replay"] * 30,
                                   "lang": ["en"] * 30}), ws.root / "model" / "heldout" / "en.parquet")
    r = CliRunner().invoke(app, ["evaluate", "-w", str(ws.root), "--compare", "model/final", "model-baseline/final"])
    assert r.exit_code == 0, r.output
    res = _results(ws)
    assert res["heldout"]["en"]["forgetting_check"] is True and res["heldout"]["ko"]["forgetting_check"] is False
    for m in res["models"]:
        assert set(m["bpb"]) == {"ko", "en"} and m["bpb"]["en"]["ci95"] is not None
    assert "en (forgetting check)" in r.output


# --- merged results ---------------------------------------------------------------------------

def test_sets_merge_into_results_and_a_changed_model_loses_its_old_scores(workspace, tiny_models):  # noqa: F811
    from soberan.cli import app

    ws = _workspace(workspace, tiny_models, ["짧은 문서."], 'sets = ["quiz"]\nprompts = false')
    both = ["--compare", "model/final", "model-baseline/final"]
    assert CliRunner().invoke(app, ["evaluate", "-w", str(ws.root), *both]).exit_code == 0
    first = _results(ws)
    r = CliRunner().invoke(app, ["evaluate", "-w", str(ws.root), *both, "--sets", "numbers"])
    assert r.exit_code == 0, r.output
    res = _results(ws)
    assert set(res["sets"]) == {"quiz", "numbers"}
    for old, new in zip(first["models"], res["models"]):
        assert new["sets"]["quiz"] == old["sets"]["quiz"] and "numbers" in new["sets"]
    assert {(c["set"], c["metric"]) for c in res["comparisons"]} >= {("quiz", "acc"), ("numbers", "exact_match")}
    rec = Workspace.open(ws.root).ledger.latest_artifact("evaluate", "results")
    assert rec["meta"]["sets"] == ["numbers", "quiz"]

    # Scoring the trained model alone keeps the baseline's scores while its checkpoint is unchanged...
    r = CliRunner().invoke(app, ["evaluate", "-w", str(ws.root), "--compare", "model/final", "--sets", "chance"])
    assert r.exit_code == 0, r.output
    res = _results(ws)
    assert [m["label"] for m in res["models"]] == ["model/final", "model-baseline/final"]
    assert set(res["models"][1]["sets"]) == {"quiz", "numbers"} and "chance" in res["models"][0]["sets"]
    # ...and drops them once it is retrained: they belong to a checkpoint that is gone.
    shutil.rmtree(ws.root / "model-baseline" / "final")
    shutil.copytree(tiny_models["trained"], ws.root / "model-baseline" / "final")
    (ws.root / "model-baseline" / "final" / "note.txt").write_text("retrained")
    r = CliRunner().invoke(app, ["evaluate", "-w", str(ws.root), "--compare", "model/final", "--sets", "quiz"])
    assert r.exit_code == 0, r.output
    res = _results(ws)
    assert [m["label"] for m in res["models"]] == ["model/final"]
    assert res["dropped_models"][0]["label"] == "model-baseline/final"
    assert not any(c["model"] == "model-baseline/final" for c in res["comparisons"])
    assert "earlier results of model-baseline/final dropped" in r.output


# --- base vs adapted --------------------------------------------------------------------------

def _with_base(ws, checkpoint) -> Workspace:
    """Record `checkpoint` as the imported base model and the workspace's model/final as adapted
    from it, as the import and train stages do."""
    shutil.copytree(checkpoint, ws.root / "base" / "tiny-base")
    led = ws.ledger
    base = led.record_artifact(stage="train", kind="base_model", path="base/tiny-base",
                               meta={"name": "TinyBase-1M", "license": "Apache-2.0", "sha256": "ab" * 32,
                                     "quantization": "F32", "params": 123456})
    corpus = led.latest_artifact("curate", "corpus")
    led.record_artifact(stage="train", kind="model", path="model/final", inputs=[corpus["hash"], base["hash"]],
                        meta={"role": "main", "base_model": "TinyBase-1M"})
    return Workspace.open(ws.root)


def test_base_and_adapted_are_compared_by_default_with_fertility_and_answers(workspace, tiny_models):  # noqa: F811
    from soberan.evaluate import run

    ws = _with_base(_workspace(workspace, tiny_models, ["짧은 문서."], 'sets = ["quiz"]'), tiny_models["untrained"])
    s = run(ws, show=False)
    assert s.models == ["base", "adapted"]
    res = _results(ws)
    base, adapted = res["models"]
    assert (base["role"], base["path"]) == ("base", "base/tiny-base")
    assert (adapted["role"], adapted["path"]) == ("adapted", "model/final")
    assert adapted["sets"]["quiz"]["acc"] == 1.0 and base["sets"]["quiz"]["acc"] < 1.0
    assert adapted["bpb"]["ko"]["bpb"] < base["bpb"]["ko"]["bpb"]
    assert base["bpb"]["ko"]["tokens_per_char"] == adapted["bpb"]["ko"]["tokens_per_char"]  # one tokenizer here
    from soberan.evaluate.stage import load_prompts

    prompts = load_prompts(ws)
    assert set(res["prompts"]) == {"ko", "en"} and res["prompts"]["ko"] == [p["prompt"] for p in prompts["ko"]]
    for m in (base, adapted):
        assert [len(m["answers"][lang]) for lang in ("ko", "en")] == [len(prompts["ko"]), len(prompts["en"])]
    # Naming them works too, and labels follow the ledger roles.
    s = run(ws, show=False, models=["base/tiny-base", "model/final"])
    assert s.models == ["base", "adapted"]


def test_shipped_prompts_cover_the_nations_languages(workspace):
    from soberan.evaluate.stage import load_prompts

    prompts = load_prompts(workspace)
    for lang in ("ko", "th", "vi", "id", "ms", "tl", "ar", "en"):
        assert 5 <= len(prompts[lang]) <= 8, lang
        assert len({p["id"] for p in prompts[lang]}) == len(prompts[lang])


def test_bad_prompts_file_is_a_clear_error(workspace, tiny_models):  # noqa: F811
    from soberan.cli import app

    ws = _workspace(workspace, tiny_models, ["짧은 문서."], 'prompts_file = "my_prompts.toml"')
    (ws.root / "my_prompts.toml").write_text('[[ko]]\nid = "x"\n')
    r = CliRunner().invoke(app, ["evaluate", "-w", str(ws.root), "--compare", "model/final"])
    assert r.exit_code != 0 and "my_prompts.toml" in r.output and "prompt" in r.output
