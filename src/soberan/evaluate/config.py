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

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    group: str = ""  # the family a name expands from (`kobest` → its five tasks); file stem when shipped
    path: str  # the scored split; `${shared_data}/...`, absolute, or relative to the workspace
    format: Literal["jsonl", "json", "tsv", "csv", "parquet"] | None = None  # None: from the suffix
    header: bool = True  # csv/tsv: the first row names the columns
    columns: list[str] = []  # csv/tsv without a header: the column names, in order
    type: Literal["mc", "generate"] = "mc"

    id: str | None = None  # field with a stable item id; None: the row number
    question: str | None = None  # shorthand for fields.question
    context: str | None = None  # shorthand for fields.context
    fields: dict[str, str] = {}  # placeholder name -> field path, for the template
    maps: dict[str, dict[str, str]] = {}  # placeholder -> {raw value -> text}, e.g. cause/effect connectors

    # Choices: a list of field paths, or one field path holding a list (of strings, or of records
    # whose `choice_key` holds the text); or fixed `labels` for a classification set.
    choices: list[str] | str | None = None
    choice_key: str | None = None
    labels: list[str] = []
    continuation: Literal["text", "letter"] = "text"  # what is scored after the prompt: the choice, or its letter

    answer: str  # field path of the gold answer
    answer_format: Literal["index", "index1", "letter", "text"] = "index"
    answer_map: dict[str, int | str] = {}  # raw answer -> index (or text) before answer_format applies
    target: str = "{answer}"  # generate: the expected text; placeholders {answer} (gold text), {letter}

    template: str  # the prompt, Python format syntax: {question}, {context}, any `fields` name, {choices}
    instruction: str = ""  # put once before the few-shot examples (lm-eval's `description`)
    target_delimiter: str = " "  # between prompt and continuation (lm-eval's default)
    fewshot_delimiter: str = "\n\n"
    fewshot_path: str | None = None  # the split few-shot examples come from (never the scored split)
    num_fewshot: int = Field(0, ge=0)
    # first_n: the split's first k rows, for every item (lm-eval's `first_n`, so an export
    # reproduces the prompts exactly); random: k rows drawn once with the seed.
    fewshot_sampler: Literal["first_n", "random"] = "first_n"
    stop: list[str] = ["\n"]  # generate: where the answer ends

    language: str
    license: str
    redistribute: bool = True  # False (e.g. CC-BY-ND): read in place, no item text leaves the file
    description: str = ""
    citation: str = ""

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
    model_config = ConfigDict(extra="forbid")

    # Benchmarks to score: spec names (`kobest_copa`) or groups (`kobest`, `belebele_sea`).
    sets: list[str] = []
    # Folders of extra spec files (*.toml with [[benchmark]] tables), relative to the workspace.
    spec_dirs: list[str] = []
    # Benchmarks declared in this config (same keys as a spec file's [[benchmark]] table).
    benchmarks: list[BenchmarkSpec] = []
    # Where `${shared_data}` in a spec path points; None: $SOBERAN_SHARED_DATA.
    shared_data: str | None = None

    # Models to score side by side; empty: the train stage's latest model. The first is the
    # reference the others are compared against.
    compare: list[str] = []
    limit: int | None = Field(None, ge=1)  # items per set (the first N), for quick runs
    num_fewshot: int | None = Field(None, ge=0)  # None: each spec's own
    seed: int = 1234  # few-shot sampling and the bootstrap
    batch_size: int = Field(16, ge=1)  # (context, continuation) pairs per forward pass
    max_length: int = Field(1024, ge=8)  # tokens; longer prompts lose their left part (as lm-eval)
    max_new_tokens: int = Field(32, ge=1)  # generate sets
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    bootstrap: int = Field(1000, ge=100)  # bootstrap resamples for every 95% CI

    # Held-out bits per byte, per language, on the train stage's held-out split (one unit per
    # row: a document, or a paragraph of a long one), in windows of each model's context.
    bpb: bool = True
    bpb_max_units: int | None = Field(200, ge=1, validation_alias=AliasChoices("bpb_max_units", "bpb_max_docs"))
    # Below this many held-out units in a language, its bits per byte get no CI and no
    # difference is claimed: a bootstrap over a handful of documents is not an interval.
    min_heldout_units: int = Field(30, ge=2)
    # An answer position taken on more than this share of a set's items flags the model as
    # degenerate on that set (two-choice sets: halfway to 1); no comparison with it is significant.
    degenerate_share: float = Field(0.5, gt=0.0, lt=1.0)

    # Fixed national prompts answered greedily by every model, shown side by side in the report
    # (soberan/evaluate/prompts.toml, or a file of the same shape relative to the workspace).
    prompts: bool = True
    prompts_file: str | None = None
    prompt_max_new_tokens: int = Field(48, ge=1)

    # Contamination: an item is flagged when a window of `contamination_chars` normalized
    # characters of its text also occurs in the training corpus (see contamination.py).
    contamination: bool = True
    contamination_chars: int = Field(50, ge=8)
