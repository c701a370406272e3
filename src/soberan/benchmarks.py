"""Benchmark specs and their items: find the declared specs, read their items from local files.

Core, because two stages read benchmarks: `evaluate` scores them and `curate` removes their texts
from the corpus (decontamination). Neither imports the other; both read the declarations here.

Specs come from three places, later ones overriding earlier ones of the same name: the files
shipped in `soberan/evaluate/specs/`, the folders in `[evaluate] spec_dirs`, and the
`[[evaluate.benchmarks]]` tables of the workspace config. A spec file holds `[[benchmark]]`
tables; a table with `variants = [...]` stands for one spec per variant, `${variant}` filled in
(one declaration for the six languages of Belebele). The spec format itself is evaluate's
settings schema (`BenchmarkSpec`, a pydantic model that imports only core).

Files are read where they are (never copied), which is what a license such as KMMLU's CC-BY-ND
asks; only hashes and ids of their rows reach the workspace.

`benchmark_texts` is the curate stage's view: every text of the named sets, so the corpus is
decontaminated against exactly the sets evaluate scores.
"""

from __future__ import annotations

import csv
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from soberan.config import Config, ConfigError
from soberan.evaluate.config import BenchmarkSpec

# The specs shipped with soberan: data files that live beside the evaluate stage
SPECS_DIR = Path(__file__).parent / "evaluate" / "specs"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Item:
    """One benchmark question, ready to render."""

    id: str
    values: dict[str, str]  # placeholder -> text (after `maps`)
    choices: tuple[str, ...]  # the options' texts (the labels for a classification set)
    answer: int | None  # gold choice index (mc); None for a generate set without choices
    target: str  # the gold text: the gold choice, or the expected short answer
    texts: tuple[str, ...]  # the item's own texts (raw fields and choices, not fixed labels)


# --- finding specs -----------------------------------------------------------------------------

def _expand(table: dict, origin: str) -> list[dict]:
    variants = table.pop("variants", None)
    if variants is None:
        return [table]
    out = []
    for v in variants:
        def sub(x: Any) -> Any:
            if isinstance(x, str):
                return x.replace("${variant}", str(v))
            if isinstance(x, list):
                return [sub(y) for y in x]
            if isinstance(x, dict):
                return {k: sub(y) for k, y in x.items()}
            return x
        out.append(sub(dict(table)))
    return out


def read_spec_file(path: Path) -> list[BenchmarkSpec]:
    """The specs of one file of `[[benchmark]]` tables; errors name the file and the key."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    unknown = set(raw) - {"benchmark"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown)}; use [[benchmark]] tables")
    specs = []
    for i, table in enumerate(raw.get("benchmark", [])):
        table.setdefault("group", Path(path).stem)
        for t in _expand(dict(table), str(path)):
            try:
                specs.append(BenchmarkSpec.model_validate(t))
            except ValidationError as e:
                raise ConfigError(_spec_error(e, f"{path}: benchmark #{i + 1} ({t.get('name', '?')})")) from None
    return specs


def _spec_error(err: ValidationError, where: str) -> str:
    lines = [f"{where}: invalid benchmark spec"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(spec)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def all_specs(cfg: Config) -> dict[str, BenchmarkSpec]:
    """Every spec this workspace can name: shipped, then `spec_dirs`, then the config's own."""
    specs: dict[str, BenchmarkSpec] = {}
    files = sorted(SPECS_DIR.glob("*.toml"))
    for d in cfg.evaluate.spec_dirs:
        folder = cfg.resolve(d)
        if not folder.is_dir():
            raise ConfigError(f"evaluate.spec_dirs: {folder} is not a folder")
        files += sorted(folder.glob("*.toml"))
    for f in files:
        for s in read_spec_file(f):
            specs[s.name] = s
    for s in cfg.evaluate.benchmarks:
        specs[s.name] = s if s.group else s.model_copy(update={"group": s.name})
    return specs


