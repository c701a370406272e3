"""Benchmark specs: the config-declared format, the shipped specs against ../shared/data, the
curate stage's benchmark_texts, the lm-eval export and the paired bootstrap. No model needed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from soberan.config import ConfigError
from soberan.workspace import Workspace
from conftest import write_config

QUIZ = [
    {"meta": {"uid": f"q{i}"}, "body": {"stem": f"질문 {i}", "passage": f"지문 {i}은 길다."},
     "options": [{"t": f"답{i}{k}"} for k in range(4)], "key": "ABCD"[i % 4]}
    for i in range(6)
]


def _set_evaluate(ws_root, body: str) -> Workspace:
    p = ws_root / "soberan.toml"
    p.write_text(p.read_text().replace("\n[evaluate]\n", "\n[evaluate]\n" + body + "\n", 1))
    return Workspace.open(ws_root)


def _quiz_ws(workspace, extra_spec: str = "", records=QUIZ):
    bench = workspace.root / "bench"
    bench.mkdir()
    (bench / "quiz.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    (bench / "labels.tsv").write_text("좋은 영화\tpos\n나쁜 영화\tneg\n그저 그런\tpos\n")
    write_config(workspace.root, f"""
[[evaluate.benchmarks]]
name = "quiz"
path = "bench/quiz.jsonl"
id = "meta.uid"
question = "body.stem"
context = "body.passage"
choices = "options"
choice_key = "t"
answer = "key"
answer_format = "letter"
template = "{{context}}\\n{{question}}\\n{{choices}}\\n답:"
continuation = "letter"
language = "ko"
license = "CC0-1.0"
{extra_spec}

[[evaluate.benchmarks]]
name = "senti"
path = "bench/labels.tsv"
header = false
columns = ["text", "label"]
question = "text"
template = "문장: {{question}} 긍부정:"
labels = ["부정", "긍정"]
answer = "label"
answer_map = {{ neg = 0, pos = 1 }}
language = "ko"
license = "CC0-1.0"
""")
    return Workspace.open(workspace.root)


def test_config_declared_spec_reads_nested_jsonl_and_headerless_tsv(workspace):
    from soberan.benchmarks import load_items, load_spec
    from soberan.evaluate.specs import continuations, render

    ws = _quiz_ws(workspace)
    spec = load_spec(ws.config, "quiz")
    items = load_items(spec)
    assert [it.id for it in items] == [f"q{i}" for i in range(6)]
    it = items[1]
    assert it.choices == ("답10", "답11", "답12", "답13") and it.answer == 1 and it.target == "답11"
    assert render(spec, it) == "지문 1은 길다.\n질문 1\nA. 답10\nB. 답11\nC. 답12\nD. 답13\n답:"
    assert continuations(spec, it) == [" A", " B", " C", " D"]
    senti = load_items(load_spec(ws.config, "senti"))
    assert [(s.values["question"], s.answer) for s in senti] == [("좋은 영화", 1), ("나쁜 영화", 0), ("그저 그런", 1)]
    assert senti[0].texts == ("좋은 영화",)  # label words are not item text


def test_rows_that_do_not_fit_are_rejected_with_reason(workspace):
    from soberan.benchmarks import load_items, load_items_checked, load_spec

    bad = QUIZ + [{"meta": {"uid": "bad"}, "body": {"stem": "x", "passage": "y"},
                   "options": [{"t": "a"}, {"t": "b"}], "key": "D"}]
    ws = _quiz_ws(workspace, records=bad)
    spec = load_spec(ws.config, "quiz")
    items, rejected = load_items_checked(spec)
    assert len(items) == 6 and len(rejected) == 1
    assert rejected[0].row == 6 and "id bad" in rejected[0].reason and "2 choices" in rejected[0].reason
    with pytest.raises(ConfigError, match="1 row"):
        load_items(spec)


@pytest.mark.parametrize("table, words", [
    ('template = "{question} {nope}"', "nope"),
    ('template = "{question}"\ntarget = "{gold}"', "target"),
    ('template = "{question}"\ncolour = "red"', "unknown key"),
])
def test_bad_spec_is_a_config_error_naming_the_key(workspace, table, words):
    write_config(workspace.root, f"""
