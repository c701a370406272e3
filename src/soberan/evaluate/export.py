"""Export benchmark specs as lm-evaluation-harness task YAMLs that read the same local files.

A lab can then reproduce soberan's numbers with lm-eval itself, offline: `dataset_path` is HF
`datasets`' generic `json`/`csv`/`parquet` builder with `data_files` pointing at the files where
they are (nothing is copied), and the prompt, choices and target are Jinja templates derived from
the spec. Before a YAML is written, its templates are rendered on the set's first records and
compared with soberan's own prompts, choices and gold answers; a difference is an error, so an
exported task scores what `soberan evaluate` scores.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path

from soberan.benchmarks import (LETTERS, _MISSING, _gold, _text, file_format, get_field, make_item,
                                read_records, spec_files)
from soberan.config import ConfigError
from soberan.evaluate.config import BenchmarkSpec
from soberan.evaluate.specs import render

# The keys lm-eval's TaskConfig accepts (lm_eval/config/task.py, v0.4.x; `group` is the older
# spelling of `tag`). Used to validate an export when lm-eval itself is not installed.
TASKCONFIG_KEYS = frozenset({
    "task", "task_alias", "tag", "group", "group_alias", "custom_dataset", "dataset_path",
    "dataset_name", "dataset_kwargs", "training_split", "validation_split", "test_split",
    "fewshot_split", "process_docs", "doc_to_text", "doc_to_target", "doc_to_image",
    "doc_to_audio", "unsafe_code", "doc_to_choice", "process_results", "use_prompt",
    "description", "target_delimiter", "fewshot_delimiter", "fewshot_config", "num_fewshot",
    "generation_kwargs", "metric_list", "output_type", "repeats", "filter_list",
    "should_decontaminate", "doc_to_decontamination_query", "gen_prefix", "metadata",
})
OUTPUT_TYPES = ("loglikelihood", "multiple_choice", "loglikelihood_rolling", "generate_until")


@dataclass(frozen=True)
class Exported:
    name: str
    path: Path
    checked: int  # records whose rendering was compared with soberan's


def _ident(name: str) -> str:
    s = re.sub(r"\W", "_", name)
    return s if s and not s[0].isdigit() else f"c_{s}"


def _csv_columns(spec: BenchmarkSpec, path: Path) -> list[str]:
    import csv

    if not spec.header:
        return list(spec.columns)
    delim = "\t" if file_format(spec, path) == "tsv" else ","
    with open(path, encoding="utf-8-sig", newline="") as f:
        return next(csv.reader(f, delimiter=delim))


def _jinja_path(path: str, rename: dict[str, str], optional: bool = False) -> str:
    """A field path as a Jinja expression over lm-eval's doc variables."""
    if path in rename:
        return rename[path]
    parts = path.split(".")
    expr = rename.get(parts[0], parts[0])
    for i, p in enumerate(parts[1:], 1):
        if p.lstrip("-").isdigit():
            expr += f"[{p}]"
        elif optional and i == len(parts) - 1:
            expr += f".get({p!r})"
        else:
            expr += f"[{p!r}]"
    return expr


def _choices_preamble(spec: BenchmarkSpec, rename: dict[str, str]) -> str:
    """Jinja statements that set `opts` to the item's options, as the spec reader sees them."""
    if spec.labels:
        return "{% set opts = " + repr(list(spec.labels)) + " %}"
    if isinstance(spec.choices, str):
        base = _jinja_path(spec.choices, rename)
        expr = f"{base} | map(attribute={spec.choice_key!r}) | list" if spec.choice_key else base
        return "{% set opts = " + expr + " %}"
    items = ", ".join(_jinja_path(p, rename, optional=True) for p in spec.choices or [])
    # Trailing absent or empty options are dropped (ThaiExam's 4-option questions), as the spec
    # reader does; an empty option in the middle keeps its place and its letter.
    return ("{% set opts = [" + items + "] %}{% set ns = namespace(n=0) %}{% for c in opts %}"
            "{% if c is not none and c | string != '' %}{% set ns.n = loop.index %}{% endif %}"
            "{% endfor %}{% set opts = opts[:ns.n] %}")


def _text_template(spec: BenchmarkSpec, rename: dict[str, str]) -> str:
    out = []
    for literal, name, _, _ in string.Formatter().parse(spec.template):
        if literal:
            jinja_syntax = any(t in literal for t in ("{{", "{%", "{#", "}}", "%}", "#}"))
            out.append("{% raw %}" + literal + "{% endraw %}" if jinja_syntax else literal)
        if name is None:
            continue
        if name == "choices":
            out.insert(0, _choices_preamble(spec, rename))
            out.append("{% for c in opts %}{{ '" + LETTERS + "'[loop.index0] }}. {{ c }}"
                       "{% if not loop.last %}\n{% endif %}{% endfor %}")
            continue
        expr = _jinja_path(spec.placeholders()[name], rename)
        if name in spec.maps:
            out.append("{{ " + repr(spec.maps[name]) + f"[{expr} | string | trim] }}}}")
        else:
            out.append("{{ " + expr + " }}")
    return "".join(out)