def resolve_names(cfg: Config, names: list[str]) -> list[BenchmarkSpec]:
    """Spec names or group names → specs, in the order given, each once."""
    specs = all_specs(cfg)
    groups: dict[str, list[str]] = {}
    for s in specs.values():
        groups.setdefault(s.group, []).append(s.name)
    out: dict[str, BenchmarkSpec] = {}
    for n in names:
        if n in specs:
            out.setdefault(n, specs[n])
        elif n in groups:
            for m in groups[n]:
                out.setdefault(m, specs[m])
        else:
            raise ConfigError(f"evaluate: no benchmark or group named {n!r}; known groups: "
                              f"{', '.join(sorted(groups))}")
    return list(out.values())


def shared_data_dir(cfg: Config) -> Path | None:
    """What `${shared_data}` means: the config's `evaluate.shared_data`, else $SOBERAN_SHARED_DATA."""
    if cfg.evaluate.shared_data:
        return cfg.resolve(cfg.evaluate.shared_data)
    env = os.environ.get("SOBERAN_SHARED_DATA")
    return Path(env).expanduser() if env else None


def resolve_path(cfg: Config, value: str, spec_name: str) -> Path:
    if "${shared_data}" in value:
        base = shared_data_dir(cfg)
        if base is None:
            raise ConfigError(f"benchmark {spec_name}: its path uses ${{shared_data}}; set "
                              "`shared_data` in [evaluate] or $SOBERAN_SHARED_DATA")
        value = value.replace("${shared_data}", base.as_posix())
    return cfg.resolve(value)


def spec_files(path: str | Path) -> list[Path]:
    """The files of a split: `path` itself, or the files its glob matches (`*`, `?`, `[...]`,
    `**` across folders), sorted so items keep one order, e.g. a test split in shards."""
    import glob

    p = str(path)
    if not any(c in p for c in "*?["):
        return [Path(p)]
    return sorted(Path(f) for f in glob.glob(p, recursive=True) if Path(f).is_file())


def load_spec(cfg: Config, name: str) -> BenchmarkSpec:
    """One spec by name, its paths made absolute (the file is checked to exist)."""
    specs = all_specs(cfg)
    if name not in specs:
        raise ConfigError(f"evaluate: no benchmark named {name!r}")
    return with_paths(cfg, specs[name])


def with_paths(cfg: Config, spec: BenchmarkSpec) -> BenchmarkSpec:
    path = resolve_path(cfg, spec.path, spec.name)
    if not spec_files(path) or not all(f.is_file() for f in spec_files(path)):
        raise FileNotFoundError(f"benchmark {spec.name}: no file {path}")
    fs = None
    if spec.fewshot_path:
        fs = resolve_path(cfg, spec.fewshot_path, spec.name)
        if not spec_files(fs) or not all(f.is_file() for f in spec_files(fs)):
            raise FileNotFoundError(f"benchmark {spec.name}: no few-shot file {fs}")
        fs = fs.as_posix()
    return spec.model_copy(update={"path": path.as_posix(), "fewshot_path": fs})


# --- reading items -----------------------------------------------------------------------------

def file_format(spec: BenchmarkSpec, path: Path) -> str:
    if spec.format:
        return spec.format
    suffix = path.suffix.lower().lstrip(".")
    fmt = {"jsonl": "jsonl", "ndjson": "jsonl", "json": "json", "tsv": "tsv", "csv": "csv",
           "parquet": "parquet", "txt": "tsv"}.get(suffix)
    if fmt is None:
        raise ConfigError(f"benchmark {spec.name}: cannot tell the format of {path.name}; set `format`")
    return fmt


