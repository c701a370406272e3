"""Settings of `soberan evaluate` (the `[evaluate]` section) and the benchmark spec format.

A benchmark is declared, not coded: a local file plus a small mapping from its fields to the roles
a scorer needs (the prompt's placeholders, the choices, the answer). The same model reads the spec
files shipped in `soberan/evaluate/specs/*.toml` and the `[[evaluate.benchmarks]]` tables of a
workspace config, so a ministry's own exam is one config entry away. Format: docs/evaluate.md.
"""

from __future__ import annotations

import string
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator


class BenchmarkSpec(BaseModel):
    """One benchmark set: where its items are and how to turn a record into a scored item.

    Field paths are record keys; a dotted path walks into nested records and lists
    (`prompts.0.question`), and a key that itself contains a dot or a space is read as it is.
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    """The benchmark's name, as `[evaluate] sets` lists it."""
    group: str = ""
    """The family a name expands from, so several sets are named at once (`kobest` → its five
    tasks); a spec file's stem by default."""
    path: str
    """The scored split: `${shared_data}/...`, absolute, or relative to the workspace; read in
    place. A glob (`bench/part-*.jsonl`, `**` across folders) reads every match in name order."""
    format: Literal["jsonl", "json", "tsv", "csv", "parquet"] | None = Field(None, examples=["jsonl"])
    """The file's format; unset: from the suffix."""
    header: bool = True
    """csv/tsv: the first row names the columns."""
    columns: list[str] = []
    """csv/tsv without a header: the column names, in order."""
    type: Literal["mc", "generate"] = "mc"
    """"mc": log-likelihood multiple choice; "generate": a greedy answer, exact match with
    `target`."""

    id: str | None = Field(None, examples=["id"])
    """Field with a stable item id; unset: the row number."""
    question: str | None = Field(None, examples=["question"])
    """Shorthand for fields.question."""
    context: str | None = Field(None, examples=["passage"])
    """Shorthand for fields.context."""
    fields: dict[str, str] = {}
    """Placeholder name -> field path, for the template: `fields = { word = "Target" }` adds
    `{word}`. A field path walks into records and lists (`a.b.0.c`)."""
    maps: dict[str, dict[str, str]] = {}
    """Per placeholder, raw value -> text, e.g. KoBEST-COPA's cause/effect connectors:
    `{ question = { "원인" = "왜냐하면", "결과" = "그래서" } }`."""

    choices: list[str] | str | None = Field(None, examples=[["a", "b", "c", "d"]])
    """A list of field paths, or one field path holding a list (of strings, or of records whose
    `choice_key` holds the text). Trailing absent or empty options are no options."""
    choice_key: str | None = Field(None, examples=["text"])
    """The key of a choice record that holds its text."""
    labels: list[str] = []
    """Fixed choices for a classification set, instead of `choices` (`["부정", "긍정"]`); they are
    not item text."""
    continuation: Literal["text", "letter"] = "text"
    """What is scored after the prompt: the choice's text, or its letter (" A".." D", the options
    listed in the prompt)."""

    answer: str
    """Field path of the gold answer."""
    answer_format: Literal["index", "index1", "letter", "text"] = "index"
    """How the gold answer is written: a 0-based index, a 1-based index, a letter, or text equal to
    a choice."""
    answer_map: dict[str, int | str] = {}
    """Raw answer -> index (or text), applied before answer_format, case-insensitive:
    `{ False = 0, True = 1 }`."""
    target: str = "{answer}"
    """generate: the expected text; placeholders {answer} (the gold text) and {letter}."""

    template: str
    """The prompt, in Python format syntax: {question}, {context}, any `fields` name, {choices}
    (the options as `A. ...` lines); write `{{` for a literal brace."""
    instruction: str = ""
    """Put once before the few-shot examples (lm-eval's `description`)."""
    target_delimiter: str = " "
    """Between prompt and continuation (lm-eval's default)."""
    fewshot_delimiter: str = "\n\n"
    """Between few-shot examples."""
    fewshot_path: str | None = Field(None, examples=["bench/dev.jsonl"])
    """The split few-shot examples come from (never the scored split)."""
    num_fewshot: int = Field(0, ge=0)
    """Few-shot examples before each item."""
    fewshot_sampler: Literal["first_n", "random"] = "first_n"
    """first_n: the split's first k rows, for every item (lm-eval's `first_n`, so an export
    reproduces the prompts exactly); random: k rows drawn once with the seed."""
    stop: list[str] = ["\n"]
    """generate: where the answer ends."""

    language: str
    """The items' ISO 639 language code."""
    license: str
    """The benchmark's SPDX license (or `LicenseRef-...`)."""
    redistribute: bool = True
    """False (e.g. CC-BY-ND): read in place; no item text leaves the file."""
    description: str = ""
    """What the benchmark measures, for the report."""
    citation: str = ""
    """How to cite it."""

    @field_validator("language")
    @classmethod
    def _lang(cls, v: str) -> str:
        from soberan.config import check_language  # late: soberan.config imports this module

        return check_language(v)

    @field_validator("license")
    @classmethod
    def _license(cls, v: str) -> str:
        from soberan.config import check_license

        return check_license(v)

    @model_validator(mode="after")
    def _coherent(self) -> "BenchmarkSpec":
        if self.type == "mc" and not self.choices and not self.labels:
            raise ValueError(f"benchmark {self.name}: a multiple-choice set needs `choices` or `labels`")
        if self.choices and self.labels:
            raise ValueError(f"benchmark {self.name}: give `choices` or `labels`, not both")
        if self.format in ("csv", "tsv") and not self.header and not self.columns:
            raise ValueError(f"benchmark {self.name}: a csv/tsv without header needs `columns`")
        names = set(self.placeholders()) | {"choices"}
        used = {f for _, f, _, _ in string.Formatter().parse(self.template) if f}
        unknown = sorted(u for u in used if u not in names)
        if unknown:
            raise ValueError(f"benchmark {self.name}: template placeholder(s) {unknown} are not declared "
                             f"(declared: {sorted(names)}); add them under `fields`")
        bad_target = sorted({f for _, f, _, _ in string.Formatter().parse(self.target) if f} - {"answer", "letter"})
        if bad_target:
            raise ValueError(f"benchmark {self.name}: `target` may use {{answer}} and {{letter}} only, "
                             f"not {bad_target}")
        bad_maps = sorted(set(self.maps) - set(self.placeholders()))
        if bad_maps:
            raise ValueError(f"benchmark {self.name}: `maps` for undeclared placeholder(s) {bad_maps}")
        return self

    def placeholders(self) -> dict[str, str]:
        """Placeholder name -> field path, `question` and `context` included."""
        out = {}
        if self.question:
            out["question"] = self.question
        if self.context:
            out["context"] = self.context
        out.update(self.fields)
        return out