def task_config(spec: BenchmarkSpec, prefix: str = "soberan_") -> tuple[dict, dict[str, str]]:
    """The lm-eval task dict for a spec whose paths are absolute, and the csv column renaming
    (lm-eval's templates need identifiers; KoBEST names columns `1`, `2`, `Dictionary 1`)."""
    path = spec_files(spec.path)[0]  # a glob's first file tells the format and the columns
    fmt = file_format(spec, path)
    data_files = {"test": Path(spec.path).as_posix()}  # `datasets` expands a glob itself
    if spec.fewshot_path:
        data_files["train"] = Path(spec.fewshot_path).as_posix()
    kwargs: dict = {"data_files": data_files}
    rename: dict[str, str] = {}
    if fmt in ("csv", "tsv"):
        cols = _csv_columns(spec, path)
        kwargs["keep_default_na"] = False  # an empty review stays "", not NaN
        if fmt == "tsv":
            kwargs["sep"] = "\t"
        if not spec.header or any(_ident(c) != c for c in cols):
            # lm-eval's templates see columns as variables, so they need identifiers; the names
            # given here apply to every data file, which must then share the header.
            if spec.fewshot_path and _csv_columns(spec, Path(spec.fewshot_path)) != cols:
                raise ConfigError(f"lm-eval export of {spec.name}: the test and few-shot files have "
                                  "different headers and columns that need renaming; lm-eval's csv "
                                  "loader takes one list of column names for both")
            rename = {c: _ident(c) for c in cols}
            kwargs.update({"column_names": [rename[c] for c in cols], "skiprows": 1 if spec.header else 0})
    builder = {"jsonl": "json", "json": "json", "csv": "csv", "tsv": "csv", "parquet": "parquet"}[fmt]

    records = read_records(spec, path)
    fewshot = read_records(spec, Path(spec.fewshot_path)) if spec.fewshot_path else []
    pre = _choices_preamble(spec, rename) if spec.type == "mc" else ""
    cfg: dict = {
        "task": f"{prefix}{spec.name}",
        "tag": [f"{prefix}{spec.group or spec.name}"],
        "dataset_path": builder,
        "dataset_kwargs": kwargs,
        "test_split": "test",
        "doc_to_text": _text_template(spec, rename),
        "description": spec.instruction + (spec.fewshot_delimiter if spec.instruction else ""),
        "target_delimiter": spec.target_delimiter,
        "fewshot_delimiter": spec.fewshot_delimiter,
        "num_fewshot": spec.num_fewshot,
        "metadata": {"version": 1.0, "language": spec.language, "license": spec.license,
                     "source": "soberan evaluate", "citation": spec.citation},
    }
    if spec.fewshot_path:
        cfg["fewshot_split"] = "train"
        if spec.fewshot_sampler == "first_n":
            cfg["fewshot_config"] = {"sampler": "first_n"}
    if spec.type == "mc":
        cfg["output_type"] = "multiple_choice"
        if spec.continuation == "letter":
            cfg["doc_to_choice"] = pre + "{{ '" + LETTERS + "'[:opts | length] | list }}"
        elif spec.labels:
            cfg["doc_to_choice"] = list(spec.labels)
        else:
            cfg["doc_to_choice"] = pre + "{{ opts }}"
        cfg["doc_to_target"] = _target_template(spec, rename, records + fewshot)
        cfg["metric_list"] = [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                              for m in ("acc", "acc_norm")]
    else:
        cfg["output_type"] = "generate_until"
        target = spec.target.replace("{answer}", "{{ " + _jinja_path(spec.answer, rename) + " }}")
        cfg["doc_to_target"] = target
        cfg["generation_kwargs"] = {"until": list(spec.stop), "do_sample": False, "temperature": 0.0}
        cfg["metric_list"] = [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                               "ignore_case": True, "ignore_punctuation": True}]
    return cfg, rename


def _target_template(spec: BenchmarkSpec, rename: dict[str, str], records: list[dict]) -> str:
    """The gold index as Jinja. For a fixed raw-value → index relation (indices, letters, label
    words) the table is read off the data itself, so every value the files hold is covered."""
    field = _jinja_path(spec.answer, rename)
    if spec.answer_format == "text" and not spec.labels:
        return _choices_preamble(spec, rename) + "{{ opts.index(" + field + " | string | trim) }}"
    table: dict[str, int] = {}
    n_choices = len(spec.labels) or len(spec.choices or []) or len(LETTERS)
    dummy = list(spec.labels) or [f"choice{i}" for i in range(n_choices)]
    for rec in records:
        raw = get_field(rec, spec.answer)
        if raw is _MISSING:
            continue
        try:
            table[_text(raw).strip()] = _gold(spec, raw, dummy, spec.name)
        except ValueError:
            continue
    # HF's csv reader turns True/False columns into booleans; their string form is also covered.
    for k, v in list(table.items()):
        if k.lower() in ("true", "false"):
            table.setdefault(k.capitalize(), v)
    return "{{ " + repr(dict(sorted(table.items()))) + "[" + field + " | string | trim] }}"