def read_records(spec: BenchmarkSpec, path: Path) -> list[dict]:
    """The raw records of one split, in file order (a glob: its files in name order)."""
    files = spec_files(path)
    if len(files) != 1 or files[0] != Path(path):
        return [rec for f in files for rec in read_records(spec, f)]
    fmt = file_format(spec, path)
    if fmt == "jsonl":
        out = []
        with open(path, encoding="utf-8-sig") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ConfigError(f"benchmark {spec.name}: {path} line {n}: not JSON ({e})") from None
        return out
    if fmt == "json":
        data = json.loads(path.read_text(encoding="utf-8-sig"))
        if isinstance(data, dict):  # {"data": [...]} and similar
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else data
        if not isinstance(data, list):
            raise ConfigError(f"benchmark {spec.name}: {path} is not a JSON list of records")
        return data
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    delim = "\t" if fmt == "tsv" else ","
    with open(path, encoding="utf-8-sig", newline="") as f:
        if spec.header:
            return list(csv.DictReader(f, delimiter=delim))
        return [dict(zip(spec.columns, row)) for row in csv.reader(f, delimiter=delim) if row]


_MISSING = object()


def get_field(record: Any, path: str) -> Any:
    """`path` in a record: a key as it is, else a dotted walk through dicts and lists."""
    if isinstance(record, dict) and path in record:
        return record[path]
    cur = record
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return _MISSING
    return cur