[[evaluate.benchmarks]]
name = "bad"
path = "x.jsonl"
question = "q"
labels = ["a", "b"]
answer = "a"
language = "ko"
license = "CC0-1.0"
{table}
""")
    with pytest.raises(ConfigError, match=words):
        Workspace.open(workspace.root)


def test_unknown_set_name_lists_groups(workspace):
    from soberan.benchmarks import resolve_names

    with pytest.raises(ConfigError, match="kobest"):
        resolve_names(workspace.config, ["no_such_set"])


def test_shipped_specs_read_the_shared_data_in_place(workspace, shared_data, monkeypatch):
    """Every shipped spec reads its real files with no row rejected; counts match SOURCE.md."""
    from soberan.benchmarks import all_specs, load_items_checked, with_paths

    monkeypatch.setenv("SOBERAN_SHARED_DATA", str(shared_data))
    expected = {"kobest_boolq": 1404, "kobest_copa": 1000, "kobest_hellaswag": 500, "kobest_sentineg": 397,
                "kobest_wic": 1260, "kmmlu_criminal_law": 200, "belebele_th": 895, "belebele_tl": 100,
                "global_mmlu_lite_my": 400, "xcopa_vi": 500, "exams_ar": 562, "exams_vi": 1222,
                "acva_arabic": 8711, "indonlu_smsa": 1260, "thai_exam_ic": 95}
    specs = all_specs(workspace.config)
    groups = {s.group for s in specs.values()}
    assert {"kobest", "kmmlu_criminal_law", "thai_exam", "belebele_sea", "global_mmlu_lite_sea", "xcopa_sea",
            "exams_ar_vi", "acva_arabic", "indonlu", "nsmc"} <= groups
    for name, n in expected.items():
        spec = with_paths(workspace.config, specs[name])
        assert spec.path.startswith(str(shared_data))  # read where it is, not copied
        items, rejected = load_items_checked(spec)
        assert (len(items), rejected) == (n, []), name
        assert all(it.answer is not None and 0 <= it.answer < len(it.choices) for it in items)
    assert sum(len(load_items_checked(with_paths(workspace.config, specs[f"thai_exam_{e}"]))[0])
               for e in ("onet", "ic", "tgat", "tpat1", "a_level")) == 565
    copa = load_items_checked(with_paths(workspace.config, specs["kobest_copa"]), limit=1)[0][0]
    assert copa.values["question"] in ("왜냐하면", "그래서")
    assert not specs["kmmlu_criminal_law"].redistribute


def test_benchmark_texts_for_curate(workspace, shared_data, monkeypatch):
    from soberan.benchmarks import benchmark_texts

    monkeypatch.setenv("SOBERAN_SHARED_DATA", str(shared_data))
    texts = benchmark_texts(workspace.config, ["kobest_copa", "kobest_sentineg"])
    assert set(texts) == {"kobest_copa", "kobest_sentineg"}
    assert "새로 산 바지의 허리가 컸다." in texts["kobest_copa"]  # test split premise
    assert "벨트를 바지에 끼워 사이즈를 조절했다." in texts["kobest_copa"]  # a choice
    assert len(texts["kobest_copa"]) > 5000  # the few-shot (train) split is included too
    assert "긍정" not in texts["kobest_sentineg"]  # label words are not benchmark text


def test_shared_data_unset_is_a_clear_error(workspace, monkeypatch):
    from soberan.benchmarks import benchmark_texts

    monkeypatch.delenv("SOBERAN_SHARED_DATA", raising=False)
    with pytest.raises(ConfigError, match="shared_data"):
        benchmark_texts(workspace.config, ["nsmc"])


def test_lm_eval_export_matches_soberan_and_lm_eval_schema(workspace, tmp_path):
    import jinja2

    from soberan.benchmarks import load_items, load_spec
    from soberan.evaluate.export import TASKCONFIG_KEYS, export_lm_eval
    from soberan.evaluate.specs import render

    ws = _quiz_ws(workspace)
    specs = [load_spec(ws.config, "quiz"), load_spec(ws.config, "senti")]
    done = export_lm_eval(specs, tmp_path / "tasks")
    assert [d.checked for d in done] == [6, 3]
    cfg = yaml.safe_load((tmp_path / "tasks" / "soberan_quiz.yaml").read_text())
    assert set(cfg) <= TASKCONFIG_KEYS and cfg["output_type"] == "multiple_choice"
    assert cfg["dataset_path"] == "json" and cfg["dataset_kwargs"]["data_files"]["test"] == specs[0].path
    # Render as lm-eval does: its Jinja environment (lm_eval/utils.py: BaseLoader, StrictUndefined),
    # the doc's fields as variables.
    rec = QUIZ[2]
    env = jinja2.Environment(loader=jinja2.BaseLoader(), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    assert env.from_string(cfg["doc_to_text"]).render(**rec) == render(specs[0], load_items(specs[0])[2])
    assert env.from_string(cfg["doc_to_choice"]).render(**rec) == "['A', 'B', 'C', 'D']"
    assert env.from_string(cfg["doc_to_target"]).render(**rec) == "2"
    senti = yaml.safe_load((tmp_path / "tasks" / "soberan_senti.yaml").read_text())
    assert senti["dataset_path"] == "csv" and senti["dataset_kwargs"]["column_names"] == ["text", "label"]
    try:  # lm-eval's own parser, when installed (it is an optional extra, not a dependency)
        from lm_eval.config.task import TaskConfig
    except ImportError:
        TaskConfig = None
    if TaskConfig is not None:
        TaskConfig(**cfg)


@pytest.mark.slow  # renders ten shipped benchmarks' records
def test_lm_eval_export_of_shipped_specs(workspace, shared_data, monkeypatch, tmp_path):
    from soberan.benchmarks import resolve_names, with_paths
    from soberan.evaluate.export import export_lm_eval

    monkeypatch.setenv("SOBERAN_SHARED_DATA", str(shared_data))
    specs = [with_paths(workspace.config, s) for s in resolve_names(
        workspace.config, ["kobest", "thai_exam_ic", "exams_ar", "global_mmlu_lite_my", "xcopa_th", "acva_arabic"])]
    done = export_lm_eval(specs, tmp_path)
    assert len(done) == 10 and all(d.checked == 25 for d in done)


def test_paired_bootstrap():
    from soberan.evaluate.compare import paired_bootstrap

    rng = np.random.default_rng(0)
    a = (rng.random(300) < 0.5).astype(float)
    same = paired_bootstrap(a, a, n=500, seed=1)
    assert (same.value, same.lo, same.hi) == (0.0, 0.0, 0.0) and not same.significant
    better = np.maximum(a, (rng.random(300) < 0.5))  # B right wherever A is, and more
    d = paired_bootstrap(a, better, n=500, seed=1)
    assert d.value > 0.15 and d.lo > 0 and d.significant
    assert d == paired_bootstrap(a, better, n=500, seed=1)  # seeded
    noise = paired_bootstrap(a, (rng.random(300) < 0.5).astype(float), n=500, seed=1)
    assert noise.lo < 0 < noise.hi  # two coins: no claim
    # Weighted (bits per byte): the point value is the pooled ratio difference.
    bits_a, bits_b, w = np.array([1.0, 2.0]), np.array([1.0, 1.0]), np.array([1.0, 3.0])
    wd = paired_bootstrap(bits_a, bits_b, n=200, seed=0, weights=w)
    assert wd.value == pytest.approx((1 * 1 + 1 * 3) / 4 - (1 * 1 + 2 * 3) / 4)


def test_a_spec_path_may_be_a_glob(workspace):
    """A split in shards: `path = "bench/part-*.jsonl"` reads every match, in name order; a glob
    matching nothing is an error naming it."""
    from soberan.benchmarks import load_items, load_spec

    bench = workspace.root / "bench"
    bench.mkdir()
    for k in (0, 1):
        (bench / f"part-{k}.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False)
                                                         for r in QUIZ[3 * k:3 * k + 3]) + "\n")
    spec_toml = """
[[evaluate.benchmarks]]
name = "sharded"
path = "bench/{pattern}"
id = "meta.uid"
question = "body.stem"
choices = "options"
choice_key = "t"
answer = "key"
answer_format = "letter"
template = "{{question}}\\n{{choices}}\\n답:"
language = "ko"
license = "CC0-1.0"
"""
    write_config(workspace.root, spec_toml.format(pattern="part-*.jsonl"))
    ws = Workspace.open(workspace.root)
    assert [it.id for it in load_items(load_spec(ws.config, "sharded"))] == [f"q{i}" for i in range(6)]
    cfg = ws.root / "soberan.toml"
    cfg.write_text(cfg.read_text().replace("bench/part-*.jsonl", "bench/nothing-*.jsonl"))
    with pytest.raises(FileNotFoundError, match="nothing-"):
        load_spec(Workspace.open(workspace.root).config, "sharded")