def _jinja_env():
    import jinja2

    # lm-eval renders with this environment (lm_eval/utils.py: BaseLoader, StrictUndefined).
    return jinja2.Environment(loader=jinja2.BaseLoader(), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True)


def check_against_spec(spec: BenchmarkSpec, cfg: dict, rename: dict[str, str], n: int = 25) -> int:
    """Render the task's templates as lm-eval would on the first `n` records and compare with
    soberan's own prompt, choices and gold answer. Returns how many records were compared."""
    import ast

    from soberan.evaluate.specs import continuations

    env = _jinja_env()
    checked = 0
    for row, rec in enumerate(read_records(spec, Path(spec.path))[:n]):
        try:
            item = make_item(spec, rec, row)
        except ValueError:
            continue  # a row soberan rejects is not scored by either tool
        doc = {rename.get(k, k): v for k, v in rec.items()}
        where = f"lm-eval export of {spec.name}, row {row}"
        text = env.from_string(cfg["doc_to_text"]).render(**doc)
        if text != render(spec, item):
            raise ConfigError(f"{where}: prompt differs:\n  lm-eval: {text!r}\n  soberan: {render(spec, item)!r}")
        if spec.type == "mc":
            dc = cfg["doc_to_choice"]
            choices = dc if isinstance(dc, list) else ast.literal_eval(env.from_string(dc).render(**doc))
            want = [c.removeprefix(spec.target_delimiter) for c in continuations(spec, item)]
            if [str(c) for c in choices] != want:
                raise ConfigError(f"{where}: choices differ: {choices} vs {want}")
            gold = int(env.from_string(cfg["doc_to_target"]).render(**doc))
            if gold != item.answer:
                raise ConfigError(f"{where}: gold {gold} vs {item.answer}")
        else:
            target = env.from_string(cfg["doc_to_target"]).render(**doc)
            if target != item.target:
                raise ConfigError(f"{where}: target {target!r} vs {item.target!r}")
        checked += 1
    return checked


def validate_task(cfg: dict) -> None:
    """Check a task dict against lm-eval: its own TaskConfig when installed, else its key list."""
    unknown = set(cfg) - TASKCONFIG_KEYS
    if unknown:
        raise ConfigError(f"task {cfg.get('task')}: keys lm-eval does not accept: {sorted(unknown)}")
    if cfg.get("output_type") not in OUTPUT_TYPES:
        raise ConfigError(f"task {cfg.get('task')}: output_type {cfg.get('output_type')!r}")
    for key in ("task", "dataset_path", "test_split", "doc_to_text", "doc_to_target"):
        if not cfg.get(key) and cfg.get(key) != 0:
            raise ConfigError(f"task {cfg.get('task')}: missing {key}")
    try:
        from lm_eval.config.task import TaskConfig  # lm-eval >= 0.4.9
    except ImportError:
        try:
            from lm_eval.api.task import TaskConfig  # older 0.4.x
        except ImportError:
            return
    TaskConfig(**cfg)


def export_lm_eval(specs: list[BenchmarkSpec], out_dir: Path, prefix: str = "soberan_",
                   max_length: int = 1024) -> list[Exported]:
    """Write one `<task>.yaml` per spec (paths absolute) into `out_dir`, each checked first.

    lm-eval then gives the same acc and acc_norm as `soberan evaluate` when it also conditions on
    BOS and cuts at the same length (`add_bos_token=True,max_length=...`, in the file's header);
    checked with lm-eval 0.4.13 on 14 shipped sets zero-shot and 5 three-shot (docs/evaluate.md)."""
    import yaml

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for spec in specs:
        cfg, rename = task_config(spec, prefix)
        checked = check_against_spec(spec, cfg, rename)
        validate_task(cfg)
        path = out_dir / f"{cfg['task']}.yaml"
        header = (f"# lm-evaluation-harness task written by `soberan evaluate --export-lm-eval` from the\n"
                  f"# spec {spec.name!r}; it reads the local files below (nothing downloaded). Run:\n"
                  f"#   lm_eval --model hf --model_args pretrained=<model dir>,add_bos_token=True,"
                  f"max_length={max_length} --include_path {out_dir} --tasks {cfg['task']}\n")
        path.write_text(header + yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False, width=1000),
                        encoding="utf-8")
        done.append(Exported(spec.name, path, checked))
    return done