def _text(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return "" if v is None else str(v)


def _choices(spec: BenchmarkSpec, rec: dict, where: str) -> tuple[list[str], bool]:
    """The item's options and whether they are its own text (False for fixed labels)."""
    if spec.labels:
        return list(spec.labels), False
    if isinstance(spec.choices, str):
        v = get_field(rec, spec.choices)
        if not isinstance(v, list):
            raise ValueError(f"{where}: field {spec.choices!r} is not a list")
        if spec.choice_key:
            v = [c.get(spec.choice_key) if isinstance(c, dict) else _MISSING for c in v]
            if any(c is _MISSING or c is None for c in v):
                raise ValueError(f"{where}: a choice has no {spec.choice_key!r}")
        return [_text(c) for c in v], True
    vals = [get_field(rec, p) for p in spec.choices or []]
    # Trailing absent or empty options are no options (ThaiExam's 4-option questions have no `e`
    # or an empty one); an empty option in the middle keeps its place and its letter.
    while vals and (vals[-1] is _MISSING or vals[-1] is None or _text(vals[-1]) == ""):
        vals.pop()
    if any(v is _MISSING for v in vals):
        missing = [p for p, v in zip(spec.choices or [], vals) if v is _MISSING]
        raise ValueError(f"{where}: no field(s) {missing}")
    return [_text(v) for v in vals], True


def _lookup(table: dict, key: str) -> Any:
    """`table[key]`, else the entry equal up to case (KoBEST writes True, TRUE and true)."""
    if key in table:
        return table[key]
    folded = {k.casefold(): v for k, v in table.items()}
    return folded.get(key.casefold(), _MISSING)


def _gold(spec: BenchmarkSpec, raw: Any, choices: list[str], where: str) -> int:
    mapped = _lookup(spec.answer_map, _text(raw).strip())
    value: Any = raw if mapped is _MISSING else mapped
    if isinstance(mapped, int):
        idx = mapped
    elif spec.answer_format == "index" or spec.answer_format == "index1":
        try:
            idx = int(_text(value).strip()) - (spec.answer_format == "index1")
        except ValueError:
            raise ValueError(f"{where}: answer {raw!r} is not an index") from None
    elif spec.answer_format == "letter":
        letter = _text(value).strip().upper()
        if len(letter) != 1 or letter not in LETTERS:
            raise ValueError(f"{where}: answer {raw!r} is not a letter")
        idx = LETTERS.index(letter)
    else:
        text = _text(value).strip()
        stripped = [c.strip() for c in choices]
        if text not in stripped:
            raise ValueError(f"{where}: answer {raw!r} is none of the choices {choices}")
        idx = stripped.index(text)
    if not 0 <= idx < len(choices):
        raise ValueError(f"{where}: answer {raw!r} → index {idx}, but there are {len(choices)} choices")
    return idx


def make_item(spec: BenchmarkSpec, rec: dict, row: int) -> Item:
    """One record → one Item; raises ValueError naming the row and field when it does not fit."""
    rid = get_field(rec, spec.id) if spec.id else _MISSING
    item_id = _text(rid) if rid is not _MISSING and rid is not None else f"row-{row}"
    where = f"benchmark {spec.name}, row {row} (id {item_id})"
    values, texts = {}, []
    for name, path in spec.placeholders().items():
        v = get_field(rec, path)
        if v is _MISSING:
            raise ValueError(f"{where}: no field {path!r} (for {{{name}}})")
        raw = _text(v)
        if name not in spec.maps:  # a mapped field is a category (cause/effect), not item text
            texts.append(raw)
        if name in spec.maps:
            mapped = _lookup(spec.maps[name], raw.strip())
            if mapped is _MISSING:
                raise ValueError(f"{where}: {path}={raw!r} is not in maps.{name} {sorted(spec.maps[name])}")
            raw = mapped
        values[name] = raw
    choices, own = _choices(spec, rec, where) if (spec.choices or spec.labels) else ([], False)
    if own:
        texts += choices
    raw_answer = get_field(rec, spec.answer)
    if raw_answer is _MISSING:
        raise ValueError(f"{where}: no answer field {spec.answer!r}")
    if choices:
        gold = _gold(spec, raw_answer, choices, where)
        answer_text, letter = choices[gold], LETTERS[gold]
    else:
        gold, answer_text, letter = None, _text(raw_answer), ""
        mapped = _lookup(spec.answer_map, answer_text.strip())
        answer_text = answer_text if mapped is _MISSING else _text(mapped)
    target = spec.target.format(answer=answer_text, letter=letter) if spec.type == "generate" else answer_text
    return Item(item_id, values, tuple(choices), gold, target, tuple(t for t in texts if t.strip()))


@dataclass(frozen=True)
class Rejected:
    row: int
    reason: str


def load_items_checked(spec: BenchmarkSpec, path: str | Path | None = None,
                       limit: int | None = None) -> tuple[list[Item], list[Rejected]]:
    """Items of a split and the rows that did not fit the spec, each with its reason."""
    path = Path(path or spec.path)
    items, rejected = [], []
    for row, rec in enumerate(read_records(spec, path)):
        if limit is not None and len(items) >= limit:
            break
        try:
            items.append(make_item(spec, rec, row))
        except ValueError as e:
            rejected.append(Rejected(row, str(e)))
    return items, rejected


def load_items(spec: BenchmarkSpec, limit: int | None = None) -> list[Item]:
    """The items of a spec's scored split (first `limit`). A row that does not fit is an error
    naming it; use `load_items_checked` to collect such rows instead."""
    items, rejected = load_items_checked(spec, limit=limit)
    if rejected and not items:
        raise ConfigError(f"benchmark {spec.name}: no row fits the spec; first: {rejected[0].reason}")
    if rejected:
        raise ConfigError(f"benchmark {spec.name}: {len(rejected)} row(s) do not fit the spec; "
                          f"first: {rejected[0].reason}")
    return items


def benchmark_texts(cfg: Config, names: list[str]) -> dict[str, list[str]]:
    """Every text (questions, contexts, passages, choices) of the named benchmarks or groups, as
    `cfg.evaluate` declares them, scored split and few-shot split both: what the curate stage
    removes from the corpus so that the evaluation stays clean. Fixed label words ("예", "no")
    are not item text and are left out."""
    out: dict[str, list[str]] = {}
    for spec in resolve_names(cfg, names):
        spec = with_paths(cfg, spec)
        texts: list[str] = []
        for p in [spec.path, spec.fewshot_path]:
            if p:
                items, _ = load_items_checked(spec, p)
                texts.extend(t for it in items for t in it.texts)
        out[spec.name] = list(dict.fromkeys(texts))
    return out