class EvaluateSettings(BaseModel):
    """Benchmarks to score: spec names or groups shipped in soberan/evaluate/specs/ (kobest, nsmc,
    kmmlu_criminal_law, thai_exam, belebele_sea, global_mmlu_lite_sea, xcopa_sea, exams_ar_vi,
    acva_arabic, indonlu) or declared below. Guide and spec format: docs/evaluate.md"""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    sets: list[str] = Field([], examples=[["kobest"]])
    """Benchmarks to score: spec names (`kobest_copa`) or groups (`kobest`, `belebele_sea`)."""
    spec_dirs: list[str] = []
    """Folders of your own spec files (*.toml with [[benchmark]] tables), relative to the
    workspace."""
    benchmarks: list[BenchmarkSpec] = Field([], examples=[[{
        "name": "civil_service_exam", "path": "bench/civil_service_2024.jsonl", "question": "question",
        "choices": ["a", "b", "c", "d"], "answer": "answer", "answer_format": "letter",
        "template": "{question}\n{choices}\n$answer_cue", "continuation": "letter", "language": "$lang",
        "license": "LicenseRef-$jurisdiction-Public-Domain"}]])
    """A benchmark of your own, no code needed: the same keys as a spec file's [[benchmark]]
    table."""
    shared_data: str | None = Field(None, examples=["../shared/data"])
    """What `${shared_data}` in a spec path means; unset: $SOBERAN_SHARED_DATA."""

    compare: list[str] = Field([], examples=[["model/final", "model-baseline/final"]])
    """Models to score side by side; empty: the train stage's latest model. The first is the
    reference the others are compared against."""
    limit: int | None = Field(None, ge=1, examples=[200])
    """Items per set (the first N), for quick runs; unset: all."""
    num_fewshot: int | None = Field(None, ge=0, examples=[0])
    """Few-shot examples for every set; unset: each spec's own (KMMLU: 5). A set without a few-shot
    split stays 0-shot, noted in the result."""
    seed: int = 1234
    """Seed of the few-shot draw (`random` sampler) and the bootstrap."""
    batch_size: int = Field(16, ge=1)
    """(prompt, continuation) pairs per forward pass."""
    max_length: int = Field(1024, ge=8)
    """Tokens; longer prompts lose their left part, as in lm-eval."""
    max_new_tokens: int = Field(32, ge=1)
    """Tokens generated for generate sets."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N; without CUDA the stage says why and scores on the CPU."""
    bootstrap: int = Field(1000, ge=100)
    """Bootstrap resamples for every 95% CI."""

    bpb: bool = True
    """Held-out bits per byte, per language, on the workspace's held-out split (one unit per row: a
    document, or a paragraph of a long one), in windows of each model's context."""
    bpb_max_units: int | None = Field(200, ge=1, validation_alias=AliasChoices("bpb_max_units", "bpb_max_docs"))
    """Held-out units (documents or paragraphs) scored per language."""
    min_heldout_units: int = Field(30, ge=2)
    """Below this many held-out units in a language, its bits per byte get no CI and no difference
    is claimed ("too few held-out units"): a bootstrap over a handful of documents is not an
    interval."""
    degenerate_share: float = Field(0.5, gt=0.0, lt=1.0)
    """An answer position taken on more than this share of a set's items flags the model as
    degenerate on that set (two-choice sets: halfway to 1); no comparison with it is
    significant."""

    prompts: bool = True
    """Fixed national prompts answered greedily by every model, shown side by side in the report."""
    prompts_file: str | None = Field(None, examples=["prompts.toml"])
    """Your own prompts, relative to the workspace; unset: soberan/evaluate/prompts.toml."""
    prompt_max_new_tokens: int = Field(48, ge=1)
    """Tokens generated per prompt."""

    contamination: bool = True
    """Flag items whose text also occurs in the training corpus (soberan.evaluate.contamination)."""
    contamination_chars: int = Field(50, ge=8)
    """A window of this many normalized characters shared with the corpus counts as overlap."""
